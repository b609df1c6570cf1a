# cython: language_level=3
"""HPACK (RFC 7541): the header compression of HTTP/2, both directions, in C loops.

``Decoder.decode(block)`` turns one complete header block (HEADERS + CONTINUATION payloads
joined) into ``[(name, value), ...]`` of bytes, in order; ``Encoder.encode(headers)`` does the
reverse. One Decoder and one Encoder per connection and direction: the dynamic table is
connection state, so blocks must be passed in the order they travel.

Errors: ``HpackError`` is a COMPRESSION_ERROR (RFC 9113 §4.3): the table is out of sync and the
Decoder refuses every later block. ``HeaderListTooLarge`` (a subclass) means the block decoded
cleanly -- the table is in sync, the connection may go on -- but its header list is larger than
``max_header_list_size``; the list is dropped as soon as it crosses the limit (the rest of the
block is only walked for its table insertions), so a small block referencing a large entry many
times costs no memory.

Encoder policy (nghttp2's ``deflate_nv``, which follows Firefox): never indexed --
``authorization``, ``proxy-authorization`` (pyroute's addition: it carries credentials the same
way), ``cookie`` values shorter than 20 octets, and any header passed as ``(name, value, True)``;
literal without indexing -- ``:path``, ``age``, ``content-length``, ``etag``,
``if-modified-since``, ``if-none-match``, ``location``, ``set-cookie``, and any field larger than
3/4 of the table; everything else is added to the dynamic table. Exact matches (static table
first, then dynamic) become one indexed representation; Huffman is used when it is shorter.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLong
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject, PyObject_Hash
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.string cimport memcmp, memcpy, memset

from pyroute._engine.errors import EngineError

__all__ = ["HpackError", "HeaderListTooLarge", "Decoder", "Encoder", "STATIC_TABLE",
           "DEFAULT_TABLE_SIZE", "DEFAULT_MAX_HEADER_LIST_SIZE", "huffman_encode",
           "huffman_decode", "encode_integer", "decode_integer"]


class HpackError(EngineError):
    """The peer sent a header block RFC 7541 forbids: connection error COMPRESSION_ERROR."""


class HeaderListTooLarge(HpackError):
    """The decoded header list is over ``max_header_list_size`` (RFC 9113 §10.5.1: answer 431 or
    RST_STREAM). The Decoder's table is still in sync: the connection may continue."""


cdef object _HpackError = HpackError
cdef object _HeaderListTooLarge = HeaderListTooLarge

DEFAULT_TABLE_SIZE = 4096                 # RFC 9113 §6.5.2 SETTINGS_HEADER_TABLE_SIZE initial
# Go's http.DefaultMaxHeaderBytes, which Traefik's HTTP/2 server advertises unless configured;
# the HTTP/2 layer sets the value it actually advertises.
DEFAULT_MAX_HEADER_LIST_SIZE = 1 << 20

cdef enum:
    _ENTRY_OVERHEAD = 32    # RFC 7541 §4.1
    _STATIC_LEN = 61        # RFC 7541 Appendix A
    _SCRATCH_KEEP = 8192    # Huffman output buffer a Decoder keeps between strings
    _BUF_KEEP = 65536       # encoder output buffer kept between blocks; larger is freed after
# integers past 2^32-1 are refused (no HTTP/2 size or index is larger)
cdef Py_ssize_t _MAX_INT = 0xFFFFFFFF

# ---------------------------------------------------------------------------------------------
# Huffman code, RFC 7541 Appendix B (symbol 256 is EOS)
cdef extern from *:
    """
    static const uint32_t pyroute_hpack_huff_code[257] = {
        0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7,
        0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec,
        0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
        0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb,
        0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa,
        0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
        0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc,
        0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
        0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
        0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72,
        0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
        0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26,
        0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7,
        0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
        0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc,
        0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9,
        0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
        0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3,
        0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef,
        0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
        0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec,
        0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef,
        0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
        0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec,
        0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed,
        0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
        0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5,
        0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3,
        0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
        0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea,
        0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee,
        0x3fffffff,
    };
    static const uint8_t pyroute_hpack_huff_bits[257] = {
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
        30,
    };
    """
    const uint32_t pyroute_hpack_huff_code[257]
    const uint8_t pyroute_hpack_huff_bits[257]

# Decoding is a finite-state machine over 4-bit nibbles (the approach of nghttp2's
# nghttp2_hd_huffman_data.c): a state is an internal node of the code tree (256 of them,
# 0 = root); _huff_fsm[state][nibble] packs the next state, the symbol completed inside the
# nibble (at most one: no code is shorter than 5 bits) and flags. The table is derived from
# the code above when the module loads, so it cannot disagree with the encoder's table.
cdef enum:
    # entry: symbol (bits 0-7) | next state * 16 (bits 8-19, the row's offset) | flags
    _H_SYM = 1 << 20        # the nibble completed a symbol (low 8 bits)
    _H_FAIL = 1 << 21       # the nibble completed EOS: RFC 7541 §5.2 decoding error
    _H_ACCEPT = 1 << 22     # the bits since the last symbol are a valid padding (<= 7 ones)

