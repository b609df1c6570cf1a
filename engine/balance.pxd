# Load-balancing primitives: the per-request part of a service (engine/balance.pyx).
# Every pick returns a child index (int); -1 means "no available child" (-> 503).
cimport cython


@cython.final
cdef class WRR:
    # Traefik's weighted round-robin (pkg/server/service/loadbalancer/wrr): earliest deadline
    # first over a binary heap laid out exactly as Go's container/heap, so the pick sequence
    # (ties included) is Traefik's.
    cdef int n                  # children in the heap (weight > 0)
    cdef int *heap              # heap of child indexes, ordered by deadline
    cdef double *deadline       # per child index; owned
    cdef double *inv_weight     # per child index: 1/weight; owned
    cdef double cur_deadline
    cdef int count              # children given (the heap holds those with weight > 0)
    cdef unsigned char *state   # per child index: ST_IN_HEAP | ST_DOWN bits; owned
    cdef int n_up               # heap children not marked down (health checks)
    cdef inline bint _less(self, int a, int b) noexcept
    cdef inline void _swap(self, int a, int b) noexcept
    cdef void _up(self, int j) noexcept
    cdef bint _down(self, int i0, int n) noexcept
    cdef int pick(self) noexcept
    cdef int pick_up(self) noexcept


@cython.final
cdef class P2C:
    # Traefik's "p2c" strategy: two distinct random children, the one with fewer requests in
    # flight wins (ties: the first drawn). Counts are per worker process.
    cdef int n
    cdef int *inflight          # per child index; owned
    cdef unsigned long long rng # xorshift64* state
    cdef unsigned char *down    # per child index: 1 = down (health checks); owned
    cdef int *up_list           # the children not down, in index order; owned
    cdef int n_up
    cdef inline unsigned long long _rand(self) noexcept
    cdef int pick(self) noexcept
    cdef int pick_up(self) noexcept
    cdef void release(self, int child) noexcept


@cython.final
cdef class Sticky:
    # Traefik's sticky cookie: cookie value -> child index (sha256 names, plus the legacy
    # fnv64 forms Traefik still accepts so sessions survive a switch between proxies).
    cdef readonly bytes name            # cookie name (bytes, as on the wire)
    cdef dict by_value                  # bytes value -> int child
    cdef dict legacy_values             # bytes value -> int child (cookie must be rewritten)
    cdef readonly list values           # child index -> bytes value written in Set-Cookie
    cdef int lookup(self, bytes cookie_header, bint *rewrite)


@cython.final
cdef class HRW:
    # Traefik's highest random weight (pkg/server/service/loadbalancer/hrw): rendezvous
    # hashing of the client IP with each child's name; the same IP always picks the same child.
    cdef int n                  # children (all of them; weight <= 0 ones have weight 0)
    cdef list names             # bytes per child index (kept alive for the pointers below)
    cdef const char **name_ptr  # owned array of pointers into ``names``
    cdef Py_ssize_t *name_len   # owned
    cdef double *weight         # owned; <= 0: never picked (Traefik's Add ignores it)
    cdef unsigned char *down    # per child index: 1 = down (health checks); owned
    cdef int pick(self, const char *src, Py_ssize_t n) noexcept
    cdef int pick_up(self, const char *src, Py_ssize_t n) noexcept
