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
from libc.string cimport memset
cdef extern from "<sched.h>" nogil:
    int sched_yield()
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

# circuit breakers: a directory of regions, each a breaker's state and statistics
DEF REGIONS = 128
DEF DIR_WORDS = 2                   # key, last use (ns)
DEF HEADER_WORDS = 8                # state, until, next check, recovery start, ratio, lock
DEF CODES = 500                     # status codes 100..599
DEF CNT_BUCKETS = 10                # oxy: 10 buckets of 1 s
DEF CNT_WORDS = 3 + CODES           # tag (second), total, network errors, codes
DEF HIST_SUBS = 6                   # oxy: 6 sub-histograms rolled every 10 s
# oxy's latency histogram: hdrhistogram-go New(1 us, 1 h, 2 significant figures) — 256
# sub-buckets (exact below 256 us), then 128 per power of two (1/128: oxy's "1% precision"),
# 25 buckets, so (25 + 1) * 128 counts; values from 2^32 us on are refused, as HDR's are
DEF HIST_BINS = 3328
DEF HIST_SUB_HALF_MAG = 7           # log2(subBucketHalfCount)
DEF HIST_WORDS = 1 + HIST_BINS      # tag (10 s period), bins
DEF REGION_WORDS = HEADER_WORDS + CNT_BUCKETS * CNT_WORDS + HIST_SUBS * HIST_WORDS

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
    cdef int64_t *directory
    cdef int64_t *regions
    cdef uint64_t bucket_mask
    cdef uint64_t flight_mask
    cdef public int worker               # this process's worker index (its in-flight share)

    def __init__(self, int bucket_bits=17, int flight_bits=14):
        cdef uint64_t nb = 1 << bucket_bits, nf = 1 << flight_bits
        cdef Py_ssize_t size = (nb * BUCKET_WORDS + nf * FLIGHT_WORDS
                                + REGIONS * (DIR_WORDS + REGION_WORDS)) * 8
        # anonymous + shared: inherited by every process forked after this; pages are only
        # backed once touched
        self.map = _mmap.mmap(-1, size, flags=_mmap.MAP_SHARED | _mmap.MAP_ANONYMOUS)
        cdef unsigned char[::1] view = self.map
        self.buckets = <int64_t *> &view[0]
        self.flights = self.buckets + nb * BUCKET_WORDS
        self.directory = self.flights + nf * FLIGHT_WORDS
        self.regions = self.directory + REGIONS * DIR_WORDS
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

    cdef int64_t *region(self, int64_t key) except NULL:
        # a breaker's region: its own, else a free one, else one unused for a minute (a
        # breaker a reload dropped), zeroed for its new owner
        cdef int64_t now = _now_ns()
        cdef uint64_t i, idx
        cdef int64_t *d
        cdef int64_t k
        for i in range(REGIONS):
            idx = (<uint64_t> key + i) % REGIONS
            d = self.directory + idx * DIR_WORDS
            k = pr_load(d)
            if k == key:
                pr_store(d + 1, now)
                return self.regions + idx * REGION_WORDS
        for i in range(REGIONS):
            idx = (<uint64_t> key + i) % REGIONS
            d = self.directory + idx * DIR_WORDS
            k = pr_load(d)
            if k == 0 or pr_load(d + 1) + 60000000000 <= now:
                if pr_cas(d, k, key):
                    memset(self.regions + idx * REGION_WORDS, 0, REGION_WORDS * 8)
                    pr_store(d + 1, now)
                    return self.regions + idx * REGION_WORDS
                if pr_load(d) == key:
                    return self.regions + idx * REGION_WORDS
        raise MemoryError("no room left for another circuit breaker (%d in use)" % REGIONS)

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


cdef inline void _lock(int64_t *word) noexcept nogil:
    # taken only on state changes and during recovery (never per request in standby)
    while not pr_cas(word, 0, 1):
        sched_yield()


cdef inline void _unlock(int64_t *word) noexcept nogil:
    pr_store(word, 0)


