# cython: language_level=3
"""Load balancing: Traefik's WRR (EDF heap), p2c, HRW (rendezvous hashing), and sticky-cookie
lookup.

Everything here is built once per config load; ``pick`` runs per request and returns a
child index, never a Python object.
"""
cimport cython
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memchr
from libc.math cimport log, INFINITY
from libc.stdint cimport uint64_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
import hashlib
import os


cdef enum:
    ST_IN_HEAP = 1      # WRR child with a positive weight
    ST_DOWN = 2         # marked down by a health check


@cython.final
cdef class WRR:
    """Weighted round-robin as Traefik's ``wrr.Balancer``.

    ``weights[i]`` is child i's weight; a child with weight <= 0 is never picked (Traefik:
    "non-positive weight is meaningless", AddService ignores it). Children are pushed in
    order, as Traefik's service manager adds them.
    """

    def __cinit__(self, weights):
        cdef int count = len(weights)
        cdef int i
        self.heap = <int *> malloc(max(count, 1) * sizeof(int))
        self.deadline = <double *> malloc(max(count, 1) * sizeof(double))
        self.inv_weight = <double *> malloc(max(count, 1) * sizeof(double))
        self.state = <unsigned char *> calloc(max(count, 1), sizeof(unsigned char))
        if not self.heap or not self.deadline or not self.inv_weight or not self.state:
            raise MemoryError()
        self.n = 0
        self.count = count
        self.cur_deadline = 0.0
        for i in range(count):
            w = weights[i]
            if w is None:
                w = 1           # Traefik: weight defaults to 1
            if w <= 0:
                continue
            self.inv_weight[i] = 1.0 / <double> w
            # AddService: deadline = curDeadline + 1/weight, then heap.Push
            self.deadline[i] = self.cur_deadline + self.inv_weight[i]
            self.heap[self.n] = i
            self.state[i] = ST_IN_HEAP
            self.n += 1
            self._up(self.n - 1)
        self.n_up = self.n

    def __dealloc__(self):
        free(self.heap)
        free(self.deadline)
        free(self.inv_weight)
        free(self.state)

    cdef inline bint _less(self, int a, int b) noexcept:
        return self.deadline[self.heap[a]] < self.deadline[self.heap[b]]

    cdef inline void _swap(self, int a, int b) noexcept:
        cdef int t = self.heap[a]
        self.heap[a] = self.heap[b]
        self.heap[b] = t

    cdef void _up(self, int j) noexcept:
        # Go container/heap.up
        cdef int i
        while True:
            i = (j - 1) // 2
            if i == j or not self._less(j, i):
                break
            self._swap(i, j)
            j = i

    cdef bint _down(self, int i0, int n) noexcept:
        # Go container/heap.down
        cdef int i = i0, j, j1, j2
        while True:
            j1 = 2 * i + 1
            if j1 >= n or j1 < 0:
                break
            j = j1
            j2 = j1 + 1
            if j2 < n and self._less(j2, j1):
                j = j2
            if not self._less(j, i):
                break
            self._swap(i, j)
            i = j
        return i > i0

    cdef int pick(self) noexcept:
        # nextServer: heap.Pop (swap root with last, down), bump its deadline, heap.Push.
        cdef int child
        if self.n == 0:
            return -1
        self._swap(0, self.n - 1)
        self._down(0, self.n - 1)
        child = self.heap[self.n - 1]
        self.cur_deadline = self.deadline[child]
        self.deadline[child] += self.inv_weight[child]
        self._up(self.n - 1)
        return child

    cdef int pick_up(self) noexcept:
        # Traefik's nextServer with health checks: children are popped in deadline order
        # (a down child's deadline advances too, so the healthy ones keep their weights'
        # proportions) until one is up; none up -> -1 ("no available server", 503).
        cdef int child
        if self.n_up <= 0:
            return -1
        while True:
            child = self.pick()
            if not (self.state[child] & ST_DOWN):
                return child

    def next(self):
        """Pick the next child index (-1 when no child has a positive weight)."""
        return self.pick()

    def next_up(self):
        """Pick the next child index among those not marked down (-1 when none is up)."""
        return self.pick_up()

    def set_up(self, int child, bint up):
        """Mark child ``child`` up or down (health checks); returns whether any child with
        a positive weight is up (Traefik: a balancer is UP while its status set is not
        empty; weight 0 children never enter it)."""
        if not 0 <= child < self.count:
            raise IndexError(child)
        cdef unsigned char st = self.state[child]
        if st & ST_IN_HEAP and bool(st & ST_DOWN) == bool(up):
            self.n_up += 1 if up else -1
        self.state[child] = (st & ~ST_DOWN) if up else (st | ST_DOWN)
        return self.n_up > 0


