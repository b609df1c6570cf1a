# cython: language_level=3
"""The per-request half of the Prometheus / OTLP metrics, in C.

``Counts.observe(ex)`` runs once per finished exchange (Env.observers). It reads the
exchange's C fields, resolves code, method and protocol (Traefik's getMethod and
getRequestProtocol) to small ints from the parsed head's spans, finds the series of (entry
point, router obs, service, code, method, protocol) in an open-addressing table keyed by the
objects' identities and those ints, and adds to that series' C arrays: no tuple, no dict, no
Python number per request. A key's first exchange since the last ``take()`` builds its Python
key once.

What needs Python objects all the same goes to ``observe_slow(ex, obs, service)`` (the
subclass, pyroute/observability/metrics.py's Recorder): TLS exchanges (version and cipher come
from pyOpenSSL) and header labels (Prometheus' headerLabels: the values are part of the key).

``take()`` hands the series over as the worker's deltas, the format the master's Store reads:
{(entry point, routers, service, code, method, protocol, header values, tls): [requests,
duration sum, request bytes, response bytes, n bucket counts, min, max]}, and starts again
empty (the table too, so that a reload's old routes are not pinned).
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memcmp, memset
from pyroute._engine.exchange cimport Exchange
from pyroute._engine.http1 cimport Request, Field, M_OTHER

# Traefik getMethod: the methods of RFC 7231/5789/7540 by the engine's Method ids (M_GET ..
# M_PATCH), then PRI; index 0: anything else
METHOD_NAMES = ("EXTENSION_METHOD", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
                "OPTIONS", "TRACE", "PATCH", "PRI")
cdef enum:
    METHOD_PRI = 10

# Traefik getRequestProtocol's answers
PROTO_NAMES = ("http", "websocket", "sse", "grpc", "grpc-web")
cdef enum:
    P_HTTP = 0
    P_WEBSOCKET = 1
    P_SSE = 2
    P_GRPC = 3
    P_GRPC_WEB = 4

cdef tuple _METHOD_NAMES = METHOD_NAMES
cdef tuple _PROTO_NAMES = PROTO_NAMES
cdef tuple EP_ONLY = ()       # the routers of a request no router took (Traefik's default handler)
cdef double INF = float("inf")
cdef Py_ssize_t FIRST_CAP = 64


cdef inline bint _space(unsigned char c) noexcept:
    return c == 32 or 9 <= c <= 13


cdef inline unsigned char _lower(unsigned char c) noexcept:
    return c + 32 if 65 <= c <= 90 else c


cdef bint _has_token(const unsigned char *p, Py_ssize_t start, Py_ssize_t stop,
                     const char *token, Py_ssize_t tlen) noexcept:
    # Traefik containsHeader: comma-separated items, trimmed, lower-cased, compared
    cdef Py_ssize_t a, b, i, k
    while start <= stop:
        b = start
        while b < stop and p[b] != 44:           # ','
            b += 1
        a, i = start, b
        while a < i and _space(p[a]):
            a += 1
        while i > a and _space(p[i - 1]):
            i -= 1
        if i - a == tlen:
            for k in range(tlen):
                if _lower(p[a + k]) != <unsigned char> token[k]:
                    break
            else:
                return True
        start = b + 1
    return False


cdef inline Py_ssize_t _find(Request req, const unsigned char *raw, const char *lname,
                             Py_ssize_t n) noexcept:
    # the first header field named ``lname`` (lower case), -1: none (Request.header's match)
    cdef Field *f
    cdef Py_ssize_t k, i
    for k in range(req.n_fields):
        f = &req.fields[k]
        if f.name.stop - f.name.start != n:
            continue
        for i in range(n):
            if _lower(raw[f.name.start + i]) != <unsigned char> lname[i]:
                break
        else:
            return k
    return -1


cdef int _protocol(Request req) noexcept:
    # Traefik getRequestProtocol: websocket, sse, grpc-web, grpc, else http
    cdef const unsigned char *raw = <const unsigned char *> PyBytes_AS_STRING(req.raw)
    cdef Py_ssize_t k, s, e
    if req._upgrade.start >= 0 and _has_token(raw, req._upgrade.start, req._upgrade.stop,
                                              b"websocket", 9):
        return P_WEBSOCKET
    k = _find(req, raw, b"accept", 6)
    if k >= 0 and _has_token(raw, req.fields[k].value.start, req.fields[k].value.stop,
                             b"text/event-stream", 17):
        return P_SSE
    k = _find(req, raw, b"content-type", 12)
    if k >= 0:
        s = req.fields[k].value.start
        e = req.fields[k].value.stop
        if e - s >= 16 and memcmp(raw + s, b"application/grpc", 16) == 0:
            if e - s >= 20 and memcmp(raw + s + 16, b"-web", 4) == 0:
                return P_GRPC_WEB
            return P_GRPC
    return P_HTTP


cdef int _method(Request req) except -1:
    if req.method_id != M_OTHER:
        return req.method_id
    return METHOD_PRI if req.get_method() == b"PRI" else 0


def protocol_name(req):
    """getRequestProtocol of a parsed Request (the same answer ``observe`` counts under)."""
    return _PROTO_NAMES[_protocol(<Request?> req)]


def method_name(req):
    return _METHOD_NAMES[_method(<Request?> req)]


cdef inline size_t _hash(void *ep, void *obs, void *service, int status, int method,
                         int proto) noexcept:
    cdef size_t h = <size_t> ep
    h = h * 0x9E3779B97F4A7C15ULL + <size_t> obs
    h = h * 0x9E3779B97F4A7C15ULL + <size_t> service
    h = h * 0x9E3779B97F4A7C15ULL + <size_t> (status << 8 | method << 3 | proto)
    return h ^ (h >> 29)


cdef class Counts:
    """Counts(bounds, minmax, slow): ``bounds`` the bucket bounds (ascending), ``minmax``
    OTLP's min and max kept, ``slow`` every exchange through ``observe_slow``."""

    def __cinit__(self):
        self.bounds = NULL
        self.table = NULL
        self.cnt = NULL
        self.flt = NULL
        self.cap = self.used = self.series_cap = 0

    def __dealloc__(self):
        PyMem_Free(self.bounds)
        PyMem_Free(self.table)
        PyMem_Free(self.cnt)
        PyMem_Free(self.flt)

    def __init__(self, bounds, bint minmax, bint slow):
        cdef Py_ssize_t i
        self.n = len(bounds)
        self.bounds = <double *> PyMem_Malloc((self.n + 1) * sizeof(double))
        if self.bounds == NULL:
            raise MemoryError()
        for i in range(self.n):
            self.bounds[i] = bounds[i]
        self.minmax = minmax
        self.slow = slow
        self.keys = []

    def observe(self, ex):
        """Env.observers: count a finished exchange."""
        self.count(<Exchange?> ex)

    cdef int count(self, Exchange ex) except -1:
        cdef Request req
        cdef Py_ssize_t i, j, n = self.n
        cdef long long *c
        cdef double *f
        cdef double took
        route = ex.route
        if route is None:
            # no router took it: Traefik's default handler, metered by the entry point's
            # observability.metrics switch
            if not ex.ep.metered:
                return 0
            obs = EP_ONLY
        else:
            obs = route.obs
            if obs is None:           # observability.metrics: false (or an internal router)
                return 0
        # Traefik meters a service in its load balancer, around each server's proxy
        # (pkg/server/service getLoadBalancerServiceHandler): the service series is the load
        # balancer the picked server belongs to, and a request no server took has none
        server = ex.server
        service = getattr(server, "service_name", "") if server is not None else ""
        if self.slow or ex.tls:
            self.observe_slow(ex, obs, service)
            return 0
        req = ex.req
        i = self._slot(ex.ep, obs, service, ex.status, _method(req), _protocol(req))
        took = ex.ended - ex.started
        c = self.cnt + i * (3 + n)
        c[0] += 1
        c[1] += ex.bytes_in           # the request body read (Traefik's capture readCounter)
        c[2] += ex.bytes_out          # the response body written (capture's Write count)
        j = 0
        while j < n and self.bounds[j] < took:       # le: the first bucket >= took
            j += 1
        if j < n:
            c[3 + j] += 1
        f = self.flt + i * 3
        f[0] += took
        if self.minmax:
            # the OTLP histogram's min and max (the Go SDK's explicit-bucket aggregation)
            if took < f[1]:
                f[1] = took
            if took > f[2]:
                f[2] = took
        return 0

    cdef Py_ssize_t _slot(self, object ep, object obs, object service, int status,
                          int method, int proto) except -1:
        cdef size_t h, mask
        cdef Slot *s
        cdef Py_ssize_t i
        if self.used * 2 >= self.cap:
            self._grow()
        mask = <size_t> (self.cap - 1)
        h = _hash(<void *> ep, <void *> obs, <void *> service, status, method, proto) & mask
        while True:
            s = &self.table[h]
            if s.series < 0:
                break
            if s.ep == <void *> ep and s.obs == <void *> obs and \
                    s.service == <void *> service and s.status == status and \
                    s.method == method and s.proto == proto:
                return s.series
            h = (h + 1) & mask
        # the key's first exchange since the last take(): its series and its Python key
        i = self.used
        if i >= self.series_cap:
            self._grow_series()
        s.ep = <void *> ep
        s.obs = <void *> obs
        s.service = <void *> service
        s.status = status
        s.method = method
        s.proto = proto
        s.series = i
        self.used = i + 1
        memset(self.cnt + i * (3 + self.n), 0, (3 + self.n) * sizeof(long long))
        self.flt[i * 3] = 0.0
        self.flt[i * 3 + 1] = INF
        self.flt[i * 3 + 2] = 0.0
        self.keys.append((ep, obs, service, status, method, proto))
        return i

    cdef int _grow(self) except -1:
        # the table doubles (rehashing what it holds); series indexes do not move
        cdef Py_ssize_t cap = self.cap * 2 if self.cap else FIRST_CAP
        cdef Slot *old = self.table
        cdef Slot *t = <Slot *> PyMem_Malloc(cap * sizeof(Slot))
        cdef Py_ssize_t k
        cdef size_t h, mask = <size_t> (cap - 1)
        if t == NULL:
            raise MemoryError()
        for k in range(cap):
            t[k].series = -1
        for k in range(self.cap):
            if old[k].series >= 0:
                h = _hash(old[k].ep, old[k].obs, old[k].service, old[k].status,
                          old[k].method, old[k].proto) & mask
                while t[h].series >= 0:
                    h = (h + 1) & mask
                t[h] = old[k]
        self.table = t
        self.cap = cap
        PyMem_Free(old)
        return 0

    cdef int _grow_series(self) except -1:
        cdef Py_ssize_t cap = self.series_cap * 2 if self.series_cap else FIRST_CAP // 2
        cdef long long *c = <long long *> PyMem_Realloc(self.cnt,
                                                        cap * (3 + self.n) * sizeof(long long))
        if c == NULL:
            raise MemoryError()
        self.cnt = c
        f = <double *> PyMem_Realloc(self.flt, cap * 3 * sizeof(double))
        if f == NULL:
            raise MemoryError()
        self.flt = f
        self.series_cap = cap
        return 0

    def observe_slow(self, ex, obs, service):
        # an abstract hook: pyroute.observability.metrics.Recorder (the only subclass) counts
        # what needs Python objects; a bare Counts is never built with ``slow`` or TLS on
        raise TypeError("Counts.observe_slow is Recorder's (pyroute.observability.metrics)")

    def take_counts(self, dict into):
        """Add the series counted since the last call to ``into`` (the deltas format, see the
        module docstring) and start again empty."""
        cdef Py_ssize_t i, j, n = self.n
        cdef long long *c
        cdef double *f
        cdef list acc
        for i in range(self.used):
            c = self.cnt + i * (3 + n)
            f = self.flt + i * 3
            ep, obs, service, status, method, proto = self.keys[i]
            acc = [c[0], f[0], c[1], c[2]]
            for j in range(n):
                acc.append(c[3 + j])
            acc.append(f[1])
            acc.append(f[2])
            key = (ep.name, obs, service, status, _METHOD_NAMES[method], _PROTO_NAMES[proto],
                   (), None)
            have = into.get(key)
            if have is None:
                into[key] = acc
            else:
                # equal keys from two slots (two servers' equal service names)
                for j in range(n + 4):
                    have[j] += acc[j]
                if acc[n + 4] < have[n + 4]:
                    have[n + 4] = acc[n + 4]
                if acc[n + 5] > have[n + 5]:
                    have[n + 5] = acc[n + 5]
        self.keys = []
        self.used = 0
        for i in range(self.cap):
            self.table[i].series = -1
        return into
