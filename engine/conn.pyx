# cython: language_level=3
"""The per-connection state machines of a proxied exchange: client side and upstream side.

A worker's epoll loop (pyroute.server.loop) calls ``on_event(events)`` on these objects.
One ``recv`` per readiness event; one ``send`` per piece of output (a head leaves together
with the body bytes that came with it); sockets are registered once, edge-triggered, and
never re-registered (no epoll_ctl per request or for backpressure); reading stops only for
backpressure, so a slow reader stops pyroute reading from the backend and
nothing is buffered beyond one receive per direction.

``ClientConn`` drives the protocol; ``UpstreamConn`` is a thin I/O object that reports to the
client connection owning it. While idle in its ``Pool`` an upstream connection stays
registered for reading, so a backend that closes it (or sends anything unasked) is seen at
once and the connection dropped; one that saw anything odd is never put back.

TLS: a client connection's socket-like object needs ``recv_into(buf)``, ``send(b)``,
``fileno()``, ``close()``: a ``pyroute.tls.TLSStream`` (finished handshake; BlockingIOError when
it would block), with ``tls`` true and the TLS side of the entry point (``ep.tls``): TLS routers
only (``snapshot.entries_tls``) and the 421 check of Traefik's SNICheck (``snapshot.tls``).

Middlewares and services get the exchange (engine/exchange.pyx) as their context, never the
connection: ``req``, ``path``, ``query``, ``remote_ip``, ``ep``, ``set_headers``,
``resp_extra``, ... The connection runs the exchange's chain (``_proceed``: router chains,
child routers, the service's chain, the pick; a middleware that returns WAIT resumes it
through ``exchange_resume``/``exchange_answer``), its response phase (``_response_start``,
``_answer``, ``_own_answer``) and ends it (``_end_exchange``: completion hooks, p2c's done).
``SubRequest`` sends a middleware's own request through the same pools (forwardAuth).
"""
cimport cython
import errno as _errno_mod
import os
import select
import socket
import ssl
import tempfile as _tempfile_mod

from pyroute._engine.http1 cimport (RequestParser, ResponseParser, Request, Response,
                                    ChunkedDecoder, Forwarder)
from pyroute._engine.rules cimport RouteTable
from pyroute._engine.exchange cimport Exchange, ResponseHead
from pyroute._engine.exchange import (WAIT as _WAIT_OBJ, apply_edits as _apply_edits_py,
                                      edit_answer as _edit_answer_py,
                                      run_response_phase as _run_response_phase_py)
from pyroute._engine import http1 as _http1
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from libc.errno cimport errno, EAGAIN, EINTR
from libc.string cimport memchr, memset
from libc.stdint cimport uint32_t, uint64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

# The per-request I/O calls libc directly on plain sockets: socket.recv_into/send cost an
# argument parse, a buffer export, a GIL release and an exception per EAGAIN each — more user
# time than the rest of a proxied request's bookkeeping. TLS streams keep their Python methods.
cdef extern from "<sys/socket.h>" nogil:
    ssize_t c_recv "recv"(int fd, void *buf, size_t n, int flags)
    ssize_t c_send "send"(int fd, const void *buf, size_t n, int flags)
    enum: MSG_NOSIGNAL

cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void *iov_base
        size_t iov_len
    ssize_t c_writev "writev"(int fd, const iovec *iov, int n)

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1
from pyroute._engine.errors import HttpParseError
from pyroute._engine.responses import CONTINUE_100, bad_request_response, error_response

cdef int EPOLLIN = select.EPOLLIN
cdef int EPOLLOUT = select.EPOLLOUT
# Connections are registered once, edge-triggered, for everything they will ever need: no
# epoll_ctl per request or for backpressure. A read that fills the buffer is followed by
# another (the socket may hold more); a shorter one drained it, and new bytes make a new edge.
cdef object ET_EVENTS = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
# the peer's FIN can come with the last bytes in one edge: then read on until EOF
cdef int HUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
cdef int FR_NONE = _http1.NONE
cdef int FR_LENGTH = _http1.LENGTH
cdef int FR_CHUNKED = _http1.CHUNKED
cdef int FR_CLOSE = _http1.CLOSE
cdef object chunk_header = _http1.chunk_header
cdef bytes LAST_CHUNK = _http1.LAST_CHUNK
cdef object _HttpParseError = HttpParseError
cdef object _error_response = error_response
cdef object _bad_request_response = bad_request_response
cdef bytes _CONTINUE_100 = CONTINUE_100
cdef object WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                          ssl.SSLWantWriteError)
cdef object _SSLWantRead = ssl.SSLWantReadError
cdef object _SSLWantWrite = ssl.SSLWantWriteError
cdef tuple _CONNECT_OK = (0, _errno_mod.EINPROGRESS, _errno_mod.EAGAIN, _errno_mod.EWOULDBLOCK)
cdef Py_ssize_t MAX_PIPELINED = 65536      # bytes of later requests buffered meanwhile
cdef Py_ssize_t MAX_RESPONSE_HEAD = 65536  # bigger backend heads are refused with 502
cdef int M_HEAD = 2                        # http1 method id of HEAD
cdef Py_ssize_t RECV_SIZE = 65536
# Traefik's backend transport sets http.Transport.ExpectContinueTimeout = 1s
# (pkg/server/service/transport.go): a request with "Expect: 100-continue" waits that long for
# the backend's 100, then its body is read anyway — and Go's server answers the client
# "100 Continue" when the body is first read. A backend that never sends 100 costs 1 s, not a
# hang. (Timers run on the loop's sweep, so it fires within SWEEP_INTERVAL after 1 s.)
cdef double EXPECT_CONTINUE_TIMEOUT = 1.0


def set_would_block(exc_types):
    """Add exception types that mean "try again on the next event" (TLS WantRead/Write)."""
    global WOULD_BLOCK
    WOULD_BLOCK = tuple(set(WOULD_BLOCK) | set(exc_types))


@cython.final
cdef class Env:
    """Per-worker state shared by the connections."""

    def __init__(self, loop, pools):
        self.loop = loop
        self.pools = pools
        self.snapshot = None
        # Go's server bounds a request head by bytes only (MaxHeaderBytes + 4096, set per
        # connection from the entry point's http.maxHeaderBytes): no separate limit on the
        # request line's length or on the number of header lines, so neither here
        self.parser = RequestParser(max_line=1 << 30, max_fields=1 << 30)
        self.rparser = ResponseParser()
        self.parser_owner = None
        self.rparser_owner = None
        self.draining = False
        self.now = loop.now
        self.clients = set()
        self.observers = []
        self.rbuf = bytearray(RECV_SIZE)
        self.rptr = PyByteArray_AS_STRING(self.rbuf)
        self.turn_end = []

    def subrequest(self, Pool pool, bytes head, bytes body, long long max_body, double timeout,
                   callback):
        """A request from the worker's loop through ``pool`` (see ``SubRequest``)."""
        return SubRequest(self, pool, head, body, max_body, timeout, callback)


cdef class TurnEnd:
    cdef void end_turn(self) except *:
        pass


cdef object _WAIT = _WAIT_OBJ
cdef object _apply_edits = _apply_edits_py
cdef object _edit_answer = _edit_answer_py
cdef object _run_response_phase = _run_response_phase_py


cdef inline int _status_of(bytes data):
    # the status code of a response pyroute answers itself ("HTTP/1.1 403 ...")
    cdef const char *p = PyBytes_AS_STRING(data)
    if PyBytes_GET_SIZE(data) < 12:
        return 0
    return (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)


cdef inline void _passed(Exchange ex, tuple hooks) except *:
    # a middleware let the request pass: its response phase and completion hook are due
    on_response = hooks[0]
    on_complete = hooks[1]
    if on_response is not None:
        if ex.responders is None:
            ex.responders = [on_response]
        else:
            ex.responders.append(on_response)
    if on_complete is not None:
        if ex.completers is None:
            ex.completers = [on_complete]
        else:
            ex.completers.append(on_complete)


cdef bint _header_lines_ok(list lines):
    # every (name, value) free of the bytes that would end or split a header line
    cdef bytes part
    for name, value in lines:
        for part in (name, value):
            if memchr(PyBytes_AS_STRING(part), 13, PyBytes_GET_SIZE(part)) != NULL or \
                    memchr(PyBytes_AS_STRING(part), 10, PyBytes_GET_SIZE(part)) != NULL or \
                    memchr(PyBytes_AS_STRING(part), 0, PyBytes_GET_SIZE(part)) != NULL:
                return False
    return True


cdef bytes _drop_lines(bytes head, list names):
    # the forwarded request head without the header lines ``names`` (lower case) name
    cdef list lines = head[:-4].split(b"\r\n")
    cdef list kept = [lines[0]]
    for line in lines[1:]:
        if line.split(b":", 1)[0].strip().lower() not in names:
            kept.append(line)
    return b"\r\n".join(kept) + b"\r\n\r\n"


cdef object _os_error(int e):
    return OSError(e, os.strerror(e))


cdef inline bytes _recv(Env env, object sock, int fd, bint raw):
    # One receive into the worker's buffer, copied out at its exact size: no 64 KiB
    # allocation per read, and no per-connection buffer held while a connection idles.
    # None: nothing to read now (would block). OSError: the connection failed.
    cdef Py_ssize_t n
    cdef int e
    if raw:
        while True:
            n = c_recv(fd, env.rptr, RECV_SIZE, 0)
            if n >= 0:
                break
            e = errno
            if e == EINTR:
                continue
            if e == EAGAIN:            # == EWOULDBLOCK on Linux
                return None
            raise _os_error(e)
    else:
        try:
            n = sock.recv_into(env.rbuf)
        except WOULD_BLOCK:
            return None
    return PyBytes_FromStringAndSize(env.rptr, n)


cdef inline Py_ssize_t _send(object sock, int fd, bint raw, bytes data) except -1:
    # One send; the number of bytes the kernel took (0 when it would block). OSError: failed.
    cdef Py_ssize_t n
    cdef int e
    if raw:
        while True:
            n = c_send(fd, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), MSG_NOSIGNAL)
            if n >= 0:
                return n
            e = errno
            if e == EINTR:
                continue
            if e == EAGAIN:            # == EWOULDBLOCK on Linux
                return 0
            raise _os_error(e)
    try:
        return sock.send(data)
    except WOULD_BLOCK:
        return 0


cdef Py_ssize_t _send2(int fd, bytes head, bytes body, Py_ssize_t skip) except -1:
    # head and body[skip:] in one writev: one system call, and no concatenated copy of the body
    cdef iovec iov[2]
    cdef Py_ssize_t n
    cdef int e
    iov[0].iov_base = PyBytes_AS_STRING(head)
    iov[0].iov_len = PyBytes_GET_SIZE(head)
    iov[1].iov_base = PyBytes_AS_STRING(body) + skip
    iov[1].iov_len = PyBytes_GET_SIZE(body) - skip
    while True:
        n = c_writev(fd, iov, 2)
        if n >= 0:
            return n
        e = errno
        if e == EINTR:
            continue
        if e == EAGAIN:
            return 0
        raise _os_error(e)


cdef inline bint _plain_path(bytes path, bytes query):
    # True when the entry point's normalisation has nothing to do: no '%', no "/." or "//"
    # in the path, no ';' in the query (one pass, no temporary objects)
    cdef const char *p = PyBytes_AS_STRING(path)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(path), i
    cdef char c, prev = 0
    for i in range(n):
        c = p[i]
        if c == b'%' or (prev == b'/' and (c == b'.' or c == b'/')):
            return False
        prev = c
    if query is not None and memchr(PyBytes_AS_STRING(query), b';',
                                    PyBytes_GET_SIZE(query)) != NULL:
        return False
    return True


# ---- what a request reads from the compiled configuration -----------------------------

cdef class ServerTarget:
    """Base of ``pyroute.proxy.snapshot.Server``: the fields read per request."""


cdef class RouteTarget:
    """Base of ``pyroute.proxy.snapshot.Route``."""


cdef class EntryTable:
    """Base of ``pyroute.proxy.snapshot.EntryRoutes``."""


cdef bytes _head_only(bytes data):
    # a HEAD request gets the head of pyroute's own answer, never its body (Go's server
    # discards what a handler writes for HEAD); the body would be read as the next response
    cdef Py_ssize_t end = data.find(b"\r\n\r\n")
    return data if end < 0 or end + 4 == len(data) else data[:end + 4]


cdef bytes _closing(bytes data):
    # The last response pyroute answers itself on a connection says so, as Go's server does
    # when it closes after the reply (server.go chunkWriter.writeHeader: closeAfterReply ->
    # delete any Connection header, write "Connection: close"). Local answers only; cached
    # error responses built with close=True already carry it and come back unchanged.
    cdef Py_ssize_t end = data.find(b"\r\n\r\n")
    cdef list lines
    if end < 0:
        return data
    head = data[:end]
    if head.find(b"\r\nConnection: close") >= 0:
        return data
    lines = [line for line in head.split(b"\r\n")
             if not line[:11].lower() == b"connection:"]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + data[end:]


cdef inline void _arm_write_timeout(ClientConn c) noexcept:
    # Go's http.Server WriteTimeout (Traefik respondingTimeouts.writeTimeout): readRequest sets
    # the write deadline once the request head has been read (server.go: defer
    # SetWriteDeadline(now + WriteTimeout)), so it covers reading the body, waiting for the
    # backend and writing the whole response. Go fails the next write after it; pyroute closes
    # the connection at the deadline (the client sees the same: no or a cut response). While
    # the body is read the read deadline runs too: the earlier one wins.
    c.write_deadline = c.env.now + c.write_timeout
    if c.deadline == 0.0 or c.write_deadline < c.deadline:
        c.deadline = c.write_deadline


