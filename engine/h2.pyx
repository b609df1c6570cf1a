# cython: language_level=3
"""HTTP/2 to clients (RFC 9113): one ``H2Conn`` per connection, one ``H2Stream`` per stream.

The connection owns the socket (plain, h2c with prior knowledge, or a TLSStream that
negotiated ``h2`` by ALPN), the frame codec, HPACK (engine/hpack.pyx), SETTINGS,
both flow-control windows and the stream table. Each stream's request runs through a
``ClientConn`` without a socket (conn.pyx ``StreamSink``): the stream hands it the request as
HTTP/1.1 bytes (head rebuilt from the pseudo-headers and fields, ``:authority`` as Host; the
body from DATA frames, framed by its content-length or chunked), so routing, the middleware
chain, the balancer pick, the pools, the response phase, timeouts and observation are the
very code HTTP/1.1 requests run. What the ClientConn answers (HTTP/1.1 bytes) is parsed back
into HEADERS (names lower-cased, connection-specific fields dropped, as Go's server does) and
DATA frames.

Bounded everywhere: a stream buffers at most what its receive window allows of the request
(WINDOW_UPDATE only once the ClientConn took the bytes, so a backend that does not read stops
the client) and at most ``STREAM_OUT_BOUND`` of the response beyond what flow control lets
out (the ClientConn is then told to pause its backend read); control frames queued for a
client that does not read, rapid resets, SETTINGS/PING floods, CONTINUATION floods and
oversized header lists are refused as Go's and nghttp2's servers do.
"""
cimport cython
import socket

from pyroute._engine.conn cimport Env, ClientConn, StreamSink, TurnEnd
from pyroute._engine.http1 cimport ResponseParser, Response, ChunkedDecoder
from pyroute._engine.errors import HttpParseError
from pyroute._engine import http1 as _http1
from pyroute._engine.hpack cimport Decoder, Encoder
from pyroute._engine.hpack import HpackError, HeaderListTooLarge
from libc.string cimport memchr, memcpy, memcmp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.errno cimport errno, EAGAIN, EINTR
import os
import select

# The connection's reads and writes call libc directly on a plain (h2c) socket, as
# engine/conn.pyx does: socket.recv_into/send cost an argument parse, a buffer export and an
# exception per EAGAIN each. A TLSStream keeps its Python methods.
cdef extern from "<sys/socket.h>" nogil:
    ssize_t c_recv "recv"(int fd, void *buf, size_t n, int flags)
    ssize_t c_send "send"(int fd, const void *buf, size_t n, int flags)
    enum: MSG_NOSIGNAL

cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void *iov_base
        size_t iov_len
    ssize_t c_writev "writev"(int fd, const iovec *iov, int n)

cdef enum:
    IOV_BATCH = 64                        # frames per writev (IOV_MAX is 1024)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
cdef bytes _PREFACE = PREFACE

# frame types, flags, settings: engine/h2frame.pxd
from pyroute._engine.h2frame cimport *


# error codes (RFC 9113 §7)
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
CONNECT_ERROR = 0xa
ENHANCE_YOUR_CALM = 0xb
INADEQUATE_SECURITY = 0xc
HTTP_1_1_REQUIRED = 0xd


cdef long long MAX_WINDOW = 0x7fffffff
cdef int DEFAULT_FRAME = 16384
# what pyroute lets a client send ahead: per stream and per connection (Go's server: 1 MiB
# each); the connection's window bounds what all its streams buffer together
cdef int STREAM_RECV_WINDOW = 1 << 18
cdef int CONN_RECV_WINDOW = 1 << 20
# response bytes a stream holds beyond what flow control lets out before the backend read
# pauses (one backend read more may land on top)
cdef Py_ssize_t STREAM_OUT_BOUND = 1 << 16
# bytes queued for the socket beyond which no more DATA is framed (control frames still are)
cdef Py_ssize_t SOCK_OUT_BOUND = 1 << 18
# control frames (SETTINGS/PING acks, RST_STREAM, WINDOW_UPDATE) a client that does not read
# may make pyroute queue: Go's server closes the connection past maxQueuedControlFrames
cdef Py_ssize_t MAX_QUEUED_CONTROL = 10000
# CVE-2023-44487 (rapid reset): streams the client may reset before their response
# ended, as nghttp2's token bucket (burst 1000, 33 per second); past it GOAWAY
# ENHANCE_YOUR_CALM
cdef double RESET_BURST = 1000.0
cdef double RESET_RATE = 33.0
# CVE-2024-27316 (CONTINUATION flood): a header block (HEADERS + CONTINUATION) larger than
# this many times the advertised header list size ends the connection (ENHANCE_YOUR_CALM)
cdef int BLOCK_FACTOR = 2
cdef Py_ssize_t RECV_SIZE = 65536

cdef int EPOLLOUT = select.EPOLLOUT
cdef int HUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
cdef object ET_EVENTS = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
cdef object WOULD_BLOCK = (BlockingIOError, InterruptedError)
cdef object _HttpParseError = HttpParseError
cdef object _HpackError = HpackError
cdef object _HeaderListTooLarge = HeaderListTooLarge
cdef int FR_NONE = _http1.NONE
cdef int FR_LENGTH = _http1.LENGTH
cdef int FR_CHUNKED = _http1.CHUNKED
cdef int FR_CLOSE = _http1.CLOSE

# RFC 9113 §8.2.2: connection-specific fields make a request malformed; Go's server drops
# them (and Keep-Alive, Proxy-Connection) from responses
cdef frozenset _CONNECTION_FIELDS = frozenset([b"connection", b"keep-alive",
                                               b"proxy-connection", b"transfer-encoding",
                                               b"upgrade"])
# Go's httpguts.ValidTrailerHeader: fields never sent as trailers (lower case)
cdef frozenset _BAD_TRAILERS = frozenset([
    b"authorization", b"cache-control", b"connection", b"content-encoding", b"content-length",
    b"content-range", b"content-type", b"expect", b"host", b"keep-alive", b"max-forwards",
    b"pragma", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"range",
    b"realm", b"te", b"trailer", b"transfer-encoding", b"www-authenticate"])
cdef frozenset _PSEUDO_REQUEST = frozenset([b":method", b":scheme", b":authority", b":path",
                                            b":protocol"])

# RFC 9110 §5.6.2 tchar, lower case only (RFC 9113 §8.2.1: upper case is malformed)
cdef bytes _TCHAR = (b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
cdef bint _tchar[256]
cdef int _i
for _i in range(256):
    _tchar[_i] = False
for _i in _TCHAR:
    _tchar[_i] = True
_TCHAR_UPPER = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"


cdef inline void _frame_head(char *p, Py_ssize_t n, int ftype, int flags, unsigned int sid):
    p[0] = <char> (n >> 16 & 0xff)
    p[1] = <char> (n >> 8 & 0xff)
    p[2] = <char> (n & 0xff)
    p[3] = <char> ftype
    p[4] = <char> flags
    p[5] = <char> (sid >> 24 & 0x7f)
    p[6] = <char> (sid >> 16 & 0xff)
    p[7] = <char> (sid >> 8 & 0xff)
    p[8] = <char> (sid & 0xff)


cdef inline bytes _frame_from(int ftype, int flags, unsigned int sid, const char *src,
                              Py_ssize_t n):
    # one allocation: the 9-byte head and the payload copied after it
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 9 + n)
    cdef char *p = PyBytes_AS_STRING(out)
    _frame_head(p, n, ftype, flags, sid)
    if n:
        memcpy(p + 9, src, n)
    return out


cdef inline bytes _frame(int ftype, int flags, unsigned int sid, bytes payload):
    return _frame_from(ftype, flags, sid, PyBytes_AS_STRING(payload),
                       PyBytes_GET_SIZE(payload))


# ":status" values as bytes, made once
cdef list _STATUS_BYTES = [str(_i).encode() for _i in range(1000)]


cdef inline void _append(bytearray buf, const char *src, Py_ssize_t n) except *:
    # ``buf += src[:n]`` without an intermediate bytes object
    cdef Py_ssize_t old = PyByteArray_GET_SIZE(buf)
    PyByteArray_Resize(buf, old + n)
    memcpy(PyByteArray_AS_STRING(buf) + old, src, n)


