# cython: language_level=3
"""A server-side TLS connection's per-event work in C: handshake steps, reads, writes.

pyroute.tls builds the pyOpenSSL ``Connection`` (its context, SNI and ALPN callbacks, and
everything a test or a log asks about a connection); this module drives it. The OpenSSL
functions are the ones pyOpenSSL itself calls: their addresses come from the cffi library of
``cryptography`` (the OpenSSL that made the contexts) once at import, so a handshake step, a
read or a write is a direct C call with no Python frame, no cffi argument conversion and no
exception per would-block (pyOpenSSL's ``recv`` also allocates a buffer per call).

``TLSStream`` has a socket's face for code written for plain sockets (engine/conn.pyx):
``recv_into`` returns 0 at EOF (close_notify or not) and raises BlockingIOError when it would
block (either way round: TLS may need to write to read); ``send`` likewise. Failures (rare)
are turned into exceptions by the hooks pyroute.tls installs with :func:`bind`, which use
pyOpenSSL's own error reporting.
"""
cimport cython
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from libc.stdint cimport uintptr_t

from cryptography.hazmat.bindings._rust import _openssl

cdef extern from *:
    """
    typedef struct ssl_st SSL;   /* opaque: only OpenSSL looks inside */
    """
    ctypedef struct SSL:
        pass

ctypedef int (*ssl_fn)(SSL *) noexcept nogil
ctypedef int (*ssl_io_fn)(SSL *, void *, int) noexcept nogil
ctypedef int (*ssl_err_fn)(const SSL *, int) noexcept nogil
ctypedef void (*void_fn)() noexcept nogil

cdef ssl_fn _SSL_do_handshake
cdef ssl_io_fn _SSL_read
cdef ssl_io_fn _SSL_write
cdef ssl_err_fn _SSL_get_error
cdef ssl_fn _SSL_shutdown
cdef void_fn _ERR_clear_error
cdef int _WANT_READ
cdef int _WANT_WRITE

cdef object _ffi = _openssl.ffi
cdef object _lib = _openssl.lib


cdef uintptr_t _address(name) except 0:
    return int(_ffi.cast("uintptr_t", _ffi.addressof(_lib, name)))


_SSL_do_handshake = <ssl_fn> _address("SSL_do_handshake")
_SSL_read = <ssl_io_fn> _address("SSL_read")
_SSL_write = <ssl_io_fn> _address("SSL_write")
_SSL_get_error = <ssl_err_fn> _address("SSL_get_error")
_SSL_shutdown = <ssl_fn> _address("SSL_shutdown")
_ERR_clear_error = <void_fn> _address("ERR_clear_error")
_WANT_READ = _lib.SSL_ERROR_WANT_READ
_WANT_WRITE = _lib.SSL_ERROR_WANT_WRITE

# handshake() results (pyroute.tls: WANT_READ / WANT_WRITE)
DONE = 0
WANT_READ = 1
WANT_WRITE = 2

cdef int MAX_PLAINTEXT = 1 << 14   # one TLS record's plaintext (RFC 8446 §5.1)

# Failure hooks (pyroute.tls.bind): called with (stream, OpenSSL result) on the rare paths.
cdef object _handshake_failed = None   # raises the reason the handshake failed
cdef object _read_failed = None        # returns 0 (EOF) or raises OSError
cdef object _write_failed = None       # raises OSError
cdef object _server_name_of = None     # the SNI OpenSSL saw, when the peek read none


def bind(handshake_failed, read_failed, write_failed, server_name_of):
    """Install the hooks: ``f(stream, result)`` for a handshake step, a read and a write that
    OpenSSL failed with something other than want-read/want-write; ``server_name_of(stream)``
    once a handshake whose stream has no ``server_name`` is done."""
    global _handshake_failed, _read_failed, _write_failed, _server_name_of
    _handshake_failed = handshake_failed
    _read_failed = read_failed
    _write_failed = write_failed
    _server_name_of = server_name_of