# ---- upstream side ----------------------------------------------------------------------

cdef class UpstreamStream:
    """An HTTP/2 stream carrying an UpstreamConn's exchange (engine/h2up.pyx ``H2UpStream``)."""

    cdef bint send(self, bytes data) except -1:
        return True

    cdef void deliver(self) except *:
        pass

    cdef void cancel(self) except *:
        pass


cdef class H2Dialer:
    """A pool's HTTP/2 connections (engine/h2up.pyx ``H2Pool``)."""

    cdef UpstreamStream open(self, UpstreamConn up):
        return None

    cdef bint adopt(self, UpstreamConn up) except -1:
        return False

    cpdef close_all(self):
        pass


@cython.final
cdef class Pool:
    """Idle keep-alive connections to one server (address + transport settings). With ``h2``
    set (an h2c server) nothing is pooled here: each exchange is a stream of one of the
    dialer's multiplexed connections."""

    def __init__(self, addr, int family, int max_idle, double dial_timeout,
                 double header_timeout, double idle_timeout, str name, ssl_ctx=None,
                 server_hostname=None, resolver=None, verify=None):
        self.ssl_ctx = ssl_ctx
        self.server_hostname = server_hostname
        # a host name (not an IP): each new connection dials the addresses the resolver has
        # now, in order, as Go's dialer does (``addr``/``family`` are then unused)
        self.resolver = resolver
        self.verify = verify
        self.addr = addr
        self.family = family
        self.idle = []
        self.max_idle = max_idle
        self.dial_timeout = dial_timeout
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.name = name

    cdef UpstreamConn get(self, Env env):
        cdef UpstreamConn up
        if self.idle:
            up = self.idle.pop()
            up.deadline = 0.0
            return up
        return UpstreamConn(env, self)

    cdef void put(self, UpstreamConn up, double now):
        if up.stream is not None or len(self.idle) >= self.max_idle:
            up.close()
            return
        up.client = None
        up.deadline = now + self.idle_timeout if self.idle_timeout else 0.0
        self.idle.append(up)

    cdef void discard(self, UpstreamConn up):
        try:
            self.idle.remove(up)
        except ValueError:
            pass

    def close_all(self):
        for up in self.idle:
            up.close()
        self.idle = []
        if self.h2 is not None:
            self.h2.close_all()


cdef object _TemporaryFile = _tempfile_mod.TemporaryFile
cdef bytes _CONTENT_LENGTH = b"content-length"
cdef bytes _TRANSFER_ENCODING = b"transfer-encoding"
cdef tuple _SEND_ZERO_LENGTH = (b"POST", b"PUT", b"PATCH")


@cython.final
cdef class Spool:
    """A body read whole: in memory up to ``mem`` bytes, beyond that in an unlinked temporary
    file (oxy's multibuf: memBytes, then disk), so a huge body never sits in memory. Only the
    buffering middleware spools (its memRequestBodyBytes / memResponseBodyBytes); the file
    is written and read on the worker loop (regular-file I/O, page cache)."""

    def __cinit__(self, long long mem=-1):
        self.mem = mem
        self.parts = []

    @property
    def spooled(self):
        return self.file is not None

    cdef bint over(self, long long size) noexcept:
        return self.mem >= 0 and size > self.mem

    cdef void add(self, bytes data) except *:
        if not data:
            return
        self.size += len(data)
        if self.file is not None:
            self.file.write(data)
            return
        self.parts.append(data)
        if self.over(self.size):
            self.file = _TemporaryFile()
            self.file.write(b"".join(self.parts))
            self.parts = None

    cdef bytes whole(self):
        if self.file is not None:
            return None
        if len(self.parts) != 1:
            self.parts = [b"".join(self.parts)]
        return <bytes> self.parts[0]

    cdef void rewind(self) except *:
        if self.file is not None:
            self.file.flush()
            self.file.seek(0)

    cdef bytes read(self, Py_ssize_t n):
        return self.file.read(n)

    cpdef close(self):
        if self.file is not None:
            self.file.close()
        self.parts = None


cdef Spool _through(Spool sp, list transforms, bytes data):
    # a held body through transforms that start only once it is complete (compress deciding
    # on the sniffed type of a buffered response); ``data``: the body when in memory
    cdef Spool out = Spool(sp.mem)
    if data is not None:
        out.add(_fed(transforms, data, True))
    else:
        while True:
            piece = sp.read(RECV_SIZE)
            if not piece:
                break
            out.add(_fed(transforms, piece, False))
        out.add(_fed(transforms, b"", True))
    sp.close()
    return out


cdef bytes _fed(list transforms, bytes data, bint last):
    for t in transforms:
        if data:
            data = t.feed(data)
        if last:
            data = (data or b"") + (t.finish() or b"")
    return data or b""


cdef class UpstreamUser:
    """What an upstream connection reports to while it carries a request (the client
    connection relaying an exchange, or a middleware's sub-request). The defaults ignore."""

    cdef bint body_pending(self):
        return False

    cdef void expect_continue_timeout(self) except *:
        pass

    cdef void on_upstream_data(self, UpstreamConn up, bytes data) except *:
        pass

    cdef void on_upstream_eof(self, UpstreamConn up) except *:
        pass

    cdef void on_upstream_error(self, UpstreamConn up, int status) except *:
        pass

    cdef void on_upstream_connected(self, UpstreamConn up) except *:
        pass

    cdef void on_upstream_drained(self, UpstreamConn up) except *:
        pass

    cpdef close(self):
        pass


# Go's net.Dialer.FallbackDelay default (RFC 6555 "Happy Eyeballs"): how long a dual-stack
# name's primaries (the first address's family) dial alone before the other family races them
cdef double FALLBACK_DELAY = 0.3


cdef inline double _share(double deadline, double now, Py_ssize_t left) noexcept:
    # Go's partialDeadline: the time left shared by the addresses left, at least 2 s (or what
    # is left, if less); the deadline of this address's attempt
    cdef double rest = deadline - now
    cdef double share = rest / (left if left > 0 else 1)
    if share < 2.0:
        share = rest if rest < 2.0 else 2.0
    return now + share


@cython.final
cdef class FallbackDial:
    """The fallback racer of a dual-stack name (Go's dialParallel): the other family's
    addresses dialed one at a time on a socket of its own, each with its share of the dial
    timeout (dialSerial). When one connects before the primaries, the UpstreamConn takes its
    socket over (``_adopt``); when they all fail it says so (``_fallback_failed``)."""
    cdef UpstreamConn up
    cdef list addrs
    cdef Py_ssize_t index
    cdef object sock
    cdef int fd
    cdef int err                          # connect() error seen at once, 0: none
    cdef bint closed
    cdef public double deadline           # this address's share of the dial timeout; 0: none

    def __cinit__(self, UpstreamConn up, list addrs):
        self.up = up
        self.addrs = addrs
        self.fd = -1
        self._dial()
        up.loop.timed.add(self)

    cdef void _dial(self) except *:
        cdef UpstreamConn up = self.up
        family, addr = self.addrs[self.index]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()
        err = sock.connect_ex(addr)
        self.err = 0 if err in _CONNECT_OK else err
        # as UpstreamConn's registration, so that it can take the socket over as it is
        up.loop.register(self.fd, ET_EVENTS, self)
        if up.dial_deadline:
            self.deadline = _share(up.dial_deadline, up.loop.now, len(self.addrs) - self.index)

    cdef bint _next(self) except -1:
        self._close_sock()
        self.index += 1
        if self.index >= len(self.addrs) or (self.up.dial_deadline and
                                             self.up.loop.now >= self.up.dial_deadline):
            return False
        self._dial()
        return True

    cdef void _close_sock(self) except *:
        if self.sock is not None:
            self.up.loop.unregister(self.fd)
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
            self.fd = -1

    def on_event(self, int ev):
        if self.closed:
            return
        err = self.err or self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if not err:
            self.up._adopt(self, ev)          # first connect wins
            return
        if self._next():
            return
        self.close()
        self.up._fallback_failed(502)

    def on_timeout(self, now):
        if self.closed:
            return
        if self._next():
            return
        self.close()
        self.up._fallback_failed(504)

    cdef void close(self) except *:
        if self.closed:
            return
        self.closed = True
        self.deadline = 0.0
        self.up.loop.timed.discard(self)
        self._close_sock()

    def abort(self):
        # the loop's internal-error path
        cdef UpstreamConn up = self.up
        self.close()
        up.abort()


