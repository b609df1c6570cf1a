# cython: freethreading_compatible = False
"""Strict, incremental HTTP/1.1 codec: request and response heads, chunked framing, head rewriting.

One interpretation of every message (RFC 9112 / RFC 9110): whatever two implementations could
read differently is refused, never forwarded. Refusals cross the C functions as negative return
codes (``-status``) with the reason in ``_reason``, and become ``HttpParseError(status, reason)``
only at the Python edge.

Line endings (decision, mirrors nginx): in heads, a bare LF ends a line like CRLF does (RFC 9112
§2.2 allows it; the head is always re-serialised with CRLF before it goes anywhere, so no peer ever
sees the bare LF); a CR that is not directly followed by LF is refused (400). In chunked bodies,
which may be forwarded as validated raw bytes, only CRLF is accepted.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.list cimport PyList_GET_ITEM, PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy
from pyroute._engine._common cimport Span

from pyroute._engine import errors as _errors

cdef object _HttpParseError = _errors.HttpParseError

__all__ = ["NONE", "LENGTH", "CHUNKED", "CLOSE", "TUNNEL", "DEFAULT_MAX_LINE", "DEFAULT_MAX_HEAD",
           "DEFAULT_MAX_FIELDS", "DEFAULT_MAX_CHUNK_LINE", "DEFAULT_MAX_TRAILER",
           "Request", "RequestParser", "Response", "ResponseParser", "ChunkedDecoder",
           "chunk_header", "CHUNK_END", "LAST_CHUNK", "BodyLength", "Forwarder",
           "METHOD_OTHER", "METHOD_GET", "METHOD_HEAD", "METHOD_POST", "METHOD_PUT", "METHOD_DELETE",
           "METHOD_CONNECT", "METHOD_OPTIONS", "METHOD_TRACE", "METHOD_PATCH"]

# ---------------------------------------------------------------------------------------------
# Python-visible constants
NONE = FRAMING_NONE
LENGTH = FRAMING_LENGTH
CHUNKED = FRAMING_CHUNKED
CLOSE = FRAMING_CLOSE
TUNNEL = FRAMING_TUNNEL

METHOD_OTHER, METHOD_GET, METHOD_HEAD, METHOD_POST, METHOD_PUT = M_OTHER, M_GET, M_HEAD, M_POST, M_PUT
METHOD_DELETE, METHOD_CONNECT, METHOD_OPTIONS, METHOD_TRACE, METHOD_PATCH = (
    M_DELETE, M_CONNECT, M_OPTIONS, M_TRACE, M_PATCH)

DEFAULT_MAX_LINE = 8192        # request line -> 414 beyond (nginx: large_client_header_buffers 8k)
DEFAULT_MAX_HEAD = 32768       # whole head -> 431 beyond
DEFAULT_MAX_FIELDS = 100       # header lines -> 431 beyond
DEFAULT_MAX_CHUNK_LINE = 4096  # chunk-size line incl. extensions -> 400 beyond
DEFAULT_MAX_TRAILER = 8192     # trailer section -> 431 beyond

# ---------------------------------------------------------------------------------------------
# Errors as return codes
cdef const char *_reason = ""


cdef inline Py_ssize_t _fail(int status, const char *reason) noexcept nogil:
    global _reason
    _reason = reason
    return -status


cdef object _error(Py_ssize_t code):
    return _HttpParseError(<int>-code, (<bytes>_reason).decode("ascii"))


# ---------------------------------------------------------------------------------------------
# Character classes (RFC 9110 §5.6.2 tchar, §5.5 field-vchar, RFC 3986 for targets and hosts)
cdef unsigned char NAME[256]     # tchar -> its lowercase (with '_' folded to '-'), else 0
cdef unsigned char TCHAR[256]    # tchar -> 1
cdef unsigned char VALUE[256]    # SP / HTAB / VCHAR / obs-text -> 1 (CR, LF, NUL, CTLs, DEL -> 0)
cdef unsigned char TARGET[256]   # request-target bytes: 1 plain, 2 '?', 3 '%', 0 refused
cdef unsigned char HOSTC[256]    # reg-name / IPv4 bytes (unreserved, sub-delims, '%')
cdef signed char HEX[256]        # hex digit value, else -1
cdef unsigned char LOWER[256]


cdef void _init_tables() noexcept:
    cdef int c
    cdef bytes tspecial = b"!#$%&'*+-.^_`|~"
    cdef bytes subdelims = b"!$&'()*+,;=-._~%"
    for c in range(256):
        LOWER[c] = c + 32 if 65 <= c <= 90 else c
        TCHAR[c] = 1 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in tspecial) else 0
        NAME[c] = (45 if c == 95 else LOWER[c]) if TCHAR[c] else 0
        VALUE[c] = 1 if (c == 9 or 32 <= c <= 126 or c >= 128) else 0
        # RFC 3986 allows neither '#' (never sent) nor '\\' (some backends read it as '/'),
        # nor controls, SP or non-ASCII in a request-target; '%' must start a valid escape.
        TARGET[c] = 1 if (33 <= c <= 126 and c != 35 and c != 92) else 0
        HOSTC[c] = 1 if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in subdelims) else 0
        HEX[c] = (c - 48) if 48 <= c <= 57 else ((c - 87) if 97 <= c <= 102 else ((c - 55) if 65 <= c <= 70 else -1))
    TARGET[63] = 2   # '?'
    TARGET[37] = 3   # '%'


_init_tables()

# ---------------------------------------------------------------------------------------------
# Well-known header names: hashed while the name is scanned (NAME[] folds case), then one
# confirming comparison against the single candidate the hash selects.
cdef enum:
    KNOWN_SLOTS = 128

cdef struct Known:
    uint32_t hash
    int id                 # 0: empty slot
    int length
    const char *name       # lowercase, '-' separated


cdef Known _KNOWN[KNOWN_SLOTS]
cdef list _known_names = []     # keeps the name bytes alive


cdef inline uint32_t _hash_step(uint32_t h, unsigned char l) noexcept nogil:
    return h * 31 + l


cdef void _add_known(bytes name, int hid):
    cdef uint32_t h = 0
    cdef unsigned char c
    for c in name:
        h = _hash_step(h, NAME[c])
    cdef int slot = h & (KNOWN_SLOTS - 1)
    while _KNOWN[slot].id != 0:
        slot = (slot + 1) & (KNOWN_SLOTS - 1)
    _known_names.append(name)
    _KNOWN[slot].hash = h
    _KNOWN[slot].id = hid
    _KNOWN[slot].length = len(name)
    _KNOWN[slot].name = <const char *>name


for _n, _i in (
        (b"host", H_HOST), (b"content-length", H_CONTENT_LENGTH),
        (b"transfer-encoding", H_TRANSFER_ENCODING), (b"connection", H_CONNECTION),
        (b"upgrade", H_UPGRADE), (b"expect", H_EXPECT), (b"te", H_TE),
        (b"keep-alive", H_KEEP_ALIVE), (b"proxy-connection", H_PROXY_CONNECTION),
        (b"trailer", H_TRAILER), (b"proxy-authorization", H_PROXY_AUTHORIZATION),
        (b"proxy-authenticate", H_PROXY_AUTHENTICATE),
        (b"x-forwarded-for", H_X_FORWARDED_FOR), (b"x-forwarded-proto", H_X_FORWARDED_PROTO),
        (b"x-forwarded-host", H_X_FORWARDED_HOST), (b"x-forwarded-port", H_X_FORWARDED_PORT),
        (b"x-forwarded-server", H_X_FORWARDED_SERVER), (b"x-forwarded-uri", H_X_FORWARDED_URI),
        (b"x-forwarded-method", H_X_FORWARDED_METHOD),
        (b"x-forwarded-prefix", H_X_FORWARDED_PREFIX),
        (b"x-forwarded-scheme", H_X_FORWARDED_SCHEME),
        (b"x-forwarded-tls-client-cert", H_X_FORWARDED_TLS_CLIENT_CERT),
        (b"x-forwarded-tls-client-cert-info", H_X_FORWARDED_TLS_CLIENT_CERT_INFO),
        (b"x-scheme", H_X_SCHEME), (b"x-real-ip", H_X_REAL_IP)):
    _add_known(_n, _i)

# bit masks over HeaderId
cdef uint64_t MANAGED_X = 0       # Traefik's managed X-headers (dropped for untrusted peers)
for _i in range(H_X_FORWARDED_FOR, H_X_UNDERSCORE + 1):
    MANAGED_X |= (<uint64_t>1) << _i


cdef inline int _known_id(uint32_t h, const unsigned char *name, Py_ssize_t n) noexcept nogil:
    cdef int slot = h & (KNOWN_SLOTS - 1)
    cdef Py_ssize_t k
    cdef unsigned char c
    cdef bint underscored = False
    while _KNOWN[slot].id != 0:
        if _KNOWN[slot].hash == h and _KNOWN[slot].length == n:
            # confirm; '_' stands for '-' only in Traefik's managed X-headers, which Traefik
            # also deletes in their underscore spelling (forwarded_header.go isManagedXHeader)
            for k in range(n):
                c = LOWER[name[k]]
                if c != <unsigned char>_KNOWN[slot].name[k]:
                    if not (c == 95 and _KNOWN[slot].name[k] == 45 and _KNOWN[slot].id >= H_X_FORWARDED_FOR):
                        return H_OTHER
                    underscored = True
            # the underscore spelling is another header for Go (Header.Get("X-Forwarded-For")
            # never sees X_Forwarded_For): deleted with the family for untrusted peers,
            # forwarded as it is for trusted ones (forwarded_header_test.go)
            return H_X_UNDERSCORE if underscored else _KNOWN[slot].id
        slot = (slot + 1) & (KNOWN_SLOTS - 1)
    return H_OTHER


cdef inline bint _ieq(const unsigned char *p, Py_ssize_t n, const char *lit, Py_ssize_t ln) noexcept nogil:
    # case-insensitive equality with a lowercase literal
    if n != ln:
        return False
    cdef Py_ssize_t k
    for k in range(n):
        if LOWER[p[k]] != <unsigned char>lit[k]:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Field storage shared by Request and Response

cdef inline Field *_push_field(Field **fields, Py_ssize_t *n, Py_ssize_t *cap, Field *inline) except NULL:
    cdef Field *grown
    cdef Py_ssize_t newcap
    if n[0] == cap[0]:
        newcap = cap[0] * 2
        if fields[0] == inline:
            grown = <Field *>PyMem_Malloc(newcap * sizeof(Field))
            if grown == NULL:
                raise MemoryError()
            memcpy(grown, inline, n[0] * sizeof(Field))
        else:
            grown = <Field *>PyMem_Realloc(fields[0], newcap * sizeof(Field))
            if grown == NULL:
                raise MemoryError()
        fields[0] = grown
        cap[0] = newcap
    n[0] += 1
    return &fields[0][n[0] - 1]


cdef inline bytes _slice(bytes raw, Span s):
    if s.start < 0:
        return None
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(raw) + s.start, s.stop - s.start)


# Field names repeat from request to request (User-Agent, Accept, ...): a small cache keyed by
# the name hash hands out the same bytes object when the exact spelling matches.
cdef list _name_cache = [None] * 256


cdef inline bytes _name_bytes(bytes raw, Field *f):
    cdef Py_ssize_t n = f.name.stop - f.name.start
    cdef const char *src = PyBytes_AS_STRING(raw) + f.name.start
    cdef int slot = f.hash & 255
    cdef object cached = <object>PyList_GET_ITEM(_name_cache, slot)
    if (cached is not None and PyBytes_GET_SIZE(cached) == n
            and memcmp(PyBytes_AS_STRING(cached), src, n) == 0):
        return <bytes>cached
    cdef bytes b = PyBytes_FromStringAndSize(src, n)
    _name_cache[slot] = b
    return b


cdef list _header_list(bytes raw, Field *fields, Py_ssize_t n):
    cdef list out = PyList_New(n)
    cdef Py_ssize_t k
    cdef tuple t
    cdef bytes a, b
    for k in range(n):
        a = _name_bytes(raw, &fields[k])
        b = _slice(raw, fields[k].value)
        t = PyTuple_New(2)
        Py_INCREF(a)
        PyTuple_SET_ITEM(t, 0, a)
        Py_INCREF(b)
        PyTuple_SET_ITEM(t, 1, b)
        Py_INCREF(t)
        PyList_SET_ITEM(out, k, t)
    return out


cdef object _header_get(bytes raw, Field *fields, Py_ssize_t n, name):
    cdef bytes lname = (<bytes?>name).lower()
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t k
    for k in range(n):
        if _ieq(p + fields[k].name.start, fields[k].name.stop - fields[k].name.start,
                <const char *>lname, len(lname)):
            return _slice(raw, fields[k].value)
    return None


cdef list _header_values(bytes raw, Field *fields, Py_ssize_t n, name):
    # every value of header ``name``, in order (an empty list when absent)
    cdef bytes lname = (<bytes?>name).lower()
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t k
    cdef list out = []
    for k in range(n):
        if _ieq(p + fields[k].name.start, fields[k].name.stop - fields[k].name.start,
                <const char *>lname, len(lname)):
            out.append(_slice(raw, fields[k].value))
    return out


cdef list _connection_options(bytes raw, Field *fields, Py_ssize_t n):
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef list out = []
    cdef Py_ssize_t k, pos
    cdef Span tok
    for k in range(n):
        if fields[k].id == H_CONNECTION:
            pos = fields[k].value.start
            while _next_token(p, &pos, fields[k].value.stop, &tok) == 1:
                if not (_ieq(p + tok.start, tok.stop - tok.start, "close", 5)
                        or _ieq(p + tok.start, tok.stop - tok.start, "keep-alive", 10)
                        or _ieq(p + tok.start, tok.stop - tok.start, "upgrade", 7)):
                    out.append(_slice(raw, tok))
    return out


# ---------------------------------------------------------------------------------------------
# One field line: name ":" OWS value OWS (CR)LF   (RFC 9112 §5)

cdef inline bint _plain8(uint64_t w) noexcept nogil:
    # True when none of the 8 bytes is < 0x20 or 0x7F (SWAR "has less" / "has zero" tests), so
    # all are field-vchar, SP or obs-text; HTAB and the rest go through the byte loop.
    cdef uint64_t d = w ^ 0x7F7F7F7F7F7F7F7FULL
    return (((w - 0x2020202020202020ULL) & ~w) | ((d - 0x0101010101010101ULL) & ~d)) & 0x8080808080808080ULL == 0


cdef Py_ssize_t _field_line(const unsigned char *p, Py_ssize_t i, Py_ssize_t n, Field *f) noexcept nogil:
    # p[i] starts a non-empty line of a complete head p[0:n] (an LF follows somewhere), returns
    # the offset of the next line or -status.
    cdef uint64_t w
    cdef uint32_t h = 0
    cdef unsigned char c, l
    cdef Py_ssize_t start = i, vstart, vend
    while True:
        c = p[i]
        l = NAME[c]
        if l == 0:
            break
        h = _hash_step(h, l)
        i += 1
    if c != 58:   # ':'
        if i == start:
            if c == 32 or c == 9:
                # RFC 9112 §5.2: obs-fold -> 400 (a continuation line some peers would join)
                return _fail(400, "obs-fold or whitespace at the start of a field line")
            if c == 10 or c == 13:
                return _fail(400, "field line without a name")
            return _fail(400, "invalid character in field name")
        if c == 32 or c == 9:
            # RFC 9112 §5.1: whitespace between name and colon -> 400
            return _fail(400, "whitespace between field name and colon")
        if c == 10 or c == 13:
            return _fail(400, "field line without a colon")
        return _fail(400, "invalid character in field name")
    if i == start:
        return _fail(400, "empty field name")
    f.name.start = start
    f.name.stop = i
    f.hash = h
    f.id = _known_id(h, p + start, i - start)
    i += 1
    while p[i] == 32 or p[i] == 9:
        i += 1
    vstart = i
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        if not _plain8(w):
            break
        i += 8
    while VALUE[p[i]]:
        i += 1
    c = p[i]
    if c == 10:
        vend = i
        i += 1
    elif c == 13:
        if p[i + 1] != 10:
            return _fail(400, "bare CR in field value")
        vend = i
        i += 2
    else:
        return _fail(400, "control character in field value")
    while vend > vstart and (p[vend - 1] == 32 or p[vend - 1] == 9):
        vend -= 1
    f.value.start = vstart
    f.value.stop = vend
    return i


# list elements: #element with OWS around commas, empty elements ignored (RFC 9110 §5.6.1)
cdef inline int _next_token(const unsigned char *p, Py_ssize_t *pos, Py_ssize_t end, Span *tok) noexcept nogil:
    # 1: a token in tok, 0: end of list, -1: not a list of tokens
    cdef Py_ssize_t i = pos[0]
    while i < end and (p[i] == 32 or p[i] == 9 or p[i] == 44):
        i += 1
    if i == end:
        pos[0] = i
        return 0
    tok.start = i
    while i < end and TCHAR[p[i]]:
        i += 1
    tok.stop = i
    if tok.stop == tok.start:
        return -1
    while i < end and (p[i] == 32 or p[i] == 9):
        i += 1
    if i < end and p[i] != 44:
        return -1
    pos[0] = i
    return 1


# Connection options (RFC 9110 §7.6.1), the same for requests and responses
cdef enum:
    CONN_CLOSE = 1
    CONN_KEEP_ALIVE = 2
    CONN_UPGRADE = 4


cdef inline int _connection_flags(const unsigned char *p, Span v, int *others) noexcept nogil:
    # Returns the CONN_* flags the value names (others: count of any other option), -1 when the
    # value is not a list of tokens.
    cdef Py_ssize_t pos = v.start
    cdef Span tok
    cdef int rc, flags = 0
    while True:
        rc = _next_token(p, &pos, v.stop, &tok)
        if rc == 0:
            return flags
        if rc < 0:
            return -1
        if _ieq(p + tok.start, tok.stop - tok.start, "close", 5):
            flags |= CONN_CLOSE
        elif _ieq(p + tok.start, tok.stop - tok.start, "keep-alive", 10):
            flags |= CONN_KEEP_ALIVE
        elif _ieq(p + tok.start, tok.stop - tok.start, "upgrade", 7):
            flags |= CONN_UPGRADE
        else:
            others[0] += 1


cdef inline long long _content_length(const unsigned char *p, Span v) noexcept nogil:
    # RFC 9110 §8.6: 1*DIGIT only; '+5', '1_0', '5 0', '5, 5' and overflow -> -1
    cdef long long n = 0
    cdef Py_ssize_t k
    if v.stop == v.start or v.stop - v.start > 18:
        return -1
    for k in range(v.start, v.stop):
        if p[k] < 48 or p[k] > 57:
            return -1
        n = n * 10 + (p[k] - 48)
    return n


cdef Py_ssize_t _transfer_coding(const unsigned char *p, Span v, int fail_status) noexcept nogil:
    # Returns 0 when the codings are exactly "chunked" (the only one pyroute forwards), else
    # -status. RFC 9112 §6.1/§6.3: chunked must be final and applied once, else the framing is
    # undecidable -> 400; codings pyroute does not implement -> 501 (as nginx does).
    cdef Py_ssize_t pos = v.start
    cdef Span tok
    cdef int r, chunked = 0, others = 0, unknown = 0
    cdef bint last_chunked = False
    while True:
        r = _next_token(p, &pos, v.stop, &tok)
        if r == 0:
            break
        if r < 0:
            return _fail(fail_status, "malformed Transfer-Encoding")
        last_chunked = _ieq(p + tok.start, tok.stop - tok.start, "chunked", 7)
        if last_chunked:
            chunked += 1
        elif (_ieq(p + tok.start, tok.stop - tok.start, "gzip", 4)
              or _ieq(p + tok.start, tok.stop - tok.start, "deflate", 7)
              or _ieq(p + tok.start, tok.stop - tok.start, "compress", 8)
              or _ieq(p + tok.start, tok.stop - tok.start, "x-gzip", 6)
              or _ieq(p + tok.start, tok.stop - tok.start, "x-compress", 10)
              or _ieq(p + tok.start, tok.stop - tok.start, "identity", 8)):
            others += 1
        else:
            unknown += 1
    if unknown and fail_status == 400:
        return _fail(501, "unknown transfer coding")
    if chunked != 1 or not last_chunked:
        return _fail(fail_status, "Transfer-Encoding does not end in a single chunked")
    if others or unknown:
        return _fail(501 if fail_status == 400 else fail_status, "transfer coding other than chunked")
    return 0


cdef inline bint _valid_port(const unsigned char *p, Py_ssize_t s, Py_ssize_t e) noexcept nogil:
    cdef Py_ssize_t k
    if e - s > 5:
        return False
    for k in range(s, e):
        if p[k] < 48 or p[k] > 57:
            return False
    return True


cdef bint _valid_host(const unsigned char *p, Py_ssize_t s, Py_ssize_t e, bint need_port) noexcept nogil:
    # RFC 3986 §3.2.2 host [ ":" port ]: IP-literal in brackets, or reg-name / IPv4address;
    # anything else ('/', '@', '\\', controls, ...) could route differently -> 400
    cdef Py_ssize_t k = s
    if s == e:
        return not need_port
    if p[s] == 91:   # '['
        k = s + 1
        while k < e and p[k] != 93:
            if not (HEX[p[k]] >= 0 or p[k] == 58 or p[k] == 46):
                return False
            k += 1
        if k == e or k == s + 1:
            return False
        k += 1
    else:
        while k < e and HOSTC[p[k]]:
            k += 1
        if k == s:
            return False
    if k == e:
        return not need_port
    if p[k] != 58:
        return False
    return _valid_port(p, k + 1, e) and (k + 1 < e or not need_port)


# ---------------------------------------------------------------------------------------------
# Finding the end of a head, incrementally

cdef inline void _scan_reset(HeadScan *s, Py_ssize_t start) noexcept nogil:
    s.start = start
    s.pos = start
    s.line_start = start
    s.lines = 0
    s.msg_start = start
    s.have_first_line = False


cdef Py_ssize_t _scan_head(HeadScan *s, const unsigned char *p, Py_ssize_t n, Limits *lim,
                           int line_status, int head_status) noexcept nogil:
    # Returns the offset just past the head's empty line, 0 when more bytes are needed, or
    # -status. Each byte is searched once across calls (s remembers where it stopped).
    cdef const unsigned char *q
    cdef Py_ssize_t lf, ln, i = s.pos
    while True:
        q = <const unsigned char *>memchr(p + i, 10, n - i)
        if q == NULL:
            s.pos = n
            if not s.have_first_line and n - s.line_start > lim.max_line + 1:
                return _fail(line_status, "start line too long")
            if n - s.start > lim.max_head:
                return _fail(head_status, "header section too large")
            return 0
        lf = q - p
        ln = lf - s.line_start
        if ln > 0 and p[lf - 1] == 13:
            ln -= 1
        if lf + 1 - s.start > lim.max_head:
            if not s.have_first_line and ln > lim.max_line:
                return _fail(line_status, "start line too long")
            return _fail(head_status, "header section too large")
        if not s.have_first_line:
            if ln == 0 and line_status == 414:
                # RFC 9112 §2.2: ignore empty lines before a request-line
                s.msg_start = lf + 1
            elif ln > lim.max_line:
                return _fail(line_status, "start line too long")
            else:
                s.have_first_line = True
        elif ln == 0:
            return lf + 1
        else:
            s.lines += 1
            if s.lines > lim.max_fields:
                return _fail(head_status, "too many header fields")
        s.line_start = lf + 1
        i = lf + 1


cdef inline const unsigned char *_buffer(object buf, Py_ssize_t *n) except NULL:
    if type(buf) is bytearray:
        n[0] = PyByteArray_GET_SIZE(buf)
        return <const unsigned char *>PyByteArray_AS_STRING(buf)
    if type(buf) is bytes:
        n[0] = PyBytes_GET_SIZE(buf)
        return <const unsigned char *>PyBytes_AS_STRING(buf)
    raise TypeError("expected bytearray or bytes, got %s" % type(buf).__name__)


cdef int _check_limits(Limits *lim, Py_ssize_t max_line, Py_ssize_t max_head, Py_ssize_t max_fields) except -1:
    if max_line < 16 or max_head < 16 or max_fields < 1:
        raise ValueError("limits: need max_line >= 16, max_head >= 16, max_fields >= 1")
    lim.max_line = max_line
    lim.max_head = max_head
    lim.max_fields = max_fields
    return 0


# ---------------------------------------------------------------------------------------------
# Requests

cdef bytes B_GET = b"GET", B_HEAD = b"HEAD", B_POST = b"POST", B_PUT = b"PUT"
cdef bytes B_DELETE = b"DELETE", B_CONNECT = b"CONNECT", B_OPTIONS = b"OPTIONS"
cdef bytes B_TRACE = b"TRACE", B_PATCH = b"PATCH", B_SLASH = b"/", B_EMPTY = b""
cdef tuple METHOD_NAMES = (None, B_GET, B_HEAD, B_POST, B_PUT, B_DELETE, B_CONNECT, B_OPTIONS,
                           B_TRACE, B_PATCH)


cdef inline int _method_id(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    # methods are case-sensitive (RFC 9110 §9.1)
    if n == 3:
        if memcmp(p, b"GET", 3) == 0: return M_GET
        if memcmp(p, b"PUT", 3) == 0: return M_PUT
    elif n == 4:
        if memcmp(p, b"POST", 4) == 0: return M_POST
        if memcmp(p, b"HEAD", 4) == 0: return M_HEAD
    elif n == 5:
        if memcmp(p, b"PATCH", 5) == 0: return M_PATCH
        if memcmp(p, b"TRACE", 5) == 0: return M_TRACE
    elif n == 6:
        if memcmp(p, b"DELETE", 6) == 0: return M_DELETE
    elif n == 7:
        if memcmp(p, b"OPTIONS", 7) == 0: return M_OPTIONS
        if memcmp(p, b"CONNECT", 7) == 0: return M_CONNECT
    return M_OTHER


cdef inline int _version(const unsigned char *p, Py_ssize_t n, int bad_status) noexcept nogil:
    # "HTTP/1.1" -> 11, "HTTP/1.0" -> 10, other "HTTP/d.d" -> -505, anything else -> -bad_status
    if n != 8 or memcmp(p, b"HTTP/", 5) != 0 or p[6] != 46 or not (48 <= p[5] <= 57) or not (48 <= p[7] <= 57):
        return -bad_status
    if p[5] == 49 and (p[7] == 49 or p[7] == 48):
        return 10 + (p[7] - 48)
    return -505


cdef Py_ssize_t _request_line(Request r, const unsigned char *p) noexcept nogil:
    # request-line = method SP request-target SP HTTP-version (RFC 9112 §3), single SPs
    cdef Py_ssize_t i = 0, ts, q = -1, le, v
    cdef unsigned char t
    while TCHAR[p[i]]:
        i += 1
    if i == 0 or p[i] != 32:
        if p[i] == 10 or p[i] == 13 or p[i] == 32 or i == 0:
            return _fail(400, "malformed request line")
        return _fail(400, "invalid character in method")
    r._method.start = 0
    r._method.stop = i
    r.method_id = _method_id(p, i)
    i += 1
    ts = i
    while True:
        t = TARGET[p[i]]
        if t == 1:
            i += 1
        elif t == 2:
            if q < 0:
                q = i
            i += 1
        elif t == 3:
            # '%' HEXDIG HEXDIG (RFC 3986 §2.1)
            if HEX[p[i + 1]] < 0 or HEX[p[i + 2]] < 0:
                return _fail(400, "invalid percent-encoding in request-target")
            i += 3
        else:
            break
    if p[i] != 32:
        if p[i] == 10 or p[i] == 13:
            return _fail(400, "request line without HTTP version")
        return _fail(400, "invalid character in request-target")
    if i == ts:
        return _fail(400, "empty request-target")
    r._target.start = ts
    r._target.stop = i
    i += 1
    le = i
    while p[le] != 10 and p[le] != 13:
        le += 1
    if p[le] == 13 and p[le + 1] != 10:
        return _fail(400, "bare CR in request line")
    v = _version(p + i, le - i, 400)
    if v < 0:
        return _fail(<int>-v, "unsupported HTTP version" if v == -505 else "malformed HTTP version")
    r.version = <int>v
    return _target_form(r, p, ts, r._target.stop, q, le + (2 if p[le] == 13 else 1))


cdef Py_ssize_t _target_form(Request r, const unsigned char *p, Py_ssize_t ts, Py_ssize_t te,
                             Py_ssize_t q, Py_ssize_t next_line) noexcept nogil:
    # RFC 9112 §3.2: origin-form, absolute-form, authority-form (CONNECT), asterisk-form (OPTIONS)
    cdef Py_ssize_t a, k
    if r.method_id == M_CONNECT:
        if p[ts] == 47 or not _valid_host(p, ts, te, True):
            return _fail(400, "CONNECT needs an authority-form target")
        r._host.start = ts
        r._host.stop = te
        r.absolute_form = True
        return next_line
    if p[ts] == 47:   # '/'
        r._path.start = ts
        if q >= 0:
            r._path.stop = q
            r._query.start = q + 1
            r._query.stop = te
        else:
            r._path.stop = te
        return next_line
    if te - ts == 1 and p[ts] == 42:   # '*'
        if r.method_id != M_OPTIONS:
            return _fail(400, "asterisk-form target outside OPTIONS")
        r._path.start = ts
        r._path.stop = te
        return next_line
    # absolute-form: http(s)://authority[path-abempty][?query]
    if te - ts >= 7 and _ieq(p + ts, 7, "http://", 7):
        a = ts + 7
    elif te - ts >= 8 and _ieq(p + ts, 8, "https://", 8):
        a = ts + 8
    else:
        return _fail(400, "invalid request-target")
    k = a
    while k < te and p[k] != 47 and p[k] != 63:
        if p[k] == 64:   # RFC 9110 §4.2.4: userinfo in an http(s) URI is an error
            return _fail(400, "userinfo in request-target")
        k += 1
    if k == a or not _valid_host(p, a, k, False):
        return _fail(400, "invalid authority in request-target")
    r._host.start = a
    r._host.stop = k
    r.absolute_form = True
    r._path.start = k
    if q >= 0:
        r._path.stop = q
        r._query.start = q + 1
        r._query.stop = te
    else:
        r._path.stop = te
    return next_line


cdef Py_ssize_t _request_fields(Request r, const unsigned char *p, Py_ssize_t i, Py_ssize_t end) except -2:
    # Semantics of the fields, in the same pass that splits them.
    cdef Field *f
    cdef Py_ssize_t rc, pos
    cdef int hosts = 0, uid
    cdef bint conn_close = False, conn_keep = False, conn_upgrade = False
    cdef Span tok, upgrade
    cdef long long cl
    upgrade.start = -1
    while i < end and p[i] != 10 and not (p[i] == 13 and p[i + 1] == 10):
        f = _push_field(&r.fields, &r.n_fields, &r.cap_fields, r.inline_fields)
        i = _field_line(p, i, end, f)
        if i < 0:
            return i
        uid = f.id
        if uid == H_OTHER:
            continue
        if uid == H_HOST:
            hosts += 1
            if not _valid_host(p, f.value.start, f.value.stop, False):
                return _fail(400, "invalid Host")
            if not r.absolute_form:
                r._host = f.value
        elif uid == H_CONTENT_LENGTH:
            if r.seen & (1 << H_CONTENT_LENGTH):
                return _fail(400, "repeated Content-Length")
            cl = _content_length(p, f.value)
            if cl < 0:
                return _fail(400, "invalid Content-Length")
            r.content_length = cl
        elif uid == H_TRANSFER_ENCODING:
            if r.seen & (1 << H_TRANSFER_ENCODING):
                return _fail(400, "repeated Transfer-Encoding")
            rc = _transfer_coding(p, f.value, 400)
            if rc < 0:
                return rc
        elif uid == H_CONNECTION:
            rc = _connection_flags(p, f.value, &r.n_conn_tokens)
            if rc < 0:
                return _fail(400, "malformed Connection")
            conn_close = conn_close or (rc & CONN_CLOSE) != 0
            conn_keep = conn_keep or (rc & CONN_KEEP_ALIVE) != 0
            conn_upgrade = conn_upgrade or (rc & CONN_UPGRADE) != 0
        elif uid == H_UPGRADE:
            if upgrade.start >= 0:
                return _fail(400, "repeated Upgrade")
            upgrade = f.value
        elif uid == H_EXPECT:
            # RFC 9110 §10.1.1: only 100-continue is defined; HTTP/1.0 expectations are ignored
            if r.version == 11:
                if _ieq(p + f.value.start, f.value.stop - f.value.start, "100-continue", 12):
                    r.expect_100_continue = True
                else:
                    return _fail(417, "unsupported expectation")
        elif uid == H_TE:
            pos = f.value.start
            while _next_token(p, &pos, f.value.stop, &tok) == 1:
                if _ieq(p + tok.start, tok.stop - tok.start, "trailers", 8):
                    r.te_trailers = True
        r.seen |= (<uint64_t>1) << uid
    if i >= end:
        return _fail(400, "truncated head")
    # RFC 9112 §3.2: HTTP/1.1 needs exactly one Host; more than one is refused in any version
    if hosts > 1:
        return _fail(400, "repeated Host")
    if hosts == 0 and r.version == 11:
        return _fail(400, "missing Host")
    if r.seen & (1 << H_TRANSFER_ENCODING):
        # RFC 9112 §6.1 / §6.3: TE with CL, or TE in HTTP/1.0 -> framing faulty
        if r.seen & (1 << H_CONTENT_LENGTH):
            return _fail(400, "both Content-Length and Transfer-Encoding")
        if r.version == 10:
            return _fail(400, "Transfer-Encoding in an HTTP/1.0 request")
        r.framing = FRAMING_CHUNKED
    elif r.seen & (1 << H_CONTENT_LENGTH):
        r.framing = FRAMING_LENGTH
    if r.version == 11:
        r.keep_alive = not conn_close
        if conn_upgrade and upgrade.start >= 0:
            r._upgrade = upgrade
    else:
        r.keep_alive = conn_keep and not conn_close
    return 0


@cython.final
@cython.freelist(64)
cdef class Request:
    """A parsed request head. Build with ``RequestParser.parse``; attributes are read-only."""

    def __cinit__(self):
        self.fields = self.inline_fields
        self.cap_fields = INLINE_FIELDS

    def __init__(self):
        raise TypeError("Request objects come from RequestParser.parse()")

    def __dealloc__(self):
        if self.fields != self.inline_fields:
            PyMem_Free(self.fields)

    @staticmethod
    cdef Request new():
        cdef Request r = Request.__new__(Request)
        r._query.start = -1
        r._host.start = -1
        r._upgrade.start = -1
        r._path.start = -1
        r.content_length = -1
        return r

    cdef bytes get_method(self):
        if self.method_id != M_OTHER:
            return METHOD_NAMES[self.method_id]
        return _slice(self.raw, self._method)

    cdef bytes get_path(self):
        if self._path.start < 0:
            return None
        if self._path.start == self._path.stop:
            return B_SLASH   # absolute-form without a path: RFC 9112 §3.2.2 says "/"
        return _slice(self.raw, self._path)

    cdef bytes get_query(self):
        return _slice(self.raw, self._query)

    cdef bytes get_host(self):
        if self._host.start < 0:
            return B_EMPTY
        return _slice(self.raw, self._host)

    cdef Py_ssize_t underscore_fields(self, bint drop) noexcept:
        # http.underscoreHeadersStrategy (Traefik v3.7 removeHeadersWithUnderscores /
        # rejectHeadersWithUnderscores): count the header lines whose name holds '_';
        # ``drop`` removes them, so routing, middlewares and the upstream head never see them
        cdef const char *raw = PyBytes_AS_STRING(self.raw)
        cdef Py_ssize_t k, kept = 0, found = 0
        cdef Field *f
        for k in range(self.n_fields):
            f = &self.fields[k]
            if memchr(raw + f.name.start, 95, f.name.stop - f.name.start) != NULL:
                found += 1
                if drop:
                    continue
            if kept != k:
                self.fields[kept] = f[0]
            kept += 1
        self.n_fields = kept
        return found

    @property
    def method(self):
        return self.get_method()

    @property
    def target(self):
        return _slice(self.raw, self._target)

    @property
    def path(self):
        return self.get_path()

    @property
    def query(self):
        return self.get_query()

    @property
    def host(self):
        return self.get_host()

    @property
    def upgrade(self):
        return _slice(self.raw, self._upgrade)

    @property
    def headers(self):
        return _header_list(self.raw, self.fields, self.n_fields)

    def header(self, name):
        """The first value of header ``name`` (bytes, any case), or None."""
        return _header_get(self.raw, self.fields, self.n_fields, name)

    def header_values(self, name):
        """Every value of header ``name`` (bytes, any case), in order: [] when absent. Only
        the matching values become objects (``headers`` builds the whole list)."""
        return _header_values(self.raw, self.fields, self.n_fields, name)

    @property
    def connection_options(self):
        """Connection options other than close/keep-alive/upgrade (they name hop-by-hop headers)."""
        return _connection_options(self.raw, self.fields, self.n_fields)

    def __repr__(self):
        return "<Request %r %r HTTP/%d.%d>" % (self.method, self.target, self.version // 10, self.version % 10)


cdef Py_ssize_t _parse_request(Request r, Limits *lim) except -2:
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(r.raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(r.raw)
    cdef Py_ssize_t i = _request_line(r, p)
    if i < 0:
        return i
    return _request_fields(r, p, i, n)


@cython.final
cdef class RequestParser:
    """Finds and parses request heads in a connection's receive buffer, one after another."""

    def __init__(self, Py_ssize_t max_line=DEFAULT_MAX_LINE, Py_ssize_t max_head=DEFAULT_MAX_HEAD,
                 Py_ssize_t max_fields=DEFAULT_MAX_FIELDS):
        _check_limits(&self.limits, max_line, max_head, max_fields)
        _scan_reset(&self.scan, -1)

    def reset(self):
        """Forget a partly scanned head (call after moving bytes inside the buffer)."""
        _scan_reset(&self.scan, -1)

    cdef void clear(self) noexcept:
        # reset() for engine/conn.pyx, without a Python method call: the worker's one parser
        # changes hands at almost every request when connections take turns
        _scan_reset(&self.scan, -1)

    cpdef Request parse(self, object buf, Py_ssize_t start=0):
        cdef Py_ssize_t n, end, rc
        cdef const unsigned char *p = _buffer(buf, &n)
        if start != self.scan.start or self.scan.pos > n:
            if start < 0 or start > n:
                raise ValueError("start out of range")
            _scan_reset(&self.scan, start)
        end = _scan_head(&self.scan, p, n, &self.limits, 414, 431)
        if end == 0:
            return None
        if end < 0:
            _scan_reset(&self.scan, -1)
            raise _error(end)
        cdef Request r = Request.new()
        if end == n and self.scan.msg_start == 0 and type(buf) is bytes:
            # the common case: one read that is exactly one head; bytes are immutable, so
            # the head can own the caller's object instead of a copy of it
            r.raw = <bytes>buf
        else:
            r.raw = PyBytes_FromStringAndSize(<const char *>p + self.scan.msg_start, end - self.scan.msg_start)
        r.head_length = end - start
        _scan_reset(&self.scan, -1)
        rc = _parse_request(r, &self.limits)
        if rc < 0:
            raise _error(rc)
        return r