cdef inline bytes _u32(unsigned long long v):
    return bytes((v >> 24 & 0xff, v >> 16 & 0xff, v >> 8 & 0xff, v & 0xff))


cdef bint _token(bytes name):
    cdef const unsigned char *p = <const unsigned char *> PyBytes_AS_STRING(name)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(name)
    if n == 0:
        return False
    for i in range(n):
        if not _tchar[p[i]]:
            return False
    return True


cdef bint _field_value_ok(bytes value):
    # Go's httpguts.ValidHeaderFieldValue: no CTL but HTAB (so never CR, LF or NUL, which
    # would split or end the HTTP/1.1 line this value is written into)
    cdef const unsigned char *p = <const unsigned char *> PyBytes_AS_STRING(value)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(value)
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        if (c < 0x20 and c != 0x09) or c == 0x7f:
            return False
    return True


cdef bint _visible(bytes value):
    # request-target / authority: visible ASCII only (no space, no CTL)
    cdef const unsigned char *p = <const unsigned char *> PyBytes_AS_STRING(value)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(value)
    for i in range(n):
        if p[i] <= 0x20 or p[i] >= 0x7f:
            return False
    return True


class StreamError(Exception):
    """A stream error (RFC 9113 §5.4.2): RST_STREAM with ``code``."""

    def __init__(self, code, msg=""):
        Exception.__init__(self, msg)
        self.code = code


cdef object _StreamError = StreamError


# stream states (RFC 9113 §5.1), as far as pyroute needs them
cdef enum:
    ST_OPEN = 0
    ST_HALF_CLOSED_REMOTE = 1     # the client sent END_STREAM
    ST_CLOSED = 2

# the response's parse state
cdef enum:
    RS_HEAD = 0
    RS_BODY = 1
    RS_DONE = 2


@cython.final
cdef class H2Stream(StreamSink):
    cdef H2Conn h2
    cdef public unsigned int sid
    cdef public int state
    cdef ClientConn conn                  # runs the request (None before the head is made)
    cdef bint conn_closed
    cdef long long send_window            # what flow control lets pyroute send
    cdef long long recv_window            # what the client may still send
    cdef long long recv_unacked           # bytes taken by the ClientConn, not yet given back
    cdef list inq                         # request bytes (HTTP/1.1 framing) not yet taken
    cdef long long inq_flow               # flow-controlled bytes of ``inq`` (DATA lengths)
    cdef bint chunked                     # the body goes to the ClientConn chunked
    cdef long long declared               # content-length the client sent; -1: none
    cdef long long received               # DATA payload bytes received
    cdef bint head_req
    # the response, parsed back from the ClientConn's HTTP/1.1 bytes
    cdef int rstate
    cdef bytearray rbuf
    cdef int rframing
    cdef long long rleft
    cdef ChunkedDecoder rdec
    cdef bytearray rtail                  # chunked framing since the last data: the last
                                          # chunk's trailer section once the body ends
    cdef list rtrailers                   # the response's trailers: a HEADERS frame at the end
    cdef bytearray pending                # DATA payload waiting for flow control
    cdef bint end_pending                 # END_STREAM goes after ``pending``
    cdef bint ended                       # END_STREAM sent (or RST)
    cdef bint paused_conn                 # the ClientConn was told to pause (sink False)
    cdef bint counted                     # counts against MAX_CONCURRENT_STREAMS
    cdef bint scheduled                   # in the connection's list of streams to send

    def __cinit__(self):
        self.inq = []
        self.pending = bytearray()
        self.declared = -1

    # ---- the ClientConn's side (StreamSink) ------------------------------------------

    cdef bytes take_input(self):
        cdef bytes data
        cdef long long flow
        if not self.inq:
            return None
        data = b"".join(self.inq) if len(self.inq) > 1 else self.inq[0]
        self.inq = []
        flow = self.inq_flow
        self.inq_flow = 0
        if flow:
            self.h2._consumed(self, flow)
        return data

    cdef bint sink(self, bytes data) except -1:
        cdef H2Conn h2 = self.h2
        if self.ended or h2.closed:
            return True                   # reset meanwhile: the bytes have nowhere to go
        if self.rstate == RS_HEAD:
            if self.rbuf is None:
                self.rbuf = bytearray(data)
            else:
                self.rbuf += data
            self._head()
        elif self.rstate == RS_BODY:
            self._body(data)
        if self.ended:
            return True
        h2._pump()
        if len(self.pending) >= STREAM_OUT_BOUND:
            self.paused_conn = True
            return False
        return True

    cdef void sink_closed(self) except *:
        cdef H2Conn h2 = self.h2
        self.conn_closed = True
        if self.ended or h2.closed:
            h2._maybe_forget(self)
            return
        if self.rstate == RS_BODY and self.rframing == FR_CLOSE:
            self.rstate = RS_DONE
            self.end_pending = True
        elif self.rstate != RS_DONE:
            # cut before its response was whole (timeouts, a backend that went away)
            h2._reset(self, INTERNAL_ERROR)
            return
        h2._schedule(self)
        h2._pump()
        h2._maybe_forget(self)

    # ---- the response --------------------------------------------------------------

    cdef void _head(self) except *:
        cdef Response resp
        cdef H2Conn h2 = self.h2
        cdef ResponseParser parser = h2.rparser
        cdef list fields
        cdef bint end
        cdef bytes key
        cdef Py_ssize_t klen
        cdef int framing
        cdef long long length
        while self.rstate == RS_HEAD and self.rbuf:
            key = h2.rhead_key
            if key is not None and self.head_req == h2.rhead_headreq:
                klen = PyBytes_GET_SIZE(key)
                if PyByteArray_GET_SIZE(self.rbuf) >= klen and memcmp(
                        PyByteArray_AS_STRING(self.rbuf), PyBytes_AS_STRING(key), klen) == 0:
                    # the same head as the last final one on this connection (a backend
                    # answers alike until its Date moves): its fields, framing and HPACK
                    # block again, unparsed (the same bytes parse the same)
                    if h2.rparser_owner is self:
                        parser.reset()
                        h2.rparser_owner = None
                    del self.rbuf[:klen]
                    self._final(h2.rhead_fields, h2.rhead_framing, h2.rhead_length)
                    return
            # the connection's one parser, shared by its streams: it keeps the scan of an
            # incomplete head (reset when it was another stream's; a whole head resets it)
            if h2.rparser_owner is not None and h2.rparser_owner is not self:
                parser.reset()
            h2.rparser_owner = None
            try:
                resp = parser.parse(self.rbuf, 0, self.head_req)
            except _HttpParseError:
                h2._reset(self, INTERNAL_ERROR)
                return
            if resp is None:
                h2.rparser_owner = self
                return
            key = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self.rbuf), resp.head_length) \
                if resp.status >= 200 else None
            del self.rbuf[:resp.head_length]
            fields = [(b":status", _STATUS_BYTES[resp.status] if 0 <= resp.status < 1000
                       else str(resp.status).encode())]
            for name, value in resp.headers:
                name = _lower(name)
                if name in _CONNECTION_FIELDS:
                    continue
                fields.append((name, value))
            if 100 <= resp.status < 200:
                h2._headers(self, fields, False)
                continue
            framing = resp.framing
            length = resp.content_length
            if key is not None:
                h2.rhead_key = key
                h2.rhead_headreq = self.head_req
                h2.rhead_fields = fields
                h2.rhead_framing = framing
                h2.rhead_length = length
                h2.rhead_block = None
            self._final(fields, framing, length)
            return

    cdef void _final(self, list fields, int framing, long long length) except *:
        # the final response head: HEADERS, then the body as its framing says
        cdef H2Conn h2 = self.h2
        cdef bint end = False
        if framing == FR_LENGTH:
            self.rleft = length
            end = self.rleft == 0
        elif framing == FR_CHUNKED:
            self.rdec = ChunkedDecoder()
        elif framing != FR_CLOSE:
            end = True                # HEAD, 204, 304
        self.rframing = framing
        if end:
            self.rstate = RS_DONE
            h2._headers(self, fields, True)
            return
        self.rstate = RS_BODY
        h2._headers(self, fields, False)
        # (a bytes copy made directly: bytes(bytearray) goes through the type call)
        rest = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self.rbuf),
                                         PyByteArray_GET_SIZE(self.rbuf))
        self.rbuf = None
        if rest:
            self._body(rest)

    cdef void _body(self, bytes data) except *:
        cdef ChunkedDecoder dec
        cdef Py_ssize_t pos = 0, start, end = len(data)
        if self.rframing == FR_LENGTH:
            if end >= self.rleft:
                if end > self.rleft:
                    data = data[:self.rleft]
                    end = self.rleft
                self.rleft = 0
                self.rstate = RS_DONE
                self.end_pending = True
            else:
                self.rleft -= end
            _append(self.pending, PyBytes_AS_STRING(data), end)
        elif self.rframing == FR_CHUNKED:
            dec = self.rdec
            try:
                while pos < end and not dec.done:
                    start = pos
                    pos = dec.feed(data, pos, end)
                    if dec.data_stop > dec.data_start:
                        self.pending += data[dec.data_start:dec.data_stop]
                        self.rtail = None
                        start = dec.data_stop
                    # the framing bytes after the last data: the trailer section is in
                    # there when the body ends (bounded by the decoder's line limits)
                    if pos > start:
                        if self.rtail is None:
                            self.rtail = bytearray()
                        self.rtail += data[start:pos]
            except _HttpParseError:
                self.h2._reset(self, INTERNAL_ERROR)
                return
            if dec.done:
                self.rstate = RS_DONE
                self.end_pending = True
                if self.rtail is not None:
                    self.rtrailers = _trailer_fields(self.rtail)
                    self.rtail = None
        else:
            self.pending += data
        self.h2._schedule(self)

    # ---- the request ---------------------------------------------------------------

    cdef void feed(self, bytes data, long long flow, bint end) except *:
        # a DATA frame's payload (``flow``: its flow-controlled length, padding included)
        self.inq_flow += flow
        n = len(data)
        self.received += n
        if self.declared >= 0 and (self.received > self.declared or
                                   (end and self.received != self.declared)):
            # RFC 9113 §8.1.1: DATA that does not add up to content-length is malformed
            raise _StreamError(PROTOCOL_ERROR, "content-length mismatch")
        if self.chunked:
            if n:
                self.inq.append(b"%x\r\n" % n + data + b"\r\n")
            if end:
                self.inq.append(b"0\r\n\r\n")
        elif n:
            self.inq.append(data)
        if self.inq and self.conn is not None and not self.conn.paused:
            self.conn.on_readable()
        elif self.inq_flow and self.conn is None:
            pass

    cdef void trailers(self, list fields) except *:
        # trailers end the request: in the chunked body's trailer section (validated there
        # by the ClientConn's decoder and forwarded as they are); dropped after a
        # content-length body, which has nowhere to carry them in HTTP/1.1
        cdef list lines = []
        for name, value in fields:
            if name[:1] == b":":
                raise _StreamError(PROTOCOL_ERROR, "pseudo-header in trailers")
            if not _token(name) or not _field_value_ok(value) or name in _CONNECTION_FIELDS:
                raise _StreamError(PROTOCOL_ERROR, "invalid trailer field")
            lines.append(name + b": " + value + b"\r\n")
        if self.declared >= 0 and self.received != self.declared:
            raise _StreamError(PROTOCOL_ERROR, "content-length mismatch")
        if self.chunked:
            self.inq.append(b"0\r\n" + b"".join(lines) + b"\r\n")
        if self.inq and self.conn is not None and not self.conn.paused:
            self.conn.on_readable()