@cython.final
cdef class UpstreamConn:
    def __init__(self, Env env, Pool pool, bint transport=False):
        # ``transport``: the socket under an HTTP/2 connection of ``pool.h2`` (engine/h2up.pyx)
        loop = env.loop
        self.env = env
        self.loop = loop
        self.pool = pool
        self.client = None
        self.out = None
        self.closed = False
        self.reads = 0
        self.tls = pool.ssl_ctx is not None
        self.raw = not self.tls
        self.handshaking = False
        self.connecting = True
        self.paused = False
        self.hup = False
        self.events = 0       # registered once for everything (ET_EVENTS)
        self.addrs = None
        self.addr_index = 0
        self.fd = -1
        self.transport = transport
        if pool.h2 is not None and not transport:
            # an HTTP/2 server (h2c, or https that picked h2 by ALPN before): this exchange
            # is a stream on a shared connection, which dials (and times the dial) on its
            # own; ``connecting`` until it is connected. None: HTTP/1.1, dialed below
            stream = pool.h2.open(self)
            if stream is not None:
                self.raw = False
                self.dial_deadline = 0.0
                self.deadline = 0.0
                self.stream = stream
                loop.timed.add(self)
                return
        self.dial_deadline = loop.now + pool.dial_timeout if pool.dial_timeout else 0.0
        self.deadline = self.dial_deadline
        if pool.resolver is None:
            self._dial()      # an IP literal: dialed at once
        else:
            # a name: looked up for this connection, as Go's dialer does, in a thread
            # (pyroute.proxy.dns); the dial starts when the answer is back on the loop, and the
            # lookup counts against the dial timeout (Go's lookup runs under its deadline)
            self.resolving = True
            pool.resolver.resolve(loop, self._resolved)
        loop.timed.add(self)

    def _resolved(self, list primaries, list fallbacks, error):
        # on the loop: the name's addresses split as Go's addrList.partition (the first one's
        # family, the other), or none: the dial fails as Go's does on a DNSError (502)
        if self.closed:
            return
        self.resolving = False
        if not primaries:
            self._fail(502)
            return
        self.addrs = primaries
        if fallbacks:
            self.fallbacks = fallbacks
            self.fallback_timer = self.loop.call_later(FALLBACK_DELAY, self._start_fallback)
        try:
            self._dial()
        except OSError:          # no socket to be had (EMFILE): as a failed dial
            self.sock = None
            self.fd = -1
            if not self._primaries_failed(502):
                self._fail(502)

    def _start_fallback(self):
        # FALLBACK_DELAY passed with no primary connected, or the primaries all failed: the
        # other family races them (Go's dialParallel starts the fallback racer)
        self.fallback_timer = None
        if self.closed or not self.connecting or self.handshaking or self.fallbacks is None:
            return
        fallbacks = self.fallbacks
        self.fallbacks = None
        try:
            self.racer = FallbackDial(self, fallbacks)
        except OSError:          # no socket to be had (EMFILE): the fallback failed
            self._fallback_failed(502)

    cdef void _stop_fallback(self) except *:
        # a primary connected first (or the connection is gone): the fallback racer is closed
        # before or after it started (Go closes the loser's connection)
        if self.fallback_timer is not None:
            self.fallback_timer.cancel()
            self.fallback_timer = None
        if self.racer is not None:
            (<FallbackDial>self.racer).close()
            self.racer = None
        self.fallbacks = None

    cdef bint _dial_next(self) except -1:
        # a name with another address left: drop this attempt and dial that one
        if self.addrs is None or self.addr_index + 1 >= len(self.addrs):
            return False
        self.loop.unregister(self.fd)
        self.sock.close()
        self.addr_index += 1
        self._dial()
        return True

    cdef void _dial(self) except *:
        cdef Pool pool = self.pool
        family, addr = pool.family, pool.addr
        if self.addrs is not None:
            family, addr = self.addrs[self.addr_index]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        if family != socket.AF_UNIX:      # api@internal: the master's unix socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()
        err = sock.connect_ex(addr)
        # refused at once (nothing listens on loopback): reported by the first event,
        # which epoll delivers at once for a socket whose connect failed
        self.err = 0 if err in _CONNECT_OK else err
        self.loop.register(self.fd, ET_EVENTS, self)
        if self.addrs is not None and self.dial_deadline:
            # Go's dialSerial: each primary gets its partialDeadline
            self.deadline = _share(self.dial_deadline, self.loop.now,
                                   len(self.addrs) - self.addr_index)

    cdef void _drop_primary(self) except *:
        # the primaries' attempt is over (failed, or the fallback won): its socket goes; the
        # connection waits for the fallback racer under the whole dial's deadline
        if self.sock is not None:
            self.loop.unregister(self.fd)
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
            self.fd = -1
        self.deadline = self.dial_deadline

    cdef bint _primaries_failed(self, int status) except -1:
        # Go's dialParallel: the primaries all failed. True: the fallback racer may still
        # connect (started now if its delay had not passed: Go resets the timer to 0); False:
        # there is none, or it failed already, and the dial fails
        if self.fallbacks is None and self.racer is None:
            return False
        self.primary_status = status
        self._drop_primary()
        if self.racer is None:
            if self.fallback_timer is not None:
                self.fallback_timer.cancel()
            self._start_fallback()
        return True

    cdef void _fallback_failed(self, int status) except *:
        # the fallback racer's addresses all failed: the primaries go on alone, or, when they
        # are out too, the dial fails with their error (Go returns the primary's)
        self.racer = None
        if not self.closed and self.primary_status:
            self._fail(self.primary_status)

    cdef void _adopt(self, object racer, int ev) except *:
        # the fallback connected first: the primaries' attempt is closed and this connection
        # goes on on the fallback's socket, whose registration (ET_EVENTS, as ours) it takes
        # over without an epoll_ctl
        cdef FallbackDial r = <FallbackDial>racer
        self._drop_primary()
        self.racer = None
        self.sock = r.sock
        self.fd = r.fd
        self.deadline = r.deadline
        self.err = 0
        r.sock = None
        r.fd = -1
        r.close()
        self.loop.handlers[self.fd] = self
        self.on_event_c(ev)

    cdef void _fail(self, int status) except *:
        cdef UpstreamUser client = self.client
        self.close()
        if client is not None:
            client.on_upstream_error(self, status)

    cdef bint _tcp_connected(self) except -1:
        # this socket's connect won: TLS first for an https server; True when the connection
        # is ready now (what came with the event is read next)
        if self.racer is not None or self.fallback_timer is not None:
            self._stop_fallback()
        if self.tls and not self.handshaking:
            # https server (ServersTransport): TLS handshake before the request goes out
            self.handshaking = True
            self.sock = self.pool.ssl_ctx.wrap_socket(
                self.sock, server_hostname=self.pool.server_hostname,
                do_handshake_on_connect=False)
        if self.handshaking:
            self._handshake()
            return False
        self._connected()
        return True

    def on_event(self, int ev):
        self.on_event_c(ev)

    cdef void on_event_c(self, int ev) except *:
        cdef int err
        if self.connecting:
            err = self.err or self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err and not self.handshaking:
                # Go's dialer: the next primary, in order, within the same dial timeout; then
                # the fallback racer, if it is still at it
                if self._dial_next() or self._primaries_failed(502):
                    return
                self._fail(502)
                return
            if not self._tcp_connected() or self.closed or not ev & EPOLLIN:
                return
        if ev & HUP:
            self.hup = True
        if ev & EPOLLOUT and self.out is not None:
            self.flush()
            if self.closed:
                return
        if ev & ~EPOLLOUT and not self.paused:
            self.on_readable()

    cdef void _handshake(self) except *:
        cdef UpstreamUser client
        try:
            self.sock.do_handshake()
        except (_SSLWantRead, _SSLWantWrite):
            return          # the next edge continues it
        except (OSError, ValueError):
            # certificate refused, handshake failure: Traefik answers 502
            client = self.client
            self.close()
            if client is not None:
                client.on_upstream_error(self, 502)
            return
        self.handshaking = False
        if self.pool.verify is not None and not self.pool.verify(self.sock):
            # a check the ServersTransport asks for beyond the chain (peerCertURI): 502
            client = self.client
            self.close()
            if client is not None:
                client.on_upstream_error(self, 502)
            return
        if self.pool.h2 is not None and not self.transport and self.pool.h2.adopt(self):
            return            # ALPN picked h2: this exchange is now a stream (h2up.pyx)
        self._connected()

    cdef UpstreamConn take_socket(self):
        # a connected socket handed to a new UpstreamConn (an HTTP/2 connection's transport,
        # h2up.pyx H2Pool.adopt); this one keeps no socket
        cdef UpstreamConn t = UpstreamConn.__new__(UpstreamConn)
        t.env = self.env
        t.loop = self.loop
        t.pool = self.pool
        t.sock = self.sock
        t.fd = self.fd
        t.tls = self.tls
        t.raw = self.raw
        t.transport = True
        t.events = self.events
        self.loop.handlers[self.fd] = t
        self.loop.timed.add(t)
        self.sock = None
        self.fd = -1
        self.connecting = False
        self.deadline = 0.0
        self.dial_deadline = 0.0
        return t

    cdef void _connected(self) except *:
        self.connecting = False
        self.deadline = 0.0
        if self.client is not None:
            self.client.on_upstream_connected(self)
        if self.out is not None:
            self.flush()

    cdef void on_readable(self) except *:
        cdef UpstreamUser client
        cdef UpstreamStream stream = self.stream     # a reference: delivering may end it
        if stream is not None:
            stream.deliver()              # response bytes the stream held while paused
            return
        while True:
            try:
                data = _recv(self.env, self.sock, self.fd, self.raw)
            except OSError:
                client = self.client
                self.close()
                if client is not None:
                    client.on_upstream_error(self, 502)
                return
            if data is None:
                return
            client = self.client
            if client is None:
                # idle in the pool: EOF or unsolicited bytes -> never reuse
                self.pool.discard(self)
                self.close()
                return
            if not data:
                client.on_upstream_eof(self)
                return
            client.on_upstream_data(self, data)
            if self.closed or self.paused or self.client is not client:
                return
            # a short read drained the socket; not so with TLS, which returns one record
            # per read: read on until it would block
            if len(data) < RECV_SIZE and not self.tls and not self.hup:
                return

    cdef bint write(self, bytes data) except *:
        """Send ``data``; True when all of it left, False when the rest waits."""
        cdef Py_ssize_t n
        cdef UpstreamUser client
        cdef UpstreamStream stream = self.stream     # a reference: sending may end it
        if stream is not None:
            return stream.send(data)
        if self.out is not None:
            self.out = self.out + data
            return False
        if self.connecting:
            self.out = data
            return False
        try:
            n = _send(self.sock, self.fd, self.raw, data)
        except OSError:
            client = self.client
            self.close()
            if client is not None:
                client.on_upstream_error(self, 502)
            return False
        if n == len(data):
            return True
        self.out = data[n:]      # sent when the EPOLLOUT edge comes
        return False

    cdef void flush(self) except *:
        cdef Py_ssize_t n
        cdef UpstreamUser client
        data = self.out
        try:
            n = _send(self.sock, self.fd, self.raw, data)
        except OSError:
            client = self.client
            self.close()
            if client is not None:
                client.on_upstream_error(self, 502)
            return
        if n == 0:
            return
        if n < len(data):
            self.out = data[n:]
            return
        self.out = None
        if self.client is not None:
            self.client.on_upstream_drained(self)

    def on_timeout(self, now):
        cdef UpstreamUser client = self.client
        if self.closed:
            return            # closed by another deadline of the same sweep (its racer's)
        if self.connecting:
            if not self.handshaking and not self.resolving and now < self.dial_deadline and \
                    (self._dial_next() or self._primaries_failed(504)):
                # this address's share of the dial timeout is over: the next one, or the
                # fallback racer (Go)
                return
            self.close()
            if client is not None:
                client.on_upstream_error(self, 504)      # dial timeout
            return
        if client is None:          # idle too long in the pool
            self.pool.discard(self)
            self.close()
            return
        if client.body_pending():
            # the request body is still to come: responseHeaderTimeout has not started (Go
            # starts it once the request is written), the only timer is ExpectContinueTimeout
            self.deadline = 0.0
            client.expect_continue_timeout()
            return
        self.close()
        client.on_upstream_error(self, 504)              # responseHeaderTimeout

    def abort(self):
        cdef UpstreamUser client = self.client
        self.pool.discard(self)
        self.close()
        if client is not None:
            client.close()

    cpdef close(self):
        if self.closed:
            return
        self.closed = True
        self.deadline = 0.0
        self.loop.timed.discard(self)
        if self.stream is not None:
            stream = self.stream
            self.stream = None
            (<UpstreamStream>stream).cancel()
            return
        if self.racer is not None or self.fallback_timer is not None:
            self._stop_fallback()
        if self.sock is None:
            return            # resolving, or waiting for the fallback racer: no socket
        self.loop.unregister(self.fd)
        try:
            self.sock.close()
        except OSError:
            pass


# ---- client side ------------------------------------------------------------------------

cdef class StreamSink:
    """What a ClientConn without a socket talks to (engine/h2.pyx ``H2Stream``)."""

    cdef bint sink(self, bytes data) except -1:
        return True

    cdef bytes take_input(self):
        return None

    cdef void sink_closed(self) except *:
        pass


@cython.final
cdef class SubRequest(UpstreamUser):
    """One request a middleware sends from the worker's loop (``Env.subrequest``): through a
    Pool, so it dials, reuses keep-alive connections, applies dial timeouts and TLS
    (ServersTransport or the middleware's own ``tls``) exactly as proxied requests do. The
    answer is read whole (bounded by ``max_body``) and handed to ``callback(status, head,
    body, error)`` on the loop: ``head`` a ResponseHead, ``body`` bytes; or ``error`` — 502 the
    server could not be reached or answered badly, 504 ``timeout`` passed, 500 its body was
    over ``max_body`` — with the rest None. ``cancel()`` drops it (the client went away)."""

    def __init__(self, Env env, Pool pool, bytes head, bytes body, long long max_body,
                 double timeout, callback):
        self.env = env
        self.pool = pool
        self.head = head
        self.body = body
        self.max_body = max_body
        self.callback = callback
        self.rbuf = bytearray()
        self.resp = None
        self.dec = None
        self.parts = []
        self.size = 0
        self.left = 0
        self.finished = False
        self.retried = False
        self.deadline = env.now + timeout if timeout > 0 else 0.0
        env.loop.timed.add(self)
        self._send()

    cdef void _send(self) except *:
        cdef UpstreamConn up
        try:
            up = self.pool.get(self.env)
        except OSError:
            self._finish(502)
            return
        up.client = self
        up.reads += 1
        self.up = up
        up.write(self.head + self.body if self.body else self.head)

    def cancel(self, ex=None):
        # (``ex``: usable as an exchange's completion hook, which a waiting middleware
        # registers so that a client going away drops its sub-request)
        if not self.finished:
            self.callback = None
            self._finish(502)

    def on_timeout(self, now):
        self._finish(504)

    cdef void on_upstream_error(self, UpstreamConn up, int status) except *:
        if up is self.up:
            self.up = None
            self._finish(status)

    cdef void on_upstream_eof(self, UpstreamConn up) except *:
        if up is not self.up:
            return
        if self.resp is None:
            if not self.rbuf and up.reads > 1 and not self.retried:
                # a pooled connection the server had closed: once more on a fresh one (Go)
                self.retried = True
                up.client = None
                up.close()
                self.up = None
                self._send()
                return
            self._finish(502)
            return
        if (<Response> self.resp).framing == FR_CLOSE:
            self.up.client = None
            self.up.close()
            self.up = None
            self._finish(0)
            return
        self._finish(502)                # body cut short

    cdef void on_upstream_data(self, UpstreamConn up, bytes data) except *:
        cdef Response resp
        if up is not self.up or self.finished:
            return
        if self.resp is not None:
            self._body(data)
            return
        self.rbuf += data
        parser = ResponseParser()
        while True:
            try:
                resp = parser.parse(self.rbuf, 0, self.head.startswith(b"HEAD "))
            except _HttpParseError:
                self._finish(502)
                return
            if resp is None:
                if len(self.rbuf) > MAX_RESPONSE_HEAD:
                    self._finish(502)
                return
            del self.rbuf[:resp.head_length]
            if not (100 <= resp.status < 200):
                break
            parser = ResponseParser()      # 1xx: the final head follows
        self.resp = resp
        rest = bytes(self.rbuf)
        self.rbuf = None
        if resp.framing == FR_LENGTH:
            self.left = resp.content_length
            if self.left == 0:
                self._finish(0)
                return
        elif resp.framing == FR_CHUNKED:
            self.dec = ChunkedDecoder()
        elif resp.framing != FR_CLOSE:
            self._finish(0)                # no body (HEAD, 204, 304)
            return
        self._body(rest)

    cdef void _body(self, bytes data) except *:
        cdef Response resp = <Response> self.resp
        cdef ChunkedDecoder dec = self.dec
        cdef Py_ssize_t pos = 0, end = len(data)
        cdef bint done = False
        if not data:
            return
        if resp.framing == FR_LENGTH:
            if len(data) >= self.left:
                data = data[:self.left]
                done = True
            self.left -= len(data)
        elif dec is not None:
            chunks = []
            try:
                while pos < end and not dec.done:
                    pos = dec.feed(data, pos, end)
                    if dec.data_stop > dec.data_start:
                        chunks.append(data[dec.data_start:dec.data_stop])
            except _HttpParseError:
                self._finish(502)
                return
            data = b"".join(chunks)
            done = dec.done
        self.size += len(data)
        if self.max_body >= 0 and self.size > self.max_body:
            self._finish(500)
            return
        self.parts.append(data)
        if done:
            self._finish(0)

    cdef void _finish(self, int error) except *:
        cdef UpstreamConn up = self.up
        cdef Response resp
        if self.finished:
            return
        self.finished = True
        self.deadline = 0.0
        self.env.loop.timed.discard(self)
        self.up = None
        if up is not None:
            resp = <Response> self.resp if self.resp is not None else None
            if error == 0 and resp is not None and resp.keep_alive and not up.closed \
                    and up.out is None and not up.connecting and not up.paused:
                self.pool.put(up, self.env.now)
            else:
                up.client = None
                up.close()
        callback = self.callback
        self.callback = None
        if callback is None:
            return
        try:
            if error:
                callback(0, None, None, error)
            else:
                resp = <Response> self.resp
                callback(resp.status, ResponseHead(resp.status, resp.headers),
                         b"".join(self.parts), 0)
        except Exception as e:
            self.env.loop._fail(self, e)

    cpdef close(self):
        # UpstreamConn.abort (an internal failure on its side)
        self.up = None
        self._finish(502)

    def abort(self):
        self.close()