cdef uint64_t FNV64_OFFSET = 14695981039346656037ULL
cdef uint64_t FNV64_PRIME = 1099511628211ULL


cdef inline uint64_t _fnv1a(uint64_t h, const char *p, Py_ssize_t n) noexcept:
    # Go's hash/fnv New64a, continued over more bytes (hashing a then b == hashing a + b)
    cdef Py_ssize_t i
    for i in range(n):
        h ^= <unsigned char> p[i]
        h *= FNV64_PRIME
    return h


cdef inline double _hrw_score(uint64_t h, double weight) noexcept:
    # getNodeScore for the health-checked pick (pick() keeps its own copy of this arithmetic)
    cdef double score = <double> h / 18446744073709551616.0
    if score == 0.0:
        return 0.0
    if score == 1.0:
        return -INFINITY
    return (1.0 / -log(score)) * weight


@cython.final
cdef class HRW:
    """Highest random weight as Traefik's ``hrw.Balancer``: for a client IP ``src`` each child
    scores ``weight / -ln(fnv64a(src + name) / 2**64)`` (getNodeScore) and the highest score
    wins (the first child on ties: Traefik keeps a strictly greater one). ``names`` are
    Traefik's handler names: a server's URL in a load balancer, a child service's name in a
    highestRandomWeight service. A child with weight <= 0 is never picked (Traefik's Add
    ignores it)."""

    def __cinit__(self, names, weights):
        cdef int count = len(names)
        cdef int i
        self.n = count
        self.names = [n.encode() if isinstance(n, str) else bytes(n) for n in names]
        self.name_ptr = <const char **> malloc(max(count, 1) * sizeof(char *))
        self.name_len = <Py_ssize_t *> malloc(max(count, 1) * sizeof(Py_ssize_t))
        self.weight = <double *> malloc(max(count, 1) * sizeof(double))
        self.down = <unsigned char *> calloc(max(count, 1), sizeof(unsigned char))
        if not self.name_ptr or not self.name_len or not self.weight or not self.down:
            raise MemoryError()
        for i in range(count):
            self.name_ptr[i] = PyBytes_AS_STRING(self.names[i])
            self.name_len[i] = PyBytes_GET_SIZE(self.names[i])
            w = weights[i]
            self.weight[i] = 1.0 if w is None else <double> w    # Traefik: default weight 1

    def __dealloc__(self):
        free(self.name_ptr)
        free(self.name_len)
        free(self.weight)
        free(self.down)

    cdef int pick(self, const char *src, Py_ssize_t n) noexcept:
        cdef uint64_t h0 = _fnv1a(FNV64_OFFSET, src, n), h
        cdef double best = 0.0, score, s
        cdef int i, chosen = -1
        for i in range(self.n):
            if self.weight[i] <= 0:
                continue
            h = _fnv1a(h0, self.name_ptr[i], self.name_len[i])
            # float64(sum) / 2**64 (C's uint64 -> double rounds to nearest, as Go's does)
            score = <double> h / 18446744073709551616.0
            if score == 0.0:
                s = 0.0                     # Go: 1 / -ln(0) = 1 / +Inf = 0
            elif score == 1.0:
                s = -INFINITY               # Go: 1 / -ln(1) = 1 / -0 = -Inf
            else:
                s = (1.0 / -log(score)) * self.weight[i]
            if s > best:
                best = s
                chosen = i
        return chosen

    cdef int pick_up(self, const char *src, Py_ssize_t n) noexcept:
        # pick() over the children not marked down (Traefik's hrw nextServer skips the
        # handlers missing from its status set); a separate loop so pick() stays as it was
        cdef uint64_t h0 = _fnv1a(FNV64_OFFSET, src, n)
        cdef double best = 0.0, s
        cdef int i, chosen = -1
        for i in range(self.n):
            if self.weight[i] <= 0 or self.down[i]:
                continue
            s = _hrw_score(_fnv1a(h0, self.name_ptr[i], self.name_len[i]), self.weight[i])
            if s > best:
                best = s
                chosen = i
        return chosen

    def next(self, bytes src):
        """The child index for client IP ``src`` (e.g. b"10.0.0.1"), -1 when none can be."""
        return self.pick(PyBytes_AS_STRING(src), PyBytes_GET_SIZE(src))

    def next_up(self, bytes src):
        """As ``next``, among the children not marked down."""
        return self.pick_up(PyBytes_AS_STRING(src), PyBytes_GET_SIZE(src))

    def set_up(self, int child, bint up):
        """Mark a child up or down; returns whether any child with a positive weight is up."""
        if not 0 <= child < self.n:
            raise IndexError(child)
        self.down[child] = 0 if up else 1
        return any(self.weight[i] > 0 and not self.down[i] for i in range(self.n))