cdef inline int _bin(int64_t v) noexcept nogil:
    # latency (us) -> HDR countsIndexFor(v): bucket = bitLen(v | 255) - 8, sub-bucket
    # v >> bucket, index (bucket + 1) * 128 + sub - 128; -1 when HDR cannot record it
    cdef int bucket = 0
    cdef int64_t m, idx
    if v < 0:
        return -1
    m = (v | 255) >> 8
    while m:
        m >>= 1
        bucket += 1
    idx = ((<int64_t> (bucket + 1)) << HIST_SUB_HALF_MAG) + (v >> bucket) - 128
    if idx >= HIST_BINS:
        return -1
    return <int> idx


cdef inline int64_t _bin_high(int idx) noexcept nogil:
    # HDR highestEquivalentValue(valueFromIndex(bucket, sub)) of counts index ``idx``
    cdef int bucket = (idx >> HIST_SUB_HALF_MAG) - 1
    cdef int64_t sub
    if bucket < 0:
        bucket = 0
    sub = idx - (bucket << HIST_SUB_HALF_MAG)
    return ((sub + 1) << bucket) - 1


# breaker states (oxy cbreaker)
DEF STANDBY = 0
DEF TRIPPED = 1
DEF RECOVERING = 2


@cython.final
cdef class Breaker:
    """One circuitBreaker's state and statistics (oxy's cbreaker and memmetrics.RTMetrics),
    in the shared arena: the instance's traffic through it, whichever worker served it.

    Per request: ``admit()`` (standby: one atomic load) and, once it passed, ``record``
    (atomic adds into the current second's counters and the current latency histogram); the
    condition is evaluated by the one process that wins the check every ``checkPeriod``."""
    cdef Arena arena
    cdef int64_t *r
    cdef int64_t check_period, fallback, recovery

    def __init__(self, bytes name, double check_period, double fallback, double recovery):
        self.arena = arena()
        self.r = self.arena.region(_hash(b"cbreaker", name))
        self.check_period = <int64_t> (check_period * 1e9)
        self.fallback = <int64_t> (fallback * 1e9)
        self.recovery = <int64_t> (recovery * 1e9)

    def admit(self):
        """False when the fallback answers instead (tripped, or held back while
        recovering)."""
        cdef int64_t *r = self.r
        cdef int64_t now, state, start, packed, allowed, denied
        cdef double target, ratio
        if pr_load(r) == STANDBY:
            return True
        now = _now_ns()
        _lock(r + 5)
        state = pr_load(r)
        if state == STANDBY:
            _unlock(r + 5)
            return True
        if state == TRIPPED:
            if now < pr_load(r + 1):
                _unlock(r + 5)
                return False
            # setRecovering: a ratio of requests let through, rising over recoveryDuration
            pr_store(r, RECOVERING)
            pr_store(r + 1, now + self.recovery)
            pr_store(r + 3, now)
            pr_store(r + 4, 0)
        if now > pr_load(r + 1):
            pr_store(r, STANDBY)
            _unlock(r + 5)
            return True
        # ratioController.allowRequest
        packed = pr_load(r + 4)
        allowed = packed >> 32
        denied = packed & 0xffffffff
        target = (0.5 / self.recovery) * (now - pr_load(r + 3)) if self.recovery else 1.0
        ratio = (allowed + 1.0) / (allowed + 1.0 + denied)
        if ratio < target:
            pr_store(r + 4, ((allowed + 1) << 32) | denied)
            _unlock(r + 5)
            return True
        pr_store(r + 4, (allowed << 32) | (denied + 1))
        _unlock(r + 5)
        return False

    def record(self, int code, double latency_us):
        """Count a request the breaker let through; True when this process should evaluate
        the condition now (the check period passed and it won the check)."""
        cdef int64_t *r = self.r
        cdef int64_t now = _now_ns()
        cdef int64_t sec = now // 1000000000
        cdef int64_t period = sec // 10
        cdef int64_t *b = r + HEADER_WORDS + (sec % CNT_BUCKETS) * CNT_WORDS
        cdef int64_t *h = r + HEADER_WORDS + CNT_BUCKETS * CNT_WORDS \
            + (period % HIST_SUBS) * HIST_WORDS
        cdef int64_t tag, due
        cdef int idx
        tag = pr_load(b)
        if tag != sec and pr_cas(b, tag, sec):
            memset(b + 1, 0, (CNT_WORDS - 1) * 8)      # a new second in this bucket
        pr_add(b + 1, 1)
        if code == 502 or code == 504:
            pr_add(b + 2, 1)                          # oxy: a network error
        if 100 <= code < 600:
            pr_add(b + 3 + code - 100, 1)
        tag = pr_load(h)
        if tag != period and pr_cas(h, tag, period):
            memset(h + 1, 0, (HIST_WORDS - 1) * 8)
        idx = _bin(<int64_t> latency_us)
        if idx >= 0:
            pr_add(h + 1 + idx, 1)              # (HDR: "too large to be recorded")
        due = pr_load(r + 2)
        if now < due:
            return False
        return pr_cas(r + 2, due, now + self.check_period)

    def state(self):
        return ("standby", "tripped", "recovering")[pr_load(self.r)]

    def trip(self):
        """The condition held: tripped for fallbackDuration, statistics reset (oxy)."""
        cdef int64_t *r = self.r
        cdef int64_t now = _now_ns()
        _lock(r + 5)
        if pr_load(r) != TRIPPED:
            pr_store(r + 1, now + self.fallback)
            pr_store(r, TRIPPED)
            memset(r + HEADER_WORDS, 0, (REGION_WORDS - HEADER_WORDS) * 8)
        _unlock(r + 5)

    def tripped(self):
        return pr_load(self.r) == TRIPPED

    cdef int64_t _sum(self, int which):
        cdef int64_t sec = _now_ns() // 1000000000
        cdef int64_t total = 0, tag
        cdef int i
        cdef int64_t *b
        for i in range(CNT_BUCKETS):
            b = self.r + HEADER_WORDS + i * CNT_WORDS
            tag = pr_load(b)
            if sec - CNT_BUCKETS < tag <= sec:
                total += pr_load(b + which)
        return total

    def total(self):
        return self._sum(1)

    def network_errors(self):
        return self._sum(2)

    def code_ratio(self, int start_a, int end_a, int start_b, int end_b):
        """oxy ResponseCodeRatio: codes in [start_a, end_a) over codes in [start_b, end_b)."""
        cdef int64_t a = 0, b = 0, n
        cdef int code
        for code in range(100, 600):
            if (start_a <= code < end_a) or (start_b <= code < end_b):
                n = self._sum(3 + code - 100)
                if start_a <= code < end_a:
                    a += n
                if start_b <= code < end_b:
                    b += n
        return a / <double> b if b else 0.0

    def latency_at(self, double q):
        """HDR's ValueAtQuantile(q) over the rolling histogram, in us (0 when empty)."""
        cdef int64_t counts[HIST_BINS]
        cdef int64_t total = 0, want, seen = 0, period = _now_ns() // 10000000000, tag
        cdef int i, j
        cdef int64_t *h
        memset(counts, 0, sizeof(counts))
        for i in range(HIST_SUBS):
            h = self.r + HEADER_WORDS + CNT_BUCKETS * CNT_WORDS + i * HIST_WORDS
            tag = pr_load(h)
            if period - HIST_SUBS < tag <= period:
                for j in range(HIST_BINS):
                    counts[j] += pr_load(h + 1 + j)
        for j in range(HIST_BINS):
            total += counts[j]
        if q > 100:
            q = 100
        want = <int64_t> ((q / 100.0) * total + 0.5)
        if total == 0:
            return 0
        if want == 0:
            return 0                 # HDR: no count to reach, value 0 (q 0 included)
        for j in range(HIST_BINS):
            seen += counts[j]
            if seen >= want:
                return _bin_high(j)
        return 0
