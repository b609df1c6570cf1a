# HPACK (RFC 7541): header compression for HTTP/2 (engine/hpack.pyx).
# Errors: HpackError (-> connection error COMPRESSION_ERROR) and HeaderListTooLarge (the block
# decoded, the table stayed in sync, the list was over max_header_list_size -> 431 / RST_STREAM).
cimport cython
from cpython.object cimport PyObject


cdef struct Entry:
    # One dynamic-table field. All references owned by the table.
    PyObject *name      # bytes
    PyObject *value     # bytes
    PyObject *field     # the (name, value) tuple the decoder hands out; NULL in the encoder
    Py_hash_t name_hash # hash(name): the encoder's first comparison when it searches the table
    Py_ssize_t size     # RFC 7541 §4.1: len(name) + len(value) + 32


cdef struct Table:
    # RFC 7541 §2.3.2 dynamic table: a ring of entries, oldest at `first`, newest at
    # first + count - 1. Capacity (mask + 1) is a power of two >= max_size / 32 + 1, so an
    # insertion never finds the ring full (every entry takes at least 32 octets).
    Entry *slots        # owned (PyMem)
    Py_ssize_t mask
    Py_ssize_t first
    Py_ssize_t count
    Py_ssize_t size     # sum of entry sizes, <= max_size
    Py_ssize_t max_size # the size the last dynamic table size update set


@cython.final
cdef class Decoder:
    cdef Table _table
    cdef Py_ssize_t _settings_max   # SETTINGS_HEADER_TABLE_SIZE we advertised and the peer acked
    cdef Py_ssize_t _pending_min    # smallest setting since the last block's size update
    cdef bint _expect_update        # the setting fell below the table's size: the next block
                                    # must open with a size update (RFC 7541 §4.2, nghttp2)
    cdef bint _broken               # an HpackError was raised: the table is out of sync
    cdef unsigned char *_scratch    # Huffman output buffer; owned (PyMem)
    cdef Py_ssize_t _scratch_cap
    cdef public Py_ssize_t max_header_list_size  # RFC 9113 §6.5.2 size: sum(len(n)+len(v)+32)
    # bumped by every change of the state a decoding depends on (an insertion, a size update
    # or setting): a block whose decoding left it unchanged decodes alike while it stays
    # (engine/h2.pyx reuses the fields of a repeated request block)
    cdef readonly unsigned long long generation
    cpdef list decode(self, bytes block)
    cpdef void set_max_table_size(self, Py_ssize_t n)
    cdef int _fail(self, str reason) except -1
    cdef object _string(self, const unsigned char **pp, const unsigned char *end, Py_ssize_t room)


@cython.final
cdef class Encoder:
    cdef Table _table
    cdef Py_ssize_t _cap            # the most this encoder is willing to keep (constructor)
    cdef Py_ssize_t _pending_min    # smallest size since the last block; -1: no update due
    cdef unsigned char *_buf        # output being built; owned (PyMem), reused across blocks
    cdef Py_ssize_t _len
    cdef Py_ssize_t _buf_cap
    # bumped by every change of the state an encoding depends on (a table insertion, a new
    # peer table size, a size update sent): a block whose encoding left it unchanged is
    # what encoding the same fields again yields while it stays (engine/h2.pyx reuses it)
    cdef readonly unsigned long long generation
    cpdef bytes encode(self, list headers)
    cpdef void set_peer_table_size(self, Py_ssize_t n)
    cdef int _reserve(self, Py_ssize_t extra) except -1
    cdef int _field(self, object name, object value, int mode) except -1
    cdef void _int(self, Py_ssize_t n, int prefix, unsigned char first) noexcept
    cdef void _str(self, const unsigned char *s, Py_ssize_t n) noexcept

