# cython: language_level=3
"""The request-phase half of tracing, in C: the sampling decision and the ``traceparent``
written into the backend request (pyroute/observability/tracing.py's ``TraceStart`` is this
class with Traefik's names attached).

Per request: the client's ``traceparent`` is looked up in the parsed head (no Python object
when it is absent) and validated as Go's propagation.TraceContext does; the decision is
Traefik's ParentBased(TraceIDRatioBased(sampleRate)): the client's sampled flag, else the new
trace id's low 64 bits against the rate's bound (one integer compare). The ids come from a
xoshiro256** generator seeded from os.urandom in every process (again after a fork): trace
ids need to be unique, not secret (the OpenTelemetry SDK draws them from random.getrandbits).
A request not sampled leaves nothing for the exporter: what it costs is the ids, one 55-byte
header value and the header edit, which Traefik makes too (the non-recording span's context
is injected, so the backend continues the same trace). Only a sampled request calls
``sampled()`` (Python: the record the exporter reads).
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from pyroute._engine.exchange cimport Exchange
from pyroute._engine.http1 cimport Request, Field
import os

cdef uint64_t _state[4]
cdef const char *HEX = b"0123456789abcdef"
cdef uint64_t LIMIT64 = 0xFFFFFFFFFFFFFFFF


def _seed():
    cdef bytes b = os.urandom(32)
    memcpy(_state, PyBytes_AS_STRING(b), 32)
    if not (_state[0] | _state[1] | _state[2] | _state[3]):
        _state[0] = 1


_seed()
# each worker its own sequence (a forked child would repeat its parent's ids)
os.register_at_fork(after_in_child=_seed)


cdef inline uint64_t _rotl(uint64_t x, int k) noexcept:
    return (x << k) | (x >> (64 - k))


cdef uint64_t _next() noexcept:
    # xoshiro256** (Blackman, Vigna)
    cdef uint64_t result = _rotl(_state[1] * 5, 7) * 9
    cdef uint64_t t = _state[1] << 17
    _state[2] ^= _state[0]
    _state[3] ^= _state[1]
    _state[1] ^= _state[2]
    _state[0] ^= _state[3]
    _state[2] ^= t
    _state[3] = _rotl(_state[3], 45)
    return result


def random_id(int bits):
    """A random id of 64 or 128 bits (tests: the generator pyroute's ids come from)."""
    if bits == 128:
        return (<object> _next() << 64) | _next()
    return _next()


cdef inline bint _is_hex(const unsigned char *p, Py_ssize_t n) noexcept:
    # lower-case hex digits only, as Go's TraceContext (and parse_traceparent)
    cdef Py_ssize_t i
    for i in range(n):
        if not (48 <= p[i] <= 57 or 97 <= p[i] <= 102):
            return False
    return True


cdef inline uint64_t _hex64(const unsigned char *p, Py_ssize_t n) noexcept:
    cdef uint64_t v = 0
    cdef Py_ssize_t i
    for i in range(n):
        v = (v << 4) | <uint64_t> (p[i] - 48 if p[i] <= 57 else p[i] - 87)
    return v


cdef inline bint _space(unsigned char c) noexcept:
    return c == 32 or 9 <= c <= 13


cdef inline Py_ssize_t _find(Request req, const char *lname, Py_ssize_t n) noexcept:
    # the index of the first header field named ``lname`` (lower case), -1: none
    cdef const unsigned char *raw = <const unsigned char *> PyBytes_AS_STRING(req.raw)
    cdef Field *f
    cdef Py_ssize_t k, i
    cdef unsigned char c
    for k in range(req.n_fields):
        f = &req.fields[k]
        if f.name.stop - f.name.start != n:
            continue
        for i in range(n):
            c = raw[f.name.start + i]
            if 65 <= c <= 90:
                c += 32
            if c != <unsigned char> lname[i]:
                break
        else:
            return k
    return -1


cdef inline void _put_hex(char *out, uint64_t v, int digits) noexcept:
    cdef int i
    for i in range(digits - 1, -1, -1):
        out[i] = HEX[v & 15]
        v >>= 4


cdef class TraceDecider:
    """``on_request(ex)`` of a traced root router (see the module docstring); ``bound``: the
    TraceIDRatioBased bound (round(sampleRate * 2**64)); subclasses define
    ``record(ex, trace_id, parent_id, client_id, tracestate, sampled)``, called for a sampled
    request, and for every request when ``auth`` is set (a forwardAuth below: its auth
    request carries the trace's context, sampled or not)."""

    cdef public bint auth
    cdef uint64_t _bound
    cdef int _mode                        # 0: never, 1: below _bound, 2: always
    cdef object _bound_value

    @property
    def bound(self):
        return self._bound_value

    @bound.setter
    def bound(self, value):
        self._bound_value = value
        if value <= 0:
            self._mode = 0
        elif value > LIMIT64:
            self._mode = 2
        else:
            self._mode = 1
            self._bound = value

    def on_request(self, Exchange ex):
        cdef Request req = ex.req
        cdef const unsigned char *raw = <const unsigned char *> PyBytes_AS_STRING(req.raw)
        cdef const unsigned char *p
        cdef Py_ssize_t k, s, e, n, i, dashes
        cdef Py_ssize_t d[4]
        cdef uint64_t hi = 0, lo = 0, parent = 0, client
        cdef bint valid = False, sampled, sent
        cdef bytes value
        cdef char *out
        state = None
        k = _find(req, b"traceparent", 11)
        sent = k >= 0
        if k >= 0:
            s = req.fields[k].value.start
            e = req.fields[k].value.stop
            while s < e and _space(raw[s]):
                s += 1
            while e > s and _space(raw[e - 1]):
                e -= 1
            p = raw + s
            n = e - s
            dashes = 0
            for i in range(n):
                if p[i] == 45:
                    if dashes < 4:
                        d[dashes] = i
                    dashes += 1
            # version-trace id-span id-flags (more parts only after a version other than 00)
            if dashes >= 3:
                if dashes == 3:
                    d[3] = n
                valid = (d[0] == 2 and _is_hex(p, 2) and not (p[0] == 102 and p[1] == 102)
                         and not (p[0] == 48 and p[1] == 48 and dashes != 3)
                         and d[1] - d[0] - 1 == 32 and d[2] - d[1] - 1 == 16
                         and d[3] - d[2] - 1 == 2
                         and _is_hex(p + d[0] + 1, 32) and _is_hex(p + d[1] + 1, 16)
                         and _is_hex(p + d[2] + 1, 2))
            if valid:
                hi = _hex64(p + d[0] + 1, 16)
                lo = _hex64(p + d[0] + 17, 16)
                parent = _hex64(p + d[1] + 1, 16)
                valid = (hi | lo) != 0 and parent != 0
            if valid:
                sampled = (_hex64(p + d[2] + 1, 2) & 1) != 0
                k = _find(req, b"tracestate", 10)
                if k >= 0:
                    state = raw[req.fields[k].value.start:req.fields[k].value.stop]
        if not valid:
            parent = 0
            lo = _next()
            hi = _next()
            if not (hi | lo):
                lo = 1
            sampled = self._mode == 2 or (self._mode == 1 and lo < self._bound)
            if not sent:
                sent = _find(req, b"tracestate", 10) >= 0
        client = _next() or 1
        if sampled or self.auth:
            # only a sampled request is exported: an unsampled one leaves nothing to read
            # (but forwardAuth's traceparent, on the routers that have one)
            self.record(ex, (<object> hi << 64) | lo, parent, client, state, sampled)
        # Traefik injects the ReverseProxy span's context, sampled or not (a non-recording
        # span still has a valid context): the backend continues the same trace
        value = PyBytes_FromStringAndSize(NULL, 55)
        out = PyBytes_AS_STRING(value)
        memcpy(out, b"00-", 3)
        _put_hex(out + 3, hi, 16)
        _put_hex(out + 19, lo, 16)
        out[35] = b'-'
        _put_hex(out + 36, client, 16)
        memcpy(out + 52, b"-01" if sampled else b"-00", 3)
        if sent:
            # the client's own trace headers are replaced, not forwarded beside ours
            rm = ex.remove_headers
            if rm is None:
                ex.remove_headers = [b"traceparent", b"tracestate"]
            else:
                rm.extend((b"traceparent", b"tracestate"))
        if ex.set_headers is None:
            ex.set_headers = [(b"traceparent", value)]
        else:
            ex.set_headers.append((b"traceparent", value))
        if state:
            ex.set_headers.append((b"tracestate", state))
        return None