cdef list _trailer_fields(bytearray tail):
    # The trailer section of a chunked body (RFC 9112 §7.1.2) that the decoder validated,
    # from the framing after the last data: the CRLF ending that data, the last-chunk line
    # ("0", maybe with extensions), the trailer lines, the empty line. As Go's http2 server
    # writes a ReverseProxy's trailers: names lower-cased, the fields that may not be
    # trailers dropped. None when there are none.
    cdef list fields = []
    cdef list lines = [line[:len(line) - 1] if line.endswith(b"\r") else line
                       for line in bytes(tail).split(b"\n")]
    cdef Py_ssize_t i = 0, n = len(lines)
    while i < n and not lines[i]:
        i += 1
    i += 1                                # the last-chunk line
    while i < n and lines[i]:
        name, _, value = lines[i].partition(b":")
        name = name.strip(b" \t").lower()
        i += 1
        if name and name not in _BAD_TRAILERS and name not in _CONNECTION_FIELDS:
            fields.append((name, value.strip(b" \t")))
    return fields or None


cdef inline bint _is_pseudo(bytes name):
    return PyBytes_GET_SIZE(name) > 0 and PyBytes_AS_STRING(name)[0] == b':'


cdef bint _method_ok(bytes method):
    # a token (RFC 9110 §9.1), any case; "connect" in another case than CONNECT is refused
    # (Go's server compares the method as sent)
    cdef const unsigned char *p = <const unsigned char *> PyBytes_AS_STRING(method)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(method)
    cdef unsigned char c
    if n == 0:
        return False
    for i in range(n):
        c = p[i]
        if 0x41 <= c <= 0x5a:
            c += 0x20
        if not _tchar[c]:
            return False
    if n == 7 and method != b"CONNECT" and method.lower() == b"connect":
        return False
    return True


cdef bytes _lower(bytes name):
    # the name itself when it has no upper case (no new object), else a lower-cased copy
    cdef const char *src = PyBytes_AS_STRING(name)
    cdef Py_ssize_t i, j, n = PyBytes_GET_SIZE(name)
    cdef bytes out
    cdef char *p
    for i in range(n):
        if b'A' <= src[i] <= b'Z':
            out = PyBytes_FromStringAndSize(src, n)
            p = PyBytes_AS_STRING(out)
            for j in range(i, n):
                if b'A' <= p[j] <= b'Z':
                    p[j] += 32
            return out
    return name


cdef inline char *_put(char *p, bytes b):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(p, PyBytes_AS_STRING(b), n)
    return p + n