@cython.final
cdef class ClientConn(UpstreamUser):
    def __init__(self, Env env, ep, sock, bytes remote_ip, bint tls=False,
                 bint registered=False, StreamSink sink=None):
        # ``registered``: the socket is already in the epoll set with ET_EVENTS (a Sniffer
        # registered it): take that registration over instead of an epoll_ctl DEL + ADD, and
        # let the caller read at once (bytes that already arrived make no new edge).
        # ``sink``: an HTTP/2 stream carries this connection's one request (engine/h2.pyx);
        # ``sock`` is then the HTTP/2 connection's (the SNI check reads it), never used for I/O
        self.env = env
        self.loop = env.loop
        self.ep = ep
        self.sock = sock
        self.sink = sink
        self.fd = sock.fileno() if sink is None else -1
        self.remote_ip = remote_ip              # e.g. b"127.0.0.1"
        self.read_timeout = ep.read_timeout
        self.write_timeout = ep.write_timeout
        self.idle_timeout = ep.idle_timeout
        self.max_requests = ep.keep_alive_max_requests
        mt = ep.keep_alive_max_time
        self.close_at = self.loop.now + mt if mt else 0.0
        self.underscore = ep.underscore
        self.tls = tls                          # a pyOpenSSL Connection (pyroute.tls)
        self.raw = not tls
        self.ep_name = ep.name
        self.snap = None
        self.entry = None
        self.hup = False
        # an HTTP/2 stream: its connection's answer, asked once per connection
        self.trusted = sink.trusted if sink is not None else ep.is_trusted(remote_ip)
        self.buf = bytearray()
        self.out = None
        self.state = S_HEAD
        self.closing = False
        self.requests = 0
        self.paused = False
        self.client_eof = False
        self.keep_alive = True
        # the entry point's http.maxHeaderBytes as Go's server applies it (a read limit of
        # MaxHeaderBytes + 4096 on the request head)
        self.max_head = getattr(ep, "max_head", 0) or 32768
        self._reset_exchange()
        self.events = 0       # registered once for everything (ET_EVENTS)
        if sink is not None:
            self.raw = False
            self.max_requests = 1     # one request per stream: its response ends it
        elif registered:
            self.loop.handlers[self.fd] = self
        else:
            self.loop.register(self.fd, ET_EVENTS, self)
        it = ep.idle_timeout
        self.deadline = self.loop.now + it if it else 0.0
        self.loop.timed.add(self)

    cdef void _reset_exchange(self) except *:
        if self.ex is not None:
            self._end_exchange(0)
            self.ex = None
        self.req = None
        self.up = None
        self.req_dec = None
        self.resp_dec = None
        self.resp_state = R_NONE
        self.ubuf = None
        self.resp_phase = False
        self.transforming = False
        self.held = None
        self.held_out = None
        self.sent_100 = False
        self.up_ok = True
        self.retry_head = None
        self.req_left = 0
        self.body_cb = None
        self.body_dec = None
        self.body_parts = None
        self.body_spool = None
        self.body_out = None
        self.rbuf_head = None
        self.rbuf = None
        self.rbuf_out = None

    # ---- events ---------------------------------------------------------------------

    def on_event(self, int ev):
        self.on_event_c(ev)

    cdef void on_event_c(self, int ev) except *:
        if ev & HUP:
            self.hup = True
        if ev & EPOLLOUT and self.out is not None:
            self.flush()
            if self.state == S_CLOSED:
                return
        # TLS: a read that OpenSSL could not go on with before a write (want-write from
        # SSL_read, the socket buffer full) resumes once writable: no read edge comes for
        # bytes already waiting. (OpenSSL sends its answer to a KeyUpdate, RFC 8446 §4.6.3,
        # with the next write, so that case never needs it; tests/test_e2e_tls.py covers it.)
        if (ev & ~EPOLLOUT or (self.tls and ev & EPOLLOUT and self.sock.read_wants_write)) \
                and not self.paused:
            self.on_readable()

    cdef void on_readable(self) except *:
        cdef Py_ssize_t n
        if self.sink is not None:
            # an HTTP/2 stream: the request bytes its frames carried
            while not self.paused and self.state != S_CLOSED:
                data = self.sink.take_input()
                if data is None:
                    return
                self._received(data)
            return
        while True:
            try:
                data = _recv(self.env, self.sock, self.fd, self.raw)
            except OSError:
                if (self.state == S_WAIT or self.state == S_BODY) and self.ex is not None:
                    self.ex.status = 499        # reset by the client mid-exchange
                self.close()
                return
            if data is None:
                return
            n = len(data)
            if n == 0:
                self.on_eof()
                return
            self._received(data)
            # a short read drained the socket (a new edge announces new bytes); TLS returns
            # one record per read, so a TLS connection reads on until it would block
            if (n < RECV_SIZE and not self.tls and not self.hup) or self.paused \
                    or self.state == S_CLOSED or self.client_eof:
                return

    cdef void _received(self, bytes data) except *:
        cdef int state = self.state
        if state == S_HEAD:
            if not self.buf:
                # a request begins: Go's ReadTimeout runs from here to the end of its body
                self.deadline = self.env.now + self.read_timeout if self.read_timeout else 0.0
                if self._process_fast(data):
                    return
            self.buf += data
            self.process()
        elif state == S_BODY:
            self.feed_body(data)
        elif state == S_TUNNEL:
            if not self.up.write(data):
                self.pause_reading()
        elif state == S_WAIT:
            # pipelined requests (answered in order once this exchange is over)
            self.buf += data
            if self.body_cb is not None:
                self._body_progress()       # a middleware waits for the whole body
            elif len(self.buf) > MAX_PIPELINED:
                self.pause_reading()

    cdef void pause_reading(self) except *:
        self.paused = True           # bytes wait in the kernel: TCP pushes back on the peer

    cdef void resume_reading(self) except *:
        if self.paused and not self.client_eof:
            self.paused = False
            self.on_readable()       # no edge will come for bytes already waiting

    cdef void on_eof(self) except *:
        if self.body_cb is not None:
            # gone before the body a middleware waits for was complete
            self.body_cb = None
            if self.ex is not None:
                self.ex.status = 499
            self.close()
            return
        if self.state != S_WAIT or self.closing:
            if self.state == S_BODY and self.ex is not None:
                self.ex.status = 499        # gone before the request body ended
            self.close()
            return
        if not self.buf:
            # The client went away (or half-closed) while its request waits for, or streams,
            # the response: Go's server reads in the background once the request body is
            # read, and an EOF there cancels the request context, so Traefik's proxy abandons
            # the backend request (logged as 499, "client closed request"). Do the same: the
            # backend connection is closed (never reused, its exchange is cut), both fds freed
            # now instead of when — if ever — the backend answers.
            if self.ex is not None:
                self.ex.status = 499
            self.up_ok = False
            self.close()
            return
        # pipelined requests already read: Go's background read took their first byte and
        # stopped, so it never sees this EOF: the response is finished, the requests read are
        # answered, then the connection closes
        self.client_eof = True
        self.keep_alive = False

    def on_timeout(self, now):
        # idle keep-alive (idleTimeout), head/body too slow (readTimeout) or response too
        # slow to write (writeTimeout): Go's server closes the connection without an answer
        self.close()

    # ---- output ---------------------------------------------------------------------

    cdef bint write(self, bytes data) except *:
        """Send ``data`` now if possible; False when some waits (the caller should pause)."""
        cdef Py_ssize_t n
        if self.sink is not None:
            return self.sink.sink(data)
        if self.out is not None:
            self.out = self.out + data
            return False
        try:
            n = _send(self.sock, self.fd, self.raw, data)
        except OSError:
            self.close()
            return False
        if n == len(data):
            return True
        self.out = data[n:]          # sent when the EPOLLOUT edge comes
        return False

    cdef bint write_head(self, bytes head, bytes body, Py_ssize_t skip) except *:
        """``write(head + body[skip:])`` without building the concatenation (plain sockets),
        nor the slice: a response's first body bytes leave from the read that carried its
        head, as they are."""
        cdef Py_ssize_t n, hn, bn = len(body) - skip
        if bn <= 0:
            return self.write(head)
        if self.out is not None or not self.raw:
            return self.write(head + (body[skip:] if skip else body))
        try:
            n = _send2(self.fd, head, body, skip)
        except OSError:
            self.close()
            return False
        hn = len(head)
        if n == hn + bn:
            return True
        # the rest waits for the EPOLLOUT edge
        self.out = head[n:] + body[skip:] if n < hn else body[skip + n - hn:]
        return False

    cdef void flush(self) except *:
        cdef Py_ssize_t n
        data = self.out
        if data is None:
            return
        try:
            n = _send(self.sock, self.fd, self.raw, data)
        except OSError:
            self.close()
            return
        if n == 0:
            return
        if n < len(data):
            self.out = data[n:]
            return
        self.out = None
        if self.rbuf_out is not None:
            self._pump_response()
            return
        if self.state == S_HEAD and self.write_timeout and not self.buf:
            # a finished response's tail has left: the connection is idle from now on
            self.deadline = self.env.now + self.idle_timeout if self.idle_timeout else 0.0
        if self.closing:
            self.close()
            return
        up = self.up
        if up is not None and not up.closed and up.paused and self.resp_state != R_HEAD:
            up.paused = False
            up.on_readable()         # bytes that waited for us: no edge announces them

    @property
    def http2(self):
        """True when an HTTP/2 stream carries this connection's request (engine/h2.pyx)."""
        return self.sink is not None

    cdef void sink_drained(self) except *:
        # the HTTP/2 stream sent what it held (flow control let it): the backend's response
        # may be read again, as after a flush()
        up = self.up
        if up is not None and not up.closed and up.paused and self.resp_state != R_HEAD:
            up.paused = False
            up.on_readable()

    cdef void _close_after_output(self) except *:
        self.closing = True
        if self.out is None:
            self.close()

    # ---- requests -------------------------------------------------------------------

    cdef void process(self) except *:
        """Parse and start the requests waiting in ``buf`` (state HEAD)."""
        cdef Env env = self.env
        cdef RequestParser parser = env.parser
        cdef Request req
        if env.parser_owner is not self:
            parser.clear()           # one parser per worker; its incremental state is ours now
            parser.limits.max_head = self.max_head
            env.parser_owner = self
        while self.state == S_HEAD and self.buf and not self.closing:
            try:
                req = parser.parse(self.buf, 0)
            except _HttpParseError as e:
                self.reject(e.status)
                return
            if req is None:
                return
            del self.buf[:req.head_length]
            if self.write_timeout:
                _arm_write_timeout(self)
            self.begin(req)

    cdef bint _process_fast(self, bytes data) except -1:
        # The common case: a whole request head at the start of one read, parsed in place
        # (no copy into ``buf``); bytes after it (body, pipelined requests) go to ``buf``.
        cdef Env env = self.env
        cdef RequestParser parser = env.parser
        cdef Request req
        if env.parser_owner is not self:
            parser.clear()
            parser.limits.max_head = self.max_head
            env.parser_owner = self
        try:
            req = parser.parse(data, 0)
        except _HttpParseError as e:
            self.reject(e.status)
            return True
        if req is None:
            # incomplete: ``buf`` gets the same bytes at the same offsets, so the parser's
            # incremental scan goes on from where it stopped
            return False
        if len(data) > req.head_length:
            self.buf += data[req.head_length:]
        if self.write_timeout:
            _arm_write_timeout(self)
        self.begin(req)
        if self.state == S_HEAD and self.buf and not self.closing:
            self.process()
        return True

    cdef void reject(self, int status) except *:
        # codec refusal: Go answers e.g. "400 Bad Request" and closes
        self.env.parser_owner = None
        self.state = S_WAIT
        self.buf = bytearray()
        self.closing = True
        if self.ex is not None and not self.ex.status:
            self.ex.status = status
        if self.write(_bad_request_response(status)):
            self.close()

    cdef void _next_request(self) except *:
        self._reset_exchange()
        self.state = S_HEAD
        if self.out is not None and self.write_timeout:
            # the response's tail still waits for the client: writeTimeout goes on covering
            # it (Go's write deadline); the idle timeout starts once it has left (flush)
            self.deadline = self.write_deadline
        else:
            self.deadline = self.env.now + self.idle_timeout if self.idle_timeout else 0.0
        if self.env.draining and not self.buf:
            self._close_after_output()

    def local_response(self, bytes data, bint keep=True):
        """Answer the current request from pyroute itself (router miss, middleware, error);
        ``data`` None: a response-phase middleware took the answer over (WAIT) and gives it
        later through ``ex.answer``."""
        cdef Request req = self.req
        cdef Exchange ex = self.ex
        if data is None:
            self.state = S_WAIT
            return
        if req.framing != FR_NONE and req.content_length != 0 and ex is not None \
                and ex.body is None:
            keep = False      # its body was not read: the connection cannot be reused
        if ex is not None:
            ex.status = _status_of(data)
            ex.resp_head = data
            ex.bytes_out += len(data) - data.find(b"\r\n\r\n") - 4     # the body
        if req.method_id == M_HEAD:
            data = _head_only(data)
        self.requests += 1
        if not keep or not self.keep_alive:
            self.state = S_WAIT
            self.write(_closing(data))
            self._close_after_output()
            return
        self.write(data)
        self._next_request()

    def error(self, int status):
        """Answer ``status`` as Traefik does, or close when response bytes already left."""
        cdef bint keep
        cdef Exchange ex = self.ex
        if self.state == S_CLOSED:
            return
        if self.resp_state == R_BODY or self.resp_state == R_DONE or self.state == S_TUNNEL:
            self.close()
            return
        self._release_upstream(False)
        # (a body held for a retry's dial is still in ``buf``, unread: no reuse)
        keep = self.keep_alive and not self.client_eof and self.state != S_BODY \
            and self.body_held is None
        data = _error_response(status, not keep,
                               self.req is not None and self.req.method_id == M_HEAD)
        if ex is not None:
            data = self._own_answer(ex, data)
            if data is None:
                # a response-phase middleware answers later (ex.answer)
                self.resp_state = R_NONE
                self.state = S_WAIT
                return
            ex.status = status
            ex.resp_head = data
            ex.bytes_out += len(data) - data.find(b"\r\n\r\n") - 4     # the body
        self.requests += 1
        if not keep:
            self.state = S_WAIT
            self.write(data)
            self._close_after_output()
            return
        self.write(data)
        self._next_request()
        if self.buf and self.state == S_HEAD:
            self.process()

    cdef bytes _own_answer(self, Exchange ex, bytes data):
        # None: a response-phase middleware returned WAIT and answers later.
        # pyroute's own error (502/503/504, a child router's 404) passes back through the
        # middlewares the request went through, as Go's errors go through Traefik's wrapped
        # ResponseWriters: their response phase, or the route's compiled response edits
        cdef RouteTarget route = ex.route
        if ex.responders:
            return _edit_answer(ex, data)
        if route is not None and route.error_edits is not None:
            return _apply_edits(data, route.error_edits[0], route.error_edits[1])
        return data

    cdef void _answer(self, Exchange ex, bytes answer) except *:
        # a middleware answered: the middlewares before it see the answer on its way out
        if ex.responders:
            answer = _edit_answer(ex, answer)
            if answer is None:
                # a response-phase middleware answers later (ex.answer)
                self.state = S_WAIT
                return
        self.local_response(answer)

    cdef void _end_exchange(self, int status) except *:
        cdef Exchange ex = self.ex
        if ex is None or ex.done:
            return
        if status and not ex.status:
            ex.status = status
        if ex.waiting or ex.status == 499:
            ex.cancelled = True
        if ex.service is not None:
            ex.service.done(ex)
            ex.service = None
        ex.complete()
        if ex.body is not None:
            (<Spool> ex.body).close()        # its temporary file, if any, goes now
        if self.rbuf is not None:
            self.rbuf.close()
            self.rbuf = None
        if self.env.observers:
            # observation reads the finished exchange once (access log, metrics): nothing
            # of it runs when nothing is switched on
            ex.ended = self.env.now
            if ex.body is not None:
                ex.bytes_in = (<Spool> ex.body).size
            elif ex.server is not None:
                if self.req_dec is not None:
                    ex.bytes_in = self.req_dec.total
                elif ex.req.framing == FR_LENGTH:
                    ex.bytes_in = ex.req.content_length - self.req_left
            for observe in self.env.observers:
                try:
                    observe(ex)
                except Exception as e:
                    self.loop._fail(None, e)

    cdef bint body_pending(self):
        return self.state == S_BODY

    cdef void begin(self, Request req) except *:
        cdef Env env = self.env
        cdef int rid
        cdef bytes path, query
        cdef EntryTable entry
        cdef RouteTarget route
        cdef Exchange ex
        ep = self.ep
        self.req = req
        ex = Exchange.__new__(Exchange)
        ex.conn = self
        ex.env = env
        ex.loop = self.loop
        ex.ep = ep
        ex.req = req
        ex.remote_ip = self.remote_ip
        ex.trusted = self.trusted
        ex.tls = self.tls
        ex.started = env.now
        self.ex = ex
        self.keep_alive = req.keep_alive and not env.draining
        # Traefik's newKeepAliveMiddleware (pkg/server/keepalive_middleware.go): the response
        # to request number keepAliveMaxRequests, or to a request begun keepAliveMaxTime after
        # the connection was accepted, says "Connection: close" and the connection ends
        if (self.max_requests and self.requests + 1 >= self.max_requests) or \
                (self.close_at and env.now >= self.close_at):
            self.keep_alive = False
        if self.underscore and req.underscore_fields(self.underscore == 1) and \
                self.underscore == 2:
            # Traefik v3.7 rejectHeadersWithUnderscores wraps the entry point's handler
            # outermost: http.Error 400 before normalisation and routing (keep-alive kept)
            self.local_response(_error_response(400, not self.keep_alive,
                                                req.method_id == M_HEAD))
            return
        path = req.get_path()
        query = req.get_query()
        self.orig_path = path
        self.query_changed = False
        denied = False
        if path is not None and _plain_path(path, query):
            # nothing for the entry point's normalisation to do (the common case)
            ex.path = path
            ex.query = query
        else:
            norm = ep.normalize(req)
            if norm.__class__ is int:
                self.reject(norm)
                return
            ex.path = norm[0]
            ex.query = norm[1]
            denied = norm[2]
            self.query_changed = ex.query != query
            self.orig_path = None
        if self.tls:
            # Traefik's SNICheck wraps the HTTPS handler: a Host whose TLS option differs from
            # the one the connection's SNI maps to (domain fronting) gets 421, before routing
            # (pyroute.tls: TLSConfig.misdirected_request). TLS routers have their own tables.
            tls_config = env.snapshot.tls.get(ep.name)
            if tls_config is not None and tls_config.misdirected_request(
                    self.sock.server_name, req.host or b""):
                self.local_response(_error_response(421, not self.keep_alive,
                                                    req.method_id == M_HEAD))
                return
        snap = env.snapshot
        if snap is not self.snap:
            # first request on this connection, or a reload swapped the configuration
            self.snap = snap
            self.entry = (snap.entries_tls if self.tls else snap.entries).get(self.ep_name)
        entry = self.entry
        rid = -1 if entry is None else (<RouteTable> entry.table).route(
            req.get_method(), req.get_host(), ex.path,
            ex.query if ex.query is not None else b"",
            req.headers if entry.needs_headers else None, self.remote_ip, self.tls)
        if rid < 0:
            if rid < -1:
                self.reject(400)
            else:
                self.local_response(_error_response(404, not self.keep_alive,
                                                    req.method_id == M_HEAD))
            return
        if denied:
            # Traefik v3.6 http.encodedCharacters: the matched (root) router refuses it
            self.reject(400)
            return
        route = <RouteTarget> entry.targets[rid]
        ex.route = route
        ex.chain = route.middlewares
        self._proceed(ex)

    cdef void _proceed(self, Exchange ex) except *:
        # The request phase from where it stands (a router's chain, then — multi-layer
        # routing, Traefik v3.6 parentRefs — the chain of each child router matched on the
        # request as the middlewares above left it), then the service. Returns when the
        # request is forwarded, answered, or waits for a middleware (``ex.resume``).
        cdef Request req = ex.req
        cdef EntryTable children
        cdef RouteTarget route
        cdef int rid
        while True:
            if ex.chain and not self._run_chain(ex):
                return
            route = <RouteTarget> ex.route
            if route.children is None:
                break
            children = <EntryTable> route.children
            rid = (<RouteTable> children.table).route(
                req.get_method(), req.get_host(), ex.path,
                ex.query if ex.query is not None else b"",
                children.headers(ex) if children.needs_headers else None, self.remote_ip,
                self.tls)
            if rid < 0:
                if rid < -1:
                    self.reject(400)
                else:
                    # the child muxer's 404 goes out through the parents' middlewares
                    self.local_response(self._own_answer(ex, _error_response(
                        404, not self.keep_alive, req.method_id == M_HEAD)))
                return
            route = <RouteTarget> children.targets[rid]
            if route.prefix_responders:
                ex.responders = list(route.prefix_responders) + (ex.responders or [])
            ex.route = route
            ex.chain = route.middlewares
            ex.pos = 0
        self._forward(ex, route)

    cdef bint _run_chain(self, Exchange ex) except -1:
        # the current chain's request phase from ``ex.pos``; False: answered or waiting
        cdef tuple chain = ex.chain
        cdef tuple after = (<RouteTarget> ex.route).after
        cdef Py_ssize_t i, n = len(chain)
        while ex.pos < n:
            i = ex.pos
            ex.pos = i + 1
            answer = (<object> chain[i]).on_request(ex)
            if answer is None:
                if after is not None and after[i] is not None:
                    _passed(ex, <tuple> after[i])
                continue
            if answer is _WAIT:
                # the middleware resumes or answers later; bytes that arrive meanwhile (the
                # body, pipelined requests) wait in ``buf`` (bounded: reading pauses)
                ex.waiting = True
                self.state = S_WAIT
                return False
            self._answer(ex, answer)
            return False
        return True

    def exchange_resume(self, Exchange ex):
        """``ex.resume()``: the middleware that waited lets the request go on."""
        cdef tuple after
        if ex is not self.ex or self.state == S_CLOSED:
            return
        self.state = S_HEAD
        try:
            if ex.pending is not None:
                # a service-level middleware waited: its service's chain goes on
                pending = ex.pending
                ex.pending = None
                self._picked(ex, pending.resume(ex))
            else:
                after = (<RouteTarget> ex.route).after
                if after is not None and after[ex.pos - 1] is not None:
                    _passed(ex, <tuple> after[ex.pos - 1])
                self._proceed(ex)
            self._after_resume()
        except Exception as e:
            self.loop._fail(self, e)

    def read_body(self, Exchange ex, long long limit, callback, long long keep=-2):
        """The request body, read whole before the chain goes on (forwardAuth's
        ``forwardBody``, which Traefik reads with io.ReadAll / io.ReadFull(limit + 1); the
        buffering middleware; retry's copy of the body to send again).

        Returns ``(body, too_large)`` when that is known now (``body``: the payload, None for
        a request without one; ``too_large``: more than ``limit`` payload bytes, limit >= 0;
        None: the body cannot be read, a chunked framing error), else None, and
        ``callback(ex, body, too_large)`` runs on the loop once it is (the middleware has
        returned WAIT meanwhile). A request the client sent with ``Expect: 100-continue`` is
        told to send it (Go's server says "100 Continue" when the handler first reads the
        body). The read timeout runs on; a client that goes away meanwhile ends the exchange
        (499).

        ``keep`` -2: the bytes stay in ``buf``, framing included, and the request is
        forwarded from there later as a body that came with its head is. ``keep`` >= -1: the
        body is taken out of ``buf`` into a ``Spool`` (in memory up to ``keep`` bytes, the
        rest in a temporary file; -1: all in memory), which becomes ``ex.body`` and
        ``body``: every attempt sends it with a Content-Length. Too large, the bytes stay in
        ``buf`` while they are in memory (the request can still be forwarded as it came)."""
        cdef Request req = ex.req
        if ex is not self.ex:
            return (None, False)
        if ex.body is not None:
            # kept already (by buffering or retry, before another of them or forwardAuth)
            if 0 <= limit < (<Spool> ex.body).size:
                return (None, True)
            if keep >= -1:
                return (ex.body, False)
            data = (<Spool> ex.body).whole()
            if data is None:
                (<Spool> ex.body).rewind()
                data = (<Spool> ex.body).file.read()
            return (data if data else None, False)
        if req.framing == FR_NONE or (req.framing == FR_LENGTH and req.content_length == 0):
            return (None, False)
        if req.framing == FR_LENGTH and 0 <= limit < req.content_length:
            return (None, True)          # ReadFull(limit + 1) can only fill up: too large
        self.body_limit = limit
        self.body_pos = 0
        self.body_size = 0
        self.body_parts = []
        self.body_dec = ChunkedDecoder() if req.framing == FR_CHUNKED else None
        self.body_spool = Spool(keep) if keep >= -1 else None
        if req.expect_100_continue and not self.sent_100:
            self.sent_100 = True
            self.write(_CONTINUE_100)
        ready = self._body_ready()
        if ready is not None:
            return ready
        self.body_cb = callback
        if self.paused:
            self.resume_reading()        # reading paused over MAX_PIPELINED: the body is due
        return None

    cdef object _body_ready(self):
        # (body, too_large) once the body in ``buf`` is complete or over the limit, else None;
        # (None, None): a chunked body that does not parse (the read fails)
        cdef Request req = self.ex.req
        cdef ChunkedDecoder dec = self.body_dec
        cdef Spool spool = self.body_spool
        cdef bytearray buf = self.buf
        cdef Py_ssize_t end = len(buf)
        cdef long long cl, take
        if dec is None:
            cl = req.content_length - self.body_size     # body_size: spooled out of buf
            if spool is not None and (end >= cl or spool.file is not None
                                      or spool.over(end)):
                # kept: out of ``buf`` (into the file as it comes, once over ``mem``)
                take = cl if end >= cl else end
                spool.add(bytes(buf[:take]))
                del buf[:take]
                self.body_size += take
                if take < cl:
                    return None
                return self._kept()
            if end < cl:
                return None
            return (bytes(buf[:cl]), False)
        try:
            while self.body_pos < end and not dec.done:
                self.body_pos = dec.feed(buf, self.body_pos, end)
                if dec.data_stop > dec.data_start:
                    self.body_parts.append(bytes(buf[dec.data_start:dec.data_stop]))
                    self.body_size += dec.data_stop - dec.data_start
                    if 0 <= self.body_limit < self.body_size:
                        return (None, True)
        except _HttpParseError:
            return (None, None)          # Traefik: "Error while reading Body" -> 500
        if spool is not None and (dec.done or spool.file is not None
                                  or spool.over(self.body_size)):
            # kept: the payload so far into the spool, its framing out of ``buf``
            for part in self.body_parts:
                spool.add(part)
            self.body_parts = []
            del buf[:self.body_pos]
            self.body_pos = 0
            if not dec.done:
                return None
            return self._kept()
        if not dec.done:
            return None
        body = b"".join(self.body_parts)
        return (body if body else None, False)

    cdef object _kept(self):
        cdef Spool spool = self.body_spool
        self.body_spool = None
        self.ex.body = spool
        return (spool, False)

    cdef void _body_progress(self) except *:
        ready = self._body_ready()
        if ready is None:
            return
        callback = self.body_cb
        self.body_cb = None
        self.body_parts = None
        if callback is None:
            return
        try:
            callback(self.ex, ready[0], ready[1])
        except Exception as e:
            self.loop._fail(self, e)

    def exchange_answer(self, Exchange ex, bytes answer):
        """``ex.answer(response)``: the middleware that waited answers."""
        if ex is not self.ex or self.state == S_CLOSED:
            return
        self.state = S_HEAD
        try:
            self._answer(ex, answer)
            self._after_resume()
        except Exception as e:
            self.loop._fail(self, e)

    cdef void _after_resume(self) except *:
        # bytes that arrived while the chain waited: the request's body (now forwarded by
        # _forward from ``buf``) or pipelined requests once this exchange is answered
        if self.state == S_CLOSED:
            return
        if self.paused and self.state != S_WAIT:
            self.resume_reading()
        if self.state == S_HEAD and self.buf and not self.closing:
            self.process()

    cdef void _forward(self, Exchange ex, RouteTarget route) except *:
        cdef ServerTarget server = route.single
        if server is None:
            server = route.service.pick(ex)
        self._picked(ex, server)

    cdef void _picked(self, Exchange ex, ServerTarget server) except *:
        cdef Env env = self.env
        cdef Request req = ex.req
        cdef UpstreamConn up
        cdef RouteTarget route
        cdef int framing
        cdef long long left
        cdef Py_ssize_t take
        cdef bytes head, path
        if server is not None and server.pool is None:
            answer = (<object> server).answer
            if answer is None:
                # a service-level middleware waits (pyroute.proxy.snapshot.Chained)
                ex.pending = server
                ex.waiting = True
                self.state = S_WAIT
                return
            # a service-level middleware answered
            self._answer(ex, answer)
            return
        if server is None:
            self.local_response(self._own_answer(ex, _error_response(
                503, not self.keep_alive, req.method_id == M_HEAD)))
            return
        if ex.set_headers and not _header_lines_ok(ex.set_headers):
            # a middleware copied request data holding CR, LF or NUL into a header: Go's
            # transport refuses to write it ("invalid header field value") and Traefik's
            # proxy answers 500 — never a header line the client smuggled in
            self.local_response(self._own_answer(ex, _error_response(
                500, not self.keep_alive, req.method_id == M_HEAD)))
            return
        # service-level middlewares put their Route (header edits) in ex.route
        route = <RouteTarget> ex.route
        self.resp_phase = bool(ex.responders)
        ex.server = server
        ex.origin_started = env.now
        self.head_req = req.method_id == M_HEAD
        try:
            up = server.pool.get(self.env)
        except OSError:
            # no descriptor (EMFILE/ENFILE) or memory for the backend connection: Go's dial
            # fails and Traefik's proxy answers 502 (the client must not be left unanswered)
            if ex.service is not None:
                ex.service.done(ex)
                ex.service = None
            ex.server = None
            self.local_response(self._own_answer(ex, _error_response(
                502, not self.keep_alive, req.method_id == M_HEAD)))
            return
        up.client = self
        self.up = up
        path = ex.path
        head = route.forwarder.request_head(
            req, self.remote_ip, self.trusted,
            # Go's transport writes the server URL's host when the request's is empty (an
            # HTTP/1.0 request without Host): never an empty Host upstream
            # (a headers middleware's Host counts as the request's: Go sets req.Host)
            None if server.pass_host and (0 <= req._host.start < req._host.stop
                                          or route.forwarder.request_host is not None)
            else server.host_header,
            None if path is self.orig_path else path)
        if self.query_changed:
            # the normalised query (';' -> '&') replaces the one the forwarder copies
            head = (req.method + b" " + path + (b"?" + ex.query if ex.query is not None
                                                else b"") + b" HTTP/1.1"
                    + head[head.index(b"\r\n"):])
        if ex.remove_headers:
            head = _drop_lines(head, ex.remove_headers)
        if ex.set_headers:
            # per-request edits (stripPrefix's X-Forwarded-Prefix) go before the blank line
            head = head[:-2] + b"".join([n + b": " + v + b"\r\n" for n, v in ex.set_headers]) \
                + b"\r\n"
        self.resp_state = R_HEAD
        self.ubuf = None
        framing = req.framing
        if ex.body is not None:
            # the body read whole (buffering, retry) goes with a Content-Length, on every
            # attempt (oxy's copyRequest: ContentLength = size, TransferEncoding dropped;
            # Go writes "Content-Length: 0" for an empty POST/PUT/PATCH body)
            kept = <Spool> ex.body
            head = _drop_lines(head, [_CONTENT_LENGTH, _TRANSFER_ENCODING])
            if kept.size or req.method in _SEND_ZERO_LENGTH:
                head = head[:-2] + b"Content-Length: %d\r\n\r\n" % kept.size
            data = kept.whole()
            self.state = S_WAIT
            if data is not None:
                head += data
                if up.reads:
                    self.retry_head = head    # as a body-less request: complete in ``head``
            else:
                kept.rewind()
                self.body_out = kept          # sent from the file as the backend drains
        elif ex.retry is not None and up.connecting \
                and (framing == FR_CHUNKED or (framing == FR_LENGTH and req.content_length)):
            # retry, the body streaming (over maxRequestBodyBytes): nothing of it is taken
            # from the client until the backend is reached, so a dial that fails leaves it
            # whole for the next attempt — Traefik retries network errors while WroteHeaders
            # has not been called, its peeked body still unread (on_upstream_connected sends)
            self.body_held = head
            self.state = S_WAIT
            up.reads += 1
            return
        elif framing == FR_LENGTH and req.content_length:
            head = self._body_start(req, head)
        elif framing == FR_CHUNKED:
            head = self._body_start(req, head)
            if self.state == S_CLOSED or self.req is None:
                return
        else:
            self.state = S_WAIT
            if up.reads:
                self.retry_head = head    # a reused connection may have been closed: retry
        up.reads += 1
        if ex.mirror is not None:
            # copies for mirror services (pyroute.proxy.mirror); never delays the main request
            ex.mirror.start(ex, head, self.state != S_BODY)
        if self.body_out is not None:
            up.write(head)
            self._pump_body()
            return
        if self.state == S_WAIT:
            self._request_sent()
        if self.state == S_BODY:
            if req.expect_100_continue and not up.connecting:
                up.deadline = self.env.now + EXPECT_CONTINUE_TIMEOUT
            if not up.write(head):
                self.pause_reading()
        else:
            up.write(head)

    cdef bytes _body_start(self, Request req, bytes head):
        # the request body that came with the head, after it; S_BODY while more is due
        cdef long long left
        cdef Py_ssize_t take
        if req.framing == FR_LENGTH:
            left = req.content_length
            buf = self.buf
            if buf:
                take = left if left < len(buf) else len(buf)
                head += buf[:take]
                del buf[:take]
                left -= take
            self.req_left = left
            self.state = S_BODY if left else S_WAIT
            return head
        self.req_dec = ChunkedDecoder()
        self.state = S_BODY
        if self.buf:
            data = bytes(self.buf)
            self.buf = bytearray()
            head += self._take_request_chunks(data)
        return head

    cdef void _send_held(self, UpstreamConn up) except *:
        # the backend is reached: the held head, and the body from ``buf`` as _picked sends it
        cdef Exchange ex = self.ex
        cdef Request req = self.req
        cdef bytes head = self.body_held
        self.body_held = None
        head = self._body_start(req, head)
        if self.state == S_CLOSED or self.req is None:
            return
        if ex.mirror is not None:
            ex.mirror.start(ex, head, self.state != S_BODY)
        if self.state == S_WAIT:
            self._request_sent()
            up.write(head)
            return
        if req.expect_100_continue:
            up.deadline = self.env.now + EXPECT_CONTINUE_TIMEOUT
        if not up.write(head):
            self.pause_reading()
        elif self.paused:
            self.resume_reading()        # paused while held (MAX_PIPELINED): the body is due

    cdef void expect_continue_timeout(self) except *:
        # ExpectContinueTimeout passed without the backend's 100: Traefik sends the body
        # anyway, so the client is told "100 Continue" (once) and may send it
        if self.req is not None and self.req.expect_100_continue and not self.sent_100 \
                and self.state == S_BODY:
            self.sent_100 = True
            self.write(_CONTINUE_100)

    cdef void _request_sent(self) except *:
        # request fully forwarded: the read timeout is over, the writeTimeout armed when the
        # head was read goes on; the backend's responseHeaderTimeout starts (Go: once the
        # request is written)
        cdef UpstreamConn up = self.up
        self.deadline = self.write_deadline
        if up is not None and self.resp_state == R_HEAD and not up.connecting:
            # (replaces an ExpectContinueTimeout deadline the body's arrival made moot)
            up.deadline = self.env.now + up.pool.header_timeout if up.pool.header_timeout \
                else 0.0
        if self.state == S_BODY:
            self.state = S_WAIT

    cdef void feed_body(self, bytes data) except *:
        cdef UpstreamConn up = self.up
        cdef long long left
        cdef Py_ssize_t n
        if self.req_dec is None:
            left = self.req_left
            n = len(data)
            if n > left:
                self.buf += data[left:]       # the next pipelined request
                data = data[:left]
                n = left
            self.req_left = left - n
            if self.req_left == 0:
                self._request_sent()
        else:
            data = self._take_request_chunks(data)
            if self.state == S_CLOSED or self.req is None:
                return
        if self.ex.mirror is not None:
            # the body as forwarded, copied aside for mirror services (sent once complete)
            self.ex.mirror.body(self.ex, data, self.state != S_BODY)
        if up is None:
            self._maybe_finish()               # the response already completed
            return
        if data and not up.write(data):
            self.pause_reading()

    cdef bytes _take_request_chunks(self, bytes data):
        # strict chunked validation (http1.ChunkedDecoder); validated framing is forwarded
        # verbatim, bytes after the last chunk belong to the next request
        cdef ChunkedDecoder dec = self.req_dec
        cdef Py_ssize_t pos = 0, end = len(data)
        try:
            while pos < end and not dec.done:
                pos = dec.feed(data, pos, end)
        except _HttpParseError as e:
            self._release_upstream(False)
            self.reject(e.status)
            return b""
        if dec.done:
            if pos < end:
                self.buf += data[pos:]
                data = data[:pos]
            self._request_sent()
        return data

    cdef void _pump_body(self) except *:
        # a spooled body, from its file, as fast as the backend takes it (bounded memory)
        cdef Spool sp
        cdef UpstreamConn up
        while self.body_out is not None:
            up = self.up
            if up is None or up.out is not None:
                return                         # on_upstream_drained goes on
            sp = self.body_out
            data = sp.read(RECV_SIZE)
            if not data:
                self.body_out = None
                self._request_sent()
                return
            up.write(data)

    cdef void on_upstream_drained(self, UpstreamConn up) except *:
        if self.body_out is not None:
            self._pump_body()
            return
        if self.state == S_BODY or self.state == S_TUNNEL:
            self.resume_reading()

    cdef void on_upstream_connected(self, UpstreamConn up) except *:
        # the dial deadline is over; a request already complete starts its header timeout
        if self.body_held is not None and up is self.up:
            self._send_held(up)
            return
        if self.state == S_WAIT and self.resp_state == R_HEAD and up.pool.header_timeout:
            up.deadline = self.env.now + up.pool.header_timeout
        elif self.state == S_BODY and self.req is not None and self.req.expect_100_continue:
            up.deadline = self.env.now + EXPECT_CONTINUE_TIMEOUT

    # ---- responses ------------------------------------------------------------------

    cdef void on_upstream_data(self, UpstreamConn up, bytes data) except *:
        cdef int rs = self.resp_state
        if rs == R_BODY:
            self._response_body(up, data, None, 0)
        elif rs == R_HEAD:
            if not self.ubuf and self._response_head_fast(up, data):
                return
            if self.ubuf is None:
                self.ubuf = bytearray()
            self.ubuf += data
            self._response_head(up)
        elif self.state == S_TUNNEL:
            if not self.write(data):
                up.paused = True
        else:
            # bytes after a complete response (e.g. a second, unasked response): the
            # connection is out of step and must never be reused
            self.up_ok = False
            up.paused = True

    cdef bint _response_head_fast(self, UpstreamConn up, bytes data) except -1:
        # The common case: a whole final response head at the start of one read, parsed in
        # place (no buffer copy). Anything else (partial, 1xx, errors) takes _response_head.
        cdef Env env = self.env
        cdef ResponseParser rparser = env.rparser
        cdef Response resp
        if env.rparser_owner is not None:
            return False
        try:
            resp = rparser.parse(data, 0, self.head_req)
        except _HttpParseError:
            rparser.clear()
            return False           # the slow path parses again and answers 502
        if resp is None:
            rparser.clear()
            return False
        if 100 <= resp.status < 200:
            return False
        self._response_start(up, resp, data, resp.head_length)
        return True

    cdef void _response_head(self, UpstreamConn up) except *:
        cdef Env env = self.env
        cdef bytearray ubuf = self.ubuf
        cdef ResponseParser rparser = env.rparser
        cdef Request req = self.req
        cdef Response resp
        cdef Forwarder fwd = (<RouteTarget> self.ex.route).forwarder
        while True:
            if env.rparser_owner is not self:
                rparser.clear()
                env.rparser_owner = self
            try:
                resp = rparser.parse(ubuf, 0, self.head_req)
            except _HttpParseError:
                env.rparser_owner = None
                self.up_ok = False
                self.error(502)
                return
            if resp is None:
                # Go reads the status line first: garbage there is a 502 at once, not a hang
                if len(ubuf) > MAX_RESPONSE_HEAD or not (
                        ubuf.startswith(b"HTTP/") or b"HTTP/".startswith(ubuf)):
                    self.up_ok = False
                    self.error(502)
                return
            del ubuf[:resp.head_length]
            env.rparser_owner = None
            if not (100 <= resp.status < 200 and resp.status != 101):
                break
            if resp.status == 100:
                # relay the backend's 100 to a client that asked for it, once
                if req.expect_100_continue and not self.sent_100:
                    self.sent_100 = True
                    self.write(_CONTINUE_100)
            else:
                self.write(fwd.response_head(resp, True, None))
            if not ubuf:
                return
        rest = bytes(ubuf) if ubuf else b""
        self.ubuf = None
        self._response_start(up, resp, rest, 0)

    cdef void _response_start(self, UpstreamConn up, Response resp, bytes data,
                              Py_ssize_t skip) except *:
        # a final response head arrived: ``data[skip:]`` = the bytes after it in what was read
        # (not sliced off here: the common response sends them from ``data`` as they are)
        cdef Request req = self.req
        cdef Exchange ex = self.ex
        cdef Forwarder fwd = (<RouteTarget> ex.route).forwarder
        cdef ResponseHead rh
        cdef int status, framing, mode
        cdef bint http10, keep
        rh = None
        self.retry_head = None
        up.deadline = 0.0
        status = resp.status
        if self.ex.retry is not None and self.state == S_WAIT \
                and self.ex.retry.status_retry(self.ex, status):
            # the retry middleware: a status it retries — the answer is dropped before
            # anything reached the client, and the request goes again
            self.up_ok = False
            self._release_upstream(False)
            self._again(None)
            return
        if status == 101:
            if req.upgrade is None or resp.upgrade is None:
                self.up_ok = False
                self.error(502)        # Go: a 101 nobody asked for is a protocol error
                return
            self.state = S_TUNNEL
            self.resp_state = R_DONE
            self.deadline = 0.0
            head = fwd.response_head(resp, True, None)
            if len(data) > skip:
                head += data[skip:]
            if self.buf:
                data = bytes(self.buf)
                self.buf = bytearray()
                up.write(data)
            if not self.write(head):
                up.paused = True
            self.resume_reading()
            return
        framing = resp.framing
        http10 = req.version == 10
        chunked = None
        if framing == FR_LENGTH:
            mode = F_LENGTH
            self.resp_left = resp.content_length
        elif framing == FR_CHUNKED:
            self.resp_dec = ChunkedDecoder()
            if http10:
                mode = F_DECHUNK
                chunked = False
                self.keep_alive = False
            else:
                mode = F_CHUNKED
        elif framing == FR_CLOSE:
            self.up_ok = False
            if http10:
                mode = F_RAW
                chunked = False
                self.keep_alive = False
            else:
                mode = F_RECHUNK
                chunked = True
        else:
            mode = F_ASIS
        if not resp.keep_alive:
            self.up_ok = False
        self.resp_mode = mode
        keep = self.keep_alive
        head = fwd.response_head(resp, keep, chunked, keep and http10)
        if ex.resp_extra:
            head = head[:-2] + b"".join([n + b": " + v + b"\r\n" for n, v in ex.resp_extra]) \
                + b"\r\n"
        ex.origin_status = status
        ex.origin_head = resp.raw
        ex.status = status
        if self.resp_phase:
            # the route's response-phase middlewares, innermost first (Traefik's wrapped
            # ResponseWriters / ModifyResponse)
            rh = _run_response_phase(ex, head)
            if ex.waiting:
                # a response-phase middleware answers instead, later (``ex.answer``): the
                # backend's response is dropped (its connection is not reused unread) and
                # the client's waits, as after a request-phase WAIT
                self.up_ok = False
                self._release_upstream(False)
                self.resp_state = R_NONE
                self.state = S_WAIT
                return
            ex.status = rh.status
            if rh.replaced:
                # the response is replaced: the backend's body is not relayed (its connection
                # cannot be reused with an unread body)
                self.up_ok = False
                self._release_upstream(False)
                self.resp_state = R_DONE
                body = rh.body if not self.head_req else b""
                if ex.sniff is not None:
                    ex.sniff(rh, body)
                    if not self.head_req:
                        body = rh.body       # (compress on a sniffed type replaces it)
                ex.bytes_out += len(body)
                ex.resp_head = rh.serialize()
                self.write_head(ex.resp_head, body, 0)
                if self.state != S_CLOSED:
                    self._maybe_finish()
                return
            if ex.transforms and mode != F_ASIS:
                self._start_transforming(rh)
            if ex.sniff is not None and mode != F_ASIS and not self.head_req:
                # a middleware decides on the first body bytes (contentType: Go's server
                # sniffs the first write): the head waits for them, or for the body's end
                self.held = rh
                self.held_out = []
                head = None
            else:
                head = rh.serialize()
        if ex.buffering is not None and mode != F_ASIS:
            # the buffering middleware: the response is held whole (memory, then a temporary
            # file) and leaves with a Content-Length once complete (oxy's bufferWriter)
            if rh is None:
                rh = ResponseHead.parse(head)
            self.held = None
            self.held_out = None
            self.rbuf_head = rh
            self.rbuf = Spool(ex.buffering.mem_response)
            self.rbuf_tail = None
            self.rbuf_trailer = None
            self.rbuf_end = None
            # the backend's declared trailers (Go's Transport: res.Trailer's keys, a chunked
            # response's "Trailer" header), whatever the client's version
            self.rbuf_declared = (resp.header_values(b"trailer")
                                  if resp.framing == FR_CHUNKED else None)
            self.rbuf_max = ex.buffering.max_response
            head = None
        self.resp_state = R_BODY
        ex.resp_head = head
        if mode == F_ASIS:
            if len(data) > skip:
                self.up_ok = False
            self.write(head)
            if self.state != S_CLOSED:
                self.resp_state = R_DONE
                self._maybe_finish()
            return
        self._response_body(up, data, head, skip)

    cdef void _response_body(self, UpstreamConn up, bytes data, bytes head,
                             Py_ssize_t skip) except *:
        # the body bytes are data[skip:] (skip > 0: the read that carried the head)
        cdef int mode = self.resp_mode
        cdef bint done = False, ok
        cdef long long left
        cdef Py_ssize_t n, pos, end
        cdef ChunkedDecoder dec
        cdef list parts
        cdef bytes plain = None     # the body bytes of ``data``, for a held head
        if skip and (mode != F_LENGTH or head is None or self.transforming
                     or self.rbuf is not None or self.held is not None):
            data = data[skip:]      # only a plain Content-Length body leaves from ``data``
            skip = 0
        if mode == F_LENGTH:
            left = self.resp_left
            n = len(data) - skip
            if n >= left:
                if n > left:
                    self.up_ok = False          # more than announced: never reuse
                    data = data[skip:skip + left]
                    skip = 0
                self.resp_left = 0
                done = True
            else:
                self.resp_left = left - n
        elif mode == F_CHUNKED or mode == F_DECHUNK:
            dec = self.resp_dec
            pos = 0
            end = len(data)
            parts = (None if mode == F_CHUNKED and not self.transforming
                     and self.held is None and self.rbuf is None else [])
            try:
                while pos < end and not dec.done:
                    pos = dec.feed(data, pos, end)
                    if parts is not None and dec.data_stop > dec.data_start:
                        parts.append(data[dec.data_start:dec.data_stop])
            except _HttpParseError:
                # broken framing from the backend: cut the response (the client sees it
                # truncated), never forward what could be read two ways
                self.up_ok = False
                if head is not None:
                    self.write(head)
                self.close()
                return
            if self.rbuf is not None:
                # a held response: its trailer section is the last trailer_len bytes read
                # (the decoder validated them); kept to forward as Go does (_held_trailers)
                if dec.done:
                    if dec.trailer_len > 2:
                        tail = self.rbuf_tail or []
                        tail.append(data[:pos])
                        self.rbuf_trailer = b"".join(tail)[-dec.trailer_len:]
                    self.rbuf_tail = None
                else:
                    self._keep_tail(data, dec.max_trailer)
            if dec.done:
                if pos < end:
                    self.up_ok = False
                done = True
            if parts is None:
                if pos < end:
                    data = data[:pos]
            elif mode == F_CHUNKED and not self.transforming and self.rbuf is None:
                # held head, chunks relayed as they are: the body bytes are for the sniff
                plain = b"".join(parts)
                if pos < end:
                    data = data[:pos]
            else:
                data = b"".join(parts)
        elif mode == F_RECHUNK and not self.transforming and self.rbuf is None:
            if data:
                plain = data
                data = chunk_header(len(data)) + data + b"\r\n"
        if self.held is not None and plain is None:
            plain = data
        if self.transforming:
            data = self._transform(data, done)
        if self.rbuf is not None:
            if data:
                self.rbuf.add(data)
                if 0 <= self.rbuf_max < self.rbuf.size:
                    # over maxResponseBodyBytes: oxy's write error -> 500, nothing of the
                    # backend's response reaches the client
                    self.rbuf.close()
                    self.rbuf = None
                    self.rbuf_head = None
                    self.up_ok = False
                    self._release_upstream(False)
                    self.resp_state = R_NONE
                    self._answer(self.ex, (<object> self.ex.buffering).over_limit)
                    return
            if done:
                self._held_response_done()
            return
        if self.held is not None:
            if not plain and not done:
                self.held_out.append(data)       # framing only: wait for body bytes
                return
            was = self.transforming
            head = self._release_held(plain)
            if self.transforming and not was:
                # the sniff started a transform (compress on a sniffed Content-Type): the
                # body from its first bytes goes through it, framed anew
                data = self._transform(plain or b"", done)
            elif self.held_out:
                data = b"".join(self.held_out) + data
            self.held_out = None
        self.ex.bytes_out += len(data) - skip
        if head is not None:
            ok = self.write_head(head, data, skip)
        else:
            ok = self.write(data) if data else True
        if self.state == S_CLOSED:
            return
        if done:
            self.resp_state = R_DONE
            self._maybe_finish()
        elif not ok:
            up.paused = True

    cdef bytes _release_held(self, bytes first):
        # the held head, once the body's first bytes (or its end) are there: ex.sniff decides
        # on them, with the head as the whole response phase left it
        cdef ResponseHead rh = self.held
        self.held = None
        self.ex.sniff(rh, first or b"")
        if self.ex.transforms and not self.transforming:
            self._start_transforming(rh)    # compress decided on the sniffed type
        return rh.serialize()

    cdef void _start_transforming(self, ResponseHead rh) except *:
        # a body transform (compress, ...): the length changes, so the body goes chunked to
        # an HTTP/1.1 client, until close to an HTTP/1.0 one
        self.transforming = True
        rh.remove(b"Content-Length")
        if self.req.version == 10:
            rh.remove(b"Transfer-Encoding")
            rh.set(b"Connection", b"close")
            self.keep_alive = False
        else:
            rh.set(b"Transfer-Encoding", b"chunked")

    cdef bytes _transform(self, bytes data, bint last):
        # the body through the exchange's transforms, in the order they were added (the
        # innermost middleware's first), framed for the client: chunks to HTTP/1.1 (the last
        # chunk once the body ended), raw bytes to HTTP/1.0 (the connection closes after)
        cdef list transforms = self.ex.transforms
        for t in transforms:
            if data:
                data = t.feed(data)
            if last:
                data = (data or b"") + (t.finish() or b"")
        if not data:
            data = b""
        if self.req.version == 10 or self.rbuf is not None:
            return data          # (a held response is framed once complete)
        if data:
            data = chunk_header(len(data)) + data + b"\r\n"
        return data + LAST_CHUNK if last else data

    cdef void on_upstream_eof(self, UpstreamConn up) except *:
        if up is not self.up:
            return
        if self.state == S_TUNNEL:
            self._release_upstream(False)
            self._close_after_output()
            return
        if self.resp_state == R_HEAD:
            if self.retry_head is not None and not self.ubuf:
                self._retry()
                return
            self.up_ok = False
            self.error(502)
            return
        if self.resp_state == R_BODY and (self.resp_mode == F_RECHUNK or self.resp_mode == F_RAW):
            # the until-close body ended
            self.up_ok = False
            if self.rbuf is not None:
                if self.transforming:
                    data = self._transform(b"", True)
                    if data:
                        self.rbuf.add(data)
                self._held_response_done()
                return
            if self.held is not None:
                # an empty body: the held head leaves as it is
                self.write(self._release_held(b"") + b"".join(self.held_out))
                self.held_out = None
            if self.transforming:
                self.write(self._transform(b"", True))
            elif self.resp_mode == F_RECHUNK:
                self.write(LAST_CHUNK)
            if self.state != S_CLOSED:
                self.resp_state = R_DONE
                self._maybe_finish()
            return
        # truncated body: nothing honest to add, close the client connection
        self.close()

    cdef void _keep_tail(self, bytes data, Py_ssize_t keep) except *:
        # the raw pieces that may hold the start of a trailer section (``keep`` bytes)
        cdef list tail = self.rbuf_tail
        cdef Py_ssize_t total = 0
        if tail is None:
            tail = self.rbuf_tail = []
        tail.append(data)
        for piece in tail:
            total += len(<bytes> piece)
        while len(tail) > 1 and total - len(<bytes> tail[0]) >= keep + 2:
            total -= len(<bytes> tail[0])
            del tail[0]

    cdef bytes _held_trailers(self, ResponseHead rh):
        # Traefik + oxy's buffer with a backend's trailers: Go's ReverseProxy announces the
        # declared names ("Trailer") before WriteHeader and, after the body, copies the
        # trailers into the header map — oxy's own, which it copies whole before its
        # WriteHeader: declared trailers (when every one received was declared) show in the
        # head too; Go's server then sends the response chunked, the trailers after the last
        # chunk. Returns that end (last chunk + trailer section) or None (Content-Length).
        cdef bytes section = self.rbuf_trailer
        self.rbuf_trailer = None
        self.rbuf_tail = None
        cdef list values = self.rbuf_declared
        self.rbuf_declared = None
        declared = set()
        for value in values or ():
            for name in (<bytes> value).split(b","):
                name = name.strip(b" \t").lower()
                if name:
                    declared.add(name)
        if section is None and not declared:
            return None
        if declared and self.req.version == 10:
            # (the forwarder leaves "Trailer" out of an unchunked head; Go's map has it)
            for value in values:
                rh.add(b"Trailer", value)
        if section is not None and declared:
            fields = []
            for line in section.split(b"\r\n"):
                if line:
                    name, _, value = line.partition(b":")
                    fields.append((name.strip(b" \t"), value.strip(b" \t")))
            if all(n.lower() in declared for n, _ in fields):
                for n, v in fields:
                    rh.add(n, v)
        if self.req.version == 10:
            return None                      # no chunking: the trailers cannot travel
        return b"0\r\n" + (section if section is not None else b"\r\n")

    cdef void _held_response_done(self) except *:
        # the held response is complete: it leaves with its Content-Length (from memory, or
        # from its file as the client takes it)
        cdef ResponseHead rh = self.rbuf_head
        cdef Spool sp = self.rbuf
        cdef Exchange ex = self.ex
        self.rbuf_head = None
        self.rbuf = None
        self._release_upstream(self.up_ok)       # the backend's part is over
        end = self._held_trailers(rh)
        rh.remove(b"Transfer-Encoding")
        rh.set(b"Content-Length", b"%d" % sp.size)
        data = sp.whole()
        if data is None:
            sp.rewind()
            first = sp.read(RECV_SIZE)
            sp.rewind()
        else:
            first = data
        if ex.sniff is not None:
            n = len(ex.transforms) if ex.transforms else 0
            ex.sniff(rh, first)
            if ex.transforms and len(ex.transforms) > n:
                # compress decided on the sniffed type: the held body goes through it now
                sp = _through(sp, ex.transforms[n:], data)
                data = sp.whole()
                if data is None:
                    sp.rewind()
                rh.remove(b"Transfer-Encoding")
                rh.set(b"Content-Length", b"%d" % sp.size)
        if end is not None:
            rh.remove(b"Content-Length")
            rh.set(b"Transfer-Encoding", b"chunked")
            if data is not None:
                data = (chunk_header(len(data)) + data + b"\r\n" if data else b"") + end
            else:
                self.rbuf_end = end              # _pump_response frames each piece
        head = rh.serialize()
        ex.resp_head = head
        ex.bytes_out += sp.size
        if data is not None:
            sp.close()
            self.write_head(head, data, 0)
            if self.state == S_CLOSED:
                return
            self.resp_state = R_DONE
            self._maybe_finish()
            return
        self.rbuf_out = sp
        self.write(head)
        self._pump_response()

    cdef void _pump_response(self) except *:
        # a held response spooled to a file, as fast as the client takes it (bounded memory)
        cdef Spool sp
        while self.rbuf_out is not None:
            if self.state == S_CLOSED or self.out is not None:
                return                          # flush() goes on
            sp = self.rbuf_out
            data = sp.read(RECV_SIZE)
            if not data:
                self.rbuf_out = None
                sp.close()
                if self.rbuf_end is not None:
                    self.write(self.rbuf_end)
                    self.rbuf_end = None
                    if self.state == S_CLOSED:
                        return
                self.resp_state = R_DONE
                self._maybe_finish()
                return
            if self.rbuf_end is not None:
                data = chunk_header(len(data)) + data + b"\r\n"
            self.write(data)

    cdef void _again(self, UpstreamConn failed) except *:
        # another attempt for the retry middleware: back to the state the request had when
        # it passed that middleware (``Retry.rewind``), after its backoff
        cdef Exchange ex = self.ex
        if failed is not None:
            failed.client = None
            if not failed.closed:
                failed.close()
        if ex.service is not None:
            ex.service.done(ex)
            ex.service = None
        ex.server = None
        ex.mirror = None
        self.resp_state = R_NONE
        self.ubuf = None
        self.retry_head = None
        self.body_out = None
        self.body_held = None
        if self.rbuf is not None:
            self.rbuf.close()
            self.rbuf = None
        self.rbuf_head = None
        self.up_ok = True
        self.resp_phase = False
        delay = ex.retry.rewind(ex)
        ex.waiting = True
        if delay > 0:
            self.loop.call_later(delay, ex.resume)
        else:
            self.exchange_resume(ex)

    cdef void _retry(self) except *:
        # A pooled connection the backend had closed (keep-alive race): send the same
        # body-less request once more on a fresh connection, as Go's Transport does.
        cdef bytes head = self.retry_head
        cdef UpstreamConn old = self.up, up
        self.retry_head = None
        old.client = None
        old.close()
        up = UpstreamConn(self.env, old.pool)
        up.client = self
        up.reads = 1
        self.up = up
        self.ubuf = None
        up.write(head)
        self._request_sent()

    cdef void on_upstream_error(self, UpstreamConn up, int status) except *:
        if up is not self.up:
            return
        if self.resp_state == R_HEAD and self.retry_head is not None and not self.ubuf \
                and status == 502:
            self._retry()
            return
        if self.ex.retry is not None and up.connecting and self.state == S_WAIT \
                and self.ex.retry.network_retry(self.ex, status):
            # the retry middleware: the backend could not be reached and nothing of the
            # request was written to it (Traefik: proxy reached, WroteHeaders not called)
            self.up = None
            self.up_ok = False
            self._again(up)
            return
        if self.ex.retry is not None and self.state == S_WAIT and self.resp_state == R_HEAD \
                and not self.ubuf and self.body_out is None \
                and (self.ex.body is not None or self.req.framing == FR_NONE
                     or self.req.content_length == 0) \
                and self.ex.retry.error_retry(self.ex, status):
            # a buffering retryExpression: the request (its body kept) goes again after the
            # backend failed with it (oxy's loop sees the proxy's 502/504)
            self.up = None
            self.up_ok = False
            self._again(up)
            return
        self.up = None
        self.up_ok = False
        self.error(status)

    cdef void _maybe_finish(self) except *:
        if self.resp_state != R_DONE:
            return
        if self.state == S_BODY:
            # the backend answered before the request body ended (early response): the
            # rest of the body cannot be skipped safely on either connection
            self.up_ok = False
            self._release_upstream(False)
            self._close_after_output()
            return
        self._release_upstream(self.up_ok)
        self.requests += 1
        if not self.keep_alive:
            self._close_after_output()
            return
        self._next_request()
        if self.state != S_HEAD:
            return
        self.resume_reading()
        if self.buf:
            self.deadline = self.env.now + self.read_timeout if self.read_timeout else 0.0
            self.process()

    cdef void _release_upstream(self, bint reusable) except *:
        cdef UpstreamConn up = self.up
        if up is None:
            return
        self.up = None
        if reusable and not up.closed and up.out is None and not up.connecting \
                and not up.paused:
            up.pool.put(up, self.env.now)
        else:
            up.client = None
            up.close()

    # ---- teardown -------------------------------------------------------------------

    def abort(self):
        """Close both sides now (timeouts, resets, internal failures)."""
        self.close()

    cpdef close(self):
        if self.state == S_CLOSED:
            return
        self._release_upstream(False)
        if self.rbuf_out is not None:
            self.rbuf_out.close()
            self.rbuf_out = None
        self.state = S_CLOSED
        if self.ex is not None:
            # cut before its end (client gone, timeout, failure): completion hooks still run
            self._end_exchange(499 if self.resp_state != R_DONE else 0)
        self.deadline = 0.0
        self.loop.timed.discard(self)
        if self.env.parser_owner is self:
            self.env.parser_owner = None
        if self.sink is not None:
            # an HTTP/2 stream: the socket is its connection's
            self.buf = None
            self.sink.sink_closed()
            return
        self.loop.forget(self.fd)     # no epoll_ctl: the close below takes it out of the set
        self.env.clients.discard(self)
        try:
            self.sock.close()
        except OSError:
            pass
        self.buf = None
        self.out = None

    def is_idle(self):
        return self.state == S_HEAD and not self.buf and self.out is None


