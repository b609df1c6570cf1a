"""The client side of a proxied exchange: one ``ClientConn`` per accepted connection.

States: HEAD (waiting for / reading a request head), BODY (streaming the request body to the
backend; the response may already be arriving), WAIT (request sent; streaming the response),
TUNNEL (after 101 Switching Protocols), CLOSED. One ``recv`` per readiness event; one ``send``
per piece of output (head and the body bytes that came with it leave together); interest in
EPOLLOUT is added only while output waits, and reading stops only for backpressure.

TLS: the socket-like object only needs ``recv(n)``, ``send(b)``, ``fileno()``, ``close()``;
a pyOpenSSL ``Connection`` fits, with its WantRead/WantWrite errors listed in ``WOULD_BLOCK``.
"""
import socket

from .._engine import http1
from .._engine.errors import HttpParseError
from ..server.loop import EPOLLIN, EPOLLOUT
from . import heads
from .responses import CONTINUE_100, bad_request_response, error_response

S_HEAD, S_BODY, S_WAIT, S_TUNNEL, S_CLOSED = range(5)
R_NONE, R_HEAD, R_BODY, R_DONE = range(4)
# how the response body reaches the client
F_ASIS, F_LENGTH, F_CHUNKED, F_CLOSE = range(4)

NONE, LENGTH, CHUNKED, CLOSE = http1.NONE, http1.LENGTH, http1.CHUNKED, http1.CLOSE
MAX_PIPELINED = 65536      # bytes of further requests buffered while one is in flight
MAX_RESPONSE_HEAD = 65536  # Go's Transport MaxResponseHeaderBytes default is 1 MiB; refused: 502
CHUNK_END = b"0\r\n\r\n"
WOULD_BLOCK = (BlockingIOError, InterruptedError)


