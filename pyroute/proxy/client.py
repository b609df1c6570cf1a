"""The client side of a proxied exchange: one ``ClientConn`` per accepted connection.

States: HEAD (waiting for / reading a request head), BODY (streaming the request body to the
backend; the response may already be arriving), WAIT (request sent; streaming the response),
TUNNEL (after 101 Switching Protocols), CLOSED. One ``recv`` per readiness event; one ``send``
per piece of output (a head leaves together with the body bytes that came with it); EPOLLOUT
interest only while output waits; reading stops only for backpressure, so a slow reader stops
pyroute reading from the backend and nothing is buffered beyond one receive.

TLS: ``sock`` is then a ``pyroute.tls.TLSStream`` (a finished handshake with a socket's face:
``recv``/``send``/``fileno``/``close``, BlockingIOError when it would block) and ``ep`` the TLS
side of the entry point (``ep.tls``): TLS routers only, and the 421 check of Traefik's SNICheck.
"""
from .._engine import http1
from .._engine.errors import HttpParseError
from ..server.loop import EPOLLIN, EPOLLOUT
from .responses import CONTINUE_100, bad_request_response, error_response
from .upstream import UpstreamConn

S_HEAD, S_BODY, S_WAIT, S_TUNNEL, S_CLOSED = range(5)
R_NONE, R_HEAD, R_BODY, R_DONE = range(4)
# how the response body reaches the client
F_ASIS = 0       # no body (HEAD, 1xx, 204, 304)
F_LENGTH = 1     # Content-Length, bytes relayed
F_CHUNKED = 2    # chunked relayed verbatim once validated by the decoder
F_RECHUNK = 3    # until-close body sent chunked to an HTTP/1.1 client
F_DECHUNK = 4    # chunked body sent until close to an HTTP/1.0 client
F_RAW = 5        # until-close body sent until close to an HTTP/1.0 client

NONE, LENGTH, CHUNKED, CLOSE = http1.NONE, http1.LENGTH, http1.CHUNKED, http1.CLOSE
chunk_header = http1.chunk_header
LAST_CHUNK = http1.LAST_CHUNK
MAX_PIPELINED = 65536      # bytes of further requests buffered while one is in flight
MAX_RESPONSE_HEAD = 65536  # bigger backend heads are refused with 502
WOULD_BLOCK = (BlockingIOError, InterruptedError)


