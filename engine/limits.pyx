# cython: language_level=3
"""Limits that hold for the whole instance, not per worker: token buckets (rateLimit) and
in-flight counters (inFlightReq) in memory shared by the master and every worker.

Traefik is one process; pyroute runs N workers. A limit of 100 requests/s must be 100/s for
the instance, and a client must get the same answer whichever worker accepted it. So the
state lives in one anonymous ``MAP_SHARED`` mapping the master makes before it forks any
worker (``arena()``), updated with atomic compare-and-swap: no lock, no IPC, no round trip
to the master, one cache line touched per request.

Buckets (x/time/rate's token bucket as Traefik uses it, kept as one word): with T = 1/rate
and b = burst, the state is S, the time at which the bucket would be empty extrapolated, so
that tokens(now) = min(b, (now - S) / T). Taking a token: S' = max(S, now - b*T) + T, and the
request waits max(0, S' - now) — exactly ``Reserve().Delay()``. A delay over Traefik's
maxDelay is not taken at all (``Cancel``): nothing is written. Sources are kept as Traefik's
ttlmap keeps them: an entry unused for ``ttl`` is gone (a fresh, full bucket), and a full
table evicts the entry closest to expiry.

In-flight counters: one total per source (compare-and-swap below ``amount``, as oxy's
connlimit counts), plus each worker's share, so the master can give back what a worker that
died held (``forget_worker``).

Slots are found by open addressing over a 64-bit FNV-1a hash of (limiter, source); a hash
collision would make two sources share a bucket, with probability ~2^-64 per pair.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t, int64_t, uint32_t, uintptr_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
import mmap as _mmap

cdef extern from *:
    """
    #include <stdint.h>
    static inline int64_t pr_load(int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void pr_store(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int pr_cas(int64_t *p, int64_t expected, int64_t desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL,
                                           __ATOMIC_ACQUIRE);
    }
    static inline int64_t pr_add(int64_t *p, int64_t v) {
        return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL);
    }
    """
    int64_t pr_load(int64_t *p) nogil
    void pr_store(int64_t *p, int64_t v) nogil
    bint pr_cas(int64_t *p, int64_t expected, int64_t desired) nogil
    int64_t pr_add(int64_t *p, int64_t v) nogil

DEF PROBES = 16
DEF MAX_WORKERS = 64
# bucket slot: key, S (ns), expiry (ns), spare
DEF BUCKET_WORDS = 4
# in-flight slot: key, total, last use (ns), spare, then MAX_WORKERS shares
DEF FLIGHT_WORDS = 4 + MAX_WORKERS

cdef int64_t INF_DELAY = 1 << 62


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    # + 2^40 ns (~18 minutes): ``now - b*T`` stays positive for any burst window a
    # configuration can give, so 0 can mean "never used"
    return <int64_t> ts.tv_sec * 1000000000 + ts.tv_nsec + (<int64_t> 1 << 40)


cdef inline int64_t _hash(bytes prefix, bytes source) noexcept:
    cdef uint64_t h = 14695981039346656037ULL
    cdef const unsigned char *p = <const unsigned char *> PyBytes_AS_STRING(prefix)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(prefix)
    for i in range(n):
        h = (h ^ p[i]) * 1099511628211ULL
    h = (h ^ 0xff) * 1099511628211ULL          # separator: ("ab","c") != ("a","bc")
    p = <const unsigned char *> PyBytes_AS_STRING(source)
    n = PyBytes_GET_SIZE(source)
    for i in range(n):
        h = (h ^ p[i]) * 1099511628211ULL
    h &= 0x7fffffffffffffffULL
    return <int64_t> (h if h else 1)


@cython.final
cdef class Arena:
    """The shared mapping: a bucket table and an in-flight table."""
    cdef object map
    cdef int64_t *buckets
    cdef int64_t *flights
    cdef uint64_t bucket_mask
    cdef uint64_t flight_mask
    cdef public int worker               # this process's worker index (its in-flight share)

    def __init__(self, int bucket_bits=17, int flight_bits=14):
        cdef uint64_t nb = 1 << bucket_bits, nf = 1 << flight_bits
        cdef Py_ssize_t size = (nb * BUCKET_WORDS + nf * FLIGHT_WORDS) * 8
        # anonymous + shared: inherited by every process forked after this; pages are only
        # backed once touched
        self.map = _mmap.mmap(-1, size, flags=_mmap.MAP_SHARED | _mmap.MAP_ANONYMOUS)
        cdef unsigned char[::1] view = self.map
        self.buckets = <int64_t *> &view[0]
        self.flights = self.buckets + nb * BUCKET_WORDS
        self.bucket_mask = nb - 1
        self.flight_mask = nf - 1
        self.worker = 0

    @property
    def size(self):
        return len(self.map)

    cdef int64_t *_bucket(self, int64_t key, int64_t now) noexcept nogil:
        # the slot of ``key``: its own, else a free or expired one in its probe window
        # (claimed by CAS), else the one closest to expiry (ttlmap.freeSpace)
        cdef uint64_t i, idx
        cdef int64_t *slot
        cdef int64_t *oldest = NULL
        cdef int64_t k, exp, oldest_exp = INF_DELAY
        for i in range(PROBES):
            idx = (<uint64_t> key + i) & self.bucket_mask
            slot = self.buckets + idx * BUCKET_WORDS
            k = pr_load(slot)
            if k == key:
                return slot
            if k == 0:
                if pr_cas(slot, 0, key):
                    pr_store(slot + 2, 0)
                    return slot
                if pr_load(slot) == key:
                    return slot
                continue
            exp = pr_load(slot + 2)
            if exp <= now:
                if pr_cas(slot, k, key):
                    pr_store(slot + 2, 0)       # expired: a fresh bucket
                    return slot
                if pr_load(slot) == key:
                    return slot
                continue
            if exp < oldest_exp:
                oldest_exp = exp
                oldest = slot
        if oldest != NULL:
            k = pr_load(oldest)
            if pr_cas(oldest, k, key):
                pr_store(oldest + 2, 0)
            return oldest
        return self.buckets + ((<uint64_t> key) & self.bucket_mask) * BUCKET_WORDS

    cdef int64_t reserve(self, int64_t key, int64_t interval, int64_t window,
                         int64_t max_delay, int64_t ttl) noexcept nogil:
        # Traefik's Reserve() + Delay(), Cancel() when over ``max_delay``: the delay in ns
        cdef int64_t now = _now_ns()
        cdef int64_t *slot = self._bucket(key, now)
        cdef int64_t s, base, s2, delay, exp
        while True:
            s = pr_load(slot + 1)
            exp = pr_load(slot + 2)
            base = now - window
            if exp != 0 and exp > now and s > base:
                base = s                       # a live bucket with fewer than b tokens
            s2 = base + interval
            delay = s2 - now
            if delay < 0:
                delay = 0
            if delay > max_delay:
                # not taken (Cancel); the access still counts for the ttl (ttlmap.Set)
                if exp != 0 and exp > now:
                    pr_store(slot + 2, now + ttl)
                return delay
            if pr_cas(slot + 1, s, s2):
                pr_store(slot + 2, now + ttl)
                return delay

    cdef int64_t *_flight(self, int64_t key, int64_t now) noexcept nogil:
        cdef uint64_t i, idx
        cdef int64_t *slot
        cdef int64_t k
        for i in range(PROBES):
            idx = (<uint64_t> key + i) & self.flight_mask
            slot = self.flights + idx * FLIGHT_WORDS
            k = pr_load(slot)
            if k == key:
                return slot
            if k == 0:
                if pr_cas(slot, 0, key) or pr_load(slot) == key:
                    return slot
                continue
            # a source with nothing in flight for a second may give its slot up
            if pr_load(slot + 1) == 0 and pr_load(slot + 2) + 1000000000 <= now:
                if pr_cas(slot, k, key) or pr_load(slot) == key:
                    return slot
        return NULL

    cdef int64_t acquire(self, int64_t key, int64_t amount) noexcept nogil:
        # oxy connlimit.acquire: refused when the source already has ``amount`` in flight;
        # the slot's index (>= 0), -1 refused, -2 no slot free (the table is full)
        cdef int64_t now = _now_ns()
        cdef int64_t *slot = self._flight(key, now)
        cdef int64_t n
        if slot == NULL:
            return -2
        while True:
            n = pr_load(slot + 1)
            if n >= amount:
                return -1
            if pr_cas(slot + 1, n, n + 1):
                break
        pr_add(slot + 4 + (self.worker % MAX_WORKERS), 1)
        pr_store(slot + 2, now)
        return (slot - self.flights) // FLIGHT_WORDS

    cdef void release(self, int64_t index) noexcept nogil:
        cdef int64_t *slot = self.flights + index * FLIGHT_WORDS
        pr_add(slot + 4 + (self.worker % MAX_WORKERS), -1)
        pr_add(slot + 1, -1)
        pr_store(slot + 2, _now_ns())

    def forget_worker(self, int worker):
        """The master, when worker ``worker`` died: what it held in flight is given back."""
        cdef uint64_t i
        cdef int64_t *slot
        cdef int64_t n
        for i in range(self.flight_mask + 1):
            slot = self.flights + i * FLIGHT_WORDS
            if pr_load(slot) == 0:
                continue
            n = pr_load(slot + 4 + (worker % MAX_WORKERS))
            if n > 0:
                pr_add(slot + 4 + (worker % MAX_WORKERS), -n)
                pr_add(slot + 1, -n)

    def in_flight(self, bytes prefix, bytes source):
        """The count in flight for a source (tests, the API)."""
        cdef int64_t key = _hash(prefix, source)
        cdef int64_t *slot = self._flight(key, _now_ns())
        return 0 if slot == NULL else pr_load(slot + 1)


cdef Arena _ARENA = None


def arena():
    """This instance's shared arena: made by the master before it forks its workers (they
    inherit it); a process that never forked one (``pyroute check``, tests) gets its own."""
    global _ARENA
    if _ARENA is None:
        _ARENA = Arena()
    return _ARENA


def set_worker(int index):
    """Called in a worker after the fork: its index names its in-flight share."""
    arena().worker = index


@cython.final
cdef class TokenBucket:
    """One rateLimit middleware's buckets (``name`` keeps its sources apart from other
    limiters', as Traefik's "<name>:<source>" keys do)."""
    cdef Arena arena
    cdef bytes prefix
    cdef int64_t interval, window, max_delay, ttl
    cdef readonly bint unlimited

    def __init__(self, bytes name, double rate, long long burst, double max_delay,
                 double ttl):
        """``rate`` requests per second (0 or less: no limit); ``max_delay``, ``ttl`` in s."""
        self.arena = arena()
        self.prefix = name
        self.unlimited = rate <= 0
        if not self.unlimited:
            self.interval = <int64_t> (1e9 / rate)
            if self.interval < 1:
                self.interval = 1
        else:
            self.interval = 0
        self.window = self.interval * burst
        self.max_delay = <int64_t> (max_delay * 1e9)
        self.ttl = <int64_t> (ttl * 1e9)

    cpdef long long reserve(self, bytes source):
        """The delay (ns) before the request may go on; over ``max_delay``: refused (429)."""
        if self.unlimited:
            return 0
        return self.arena.reserve(_hash(self.prefix, source), self.interval, self.window,
                                  self.max_delay, self.ttl)

    @property
    def max_delay_ns(self):
        return self.max_delay


@cython.final
cdef class InFlight:
    """One inFlightReq middleware's counters."""
    cdef Arena arena
    cdef bytes prefix
    cdef int64_t amount

    def __init__(self, bytes name, long long amount):
        self.arena = arena()
        self.prefix = name
        self.amount = amount

    cpdef long long acquire(self, bytes source):
        """A slot index to ``release`` later, or -1 when the source has ``amount`` in
        flight (-2: no slot left in the shared table)."""
        return self.arena.acquire(_hash(self.prefix, source), self.amount)

    cpdef release(self, long long index):
        self.arena.release(index)

    def in_flight(self, bytes source):
        return self.arena.in_flight(self.prefix, source)