cdef bytes _request_head(list fields, bint end_stream, H2Stream st):
    # RFC 9113 §8.3.1: the request's pseudo-headers and fields as an HTTP/1.1 head for the
    # ClientConn, written into one bytes object (no string per line). Raises
    # StreamError(PROTOCOL_ERROR) for a malformed request (§8.1.1).
    cdef bytes method = None, scheme = None, path = None, authority = None, host = None
    cdef bint regular = False
    cdef list kept = []                   # name, value, name, value...
    cdef list cookies = None
    cdef bytes name, value, cookie = None, out
    cdef Py_ssize_t size, i, n
    cdef char *p
    for name, value in fields:
        if _is_pseudo(name):
            if regular:
                raise _StreamError(PROTOCOL_ERROR, "pseudo-header after a regular field")
            if name == b":method" and method is None:
                method = value
            elif name == b":scheme" and scheme is None:
                scheme = value
            elif name == b":path" and path is None:
                path = value
            elif name == b":authority" and authority is None:
                authority = value
            else:
                # unknown, duplicated, a response pseudo-header, or :protocol (extended
                # CONNECT, RFC 8441, which pyroute does not announce)
                raise _StreamError(PROTOCOL_ERROR, "invalid pseudo-header %r" % name)
            continue
        regular = True
        if not _token(name):
            raise _StreamError(PROTOCOL_ERROR, "invalid field name")
        if not _field_value_ok(value):
            raise _StreamError(PROTOCOL_ERROR, "invalid field value")
        if name in _CONNECTION_FIELDS:
            raise _StreamError(PROTOCOL_ERROR, "connection-specific field")
        if name == b"te":
            if value.strip().lower() != b"trailers":
                raise _StreamError(PROTOCOL_ERROR, "te other than trailers")
        elif name == b"host":
            if host is None:
                host = value
            continue
        elif name == b"cookie":
            # RFC 9113 §8.2.3: crumbs joined back into one field for HTTP/1.1
            if cookies is None:
                cookies = []
            cookies.append(value)
            continue
        elif name == b"content-length":
            if not value.isdigit() or (st.declared >= 0 and int(value) != st.declared):
                raise _StreamError(PROTOCOL_ERROR, "invalid content-length")
            if st.declared >= 0:
                continue
            st.declared = int(value)
        kept.append(name)
        kept.append(value)
    if method is None or not _method_ok(method):
        raise _StreamError(PROTOCOL_ERROR, "missing or invalid :method")
    if method == b"CONNECT":
        return None                       # answered 501 by the caller (not served)
    if scheme is None or path is None or not path or not _visible(path) or \
            not (PyBytes_AS_STRING(path)[0] == b'/' or (path == b"*" and method == b"OPTIONS")):
        raise _StreamError(PROTOCOL_ERROR, "missing or invalid :scheme/:path")
    # Go's server: req.Host is :authority, else the Host field
    if authority is None:
        authority = host
    if authority is not None and (not _visible(authority) or
                                  memchr(PyBytes_AS_STRING(authority), b'@',
                                         PyBytes_GET_SIZE(authority)) != NULL):
        raise _StreamError(PROTOCOL_ERROR, "invalid :authority")
    if cookies is not None:
        kept.append(b"cookie")
        kept.append(b"; ".join(cookies))
    st.head_req = method == b"HEAD"
    if not end_stream and st.declared < 0:
        st.chunked = True
        kept.append(b"transfer-encoding")
        kept.append(b"chunked")
    elif end_stream and st.declared > 0:
        raise _StreamError(PROTOCOL_ERROR, "content-length without DATA")
    # "METHOD PATH HTTP/1.1\r\n" ["host: A\r\n"] ("name: value\r\n")* "\r\n"
    size = PyBytes_GET_SIZE(method) + 1 + PyBytes_GET_SIZE(path) + 11 + 2
    if authority is not None:
        size += 8 + PyBytes_GET_SIZE(authority)
    n = len(kept)
    for i in range(0, n, 2):
        size += PyBytes_GET_SIZE(<bytes> kept[i]) + PyBytes_GET_SIZE(<bytes> kept[i + 1]) + 4
    out = PyBytes_FromStringAndSize(NULL, size)
    p = PyBytes_AS_STRING(out)
    p = _put(p, method)
    p[0] = b' '
    p = _put(p + 1, path)
    memcpy(p, b" HTTP/1.1\r\n", 11)
    p += 11
    if authority is not None:
        memcpy(p, b"host: ", 6)
        p = _put(p + 6, authority)
        p[0] = b'\r'
        p[1] = b'\n'
        p += 2
    for i in range(0, n, 2):
        p = _put(p, <bytes> kept[i])
        p[0] = b':'
        p[1] = b' '
        p = _put(p + 2, <bytes> kept[i + 1])
        p[0] = b'\r'
        p[1] = b'\n'
        p += 2
    p[0] = b'\r'
    p[1] = b'\n'
    assert p + 2 == PyBytes_AS_STRING(out) + size
    return out


