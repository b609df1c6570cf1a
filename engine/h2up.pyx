# cython: language_level=3
"""HTTP/2 to backends (RFC 9113, client side): ``scheme: h2c`` servers with prior knowledge.

Go's transport is the model (golang.org/x/net/http2 ``Transport``, which Traefik uses for h2c):
one connection per server carries many exchanges, each a stream, until the server's
SETTINGS_MAX_CONCURRENT_STREAMS; the next exchange then opens another connection.

Each exchange keeps the HTTP/1.1 face the rest of the proxy knows: the ClientConn (HTTP/1.1
client, or an HTTP/2 stream's ClientConn, engine/h2.pyx) gets an ``UpstreamConn`` as for any
server and writes the request to it as HTTP/1.1 bytes (the forwarder's rewritten head, the
body framed by Content-Length or chunked); ``H2UpStream`` turns them into HEADERS (the
pseudo-headers from the request line and Host, connection-specific fields dropped, ``te:
trailers`` kept) and DATA frames, and the response frames back into an HTTP/1.1 response
(chunked, so that response trailers such as gRPC's ``grpc-status`` arrive as the chunked
trailer section). So routing, middlewares, timeouts, retries and observation are unchanged.

Bounded both ways: request DATA waits for the server's windows and the ClientConn is told to
stop reading until it went out (``on_upstream_drained``); response DATA is given back to the
server (WINDOW_UPDATE) only once the ClientConn took it, so a client that does not read stops
its stream at the stream window (4 MiB, Go's transportDefaultStreamFlow).

The socket under each connection is an ordinary ``UpstreamConn`` (``transport=True``): the dial
(DNS, Go's dialParallel, dial timeout) and its errors are the HTTP/1.1 path's.
"""
cimport cython
from http import HTTPStatus

from pyroute._engine.conn cimport (Env, Pool, UpstreamConn, UpstreamUser, UpstreamStream,
                                   H2Dialer, ClientConn)
from pyroute._engine.exchange cimport Exchange
from binascii import a2b_base64, b2a_base64, Error as _B64Error
from pyroute._engine.hpack cimport Decoder, Encoder
from pyroute._engine.hpack import HpackError, HeaderListTooLarge

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types, flags, settings: engine/h2frame.pxd
from pyroute._engine.h2frame cimport *


cdef enum:
    E_NO_ERROR = 0x0
    E_PROTOCOL_ERROR = 0x1
    E_FLOW_CONTROL_ERROR = 0x3
    E_FRAME_SIZE_ERROR = 0x6
    E_REFUSED_STREAM = 0x7
    E_CANCEL = 0x8
    E_COMPRESSION_ERROR = 0x9


# the request's HTTP/1.1 bytes, as the stream parses them
cdef enum:
    Q_HEAD = 0
    Q_LEN = 1           # Content-Length body
    Q_SIZE = 2          # a chunk-size line
    Q_CHUNK = 3         # chunk data
    Q_CRLF = 4          # the CRLF after chunk data
    Q_TRAILER = 5       # trailer lines
    Q_DONE = 6

cdef long long MAX_WINDOW = 0x7fffffff
cdef int DEFAULT_FRAME = 16384
# Go's transport: transportDefaultStreamFlow, transportDefaultConnFlow, the 100 streams it
# assumes until the server's SETTINGS (initialMaxConcurrentStreams), and its header list
# limit (10 MiB, net/http's default MaxResponseHeaderBytes)
cdef long long STREAM_WINDOW = 4 << 20
cdef long long CONN_WINDOW = 1 << 30
cdef int INITIAL_MAX_STREAMS = 100
cdef int MAX_HEADER_LIST = 10 << 20
cdef unsigned int MAX_SID = 0x7fffffff
# Go's RoundTripOpt replays a request the server did not process (retry <= 6: seven times)
cdef int MAX_REPLAYS = 7

