# cython: language_level=3
"""The access log line of a finished exchange, built in C: Traefik's JSON (logrus'
JSONFormatter: encoding/json, keys sorted, HTML characters escaped), CLF or genericCLF.

pyroute/observability/accesslog.py owns the file, the writer thread and the reports; this
module is what runs per request. ``Formatter.observe(ex)`` reads the exchange's C fields (and
the request head's spans) and appends the line to one growing byte buffer: no dict, no
json.dumps, no Python object per field. The writer thread takes the whole buffer with
``take()`` (under the GIL, so the loop never sees it half taken) and writes it with the GIL
released. Lines past ``limit`` are counted in ``dropped``, not waited for.

pyroute/observability/accesslog_ref.py is the same line in plain Python (the readable
spec); tests/test_accesslog_format.py checks that both agree on random exchanges.

Strings are written as Go writes a Go string (bytes): encoding/json escapes ``"``, ``\\``,
control characters, ``<``, ``>``, ``&``, U+2028 and U+2029, and writes ``\\ufffd`` for every
byte that is not part of valid UTF-8; CLF writes the bytes as they are.

Requests that need Python objects all the same: TLS (version, cipher and client subject come
from pyOpenSSL), header fields (``fields.headers`` not drop: names canonicalised, values
joined), a trusted peer's X-Forwarded-For, a ClientUsername.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdio cimport snprintf
from libc.string cimport memcpy, memchr
from libc.errno cimport errno, EINTR
from pyroute._engine.exchange cimport Exchange
from pyroute._engine.http1 cimport Request, Field
from pyroute._engine.conn cimport ClientConn

cdef extern from "<unistd.h>" nogil:
    ssize_t write(int fd, const void *buf, size_t n)

cdef extern from "<string.h>" nogil:
    void *memrchr(const void *s, int c, size_t n)

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    cdef struct tm:
        int tm_sec
        int tm_min
        int tm_hour
        int tm_mday
        int tm_mon
        int tm_year
        long tm_gmtoff
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_REALTIME
    int CLOCK_MONOTONIC
    tm *gmtime_r(const time_t *t, tm *out)
    tm *localtime_r(const time_t *t, tm *out)


cdef enum:
    F_JSON = 0
    F_COMMON = 1
    F_GENERIC = 2

cdef enum:
    M_KEEP = 0
    M_DROP = 1
    M_REDACT = 2

# bit numbers of the core fields (the order of CORE_KEYS below)
cdef enum:
    K_StartUTC = 0
    K_Duration
    K_RouterName
    K_ServiceAddr
    K_ServiceName
    K_ServiceURL
    K_ClientAddr
    K_ClientHost
    K_ClientPort
    K_ClientUsername
    K_GzipRatio
    K_StartLocal
    K_Overhead
    K_RetryAttempts
    K_TLSVersion
    K_TLSCipher
    K_TLSClientSubject
    K_RequestAddr
    K_RequestHost
    K_RequestPort
    K_RequestMethod
    K_RequestPath
    K_RequestProtocol
    K_RequestScheme
    K_RequestContentSize
    K_OriginDuration
    K_OriginContentSize
    K_OriginStatus
    K_DownstreamStatus
    K_DownstreamContentSize
    K_RequestCount
    K_entryPointName

# Traefik's defaultCoreKeys (logdata.go) plus entryPointName, in the K_* order
CORE_KEYS = ("StartUTC", "Duration", "RouterName", "ServiceAddr", "ServiceName", "ServiceURL",
             "ClientAddr", "ClientHost", "ClientPort", "ClientUsername", "GzipRatio",
             "StartLocal", "Overhead", "RetryAttempts", "TLSVersion", "TLSCipher",
             "TLSClientSubject", "RequestAddr", "RequestHost", "RequestPort", "RequestMethod",
             "RequestPath", "RequestProtocol", "RequestScheme", "RequestContentSize",
             "OriginDuration", "OriginContentSize", "OriginStatus", "DownstreamStatus",
             "DownstreamContentSize", "RequestCount", "entryPointName")

DEFAULT_LINES = 16384           # lines a worker holds when bufferingSize is 0

cdef const char *HEX = b"0123456789abcdef"
cdef const char *MONTHS = b"JanFebMarAprMayJunJulAugSepOctNovDec"
_MODES = {"keep": M_KEEP, "drop": M_DROP, "redact": M_REDACT}
_TLS_VERSIONS = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}
# Go's ReverseProxy drops hop-by-hop headers before they reach the ResponseWriter (origin_);
# the lines Go's server writes itself are not in the handler's header map (downstream_)
_HOP_BY_HOP = frozenset((b"connection", b"proxy-connection", b"keep-alive", b"te",
                         b"trailer", b"transfer-encoding", b"upgrade", b"proxy-authenticate",
                         b"proxy-authorization"))
_SERVER_ADDED = frozenset((b"connection", b"keep-alive"))
# the bytes a JSON string carries as they are (printable ASCII but " \\ < > &)
cdef unsigned char PLAIN[256]
for _c in range(256):
    PLAIN[_c] = 0x20 <= _c < 0x80 and chr(_c) not in '"\\<>&'
cdef int CANON_CACHE = 1024     # header names remembered (a client chooses them: bounded)
cdef long long NO_SECOND = -(1LL << 62)     # the second caches' "nothing formatted yet"


# ---- the byte buffer ----------------------------------------------------------------------

cdef inline int _reserve(Buf *b, Py_ssize_t n) except -1:
    cdef Py_ssize_t cap
    cdef char *p
    if b.len + n <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 65536
    while cap < b.len + n:
        cap *= 2
    p = <char *> PyMem_Realloc(b.data, cap)
    if p == NULL:
        raise MemoryError()
    b.data = p
    b.cap = cap
    return 0


cdef inline int _put(Buf *b, const char *s, Py_ssize_t n) except -1:
    _reserve(b, n)
    memcpy(b.data + b.len, s, n)
    b.len += n
    return 0


cdef inline int _putc(Buf *b, char c) except -1:
    _reserve(b, 1)
    b.data[b.len] = c
    b.len += 1
    return 0


cdef bytes _DIGITS2 = b"".join([b"%02d" % k for k in range(100)])
cdef const char *DIGITS2 = _DIGITS2        # "00" .. "99": two digits per division


cdef int _put_int(Buf *b, long long v) except -1:
    cdef char tmp[24]
    cdef int i = 24
    cdef unsigned long long u, q, r
    cdef bint neg = v < 0
    u = <unsigned long long> (-v) if neg else <unsigned long long> v
    while u >= 100:
        q = u // 100
        r = (u - q * 100) * 2
        i -= 2
        tmp[i] = DIGITS2[r]
        tmp[i + 1] = DIGITS2[r + 1]
        u = q
    if u >= 10:
        i -= 2
        tmp[i] = DIGITS2[u * 2]
        tmp[i + 1] = DIGITS2[u * 2 + 1]
    else:
        i -= 1
        tmp[i] = <char> (48 + u)
    if neg:
        i -= 1
        tmp[i] = b'-'
    return _put(b, tmp + i, 24 - i)


cdef Py_ssize_t _utf8_len(const unsigned char *s, Py_ssize_t n) noexcept:
    # the length of the valid UTF-8 sequence at s (Go's utf8.DecodeRune), 0: invalid
    cdef unsigned char c = s[0]
    cdef unsigned char lo = 0x80, hi = 0xBF
    cdef Py_ssize_t size, k
    if c < 0xC2:
        return 0
    if c < 0xE0:
        size = 2
    elif c < 0xF0:
        size = 3
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
    elif c < 0xF5:
        size = 4
        if c == 0xF0:
            lo = 0x90
        elif c == 0xF4:
            hi = 0x8F
    else:
        return 0
    if n < size or s[1] < lo or s[1] > hi:
        return 0
    for k in range(2, size):
        if s[k] < 0x80 or s[k] > 0xBF:
            return 0
    return size


cdef inline int _json_bytes(Buf *b, const char *p, Py_ssize_t n) except -1:
    # Go's encoding/json appendString with escapeHTML, quotes included
    _putc(b, b'"')
    _json_inner(b, p, n)
    return _putc(b, b'"')


cdef int _json_inner(Buf *b, const char *p, Py_ssize_t n) except -1:
    # a JSON string's content, escaped as Go's encoding/json (escapeHTML) does
    cdef const unsigned char *s = <const unsigned char *> p
    cdef Py_ssize_t i = 0, start = 0, size
    cdef unsigned char c
    _reserve(b, n)
    while i < n:
        c = s[i]
        if PLAIN[c]:
            i += 1
            continue
        if c < 0x80:
            _put(b, p + start, i - start)
            if c == b'"' or c == b'\\':
                _putc(b, b'\\')
                _putc(b, <char> c)
            elif c == b'\n':
                _put(b, b"\\n", 2)
            elif c == b'\r':
                _put(b, b"\\r", 2)
            elif c == b'\t':
                _put(b, b"\\t", 2)
            elif c == 0x08:
                _put(b, b"\\b", 2)
            elif c == 0x0C:
                _put(b, b"\\f", 2)
            else:
                _put(b, b"\\u00", 4)
                _putc(b, HEX[c >> 4])
                _putc(b, HEX[c & 15])
            i += 1
            start = i
            continue
        size = _utf8_len(s + i, n - i)
        if size == 0:
            _put(b, p + start, i - start)
            _put(b, b"\\ufffd", 6)
            i += 1
            start = i
            continue
        if size == 3 and c == 0xE2 and s[i + 1] == 0x80 and (s[i + 2] == 0xA8 or
                                                             s[i + 2] == 0xA9):
            _put(b, p + start, i - start)
            _put(b, b"\\u202", 5)
            _putc(b, HEX[s[i + 2] & 15])
            i += 3
            start = i
            continue
        i += size
    return _put(b, p + start, n - start)


cdef inline int _json_obj(Buf *b, object v) except -1:
    # a str (its cached UTF-8) or bytes, as a JSON string
    cdef Py_ssize_t n
    cdef const char *p
    if isinstance(v, bytes):
        return _json_bytes(b, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v))
    p = PyUnicode_AsUTF8AndSize(v, &n)
    return _json_bytes(b, p, n)


cdef inline int _raw_obj(Buf *b, object v) except -1:
    cdef Py_ssize_t n
    cdef const char *p
    if isinstance(v, bytes):
        return _put(b, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v))
    p = PyUnicode_AsUTF8AndSize(v, &n)
    return _put(b, p, n)


cdef inline Py_ssize_t _obj_len(object v):
    cdef Py_ssize_t n
    if isinstance(v, bytes):
        return PyBytes_GET_SIZE(v)
    PyUnicode_AsUTF8AndSize(v, &n)
    return n


cdef int _clf_quoted(Buf *b, const char *p, Py_ssize_t n) except -1:
    # Traefik's toLogEntry, quoted: "value" with " written as \"
    cdef Py_ssize_t i, start = 0
    _putc(b, b'"')
    for i in range(n):
        if p[i] == b'"':
            _put(b, p + start, i - start)
            _put(b, b'\\"', 2)
            start = i + 1
    _put(b, p + start, n - start)
    _putc(b, b'"')
    return 0


cdef inline int _clf_obj(Buf *b, object v, bint quoted) except -1:
    cdef Py_ssize_t n
    cdef const char *p
    if isinstance(v, bytes):
        p = PyBytes_AS_STRING(v)
        n = PyBytes_GET_SIZE(v)
    else:
        p = PyUnicode_AsUTF8AndSize(v, &n)
    if quoted:
        return _clf_quoted(b, p, n)
    return _put(b, p, n)


cdef inline int _key(Buf *b, const char *k, Py_ssize_t n, bint *first) except -1:
    # ,"Key": (the first field opens the object instead)
    _reserve(b, n + 4)
    b.data[b.len] = b'{' if first[0] else b','
    b.data[b.len + 1] = b'"'
    memcpy(b.data + b.len + 2, k, n)
    b.data[b.len + 2 + n] = b'"'
    b.data[b.len + 3 + n] = b':'
    b.len += n + 4
    first[0] = False
    return 0


cdef int _zone(char *out, int cap, long off, bint clf) noexcept:
    cdef char sign = b'+' if off >= 0 else b'-'
    if off < 0:
        off = -off
    if clf:
        return snprintf(out, cap, "%c%02ld%02ld", sign, off // 3600, off % 3600 // 60)
    if off == 0:
        return snprintf(out, cap, "Z")
    return snprintf(out, cap, "%c%02ld:%02ld", sign, off // 3600, off % 3600 // 60)


# ---- header fields (only with fields.headers kept or redacted) ----------------------------

cdef str _canonical(str name):
    # Go's textproto.CanonicalMIMEHeaderKey
    if not name or any(c in name for c in " \t\r\n:"):
        return name
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


cdef list _head_lines(bytes head, frozenset skip):
    end = head.find(b"\r\n\r\n")
    out = []
    for line in (head if end < 0 else head[:end]).split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.lower() not in skip:
            out.append((name, value.strip(b" \t")))
    return out


cdef inline Py_ssize_t _find_mode(dict modes, str key, int default):
    m = modes.get(key)
    return default if m is None else <int> m


cdef int _write_lines(int fd, const char *data, Py_ssize_t size, Py_ssize_t chunk,
                      Py_ssize_t *done) noexcept nogil:
    # ``chunk`` bytes at most per write(2), cut after a line's end: every worker appends to
    # the same file (O_APPEND), and a line must not be split by another's write; the kernel
    # also copies a 64 KiB write into the page cache for a third of a 300 KiB one's cost per
    # byte. 0, or the errno of the write that failed (``done``: the bytes written before it)
    cdef Py_ssize_t start = 0, end, at
    cdef ssize_t n
    cdef const char *cut
    while start < size:
        end = size
        if size - start > chunk:
            cut = <const char *> memrchr(data + start, 10, chunk)
            if cut != NULL:
                end = cut - data + 1
        at = start
        while at < end:
            n = write(fd, data + at, end - at)
            if n < 0:
                if errno == EINTR:
                    continue
                done[0] = at
                return errno
            at += n
        start = end
    done[0] = size
    return 0


cdef Py_ssize_t _count_lines(const char *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k, lines = 0
    for k in range(n):
        if p[k] == 10:
            lines += 1
    return lines


def write_lines(int fd, const unsigned char[:] data, Py_ssize_t chunk):
    """``data`` (whole lines) written to ``fd`` as the writer thread writes its buffer:
    (lines lost, errno) — (0, 0) when all of it was written."""
    cdef Py_ssize_t done = 0, size = data.shape[0]
    cdef const char *p = <const char *> &data[0] if size else NULL
    cdef int err
    with nogil:
        err = _write_lines(fd, p, size, chunk, &done)
    return (_count_lines(p + done, size - done) if err else 0), err


@cython.final
cdef class Formatter:
    """One worker's access log lines (see the module docstring); ``cfg``:
    pyroute.static.AccessLog, ``tls_fields``: callable(ex) -> (TLSVersion, TLSCipher,
    TLSClientSubject or None) or None."""

    def __cinit__(self):
        self.buf.data = NULL
        self.buf.len = 0
        self.buf.cap = 0
        self.spare.data = NULL
        self.spare.len = 0
        self.spare.cap = 0
        self.utc_sec = self.local_sec = self.now_sec = NO_SECOND
        self.clf_sec = self.clf_local_sec = NO_SECOND
        self.busy = False
        self.woken = False

    def __dealloc__(self):
        PyMem_Free(self.buf.data)
        PyMem_Free(self.spare.data)

    def __init__(self, cfg, tls_fields=None):
        cdef int i
        self.fmt = F_JSON if cfg.format == "json" else (F_GENERIC if cfg.format == "genericCLF"
                                                        else F_COMMON)
        names = dict(cfg.names)
        self.keep = 0
        for i, k in enumerate(CORE_KEYS):
            if names.get(k.lower(), cfg.default_mode) == "keep":
                self.keep |= 1ULL << i
        self.header_modes = {k: _MODES.get(m, M_DROP) for k, m in cfg.header_names}
        self.header_default = _MODES.get(cfg.headers_default_mode, M_DROP)
        self.headers_on = self.header_default != M_DROP or any(
            m != M_DROP for m in self.header_modes.values())
        self.canon = {}
        self.ranges = [tuple(r) for r in cfg.status_codes]
        self.retry_filter = bool(cfg.retry_attempts)
        self.min_duration_ns = <long long> (cfg.min_duration * 1e9)
        self.filtered = bool(self.ranges or self.retry_filter or cfg.min_duration > 0)
        self.keep_query = bool(cfg.keep_query)
        self.tls_fields = tls_fields
        self.limit = cfg.buffering_size if cfg.buffering_size > 0 else DEFAULT_LINES
        self.count = 0
        self.lines = 0
        self.dropped = 0

    # ---- the loop's side ------------------------------------------------------------------

    def observe(self, ex):
        """Env.observers: the line of a finished exchange goes to the buffer."""
        cdef timespec mono, real
        cdef Py_ssize_t at = self.buf.len
        clock_gettime(CLOCK_MONOTONIC, &mono)
        clock_gettime(CLOCK_REALTIME, &real)
        self.busy = True
        try:
            self._append(ex, mono.tv_sec + mono.tv_nsec * 1e-9,
                         real.tv_sec * 1000000000LL + real.tv_nsec)
        except BaseException:
            self.buf.len = at           # no half line
            raise
        finally:
            self.busy = False
        if self.lines * 2 >= self.limit and not self.woken and self.wake is not None:
            # a burst fills the buffer faster than the writer's interval: it takes it now
            self.woken = True
            self.wake()

    def line(self, ex, double mono, long long real_ns):
        """The line of ``ex`` as if it ended at ``mono`` (time.monotonic) and ``real_ns``
        (time.time_ns), or None when it is not logged; the buffer is left as it was (tests)."""
        cdef Py_ssize_t at = self.buf.len, lines = self.lines
        cdef long long dropped = self.dropped
        cdef Py_ssize_t limit = self.limit
        self.limit = lines + 1
        self.busy = True
        try:
            if not self._append(ex, mono, real_ns):
                return None
            return PyBytes_FromStringAndSize(self.buf.data + at, self.buf.len - at)
        finally:
            self.buf.len = at
            self.lines = lines
            self.dropped = dropped
            self.limit = limit
            self.busy = False

    # ---- the writer thread's side ---------------------------------------------------------

    def take(self):
        """The lines buffered so far (bytes), or None; the buffer starts again empty."""
        if self.buf.len == 0 or self.busy:
            return None
        out = PyBytes_FromStringAndSize(self.buf.data, self.buf.len)
        self.buf.len = 0
        self.lines = 0
        self.woken = False
        if self.buf.cap > (1 << 22):
            # a burst grew it: give the memory back
            PyMem_Free(self.buf.data)
            self.buf.data = NULL
            self.buf.cap = 0
        return out

    def write_to(self, int fd, Py_ssize_t chunk):
        """The writer thread: the lines buffered so far written to ``fd`` (``write_lines``)
        in one release of the GIL, or None when there were none. The loop's buffer and the
        spare one swap (under the GIL, so the loop never sees the buffer half taken): the
        loop appends to the other while this one is written, and no bytes object is made.
        (lines lost, errno): what a failed write left unwritten (0, 0: all written)."""
        cdef Buf b
        cdef Py_ssize_t done = 0, lost = 0
        cdef int err
        if self.buf.len == 0 or self.busy:
            return None
        b = self.buf
        self.buf = self.spare
        self.buf.len = 0
        self.spare = b
        self.lines = 0
        self.woken = False
        with nogil:
            err = _write_lines(fd, b.data, b.len, chunk, &done)
        if err:
            lost = _count_lines(b.data + done, b.len - done)
        self.spare.len = 0
        if self.spare.cap > (1 << 22):
            # a burst grew it: give the memory back
            PyMem_Free(self.spare.data)
            self.spare.data = NULL
            self.spare.cap = 0
        return lost, err

    # ---- the line -------------------------------------------------------------------------

    cdef bint _append(self, object exo, double mono, long long real_ns) except -1:
        cdef Exchange ex = <Exchange> exo
        cdef Request req = ex.req
        cdef Buf *b = &self.buf
        cdef unsigned long long keep = self.keep
        cdef long long duration, origin_duration = 0, start_ns, sec
        cdef int status, retries, origin_status = 0, i
        cdef long long origin_size = 0
        cdef bint first = True, served, http2
        cdef Py_ssize_t at, hstart, hport, hlen, ipn
        cdef const char *raw
        cdef const char *hp
        cdef int port
        route = ex.route
        if route is not None:
            if not route.access_log:
                return False
        elif not ex.ep.access_logged:
            # no router took it: the entry point's observability.accessLogs decides
            return False
        duration = <long long> ((mono - ex.started) * 1e9)
        status = ex.status
        # Traefik's SaveRetries: the request attempt x is retry attempt x-1
        retries = ex.attempts - 1 if ex.attempts > 1 else 0
        if self.filtered and not self._keep_line(status, duration, retries):
            return False
        self.count += 1
        if self.lines >= self.limit:
            self.dropped += 1
            return False
        at = b.len
        start_ns = real_ns - duration
        raw = PyBytes_AS_STRING(req.raw)
        # InitServiceFields: the origin fields exist even when pyroute answered itself
        server = ex.server
        service_name = None
        served = server is not None and ex.origin_started != 0
        if served:
            service_name = getattr(server, "service_name", None)
            origin_duration = <long long> ((mono - ex.origin_started) * 1e9)
            # a backend that failed: the status pyroute answered in its place
            origin_status = ex.origin_status or status
            origin_size = ex.bytes_out
        conn = ex.conn
        if isinstance(conn, ClientConn):
            port = (<ClientConn> conn).remote_port
            # an HTTP/2 stream drives a socketless ClientConn (its sink)
            http2 = (<ClientConn> conn).sink is not None
        else:
            port = getattr(conn, "remote_port", 0) or 0
            http2 = bool(getattr(conn, "http2", False))
        client_host = ex.remote_ip
        if ex.trusted:
            # Traefik: X-Forwarded-For decides ClientHost; its forwardedHeaders handler
            # removed the header of a client outside trustedIPs before (never trusted)
            xff = req.header(b"x-forwarded-for")
            if xff:
                client_host = xff
        user = None
        v = ex.vars
        if v is not None:
            user = v.get("ClientUsername")
        if not user:
            user = b"-"
        tls = None
        if ex.tls and self.tls_fields is not None:
            tls = self.tls_fields(ex)
        headers = self._header_fields(ex) if self.headers_on else None
        if self.fmt != F_JSON:
            self._clf(ex, req, b, keep, start_ns, duration, client_host, user, route, server,
                      service_name, http2, headers)
            self.lines += 1
            return True
        # JSON, the keys in Go's (sorted) order
        if keep & (1ULL << K_ClientAddr):
            _key(b, b"ClientAddr", 10, &first)
            if port:
                _putc(b, b'"')
                ipn = PyBytes_GET_SIZE(ex.remote_ip)
                if memchr(PyBytes_AS_STRING(ex.remote_ip), b':', ipn) != NULL:
                    _putc(b, b'[')
                    _json_inner(b, PyBytes_AS_STRING(ex.remote_ip), ipn)
                    _putc(b, b']')
                else:
                    _json_inner(b, PyBytes_AS_STRING(ex.remote_ip), ipn)
                _putc(b, b':')
                _put_int(b, port)
                _putc(b, b'"')
            else:
                _json_obj(b, ex.remote_ip)
        if keep & (1ULL << K_ClientHost):
            _key(b, b"ClientHost", 10, &first)
            _json_obj(b, client_host)
        if keep & (1ULL << K_ClientPort):
            _key(b, b"ClientPort", 10, &first)
            if port:
                _putc(b, b'"')
                _put_int(b, port)
                _putc(b, b'"')
            else:
                _put(b, b'"-"', 3)
        if keep & (1ULL << K_ClientUsername):
            _key(b, b"ClientUsername", 14, &first)
            _json_obj(b, user)
        if keep & (1ULL << K_DownstreamContentSize):
            _key(b, b"DownstreamContentSize", 21, &first)
            _put_int(b, ex.bytes_out)
        if keep & (1ULL << K_DownstreamStatus):
            _key(b, b"DownstreamStatus", 16, &first)
            _put_int(b, status)
        if keep & (1ULL << K_Duration):
            _key(b, b"Duration", 8, &first)
            _put_int(b, duration)
        if keep & (1ULL << K_OriginContentSize):
            _key(b, b"OriginContentSize", 17, &first)
            _put_int(b, origin_size)
        if keep & (1ULL << K_OriginDuration):
            _key(b, b"OriginDuration", 14, &first)
            _put_int(b, origin_duration)
        if keep & (1ULL << K_OriginStatus):
            _key(b, b"OriginStatus", 12, &first)
            _put_int(b, origin_status)
        if keep & (1ULL << K_Overhead):
            _key(b, b"Overhead", 8, &first)
            _put_int(b, duration - origin_duration)
        # the request's host: "host:port" split as Traefik's silentSplitHostPort
        hstart = req._host.start
        hlen = req._host.stop - hstart if hstart >= 0 else 0
        if hlen and keep & (1ULL << K_RequestAddr):
            _key(b, b"RequestAddr", 11, &first)
            _json_bytes(b, raw + hstart, hlen)
        if keep & (1ULL << K_RequestContentSize):
            _key(b, b"RequestContentSize", 18, &first)
            _put_int(b, ex.bytes_in)
        if keep & (1ULL << K_RequestCount):
            _key(b, b"RequestCount", 12, &first)
            _put_int(b, self.count)
        hport = _split_host_port(raw + hstart, hlen) if hlen else -1
        if hlen and keep & (1ULL << K_RequestHost):
            _key(b, b"RequestHost", 11, &first)
            if hport < 0:
                _json_bytes(b, raw + hstart, hlen)
            elif raw[hstart] == b'[':
                _json_bytes(b, raw + hstart + 1, hport - 3)
            else:
                _json_bytes(b, raw + hstart, hport - 1)
        if keep & (1ULL << K_RequestMethod):
            _key(b, b"RequestMethod", 13, &first)
            _json_obj(b, req.get_method())
        if keep & (1ULL << K_RequestPath):
            _key(b, b"RequestPath", 11, &first)
            self._json_path(b, req, raw)
        if hlen and keep & (1ULL << K_RequestPort):
            _key(b, b"RequestPort", 11, &first)
            if hport < 0:
                _put(b, b'"-"', 3)
            else:
                _json_bytes(b, raw + hstart + hport, hlen - hport)
        if keep & (1ULL << K_RequestProtocol):
            _key(b, b"RequestProtocol", 15, &first)
            # an HTTP/2 stream's request reaches the chain as HTTP/1.1 (engine/h2.pyx)
            _put(b, b'"HTTP/2.0"' if http2 else (b'"HTTP/1.1"' if req.version == 11
                                                 else b'"HTTP/1.0"'), 10)
        if keep & (1ULL << K_RequestScheme):
            _key(b, b"RequestScheme", 13, &first)
            if ex.tls:
                _put(b, b'"https"', 7)
            else:
                _put(b, b'"http"', 6)
        if keep & (1ULL << K_RetryAttempts):
            _key(b, b"RetryAttempts", 13, &first)
            _put_int(b, retries)
        if route is not None and keep & (1ULL << K_RouterName):
            _key(b, b"RouterName", 10, &first)
            _json_obj(b, route.log_name)
        if service_name is not None:
            if keep & (1ULL << K_ServiceAddr):
                _key(b, b"ServiceAddr", 11, &first)
                _json_obj(b, server.addr)
            if keep & (1ULL << K_ServiceName):
                _key(b, b"ServiceName", 11, &first)
                _json_obj(b, service_name)
            if keep & (1ULL << K_ServiceURL):
                _key(b, b"ServiceURL", 10, &first)
                _json_obj(b, server.url)
        if keep & (1ULL << K_StartLocal):
            _key(b, b"StartLocal", 10, &first)
            self._rfc3339_nano(b, start_ns, False)
        if keep & (1ULL << K_StartUTC):
            _key(b, b"StartUTC", 8, &first)
            self._rfc3339_nano(b, start_ns, True)
        if tls is not None:
            if keep & (1ULL << K_TLSCipher):
                _key(b, b"TLSCipher", 9, &first)
                _json_obj(b, tls[1])
            if tls[2] is not None and keep & (1ULL << K_TLSClientSubject):
                _key(b, b"TLSClientSubject", 16, &first)
                _json_obj(b, tls[2])
            if keep & (1ULL << K_TLSVersion):
                _key(b, b"TLSVersion", 10, &first)
                _json_obj(b, tls[0])
        if headers is not None:
            self._json_headers(b, headers, "downstream_", &first)
        if keep & (1ULL << K_entryPointName):
            _key(b, b"entryPointName", 14, &first)
            _json_obj(b, ex.ep.name)
        _key(b, b"level", 5, &first)
        _put(b, b'"info"', 6)
        _key(b, b"msg", 3, &first)
        _put(b, b'""', 2)
        if headers is not None:
            self._json_headers(b, headers, "origin_", &first)
            self._json_headers(b, headers, "request_", &first)
        _key(b, b"time", 4, &first)
        # logrus' default TimestampFormat: RFC 3339 to the second, local time
        sec = _floor_sec(real_ns)
        self._local(sec, &self.now_sec, self.now_text)
        _putc(b, b'"')
        _put(b, self.now_text, _cstrlen(self.now_text))
        _putc(b, b'"')
        _put(b, b"}\n", 2)
        self.lines += 1
        return True

    cdef bint _keep_line(self, int status, long long duration, int retries) except -1:
        # Traefik's keepAccessLog (filters given): any filter that matches keeps the line
        for low, high in self.ranges:
            if low <= status <= high:
                return True
        if self.retry_filter and retries > 0:
            return True
        return self.min_duration_ns > 0 and duration > self.min_duration_ns

    cdef int _json_path(self, Buf *b, Request req, const char *raw) except -1:
        # RequestPath: the path as received, and its query unless queryParameters drop
        cdef Py_ssize_t ps = req._path.start, qs = req._query.start, pn, qn
        cdef Buf tmp
        if ps < 0:
            pn = 0
        else:
            pn = req._path.stop - ps
        qn = req._query.stop - qs if qs >= 0 and self.keep_query else -1
        if ps >= 0 and pn == 0:
            # absolute-form without a path: "/"
            raw = b"/"
            ps = 0
            pn = 1
        if qn < 0:
            return _json_bytes(b, raw + ps, pn)
        if ps >= 0 and req._path.stop == qs - 1 and raw == PyBytes_AS_STRING(req.raw):
            # path?query are adjacent in the head: one run
            return _json_bytes(b, raw + ps, pn + 1 + qn)
        tmp.data = NULL
        tmp.len = tmp.cap = 0
        try:
            _put(&tmp, raw + ps, pn)
            _putc(&tmp, b'?')
            _put(&tmp, PyBytes_AS_STRING(req.raw) + qs, qn)
            _json_bytes(b, tmp.data, tmp.len)
        finally:
            PyMem_Free(tmp.data)
        return 0

    cdef int _rfc3339_nano(self, Buf *b, long long ns, bint utc) except -1:
        # Go's time.Time JSON (RFC 3339 with nanoseconds, trailing zeros trimmed)
        cdef long long sec = _floor_sec(ns)
        cdef long long frac = ns - sec * 1000000000
        cdef char digits[10]
        cdef int n = 9, i
        cdef const char *text
        cdef const char *zone
        self._second(sec, utc)
        if utc:
            text = &self.utc_text[0]
        else:
            text = &self.local_text[0]
        _putc(b, b'"')
        # the text is "date T time" + zone: the fraction goes before the zone
        _put(b, text, 19)
        if frac:
            for i in range(8, -1, -1):
                digits[i] = <char> (48 + frac % 10)
                frac //= 10
            while digits[n - 1] == b'0':
                n -= 1
            _putc(b, b'.')
            _put(b, digits, n)
        zone = text + 19
        _put(b, zone, _cstrlen(zone))
        _putc(b, b'"')
        return 0

    cdef int _second(self, long long sec, bint utc) except -1:
        # "YYYY-MM-DDTHH:MM:SS" + zone of Unix second ``sec``, formatted once a second
        cdef tm t
        cdef time_t ts = <time_t> sec
        cdef int n
        if utc:
            if sec == self.utc_sec:
                return 0
            gmtime_r(&ts, &t)
            n = snprintf(self.utc_text, 32, "%04d-%02d-%02dT%02d:%02d:%02d", t.tm_year + 1900,
                         t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
            _zone(self.utc_text + n, 32 - n, 0, False)
            self.utc_sec = sec
        else:
            self._local(sec, &self.local_sec, self.local_text)
        return 0

    cdef int _local(self, long long sec, long long *cached, char *text) except -1:
        cdef tm t
        cdef time_t ts = <time_t> sec
        cdef int n
        if sec == cached[0]:
            return 0
        localtime_r(&ts, &t)
        n = snprintf(text, 40, "%04d-%02d-%02dT%02d:%02d:%02d", t.tm_year + 1900,
                     t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
        _zone(text + n, 40 - n, t.tm_gmtoff, False)
        cached[0] = sec
        return 0

    cdef const char *_clf_time(self, long long sec, bint utc) except NULL:
        # Traefik's commonLogTimeFormat "02/Jan/2006:15:04:05 -0700"
        cdef tm t
        cdef time_t ts = <time_t> sec
        cdef int n
        cdef char *out
        if utc:
            out = &self.clf_text[0]
        else:
            out = &self.clf_local_text[0]
        if sec == (self.clf_sec if utc else self.clf_local_sec):
            return out
        if utc:
            gmtime_r(&ts, &t)
            t.tm_gmtoff = 0
        else:
            localtime_r(&ts, &t)
        n = snprintf(out, 40, "%02d/%.3s/%04d:%02d:%02d:%02d ", t.tm_mday,
                     MONTHS + 3 * t.tm_mon, t.tm_year + 1900, t.tm_hour, t.tm_min, t.tm_sec)
        _zone(out + n, 40 - n, t.tm_gmtoff, True)
        if utc:
            self.clf_sec = sec
        else:
            self.clf_local_sec = sec
        return out

    # ---- CLF ------------------------------------------------------------------------------

    cdef int _clf(self, Exchange ex, Request req, Buf *b, unsigned long long keep,
                  long long start_ns, long long duration, object client_host, object user,
                  object route, object server, object service_name, bint http2,
                  dict headers) except -1:
        # Traefik's CommonLogFormatter: missing or empty values are "-" (quoted ones "\"-\"")
        cdef const char *raw = PyBytes_AS_STRING(req.raw)
        cdef const char *ts
        if keep & (1ULL << K_ClientHost) and PyBytes_GET_SIZE(client_host):
            _raw_obj(b, client_host)
        else:
            _putc(b, b'-')
        _put(b, b" - ", 3)
        if keep & (1ULL << K_ClientUsername):
            _raw_obj(b, user)
        else:
            _putc(b, b'-')
        _put(b, b" [", 2)
        if keep & (1ULL << K_StartUTC):
            ts = self._clf_time(_floor_sec(start_ns), True)
            _put(b, ts, _cstrlen(ts))
        elif keep & (1ULL << K_StartLocal):
            ts = self._clf_time(_floor_sec(start_ns), False)
            _put(b, ts, _cstrlen(ts))
        else:
            _putc(b, b'-')
        _put(b, b"] \"", 3)
        if keep & (1ULL << K_RequestMethod):
            _raw_obj(b, req.get_method())
        else:
            _putc(b, b'-')
        _putc(b, b' ')
        if keep & (1ULL << K_RequestPath):
            self._clf_path(b, req, raw)
        else:
            _putc(b, b'-')
        _putc(b, b' ')
        if keep & (1ULL << K_RequestProtocol):
            _put(b, b"HTTP/2.0" if http2 else (b"HTTP/1.1" if req.version == 11
                                               else b"HTTP/1.0"), 8)
        else:
            _putc(b, b'-')
        _put(b, b"\" ", 2)
        if keep & (1ULL << K_DownstreamStatus):
            _put_int(b, ex.status)
        else:
            _putc(b, b'-')
        _putc(b, b' ')
        if keep & (1ULL << K_DownstreamContentSize):
            _put_int(b, ex.bytes_out)
        else:
            _putc(b, b'-')
        _putc(b, b' ')
        _clf_header(b, headers, "request_Referer")
        _putc(b, b' ')
        _clf_header(b, headers, "request_User-Agent")
        if self.fmt == F_COMMON:
            _putc(b, b' ')
            if keep & (1ULL << K_RequestCount):
                _put_int(b, self.count)
            else:
                _putc(b, b'-')
            _putc(b, b' ')
            if route is not None and keep & (1ULL << K_RouterName) and _obj_len(route.log_name):
                _clf_obj(b, route.log_name, True)
            else:
                _put(b, b'"-"', 3)
            _putc(b, b' ')
            if service_name is not None and keep & (1ULL << K_ServiceURL) and \
                    _obj_len(server.url):
                _clf_obj(b, server.url, True)
            else:
                _put(b, b'"-"', 3)
            _putc(b, b' ')
            _put_int(b, (duration // 1000000) if keep & (1ULL << K_Duration) else 0)
            _put(b, b"ms", 2)
        _putc(b, b'\n')
        return 0

    cdef int _clf_path(self, Buf *b, Request req, const char *raw) except -1:
        cdef Py_ssize_t ps = req._path.start, qs = req._query.start, pn
        pn = req._path.stop - ps if ps >= 0 else 0
        if ps >= 0 and pn == 0:
            _putc(b, b'/')
            pn = 1
        else:
            _put(b, raw + ps, pn)
        if qs >= 0 and self.keep_query:
            _putc(b, b'?')
            _put(b, raw + qs, req._query.stop - qs)
        elif pn == 0:
            # an empty RequestPath is Traefik's "-"
            _putc(b, b'-')
        return 0

    # ---- header fields --------------------------------------------------------------------

    cdef dict _header_fields(self, Exchange ex):
        # Traefik's redactHeaders: <prefix><Canonical-Name>, values joined by ",";
        # {field name: value (str)}
        fields = {}
        self._collect(ex.req.headers, fields, "request_")
        if ex.origin_head is not None:
            self._collect(_head_lines(ex.origin_head, _HOP_BY_HOP), fields, "origin_")
        if ex.resp_head is not None:
            self._collect(_head_lines(ex.resp_head, _SERVER_ADDED), fields, "downstream_")
        return fields

    cdef int _collect(self, list headers, dict fields, str prefix) except -1:
        cdef dict canon = self.canon
        seen = {}
        modes = {}
        for name, value in headers:
            c = canon.get(name)
            if c is None:
                key = _canonical(name.decode("latin-1"))
                c = (key, _find_mode(self.header_modes, key, self.header_default))
                if len(canon) < CANON_CACHE:
                    canon[name] = c
            key, mode = c
            if mode == M_DROP:
                continue
            modes[key] = mode
            seen[key] = seen[key] + b"," + value if key in seen else value
        for key, value in seen.items():
            fields[prefix + key] = b"REDACTED" if modes[key] == M_REDACT else value
        return 0

    cdef int _json_headers(self, Buf *b, dict headers, str p, bint *first) except -1:
        cdef bytes kb
        keys = sorted(k for k in headers if k.startswith(p))
        for k in keys:
            kb = k.encode("utf-8", "surrogateescape")
            _reserve(b, 1)
            b.data[b.len] = b'{' if first[0] else b','
            b.len += 1
            first[0] = False
            _json_bytes(b, PyBytes_AS_STRING(kb), PyBytes_GET_SIZE(kb))
            _putc(b, b':')
            _json_obj(b, headers[k])
        return 0


cdef int _clf_header(Buf *b, dict headers, str key) except -1:
    v = headers.get(key) if headers is not None else None
    if v is None or not len(v):
        return _put(b, b'"-"', 3)
    return _clf_obj(b, v, True)


cdef Py_ssize_t _split_host_port(const char *s, Py_ssize_t n) noexcept:
    # Traefik's silentSplitHostPort: the offset of the port in s (after ':'), -1: no port
    cdef Py_ssize_t i, colon = -1, colons = 0, end = -1, brackets = 0
    if s[0] == b'[':
        for i in range(n):
            if s[i] == b']':
                brackets += 1
                if end < 0:
                    end = i
        if end > 0 and end + 1 < n and s[end + 1] == b':' and brackets == 1:
            return end + 2
        return -1
    for i in range(n):
        if s[i] == b':':
            colons += 1
            colon = i
    return colon + 1 if colons == 1 else -1


cdef inline long long _floor_sec(long long ns) noexcept:
    # Python's ns // 10**9 (the C division truncates towards zero)
    cdef long long sec = ns / 1000000000
    if ns < 0 and sec * 1000000000 != ns:
        sec -= 1
    return sec


cdef inline Py_ssize_t _cstrlen(const char *s) noexcept:
    cdef Py_ssize_t n = 0
    while s[n]:
        n += 1
    return n