class ClientConn:
    __slots__ = (
        "env", "loop", "ep", "sock", "fd", "events", "buf", "out", "state", "closing",
        "remote_ip", "trusted", "deadline", "requests", "paused", "client_eof",
        # the exchange in progress
        "req", "keep_alive", "up", "server", "service", "server_index", "route", "req_left",
        "req_dec", "resp_state", "resp_mode", "resp_left", "resp_dec", "ubuf", "head_req",
        "sent_100", "up_ok", "retry_head", "fwd_path",
        # middleware context
        "path", "query", "set_headers", "resp_extra",
        "_recv", "_send",
    )

    def __init__(self, env, ep, sock, remote_ip):
        self.env = env
        self.loop = env.loop
        self.ep = ep
        self.sock = sock
        self.fd = sock.fileno()
        self._recv = sock.recv
        self._send = sock.send
        self.remote_ip = remote_ip              # bytes, e.g. b"127.0.0.1"
        self.trusted = ep.is_trusted(remote_ip)
        self.buf = bytearray()
        self.out = None
        self.state = S_HEAD
        self.closing = False
        self.requests = 0
        self.paused = False
        self.client_eof = False
        self.keep_alive = True
        self._reset_exchange()
        self.events = EPOLLIN
        self.loop.register(self.fd, EPOLLIN, self)
        self.deadline = self.loop.now + ep.idle_timeout if ep.idle_timeout else 0.0
        self.loop.timed.add(self)

    def _reset_exchange(self):
        self.req = None
        self.up = None
        self.server = None
        self.service = None
        self.route = None
        self.req_dec = None
        self.resp_dec = None
        self.resp_state = R_NONE
        self.ubuf = None
        self.set_headers = None
        self.resp_extra = None
        self.sent_100 = False
        self.up_ok = True
        self.retry_head = None
        self.req_left = 0

    # ---- events ---------------------------------------------------------------------

    def set_events(self, events):
        if events != self.events and self.state != S_CLOSED:
            self.events = events
            self.loop.modify(self.fd, events)

    def on_event(self, ev):
        if ev & EPOLLOUT:
            self.flush()
            if self.state == S_CLOSED:
                return
        if ev & ~EPOLLOUT:
            self.on_readable()

    def on_readable(self):
        try:
            data = self._recv(65536)
        except WOULD_BLOCK:
            return
        except OSError:
            self.abort()
            return
        if not data:
            self.on_eof()
            return
        state = self.state
        if state == S_HEAD:
            if not self.buf:
                # a request begins: Go's ReadTimeout runs from here to the end of its body
                rt = self.ep.read_timeout
                self.deadline = self.loop.now + rt if rt else 0.0
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
            if len(self.buf) > MAX_PIPELINED:
                self.pause_reading()

    def pause_reading(self):
        self.paused = True
        self.set_events(self.events & ~EPOLLIN)

    def resume_reading(self):
        if self.paused and not self.client_eof:
            self.paused = False
            self.set_events(self.events | EPOLLIN)

    def on_eof(self):
        state = self.state
        if state != S_WAIT or self.closing:
            self.abort()
            return
        # request complete, response pending: finish it, then close (half-closed client)
        self.client_eof = True
        self.keep_alive = False
        self.set_events(self.events & ~EPOLLIN)

    def on_timeout(self, now):
        # idle keep-alive (idleTimeout), head/body too slow (readTimeout) or response too slow
        # to write (writeTimeout): Go's server closes the connection without an answer.
        self.abort()

    # ---- output ---------------------------------------------------------------------

    def write(self, data):
        """Send ``data`` now if possible; False when some waits (the caller should pause)."""
        if self.out is not None:
            self.out += data
            return False
        try:
            n = self._send(data)
        except WOULD_BLOCK:
            n = 0
        except OSError:
            self.abort()
            return False
        if n == len(data):
            return True
        self.out = data[n:]
        self.set_events(self.events | EPOLLOUT)
        return False

    def flush(self):
        data = self.out
        if data is None:
            self.set_events(self.events & ~EPOLLOUT)
            return
        try:
            n = self._send(data)
        except WOULD_BLOCK:
            return
        except OSError:
            self.abort()
            return
        if n < len(data):
            self.out = data[n:]
            return
        self.out = None
        self.set_events(self.events & ~EPOLLOUT)
        if self.closing:
            self.close()
            return
        up = self.up
        if up is not None and not up.closed and self.resp_state != R_HEAD:
            up.set_events(up.events | EPOLLIN)

    def _close_after_output(self):
        self.closing = True
        if self.out is None:
            self.close()

    # ---- requests -------------------------------------------------------------------

    def process(self):
        """Parse and start the requests waiting in ``buf`` (state HEAD)."""
        env = self.env
        parser = env.parser
        if env.parser_owner is not self:
            parser.reset()           # one parser per worker; its incremental state is ours now
            env.parser_owner = self
        while self.state == S_HEAD and self.buf and not self.closing:
            try:
                req = parser.parse(self.buf, 0)
            except HttpParseError as e:
                self.reject(e.status)
                return
            if req is None:
                return
            del self.buf[:req.head_length]
            self.begin(req)

    def reject(self, status):
        # codec refusal: Go answers e.g. "400 Bad Request" and closes
        self.env.parser_owner = None
        self.state = S_WAIT
        self.buf = bytearray()
        self.closing = True
        if self.write(bad_request_response(status)):
            self.close()

    def _next_request(self):
        self._reset_exchange()
        self.state = S_HEAD
        it = self.ep.idle_timeout
        self.deadline = self.loop.now + it if it else 0.0
        if self.env.draining and not self.buf:
            self._close_after_output()

    def local_response(self, data, keep=True):
        """Answer the current request from pyroute itself (router miss, middleware, error)."""
        req = self.req
        if req.framing != NONE and req.content_length != 0:
            keep = False      # its body was not read: the connection cannot be reused
        self.requests += 1
        if not keep or not self.keep_alive:
            self.state = S_WAIT
            self.write(data)
            self._close_after_output()
            return
        self.write(data)
        self._next_request()

    def error(self, status):
        """Answer ``status`` as Traefik does, or close when response bytes already left."""
        if self.state == S_CLOSED:
            return
        if self.resp_state == R_BODY or self.resp_state == R_DONE or self.state == S_TUNNEL:
            self.abort()
            return
        self._release_upstream(False)
        keep = self.keep_alive and not self.client_eof and self.state != S_BODY
        req = self.req
        data = error_response(status, not keep, req is not None and req.method_id == 2)
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

    def begin(self, req):
        env = self.env
        ep = self.ep
        self.req = req
        self.keep_alive = req.keep_alive and not env.draining
        norm = ep.normalize(req)
        if norm.__class__ is int:
            self.reject(norm)
            return
        path, query = norm
        self.path = path
        self.query = query
        if ep.tls:
            # Traefik's SNICheck wraps the HTTPS handler: a Host whose TLS option differs from
            # the one of the connection's SNI (domain fronting) gets 421, before routing.
            snap = env.snapshot
            tls_config = snap.tls.get(ep.name)
            if tls_config is not None and tls_config.misdirected_request(self.sock.server_name,
                                                                         req.host or b""):
                self.local_response(error_response(421, not self.keep_alive,
                                                   req.method_id == 2))
                return
            entry = snap.tls_entries.get(ep.name)
        else:
            entry = env.snapshot.entries.get(ep.name)
        rid = -1 if entry is None else entry.route(req, path, query, self.remote_ip, ep.tls)
        if rid < 0:
            if rid < -1:
                self.reject(400)
            else:
                self.local_response(error_response(404, not self.keep_alive,
                                                   req.method_id == 2))
            return
        route = entry.targets[rid]
        self.route = route
        for mw in route.middlewares:
            answer = mw.on_request(self)
            if answer is not None:
                self.local_response(answer)
                return
        server = route.service.pick(self)
        if server is None:
            self.local_response(error_response(503, not self.keep_alive, req.method_id == 2))
            return
        self.server = server
        self.head_req = req.method_id == 2
        up = server.pool.get(self.loop)
        up.client = self
        self.up = up
        path = self.path
        head = route.forwarder.request_head(
            req, self.remote_ip, self.trusted,
            None if server.pass_host else server.host_header,
            None if path is req.path else path)
        if self.set_headers:
            # per-request header edits (stripPrefix's X-Forwarded-Prefix) go before the blank line
            head = head[:-2] + b"".join([n + b": " + v + b"\r\n" for n, v in self.set_headers]) \
                + b"\r\n"
        self.resp_state = R_HEAD
        self.ubuf = bytearray()
        framing = req.framing
        if framing == LENGTH and req.content_length:
            left = req.content_length
            buf = self.buf
            if buf:
                take = left if left < len(buf) else len(buf)
                head += buf[:take]
                del buf[:take]
                left -= take
            self.req_left = left
            self.state = S_BODY if left else S_WAIT
        elif framing == CHUNKED:
            self.req_dec = env.new_chunked_decoder()
            self.state = S_BODY
            if self.buf:
                data = bytes(self.buf)
                self.buf = bytearray()
                head += self._take_request_chunks(data)
                if self.state == S_CLOSED or self.req is None:
                    return
        else:
            self.state = S_WAIT
            if up.reads:
                self.retry_head = head    # a reused connection may have been closed: retry
        up.reads += 1
        if self.state == S_WAIT:
            self._request_sent()
        if not up.write(head) and self.state == S_BODY:
            self.pause_reading()

    def _request_sent(self):
        # request fully forwarded: the response timers start (Go: responseHeaderTimeout after
        # the request is written; writeTimeout counts from the request read)
        wt = self.ep.write_timeout
        self.deadline = self.loop.now + wt if wt else 0.0
        up = self.up
        if up is not None and self.resp_state == R_HEAD and not up.connecting:
            ht = up.pool.header_timeout
            if ht:
                up.deadline = self.loop.now + ht
        if self.state == S_BODY:
            self.state = S_WAIT

    def feed_body(self, data):
        up = self.up
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
        if up is None:
            self._maybe_finish()               # the response already completed
            return
        if data and not up.write(data):
            self.pause_reading()

    def _take_request_chunks(self, data):
        # strict chunked validation (http1.ChunkedDecoder); validated framing is forwarded
        # verbatim, bytes after the last chunk belong to the next request
        dec = self.req_dec
        pos = 0
        end = len(data)
        try:
            while pos < end and not dec.done:
                pos = dec.feed(data, pos, end)
        except HttpParseError as e:
            self._release_upstream(False)
            self.reject(e.status)
            return b""
        if dec.done:
            if pos < end:
                self.buf += data[pos:]
                data = data[:pos]
            self._request_sent()
        return data

    def on_upstream_drained(self, up):
        if self.state == S_BODY or self.state == S_TUNNEL:
            self.resume_reading()

    def on_upstream_connected(self, up):
        # the dial deadline is over; a request already complete starts its header timeout
        if self.state == S_WAIT and self.resp_state == R_HEAD:
            ht = up.pool.header_timeout
            if ht:
                up.deadline = self.loop.now + ht

    # ---- responses ------------------------------------------------------------------

    def on_upstream_data(self, up, data):
        rs = self.resp_state
        if rs == R_BODY:
            self._response_body(up, data)
        elif rs == R_HEAD:
            self.ubuf += data
            self._response_head(up)
        elif self.state == S_TUNNEL:
            if not self.write(data):
                up.set_events(up.events & ~EPOLLIN)
        else:
            # bytes after a complete response (e.g. a second, unasked response): the
            # connection is out of step and must never be reused
            self.up_ok = False
            up.set_events(up.events & ~EPOLLIN)

    def _response_head(self, up):
        env = self.env
        ubuf = self.ubuf
        rparser = env.rparser
        req = self.req
        route = self.route
        while True:
            if env.rparser_owner is not self:
                rparser.reset()
                env.rparser_owner = self
            try:
                resp = rparser.parse(ubuf, 0, self.head_req)
            except HttpParseError:
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
            if not resp.interim:
                break
            if resp.status == 100:
                # relay the backend's 100 to a client that asked for it, once
                if req.expect_100_continue and not self.sent_100:
                    self.sent_100 = True
                    self.write(CONTINUE_100)
            else:
                self.write(route.forwarder.response_head(resp, True, None))
            if not ubuf:
                return
        self.retry_head = None
        up.deadline = 0.0
        status = resp.status
        if status == 101:
            if req.upgrade is None or resp.upgrade is None:
                self.up_ok = False
                self.error(502)        # Go: a 101 nobody asked for is a protocol error
                return
            self.state = S_TUNNEL
            self.resp_state = R_DONE
            self.deadline = 0.0
            up.deadline = 0.0
            head = route.forwarder.response_head(resp, True, None)
            if ubuf:
                head += ubuf
            self.ubuf = None
            if self.buf:
                data = bytes(self.buf)
                self.buf = bytearray()
                up.write(data)
            self.resume_reading()
            if not self.write(head):
                up.set_events(up.events & ~EPOLLIN)
            return
        framing = resp.framing
        http10 = req.version == 10
        chunked = None
        if framing == LENGTH:
            mode = F_LENGTH
            self.resp_left = resp.content_length
        elif framing == CHUNKED:
            self.resp_dec = env.new_chunked_decoder()
            if http10:
                mode = F_DECHUNK
                chunked = False
                self.keep_alive = False
            else:
                mode = F_CHUNKED
        elif framing == CLOSE:
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
        head = route.forwarder.response_head(resp, keep, chunked, keep and http10)
        if self.resp_extra:
            head = head[:-2] + b"".join([n + b": " + v + b"\r\n" for n, v in self.resp_extra]) \
                + b"\r\n"
        self.resp_state = R_BODY
        self.ubuf = None
        if mode == F_ASIS:
            if ubuf:
                self.up_ok = False
            ok = self.write(head)
            if self.state != S_CLOSED:
                self._response_done()
            return
        self._response_body(up, bytes(ubuf) if ubuf else b"", head)

    def _response_body(self, up, data, head=None):
        mode = self.resp_mode
        done = False
        if mode == F_LENGTH:
            left = self.resp_left
            n = len(data)
            if n >= left:
                if n > left:
                    self.up_ok = False          # more than announced: never reuse
                    data = data[:left]
                self.resp_left = 0
                done = True
            else:
                self.resp_left = left - n
        elif mode == F_CHUNKED or mode == F_DECHUNK:
            dec = self.resp_dec
            pos = 0
            end = len(data)
            parts = None if mode == F_CHUNKED else []
            try:
                while pos < end and not dec.done:
                    pos = dec.feed(data, pos, end)
                    if parts is not None and dec.data_stop > dec.data_start:
                        parts.append(data[dec.data_start:dec.data_stop])
            except HttpParseError:
                # broken framing from the backend: cut the response (the client sees it
                # truncated), never forward what could be read two ways
                self.up_ok = False
                if head is not None:
                    self.write(head)
                self.abort()
                return
            if dec.done:
                if pos < end:
                    self.up_ok = False
                done = True
            if parts is None:
                data = data[:pos] if pos < end else data
            else:
                data = b"".join(parts)
        elif mode == F_RECHUNK:
            if data:
                data = chunk_header(len(data)) + data + b"\r\n"
        if head is not None:
            data = head + data
        ok = self.write(data) if data else True
        if self.state == S_CLOSED:
            return
        if done:
            self._response_done()
        elif not ok:
            up.set_events(up.events & ~EPOLLIN)

    def on_upstream_eof(self, up):
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
            if self.resp_mode == F_RECHUNK:
                self.write(LAST_CHUNK)
            if self.state != S_CLOSED:
                self._response_done()
            return
        # truncated body: nothing honest to add, close the client connection
        self.abort()

    def _retry(self):
        # A pooled connection the backend had closed (keep-alive race): send the same
        # body-less request once more on a fresh connection, as Go's Transport does.
        head = self.retry_head
        self.retry_head = None
        old = self.up
        old.client = None
        old.close()
        up = UpstreamConn(self.loop, old.pool)
        up.client = self
        up.reads = 1
        self.up = up
        self.ubuf = bytearray()
        up.write(head)
        self._request_sent()

    def on_upstream_error(self, up, status, why):
        if up is not self.up:
            return
        if self.resp_state == R_HEAD and self.retry_head is not None and not self.ubuf \
                and status == 502:
            self._retry()
            return
        self.up = None
        self.up_ok = False
        self.error(status)

    def _response_done(self):
        self.resp_state = R_DONE
        self._maybe_finish()

    def _maybe_finish(self):
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
        if self.service is not None:
            self.service.done(self)
        self.requests += 1
        if not self.keep_alive:
            self._close_after_output()
            return
        self._next_request()
        if self.state != S_HEAD:
            return
        self.resume_reading()
        if self.buf:
            rt = self.ep.read_timeout
            self.deadline = self.loop.now + rt if rt else 0.0
            self.process()

    def _release_upstream(self, reusable):
        up = self.up
        if up is None:
            return
        self.up = None
        if reusable and not up.closed and up.out is None and not up.connecting:
            if up.events != EPOLLIN:
                up.set_events(EPOLLIN)
            up.pool.put(up, self.loop.now)
        else:
            up.client = None
            up.close()

    # ---- teardown -------------------------------------------------------------------

    def abort(self):
        """Close both sides now (timeouts, resets, failures after output started)."""
        self.close()

    def close(self):
        if self.state == S_CLOSED:
            return
        self._release_upstream(False)
        if self.service is not None:
            self.service.done(self)
            self.service = None
        self.state = S_CLOSED
        self.deadline = 0.0
        self.loop.timed.discard(self)
        self.loop.unregister(self.fd)
        self.env.clients.discard(self)
        if self.env.parser_owner is self:
            self.env.parser_owner = None
        try:
            self.sock.close()
        except OSError:
            pass
        self.buf = None
        self.out = None

    def is_idle(self):
        return self.state == S_HEAD and not self.buf and self.out is None
