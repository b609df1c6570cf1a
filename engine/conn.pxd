# The per-connection state machines of a proxied exchange (engine/conn.pyx).
cimport cython
from pyroute._engine.http1 cimport (RequestParser, ResponseParser, Request, Response,
                                    ChunkedDecoder, Forwarder)
from pyroute._engine.exchange cimport Exchange, ResponseHead


cdef enum ClientState:
    S_HEAD = 0      # waiting for / reading a request head
    S_BODY = 1      # streaming the request body upstream (the response may be arriving)
    S_WAIT = 2      # request sent; waiting for / streaming the response
    S_TUNNEL = 3    # after 101 Switching Protocols: bytes both ways
    S_CLOSED = 4


cdef enum RespState:
    R_NONE = 0
    R_HEAD = 1      # reading the response head
    R_BODY = 2      # streaming the response body
    R_DONE = 3


cdef enum RespMode:
    F_ASIS = 0      # no body (HEAD, 204, 304)
    F_LENGTH = 1    # Content-Length, bytes relayed
    F_CHUNKED = 2   # chunked relayed verbatim once validated by the decoder
    F_RECHUNK = 3   # until-close body sent chunked to an HTTP/1.1 client
    F_DECHUNK = 4   # chunked body sent until close to an HTTP/1.0 client
    F_RAW = 5       # until-close body sent until close to an HTTP/1.0 client


@cython.final
cdef class Env:
    # per-worker state shared by its connections
    cdef public object loop
    cdef public object snapshot
    cdef public RequestParser parser
    cdef public ResponseParser rparser
    cdef public object parser_owner       # connection whose partial head the parser scanned
    cdef public object rparser_owner
    cdef public double now                # monotonic time of the current loop turn
    cdef public bint draining
    cdef public set clients
    cdef public list observers            # callables(ex) when an exchange ends (access log,
                                          # metrics); empty: nothing observed
    cdef public object pools
    cdef bytearray rbuf                   # the worker's one receive buffer (recv_into)
    cdef char *rptr                       # its bytes (never resized)
    cdef public list turn_end             # TurnEnd handlers run_loop calls after the turn


cdef class TurnEnd:
    # A connection that writes once per loop turn (an HTTP/2 connection: every stream's
    # frames of the turn in one send): it appends itself to Env.turn_end, and run_loop calls
    # end_turn after the turn's events, timers and sweep
    cdef void end_turn(self) except *


cdef class UpstreamStream:
    # An HTTP/2 stream carrying an UpstreamConn's exchange (engine/h2up.pyx): the UpstreamConn
    # keeps its HTTP/1.1 face (the ClientConn writes request bytes, reads response bytes) and
    # the stream maps them to frames on a connection it shares with other exchanges
    cdef bint send(self, bytes data) except -1   # request bytes; False: on_upstream_drained follows
    cdef void deliver(self) except *             # hand on response bytes held while paused
    cdef void cancel(self) except *              # the UpstreamConn closed (RST_STREAM if unfinished)


cdef class H2Dialer:
    # A pool's HTTP/2 connections (scheme h2c; engine/h2up.pyx): a stream for each exchange
    cdef UpstreamStream open(self, UpstreamConn up)   # None: HTTP/1.1 (dial as usual)
    cdef bint adopt(self, UpstreamConn up) except -1  # its TLS handshake picked h2: True
    cpdef close_all(self)


@cython.final
cdef class Pool:
    cdef public H2Dialer h2               # h2c server: exchanges are streams; None: HTTP/1.1
    cdef public object addr
    cdef public int family
    cdef public list idle                 # UpstreamConn, most recently used last
    cdef public int max_idle              # maxIdleConnsPerHost
    cdef public double dial_timeout       # seconds; 0 = none
    cdef public double header_timeout     # responseHeaderTimeout; 0 = none
    cdef public double idle_timeout       # idleConnTimeout
    cdef public str name
    cdef public object ssl_ctx            # ssl.SSLContext for https servers, or None
    cdef public str server_hostname       # SNI / verified name (ServersTransport serverName)
    cdef public object resolver           # host name: its addresses (pyroute.proxy.dns); None: addr
    cdef public object verify             # callable(ssl socket) -> bool after the handshake, or None
    cdef UpstreamConn get(self, Env env)
    cdef void put(self, UpstreamConn up, double now)
    cdef void discard(self, UpstreamConn up)