@cython.final
cdef class P2C:
    """Power of two choices: fewer in-flight requests wins (Traefik's ``p2c`` strategy)."""

    def __cinit__(self, int n, seed=None):
        self.n = n
        self.inflight = <int *> malloc(max(n, 1) * sizeof(int))
        self.down = <unsigned char *> calloc(max(n, 1), sizeof(unsigned char))
        self.up_list = <int *> malloc(max(n, 1) * sizeof(int))
        if not self.inflight or not self.down or not self.up_list:
            raise MemoryError()
        for i in range(n):
            self.inflight[i] = 0
            self.up_list[i] = i
        self.n_up = n
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        self.rng = (<unsigned long long> seed) | 1

    def __dealloc__(self):
        free(self.inflight)
        free(self.down)
        free(self.up_list)

    cdef inline unsigned long long _rand(self) noexcept:
        # xorshift64*: a fast PRNG is enough to spread load; nothing here is secret.
        cdef unsigned long long x = self.rng
        x ^= x >> 12
        x ^= x << 25
        x ^= x >> 27
        self.rng = x
        return x * 2685821657736338717ULL

    cdef int pick(self) noexcept:
        cdef int a, b
        if self.n <= 0:
            return -1
        if self.n == 1:
            a = 0
        else:
            a = <int> (self._rand() % <unsigned long long> self.n)
            b = <int> (self._rand() % <unsigned long long> (self.n - 1))
            if b >= a:
                b += 1
            if self.inflight[b] < self.inflight[a]:
                a = b
        self.inflight[a] += 1
        return a

    cdef int pick_up(self) noexcept:
        # Traefik's p2c with health checks: two distinct random children among the healthy
        # ones, fewer in flight wins; none healthy -> -1
        cdef int a, b, ia, ib
        if self.n_up <= 0:
            return -1
        if self.n_up == 1:
            a = self.up_list[0]
        else:
            ia = <int> (self._rand() % <unsigned long long> self.n_up)
            ib = <int> (self._rand() % <unsigned long long> (self.n_up - 1))
            if ib >= ia:
                ib += 1
            a = self.up_list[ia]
            b = self.up_list[ib]
            if self.inflight[b] < self.inflight[a]:
                a = b
        self.inflight[a] += 1
        return a

    cdef void release(self, int child) noexcept:
        if 0 <= child < self.n and self.inflight[child] > 0:
            self.inflight[child] -= 1

    def next(self):
        """Pick a child index; the caller must ``done(i)`` when its request ends."""
        return self.pick()

    def next_up(self):
        """As ``next``, among the children not marked down (-1 when none is up)."""
        return self.pick_up()

    def set_up(self, int child, bint up):
        """Mark a child up or down; returns whether any child is up."""
        cdef int i
        if not 0 <= child < self.n:
            raise IndexError(child)
        self.down[child] = 0 if up else 1
        self.n_up = 0
        for i in range(self.n):
            if not self.down[i]:
                self.up_list[self.n_up] = i
                self.n_up += 1
        return self.n_up > 0

    def done(self, int child):
        self.release(child)

    def in_flight(self, int child):
        return self.inflight[child]