cdef uint32_t _huff_fsm[256][16]


cdef int _build_huffman_fsm() except -1:
    cdef int child[256][2]           # >= 256: leaf 256 + symbol; -1: not built yet
    cdef bint accept[256]
    cdef int sym, k, bit, cur, nxt, s, nib, done
    cdef uint32_t code, entry
    memset(child, 0xff, sizeof(child))
    memset(accept, 0, sizeof(accept))
    nxt = 1
    for sym in range(257):
        code = pyroute_hpack_huff_code[sym]
        cur = 0
        for k in range(pyroute_hpack_huff_bits[sym] - 1, -1, -1):
            bit = (code >> k) & 1
            if k == 0:
                child[cur][bit] = 256 + sym
            else:
                if child[cur][bit] < 0:
                    child[cur][bit] = nxt
                    nxt += 1
                cur = child[cur][bit]
    if nxt != 256:
        raise RuntimeError("HPACK Huffman table is not a complete code")
    # RFC 7541 §5.2: padding is the most significant bits of EOS (all ones), at most 7 of them
    cur = 0
    accept[0] = True
    for k in range(7):
        cur = child[cur][1]
        accept[cur] = True
    for s in range(256):
        for nib in range(16):
            cur = s
            entry = 0
            for k in range(3, -1, -1):
                nxt = child[cur][(nib >> k) & 1]
                if nxt >= 256:
                    if nxt == 256 + 256:
                        entry |= _H_FAIL
                        break
                    entry |= _H_SYM | <uint32_t>(nxt - 256)
                    cur = 0
                else:
                    cur = nxt
            if accept[cur]:
                entry |= _H_ACCEPT
            _huff_fsm[s][nib] = entry | (<uint32_t>cur << 12)
    return 0


_build_huffman_fsm()


cdef Py_ssize_t _huff_decode(const unsigned char *src, Py_ssize_t n,
                             unsigned char *dst) noexcept nogil:
    """Decodes n octets into dst (room for 2 * n octets). -1: invalid."""
    # Branch-free: whether a nibble completes a symbol is data-dependent (about one in two),
    # so the symbol octet is always stored and the output advances by the SYM bit; FAIL bits
    # are collected and checked once at the end (the walk after EOS is harmless).
    cdef const uint32_t *fsm = &_huff_fsm[0][0]
    cdef uint32_t t = _H_ACCEPT, seen = 0
    cdef Py_ssize_t i, o = 0
    cdef unsigned char c
    for i in range(n):
        c = src[i]
        t = fsm[((t >> 8) & 0xff0) | (c >> 4)]
        dst[o] = <unsigned char>t
        o += (t >> 20) & 1
        seen |= t
        t = fsm[((t >> 8) & 0xff0) | (c & 0xf)]
        dst[o] = <unsigned char>t
        o += (t >> 20) & 1
        seen |= t
    if (seen & _H_FAIL) or not (t & _H_ACCEPT):
        return -1
    return o


cdef bint _huff_valid(const unsigned char *src, Py_ssize_t n) noexcept nogil:
    """_huff_decode's checks without its output (strings the decoder does not keep)."""
    cdef const uint32_t *fsm = &_huff_fsm[0][0]
    cdef uint32_t t = _H_ACCEPT, seen = 0
    cdef Py_ssize_t i
    for i in range(n):
        t = fsm[((t >> 8) & 0xff0) | (src[i] >> 4)]
        seen |= t
        t = fsm[((t >> 8) & 0xff0) | (src[i] & 0xf)]
        seen |= t
    return not (seen & _H_FAIL) and (t & _H_ACCEPT)