# What ClientConn.begin reads per request from the compiled snapshot
# (pyroute.proxy.snapshot subclasses these in Python): C fields, not attribute lookups.
cdef class ServerTarget:
    cdef public Pool pool
    cdef public bytes host_header         # "host:port" sent when the client's Host is not
    cdef public bint pass_host


cdef class RouteTarget:
    cdef public tuple middlewares         # request-phase middlewares (non-static)
    cdef public object service            # has pick(conn) -> ServerTarget or None
    cdef public Forwarder forwarder
    cdef public object single             # ServerTarget when the service is one plain server
    cdef public object children           # multi-layer routing: the child routers' EntryTable
                                          # (parent routers; service None), else None
    cdef public tuple after               # per middleware: (on_response, on_complete) or None;
                                          # None: no middleware of the chain has either
    cdef public tuple prefix_responders   # response edits of the routers above, when theirs
                                          # were compiled into a Forwarder this one lacks
    cdef public object error_edits        # (sets, removes) static response edits for
                                          # pyroute's own errors on this route, or None


cdef class EntryTable:
    cdef public object table              # pyroute._engine.rules.RouteTable
    cdef public list targets              # RouteTarget per rule id
    cdef public bint needs_headers
    cdef public bint needs_ip


@cython.final
cdef class Spool:
    # A body read whole (buffering, retry): kept in memory up to ``mem`` bytes, the rest in
    # an unlinked temporary file (oxy's multibuf), so a huge body is never held in memory.
    cdef public long long size            # bytes added
    cdef public long long mem             # in-memory threshold (<0: everything in memory)
    cdef list parts                       # the bytes while in memory (None once spooled)
    cdef public object file               # the temporary file, or None
    cdef void add(self, bytes data) except *
    cdef bint over(self, long long size) noexcept
    cdef bytes whole(self)                # the content when in memory, else None
    cdef void rewind(self) except *
    cdef bytes read(self, Py_ssize_t n)
    cpdef close(self)


cdef class UpstreamUser:
    # What an upstream connection reports to while it carries a request: the client
    # connection relaying an exchange, or a sub-request a middleware issued (forwardAuth)
    cdef bint body_pending(self)          # the request body is still being sent
    cdef void expect_continue_timeout(self) except *
    cdef void on_upstream_data(self, UpstreamConn up, bytes data) except *
    cdef void on_upstream_eof(self, UpstreamConn up) except *
    cdef void on_upstream_error(self, UpstreamConn up, int status) except *
    cdef void on_upstream_connected(self, UpstreamConn up) except *
    cdef void on_upstream_drained(self, UpstreamConn up) except *
    cpdef close(self)


cdef class StreamSink:
    # Where a ClientConn without a socket reads its request bytes from and writes its
    # response bytes to: an HTTP/2 stream (engine/h2.pyx) that turns its frames into an
    # HTTP/1.1 request and the HTTP/1.1 response back into frames
    cdef bint trusted                            # the connection's peer is in trustedIPs
    cdef bint sink(self, bytes data) except -1   # response bytes; False: over its bound (pause)
    cdef bytes take_input(self)                  # request bytes waiting, or None
    cdef void sink_closed(self) except *         # the ClientConn closed (response over or cut)


@cython.final
cdef class SubRequest(UpstreamUser):
    # one request a middleware sends from the worker's loop (Env.subrequest)
    cdef Env env
    cdef Pool pool
    cdef UpstreamConn up
    cdef bytes head
    cdef bytes body
    cdef long long max_body
    cdef object callback
    cdef bytearray rbuf
    cdef object resp                      # Response once its head is read
    cdef long long left
    cdef ChunkedDecoder dec
    cdef list parts
    cdef long long size
    cdef public double deadline
    cdef bint finished
    cdef bint retried
    cdef void _send(self) except *
    cdef void _finish(self, int error) except *
    cdef void _body(self, bytes data) except *