# ---- sticky cookies -------------------------------------------------------------------

def cookie_name(name, service_name):
    """Traefik's cookie name: the configured one sanitised (RFC 2616 token characters, others
    -> '_'), or "_" + the first 5 hex digits of sha1("_TRAEFIK_BACKEND_" + service name)
    (pkg/server/cookie/cookie.go, cookieNameLength = 6)."""
    if name:
        out = []
        for ch in name:
            if ch.isascii() and (ch.isalnum() or ch in "!#$%&'*+-.^`|~"):
                out.append(ch)
            else:
                out.append("_")
        return "".join(out)
    return ("_" + hashlib.sha1(("_TRAEFIK_BACKEND_" + service_name).encode()).hexdigest())[:6]


def sticky_value(handler_name):
    """Traefik v3's cookie value: sha256 of the handler name (a server URL, or a child
    service name in a weighted service), hex, first 16 characters (sticky.go sha256Hash)."""
    return hashlib.sha256(handler_name.encode()).hexdigest()[:16]


def _fnv64(text):
    # Go's hash/fnv New64 (FNV-1, not 1a), formatted with strconv.FormatUint(h, 16).
    h = 0xcbf29ce484222325
    for byte in text.encode():
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        h ^= byte
    return "%x" % h


@cython.final
cdef class Sticky:
    """Cookie -> child lookup for one service's sticky sessions."""

    def __cinit__(self, str name, handler_names):
        self.name = name.encode("latin-1")
        self.by_value = {}
        self.legacy_values = {}
        self.values = []
        for i, hname in enumerate(handler_names):
            v = sticky_value(hname)
            self.values.append(v.encode())
            self.by_value[v.encode()] = i
            # Traefik's compatibility map: raw name, fnv(name), fnv(fnv(name)).
            f = _fnv64(hname)
            for legacy in (hname, f, _fnv64(f)):
                self.legacy_values.setdefault(legacy.encode("latin-1"), i)

    cdef int lookup(self, bytes cookie_header, bint *rewrite):
        # Find our cookie in a Cookie header ("a=b; c=d"); -1 when absent or unknown.
        cdef const char *s = PyBytes_AS_STRING(cookie_header)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(cookie_header)
        cdef const char *nm = PyBytes_AS_STRING(self.name)
        cdef Py_ssize_t nl = PyBytes_GET_SIZE(self.name)
        cdef Py_ssize_t i = 0, start, eq, end
        rewrite[0] = False
        while i < n:
            while i < n and (s[i] == b' ' or s[i] == b'\t' or s[i] == b';'):
                i += 1
            start = i
            while i < n and s[i] != b';':
                i += 1
            end = i
            eq = start
            while eq < end and s[eq] != b'=':
                eq += 1
            if eq < end and eq - start == nl and cookie_header[start:eq] == self.name:
                value = cookie_header[eq + 1:end].strip()
                if len(value) >= 2 and value[:1] == b'"' and value[-1:] == b'"':
                    value = value[1:-1]
                child = self.by_value.get(value)
                if child is not None:
                    return child
                child = self.legacy_values.get(value)
                if child is not None:
                    rewrite[0] = True
                    return child
                return -1
        return -1

    def find(self, bytes cookie_header):
        """(child index or -1, whether the cookie uses a legacy value and must be rewritten)."""
        cdef bint rewrite = False
        cdef int child = self.lookup(cookie_header, &rewrite)
        return child, bool(rewrite)