cdef frozenset _HOP = frozenset([b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade", b"host", b"te"])
cdef dict _REASONS = {int(s): (b"%d " % int(s)) + s.phrase.encode() for s in HTTPStatus}
cdef object _HpackError = HpackError
cdef object _HeaderListTooLarge = HeaderListTooLarge


cdef inline bytes _frame(int ftype, int flags, unsigned int sid, bytes payload):
    cdef Py_ssize_t n = len(payload)
    return bytes((n >> 16 & 0xff, n >> 8 & 0xff, n & 0xff, ftype, flags,
                  sid >> 24 & 0x7f, sid >> 16 & 0xff, sid >> 8 & 0xff, sid & 0xff)) + payload


cdef inline bytes _u32(unsigned long long v):
    return bytes((v >> 24 & 0xff, v >> 16 & 0xff, v >> 8 & 0xff, v & 0xff))


cdef bytes _status_line(int status):
    reason = _REASONS.get(status)
    return b"HTTP/1.1 " + (<bytes> reason if reason is not None else b"%d " % status) + b"\r\n"


@cython.final
cdef class H2UpStream(UpstreamStream):
    """One exchange on an ``H2Upstream`` connection, behind an ``UpstreamConn``."""
    cdef UpstreamConn up
    cdef H2Upstream conn
    cdef public unsigned int sid          # 0 until its HEADERS went out
    cdef bint scheme_https
    # request side
    cdef int qstate
    cdef bytearray qbuf                   # a partial head or chunk line
    cdef long long left                   # body bytes left of Content-Length / the chunk
    cdef int crlf
    cdef list qtrailers                   # request trailers (chunked), sent as HEADERS
    cdef bytearray pending                # DATA payload waiting for the windows
    cdef bint end_pending                 # the request ends after ``pending``
    cdef bint req_done                    # END_STREAM sent
    cdef bint blocked                     # send() said False: on_upstream_drained owed
    cdef long long send_window
    cdef list wfields                     # HEADERS waiting for a free stream slot, or None
    cdef bint wend
    # response side
    cdef bint got_final
    cdef bint rchunked                    # the HTTP/1.1 response is chunked
    cdef bint head_req
    cdef bint resp_done                   # END_STREAM received
    cdef list held                        # (bytes, flow) held while the ClientConn pauses
    cdef long long recv_window
    cdef long long unacked                # flow handed on, not yet given back
    cdef bint gone                        # forgotten by the connection (reset, cancelled)
    # grpcWeb (pyroute/middlewares/grpcweb.py marks the exchange): 1 grpc-web, 2 -text
    cdef int web
    cdef bytearray b64in                  # -text: request base64 not yet a whole quantum
    cdef bint b64end                      # -text: padding seen (Go's decoder stops there)
    cdef set head_names                   # response head names (lower): not trailers again
    # replays (Go's shouldRetryRequest): a stream the server refused or left above a GOAWAY's
    # last stream id goes again, on another connection, while nothing of it is lost
    cdef list rfields                     # its HEADERS' fields, kept for a replay
    cdef bint rend                        # those HEADERS ended the stream
    cdef bint body_sent                   # request DATA (or trailers) went out: no replay
    cdef bint answered                    # response bytes went to the ClientConn: no replay
    cdef int replays
    cdef object timer                     # a replay's backoff; the stream is on no connection

    def __cinit__(self):
        self.qbuf = bytearray()
        self.pending = bytearray()
        self.held = []
        self.recv_window = STREAM_WINDOW

    # ---- the UpstreamConn's side (UpstreamStream) -------------------------------------

    cdef bint send(self, bytes data) except -1:
        cdef H2Upstream conn = self.conn
        if conn is None:
            # waiting for a replay: the body is kept as it comes (the head was parsed before)
            if not self.gone:
                self._body(data)
                self.blocked = True
                self.up.out = b""
            return self.gone
        if self.gone or conn.dead:
            return True                   # reset meanwhile: the bytes have nowhere to go
        if self.qstate == Q_HEAD:
            self.qbuf += data
            i = self.qbuf.find(b"\r\n\r\n")
            if i < 0:
                return True
            rest = bytes(self.qbuf[i + 4:])
            self._headers(bytes(self.qbuf[:i]))
            self.qbuf = bytearray()
            if rest:
                self._body(rest)
        else:
            self._body(data)
        conn._pump(self)
        conn._flush()
        if self.gone or conn.dead:
            return True
        if self.pending or not self.sid or conn.t.out is not None:
            self.blocked = True
            self.up.out = b""             # as a socket's unsent bytes: the ClientConn's
            return False                  # spooled-body pump waits for on_upstream_drained
        return True

    cdef void deliver(self) except *:
        cdef UpstreamConn up = self.up
        cdef H2Upstream conn = self.conn          # a reference: delivering may end us both
        cdef UpstreamUser client
        if conn is None:
            return                        # waiting for a replay: nothing held
        while self.held and not up.paused and not up.closed:
            data, flow = self.held.pop(0)
            client = up.client
            if client is None:
                return
            self._credit(flow)
            client.on_upstream_data(up, data)
        conn._flush()

    cdef void cancel(self) except *:
        # the UpstreamConn closed: the exchange is over (response read whole) or dropped
        # (the client went away, a timeout): an unfinished stream is reset (Go: CANCEL)
        cdef H2Upstream conn = self.conn
        if self.gone:
            return
        if conn is None:
            # dropped while waiting for a replay
            self.gone = True
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            return
        if not conn.dead and not (self.resp_done and self.req_done) and self.sid:
            conn._queue(_frame(T_RST_STREAM, 0, self.sid, _u32(E_CANCEL)))
        conn._forget(self)
        conn._flush()

    # ---- the request ------------------------------------------------------------------

    cdef void _headers(self, bytes head) except *:
        # the forwarder's HTTP/1.1 head (well-formed: pyroute wrote it) -> HEADERS
        cdef list lines
        cdef list fields = []
        cdef bytes name, value, line
        cdef bytes authority = None
        cdef long long length = -1
        cdef bint chunked = False
        cdef bint has_te = False
        cdef UpstreamUser user = self.up.client
        cdef Exchange ex
        cdef H2Upstream conn = self.conn
        if isinstance(user, ClientConn):
            ex = (<ClientConn> user).ex
            if ex is not None:
                self.web = ex.grpcweb
        if conn.qhead is not None and self.web == conn.qweb and head == conn.qhead:
            # the connection's last head again (an exchange repeating a request): the same
            # fields and framing, unparsed
            self.head_req = conn.qhead_req
            self.qstate = conn.qstate
            self.left = conn.qleft
            if self.web:
                self.b64in = bytearray()
            conn._start(self, conn.qfields, self.qstate == Q_DONE)
            return
        lines = head.split(b"\r\n")
        method, target, _ = (<bytes> lines[0]).split(b" ", 2)
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip(b" \t")
            if name in _HOP:
                if name == b"host":
                    authority = value
                elif name == b"transfer-encoding":
                    chunked = True
                elif name == b"te" and b"trailers" in value.lower():
                    fields.append((b"te", b"trailers"))     # the one TE value HTTP/2 allows
                    has_te = True
                continue
            if name == b"content-length":
                length = int(value)
                if self.web:
                    # hackIntoNormalGrpcRequest: the HTTP/1.1 length is not the DATA's
                    continue
            elif self.web and name == b"content-type":
                # application/grpc-web(-text)(+proto) -> application/grpc(+proto), the first
                # occurrence only (strings.Replace n=1)
                value = value.replace(b"application/grpc-web-text" if self.web == 2
                                      else b"application/grpc-web", b"application/grpc", 1)
            fields.append((name, value))
        if self.web:
            self.b64in = bytearray()
            if not has_te:
                fields.append((b"te", b"trailers"))     # what a gRPC server expects
        self.head_req = method == b"HEAD"
        if method == b"CONNECT":
            pseudo = [(b":method", method), (b":authority", target)]
        else:
            pseudo = [(b":method", method),
                      (b":scheme", b"https" if self.scheme_https else b"http"),
                      (b":authority", authority or b""), (b":path", target)]
        if chunked:
            self.qstate = Q_SIZE
        elif length > 0:
            self.qstate = Q_LEN
            self.left = length
        else:
            self.qstate = Q_DONE
        fields = pseudo + fields
        conn.qhead = head
        conn.qweb = self.web
        conn.qfields = fields
        conn.qhead_req = self.head_req
        conn.qstate = self.qstate
        conn.qleft = self.left
        conn.qblock = None
        conn._start(self, fields, self.qstate == Q_DONE)

    cdef void _body(self, bytes data) except *:
        cdef Py_ssize_t pos = 0, n = len(data), take, i
        cdef bytes line
        while pos < n and self.qstate != Q_DONE:
            if self.qstate == Q_LEN or self.qstate == Q_CHUNK:
                take = n - pos
                if take > self.left:
                    take = self.left
                if self.web == 2:
                    self._unbase64(data[pos:pos + take])
                    if self.gone:
                        return
                else:
                    self.pending += data[pos:pos + take]
                self.left -= take
                pos += take
                if self.left == 0:
                    if self.qstate == Q_LEN:
                        self.qstate = Q_DONE
                    else:
                        self.qstate = Q_CRLF
                        self.crlf = 2
            elif self.qstate == Q_CRLF:
                take = n - pos
                if take > self.crlf:
                    take = self.crlf
                self.crlf -= take
                pos += take
                if self.crlf == 0:
                    self.qstate = Q_SIZE
            else:
                i = data.find(b"\n", pos)
                if i < 0:
                    self.qbuf += data[pos:]
                    break
                line = (bytes(self.qbuf) + data[pos:i]).rstrip(b"\r")
                self.qbuf = bytearray()
                pos = i + 1
                if self.qstate == Q_SIZE:
                    self.left = int(line.split(b";", 1)[0].strip(), 16)
                    self.qstate = Q_CHUNK if self.left else Q_TRAILER
                elif line:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name not in _HOP and name != b"content-length":
                        if self.qtrailers is None:
                            self.qtrailers = []
                        self.qtrailers.append((name, value.strip(b" \t")))
                else:
                    self.qstate = Q_DONE
        if self.qstate == Q_DONE:
            self.end_pending = True

    cdef void _unbase64(self, bytes data) except *:
        # grpc-web-text request body: Go's base64.NewDecoder(StdEncoding) over the stream
        # (CR/LF ignored, whole 4-character quanta decoded as they come, nothing after the
        # padding); bad base64 fails the exchange (the request body read fails: 502)
        cdef Py_ssize_t n
        if b"\r" in data or b"\n" in data:
            data = data.replace(b"\r", b"").replace(b"\n", b"")
        self.b64in += data
        n = len(self.b64in) & ~3
        if n == 0:
            return
        if self.b64end:
            self._fail(502)
            return
        chunk = bytes(self.b64in[:n])
        del self.b64in[:n]
        try:
            self.pending += a2b_base64(chunk, strict_mode=True)
        except _B64Error:
            self._fail(502)
            return
        if chunk[n - 1] == 61:            # "=": the end of the encoded data
            self.b64end = True

    # ---- the response -----------------------------------------------------------------

    cdef void _credit(self, long long flow) except *:
        # ``flow`` bytes of DATA were handed on: given back to the server in batches
        cdef H2Upstream conn = self.conn
        if flow <= 0:
            return
        conn._credit(flow)
        if self.resp_done or self.gone:
            return
        self.unacked += flow
        if self.unacked >= STREAM_WINDOW // 4:
            conn._queue(_frame(T_WINDOW_UPDATE, 0, self.sid, _u32(self.unacked)))
            self.recv_window += self.unacked
            self.unacked = 0

    cdef void _emit(self, bytes data, long long flow) except *:
        cdef UpstreamConn up = self.up
        cdef UpstreamUser client = up.client
        self.answered = True
        if self.held or up.paused or client is None:
            self.held.append((data, flow))
            return
        self._credit(flow)
        client.on_upstream_data(up, data)

    cdef void _fail(self, int status) except *:
        # the exchange fails: on its connection as a stream error, else (waiting for a
        # replay) here
        cdef UpstreamConn up = self.up
        cdef UpstreamUser client = up.client
        if self.conn is not None:
            self.conn._stream_error(self, status)
            return
        if self.gone:
            return
        self.gone = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        up.stream = None
        up.close()
        if client is not None:
            client.on_upstream_error(up, status)

    cdef void _replay(self) except *:
        # off its connection (H2Upstream._detach), not processed by the server: sent again
        # as Go's RoundTripOpt does — when the request can be sent whole once more (no body
        # bytes out yet, nothing of a response relayed), the first replay at once, the later
        # ones after 1 s, 2 s, 4 s... (time.Second * time.Duration(2^(retry-1)): the 10%
        # jitter is truncated away), seven at most; else the exchange fails with 502
        cdef double delay
        self.conn = None
        if self.gone or self.answered or self.body_sent or self.replays >= MAX_REPLAYS \
                or self.up.closed:
            self._fail(502)
            return
        self.replays += 1
        self.sid = 0
        self.req_done = False
        self.resp_done = False
        self.recv_window = STREAM_WINDOW
        self.unacked = 0
        if self.replays == 1:
            self._resume()
            return
        delay = <double> (1 << (self.replays - 2))
        self.timer = self.up.env.loop.call_later(delay, self._resume)

    def _resume(self):
        # the replay's turn: a connection that can take it (or a new one), its HEADERS
        # again, its body as far as the windows go
        cdef H2Upstream conn
        cdef UpstreamConn up = self.up
        self.timer = None
        if self.gone or up.closed:
            return
        owner = (<H2Pool> up.pool.h2)
        conn = owner._pick(up.env)
        conn.attach(self)
        if self.rfields is not None:
            conn._start(self, self.rfields, self.rend)
            conn._pump(self)
        conn._unblock()

    cdef void on_headers(self, list fields, bint end) except *:
        cdef bytes name, value
        cdef list out
        cdef int status = 0
        cdef bint has_length = False
        if self.got_final:
            # trailers: the chunked trailer section (gRPC's grpc-status, grpc-message)
            self.resp_done = True
            if self.web:
                self._web_trailers(fields)
                return
            if self.rchunked:
                out = [b"0\r\n"]
                for name, value in fields:
                    if name[:1] != b":":
                        out.append(name + b": " + value + b"\r\n")
                out.append(b"\r\n")
                self._emit(b"".join(out), 0)
            return
        out = [None]
        for name, value in fields:
            if name == b":status":
                status = int(value)
            elif self.web:
                if name[:1] == b":" or name == b"trailer" or name == b"content-length":
                    continue              # prepareHeaders: Trailer skipped; length: re-framed
                if name == b"content-type":
                    value = value.replace(b"application/grpc", b"application/grpc-web-text"
                                          if self.web == 2 else b"application/grpc-web", 1)
                if self.head_names is None:
                    self.head_names = set()
                self.head_names.add(name)
                out.append(_canonical(name) + b": " + value + b"\r\n")
            elif name[:1] != b":":
                if name == b"content-length":
                    has_length = True
                out.append(name + b": " + value + b"\r\n")
        if status < 100 or status > 999:
            self.conn._stream_error(self, 502)
            return
        out[0] = _status_line(status)
        if status < 200:
            out.append(b"\r\n")           # 100 Continue, 103 Early Hints
            self._emit(b"".join(out), 0)
            return
        self.got_final = True
        if self.web and not self.head_req and status != 204 and status != 304:
            # Go's server sends the wrapped response chunked (flushed, no length); a
            # trailers-only answer (END_STREAM on the head) has an empty body: its
            # grpc-status is in the head and no trailer frame follows (nothing left over)
            out.append(b"transfer-encoding: chunked\r\n\r\n")
            self.rchunked = True
            if end:
                self.resp_done = True
                out.append(b"0\r\n\r\n")
            self._emit(b"".join(out), 0)
            return
        if end:
            self.resp_done = True
            if not has_length and not self.head_req and status != 204 and status != 304:
                out.append(b"content-length: 0\r\n")
        elif not has_length and not self.head_req and status != 204 and status != 304:
            out.append(b"transfer-encoding: chunked\r\n")
            self.rchunked = True
        out.append(b"\r\n")
        self._emit(b"".join(out), 0)

    cdef void on_data(self, bytes data, long long flow, bint end) except *:
        if not self.got_final:
            self.conn._stream_error(self, 502)
            return
        if end:
            self.resp_done = True
        if self.web == 2 and data:
            # base64ResponseWriter: each piece relayed (Go's proxy flushes every write of a
            # response without a length) is encoded and closed, so padded parts follow
            data = b2a_base64(data, newline=False)
        if self.rchunked:
            if data:
                data = b"%x\r\n" % len(data) + data + (b"\r\n0\r\n\r\n" if end else b"\r\n")
            elif end:
                data = b"0\r\n\r\n"
        if data or flow:
            self._emit(data, flow)

    cdef void _web_trailers(self, list fields) except *:
        # copyTrailersToPayload: the trailers (names lower-case, sorted; those already in the
        # head skipped) as http.Header.Write writes them, behind a 0x80 frame header; none
        # left: no frame
        cdef dict by_name = {}
        cdef bytes name, value, body
        cdef list block = []
        for name, value in fields:
            if name[:1] == b":" or name == b"trailer" or (
                    self.head_names is not None and name in self.head_names):
                continue
            by_name.setdefault(name, []).append(
                value.replace(b"\r\n", b" ").replace(b"\n", b" ").replace(b"\r", b" ")
                .strip(b" \t"))
        for name in sorted(by_name):
            for value in by_name[name]:
                block.append(name + b": " + value + b"\r\n")
        body = b"".join(block)
        if body:
            body = b"\x80" + _u32(len(body)) + body
            if self.web == 2:
                body = b2a_base64(body, newline=False)
            body = b"%x\r\n" % len(body) + body + b"\r\n"
        if self.rchunked:
            self._emit(body + b"0\r\n\r\n", 0)


cdef bytes _canonical(bytes name):
    # Go's http.CanonicalHeaderKey (the wrapper's keyCase): the first letter and each one
    # after a hyphen upper case
    return b"-".join([p[:1].upper() + p[1:] for p in name.split(b"-")])


@cython.final
cdef class H2Upstream(UpstreamUser):
    """One HTTP/2 connection to a server; the UpstreamUser of its socket (``t``)."""
    cdef Env env
    cdef Pool pool
    cdef H2Pool owner
    cdef public UpstreamConn t
    cdef dict streams                     # sid -> H2UpStream
    cdef list attached                    # streams whose HEADERS are not out yet
    cdef list waiting                     # of those, the ones waiting for a stream slot
    cdef bint settings_seen               # the server's first SETTINGS came
    cdef public int active                # streams attached (count against the server's limit)
    cdef unsigned int next_sid
    cdef public bint dead
    cdef public bint goaway               # no new streams (GOAWAY, ids spent)
    cdef list out
    cdef bytearray ibuf
    cdef Decoder decoder
    cdef Encoder encoder
    cdef public int peer_max_streams
    cdef long long peer_initial_window
    cdef int peer_max_frame
    cdef long long send_window
    cdef long long recv_window
    cdef long long unacked
    cdef unsigned int cont_sid            # a header block continues on this stream (0: none)
    cdef int cont_flags
    cdef bytearray block
    cdef bint scheme_https
    # forwardingTimeouts.readIdleTimeout / pingTimeout (Go's ReadIdleTimeout, PingTimeout):
    # no frame for ``read_idle`` seconds -> a PING; no answer within ``ping_timeout`` -> the
    # connection is closed (its exchanges fail)
    cdef double read_idle
    cdef double ping_timeout
    cdef double last_read
    cdef double ping_deadline             # a health PING is out until then; 0: none
    cdef object timer
    # the last request head turned into fields (H2UpStream._headers), what it gave, and its
    # HPACK block while the encoder's table is as that block left it
    cdef bytes qhead
    cdef int qweb
    cdef list qfields
    cdef bint qhead_req
    cdef int qstate
    cdef long long qleft
    cdef bytes qblock
    cdef unsigned long long qgen

    def __init__(self, Env env, Pool pool, H2Pool owner, UpstreamConn t=None):
        self.env = env
        self.pool = pool
        self.owner = owner
        self.streams = {}
        self.attached = []
        self.waiting = []
        self.next_sid = 1
        self.out = []
        self.ibuf = bytearray()
        self.decoder = Decoder(4096, MAX_HEADER_LIST)
        self.encoder = Encoder(4096)
        self.peer_max_streams = INITIAL_MAX_STREAMS
        self.peer_initial_window = 65535
        self.peer_max_frame = DEFAULT_FRAME
        self.send_window = 65535
        self.recv_window = CONN_WINDOW
        self.scheme_https = pool.ssl_ctx is not None
        # the preface, Go's SETTINGS (no push, 4 MiB stream window, the header list limit)
        # and the connection window raised to 1 GiB, queued before the dial is done
        self.out.append(PREFACE + _frame(T_SETTINGS, 0, 0,
                                         b"\x00\x02" + _u32(0)
                                         + b"\x00\x04" + _u32(STREAM_WINDOW)
                                         + b"\x00\x06" + _u32(MAX_HEADER_LIST))
                        + _frame(T_WINDOW_UPDATE, 0, 0, _u32(CONN_WINDOW - 65535)))
        # ``t``: a connected TLS socket whose ALPN picked h2 (H2Pool.adopt); else one dialed
        self.t = t if t is not None else UpstreamConn(env, pool, True)
        self.t.client = self
        self._flush()
        self.read_idle = owner.read_idle
        self.ping_timeout = owner.ping_timeout
        if self.read_idle > 0:
            self.last_read = env.loop.now
            self.timer = env.loop.call_later(self.read_idle, self._tick)

    def _tick(self):
        # the health check of Go's http2 transport (healthCheck): a PING after read_idle
        # without a frame, and the connection closed when its ACK does not come in time
        cdef double now = self.env.loop.now
        self.timer = None
        if self.dead:
            return
        if self.ping_deadline:
            if now >= self.ping_deadline:
                self._die(502)
                return
            self.timer = self.env.loop.call_later(self.ping_deadline - now, self._tick)
            return
        if now - self.last_read >= self.read_idle and not self.t.connecting:
            self._queue(_frame(T_PING, 0, 0, b"pyroute!"))
            self._flush()
            self.ping_deadline = now + self.ping_timeout
            self.timer = self.env.loop.call_later(self.ping_timeout, self._tick)
            return
        self.timer = self.env.loop.call_later(
            max(0.001, self.last_read + self.read_idle - now), self._tick)

    cdef bint usable(self):
        return not self.dead and not self.goaway and self.active < self.peer_max_streams

    cdef void attach(self, H2UpStream st) except *:
        st.conn = self
        st.scheme_https = self.scheme_https
        st.send_window = self.peer_initial_window
        self.active += 1
        if st.rfields is None:
            self.attached.append(st)      # (a replay's head is known: _start follows)
        if not self.t.connecting:
            self.t.deadline = 0.0         # not idle (a dial keeps its deadline)
        if st.up.connecting:
            st.up.connecting = self.t.connecting
            if st.replays and not self.t.connecting and st.up.client is not None:
                # a replay from a connection still dialing onto one that is up
                st.up.client.on_upstream_connected(st.up)

    # ---- output -----------------------------------------------------------------------

    cdef void _queue(self, bytes frame) except *:
        self.out.append(frame)

    cdef void _flush(self) except *:
        if not self.out or self.dead:
            return
        data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
        self.out = []
        self.t.write(data)                # an error reaches on_upstream_error

    cdef void _start(self, H2UpStream st, list fields, bint end) except *:
        # the stream's head is known: its HEADERS go now, or once a stream slot is free
        # (the server's SETTINGS_MAX_CONCURRENT_STREAMS; until its SETTINGS came, one stream
        # at a time, so that a burst at dial time is never refused). Its body waits with it:
        # send() says False, so the ClientConn reads no more of it meanwhile.
        try:
            self.attached.remove(st)
        except ValueError:
            pass
        st.rfields = fields
        st.rend = end
        if self.waiting or len(self.streams) >= (self.peer_max_streams if self.settings_seen
                                                 else 1):
            st.wfields = fields
            st.wend = end
            self.waiting.append(st)
            return
        self._open(st, fields, end)

    cdef void _slots(self) except *:
        # streams left the table or the limit changed: waiting streams go, in order
        cdef H2UpStream st
        cdef list fields
        cdef bint opened = False
        while self.waiting and not self.dead and len(self.streams) < (
                self.peer_max_streams if self.settings_seen else 1):
            st = self.waiting.pop(0)
            fields = st.wfields
            st.wfields = None
            self._open(st, fields, st.wend)
            self._pump(st)
            st.blocked = True             # its ClientConn hears on_upstream_drained
            opened = True
        if opened:
            self._unblock()

    cdef void _open(self, H2UpStream st, list fields, bint end) except *:
        # the stream's HEADERS (and CONTINUATIONs): its id is the next one, now
        cdef bytes block
        cdef Py_ssize_t pos, n, step = self.peer_max_frame
        cdef int flags
        cdef unsigned long long gen
        st.sid = self.next_sid
        self.next_sid += 2
        if self.next_sid > MAX_SID:
            self.goaway = True            # ids spent: new exchanges take a new connection
            self.owner._retire(self)
        self.streams[st.sid] = st
        gen = self.encoder.generation
        if fields is self.qfields:
            # the cached head: its block again while the table is as that block left it
            if self.qblock is not None and gen == self.qgen:
                block = self.qblock
            else:
                block = self.encoder.encode(fields)
                if self.encoder.generation == gen:
                    self.qblock = block
                    self.qgen = gen
        else:
            block = self.encoder.encode(fields)
        n = len(block)
        flags = F_END_STREAM if end else 0
        if end:
            st.req_done = True
        if n <= step:
            self._queue(_frame(T_HEADERS, flags | F_END_HEADERS, st.sid, block))
            return
        self._queue(_frame(T_HEADERS, flags, st.sid, block[:step]))
        pos = step
        while pos < n:
            self._queue(_frame(T_CONTINUATION, F_END_HEADERS if pos + step >= n else 0,
                               st.sid, block[pos:pos + step]))
            pos += step

    cdef void _pump(self, H2UpStream st) except *:
        # the stream's DATA, as far as both windows and the server's frame size allow
        cdef Py_ssize_t n
        cdef bytes chunk
        cdef list trailers
        if st.gone or st.req_done or not st.sid:
            return
        while st.pending:
            n = len(st.pending)
            if n > st.send_window:
                n = st.send_window
            if n > self.send_window:
                n = self.send_window
            if n > self.peer_max_frame:
                n = self.peer_max_frame
            if n <= 0:
                return
            chunk = bytes(st.pending[:n])
            del st.pending[:n]
            st.body_sent = True
            st.send_window -= n
            self.send_window -= n
            self._queue(_frame(T_DATA, F_END_STREAM if st.end_pending and not st.pending
                               and st.qtrailers is None else 0, st.sid, chunk))
            if st.end_pending and not st.pending and st.qtrailers is None:
                st.req_done = True
                return
        if st.end_pending:
            st.req_done = True
            if st.qtrailers is not None:
                st.body_sent = True
                trailers = st.qtrailers
                st.qtrailers = None
                self._queue(_frame(T_HEADERS, F_END_STREAM | F_END_HEADERS, st.sid,
                                   self.encoder.encode(trailers)))
            else:
                self._queue(_frame(T_DATA, F_END_STREAM, st.sid, b""))

    cdef void _credit(self, long long flow) except *:
        self.unacked += flow
        if self.unacked >= CONN_WINDOW // 4:
            self._queue(_frame(T_WINDOW_UPDATE, 0, 0, _u32(self.unacked)))
            self.recv_window += self.unacked
            self.unacked = 0

    cdef void _unblock(self) except *:
        # windows opened or the socket drained: streams that were told to wait go on
        cdef H2UpStream st
        cdef UpstreamUser client
        for st in list(self.streams.values()):
            if st.pending:
                self._pump(st)
        self._flush()
        if self.dead or self.t.out is not None:
            return
        for st in list(self.streams.values()):
            if st.blocked and not st.pending and not st.gone and st.sid:
                st.blocked = False
                st.up.out = None
                client = st.up.client
                if client is not None:
                    client.on_upstream_drained(st.up)

    cdef void _forget(self, H2UpStream st) except *:
        if st.gone:
            return
        st.gone = True
        st.pending = bytearray()
        st.held = []
        self._detach(st)
        self._idle()

    cdef void _detach(self, H2UpStream st) except *:
        # the stream leaves this connection's tables (ended, or to be replayed elsewhere)
        if st.sid:
            self.streams.pop(st.sid, None)
            self._slots()
        elif st.wfields is not None:
            st.wfields = None
            self.waiting.remove(st)
        else:
            try:
                self.attached.remove(st)
            except ValueError:
                pass
        self.active -= 1

    cdef void _idle(self) except *:
        if self.active == 0:
            if self.goaway:
                self._close_quietly()
            elif self.pool.idle_timeout and not self.dead:
                # idleConnTimeout: the socket's own timer closes an idle connection
                self.t.deadline = self.env.now + self.pool.idle_timeout

    cdef void _stream_error(self, H2UpStream st, int status) except *:
        # a response the proxy cannot use (or a reset): the exchange fails with ``status``
        cdef UpstreamConn up = st.up
        cdef UpstreamUser client = up.client
        if st.gone:
            return
        if st.sid and not self.dead and not (st.resp_done and st.req_done):
            self._queue(_frame(T_RST_STREAM, 0, st.sid, _u32(E_CANCEL)))
        self._forget(st)
        up.stream = None                  # closing it resets nothing more
        up.close()
        if client is not None:
            client.on_upstream_error(up, status)

    cdef void _die(self, int status) except *:
        # the connection is over: every exchange on it fails
        cdef H2UpStream st
        cdef UpstreamConn up
        cdef UpstreamUser client
        if self.dead:
            return
        self.dead = True
        self.owner._retire(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        streams = list(self.streams.values()) + self.attached + self.waiting
        self.streams = {}
        self.attached = []
        self.waiting = []
        self.t.client = None
        self.t.close()
        for st in streams:
            st.gone = True
            up = st.up
            client = up.client
            up.stream = None
            up.close()
            if client is not None:
                client.on_upstream_error(up, status)

    cdef void _close_quietly(self) except *:
        if not self.dead:
            self._flush()
            self._die(502)

    cdef void _conn_error(self, int code) except *:
        self._queue(_frame(T_GOAWAY, 0, 0, _u32(self.next_sid - 2 if self.next_sid > 1 else 0)
                           + _u32(code)))
        self._flush()
        self._die(502)

    # ---- the socket's side (UpstreamUser) ---------------------------------------------

    cdef bint body_pending(self):
        return False

    cdef void on_upstream_connected(self, UpstreamConn up) except *:
        cdef H2UpStream st
        cdef UpstreamUser client
        if self.t.tls and self.t.sock.selected_alpn_protocol() != "h2":
            # an https server that no longer picks h2: HTTP/1.1 from now on
            self.owner.learned = 2
            self._die(502)
            return
        for st in list(self.streams.values()) + self.attached + self.waiting:
            if st.gone or not st.up.connecting:
                continue                  # (a replay whose ClientConn was told already)
            st.up.connecting = False
            client = st.up.client
            if client is not None:
                client.on_upstream_connected(st.up)

    cdef void on_upstream_drained(self, UpstreamConn up) except *:
        self._unblock()

    cdef void on_upstream_error(self, UpstreamConn up, int status) except *:
        self.t.client = None
        self._die(status)

    cdef void on_upstream_eof(self, UpstreamConn up) except *:
        self._die(502)

    cdef void on_upstream_data(self, UpstreamConn up, bytes data) except *:
        cdef bytearray buf = self.ibuf
        cdef Py_ssize_t pos = 0, n
        cdef unsigned int length, sid
        cdef int ftype, flags
        cdef const unsigned char *p
        buf += data
        n = len(buf)
        if self.read_idle > 0:
            self.last_read = self.env.loop.now
        try:
            while not self.dead and n - pos >= 9:
                p = <const unsigned char *> (<char *> buf) + pos
                length = (p[0] << 16) | (p[1] << 8) | p[2]
                ftype = p[3]
                flags = p[4]
                sid = ((p[5] & 0x7f) << 24) | (p[6] << 16) | (p[7] << 8) | p[8]
                if length > DEFAULT_FRAME:
                    # we never raise SETTINGS_MAX_FRAME_SIZE above the default
                    self._conn_error(E_FRAME_SIZE_ERROR)
                    return
                if n - pos < 9 + length:
                    break
                payload = bytes(buf[pos + 9:pos + 9 + length])
                pos += 9 + length
                self._frame(ftype, flags, sid, payload)
        finally:
            if pos and not self.dead:
                del buf[:pos]
        self._flush()

    cpdef close(self):
        self._die(502)

    # ---- frames -----------------------------------------------------------------------

    cdef void _frame(self, int ftype, int flags, unsigned int sid, bytes payload) except *:
        cdef H2UpStream st
        cdef Py_ssize_t pad
        cdef long long flow
        if self.cont_sid and (ftype != T_CONTINUATION or sid != self.cont_sid):
            self._conn_error(E_PROTOCOL_ERROR)
            return
        if ftype == T_DATA:
            flow = len(payload)
            if sid == 0:
                self._conn_error(E_PROTOCOL_ERROR)
                return
            self.recv_window -= flow
            if self.recv_window < 0:
                self._conn_error(E_FLOW_CONTROL_ERROR)
                return
            if flags & F_PADDED:
                if not payload or payload[0] >= len(payload):
                    self._conn_error(E_PROTOCOL_ERROR)
                    return
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            st = self.streams.get(sid)
            if st is None or st.resp_done:
                self._credit(flow)        # a stream we dropped: its bytes still counted
                return
            st.recv_window -= flow
            if st.recv_window < 0:
                self._stream_error(st, 502)
                return
            if len(payload) < flow:       # the padding is given back at once
                st._credit(flow - len(payload))
                flow = len(payload)
            st.on_data(payload, flow, flags & F_END_STREAM)
            self._finished(st)
        elif ftype == T_HEADERS:
            if flags & F_PADDED:
                if not payload or payload[0] >= len(payload):
                    self._conn_error(E_PROTOCOL_ERROR)
                    return
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            if flags & F_PRIORITY:
                payload = payload[5:]
            if flags & F_END_HEADERS:
                self._headers(sid, flags, payload)
            else:
                self.cont_sid = sid
                self.cont_flags = flags
                self.block = bytearray(payload)
        elif ftype == T_CONTINUATION:
            if not self.cont_sid:
                self._conn_error(E_PROTOCOL_ERROR)
                return
            self.block += payload
            if len(self.block) > 2 * MAX_HEADER_LIST:
                self._conn_error(E_PROTOCOL_ERROR)
                return
            if flags & F_END_HEADERS:
                self.cont_sid = 0
                payload = bytes(self.block)
                self.block = None
                self._headers(sid, self.cont_flags, payload)
        elif ftype == T_SETTINGS:
            if sid or len(payload) % 6:
                self._conn_error(E_PROTOCOL_ERROR)
                return
            if not flags & F_ACK:
                self._queue(_frame(T_SETTINGS, F_ACK, 0, b""))
                self.settings_seen = True
                self._settings(payload)
        elif ftype == T_WINDOW_UPDATE:
            if len(payload) != 4:
                self._conn_error(E_FRAME_SIZE_ERROR)
                return
            inc = int.from_bytes(payload, "big") & 0x7fffffff
            if sid == 0:
                self.send_window += inc
                if self.send_window > MAX_WINDOW:
                    self._conn_error(E_FLOW_CONTROL_ERROR)
                    return
            else:
                st = self.streams.get(sid)
                if st is None:
                    return
                st.send_window += inc
                if st.send_window > MAX_WINDOW:
                    self._stream_error(st, 502)
                    return
            self._unblock()
        elif ftype == T_PING:
            if len(payload) != 8:
                self._conn_error(E_FRAME_SIZE_ERROR)
                return
            if not flags & F_ACK:
                self._queue(_frame(T_PING, F_ACK, 0, payload))
            elif payload == b"pyroute!":
                self.ping_deadline = 0.0      # the health PING was answered
        elif ftype == T_RST_STREAM:
            st = self.streams.get(sid)
            if st is None:
                return
            code = int.from_bytes(payload[:4], "big") if len(payload) >= 4 else 0
            if code == E_NO_ERROR and st.resp_done:
                # the response is whole; the server wants no more of the request (§8.1)
                st.req_done = True
                st.pending = bytearray()
                self._finished(st)
                return
            if code == E_REFUSED_STREAM or code == E_PROTOCOL_ERROR:
                # not processed (§8.7), or Go's golang/go#47635 case: canRetryError
                self._detach(st)
                st._replay()
                self._idle()
                return
            self._forget(st)              # reset by the server: nothing to reset back
            up = st.up
            client = up.client
            up.stream = None
            up.close()
            if client is not None:
                (<UpstreamUser> client).on_upstream_error(up, 502)
        elif ftype == T_GOAWAY:
            if len(payload) < 8:
                self._conn_error(E_FRAME_SIZE_ERROR)
                return
            last = int.from_bytes(payload[:4], "big") & 0x7fffffff
            self.goaway = True
            self.owner._retire(self)
            # the streams the server will not process (above ``last``, or not opened yet)
            # leave first, then go again on another connection (errClientConnGotGoAway:
            # canRetryError); those it keeps finish here
            # (the unopened first: a stream leaving would otherwise open a waiting one here)
            refused = self.waiting + self.attached \
                + [s for s in self.streams.values() if s.sid > last]
            for st in refused:
                self._detach(st)
            for st in refused:
                st._replay()
            if self.active == 0:
                self._close_quietly()
        elif ftype == T_PUSH_PROMISE:
            self._conn_error(E_PROTOCOL_ERROR)   # we sent ENABLE_PUSH 0
        # PRIORITY and unknown types: ignored (RFC 9113 §5.5)

    cdef void _settings(self, bytes payload) except *:
        cdef Py_ssize_t i
        cdef H2UpStream st
        cdef long long delta
        for i in range(0, len(payload), 6):
            ident = (payload[i] << 8) | payload[i + 1]
            value = int.from_bytes(payload[i + 2:i + 6], "big")
            if ident == S_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value if value < 1000000 else 1000000
            elif ident == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    self._conn_error(E_FLOW_CONTROL_ERROR)
                    return
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for st in self.streams.values():
                    st.send_window += delta
                for st in self.attached + self.waiting:
                    st.send_window += delta
            elif ident == S_MAX_FRAME_SIZE:
                if value < 16384 or value > 16777215:
                    self._conn_error(E_PROTOCOL_ERROR)
                    return
                self.peer_max_frame = value
            elif ident == S_HEADER_TABLE_SIZE:
                self.encoder.set_peer_table_size(value)
        self._slots()
        self._unblock()

    cdef void _headers(self, unsigned int sid, int flags, bytes block) except *:
        cdef H2UpStream st
        try:
            fields = self.decoder.decode(block)   # always: the table stays in step
        except _HeaderListTooLarge:
            fields = None
        except _HpackError:
            self._conn_error(E_COMPRESSION_ERROR)
            return
        st = self.streams.get(sid)
        if st is None or st.resp_done:
            return
        if fields is None:
            self._stream_error(st, 502)
            return
        st.on_headers(fields, flags & F_END_STREAM)
        self._finished(st)

    cdef void _finished(self, H2UpStream st) except *:
        # both halves over: the stream leaves the table (its UpstreamConn may live on until
        # the ClientConn read the last bytes held for it)
        if st.resp_done and st.req_done and not st.gone and not st.held and \
                self.streams.pop(st.sid, None) is not None:
            self._slots()


@cython.final
cdef class H2Pool(H2Dialer):
    """The HTTP/2 connections of one pool (an h2c server): Go's transport picks the first that
    can take another stream, else dials a new one."""
    cdef Pool pool
    cdef list conns
    cdef public double read_idle          # seconds; 0: no health PINGs
    cdef public double ping_timeout
    cdef public bint alpn                 # https: h2 only where ALPN picks it
    cdef public int learned               # https: 0 not known yet, 1 h2, 2 HTTP/1.1

    def __init__(self, Pool pool, double read_idle=0.0, double ping_timeout=0.0,
                 bint alpn=False):
        self.pool = pool
        self.conns = []
        self.alpn = alpn
        self.read_idle = read_idle
        # Go: a PingTimeout of 0 means 15 s
        self.ping_timeout = ping_timeout if ping_timeout > 0 else 15.0
        pool.h2 = self

    cdef UpstreamStream open(self, UpstreamConn up):
        cdef H2Upstream conn
        cdef H2UpStream st
        if self.alpn and self.learned != 1:
            # https, h2 not known yet (or refused): an HTTP/1.1 dial, whose handshake may
            # pick h2 (adopt); Go's transport also learns the protocol from the first dial
            return None
        conn = self._pick(up.env)
        st = H2UpStream()
        st.up = up
        conn.attach(st)
        return st

    cdef H2Upstream _pick(self, Env env):
        # Go's transport: the first connection that can take another stream, else a new one
        cdef H2Upstream c
        for c in self.conns:
            if c.usable():
                return c
        c = H2Upstream(env, self.pool, self)
        self.conns.append(c)
        return c

    cdef bint adopt(self, UpstreamConn up) except -1:
        # an HTTP/1.1 dial of an https server whose TLS handshake picked ALPN h2: its socket
        # becomes a new HTTP/2 connection, the exchange its first stream; what the
        # ClientConn wrote while it connected is replayed into the stream
        cdef H2Upstream conn
        cdef H2UpStream st
        cdef UpstreamUser client = up.client
        if up.sock.selected_alpn_protocol() != "h2":
            self.learned = 2
            return False
        self.learned = 1
        out = up.out
        up.out = None
        conn = H2Upstream(up.env, self.pool, self, up.take_socket())
        self.conns.append(conn)
        st = H2UpStream()
        st.up = up
        conn.attach(st)
        up.stream = st
        up.raw = False
        up.tls = False
        if client is not None:
            client.on_upstream_connected(up)
        if out is not None and up.stream is st:
            if st.send(out) and client is not None and up.client is client:
                client.on_upstream_drained(up)
        return True

    cdef void _retire(self, H2Upstream conn) except *:
        try:
            self.conns.remove(conn)
        except ValueError:
            pass

    cpdef close_all(self):
        for c in list(self.conns):
            (<H2Upstream> c)._close_quietly()
        self.conns = []

    @property
    def connections(self):
        """How many connections are open (tests, the API)."""
        return len(self.conns)