@cython.final
@cython.freelist(64)
cdef class TLSStream:
    """A pyOpenSSL server ``Connection`` on a non-blocking socket, from the first handshake step
    to the close. ``server_name``: the SNI (trimmed, lower-cased; "" when none), as Go's
    ``req.TLS.ServerName`` feeds Traefik's SNICheck; ``option``: the TLS option's name."""

    cdef readonly object conn       # the pyOpenSSL Connection (owns the SSL object)
    cdef readonly object sock
    cdef readonly int fd
    cdef public str server_name
    cdef public str option
    cdef SSL *ssl                   # conn's, alive as long as conn
    # The last read could not go on before a write (SSL_read said want-write, the socket
    # buffer full): retry the read once writable. OpenSSL answers a KeyUpdate asking for one
    # back (RFC 8446 §4.6.3) with the next write, not from inside the read.
    cdef readonly bint read_wants_write

    def __init__(self, conn, sock, str server_name, str option):
        self.conn = conn
        self.sock = sock
        self.fd = sock.fileno()
        self.server_name = server_name
        self.option = option
        self.ssl = <SSL *> <uintptr_t> int(_ffi.cast("uintptr_t", conn._ssl))

    def fileno(self):
        return self.fd

    def handshake(self):
        """Advance the handshake: DONE, or WANT_READ / WANT_WRITE for the event to wait for.
        A failure raises what the bound hook raises (pyroute.tls.TLSRefused)."""
        cdef int result = _SSL_do_handshake(self.ssl)
        cdef int error
        if result == 1:
            if self.server_name is None:
                self.server_name = _server_name_of(self)
            return DONE
        error = _SSL_get_error(self.ssl, result)
        if error == _WANT_READ:
            return WANT_READ
        if error == _WANT_WRITE:
            return WANT_WRITE
        _handshake_failed(self, result)
        return DONE     # not reached: the hook raises

    def recv_into(self, buffer, Py_ssize_t nbytes=0):
        """Decrypt into ``buffer`` (at most one record, no copy); 0 at EOF."""
        cdef Py_buffer view
        cdef int result, error
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            if nbytes <= 0 or nbytes > view.len:
                nbytes = view.len
            # One record per call: without read-ahead OpenSSL reads one record per SSL_read,
            # so nothing decrypted waits inside OpenSSL while the event loop watches the
            # socket; the next record is still in the socket.
            if nbytes > MAX_PLAINTEXT:
                nbytes = MAX_PLAINTEXT
            result = _SSL_read(self.ssl, view.buf, <int> nbytes)
        finally:
            PyBuffer_Release(&view)
        if result > 0:
            self.read_wants_write = False
            return result
        error = _SSL_get_error(self.ssl, result)
        self.read_wants_write = error == _WANT_WRITE
        if error == _WANT_READ or error == _WANT_WRITE:
            raise BlockingIOError
        return _read_failed(self, result)

    def recv(self, Py_ssize_t n):
        cdef bytearray buf = bytearray(n if n < MAX_PLAINTEXT else MAX_PLAINTEXT)
        cdef Py_ssize_t got = self.recv_into(buf)
        del buf[got:]
        return bytes(buf)

    def send(self, data):
        """Encrypt and write ``data`` (bytes-like); returns the bytes taken, as socket.send:
        fewer than given only when the socket is full (an EPOLLOUT edge follows), raises
        BlockingIOError when it took none."""
        cdef Py_buffer view
        cdef int result = 1, error
        cdef Py_ssize_t total = 0, left, n
        cdef char *buf
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        n = view.len
        try:
            buf = <char *> view.buf
            # pyOpenSSL contexts set SSL_MODE_ENABLE_PARTIAL_WRITE: SSL_write returns after
            # each record, so write on until all is taken or the socket is full (a short
            # count that is not "full" would wait for an edge that never comes). What is not
            # taken is passed again (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), as OpenSSL asks.
            while total < n:
                left = n - total
                result = _SSL_write(self.ssl, buf + total,
                                    <int> (left if left < 0x40000000 else 0x40000000))
                if result <= 0:
                    break
                total += result
        finally:
            PyBuffer_Release(&view)
        if total == n:
            return total
        error = _SSL_get_error(self.ssl, result)
        if error == _WANT_WRITE or error == _WANT_READ:
            if total:
                return total
            raise BlockingIOError
        _write_failed(self, result)
        return 0        # not reached: the hook raises

    def session_reused(self):
        """Whether the handshake resumed a session."""
        return bool(_lib.SSL_session_reused(self.conn._ssl))

    def close(self):
        # Go's tls.Conn.Close sends close_notify; best effort, never blocking: whatever
        # SSL_shutdown says, the socket closes, and OpenSSL's error queue is left empty.
        if _SSL_shutdown(self.ssl) < 0:
            _ERR_clear_error()
        self.sock.close()


