# cython: language_level=3
"""The PROXY protocol header (HAProxy's spec, v1 text and v2 binary) as Traefik reads it on an
entry point with ``proxyProtocol`` (github.com/pires/go-proxyproto v0.8: ``Read``,
``parseVersion1``, ``parseVersion2``).

``parse(data)`` looks at the first bytes of a connection (peeked, not consumed) and returns

- ``None``: not enough bytes yet to tell or to finish the header (wait for more);
- ``(0, None)``: no PROXY header (the bytes are the client's: TLS or HTTP);
- ``(n, ip)``: a valid header of ``n`` bytes (to consume); ``ip`` is the source address as
  text (``b"203.0.113.7"``; IPv4-mapped IPv6 in dotted form, as Go prints it), or ``None`` when
  the header carries none to use (v2 LOCAL, v1 UNKNOWN, v2 UNSPEC or AF_UNIX);

and raises ``ValueError`` (the reason, go-proxyproto's error text) for a malformed header:
the connection is closed, as Go's first read fails.

Limits as go-proxyproto's: a v1 line is at most 107 bytes (CRLF included); a v2 header is read
through a 4096-byte bufio.Reader, whose Peek(length) fails beyond it (ErrInvalidLength), so
16 + length must fit in 4096 bytes. One deviation: go-proxyproto refuses a v1 header that did
not arrive in one read (it cannot tell a slow writer from an attacker); here the bytes are
peeked again as they come, bounded by the entry point's readTimeout.
"""
import ipaddress
import socket

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

cdef bytes SIGV1 = b"PROXY"
cdef bytes SIGV2 = b"\r\n\r\n\x00\r\nQUIT\n"
cdef Py_ssize_t V1_MAX = 107
cdef Py_ssize_t V2_MAX = 4096

MAX_HEADER = V2_MAX          # how much a caller needs to peek at most


cdef bint _prefix(const unsigned char *p, Py_ssize_t n, bytes sig):
    # the n bytes are a prefix of sig (or sig a prefix of them)
    cdef const unsigned char *s = <const unsigned char *>PyBytes_AS_STRING(sig)
    cdef Py_ssize_t m = PyBytes_GET_SIZE(sig), i
    for i in range(n if n < m else m):
        if p[i] != s[i]:
            return False
    return True


cdef bytes _text_ip(bytes raw):
    cdef object addr
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw).encode()
    addr = ipaddress.IPv6Address(raw)
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped).encode()
    return socket.inet_ntop(socket.AF_INET6, raw).encode()


cdef int _port(str s) except -2:
    # strconv.Atoi then 0..65535 (ErrInvalidPortNumber)
    cdef str digits = s[1:] if s[:1] in ("+", "-") else s
    if not digits or not digits.isdigit() or not digits.isascii():
        raise ValueError("proxyproto: invalid port number")
    v = int(s)
    if v < 0 or v > 65535:
        raise ValueError("proxyproto: invalid port number")
    return v


cdef bytes _v1_ip(str family, str text):
    # netip.ParseAddr, then Is4 for TCP4, Is6 or Is4In6 for TCP6 (ErrInvalidAddress)
    cdef object addr
    try:
        if family == "TCP4":
            return str(ipaddress.IPv4Address(text)).encode()
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError("proxyproto: invalid address") from None
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped).encode()
    return str(addr).split("%")[0].encode()


cdef tuple _v1(bytes data, const unsigned char *p, Py_ssize_t n):
    cdef Py_ssize_t i, end = -1
    cdef Py_ssize_t lim = n if n < V1_MAX else V1_MAX
    for i in range(lim):
        if p[i] == 10:
            end = i + 1
            break
    if end < 0:
        if n >= V1_MAX:
            raise ValueError("proxyproto: version 1 header must be 107 bytes or less")
        return None
    if end < 2 or p[end - 2] != 13:
        raise ValueError("proxyproto: header is invalid, must end with \\r\\n")
    try:
        line = data[:end - 2].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("proxyproto: invalid address") from None
    tokens = line.split(" ")
    if len(tokens) < 2 or tokens[1] not in ("TCP4", "TCP6", "UNKNOWN"):
        raise ValueError("proxyproto: can't read address family or protocol")
    if tokens[1] == "UNKNOWN":
        return (end, None)                 # command LOCAL: the connection's own address
    if len(tokens) < 6:
        raise ValueError("proxyproto: can't read address family or protocol")
    ip = _v1_ip(tokens[1], tokens[2])
    _v1_ip(tokens[1], tokens[3])
    _port(tokens[4])
    _port(tokens[5])
    return (end, ip)


cdef tuple _v2(bytes data, const unsigned char *p, Py_ssize_t n):
    cdef int cmd, fam, hi, lo
    cdef Py_ssize_t length, need, total
    if n < 16:
        return None
    cmd = p[12]
    if cmd != 0x20 and cmd != 0x21:
        raise ValueError("proxyproto: unsupported proxy protocol version and command")
    fam = p[13]
    hi = fam & 0xF0
    lo = fam & 0x0F
    if fam == 0x00 and cmd != 0x20:
        raise ValueError("proxyproto: unsupported address family and protocol")
    length = (p[14] << 8) | p[15]
    # Header.validateLength: checked in go-proxyproto's order (IsIPv4, IsIPv6, IsUnix, IsUnspec)
    if hi == 0x10:
        need = 12
    elif hi == 0x20:
        need = 36
    elif hi == 0x30:
        need = 216
    elif hi == 0x00 or lo == 0x00:
        need = 0
    else:
        raise ValueError("proxyproto: invalid length")
    if length < need:
        raise ValueError("proxyproto: invalid length")
    total = 16 + length
    if total > V2_MAX:
        raise ValueError("proxyproto: invalid length")
    if n < total:
        return None
    if cmd == 0x20 or hi == 0x00 or hi == 0x30 or (hi != 0x10 and hi != 0x20):
        return (total, None)               # LOCAL, UNSPEC or AF_UNIX: own address
    if hi == 0x10:
        return (total, _text_ip(data[16:20]))
    return (total, _text_ip(data[16:32]))


def parse(bytes data):
    """See the module docstring."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if n == 0:
        return None
    if p[0] != b'P' and p[0] != 13:
        return (0, None)                   # the common case: one byte decides
    if p[0] == b'P':
        if not _prefix(p, n, SIGV1):
            return (0, None)
        if n < 5:
            return None
        return _v1(data, p, n)
    if not _prefix(p, n, SIGV2):
        return (0, None)
    if n < 12:
        return None
    return _v2(data, p, n)


def v1_header(src, dst, int sport, int dport):
    """A v1 header line (for tests and tools)."""
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2_header(src=None, dst=None, int sport=0, int dport=0, bint local=False, bytes tlvs=b""):
    """A v2 header (for tests and tools): PROXY over TCP4/TCP6, or LOCAL."""
    if local or src is None:
        return SIGV2 + bytes([0x20, 0x00]) + len(tlvs).to_bytes(2, "big") + tlvs
    if ":" in src:
        body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
        fam = 0x21
    else:
        body = (socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
                + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
        fam = 0x11
    body += tlvs
    return SIGV2 + bytes([0x21, fam]) + len(body).to_bytes(2, "big") + body