# ---------------------------------------------------------------------------------------------
# Responses (what backends send)

@cython.final
@cython.freelist(64)
cdef class Response:
    """A parsed response head. Build with ``ResponseParser.parse``; attributes are read-only."""

    def __cinit__(self):
        self.fields = self.inline_fields
        self.cap_fields = INLINE_FIELDS

    def __init__(self):
        raise TypeError("Response objects come from ResponseParser.parse()")

    def __dealloc__(self):
        if self.fields != self.inline_fields:
            PyMem_Free(self.fields)

    @staticmethod
    cdef Response new():
        cdef Response r = Response.__new__(Response)
        r._upgrade.start = -1
        r.content_length = -1
        return r

    @property
    def reason(self):
        return _slice(self.raw, self._reason)

    @property
    def interim(self):
        """1xx other than 101: another head follows on the same connection."""
        return 100 <= self.status < 200 and self.status != 101

    @property
    def upgrade(self):
        return _slice(self.raw, self._upgrade)

    @property
    def headers(self):
        return _header_list(self.raw, self.fields, self.n_fields)

    def header(self, name):
        """The first value of header ``name`` (bytes, any case), or None."""
        return _header_get(self.raw, self.fields, self.n_fields, name)

    def header_values(self, name):
        """Every value of header ``name`` (bytes, any case), in order: [] when absent. Only
        the matching values become objects (``headers`` builds the whole list)."""
        return _header_values(self.raw, self.fields, self.n_fields, name)

    @property
    def connection_options(self):
        """Connection options other than close/keep-alive/upgrade (they name hop-by-hop headers)."""
        return _connection_options(self.raw, self.fields, self.n_fields)

    def __repr__(self):
        return "<Response HTTP/%d.%d %d>" % (self.version // 10, self.version % 10, self.status)


cdef Py_ssize_t _status_line(Response r, const unsigned char *p) noexcept nogil:
    # status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ] (RFC 9112 §4); a missing SP
    # before an empty reason is tolerated
    cdef Py_ssize_t le = 0, k
    cdef int v
    while p[le] != 10 and p[le] != 13:
        le += 1
    if p[le] == 13 and p[le + 1] != 10:
        return _fail(502, "bare CR in status line")
    if le < 12 or p[8] != 32:
        return _fail(502, "malformed status line")
    v = _version(p, 8, 502)
    if v < 0:
        return _fail(502, "unsupported HTTP version in status line")
    r.version = v
    for k in range(9, 12):
        if p[k] < 48 or p[k] > 57:
            return _fail(502, "malformed status code")
    r.status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    if r.status < 100 or r.status > 599:
        return _fail(502, "status code out of range")
    if le > 12:
        if p[12] != 32:
            return _fail(502, "malformed status line")
        for k in range(13, le):
            if not VALUE[p[k]]:
                return _fail(502, "control character in reason phrase")
        r._reason.start = 13
        r._reason.stop = le
    else:
        r._reason.start = 12
        r._reason.stop = 12
    return le + (2 if p[le] == 13 else 1)


cdef Py_ssize_t _response_fields(Response r, const unsigned char *p, Py_ssize_t i, Py_ssize_t end,
                                 bint head_request) except -2:
    cdef Field *f
    cdef Py_ssize_t rc, pos
    cdef int uid
    cdef bint conn_close = False, conn_keep = False, conn_upgrade = False
    cdef Span tok, upgrade
    cdef long long cl
    upgrade.start = -1
    while i < end and p[i] != 10 and not (p[i] == 13 and p[i + 1] == 10):
        f = _push_field(&r.fields, &r.n_fields, &r.cap_fields, r.inline_fields)
        i = _field_line(p, i, end, f)
        if i < 0:
            return _fail(502, _reason)
        uid = f.id
        if uid == H_OTHER:
            continue
        if uid == H_CONTENT_LENGTH:
            cl = _content_length(p, f.value)
            if cl < 0:
                return _fail(502, "invalid Content-Length")
            # identical repeats are one length (RFC 9110 §8.6 lets recipients accept them)
            if r.seen & (1 << H_CONTENT_LENGTH) and cl != r.content_length:
                return _fail(502, "differing Content-Length values")
            r.content_length = cl
        elif uid == H_TRANSFER_ENCODING:
            if r.seen & (1 << H_TRANSFER_ENCODING):
                return _fail(502, "repeated Transfer-Encoding")
            rc = _transfer_coding(p, f.value, 502)
            if rc < 0:
                return rc
        elif uid == H_CONNECTION:
            rc = _connection_flags(p, f.value, &r.n_conn_tokens)
            if rc < 0:
                return _fail(502, "malformed Connection")
            conn_close = conn_close or (rc & CONN_CLOSE) != 0
            conn_keep = conn_keep or (rc & CONN_KEEP_ALIVE) != 0
            conn_upgrade = conn_upgrade or (rc & CONN_UPGRADE) != 0
        elif uid == H_UPGRADE:
            upgrade = f.value
        r.seen |= (<uint64_t>1) << uid
    if i >= end:
        return _fail(502, "truncated head")
    cdef bint has_cl = (r.seen & (1 << H_CONTENT_LENGTH)) != 0
    cdef bint has_te = (r.seen & (1 << H_TRANSFER_ENCODING)) != 0
    # RFC 9112 §6.3, in its order
    if has_cl and has_te:
        return _fail(502, "both Content-Length and Transfer-Encoding")
    if has_te and r.version == 10:
        return _fail(502, "Transfer-Encoding in an HTTP/1.0 response")
    if r.status < 200:
        # RFC 9110 §8.6 / §6.1: no content and no framing fields in 1xx
        if has_cl or has_te:
            return _fail(502, "framing header in a 1xx response")
        if r.status == 101:
            if not (conn_upgrade and upgrade.start >= 0):
                return _fail(502, "101 without Connection: upgrade and Upgrade")
            r._upgrade = upgrade
            r.framing = FRAMING_TUNNEL
        r.keep_alive = r.status != 101
        return 0
    if r.status == 204:
        if has_cl and r.content_length != 0 or has_te:
            return _fail(502, "204 response with a body")
    elif r.status == 304:
        if has_te:
            return _fail(502, "304 response with Transfer-Encoding")
    elif not head_request:
        if has_te:
            r.framing = FRAMING_CHUNKED
        elif has_cl:
            r.framing = FRAMING_LENGTH
        else:
            r.framing = FRAMING_CLOSE
    if r.version == 11:
        r.keep_alive = not conn_close
    else:
        r.keep_alive = conn_keep and not conn_close
    if r.framing == FRAMING_CLOSE:
        r.keep_alive = False
    return 0


cdef Py_ssize_t _parse_response(Response r, bint head_request) except -2:
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(r.raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(r.raw)
    cdef Py_ssize_t i = _status_line(r, p)
    if i < 0:
        return i
    return _response_fields(r, p, i, n, head_request)


@cython.final
cdef class ResponseParser:
    """Finds and parses response heads in an upstream connection's receive buffer."""

    def __init__(self, Py_ssize_t max_line=DEFAULT_MAX_LINE, Py_ssize_t max_head=DEFAULT_MAX_HEAD,
                 Py_ssize_t max_fields=DEFAULT_MAX_FIELDS):
        _check_limits(&self.limits, max_line, max_head, max_fields)
        _scan_reset(&self.scan, -1)

    def reset(self):
        """Forget a partly scanned head (call after moving bytes inside the buffer)."""
        _scan_reset(&self.scan, -1)

    cdef void clear(self) noexcept:
        # reset() for engine/conn.pyx, without a Python method call: the worker's one parser
        # changes hands at almost every request when connections take turns
        _scan_reset(&self.scan, -1)

    cpdef Response parse(self, object buf, Py_ssize_t start=0, bint head_request=False):
        cdef Py_ssize_t n, end, rc
        cdef const unsigned char *p = _buffer(buf, &n)
        if start != self.scan.start or self.scan.pos > n:
            if start < 0 or start > n:
                raise ValueError("start out of range")
            _scan_reset(&self.scan, start)
        end = _scan_head(&self.scan, p, n, &self.limits, 502, 502)
        if end == 0:
            return None
        if end < 0:
            _scan_reset(&self.scan, -1)
            raise _error(end)
        cdef Response r = Response.new()
        r.raw = PyBytes_FromStringAndSize(<const char *>p + self.scan.msg_start, end - self.scan.msg_start)
        r.head_length = end - start
        _scan_reset(&self.scan, -1)
        rc = _parse_response(r, head_request)
        if rc < 0:
            raise _error(rc)
        return r


# ---------------------------------------------------------------------------------------------
# Bodies: chunked decoding (RFC 9112 §7.1) over buffer slices, encoding, length counting

cdef Py_ssize_t _chunked(ChunkedDecoder d, const unsigned char *p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    # Consumes p[i:end] up to and including at most one payload range; returns the offset it
    # reached or -status. Framing bytes are checked one by one; payload is skipped in one step.
    cdef unsigned char c
    cdef long long take
    cdef int v
    while i < end:
        c = p[i]
        if d.state == CS_DATA:
            take = end - i
            if take > d.remaining:
                take = d.remaining
            d.data_start = i
            d.data_stop = i + take
            d.remaining -= take
            d.total += take
            if d.remaining == 0:
                d.state = CS_DATA_CR
            return i + take
        elif d.state == CS_SIZE:
            d.line_len += 1
            if d.line_len > d.max_line:
                return _fail(400, "chunk-size line too long")
            if d.line_phase == 0:
                v = HEX[c]
                if v >= 0:
                    if d.remaining or v:
                        d.size_digits += 1
                        if d.size_digits > 15:
                            return _fail(400, "chunk size too large")
                    d.remaining = d.remaining * 16 + v
                elif d.line_len == 1:
                    return _fail(400, "invalid chunk size")
                elif c == 59:      # ';' chunk-ext
                    d.line_phase = 1
                elif c == 13:
                    d.line_phase = 2
                elif c == 32 or c == 9:
                    d.line_phase = 3   # BWS, then ';'
                else:
                    return _fail(400, "invalid chunk size")
            elif d.line_phase == 1:
                # extension: visible chars, SP, HTAB; a CR must end the line (no bare CR/LF)
                if c == 13:
                    d.line_phase = 2
                elif not VALUE[c]:
                    return _fail(400, "invalid character in chunk extension")
            elif d.line_phase == 3:
                if c == 59:
                    d.line_phase = 1
                elif c != 32 and c != 9:
                    return _fail(400, "invalid chunk size line")
            else:
                if c != 10:
                    return _fail(400, "bare CR in chunk-size line")
                d.line_phase = 0
                d.line_len = 0
                d.size_digits = 0
                d.state = CS_DATA if d.remaining else CS_TRAILER
        elif d.state == CS_DATA_CR:
            if c != 13:
                return _fail(400, "chunk data not followed by CRLF")
            d.state = CS_DATA_LF
        elif d.state == CS_DATA_LF:
            if c != 10:
                return _fail(400, "chunk data not followed by CRLF")
            d.state = CS_SIZE
        elif d.state == CS_TRAILER:
            d.trailer_len += 1
            if d.trailer_len > d.max_trailer:
                return _fail(431, "trailer section too large")
            # trailer-section = *( field-line CRLF ) CRLF, fields as in heads, CRLF only
            if d.trailer_phase == 0:          # line start
                if c == 13:
                    d.trailer_phase = 4
                elif TCHAR[c]:
                    d.trailer_phase = 1
                else:
                    return _fail(400, "invalid trailer field")
            elif d.trailer_phase == 1:        # name
                if c == 58:
                    d.trailer_phase = 2
                elif not TCHAR[c]:
                    return _fail(400, "invalid trailer field name")
            elif d.trailer_phase == 2:        # value
                if c == 13:
                    d.trailer_phase = 3
                elif not VALUE[c]:
                    return _fail(400, "invalid character in trailer field")
            elif d.trailer_phase == 3:        # CR seen at the end of a field line
                if c != 10:
                    return _fail(400, "bare CR in trailer section")
                d.trailer_phase = 0
            else:                             # CR of the final empty line seen
                if c != 10:
                    return _fail(400, "bare CR in trailer section")
                d.state = CS_DONE
                d.done = True
                return i + 1
        else:
            return i
        i += 1
    return i


@cython.final
cdef class ChunkedDecoder:
    """Streaming chunked decoder over buffer slices; see http1.pyi for the contract."""

    def __init__(self, Py_ssize_t max_line=DEFAULT_MAX_CHUNK_LINE, Py_ssize_t max_trailer=DEFAULT_MAX_TRAILER):
        if max_line < 3 or max_trailer < 2:
            raise ValueError("max_line must be >= 3 and max_trailer >= 2")
        self.max_line = max_line
        self.max_trailer = max_trailer

    def reset(self):
        """Start a new chunked body."""
        self.state = CS_SIZE
        self.remaining = self.line_len = self.trailer_len = self.total = 0
        self.size_digits = self.line_phase = self.trailer_phase = 0
        self.data_start = self.data_stop = 0
        self.done = False

    cpdef Py_ssize_t feed(self, object buf, Py_ssize_t pos, Py_ssize_t end=-1) except -1:
        cdef Py_ssize_t n, rc
        cdef const unsigned char *p = _buffer(buf, &n)
        if end < 0:
            end = n
        if pos < 0 or pos > end or end > n:
            raise ValueError("pos/end out of range")
        self.data_start = self.data_stop = pos
        rc = _chunked(self, p, pos, end)
        if rc < 0:
            self.state = CS_DONE
            raise _error(rc)
        return rc


cdef bytes CHUNK_END_B = b"\r\n"
cdef bytes LAST_CHUNK_B = b"0\r\n\r\n"
CHUNK_END = CHUNK_END_B
LAST_CHUNK = LAST_CHUNK_B


cdef inline Py_ssize_t _hex(char *out, unsigned long long v) noexcept nogil:
    cdef char tmp[16]
    cdef Py_ssize_t n = 0, k
    while True:
        tmp[n] = b"0123456789abcdef"[v & 15]
        n += 1
        v >>= 4
        if v == 0:
            break
    for k in range(n):
        out[k] = tmp[n - 1 - k]
    return n


cpdef bytes chunk_header(long long size):
    """The chunk-size line for a chunk of ``size`` (> 0) bytes: ``b"%x\\r\\n" % size``."""
    cdef char out[20]
    cdef Py_ssize_t n
    if size <= 0:
        raise ValueError("chunk size must be > 0 (LAST_CHUNK ends the body)")
    n = _hex(out, <unsigned long long>size)
    out[n] = 13
    out[n + 1] = 10
    return PyBytes_FromStringAndSize(out, n + 2)


@cython.final
cdef class BodyLength:
    """Counts a Content-Length body: ``take(available)`` -> how many bytes belong to it."""

    def __init__(self, long long length):
        if length < 0:
            raise ValueError("length must be >= 0")
        self.remaining = length

    @property
    def done(self):
        return self.remaining == 0

    cpdef long long take(self, long long available) noexcept:
        if available > self.remaining:
            available = self.remaining
        self.remaining -= available
        return available


# ---------------------------------------------------------------------------------------------
# Head rewriting for forwarding

cdef uint64_t _bit(int hid) noexcept nogil:
    return (<uint64_t>1) << hid


# hop-by-hop and re-emitted fields, never copied from a request head to the upstream one:
# RFC 9110 §7.6.1 (Connection and what it names, Keep-Alive, Proxy-Connection, TE, Trailer,
# Transfer-Encoding, Upgrade), Go's ReverseProxy hopHeaders (Proxy-Authorization,
# Proxy-Authenticate), Host/Content-Length (re-emitted from the parsed form), Expect (the server
# answers 100-continue itself), X-Forwarded-For/-Server (Traefik rebuilds them).
cdef uint64_t DROP_REQ = (_bit(H_HOST) | _bit(H_CONTENT_LENGTH) | _bit(H_TRANSFER_ENCODING)
                          | _bit(H_CONNECTION) | _bit(H_UPGRADE) | _bit(H_KEEP_ALIVE)
                          | _bit(H_PROXY_CONNECTION) | _bit(H_TE) | _bit(H_TRAILER)
                          | _bit(H_PROXY_AUTHORIZATION) | _bit(H_PROXY_AUTHENTICATE) | _bit(H_EXPECT)
                          | _bit(H_X_FORWARDED_FOR) | _bit(H_X_FORWARDED_SERVER))
cdef uint64_t DROP_RESP = (_bit(H_CONTENT_LENGTH) | _bit(H_TRANSFER_ENCODING) | _bit(H_CONNECTION)
                           | _bit(H_UPGRADE) | _bit(H_KEEP_ALIVE) | _bit(H_PROXY_CONNECTION)
                           | _bit(H_TE) | _bit(H_PROXY_AUTHORIZATION) | _bit(H_PROXY_AUTHENTICATE))


cdef struct Out:
    char *p
    Py_ssize_t n


cdef inline void _puts(Out *o, const char *s, Py_ssize_t n) noexcept nogil:
    memcpy(o.p + o.n, s, n)
    o.n += n


cdef inline void _put_span(Out *o, const char *raw, Span s) noexcept nogil:
    memcpy(o.p + o.n, raw + s.start, s.stop - s.start)
    o.n += s.stop - s.start


cdef inline void _put_field(Out *o, const char *raw, Field *f) noexcept nogil:
    _put_span(o, raw, f.name)
    o.p[o.n] = 58
    o.p[o.n + 1] = 32
    o.n += 2
    _put_span(o, raw, f.value)
    o.p[o.n] = 13
    o.p[o.n + 1] = 10
    o.n += 2


cdef inline void _put_dec(Out *o, long long v) noexcept nogil:
    cdef char tmp[24]
    cdef int n = 0
    while True:
        tmp[n] = 48 + v % 10
        n += 1
        v //= 10
        if v == 0:
            break
    while n:
        n -= 1
        o.p[o.n] = tmp[n]
        o.n += 1


cdef inline bint _ieq2(const unsigned char *a, Py_ssize_t an, const unsigned char *b, Py_ssize_t bn) noexcept nogil:
    if an != bn:
        return False
    cdef Py_ssize_t k
    for k in range(an):
        if LOWER[a[k]] != LOWER[b[k]]:
            return False
    return True


cdef bint _named_by_connection(const unsigned char *raw, Field *f, Field *fields, Py_ssize_t n) noexcept nogil:
    # rare path (only when Connection names headers): re-read the Connection fields
    cdef Py_ssize_t k, pos
    cdef Span tok
    for k in range(n):
        if fields[k].id == H_CONNECTION:
            pos = fields[k].value.start
            while _next_token(raw, &pos, fields[k].value.stop, &tok) == 1:
                if _ieq2(raw + f.name.start, f.name.stop - f.name.start, raw + tok.start, tok.stop - tok.start):
                    return True
    return False


cdef inline bint _in_names(const unsigned char *raw, Field *f, NameMatch *names, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        if names[k].hash == f.hash and names[k].length == f.name.stop - f.name.start:
            if _ieq(raw + f.name.start, names[k].length, names[k].lname, names[k].length):
                return True
    return False


cdef inline bint _has_token(const unsigned char *p, Span v, const char *lit, Py_ssize_t ln) noexcept nogil:
    cdef Py_ssize_t pos = v.start
    cdef Span tok
    while _next_token(p, &pos, v.stop, &tok) == 1:
        if _ieq(p + tok.start, tok.stop - tok.start, lit, ln):
            return True
    return False


cdef inline Span _first_value(Field *fields, Py_ssize_t n, int hid) noexcept nogil:
    cdef Span none
    cdef Py_ssize_t k
    for k in range(n):
        if fields[k].id == hid:
            return fields[k].value
    none.start = -1
    none.stop = -1
    return none


cdef inline Span _host_port(const unsigned char *p, Span host) noexcept nogil:
    # the port of host[:port] ([v6]:port included), start == -1 when none
    cdef Span port
    cdef Py_ssize_t k = host.stop
    port.start = -1
    port.stop = -1
    while k > host.start:
        k -= 1
        if p[k] == 58:
            if k + 1 < host.stop:
                port.start = k + 1
                port.stop = host.stop
            return port
        if p[k] == 93 or not (48 <= p[k] <= 57):
            return port
    return port


cdef Py_ssize_t _request_head(Forwarder fw, Request req, Out *o, const char *peer, Py_ssize_t peer_n,
                              bint trusted, const char *host, Py_ssize_t host_n,
                              const char *path, Py_ssize_t path_n, const char *extra,
                              Py_ssize_t extra_n) noexcept:
    cdef const char *raw = PyBytes_AS_STRING(req.raw)
    cdef const unsigned char *u = <const unsigned char *>raw
    cdef Py_ssize_t k
    cdef Field *f
    cdef uint64_t bit, have = 0, skip
    cdef bint websocket = False, first_xff = True
    cdef Span v
    # request line: HTTP/1.1 upstream, whatever the client spoke
    _put_span(o, raw, req._method)
    o.p[o.n] = 32
    o.n += 1
    if path != NULL:
        _puts(o, path, path_n)
        if req._query.start >= 0:
            o.p[o.n] = 63
            o.n += 1
            _put_span(o, raw, req._query)
    elif req.absolute_form and req.method_id != M_CONNECT:
        # RFC 9112 §3.2.2: forward in origin-form, the authority went to Host
        if req._path.start == req._path.stop:
            o.p[o.n] = 47
            o.n += 1
        else:
            _put_span(o, raw, req._path)
        if req._query.start >= 0:
            o.p[o.n] = 63
            o.n += 1
            _put_span(o, raw, req._query)
    else:
        _put_span(o, raw, req._target)
    _puts(o, " HTTP/1.1\r\nHost: ", 17)
    if host != NULL:
        _puts(o, host, host_n)
    elif fw.request_host is not None:
        _puts(o, PyBytes_AS_STRING(fw.request_host), PyBytes_GET_SIZE(fw.request_host))
    elif req._host.start >= 0:
        _put_span(o, raw, req._host)
    _puts(o, "\r\n", 2)
    skip = DROP_REQ
    if not trusted:
        skip |= MANAGED_X      # Traefik: untrusted peers' X-Forwarded-* are deleted first
    for k in range(req.n_fields):
        f = &req.fields[k]
        bit = _bit(f.id)
        if bit & skip:
            continue
        # CVE-2024-45410: every header Connection names goes, except Traefik's own X-headers
        if req.n_conn_tokens and not (bit & MANAGED_X) and _named_by_connection(u, f, req.fields, req.n_fields):
            continue
        if fw.n_req_drop and _in_names(u, f, fw.req_drop, fw.n_req_drop):
            continue
        have |= bit
        _put_field(o, raw, f)
    if fw.forwarded:
        have |= fw.req_override
        if not (have & _bit(H_X_REAL_IP)) and peer_n:
            _puts(o, "X-Real-Ip: ", 11)
            _puts(o, peer, peer_n)
            _puts(o, "\r\n", 2)
        if req._upgrade.start >= 0:
            websocket = _has_token(u, req._upgrade, "websocket", 9)
        v.start = -1
        if have & _bit(H_X_FORWARDED_PROTO):
            v = _first_value(req.fields, req.n_fields, H_X_FORWARDED_PROTO)
        elif not (fw.req_override & _bit(H_X_FORWARDED_PROTO)):
            if websocket:
                _puts(o, "X-Forwarded-Proto: wss\r\n" if fw.tls else "X-Forwarded-Proto: ws\r\n", 24 if fw.tls else 23)
            else:
                _puts(o, "X-Forwarded-Proto: https\r\n" if fw.tls else "X-Forwarded-Proto: http\r\n", 26 if fw.tls else 25)
        if not (have & _bit(H_X_FORWARDED_PORT)):
            # forwarded_header.go forwardedPort: Host's port, else 443 for https/wss/TLS, else 80
            _puts(o, "X-Forwarded-Port: ", 18)
            v = _host_port(u, req._host) if req._host.start >= 0 else v
            if req._host.start >= 0 and v.start >= 0:
                _put_span(o, raw, v)
            else:
                v = _first_value(req.fields, req.n_fields, H_X_FORWARDED_PROTO) if (have & _bit(H_X_FORWARDED_PROTO) and trusted) else v
                if fw.tls or (v.start >= 0 and (_ieq(u + v.start, v.stop - v.start, "https", 5) or _ieq(u + v.start, v.stop - v.start, "wss", 3))):
                    _puts(o, "443", 3)
                else:
                    _puts(o, "80", 2)
            _puts(o, "\r\n", 2)
        if not (have & _bit(H_X_FORWARDED_HOST)) and req._host.start >= 0 and req._host.stop > req._host.start:
            _puts(o, "X-Forwarded-Host: ", 18)
            _put_span(o, raw, req._host)
            _puts(o, "\r\n", 2)
        if not (fw.req_override & _bit(H_X_FORWARDED_FOR)) and not fw.xff_omit:
            # prior values (trusted peers only) joined with ", ", then the peer (Go ReverseProxy)
            _puts(o, "X-Forwarded-For: ", 17)
            if fw.xff_prior is not None:
                first_xff = False
                _puts(o, PyBytes_AS_STRING(fw.xff_prior), PyBytes_GET_SIZE(fw.xff_prior))
            elif trusted and not fw.xff_reset:
                for k in range(req.n_fields):
                    if req.fields[k].id == H_X_FORWARDED_FOR:
                        if not first_xff:
                            _puts(o, ", ", 2)
                        first_xff = False
                        _put_span(o, raw, req.fields[k].value)
            if peer_n:
                if not first_xff:
                    _puts(o, ", ", 2)
                _puts(o, peer, peer_n)
            _puts(o, "\r\n", 2)
        if PyBytes_GET_SIZE(fw.server_name) and not (fw.req_override & _bit(H_X_FORWARDED_SERVER)):
            _puts(o, "X-Forwarded-Server: ", 20)
            _puts(o, PyBytes_AS_STRING(fw.server_name), PyBytes_GET_SIZE(fw.server_name))
            _puts(o, "\r\n", 2)
    _puts(o, PyBytes_AS_STRING(fw.req_set_blob), PyBytes_GET_SIZE(fw.req_set_blob))
    if extra_n:
        _puts(o, extra, extra_n)
    if req.te_trailers:
        _puts(o, "Te: trailers\r\n", 14)   # as Go's ReverseProxy: the one TE value kept
    if req.framing == FRAMING_LENGTH:
        _puts(o, "Content-Length: ", 16)
        _put_dec(o, req.content_length)
        _puts(o, "\r\n", 2)
    elif req.framing == FRAMING_CHUNKED:
        _puts(o, "Transfer-Encoding: chunked\r\n", 28)
    if req._upgrade.start >= 0:
        _puts(o, "Connection: Upgrade\r\nUpgrade: ", 30)
        _put_span(o, raw, req._upgrade)
        _puts(o, "\r\n", 2)
    _puts(o, "\r\n", 2)
    return o.n


cdef Py_ssize_t _response_head(Forwarder fw, Response resp, Out *o, bint keep_alive, int chunked,
                               bint keep_alive_10, const char *extra, Py_ssize_t extra_n) noexcept:
    # chunked: -1 mirror the response, 1 write chunked, 0 no Transfer-Encoding
    cdef const char *raw = PyBytes_AS_STRING(resp.raw)
    cdef const unsigned char *u = <const unsigned char *>raw
    cdef Py_ssize_t k
    cdef Field *f
    cdef uint64_t skip = DROP_RESP
    cdef bint te_out = chunked == 1 or (chunked == -1 and (resp.seen & _bit(H_TRANSFER_ENCODING)) != 0)
    # Traefik's ResponseModifier writes 1xx heads unmodified, and a 101 is written by the
    # proxy after hijacking: the middlewares' response edits are for final responses only
    cdef bint edits = resp.status >= 200
    if not te_out:
        skip |= _bit(H_TRAILER)   # trailers only travel in a chunked body
    _puts(o, "HTTP/1.1 ", 9)
    _put_dec(o, resp.status)
    o.p[o.n] = 32
    o.n += 1
    _put_span(o, raw, resp._reason)
    _puts(o, "\r\n", 2)
    for k in range(resp.n_fields):
        f = &resp.fields[k]
        if _bit(f.id) & skip:
            continue
        if resp.n_conn_tokens and _named_by_connection(u, f, resp.fields, resp.n_fields):
            continue
        if edits and fw.n_resp_drop and _in_names(u, f, fw.resp_drop, fw.n_resp_drop):
            continue
        _put_field(o, raw, f)
    if edits:
        _puts(o, PyBytes_AS_STRING(fw.resp_set_blob), PyBytes_GET_SIZE(fw.resp_set_blob))
    if extra_n:
        _puts(o, extra, extra_n)
    if resp.status == 101:
        _puts(o, "Connection: Upgrade\r\nUpgrade: ", 30)
        _put_span(o, raw, resp._upgrade)
        _puts(o, "\r\n\r\n", 4)
        return o.n
    if te_out:
        _puts(o, "Transfer-Encoding: chunked\r\n", 28)
    elif resp.content_length >= 0:
        _puts(o, "Content-Length: ", 16)
        _put_dec(o, resp.content_length)
        _puts(o, "\r\n", 2)
    if resp.status >= 200:
        if not keep_alive:
            _puts(o, "Connection: close\r\n", 19)
        elif keep_alive_10:
            _puts(o, "Connection: keep-alive\r\n", 24)
    _puts(o, "\r\n", 2)
    return o.n


cdef enum:
    STACK_OUT = 4096


cdef NameMatch *_compile_names(list names, list keep, uint64_t *ids) except? NULL:
    cdef NameMatch *out
    cdef Py_ssize_t k
    cdef bytes lname
    cdef uint32_t h
    cdef unsigned char c
    if not names:
        return NULL
    out = <NameMatch *>PyMem_Malloc(len(names) * sizeof(NameMatch))
    if out == NULL:
        raise MemoryError()
    for k in range(len(names)):
        lname = names[k]
        h = 0
        for c in lname:
            h = _hash_step(h, NAME[c])
        keep.append(lname)
        out[k].hash = h
        out[k].length = len(lname)
        out[k].lname = <const char *>lname
        out[k].id = _known_id(h, <const unsigned char *>lname, len(lname))
        ids[0] |= _bit(out[k].id) if out[k].id else 0
    return out


cdef bint _all_in(bytes s, unsigned char *table) noexcept:
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(s)
    cdef Py_ssize_t k
    for k in range(PyBytes_GET_SIZE(s)):
        if not table[p[k]]:
            return False
    return True


cdef bytes _field_name(object name, str what):
    if not isinstance(name, bytes) or not name or not _all_in(name, TCHAR):
        raise ValueError("%s: invalid header name %r" % (what, name))
    return (<bytes>name).lower()


cdef bytes _set_blob(object pairs, list names, str what):
    # "Name: value\r\n"... from (name, value) pairs, both checked (no CR/LF/NUL can slip in)
    cdef list parts = []
    cdef bytes lname
    for name, value in pairs:
        lname = _field_name(name, what)
        if names is not None:
            names.append(lname)
        if not isinstance(value, bytes) or not _all_in(value, VALUE):
            raise ValueError("%s: invalid value for header %r" % (what, name))
        parts.append(name + b": " + value.strip(b" \t") + b"\r\n")
    return b"".join(parts)


@cython.final
cdef class Forwarder:
    """Builds forwarded request and response heads; see http1.pyi for the rules."""

    def __cinit__(self):
        self.req_drop = NULL
        self.resp_drop = NULL

    def __dealloc__(self):
        PyMem_Free(self.req_drop)
        PyMem_Free(self.resp_drop)

    def __init__(self, *, server_name=None, bint tls=False, bint forwarded=True,
                 request_set=(), request_remove=(), response_set=(), response_remove=(),
                 request_host=None, bint omit_forwarded_for=False):
        cdef list req_names = [], resp_names = []
        cdef uint64_t ids = 0, unused = 0
        if server_name is None:
            import socket
            server_name = socket.gethostname().encode("ascii", "replace")
        if not isinstance(server_name, bytes) or not _all_in(server_name, VALUE):
            raise ValueError("server_name: expected bytes without control characters")
        self.server_name = server_name
        if request_host is not None and (not isinstance(request_host, bytes) or not request_host
                                         or not _all_in(request_host, VALUE)):
            raise ValueError("request_host: expected bytes without control characters")
        # Traefik headers middleware: customRequestHeaders Host sets req.Host; an
        # X-Forwarded-For set to nil makes Go's ReverseProxy add none
        self.request_host = request_host
        self.xff_omit = omit_forwarded_for
        self.tls = tls
        self.forwarded = forwarded
        self._keep = []
        # a set X-Forwarded-For is the prior value Go's ReverseProxy appends the peer to
        self.xff_prior = None
        request_set = list(request_set)
        for name, value in request_set:
            if isinstance(name, bytes) and name.lower() == b"x-forwarded-for":
                self.xff_prior = value.strip(b" \t") if isinstance(value, bytes) else value
        self.req_set_blob = _set_blob([(n, v) for n, v in request_set if not (
            isinstance(n, bytes) and n.lower() == b"x-forwarded-for")], req_names, "request_set")
        if self.xff_prior is not None:
            _set_blob([(b"X-Forwarded-For", self.xff_prior)], None, "request_set")
            req_names.append(b"x-forwarded-for")
        self.resp_set_blob = _set_blob(response_set, resp_names, "response_set")
        req_names += [_field_name(n, "request_remove") for n in request_remove]
        resp_names += [_field_name(n, "response_remove") for n in response_remove]
        PyMem_Free(self.req_drop)
        PyMem_Free(self.resp_drop)
        self.req_drop = self.resp_drop = NULL
        self.n_req_drop = self.n_resp_drop = 0
        self.req_drop = _compile_names(req_names, self._keep, &ids)
        self.n_req_drop = len(req_names)
        # Traefik runs forwardedheaders before the headers middleware: what a middleware sets or
        # deletes wins, except that Go's ReverseProxy still appends the peer to a deleted
        # X-Forwarded-For (it only omits it when the header is set to nil)
        self.xff_reset = b"x-forwarded-for" in req_names
        ids &= ~_bit(H_X_FORWARDED_FOR)
        self.req_override = ids
        self.resp_drop = _compile_names(resp_names, self._keep, &unused)
        self.n_resp_drop = len(resp_names)

    cpdef bytes request_head(self, Request req, bytes peer_ip, bint trusted=False,
                             bytes host=None, bytes path=None, object extra=None):
        """The head to send upstream for ``req`` (CRLF bytes); see http1.pyi."""
        cdef char stack[STACK_OUT]
        cdef Out o
        if req is None or peer_ip is None:
            raise TypeError("request_head needs a Request and the peer address as bytes")
        cdef Py_ssize_t bound = (PyBytes_GET_SIZE(req.raw) + 4 * req.n_fields + 2 * PyBytes_GET_SIZE(peer_ip)
                                 + PyBytes_GET_SIZE(self.server_name) + PyBytes_GET_SIZE(self.req_set_blob)
                                 + 2 * (req._host.stop - req._host.start) + 400)
        cdef bytes blob = _set_blob(extra, None, "extra") if extra else B_EMPTY
        bound += PyBytes_GET_SIZE(blob) + (PyBytes_GET_SIZE(self.xff_prior) if self.xff_prior is not None else 0)
        if self.request_host is not None:
            bound += PyBytes_GET_SIZE(self.request_host)
        if host is not None:
            bound += PyBytes_GET_SIZE(host)
            if not _all_in(host, VALUE):
                raise ValueError("host: control characters")
        if path is not None:
            bound += PyBytes_GET_SIZE(path)
            if not path.startswith(b"/") or not _all_in(path, TARGET):
                raise ValueError("path: must start with '/' and hold request-target characters only")
        o.n = 0
        if bound <= STACK_OUT:
            o.p = &stack[0]
        else:
            o.p = <char *>PyMem_Malloc(bound)
        if o.p == NULL:
            raise MemoryError()
        try:
            _request_head(self, req, &o, PyBytes_AS_STRING(peer_ip), PyBytes_GET_SIZE(peer_ip), trusted,
                          PyBytes_AS_STRING(host) if host is not None else NULL,
                          PyBytes_GET_SIZE(host) if host is not None else 0,
                          PyBytes_AS_STRING(path) if path is not None else NULL,
                          PyBytes_GET_SIZE(path) if path is not None else 0,
                          PyBytes_AS_STRING(blob), PyBytes_GET_SIZE(blob))
            return PyBytes_FromStringAndSize(o.p, o.n)
        finally:
            if o.p != &stack[0]:
                PyMem_Free(o.p)

    cpdef bytes response_head(self, Response resp, bint keep_alive=True, object chunked=None,
                              bint keep_alive_10=False, object extra=None):
        """The head to send to the client for ``resp`` (CRLF bytes); see http1.pyi."""
        cdef char stack[STACK_OUT]
        cdef Out o
        if resp is None:
            raise TypeError("response_head needs a Response")
        cdef Py_ssize_t bound = (PyBytes_GET_SIZE(resp.raw) + 4 * resp.n_fields
                                 + PyBytes_GET_SIZE(self.resp_set_blob) + 200)
        cdef bytes blob = _set_blob(extra, None, "extra") if extra else B_EMPTY
        bound += PyBytes_GET_SIZE(blob)
        o.n = 0
        if bound <= STACK_OUT:
            o.p = &stack[0]
        else:
            o.p = <char *>PyMem_Malloc(bound)
        if o.p == NULL:
            raise MemoryError()
        try:
            _response_head(self, resp, &o, keep_alive, -1 if chunked is None else (1 if chunked else 0),
                           keep_alive_10, PyBytes_AS_STRING(blob), PyBytes_GET_SIZE(blob))
            return PyBytes_FromStringAndSize(o.p, o.n)
        finally:
            if o.p != &stack[0]:
                PyMem_Free(o.p)