@cython.final
cdef class H2Conn(TurnEnd):
    """One HTTP/2 connection to a client (see the module's docstring).

    Frames are queued in ``out`` and written once per loop turn (``end_turn``, called by
    run_loop after the turn's events): the responses of all the streams that came back in
    one turn leave in one send, as nginx writes a connection's frames once per event."""
    cdef public Env env
    cdef public object loop
    cdef public object ep
    cdef public object sock
    cdef public int fd
    cdef public bint tls
    cdef public bytes remote_ip
    cdef public int remote_port
    cdef public double deadline
    cdef public bint closed
    cdef bytearray ibuf
    cdef bint preface_seen
    cdef bint settings_seen               # the client's first SETTINGS came
    cdef list out                         # bytes for the socket, in order
    cdef Py_ssize_t out_size
    cdef int queued_control               # control frames in ``out`` since it last drained
    cdef dict streams                     # sid -> H2Stream (open, or closed with output left)
    cdef list ready                       # streams with DATA to send (round robin)
    cdef unsigned int last_sid            # highest client stream id seen
    cdef int open_streams                 # streams counting against MAX_CONCURRENT_STREAMS
    cdef long long send_window            # connection window for pyroute's DATA
    cdef long long recv_window            # connection window left for the client's DATA
    cdef long long recv_unacked
    cdef long long peer_initial_window
    cdef int peer_max_frame
    cdef int max_streams                  # ours (entryPoints.*.http2.maxConcurrentStreams)
    cdef int max_header_list              # ours (SETTINGS_MAX_HEADER_LIST_SIZE)
    cdef int unacked_settings             # our SETTINGS the client has not acked
    cdef Decoder decoder
    cdef Encoder encoder
    cdef ResponseParser rparser           # parses each stream's response head back
    cdef object rparser_owner             # the stream whose incomplete head it scanned
    # the last final response head parsed back (H2Stream._head): its bytes, what they gave,
    # and its HPACK block while the encoder's table is as that block left it
    cdef bytes rhead_key
    cdef bint rhead_headreq
    cdef list rhead_fields
    cdef int rhead_framing
    cdef long long rhead_length
    cdef bytes rhead_block
    cdef unsigned long long rhead_gen
    # the last request header block that decoded without touching the decoder's table (all
    # indexed: a client repeating a request), its fields and the HTTP/1.1 head made of them
    cdef bytes rq_block
    cdef unsigned long long rq_gen
    cdef list rq_fields
    cdef bint rq_end
    cdef bytes rq_head                    # None: not made yet (or not cacheable)
    cdef long long rq_declared
    cdef bint rq_head_req
    cdef bint rq_chunked
    cdef bint raw                         # a plain socket: libc recv/send on ``fd``
    cdef bint trusted                     # ep.is_trusted(remote_ip), for every stream
    cdef int encoder_max                  # maxEncoderHeaderTableSize
    cdef int decoder_table                # maxDecoderHeaderTableSize
    # the header block being received (HEADERS + CONTINUATION)
    cdef unsigned int cont_sid            # 0: none
    cdef bytearray block
    cdef int block_flags
    # abuse accounting
    cdef double reset_tokens
    cdef double reset_at
    cdef bint going_away                  # GOAWAY sent: no new streams
    cdef bint peer_going_away
    cdef unsigned int goaway_sid
    cdef bint flush_queued                # in env.turn_end: ``out`` goes at the turn's end
    cdef bint pumping                     # in _pump (see there)
    cdef bint repump
    cdef double read_timeout
    cdef double idle_timeout

    def __init__(self, Env env, ep, sock, bytes remote_ip, bint tls=False,
                 bint registered=False, bytes initial=b""):
        # ``initial``: bytes already read from the socket (none: the preface is still there)
        self.env = env
        self.loop = env.loop
        self.ep = ep
        self.sock = sock
        self.fd = sock.fileno()
        self.tls = tls
        self.raw = not tls                # as ClientConn: plain means a socket.socket
        self.rparser = ResponseParser()
        self.remote_ip = remote_ip
        self.trusted = ep.is_trusted(remote_ip)
        self.remote_port = 0
        self.closed = False
        self.ibuf = bytearray(initial)
        self.out = []
        self.out_size = 0
        self.streams = {}
        self.ready = []
        self.send_window = 65535
        self.recv_window = 65535
        self.peer_initial_window = 65535
        self.peer_max_frame = DEFAULT_FRAME
        self.max_streams = getattr(ep, "h2_max_streams", 250)
        # Go's server: MaxHeaderBytes + 10 typical fields x 32 bytes of overhead
        self.max_header_list = getattr(ep, "max_head", (1 << 20) + 4096) - 4096 + 320
        # maxDecoderHeaderTableSize: announced in our SETTINGS, in force once acked (until
        # then the client's encoder may only assume the default 4096)
        self.decoder_table = getattr(ep, "h2_decoder_table", 4096)
        self.decoder = Decoder(4096, self.max_header_list)
        # maxEncoderHeaderTableSize: the most our encoder keeps, whatever the client allows
        self.encoder_max = getattr(ep, "h2_encoder_table", 4096)
        self.encoder = Encoder(self.encoder_max)
        self.reset_tokens = RESET_BURST
        self.reset_at = env.now
        self.read_timeout = ep.read_timeout
        self.idle_timeout = ep.idle_timeout
        if registered:
            self.loop.handlers[self.fd] = self
        else:
            self.loop.register(self.fd, ET_EVENTS, self)
        # the preface and the client's SETTINGS within the read timeout (Go: ReadTimeout
        # covers the preface), then the idle timeout whenever no stream is open
        self.deadline = self.loop.now + self.read_timeout if self.read_timeout else 0.0
        self.loop.timed.add(self)
        # RFC 9113 §3.4: the server's preface is a SETTINGS frame
        settings = (b"\x00\x03" + _u32(self.max_streams) +
                    b"\x00\x04" + _u32(STREAM_RECV_WINDOW) +
                    b"\x00\x06" + _u32(self.max_header_list))
        if self.decoder_table != 4096:
            settings += b"\x00\x01" + _u32(self.decoder_table)
        self.unacked_settings = 1
        self._queue(_frame(T_SETTINGS, 0, 0, settings))
        self._queue(_frame(T_WINDOW_UPDATE, 0, 0, _u32(CONN_RECV_WINDOW - 65535)))
        self.recv_window = CONN_RECV_WINDOW

    # ---- the worker's view (drain, metrics) ------------------------------------------

    @property
    def keep_alive(self):
        return not self.going_away

    @keep_alive.setter
    def keep_alive(self, value):
        # draining: GOAWAY(NO_ERROR) with the last stream taken; those finish, then close
        if not value and not self.closed:
            self._goaway(NO_ERROR, b"", False)
            self._flush()
            self._maybe_close()

    def is_idle(self):
        # nothing left to finish, for a drain: an HTTP/2 connection is told first (GOAWAY,
        # as Go's Server.Shutdown does to every HTTP/2 connection, idle ones included), so it
        # is never idle before its GOAWAY went out
        return self.closed or (self.going_away and not self.streams and not self.out)

    def on_timeout(self, now):
        if not self.closed:
            if self.preface_seen and self.settings_seen:
                self._goaway(NO_ERROR, b"idle", True)
            else:
                self.close()

    def abort(self):
        self.close()

    # ---- events ----------------------------------------------------------------------

    def on_event(self, int ev):
        if self.closed:
            return
        if ev & EPOLLOUT and self.out:
            self._flush()
            if self.closed:
                return
            self._pump()
        if ev & ~EPOLLOUT or (self.tls and ev & EPOLLOUT and self.sock.read_wants_write):
            self._read()

    cdef void _read(self) except *:
        cdef Env env = self.env
        cdef Py_ssize_t n
        cdef int e
        while not self.closed:
            if self.raw:
                n = c_recv(self.fd, env.rptr, RECV_SIZE, 0)
                if n < 0:
                    e = errno
                    if e == EINTR:
                        continue
                    if e != EAGAIN:
                        self.close()
                        return
                    break
            else:
                try:
                    n = self.sock.recv_into(env.rbuf)
                except WOULD_BLOCK:
                    break
                except OSError:
                    self.close()
                    return
            if n == 0:
                self.close()
                return
            _append(self.ibuf, env.rptr, n)
            self.process()
            if n < RECV_SIZE and not self.tls:
                break
        if not self.closed:
            self._flush_later()

    def start(self):
        """Process bytes handed over with the connection, then whatever is waiting."""
        if self.ibuf:
            self.process()
        if not self.closed:
            self._read()

    # ---- frames in -------------------------------------------------------------------

    cpdef process(self):
        cdef bytearray buf = self.ibuf
        cdef Py_ssize_t pos = 0, n
        cdef unsigned int length, sid
        cdef int ftype, flags
        cdef const unsigned char *p
        if not self.preface_seen:
            if len(buf) < 24:
                if not _PREFACE.startswith(bytes(buf)):
                    self.close()
                return
            if bytes(buf[:24]) != _PREFACE:
                self.close()              # not HTTP/2: nothing to say in its protocol
                return
            self.preface_seen = True
            pos = 24
        n = len(buf)
        try:
            while not self.closed and n - pos >= 9:
                p = <const unsigned char *> (<char *> buf) + pos
                length = (p[0] << 16) | (p[1] << 8) | p[2]
                ftype = p[3]
                flags = p[4]
                sid = ((p[5] & 0x7f) << 24) | (p[6] << 16) | (p[7] << 8) | p[8]
                if length > DEFAULT_FRAME:
                    # we never raise SETTINGS_MAX_FRAME_SIZE above the default
                    self._conn_error(FRAME_SIZE_ERROR, b"frame too large")
                    return
                if n - pos < 9 + length:
                    break
                payload = PyBytes_FromStringAndSize(<char *> p + 9, length)
                pos += 9 + length
                if not self.settings_seen and ftype != T_SETTINGS:
                    # RFC 9113 §3.4: the client's preface ends with SETTINGS
                    self._conn_error(PROTOCOL_ERROR, b"expected SETTINGS")
                    return
                self._frame(ftype, flags, sid, payload)
        finally:
            if self.ibuf is not None and pos:
                del self.ibuf[:pos]

    cdef void _frame(self, int ftype, int flags, unsigned int sid, bytes payload) except *:
        if self.cont_sid and (ftype != T_CONTINUATION or sid != self.cont_sid):
            # RFC 9113 §6.10: nothing may come between HEADERS and its CONTINUATION frames
            self._conn_error(PROTOCOL_ERROR, b"expected CONTINUATION")
            return
        if ftype == T_DATA:
            self._on_data(flags, sid, payload)
        elif ftype == T_HEADERS:
            self._on_headers(flags, sid, payload)
        elif ftype == T_CONTINUATION:
            self._on_continuation(flags, sid, payload)
        elif ftype == T_SETTINGS:
            self._on_settings(flags, sid, payload)
        elif ftype == T_WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif ftype == T_PING:
            if sid != 0:
                self._conn_error(PROTOCOL_ERROR, b"PING on a stream")
            elif len(payload) != 8:
                self._conn_error(FRAME_SIZE_ERROR, b"PING length")
            elif not flags & F_ACK:
                self._control(_frame(T_PING, F_ACK, 0, payload))
        elif ftype == T_RST_STREAM:
            self._on_rst(sid, payload)
        elif ftype == T_PRIORITY:
            if sid == 0:
                self._conn_error(PROTOCOL_ERROR, b"PRIORITY on stream 0")
            elif len(payload) != 5:
                self._stream_error(sid, FRAME_SIZE_ERROR)
            elif (((payload[0] & 0x7f) << 24) | (payload[1] << 16) | (payload[2] << 8)
                  | payload[3]) == sid:
                self._stream_error(sid, PROTOCOL_ERROR)      # §5.3.1: depends on itself
        elif ftype == T_GOAWAY:
            if sid != 0:
                self._conn_error(PROTOCOL_ERROR, b"GOAWAY on a stream")
                return
            self.peer_going_away = True
            self._maybe_close()
        elif ftype == T_PUSH_PROMISE:
            self._conn_error(PROTOCOL_ERROR, b"PUSH_PROMISE from a client")
        # RFC 9113 §5.5: unknown frame types are ignored

    cdef bytes _unpad(self, int flags, bytes payload, unsigned int sid):
        cdef int pad
        if not flags & F_PADDED:
            return payload
        if not payload:
            self._conn_error(FRAME_SIZE_ERROR, b"padding")
            return None
        pad = payload[0]
        if pad >= len(payload):
            # §6.1: padding as long as the payload or longer
            self._conn_error(PROTOCOL_ERROR, b"padding too long")
            return None
        return payload[1:len(payload) - pad]

    cdef void _on_data(self, int flags, unsigned int sid, bytes payload) except *:
        cdef H2Stream st
        cdef long long flow = len(payload)
        if sid == 0:
            self._conn_error(PROTOCOL_ERROR, b"DATA on stream 0")
            return
        if flow > self.recv_window:
            self._conn_error(FLOW_CONTROL_ERROR, b"connection window exceeded")
            return
        self.recv_window -= flow
        data = self._unpad(flags, payload, sid)
        if data is None:
            return
        st = self.streams.get(sid)
        if st is None or st.state != ST_OPEN:
            if sid > self.last_sid:
                self._conn_error(PROTOCOL_ERROR, b"DATA on an idle stream")
                return
            # closed (or half-closed remote): §5.1 STREAM_CLOSED; its bytes still count
            # against the connection window, given back at once
            self._give_back(flow)
            if st is not None and st.state == ST_HALF_CLOSED_REMOTE and not st.ended:
                self._reset(st, STREAM_CLOSED)
            # a stream pyroute already closed (or reset): frames in flight are ignored
            return
        if flow > st.recv_window:
            self._give_back(flow)
            self._reset(st, FLOW_CONTROL_ERROR)
            return
        st.recv_window -= flow
        if flags & F_END_STREAM:
            st.state = ST_HALF_CLOSED_REMOTE
        try:
            st.feed(data, flow, flags & F_END_STREAM)
        except _StreamError as e:
            self._reset(st, e.code)
            return
        if st.conn is None or st.conn_closed:
            # the response already ended: nobody takes the body
            flow = st.inq_flow
            st.inq = []
            st.inq_flow = 0
            self._give_back(flow)
            self._maybe_forget(st)

    cdef void _on_headers(self, int flags, unsigned int sid, bytes payload) except *:
        cdef Py_ssize_t off = 0
        cdef int pad = 0
        if sid == 0:
            self._conn_error(PROTOCOL_ERROR, b"HEADERS on stream 0")
            return
        if flags & F_PADDED:
            if not payload:
                self._conn_error(FRAME_SIZE_ERROR, b"padding")
                return
            pad = payload[0]
            off = 1
        if flags & F_PRIORITY:
            if len(payload) < off + 5:
                self._conn_error(FRAME_SIZE_ERROR, b"HEADERS priority")
                return
            dep = ((payload[off] & 0x7f) << 24) | (payload[off + 1] << 16) | \
                (payload[off + 2] << 8) | payload[off + 3]
            off += 5
            if dep == sid:
                # §5.3.1: a stream depending on itself; the block still goes through HPACK
                flags |= 0x100
        if pad > len(payload) - off:
            self._conn_error(PROTOCOL_ERROR, b"padding too long")
            return
        self.block = bytearray(payload[off:len(payload) - pad])
        self.block_flags = flags
        if flags & F_END_HEADERS:
            self._header_block(sid)
        else:
            self.cont_sid = sid
            self._check_block()

    cdef void _on_continuation(self, int flags, unsigned int sid, bytes payload) except *:
        if not self.cont_sid:
            self._conn_error(PROTOCOL_ERROR, b"CONTINUATION without HEADERS")
            return
        self.block += payload
        if flags & F_END_HEADERS:
            self.cont_sid = 0
            self._header_block(sid)
        else:
            self._check_block()

    cdef void _check_block(self) except *:
        # CVE-2024-27316: an endless header block is never buffered
        if len(self.block) > BLOCK_FACTOR * self.max_header_list:
            self._conn_error(ENHANCE_YOUR_CALM, b"header block too large")

    cdef void _header_block(self, unsigned int sid) except *:
        cdef H2Stream st
        cdef bytes head
        cdef bint end_stream = self.block_flags & F_END_STREAM
        cdef Decoder dec = self.decoder
        cdef unsigned long long gen = dec.generation
        cdef bint repeated = False
        cdef bytes block = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self.block),
                                                     PyByteArray_GET_SIZE(self.block))
        self.block = None
        too_large = False
        if gen == self.rq_gen and self.rq_block is not None and block == self.rq_block:
            # the same block on the same table: the same fields (decoding it changed nothing)
            fields = self.rq_fields
            repeated = True
        else:
            try:
                fields = dec.decode(block)
            except _HeaderListTooLarge:
                fields = None
                too_large = True
            except _HpackError:
                self._conn_error(COMPRESSION_ERROR, b"hpack")
                return
            if dec.generation == gen and fields is not None:
                self.rq_block = block
                self.rq_gen = gen
                self.rq_fields = fields
                self.rq_head = None
            else:
                self.rq_block = None
        st = self.streams.get(sid)
        if st is not None:
            # trailers (RFC 9113 §8.1): HEADERS with END_STREAM on an open stream
            if st.state != ST_OPEN:
                self._reset(st, STREAM_CLOSED)
                return
            if not end_stream or too_large:
                self._reset(st, PROTOCOL_ERROR)
                return
            st.state = ST_HALF_CLOSED_REMOTE
            try:
                st.trailers(fields)
            except _StreamError as e:
                self._reset(st, e.code)
            return
        if sid % 2 == 0:
            self._conn_error(PROTOCOL_ERROR, b"even stream id")      # §5.1.1
            return
        if sid <= self.last_sid:
            self._conn_error(STREAM_CLOSED, b"HEADERS on a closed stream")     # §5.1
            return
        self.last_sid = sid
        if self.going_away:
            return                        # after our GOAWAY: ignored (§6.8)
        if self.block_flags & 0x100:
            self._control(_frame(T_RST_STREAM, 0, sid, _u32(PROTOCOL_ERROR)))
            self._flush_later()
            return
        if self.open_streams >= self.max_streams:
            # Go's server: REFUSED_STREAM while the client may not know the limit yet (our
            # SETTINGS unacked), PROTOCOL_ERROR after
            self._control(_frame(T_RST_STREAM, 0, sid, _u32(
                REFUSED_STREAM if self.unacked_settings else PROTOCOL_ERROR)))
            return
        st = H2Stream.__new__(H2Stream)
        st.h2 = self
        st.trusted = self.trusted
        st.sid = sid
        st.state = ST_HALF_CLOSED_REMOTE if end_stream else ST_OPEN
        st.send_window = self.peer_initial_window
        st.recv_window = STREAM_RECV_WINDOW
        st.counted = True
        self.open_streams += 1
        self.streams[sid] = st
        self.deadline = 0.0               # a stream is open: not idle
        if too_large:
            # Go's server answers a header list over its limit with 431 (the stream only)
            self._local(st, 431)
            return
        if repeated and self.rq_head is not None and end_stream == self.rq_end:
            # the HTTP/1.1 head those fields made, and what it noted on its stream
            head = self.rq_head
            st.declared = self.rq_declared
            st.head_req = self.rq_head_req
            st.chunked = self.rq_chunked
        else:
            try:
                head = _request_head(fields, end_stream, st)
            except _StreamError as e:
                self._reset(st, e.code)
                return
            if head is not None and fields is self.rq_fields:
                self.rq_head = head
                self.rq_end = end_stream
                self.rq_declared = st.declared
                self.rq_head_req = st.head_req
                self.rq_chunked = st.chunked
        if head is None:
            self._local(st, 501)          # CONNECT: not served over HTTP/2 (docs/http2.md)
            return
        conn = ClientConn(self.env, self.ep, self.sock, self.remote_ip, self.tls, False, st)
        conn.remote_port = self.remote_port
        st.conn = conn
        st.inq.append(head)
        conn.on_readable()

    cdef void _local(self, H2Stream st, int status) except *:
        st.rstate = RS_DONE
        st.conn_closed = True
        self._headers(st, [(b":status", str(status).encode()), (b"content-length", b"0")],
                      True)
        self._maybe_forget(st)

    cdef void _on_settings(self, int flags, unsigned int sid, bytes payload) except *:
        cdef Py_ssize_t i
        cdef unsigned int key
        cdef unsigned long long value
        cdef long long delta
        cdef H2Stream st
        if sid != 0:
            self._conn_error(PROTOCOL_ERROR, b"SETTINGS on a stream")
            return
        if flags & F_ACK:
            if payload:
                self._conn_error(FRAME_SIZE_ERROR, b"SETTINGS ack with payload")
                return
            if self.unacked_settings:
                self.unacked_settings -= 1
                if self.decoder_table != 4096:
                    self.decoder.set_max_table_size(self.decoder_table)
            return
        if len(payload) % 6:
            self._conn_error(FRAME_SIZE_ERROR, b"SETTINGS length")
            return
        self.settings_seen = True
        for i in range(0, len(payload), 6):
            key = (payload[i] << 8) | payload[i + 1]
            value = (<unsigned long long> payload[i + 2] << 24) | (payload[i + 3] << 16) | \
                (payload[i + 4] << 8) | payload[i + 5]
            if key == S_HEADER_TABLE_SIZE:
                self.encoder.set_peer_table_size(value)
            elif key == S_ENABLE_PUSH:
                if value > 1:
                    self._conn_error(PROTOCOL_ERROR, b"ENABLE_PUSH")
                    return
            elif key == S_INITIAL_WINDOW_SIZE:
                if value > <unsigned long long> MAX_WINDOW:
                    self._conn_error(FLOW_CONTROL_ERROR, b"INITIAL_WINDOW_SIZE")
                    return
                # §6.9.2: every stream's window moves by the difference
                delta = <long long> value - self.peer_initial_window
                self.peer_initial_window = value
                for st in self.streams.values():
                    st.send_window += delta
                    if st.send_window > MAX_WINDOW:
                        self._conn_error(FLOW_CONTROL_ERROR, b"window overflow")
                        return
                    if delta > 0:
                        self._schedule(st)
            elif key == S_MAX_FRAME_SIZE:
                if value < 16384 or value > 16777215:
                    self._conn_error(PROTOCOL_ERROR, b"MAX_FRAME_SIZE")
                    return
                self.peer_max_frame = value
            # others (MAX_CONCURRENT_STREAMS: pyroute never pushes; MAX_HEADER_LIST_SIZE,
            # advisory) and unknown ones are ignored (§6.5.2)
        self._control(_frame(T_SETTINGS, F_ACK, 0, b""))
        self._pump()

    cdef void _on_window_update(self, unsigned int sid, bytes payload) except *:
        cdef long long inc
        cdef H2Stream st
        if len(payload) != 4:
            self._conn_error(FRAME_SIZE_ERROR, b"WINDOW_UPDATE length")
            return
        inc = ((payload[0] & 0x7f) << 24) | (payload[1] << 16) | (payload[2] << 8) | payload[3]
        if sid == 0:
            if inc == 0:
                self._conn_error(PROTOCOL_ERROR, b"WINDOW_UPDATE of 0")
                return
            self.send_window += inc
            if self.send_window > MAX_WINDOW:
                self._conn_error(FLOW_CONTROL_ERROR, b"connection window overflow")
                return
            for st in self.streams.values():
                if st.pending or st.end_pending:
                    self._schedule(st)
        else:
            st = self.streams.get(sid)
            if st is None:
                if sid > self.last_sid:
                    self._conn_error(PROTOCOL_ERROR, b"WINDOW_UPDATE on an idle stream")
                return                    # closed: ignored (§6.9)
            if inc == 0:
                self._reset(st, PROTOCOL_ERROR)
                return
            st.send_window += inc
            if st.send_window > MAX_WINDOW:
                self._reset(st, FLOW_CONTROL_ERROR)
                return
            self._schedule(st)
        self._pump()

    cdef void _on_rst(self, unsigned int sid, bytes payload) except *:
        cdef H2Stream st
        cdef double now
        if sid == 0:
            self._conn_error(PROTOCOL_ERROR, b"RST_STREAM on stream 0")
            return
        if len(payload) != 4:
            self._conn_error(FRAME_SIZE_ERROR, b"RST_STREAM length")
            return
        if sid > self.last_sid:
            self._conn_error(PROTOCOL_ERROR, b"RST_STREAM on an idle stream")
            return
        st = self.streams.get(sid)
        if st is None:
            return
        if not st.ended:
            # rapid reset (CVE-2023-44487): a token per stream the client cuts short
            now = self.env.now
            self.reset_tokens += (now - self.reset_at) * RESET_RATE
            if self.reset_tokens > RESET_BURST:
                self.reset_tokens = RESET_BURST
            self.reset_at = now
            self.reset_tokens -= 1.0
        self._drop(st, True)
        if self.reset_tokens < 0:
            self._conn_error(ENHANCE_YOUR_CALM, b"too many stream resets")

    # ---- frames out ------------------------------------------------------------------

    cdef void _queue(self, bytes data) except *:
        self.out.append(data)
        self.out_size += len(data)

    cdef void _control(self, bytes frame) except *:
        # SETTINGS/PING acks, RST_STREAM, WINDOW_UPDATE: a client that sends them faster than
        # it reads the answers ends its connection (Go: maxQueuedControlFrames)
        self._queue(frame)
        self.queued_control += 1
        if self.queued_control > MAX_QUEUED_CONTROL:
            self.close()

    cdef void _headers(self, H2Stream st, list fields, bint end) except *:
        cdef bytes block
        cdef int limit = self.peer_max_frame
        cdef Encoder enc = self.encoder
        cdef unsigned long long gen = enc.generation
        if fields is self.rhead_fields:
            # the cached response head: its last block again while the table is as that
            # block left it (an encoding that inserted nothing: all of it indexed)
            if self.rhead_block is not None and gen == self.rhead_gen:
                block = self.rhead_block
            else:
                block = enc.encode(fields)
                if enc.generation == gen:
                    self.rhead_block = block
                    self.rhead_gen = gen
        else:
            block = enc.encode(fields)
        cdef int flags = F_END_STREAM if end else 0
        if len(block) <= limit:
            self._queue(_frame(T_HEADERS, flags | F_END_HEADERS, st.sid, block))
        else:
            self._queue(_frame(T_HEADERS, flags, st.sid, block[:limit]))
            block = block[limit:]
            while len(block) > limit:
                self._queue(_frame(T_CONTINUATION, 0, st.sid, block[:limit]))
                block = block[limit:]
            self._queue(_frame(T_CONTINUATION, F_END_HEADERS, st.sid, block))
        if end:
            self._ended(st)
        self._flush_later()

    cdef void _ended(self, H2Stream st) except *:
        # pyroute's END_STREAM left: the stream is closed once the client's side is too;
        # a client still sending a body is told to stop (RFC 9113 §8.1: RST NO_ERROR)
        st.ended = True
        st.end_pending = False
        if st.counted:
            st.counted = False
            self.open_streams -= 1
        if st.state == ST_OPEN:
            self._control(_frame(T_RST_STREAM, 0, st.sid, _u32(NO_ERROR)))
        st.state = ST_CLOSED
        self._maybe_forget(st)

    cdef void _schedule(self, H2Stream st) except *:
        if not st.scheduled and not st.ended:
            st.scheduled = True
            self.ready.append(st)

    cdef void _pump(self) except *:
        # DATA for the streams that have some, as the windows and the socket allow. Not
        # re-entered: a stream resumed here reads its backend, whose bytes call _pump again
        # (then only noted, and done by this loop), so the C stack stays flat
        cdef list resume
        cdef H2Stream st
        if self.closed:
            return
        if self.pumping:
            self.repump = True
            return
        self.pumping = True
        try:
            while True:
                self.repump = False
                resume = self._pump_once()
                for st in resume:
                    if st.conn is not None and not st.conn_closed and not self.closed:
                        st.conn.sink_drained()
                if not self.repump or self.closed:
                    break
        finally:
            self.pumping = False

    cdef list _pump_once(self):
        # one frame per stream per round (round robin); the streams whose ClientConn may
        # read its backend again
        cdef H2Stream st
        cdef list ready
        cdef list resume = []
        cdef Py_ssize_t n
        cdef bint progress = True
        while self.ready and progress and self.out_size < SOCK_OUT_BOUND:
            progress = False
            ready = self.ready
            self.ready = []
            for st in ready:
                st.scheduled = False
                if st.ended:
                    continue
                n = len(st.pending)
                if n:
                    if n > st.send_window:
                        n = st.send_window
                    if n > self.send_window:
                        n = self.send_window
                    if n > self.peer_max_frame:
                        n = self.peer_max_frame
                    if n <= 0:
                        continue          # waits for WINDOW_UPDATE (schedules it again)
                    last = st.end_pending and n == len(st.pending)
                    # framed straight from the stream's buffer (one copy); with trailers the
                    # END_STREAM goes on their HEADERS frame
                    self._queue(_frame_from(T_DATA, F_END_STREAM if last and
                                            st.rtrailers is None else 0, st.sid,
                                            PyByteArray_AS_STRING(st.pending), n))
                    if n == PyByteArray_GET_SIZE(st.pending):
                        PyByteArray_Resize(st.pending, 0)     # all of it (no slice object)
                    else:
                        del st.pending[:n]
                    st.send_window -= n
                    self.send_window -= n
                    progress = True
                    if last:
                        if st.rtrailers is not None:
                            self._headers(st, st.rtrailers, True)
                        else:
                            self._ended(st)
                        continue
                    if st.pending:
                        self._schedule(st)
                    if st.paused_conn and len(st.pending) < STREAM_OUT_BOUND // 2:
                        st.paused_conn = False
                        resume.append(st)
                elif st.end_pending:
                    progress = True
                    if st.rtrailers is not None:
                        self._headers(st, st.rtrailers, True)
                    else:
                        self._queue(_frame(T_DATA, F_END_STREAM, st.sid, b""))
                        self._ended(st)
        self._flush_later()
        return resume

    cdef inline void _flush_later(self) except *:
        # ``out`` goes at the end of this loop turn (run_loop calls end_turn)
        if not self.flush_queued and self.out and not self.closed:
            self.flush_queued = True
            self.env.turn_end.append(self)

    cdef void end_turn(self) except *:
        # the turn's frames in one send; if the socket took them all, the streams that the
        # bound on ``out`` held back are framed and sent too
        self._flush()
        while not self.closed and not self.out and self.ready:
            self._pump()
            self._flush()
        # what the socket did not take waits for EPOLLOUT (on_event)
        self.flush_queued = False

    cdef void _flush(self) except *:
        cdef Py_ssize_t n, total
        cdef list out = self.out
        cdef bytes data
        if not out or self.closed:
            return
        if self.raw:
            # the frames as they are, in one writev (no joined copy of the bodies)
            n = self._writev(out)
            if n < 0:
                self.close()
                return
            total = self.out_size
        else:
            data = b"".join(out) if len(out) > 1 else out[0]
            total = len(data)
            try:
                n = self.sock.send(data)
            except WOULD_BLOCK:
                n = 0
            except OSError:
                self.close()
                return
        if n == total:
            self.out = []
            self.out_size = 0
            self.queued_control = 0
            if self.going_away:
                self._maybe_close()
            return
        self._drop_sent(n)

    cdef Py_ssize_t _writev(self, list out) except -2:
        # bytes the kernel took (0: it would block); -1: the connection failed
        cdef iovec iov[IOV_BATCH]
        cdef Py_ssize_t i = 0, k, n, batch, sent = 0, m = len(out)
        cdef bytes b
        cdef int e
        while i < m:
            k = 0
            batch = 0
            while i + k < m and k < IOV_BATCH:
                b = <bytes> out[i + k]
                iov[k].iov_base = <void *> PyBytes_AS_STRING(b)
                iov[k].iov_len = PyBytes_GET_SIZE(b)
                batch += PyBytes_GET_SIZE(b)
                k += 1
            n = c_writev(self.fd, iov, <int> k)
            if n < 0:
                e = errno
                if e == EINTR:
                    continue
                return sent if e == EAGAIN else -1
            sent += n
            if n < batch:
                return sent               # a short write: the socket is full
            i += k
        return sent

    cdef void _drop_sent(self, Py_ssize_t n) except *:
        # keep what the socket did not take (the first frame cut where it stopped)
        cdef list out = self.out
        cdef Py_ssize_t i = 0, size
        cdef bytes b
        while n > 0:
            b = <bytes> out[i]
            size = PyBytes_GET_SIZE(b)
            if n < size:
                out[i] = b[n:]
                break
            n -= size
            i += 1
        if i:
            del out[:i]
        size = 0
        for b in out:
            size += PyBytes_GET_SIZE(b)
        self.out_size = size

    # ---- flow control of what the client sends ---------------------------------------

    cdef void _consumed(self, H2Stream st, long long flow) except *:
        # the ClientConn took ``flow`` bytes of this stream: the client may send them again
        st.recv_unacked += flow
        if st.state == ST_OPEN and st.recv_unacked >= STREAM_RECV_WINDOW // 2:
            self._control(_frame(T_WINDOW_UPDATE, 0, st.sid, _u32(st.recv_unacked)))
            st.recv_window += st.recv_unacked
            st.recv_unacked = 0
            # out now: the ClientConn may take the bytes outside this connection's events
            # (its backend drained), and nothing else would send the update
            self._flush()
        self._give_back(flow)

    cdef void _give_back(self, long long flow) except *:
        self.recv_unacked += flow
        if self.recv_unacked >= CONN_RECV_WINDOW // 2:
            self._control(_frame(T_WINDOW_UPDATE, 0, 0, _u32(self.recv_unacked)))
            self.recv_window += self.recv_unacked
            self.recv_unacked = 0
            self._flush_later()

    # ---- errors and teardown ---------------------------------------------------------

    cdef void _stream_error(self, unsigned int sid, int code) except *:
        cdef H2Stream st = self.streams.get(sid)
        if st is not None:
            self._reset(st, code)
        else:
            self._control(_frame(T_RST_STREAM, 0, sid, _u32(code)))

    cdef void _reset(self, H2Stream st, int code) except *:
        if not st.ended:
            self._control(_frame(T_RST_STREAM, 0, st.sid, _u32(code)))
        self._drop(st, False)
        self._flush_later()

    cdef void _drop(self, H2Stream st, bint by_client) except *:
        # the stream ends now (RST either way): its ClientConn is cut (499 for the access
        # log when the client reset it), what it buffered is given back to the window
        cdef ClientConn conn = st.conn
        st.ended = True
        st.end_pending = False
        st.state = ST_CLOSED
        st.pending = bytearray()
        if st.counted:
            st.counted = False
            self.open_streams -= 1
        if st.inq_flow:
            self._give_back(st.inq_flow)
            st.inq_flow = 0
        st.inq = []
        self.streams.pop(st.sid, None)
        if conn is not None and not st.conn_closed:
            st.conn_closed = True
            if by_client and conn.ex is not None:
                conn.ex.status = 499
            conn.close()
        self._idle_check()

    cdef void _maybe_forget(self, H2Stream st) except *:
        if st.ended and st.conn_closed:
            if st.inq_flow:
                self._give_back(st.inq_flow)
                st.inq_flow = 0
            st.inq = []
            self.streams.pop(st.sid, None)
            self._idle_check()

    cdef void _idle_check(self) except *:
        if not self.streams:
            if self.going_away or self.peer_going_away:
                self._maybe_close()
            elif self.idle_timeout and not self.closed:
                self.deadline = self.env.now + self.idle_timeout

    cdef void _maybe_close(self) except *:
        if (self.going_away or self.peer_going_away) and not self.streams and not self.out:
            self.close()

    cdef void _goaway(self, int code, bytes debug, bint close_now) except *:
        if not self.going_away:
            self.going_away = True
            self.goaway_sid = self.last_sid
            self._queue(_frame(T_GOAWAY, 0, 0, _u32(self.last_sid) + _u32(code) + debug))
        if close_now:
            self._flush()
            self.close()

    cdef void _conn_error(self, int code, bytes debug) except *:
        # RFC 9113 §5.4.1: GOAWAY with the error, then close
        self._goaway(code, debug, True)

    def close(self):
        cdef H2Stream st
        if self.closed:
            return
        self.closed = True
        self.deadline = 0.0
        self.loop.timed.discard(self)
        for st in list(self.streams.values()):
            self._drop(st, True)
        self.streams = {}
        self.loop.forget(self.fd)
        self.env.clients.discard(self)
        try:
            self.sock.close()
        except OSError:
            pass
        self.ibuf = None
        self.out = []