# ---- the event loop ---------------------------------------------------------------------

cdef enum:
    MAX_EVENTS = 512


cdef inline double _monotonic() noexcept nogil:
    # the clock time.monotonic() reads, without a Python call per loop turn
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef void _end_turn(loop, Env env) except *:
    # what the turn's handlers queued goes out now, once per connection (TurnEnd); one that
    # queues again meanwhile (more framed) is called again
    cdef list todo
    cdef TurnEnd h
    while env.turn_end:
        todo = env.turn_end
        env.turn_end = []
        for h in todo:
            try:
                h.end_turn()
            except Exception as e:  # a worker never dies on a request
                loop._fail(h, e)


cdef extern from "<time.h>" nogil:
    int CLOCK_THREAD_CPUTIME_ID


cdef inline double _cpu_time() noexcept nogil:
    # this thread's CPU time: a turn's wall time minus it is time the worker was not running
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline int _log2_bucket(double seconds) noexcept nogil:
    # loop statistics: bucket b holds durations in [2^(b-1), 2^b) microseconds (b 0: < 1 us)
    cdef long us = <long> (seconds * 1e6)
    cdef int b = 0
    while us > 0 and b < 31:
        us >>= 1
        b += 1
    return b


def run_loop(loop, Env env=None, stats=None, int max_events=MAX_EVENTS):
    """The worker's epoll loop (``pyroute.server.loop.Loop`` holds its state): dispatches
    ``handler.on_event(events)``, keeps ``loop.now`` (monotonic) current and calls
    ``loop.sweep(now)`` (timeouts, drain checks) every ``SWEEP_INTERVAL``. A handler that
    raises is logged and aborted by ``loop._fail``: a worker never dies on a request.

    epoll_wait is called directly into a C array (``select.epoll.poll`` builds a list of
    tuples per call), and the proxy's own connections get their cdef ``on_event_c``
    without a Python method call; other handlers (listeners, signals, config pipe,
    sniffers, mirrors) get ``on_event``.

    ``stats`` (bench/tail.py, ``PYROUTE_LOOP_STATS``): a callable given, at every sweep, the
    histograms so far of turn lengths, their CPU time (the rest: the worker was preempted),
    and sweep lengths (log2 microsecond buckets) and of
    events per turn (buckets of 16): what a request late in a long turn waits for. Off, it
    costs one test per turn.

    ``max_events`` (1..512, bench/tail.py's ``PYROUTE_MAX_EVENTS``): how many ready events one
    epoll_wait hands over; the rest stay queued in the kernel, in order, for the next turn."""
    cdef dict handlers = loop.handlers
    cdef bint with_stats = stats is not None
    cdef long long turn_hist[32]
    cdef long long sweep_hist[32]
    cdef long long events_hist[33]
    cdef long long cpu_hist[32]
    cdef double sweep_start, cpu_start = 0
    memset(cpu_hist, 0, sizeof(cpu_hist))
    memset(turn_hist, 0, sizeof(turn_hist))
    memset(sweep_hist, 0, sizeof(sweep_hist))
    memset(events_hist, 0, sizeof(events_hist))
    cdef int epfd = loop.ep.fileno()
    cdef epoll_event events[MAX_EVENTS]
    cdef int n, i, ms, ev
    cdef double now, timeout
    cdef PyObject *hp
    cdef object h
    cdef type client_type = ClientConn, upstream_type = UpstreamConn
    cdef list timers = loop.timers
    if max_events < 1 or max_events > MAX_EVENTS:
        max_events = MAX_EVENTS
    while loop.running:
        timeout = loop.next_sweep - loop.now
        if timers:
            # a middleware's timer (Loop.call_later) due before the next sweep
            t = (<object> timers[0]).when - loop.now
            if t < timeout:
                timeout = t
        ms = <int>(timeout * 1000.0) + 1 if timeout > 0 else 0
        with nogil:
            n = epoll_wait(epfd, events, max_events, ms)
        if n < 0:
            if errno != EINTR:
                raise _os_error(errno)
            n = 0
        # Python-level signal handlers (SIGTERM: drain) run here; the wakeup fd makes
        # epoll_wait return when one is pending
        PyErr_CheckSignals()
        now = _monotonic()
        loop.now = now
        if env is not None:
            env.now = now
        if with_stats:
            cpu_start = _cpu_time()
        for i in range(n):
            hp = PyDict_GetItem(handlers, events[i].data.fd)
            if hp == NULL:
                continue
            h = <object>hp
            ev = events[i].events
            try:
                if type(h) is client_type:
                    (<ClientConn>h).on_event_c(ev)
                elif type(h) is upstream_type:
                    (<UpstreamConn>h).on_event_c(ev)
                else:
                    h.on_event(ev)
            except Exception as e:  # a worker never dies on a request
                loop._fail(h, e)
        if timers and (<object> timers[0]).when <= now:
            loop.run_timers(now)
        if now >= loop.next_sweep:
            loop.next_sweep = now + loop.sweep_interval
            if with_stats:
                sweep_start = _monotonic()
                loop.sweep(now)
                sweep_hist[_log2_bucket(_monotonic() - sweep_start)] += 1
                stats([turn_hist[i] for i in range(32)], [sweep_hist[i] for i in range(32)],
                      [events_hist[i] for i in range(33)], [cpu_hist[i] for i in range(32)])
            else:
                loop.sweep(now)
        if env is not None and env.turn_end:
            _end_turn(loop, env)
        if with_stats and n > 0:
            turn_hist[_log2_bucket(_monotonic() - now)] += 1
            cpu_hist[_log2_bucket(_cpu_time() - cpu_start)] += 1
            events_hist[(n + 15) // 16] += 1