cdef inline Py_ssize_t _huff_len(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    """Length in octets of the Huffman coding of s."""
    cdef uint64_t bits = 0
    cdef Py_ssize_t i
    for i in range(n):
        bits += pyroute_hpack_huff_bits[s[i]]
    return <Py_ssize_t>((bits + 7) >> 3)


cdef Py_ssize_t _huff_encode(const unsigned char *s, Py_ssize_t n, unsigned char *dst) noexcept nogil:
    """Writes the Huffman coding of s (exactly _huff_len(s, n) octets) to dst."""
    # bits gather in a 64-bit word and leave 32 at a time: < 32 pending + a 30-bit code fit
    cdef uint64_t acc = 0
    cdef uint32_t w
    cdef unsigned int nbits = 0, bits
    cdef Py_ssize_t i, o = 0
    cdef unsigned char c
    for i in range(n):
        c = s[i]
        bits = pyroute_hpack_huff_bits[c]
        acc = (acc << bits) | pyroute_hpack_huff_code[c]
        nbits += bits
        if nbits >= 32:
            nbits -= 32
            w = <uint32_t>(acc >> nbits)
            dst[o] = <unsigned char>(w >> 24)
            dst[o + 1] = <unsigned char>(w >> 16)
            dst[o + 2] = <unsigned char>(w >> 8)
            dst[o + 3] = <unsigned char>w
            o += 4
    while nbits >= 8:
        nbits -= 8
        dst[o] = <unsigned char>(acc >> nbits)
        o += 1
    if nbits:
        # RFC 7541 §5.2: pad with the most significant bits of EOS (ones)
        dst[o] = <unsigned char>((acc << (8 - nbits)) | (0xff >> nbits))
        o += 1
    return o


def huffman_encode(bytes data not None):
    """The Huffman coding of data (RFC 7541 Appendix B), padded with ones."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, _huff_len(<const unsigned char *>PyBytes_AS_STRING(data), n))
    _huff_encode(<const unsigned char *>PyBytes_AS_STRING(data), n, <unsigned char *>PyBytes_AS_STRING(out))
    return out


def huffman_decode(bytes data not None):
    """Decodes a Huffman string; HpackError on EOS, bad padding or padding over 7 bits."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef bytes buf = PyBytes_FromStringAndSize(NULL, 2 * n)
    cdef Py_ssize_t got = _huff_decode(<const unsigned char *>PyBytes_AS_STRING(data), n,
                                       <unsigned char *>PyBytes_AS_STRING(buf))
    if got < 0:
        raise _HpackError("invalid Huffman string (EOS or bad padding)")
    return buf[:got]

# ---------------------------------------------------------------------------------------------
# Static table, RFC 7541 Appendix A (index 1..61)
_STATIC = (
    (b':authority', b''),  # 1
    (b':method', b'GET'),
    (b':method', b'POST'),
    (b':path', b'/'),
    (b':path', b'/index.html'),
    (b':scheme', b'http'),
    (b':scheme', b'https'),
    (b':status', b'200'),
    (b':status', b'204'),
    (b':status', b'206'),  # 10
    (b':status', b'304'),
    (b':status', b'400'),
    (b':status', b'404'),
    (b':status', b'500'),
    (b'accept-charset', b''),
    (b'accept-encoding', b'gzip, deflate'),
    (b'accept-language', b''),
    (b'accept-ranges', b''),
    (b'accept', b''),
    (b'access-control-allow-origin', b''),  # 20
    (b'age', b''),
    (b'allow', b''),
    (b'authorization', b''),
    (b'cache-control', b''),
    (b'content-disposition', b''),
    (b'content-encoding', b''),
    (b'content-language', b''),
    (b'content-length', b''),
    (b'content-location', b''),
    (b'content-range', b''),  # 30
    (b'content-type', b''),
    (b'cookie', b''),
    (b'date', b''),
    (b'etag', b''),
    (b'expect', b''),
    (b'expires', b''),
    (b'from', b''),
    (b'host', b''),
    (b'if-match', b''),
    (b'if-modified-since', b''),  # 40
    (b'if-none-match', b''),
    (b'if-range', b''),
    (b'if-unmodified-since', b''),
    (b'last-modified', b''),
    (b'link', b''),
    (b'location', b''),
    (b'max-forwards', b''),
    (b'proxy-authenticate', b''),
    (b'proxy-authorization', b''),
    (b'range', b''),  # 50
    (b'referer', b''),
    (b'refresh', b''),
    (b'retry-after', b''),
    (b'server', b''),
    (b'set-cookie', b''),
    (b'strict-transport-security', b''),
    (b'transfer-encoding', b''),
    (b'user-agent', b''),
    (b'vary', b''),
    (b'via', b''),  # 60
    (b'www-authenticate', b''),
)
STATIC_TABLE = _STATIC
cdef tuple _STATIC_KEEP = _STATIC      # owns what _static_fields borrows, whatever the globals

cdef PyObject *_static_fields[_STATIC_LEN + 1]   # borrowed from _STATIC, which the module keeps

# Encoder lookups by name, one dict probe per header: name -> first static index
# | number of static entries with that name << 8 | policy << 16 (names not listed: policy 0).
cdef enum:
    _P_INDEX = 0            # incremental indexing when it fits 3/4 of the table
    _P_NO_INDEX = 1         # literal without indexing
    _P_NEVER = 2            # literal never indexed
    _P_NEVER_SHORT = 3      # never indexed when the value is shorter than 20 octets (cookie)

cdef dict _NAME_INFO = {}


cdef _init_static():
    cdef int i
    for i in range(_STATIC_LEN):
        _static_fields[i + 1] = <PyObject *>_STATIC[i]
        name = _STATIC[i][0]
        if name in _NAME_INFO:
            _NAME_INFO[name] += 1 << 8
        else:
            _NAME_INFO[name] = (i + 1) | (1 << 8)
    _static_fields[0] = NULL
    # nghttp2 hd_deflate_decide_indexing: values that change per message or are secret-ish
    for name in (b":path", b"age", b"content-length", b"etag", b"if-modified-since",
                 b"if-none-match", b"location", b"set-cookie"):
        _NAME_INFO[name] |= _P_NO_INDEX << 16
    for name in (b"authorization", b"proxy-authorization"):
        _NAME_INFO[name] |= _P_NEVER << 16
    _NAME_INFO[b"cookie"] |= _P_NEVER_SHORT << 16


_init_static()

# ---------------------------------------------------------------------------------------------
# Dynamic table (RFC 7541 §2.3.2, §4): shared by Decoder and Encoder


cdef int _table_init(Table *t, Py_ssize_t max_size) except -1:
    t.slots = <Entry *>PyMem_Malloc(16 * sizeof(Entry))
    if t.slots == NULL:
        raise MemoryError()
    t.mask = 15
    t.first = 0
    t.count = 0
    t.size = 0
    t.max_size = max_size
    return 0


cdef inline Entry *_table_at(Table *t, Py_ssize_t d) noexcept:
    # d: 1 = newest (HPACK index 62)
    return &t.slots[(t.first + t.count - d) & t.mask]


cdef void _entry_release(Entry *e) noexcept:
    Py_DECREF(<object>e.name)
    Py_DECREF(<object>e.value)
    Py_XDECREF(e.field)


cdef void _table_evict(Table *t, Py_ssize_t limit) noexcept:
    # RFC 7541 §4.3/§4.4: evict from the oldest end until size <= limit
    cdef Entry *e
    while t.size > limit and t.count:
        e = &t.slots[t.first]
        t.size -= e.size
        _entry_release(e)
        t.first = (t.first + 1) & t.mask
        t.count -= 1


cdef void _table_free(Table *t) noexcept:
    if t.slots != NULL:
        _table_evict(t, -1)
        PyMem_Free(t.slots)
        t.slots = NULL


cdef int _table_add(Table *t, object name, object value, object field) except -1:
    cdef Py_ssize_t size = PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + _ENTRY_OVERHEAD
    cdef Py_ssize_t i, cap
    cdef Entry *slots
    cdef Entry *e
    if size > t.max_size:
        # RFC 7541 §4.4: an entry larger than the table empties it and is not added
        _table_evict(t, -1)
        return 0
    _table_evict(t, t.max_size - size)
    if t.count == t.mask + 1:
        # grow on demand (a 4 GiB table limit must not cost memory up front), oldest first
        cap = 2 * (t.mask + 1)
        slots = <Entry *>PyMem_Malloc(cap * sizeof(Entry))
        if slots == NULL:
            raise MemoryError()
        for i in range(t.count):
            slots[i] = t.slots[(t.first + i) & t.mask]
        PyMem_Free(t.slots)
        t.slots = slots
        t.mask = cap - 1
        t.first = 0
    e = &t.slots[(t.first + t.count) & t.mask]
    Py_INCREF(name)
    Py_INCREF(value)
    e.name = <PyObject *>name
    e.value = <PyObject *>value
    if field is None:
        e.field = NULL
    else:
        Py_INCREF(field)
        e.field = <PyObject *>field
    # only the encoder searches its table by name; a decoder entry (field set) skips the hash
    e.name_hash = PyObject_Hash(name) if field is None else 0
    e.size = size
    t.count += 1
    t.size += size
    return 0


cdef list _table_list(Table *t):
    cdef Py_ssize_t d
    cdef Entry *e
    out = []
    for d in range(1, t.count + 1):
        e = _table_at(t, d)
        out.append((<object>e.name, <object>e.value))
    return out

# ---------------------------------------------------------------------------------------------
# Integers (RFC 7541 §5.1)
cdef enum:
    _INT_OK = 0
    _INT_TRUNCATED = -1
    _INT_OVERFLOW = -2


cdef inline int _read_int(const unsigned char **pp, const unsigned char *end, int prefix,
                          uint32_t *out) noexcept nogil:
    # *pp < end on entry. At most 5 continuation octets (28 bits of shift), value <= 2^32-1:
    # refuses both overflow and absurdly long runs of 0x80 padding (as nghttp2 decode_length).
    cdef const unsigned char *p = pp[0]
    cdef uint32_t mask = (1u << prefix) - 1
    cdef uint64_t v = p[0] & mask
    cdef unsigned int shift = 0
    cdef unsigned char b
    p += 1
    if v == mask:
        while True:
            if p >= end:
                return _INT_TRUNCATED
            if shift > 28:
                return _INT_OVERFLOW
            b = p[0]
            p += 1
            v += <uint64_t>(b & 0x7f) << shift
            if v > 0xFFFFFFFFu:
                return _INT_OVERFLOW
            shift += 7
            if not (b & 0x80):
                break
    out[0] = <uint32_t>v
    pp[0] = p
    return _INT_OK

cdef inline Py_ssize_t _put_int(unsigned char *o, Py_ssize_t n, int prefix,
                                unsigned char first) noexcept nogil:
    # §5.1: n with a prefix-bit prefix, the bits above it from first; returns octets written
    cdef Py_ssize_t mask = (1 << prefix) - 1
    cdef unsigned char *start = o
    if n < mask:
        o[0] = first | <unsigned char>n
        return 1
    o[0] = first | <unsigned char>mask
    o += 1
    n -= mask
    while n >= 128:
        o[0] = <unsigned char>((n & 0x7f) | 0x80)
        o += 1
        n >>= 7
    o[0] = <unsigned char>n
    return (o + 1) - start


def encode_integer(Py_ssize_t n, int prefix):
    """RFC 7541 §5.1 coding of n with a prefix-bit prefix (1..8), the bits above it zero."""
    cdef unsigned char out[16]
    if prefix < 1 or prefix > 8 or n < 0 or n > _MAX_INT:
        raise ValueError("prefix must be 1..8 and n in [0, 2^32-1]")
    return PyBytes_FromStringAndSize(<const char *>out, _put_int(out, n, prefix, 0))


def decode_integer(bytes data not None, int prefix):
    """(value, octets consumed) of the §5.1 integer that starts data (the bits above the
    prefix ignored); HpackError when data ends first or the integer is out of bounds."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef const unsigned char *start = p
    cdef uint32_t v = 0
    cdef int rc
    if prefix < 1 or prefix > 8:
        raise ValueError("prefix must be 1..8")
    if PyBytes_GET_SIZE(data) == 0:
        raise _HpackError("truncated integer")
    rc = _read_int(&p, start + PyBytes_GET_SIZE(data), prefix, &v)
    if rc != _INT_OK:
        raise _HpackError("truncated integer" if rc == _INT_TRUNCATED else "integer overflow")
    return v, p - start

cdef str _int_error(int rc, str what):
    return ("block ends inside the %s" if rc == _INT_TRUNCATED
            else "%s over 2^32-1 or longer than 5 continuation octets") % what

# ---------------------------------------------------------------------------------------------
# Decoder
cdef object _SKIPPED = object()      # _string's answer when the caller did not need the octets


@cython.final
cdef class Decoder:
    """Decodes the header blocks of one direction of one HTTP/2 connection.

    ``max_table_size``: the SETTINGS_HEADER_TABLE_SIZE in force when the connection starts
    (4096 unless the peer acked another value); ``set_max_table_size`` changes it later.
    ``max_header_list_size``: bound of each decoded list, counted as RFC 9113 §6.5.2 does
    (sum of len(name) + len(value) + 32); over it, decode raises HeaderListTooLarge.
    """

    def __cinit__(self):
        # a usable state even if __init__ is skipped (Decoder.__new__)
        self._table.slots = NULL
        self._scratch = NULL
        self._scratch_cap = 0
        _table_init(&self._table, 4096)
        self._settings_max = 4096
        self._pending_min = -1
        self.max_header_list_size = DEFAULT_MAX_HEADER_LIST_SIZE

    def __init__(self, Py_ssize_t max_table_size=4096,
                 Py_ssize_t max_header_list_size=DEFAULT_MAX_HEADER_LIST_SIZE):
        if max_table_size < 0 or max_table_size > _MAX_INT:
            raise ValueError("max_table_size must be in [0, 2^32-1]")
        if self._table.slots != NULL:
            _table_free(&self._table)
        _table_init(&self._table, max_table_size)
        self._settings_max = max_table_size
        self._pending_min = -1
        self._expect_update = False
        self._broken = False
        self.max_header_list_size = max_header_list_size

    def __dealloc__(self):
        _table_free(&self._table)
        PyMem_Free(self._scratch)

    @property
    def table(self):
        """The dynamic table as [(name, value)], newest (index 62) first."""
        return _table_list(&self._table)

    @property
    def table_size(self):
        """Octets the dynamic table holds (RFC 7541 §4.1 sizes)."""
        return self._table.size

    @property
    def max_table_size(self):
        """The table's current maximum size (the last size update, or the setting)."""
        return self._table.max_size

    cpdef void set_max_table_size(self, Py_ssize_t n):
        """The SETTINGS_HEADER_TABLE_SIZE we advertised and the peer acknowledged: the most a
        dynamic table size update may ask for. When it is below the table's current maximum,
        the peer's next block must open with a size update no larger (RFC 7541 §4.2; the
        table shrinks now, as nghttp2's inflater does)."""
        if n < 0 or n > _MAX_INT:
            raise ValueError("max table size must be in [0, 2^32-1]")
        self._settings_max = n
        self.generation += 1
        if self._table.max_size > n:
            self._expect_update = True
            if self._pending_min < 0 or n < self._pending_min:
                self._pending_min = n
            self._table.max_size = n
            _table_evict(&self._table, n)

    cdef int _fail(self, str reason) except -1:
        self._broken = True
        raise _HpackError(reason)

    cdef object _string(self, const unsigned char **pp, const unsigned char *end, Py_ssize_t room):
        # RFC 7541 §5.2 string literal at *pp (which is < end). Returns bytes, or _SKIPPED when
        # its decoded length is surely over room (room < 0: not wanted at all) -- the octets are
        # then never built, though Huffman is still validated (a bad string is an error anywhere).
        cdef const unsigned char *p = pp[0]
        cdef bint huff = p[0] & 0x80
        cdef uint32_t n = 0
        cdef int rc
        cdef Py_ssize_t got
        cdef unsigned char *buf
        cdef object out
        rc = _read_int(&p, end, 7, &n)
        if rc != _INT_OK:
            self._fail(_int_error(rc, "string length"))
        if <Py_ssize_t>n > end - p:
            self._fail("string literal runs past the end of the block")
        pp[0] = p + n
        if not huff:
            if <Py_ssize_t>n > room:
                return _SKIPPED
            return PyBytes_FromStringAndSize(<const char *>p, n)
        # the shortest decoding of n octets: every symbol at the longest code, 30 bits
        if (8 * <Py_ssize_t>n - 7) // 30 > room:
            if not _huff_valid(p, n):
                self._fail("invalid Huffman string (EOS or bad padding)")
            return _SKIPPED
        if 2 * <Py_ssize_t>n > _SCRATCH_KEEP:
            # a rare long string: a buffer of its own, so no connection keeps a large one
            buf = <unsigned char *>PyMem_Malloc(2 * <Py_ssize_t>n)
            if buf == NULL:
                raise MemoryError()
            got = _huff_decode(p, n, buf)
            out = PyBytes_FromStringAndSize(<const char *>buf, got) if got >= 0 else None
            PyMem_Free(buf)
            if got < 0:
                self._fail("invalid Huffman string (EOS or bad padding)")
            return out
        if self._scratch == NULL:
            self._scratch = <unsigned char *>PyMem_Malloc(_SCRATCH_KEEP)
            if self._scratch == NULL:
                raise MemoryError()
            self._scratch_cap = _SCRATCH_KEEP
        got = _huff_decode(p, n, self._scratch)
        if got < 0:
            self._fail("invalid Huffman string (EOS or bad padding)")
        return PyBytes_FromStringAndSize(<const char *>self._scratch, got)

    cpdef list decode(self, bytes block):
        """Decodes one complete header block into [(name, value)] (bytes, in order)."""
        cdef const unsigned char *p
        cdef const unsigned char *end
        cdef Py_ssize_t budget = self.max_header_list_size
        cdef Py_ssize_t limit
        cdef bint collect = True, at_start = True, index
        cdef list out = []
        cdef uint32_t n = 0
        cdef int rc
        cdef unsigned char b
        cdef PyObject *ref = NULL
        cdef Table *t = &self._table
        cdef object name, value, field
        if block is None:
            raise TypeError("block must be bytes, not None")
        p = <const unsigned char *>PyBytes_AS_STRING(block)
        end = p + PyBytes_GET_SIZE(block)
        if self._broken:
            raise _HpackError("decoder out of sync after an earlier compression error")
        if self._expect_update and (p == end or (p[0] & 0xe0) != 0x20):
            self._fail("dynamic table size update expected at the start of the block")
        while p < end:
            b = p[0]
            if b & 0x80:
                # §6.1 indexed header field
                rc = _read_int(&p, end, 7, &n)
                if rc != _INT_OK:
                    self._fail(_int_error(rc, "index"))
                if n == 0:
                    self._fail("index 0")
                if n <= _STATIC_LEN:
                    ref = _static_fields[n]
                elif n - _STATIC_LEN <= <uint32_t>t.count:
                    ref = _table_at(t, n - _STATIC_LEN).field
                else:
                    self._fail("index %d past the table (61 + %d entries)" % (n, t.count))
                at_start = False
                if not collect:
                    continue
                field = <object>ref
            elif (b & 0xe0) == 0x20:
                # §6.3 dynamic table size update: only before the first field (§4.2)
                if not at_start:
                    self._fail("dynamic table size update after a header field")
                rc = _read_int(&p, end, 5, &n)
                if rc != _INT_OK:
                    self._fail(_int_error(rc, "table size update"))
                limit = self._settings_max
                if self._pending_min >= 0 and self._pending_min < limit:
                    limit = self._pending_min
                if n > <uint32_t>limit:
                    self._fail("dynamic table size update to %d over the limit %d" % (n, limit))
                self._pending_min = -1
                self._expect_update = False
                t.max_size = n
                _table_evict(t, n)
                self.generation += 1
                continue
            else:
                # §6.2 literal: with incremental indexing (01), without (0000), never (0001)
                index = b & 0x40
                rc = _read_int(&p, end, 6 if index else 4, &n)
                if rc != _INT_OK:
                    self._fail(_int_error(rc, "name index"))
                if n == 0:
                    if p >= end:
                        self._fail("truncated literal")
                    name = self._string(&p, end, PY_SSIZE_T_MAX if index else
                                        (budget - _ENTRY_OVERHEAD if collect else -1))
                elif n <= _STATIC_LEN:
                    name = <object>PyTuple_GET_ITEM(<object>_static_fields[n], 0)
                elif n - _STATIC_LEN <= <uint32_t>t.count:
                    name = <object>_table_at(t, n - _STATIC_LEN).name
                else:
                    self._fail("name index %d past the table (61 + %d entries)" % (n, t.count))
                if p >= end:
                    self._fail("truncated literal")
                # a string that alone would break the budget is never built (unless indexed)
                if index:
                    limit = PY_SSIZE_T_MAX
                elif collect and name is not _SKIPPED:
                    limit = budget - _ENTRY_OVERHEAD - PyBytes_GET_SIZE(name)
                else:
                    limit = -1
                value = self._string(&p, end, limit)
                at_start = False
                if index:
                    field = (name, value)
                    _table_add(t, name, value, field)
                    self.generation += 1
                elif not collect:
                    continue
                elif value is _SKIPPED or name is _SKIPPED:
                    collect = False
                    out = None
                    continue
                else:
                    field = (name, value)
            # RFC 9113 §6.5.2 size; the list is dropped the moment it crosses the limit
            budget -= (PyBytes_GET_SIZE(<object>PyTuple_GET_ITEM(field, 0))
                       + PyBytes_GET_SIZE(<object>PyTuple_GET_ITEM(field, 1)) + _ENTRY_OVERHEAD)
            if collect:
                if budget < 0:
                    collect = False
                    out = None
                else:
                    out.append(field)
        if not collect:
            raise _HeaderListTooLarge("header list larger than %d octets" % self.max_header_list_size)
        return out

# ---------------------------------------------------------------------------------------------
# Encoder
cdef enum:
    _M_INDEX = 0x40         # §6.2.1 literal with incremental indexing, 6-bit prefix
    _M_NO_INDEX = 0x00      # §6.2.2 literal without indexing, 4-bit prefix
    _M_NEVER = 0x10         # §6.2.3 literal never indexed, 4-bit prefix


cdef int _check_headers(list headers, Py_ssize_t count) except -1:
    # 1: some item has a third (never-index) element; TypeError on anything but bytes pairs
    cdef Py_ssize_t i, k
    cdef int third = 0
    cdef object item
    for i in range(count):
        item = <object>PyList_GET_ITEM(headers, i)
        if not PyTuple_CheckExact(item):
            raise TypeError("headers must be (name, value) tuples")
        k = PyTuple_GET_SIZE(item)
        if k != 2 and k != 3:
            raise TypeError("headers must be (name, value) tuples")
        if (not PyBytes_CheckExact(<object>PyTuple_GET_ITEM(item, 0))
                or not PyBytes_CheckExact(<object>PyTuple_GET_ITEM(item, 1))):
            raise TypeError("header names and values must be bytes")
        third |= k == 3
    return third


@cython.final
cdef class Encoder:
    """Encodes the header blocks of one direction of one HTTP/2 connection.

    ``table_size``: the most dynamic table this encoder keeps; the table actually used is the
    smaller of it and the peer's SETTINGS_HEADER_TABLE_SIZE (4096 until set_peer_table_size).
    """

    def __cinit__(self):
        self._table.slots = NULL
        self._buf = NULL
        self._buf_cap = 0
        _table_init(&self._table, 4096)
        self._cap = 4096
        self._pending_min = -1

    def __init__(self, Py_ssize_t table_size=4096):
        if table_size < 0 or table_size > _MAX_INT:
            raise ValueError("table_size must be in [0, 2^32-1]")
        if self._table.slots != NULL:
            _table_free(&self._table)
        self._cap = table_size
        _table_init(&self._table, min(table_size, 4096))
        # the peer's decoder starts at 4096 (RFC 9113 §6.5.2): a smaller table must be announced
        self._pending_min = self._table.max_size if self._table.max_size != 4096 else -1
        self._len = 0

    def __dealloc__(self):
        _table_free(&self._table)
        PyMem_Free(self._buf)

    @property
    def table(self):
        """The dynamic table as [(name, value)], newest (index 62) first."""
        return _table_list(&self._table)

    @property
    def table_size(self):
        """Octets the dynamic table holds (RFC 7541 §4.1 sizes)."""
        return self._table.size

    @property
    def max_table_size(self):
        """The dynamic table's maximum size (what the last size update announced or will)."""
        return self._table.max_size

    cpdef void set_peer_table_size(self, Py_ssize_t n):
        """The peer's SETTINGS_HEADER_TABLE_SIZE. If the table size changes, the next block
        opens with size updates: the smallest size since the last block, then the final one
        (RFC 7541 §4.2)."""
        if n < 0 or n > _MAX_INT:
            raise ValueError("peer table size must be in [0, 2^32-1]")
        if n > self._cap:
            n = self._cap
        if n == self._table.max_size:
            return
        if self._pending_min < 0 or n < self._pending_min:
            self._pending_min = n
        self.generation += 1
        self._table.max_size = n
        _table_evict(&self._table, n)

    cdef int _reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self._len + extra
        cdef unsigned char *buf
        if need > self._buf_cap:
            need = max(need, 2 * self._buf_cap, 256)
            buf = <unsigned char *>PyMem_Realloc(self._buf, need)
            if buf == NULL:
                raise MemoryError()
            self._buf = buf
            self._buf_cap = need
        return 0

    cdef void _int(self, Py_ssize_t n, int prefix, unsigned char first) noexcept:
        # the caller reserved 6 octets (values < 2^35)
        self._len += _put_int(self._buf + self._len, n, prefix, first)

    cdef void _str(self, const unsigned char *s, Py_ssize_t n) noexcept:
        # §5.2, Huffman when strictly shorter; the caller reserved n + 6 octets
        cdef Py_ssize_t h = _huff_len(s, n)
        if h < n:
            self._int(h, 7, 0x80)
            self._len += _huff_encode(s, n, self._buf + self._len)
        else:
            self._int(n, 7, 0)
            memcpy(self._buf + self._len, s, n)
            self._len += n

    cdef int _field(self, object name, object value, int sensitive) except -1:
        cdef Py_ssize_t nlen = PyBytes_GET_SIZE(name), vlen = PyBytes_GET_SIZE(value)
        cdef const unsigned char *n = <const unsigned char *>PyBytes_AS_STRING(name)
        cdef const unsigned char *v = <const unsigned char *>PyBytes_AS_STRING(value)
        cdef PyObject *info = PyDict_GetItem(_NAME_INFO, name)
        cdef long packed = 0
        cdef Py_ssize_t i, s_first = 0, s_end = 0, d, name_idx = 0
        cdef int policy = _P_INDEX, mode
        cdef object sv
        cdef Table *t = &self._table
        cdef Entry *e
        cdef Py_hash_t h
        if info != NULL:
            packed = PyLong_AsLong(<object>info)
            s_first = packed & 0xff
            s_end = s_first + ((packed >> 8) & 0xff)
            policy = packed >> 16
        if sensitive or policy == _P_NEVER or (policy == _P_NEVER_SHORT and vlen < 20):
            mode = _M_NEVER
        elif (policy == _P_NO_INDEX
              or 4 * (nlen + vlen + _ENTRY_OVERHEAD) > 3 * t.max_size):
            mode = _M_NO_INDEX
        else:
            mode = _M_INDEX
        self._reserve(nlen + vlen + 20)
        if mode != _M_NEVER:
            # exact match: the static table first (always one octet), then the dynamic one
            for i in range(s_first, s_end):
                sv = <object>PyTuple_GET_ITEM(<object>_static_fields[i], 1)
                if PyBytes_GET_SIZE(sv) == vlen and memcmp(PyBytes_AS_STRING(sv), v, vlen) == 0:
                    self._int(i, 7, 0x80)
                    return 0
        if t.count and (s_first == 0 or mode != _M_NEVER):
            h = PyObject_Hash(name)
            for d in range(1, t.count + 1):
                e = _table_at(t, d)
                if e.name_hash != h or PyBytes_GET_SIZE(<object>e.name) != nlen:
                    continue
                if e.name != <PyObject *>name and memcmp(PyBytes_AS_STRING(<object>e.name), n, nlen):
                    continue
                if (mode != _M_NEVER and PyBytes_GET_SIZE(<object>e.value) == vlen
                        and memcmp(PyBytes_AS_STRING(<object>e.value), v, vlen) == 0):
                    self._int(_STATIC_LEN + d, 7, 0x80)
                    return 0
                if name_idx == 0:
                    name_idx = _STATIC_LEN + d
                    if mode == _M_NEVER:
                        break
        if s_first:
            name_idx = s_first
        self._int(name_idx, 6 if mode == _M_INDEX else 4, <unsigned char>mode)
        if name_idx == 0:
            self._str(n, nlen)
        self._str(v, vlen)
        if mode == _M_INDEX:
            _table_add(t, name, value, None)
            self.generation += 1
        return 0

    cpdef bytes encode(self, list headers):
        """Encodes [(name, value)] or [(name, value, never_index)] (bytes, names lower-case)
        into one header block; a true third item sends the field as never indexed.
        A TypeError leaves the table untouched (the list is checked before any field is
        encoded: a half-encoded block would desynchronise the peer's table)."""
        cdef Py_ssize_t i, count
        cdef object item
        cdef bytes out
        cdef list flags = None
        if headers is None:
            raise TypeError("headers must be a list, not None")
        count = PyList_GET_SIZE(headers)
        if _check_headers(headers, count):
            # third items: their truth is tested once, here; __bool__ may run Python code
            # that changes the list, so it is checked again afterwards
            flags = [False] * count
            for i in range(count):
                item = <object>PyList_GET_ITEM(headers, i)
                if PyTuple_GET_SIZE(item) == 3:
                    flags[i] = bool(<object>PyTuple_GET_ITEM(item, 2))
            if PyList_GET_SIZE(headers) != count:
                raise TypeError("headers changed while being encoded")
            _check_headers(headers, count)
        self._len = 0
        if self._pending_min >= 0:
            # §4.2: the smallest size since the last block, then the final size
            self._reserve(12)
            if self._pending_min < self._table.max_size:
                self._int(self._pending_min, 5, 0x20)
            self._int(self._table.max_size, 5, 0x20)
            self._pending_min = -1
            self.generation += 1
        for i in range(count):
            item = <object>PyList_GET_ITEM(headers, i)
            self._field(<object>PyTuple_GET_ITEM(item, 0), <object>PyTuple_GET_ITEM(item, 1),
                        flags is not None and flags[i])
        out = PyBytes_FromStringAndSize(<const char *>self._buf, self._len)
        if self._buf_cap > _BUF_KEEP:
            # one huge block must not leave every connection holding its buffer
            PyMem_Free(self._buf)
            self._buf = NULL
            self._buf_cap = 0
        return out