def _chunk(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


class ClientConn:
    __slots__ = (
        "env", "loop", "ep", "sock", "fd", "events", "buf", "out", "state", "closing",
        "remote_ip", "trusted", "deadline", "requests", "paused",
        # the exchange in progress
        "req", "keep_alive", "up", "server", "service", "req_left", "req_dec", "resp_state",
        "resp_mode", "resp_left", "resp_dec", "ubuf", "head_req", "expect", "sent_100",
        "upgrade", "resp_extra", "route", "up_ok", "client_eof",
        # middleware context
        "path", "query", "set_headers", "server_index",
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
        self.upgrade = None
        self.resp_extra = None
        self.set_headers = None
        self.sent_100 = False
        self.up_ok = True

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
        if state == S_HEAD or state == S_BODY or state == S_TUNNEL:
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
        if up is not None and not up.closed:
            up.set_events(up.events | EPOLLIN)

    # ---- requests -------------------------------------------------------------------

    def process(self):
        """Parse and start the requests waiting in ``buf`` (state HEAD)."""
        env = self.env
        while self.state == S_HEAD and self.buf and not self.closing:
            try:
                req = env.parser.parse(self.buf, 0)
            except HttpParseError as e:
                self.reject(e.status)
                return
            if req is None:
                return
            del self.buf[:req.head_length]
            self.begin(req)

    def reject(self, status):
        # codec refusal: Go answers "400 Bad Request" and closes
        self.state = S_WAIT
        self.closing = True
        self.buf = bytearray()
        if self.write(bad_request_response(status)):
            self.close()

    def local_response(self, data, keep):
        """Answer the current request from pyroute itself (router miss, middleware, error)."""
        req = self.req
        if req.framing != NONE and req.content_length != 0:
            keep = False      # its body was not read: the connection cannot be reused
        if not keep or not self.keep_alive:
            self.closing = True
            self.state = S_WAIT
            if self.write(data):
                self.close()
            return
        self.requests += 1
        self._reset_exchange()
        self.state = S_HEAD
        it = self.ep.idle_timeout
        self.deadline = self.loop.now + it if it else 0.0
        self.write(data)

    def error(self, status):
        """Answer ``status`` as Traefik does; close when output had started or must."""
        if self.resp_state >= R_BODY or self.state == S_TUNNEL:
            self.abort()      # bytes of a response already left: only closing is honest
            return
        req = self.req
        head = req is not None and req.method == b"HEAD"
        if self.state == S_BODY or self.req_dec is not None and not self.req_dec.done:
            keep = False
        else:
            keep = self.keep_alive and not self.client_eof
        self._release_upstream(False)
        self.closing = not keep
        data = error_response(status, close=not keep, head_only=head)
        if not keep:
            self.state = S_WAIT
            if self.write(data):
                self.close()
            return
        self._reset_exchange()
        self.state = S_HEAD
        self.requests += 1
        it = self.ep.idle_timeout
        self.deadline = self.loop.now + it if it else 0.0
        self.write(data)
        if self.buf:
            self.process()

    def begin(self, req):
        env = self.env
        ep = self.ep
        self.req = req
        self.keep_alive = req.keep_alive and not env.draining
        norm = ep.normalize(req)
        if norm.__class__ is int:
            self.state = S_WAIT
            self.closing = True
            if self.write(bad_request_response(norm)):
                self.close()
            return
        path, query = norm
        self.path = path
        self.query = query
        entry = env.snapshot.entries.get(ep.name)
        rid = -1 if entry is None else entry.route(req, path, query, self.remote_ip, ep.tls)
        if rid < 0:
            self.local_response(error_response(404, not self.keep_alive,
                                               req.method == b"HEAD"), True)
            return
        route = entry.targets[rid]
        self.route = route
        if route.middlewares:
            for mw in route.middlewares:
                answer = mw.on_request(self)
                if answer is not None:
                    self.local_response(answer, True)
                    return
        server = route.service.pick(self)
        if server is None:
            self.local_response(error_response(503, not self.keep_alive,
                                               req.method == b"HEAD"), True)
            return
        self.server = server
        self.head_req = req.method == b"HEAD"
        self.expect = req.expect_100_continue
        up = server.pool.get(self.loop)
        up.client = self
        self.up = up
        up.reads += 1
        upgrade = req.upgrade or None
        self.upgrade = upgrade
        framing = req.framing
        if framing == LENGTH:
            body_framing = 1
        elif framing == CHUNKED:
            body_framing = 2
        else:
            body_framing = 0
        proto = ep.proto
        if upgrade is not None and upgrade.lower() == b"websocket":
            proto = ep.ws_proto
        target = path if query is None else path + b"?" + query
        head = heads.request_head(
            req, req.method, target,
            req.host if server.pass_host else server.host_header,
            self.remote_ip, proto, ep.forwarded_port(req.host), env.server_name,
            self.trusted, self.set_headers, body_framing, req.content_length, upgrade)
        self.resp_state = R_HEAD
        self.ubuf = bytearray()
        if body_framing == 1:
            left = req.content_length
            buf = self.buf
            if buf:
                take = left if left < len(buf) else len(buf)
                head += buf[:take]
                del buf[:take]
                left -= take
            self.req_left = left
            self.state = S_BODY if left else S_WAIT
        elif body_framing == 2:
            self.req_dec = env.new_chunked_decoder()
            self.state = S_BODY
            if self.buf:
                data = bytes(self.buf)
                self.buf = bytearray()
                head += self._decode_request_chunks(data)
                if self.state == S_CLOSED:
                    return
        else:
            self.state = S_WAIT
        if self.state == S_WAIT:
            self._request_sent()
        if not up.write(head) and self.state == S_BODY:
            self.pause_reading()

    def _request_sent(self):
        # request fully forwarded: the response timers start (Go: responseHeaderTimeout after
        # the request is written; writeTimeout from the request read)
        wt = self.ep.write_timeout
        self.deadline = self.loop.now + wt if wt else 0.0
        up = self.up
        if up is not None and self.resp_state == R_HEAD:
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
            if up is None:
                self._maybe_finish()           # response already complete (early answer)
                return
            if not up.write(data):
                self.pause_reading()
            return
        out = self._decode_request_chunks(data)
        if self.state == S_CLOSED:
            return
        if up is None:
            self._maybe_finish()
            return
        if out and not up.write(out):
            self.pause_reading()

    def _decode_request_chunks(self, data):
        # strict chunked decoding (http1.ChunkedDecoder); re-encoded for the backend so that
        # only canonical framing ever leaves pyroute (RFC 9112 §7.1)
        dec = self.req_dec
        parts = []
        pos = 0
        end = len(data)
        try:
            while pos < end and not dec.done:
                pos = dec.feed(data, pos, end)
                if dec.data_stop > dec.data_start:
                    parts.append(_chunk(data[dec.data_start:dec.data_stop]))
        except HttpParseError as e:
            self._release_upstream(False)
            self.reject(e.status)
            return b""
        if dec.done:
            parts.append(CHUNK_END)
            if pos < end:
                self.buf += data[pos:]
            self._request_sent()
        return b"".join(parts)

    def on_upstream_drained(self, up):
        if self.state == S_BODY or self.state == S_TUNNEL:
            self.resume_reading()

    def on_upstream_connected(self, up):
        pass

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
        while True:
            try:
                resp = env.rparser.parse(ubuf, 0, self.head_req)
            except HttpParseError:
                self.up_ok = False
                self.error(502)
                return
            if resp is None:
                if len(ubuf) > MAX_RESPONSE_HEAD:
                    self.up_ok = False
                    self.error(502)
                return
            del ubuf[:resp.head_length]
            status = resp.status
            if status == 101:
                break
            if resp.interim:
                if status == 100:
                    # relay the backend's 100 to a client that asked, once
                    if self.expect and not self.sent_100:
                        self.sent_100 = True
                        self.write(CONTINUE_100)
                else:
                    self.write(heads.response_head(resp, F_ASIS, False, None, None))
                if not ubuf:
                    return
                continue
            break
        up.deadline = 0.0
        up.reads += 0
        req = self.req
        if status == 101:
            if self.upgrade is None or not resp.upgrade:
                self.up_ok = False
                self.error(502)        # Go: "unsolicited 101" / protocol switch mismatch
                return
            self.state = S_TUNNEL
            self.resp_state = R_DONE
            self.deadline = 0.0
            head = heads.response_head(resp, F_ASIS, False, None, resp.upgrade)
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
        if framing == LENGTH:
            mode = F_LENGTH
            self.resp_left = resp.content_length
        elif framing == CHUNKED:
            mode = F_CLOSE if http10 else F_CHUNKED
            self.resp_dec = env.new_chunked_decoder()
        elif framing == CLOSE:
            mode = F_CLOSE if http10 else F_CHUNKED
            self.up_ok = False
        else:
            mode = F_ASIS
        if not resp.keep_alive:
            self.up_ok = False
        self.resp_mode = mode
        if mode == F_CLOSE:
            self.keep_alive = False
        extra = None
        route = self.route
        if route.resp_middlewares:
            extra = []
            for mw in route.resp_middlewares:
                mw.on_response(self, resp, extra)
        if self.resp_extra is not None:
            extra = (extra or []) + self.resp_extra
        close = not self.keep_alive
        if mode == F_ASIS:
            out = heads.response_head(resp, 0, close, extra, None)
            self.resp_state = R_BODY
            ok = self.write(out)
            self._response_done(up, bool(ubuf))
            if not ok and self.up is not None:
                up.set_events(up.events & ~EPOLLIN)
            return
        head = heads.response_head(resp, 1 if mode == F_LENGTH else (2 if mode == F_CHUNKED
                                                                       else 3), close, extra,
                                   None)
        self.resp_state = R_BODY
        self.ubuf = None
        self._response_body(up, bytes(ubuf) if ubuf else b"", head)

    def _response_body(self, up, data, head=b""):
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
            out = head + data if head else data
        elif mode == F_CHUNKED and self.resp_dec is None:
            # until-close body re-encoded as chunks for an HTTP/1.1 client
            out = head + _chunk(data) if data else head
        else:
            dec = self.resp_dec
            parts = [head] if head else []
            pos = 0
            end = len(data)
            try:
                while pos < end and not dec.done:
                    pos = dec.feed(data, pos, end)
                    if dec.data_stop > dec.data_start:
                        piece = data[dec.data_start:dec.data_stop]
                        parts.append(_chunk(piece) if mode == F_CHUNKED else piece)
            except HttpParseError:
                # broken framing from the backend after the head left: cut the response
                self.up_ok = False
                if head:
                    self.write(head)
                self.abort()
                return
            if dec.done:
                if pos < end:
                    self.up_ok = False
                if mode == F_CHUNKED:
                    parts.append(CHUNK_END)
                done = True
            out = b"".join(parts)
        ok = self.write(out) if out else True
        if self.state == S_CLOSED:
            return
        if done:
            self._response_done(up, False)
        elif not ok:
            up.set_events(up.events & ~EPOLLIN)

    def on_upstream_eof(self, up):
        if self.state == S_TUNNEL:
            self.closing = True
            self._release_upstream(False)
            if self.out is None:
                self.close()
            return
        if self.resp_state == R_HEAD:
            self.up_ok = False
            if up.reads > 1 and not self.ubuf and self.req_left_zero():
                pass
            self.error(502)
            return
        if self.resp_state == R_BODY and self.resp_mode in (F_CHUNKED, F_CLOSE) \
                and self.resp_dec is None:
            # the until-close body ended
            self.up_ok = False
            if self.resp_mode == F_CHUNKED:
                self.write(CHUNK_END)
            if self.state != S_CLOSED:
                self._response_done(up, False)
            return
        # truncated body: nothing honest to add, close the client connection
        self.abort()

    def req_left_zero(self):
        return self.req_dec is None and self.req_left == 0

    def on_upstream_error(self, up, status, why):
        if up is not self.up:
            return
        self.up = None
        self.up_ok = False
        self.error(status)

    def _response_done(self, up, extra_bytes):
        if extra_bytes:
            self.up_ok = False
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
            self.closing = True
            if self.out is None:
                self.close()
            return
        self._release_upstream(self.up_ok)
        if self.service is not None:
            self.service.done(self)
        self.requests += 1
        if not self.keep_alive:
            self.closing = True
            if self.out is None:
                self.close()
            return
        self._reset_exchange()
        self.state = S_HEAD
        it = self.ep.idle_timeout
        self.deadline = self.loop.now + it if it else 0.0
        if self.env.draining and not self.buf:
            self.closing = True
            if self.out is None:
                self.close()
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
            up.set_events(EPOLLIN)
            up.pool.put(up, self.loop.now)
        else:
            up.close()

    # ---- teardown -------------------------------------------------------------------

    def abort(self):
        """Close both sides now (timeouts, resets, failures after output started)."""
        self._release_upstream(False)
        self.close()

    def close(self):
        if self.state == S_CLOSED:
            return
        self._release_upstream(False)
        self.state = S_CLOSED
        self.deadline = 0.0
        self.loop.timed.discard(self)
        self.loop.unregister(self.fd)
        self.env.clients.discard(self)
        try:
            self.sock.close()
        except OSError:
            pass
        self.buf = None
        self.out = None

    def is_idle(self):
        return self.state == S_HEAD and not self.buf and self.out is None