# ---- the ClientHello peek ----------------------------------------------------------------

cdef Py_ssize_t MAX_HELLO_RECORD = 5 + (1 << 14)   # header + at most 2^14 bytes (RFC 8446 §5.1)


def parse_client_hello(data, Py_ssize_t n=-1):
    """Read the SNI from the first TLS record of a connection (``data[:n]``, all of it when
    ``n`` is -1): see pyroute.tls.parse_client_hello, which this is."""
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t need
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        if n < 0 or n > view.len:
            n = view.len
        p = <const unsigned char *> view.buf
        if n < 5:
            return False, 5
        if p[0] != 0x16:
            return True, None
        need = 5 + ((p[3] << 8) | p[4])
        if need > MAX_HELLO_RECORD:
            return True, None
        if n < need:
            return False, need
        return True, _sni_from_handshake(p + 5, need - 5)
    finally:
        PyBuffer_Release(&view)


cdef object _sni_from_handshake(const unsigned char *msg, Py_ssize_t size):
    # RFC 8446 §4.1.2 ClientHello; RFC 6066 §3 server_name. No server_name extension -> "",
    # any inconsistency -> None (a hello this parser cannot read).
    cdef Py_ssize_t end, p, ext_end, elen, q, stop, nlen
    cdef int etype
    if size < 4 or msg[0] != 1:
        return None
    end = 4 + ((msg[1] << 16) | (msg[2] << 8) | msg[3])
    if end > size:
        return None   # hello spans several records: Traefik's sniffer reads one record only
    p = 4 + 2 + 32                                  # legacy_version, random
    if p >= end:
        return None
    p += 1 + msg[p]                                 # legacy_session_id
    if p + 2 > end:
        return None
    p += 2 + ((msg[p] << 8) | msg[p + 1])           # cipher_suites
    if p >= end:
        return None
    p += 1 + msg[p]                                 # legacy_compression_methods
    if p == end:
        return ""                                   # no extensions at all
    if p + 2 > end:
        return None
    ext_end = p + 2 + ((msg[p] << 8) | msg[p + 1])
    p += 2
    if ext_end > end:
        return None
    while p + 4 <= ext_end:
        etype = (msg[p] << 8) | msg[p + 1]
        elen = (msg[p + 2] << 8) | msg[p + 3]
        p += 4
        if p + elen > ext_end:
            return None
        if etype == 0:                              # server_name
            q = p + 2                               # skip server_name_list length
            stop = p + elen
            while q + 3 <= stop:
                nlen = (msg[q + 1] << 8) | msg[q + 2]
                if q + 3 + nlen > stop:
                    return None
                if msg[q] == 0:                     # host_name
                    try:
                        # Traefik's types.CanonicalDomain: trimmed and lower-cased
                        return (<bytes> msg[q + 3:q + 3 + nlen]).decode("ascii").strip().lower()
                    except UnicodeDecodeError:
                        return None
                q += 3 + nlen
            return None
        p += elen
    return "" if p == ext_end else None