@cython.final
cdef class UpstreamConn:
    cdef public object loop
    cdef public Pool pool
    cdef public object sock
    cdef public int fd
    cdef bint raw                         # plain socket: recv/send on fd directly (not TLS)
    cdef public UpstreamUser client       # owner during an exchange; None while pooled
    cdef public int events
    cdef public object out                # bytes waiting for EPOLLOUT, or None
    cdef public bint connecting
    cdef public double deadline
    cdef public bint closed
    cdef public int reads                 # requests sent on this connection
    cdef public int err                   # connect() error seen at once, 0: none
    cdef public bint tls                  # https server: TLS over this connection
    cdef public bint handshaking          # TLS handshake in progress
    cdef public bint paused               # backpressure: not reading (the client cannot take it)
    cdef public bint hup                  # the peer closed its side: read on until EOF
    cdef list addrs                       # a name's primaries being dialed (Go's dialSerial)
    cdef int addr_index                   # the address being dialed
    cdef double dial_deadline             # monotonic end of the whole dial; 0: none
    cdef public bint resolving            # a name's lookup (pyroute.proxy.dns) not answered yet
    cdef list fallbacks                   # the other family's addresses, raced after
                                          # FALLBACK_DELAY (Go's dialParallel); None: none
    cdef object fallback_timer            # loop.call_later handle until the fallback starts
    cdef object racer                     # the FallbackDial running, None: none (or over)
    cdef int primary_status               # primaries all failed: 502 refused, 504 timed out;
                                          # 0: still dialing
    cdef public UpstreamStream stream     # an HTTP/2 stream carries the exchange (no socket)
    cdef public bint transport            # the socket of an HTTP/2 connection (h2up.pyx)
    cdef public Env env
    cdef void _dial(self) except *
    cdef bint _dial_next(self) except -1
    cdef bint _primaries_failed(self, int status) except -1
    cdef void _fallback_failed(self, int status) except *
    cdef void _adopt(self, object racer, int ev) except *
    cdef bint _tcp_connected(self) except -1
    cdef void _stop_fallback(self) except *
    cdef void _fail(self, int status) except *
    cdef void _drop_primary(self) except *
    cdef void on_event_c(self, int ev) except *
    cdef void on_readable(self) except *
    cdef bint write(self, bytes data) except *
    cdef void flush(self) except *
    cdef void _connected(self) except *
    cdef void _handshake(self) except *
    cdef UpstreamConn take_socket(self)
    cpdef close(self)


@cython.final
cdef class ClientConn(UpstreamUser):
    cdef public Env env
    cdef public object loop
    cdef public object ep
    cdef public object sock
    cdef public int fd
    cdef bint raw                         # plain socket: recv/send on fd directly (not TLS)
    cdef object ep_name
    cdef object snap                      # the snapshot ``entry`` was looked up in
    cdef EntryTable entry                 # this connection's routes in ``snap`` (or None)
    cdef public int events
    cdef public bytearray buf
    cdef public object out
    cdef public int state                 # ClientState
    cdef public bint closing
    cdef public bytes remote_ip
    cdef public int remote_port           # the client's TCP port (0: unknown)
    cdef public bint tls                  # TLS connection (reads loop until WantRead)
    cdef public bint hup                  # the peer closed its side: read on until EOF
    cdef public bint trusted
    cdef public double deadline
    cdef public long requests
    cdef public bint paused
    cdef public bint client_eof
    cdef Py_ssize_t max_head              # request head limit (http.maxHeaderBytes + 4096)
    cdef double read_timeout              # the entry point's respondingTimeouts (s; 0: none)
    cdef double write_timeout
    cdef double write_deadline            # head read + writeTimeout (0: none)
    cdef double idle_timeout
    cdef long max_requests                # transport.keepAliveMaxRequests (0: no limit)
    cdef double close_at                  # accepted + keepAliveMaxTime (0: no limit)
    cdef int underscore                   # http.underscoreHeadersStrategy: 0 keep, 1 delete,
                                          # 2 reject (pyroute.static.UNDERSCORE_STRATEGIES)
    # the exchange in progress (the HTTP/1.1 relay state below is the connection's: one
    # exchange at a time; an HTTP/2 stream keeps its own)
    cdef public Exchange ex
    cdef public Request req
    cdef StreamSink sink                  # an HTTP/2 stream carries it (no socket), or None
    cdef public bint keep_alive
    cdef public UpstreamConn up
    cdef public long long req_left
    cdef public ChunkedDecoder req_dec
    cdef public int resp_state            # RespState
    cdef public int resp_mode             # RespMode
    cdef public long long resp_left
    cdef public ChunkedDecoder resp_dec
    cdef public bytearray ubuf
    cdef public bint head_req
    cdef public bint sent_100
    cdef public bint up_ok
    cdef public bytes retry_head
    cdef bint resp_phase                  # the route has response-phase middlewares
    cdef bint transforming                # the body goes through the exchange's transforms
    cdef ResponseHead held                # a head held for its first body bytes (ex.sniff)
    cdef list held_out                    # output that waits behind it (framing, nothing else)
    cdef bytes orig_path                  # the request's path, when it went through no
                                          # normalisation (sent as is unless replaced)
    cdef bint query_changed               # normalisation changed the query (';' -> '&')
    # read_body (forwardAuth's forwardBody): the whole body is read into ``buf`` before the
    # chain goes on; ``body_cb`` waits for it (None: not reading)
    cdef object body_cb
    cdef long long body_limit
    cdef ChunkedDecoder body_dec
    cdef Py_ssize_t body_pos
    cdef list body_parts
    cdef long long body_size
    cdef Spool body_spool                 # read_body keeping the body (ex.body), or None
    # a kept body spooled to a file, sent to the backend as it drains (None: none/sent)
    cdef Spool body_out
    # a streamed request body under retry held in ``buf`` while the backend is dialled: the
    # head to send once connected (None: nothing held); a failed dial leaves the body whole
    cdef bytes body_held
    # the response held whole before it leaves (the buffering middleware's response side):
    # its head, its body, the limit (<0: none); None: the response streams
    cdef ResponseHead rbuf_head
    cdef Spool rbuf
    cdef long long rbuf_max
    cdef Spool rbuf_out                   # a held response spooled to a file, being sent
    cdef list rbuf_tail                   # the last raw chunked pieces (its trailer section)
    cdef bytes rbuf_trailer               # the held response's trailer section, or None
    cdef bytes rbuf_end                   # sent chunked: the last chunk + trailers (or None)
    cdef list rbuf_declared               # the backend's "Trailer" values (a chunked one)

    cdef void _reset_exchange(self) except *
    cdef void sink_drained(self) except *
    cdef void on_event_c(self, int ev) except *
    cdef void on_readable(self) except *
    cdef void _received(self, bytes data) except *
    cdef void pause_reading(self) except *
    cdef void resume_reading(self) except *
    cdef void on_eof(self) except *
    cdef bint write(self, bytes data) except *
    cdef bint write_head(self, bytes head, bytes body, Py_ssize_t skip) except *
    cdef void flush(self) except *
    cdef void _close_after_output(self) except *
    cdef void process(self) except *
    cdef bint _process_fast(self, bytes data) except -1
    cdef void reject(self, int status) except *
    cdef void _next_request(self) except *
    cdef void begin(self, Request req) except *
    cdef void _proceed(self, Exchange ex) except *
    cdef bint _run_chain(self, Exchange ex) except -1
    cdef void _after_resume(self) except *
    cdef void _forward(self, Exchange ex, RouteTarget route) except *
    cdef void _picked(self, Exchange ex, ServerTarget server) except *
    cdef void _answer(self, Exchange ex, bytes answer) except *
    cdef bytes _own_answer(self, Exchange ex, bytes data)
    cdef void _end_exchange(self, int status) except *
    cdef bytes _release_held(self, bytes first)
    cdef void _again(self, UpstreamConn failed) except *
    cdef bytes _transform(self, bytes data, bint last)
    cdef void _request_sent(self) except *
    cdef object _body_ready(self)
    cdef object _kept(self)
    cdef void _body_progress(self) except *
    cdef void feed_body(self, bytes data) except *
    cdef bytes _take_request_chunks(self, bytes data)
    cdef bytes _body_start(self, Request req, bytes head)
    cdef void _start_transforming(self, ResponseHead rh) except *
    cdef void _keep_tail(self, bytes data, Py_ssize_t keep) except *
    cdef bytes _held_trailers(self, ResponseHead rh)
    cdef void _send_held(self, UpstreamConn up) except *
    cdef bint _response_head_fast(self, UpstreamConn up, bytes data) except -1
    cdef void _response_head(self, UpstreamConn up) except *
    cdef void _response_start(self, UpstreamConn up, Response resp, bytes data, Py_ssize_t skip) except *
    cdef void _response_body(self, UpstreamConn up, bytes data, bytes head, Py_ssize_t skip) except *
    cdef void _retry(self) except *
    cdef void _pump_body(self) except *
    cdef void _pump_response(self) except *
    cdef void _held_response_done(self) except *
    cdef void _maybe_finish(self) except *
    cdef void _release_upstream(self, bint reusable) except *
