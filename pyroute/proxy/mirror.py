"""Mirroring (Traefik's ``mirroring`` service): copies of requests to mirror services.

The main service answers; each mirror gets its share of requests, chosen deterministically as
Traefik does (mirror.go getActiveMirrors: a mirror takes request n when
``count * 100 < n * percent``). Mirrors are fire-and-forget: each copy goes out on its own
connection with ``Connection: close``, its answer is read and dropped, and nothing a mirror
does (slow, failing, refusing) delays or changes the main response.

Bodies (Traefik's newReusableRequest): the main request streams to its backend as always;
a mirrored request's body is copied aside as it passes (``MirrorRequest.body``, called by the
client connection for each piece it forwards) and the copies leave once the whole body has
been read. ``maxBodySize`` (default -1: no limit) bounds that copy: a body over it is not
mirrored (a Content-Length over it is never copied at all; a chunked body is dropped as soon
as its payload passes the limit), so memory per request stays within maxBodySize when set.
``mirrorBody: false``: mirrors get the request without its body (``Content-Length: 0``).
A chunked body is mirrored as one chunk of its payload (trailers are not copied).
"""
import socket
import ssl

from .._engine.http1 import LAST_CHUNK, ChunkedDecoder, chunk_header
from ..server.loop import EPOLLIN, EPOLLOUT

MIRROR_TIMEOUT = 30.0
# metrics (set by the worker when metrics are on: Recorder.mirror): Traefik meters a mirror's
# copy on the mirror's service (its load balancer's servers are wrapped like any other)
metering = None
_NONE, _LENGTH, _CHUNKED = 0, 1, 2        # http1 framing ids (NONE, LENGTH, CHUNKED)


class Mirroring:
    __slots__ = ("main", "mirrors", "counts", "total", "mirror_body", "max_body")

    def __init__(self, main, mirrors, mirror_body=True, max_body=-1):
        self.main = main
        self.mirrors = mirrors                  # [(service, percent)]
        self.counts = [0] * len(mirrors)
        self.total = 0
        self.mirror_body = mirror_body
        self.max_body = max_body

    def pick(self, ex):
        # Traefik (mirror.go ServeHTTP): the main handler and each mirror's handler get
        # their own clone of the request as it reached the mirroring service, so neither
        # sees the other's service-level middleware edits
        before = _state(ex)
        server = self.main.pick(ex)
        if server is None:
            return None
        self.total += 1
        copies = None
        after = None
        for i, (service, percent) in enumerate(self.mirrors):
            if self.counts[i] * 100 < self.total * percent:
                self.counts[i] += 1
                if after is None:
                    after = _state(ex)
                _restore(ex, before)
                # the mirror's service-level middlewares decide whether it gets a copy
                # (one that answers keeps it) and edit the copy (its path, headers)
                target = service.pick(ex)
                if target is not None and getattr(target, "pool", None) is not None:
                    if ex.service is not None and ex.service is not after[8]:
                        # a p2c mirror counts no request in flight: the copy is not awaited
                        ex.service.done(ex)
                    copies = (copies or []) + [Copy(target, ex)]
                _restore(ex, after)
        if copies:
            ex.mirror = MirrorRequest(self, copies)
        return server

    def done(self, conn):
        pass


def _state(ex):
    # what a service's pick (and its service-level middlewares) may change on the exchange;
    # lists are copied, as middlewares append to them in place
    return (ex.route, ex.path, ex.query,
            list(ex.set_headers) if ex.set_headers is not None else None,
            list(ex.remove_headers) if ex.remove_headers is not None else None,
            list(ex.responders) if ex.responders is not None else None,
            list(ex.completers) if ex.completers is not None else None,
            list(ex.resp_extra) if ex.resp_extra is not None else None,
            ex.service, ex.server_index)


def _restore(ex, st):
    (ex.route, ex.path, ex.query, ex.set_headers, ex.remove_headers, ex.responders,
     ex.completers, ex.resp_extra, ex.service, ex.server_index) = \
        (st[0], st[1], st[2], _copy(st[3]), _copy(st[4]), _copy(st[5]), _copy(st[6]),
         _copy(st[7]), st[8], st[9])


def _copy(lst):
    return list(lst) if lst is not None else None


class Copy:
    """One mirror's copy: its server and the request as the mirror's service-level
    middlewares left it (route: their compiled header edits; path, query, per-request header
    edits), from which its own forwarded head is built."""

    __slots__ = ("server", "route", "path", "query", "set_headers", "remove_headers")

    def __init__(self, server, ex):
        self.server = server
        self.route = ex.route
        self.path = ex.path
        self.query = ex.query
        self.set_headers = ex.set_headers
        self.remove_headers = ex.remove_headers

    def head(self, ex):
        """This copy's forwarded head (as ClientConn builds the main one), with
        ``Connection: close`` (fire and forget)."""
        req = ex.req
        fwd = self.route.forwarder
        server = self.server
        path = self.path
        head = fwd.request_head(
            req, ex.remote_ip, ex.trusted,
            None if server.pass_host and (req.host or fwd.request_host is not None)
            else server.host_header,
            None if path == req.path else path)
        if self.query != req.query:
            # the normalised query (';' -> '&') replaces the one the forwarder copies
            head = (req.method + b" " + path + (b"?" + self.query if self.query is not None
                                                else b"") + b" HTTP/1.1"
                    + head[head.index(b"\r\n"):])
        if self.remove_headers:
            lines = head[:-4].split(b"\r\n")
            head = b"\r\n".join(
                [lines[0]] + [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower()
                              not in self.remove_headers]) + b"\r\n\r\n"
        if self.set_headers:
            if any(b"\r" in n + v or b"\n" in n + v or b"\0" in n + v
                   for n, v in self.set_headers):
                return None     # Go's transport refuses such a header: the copy fails
            head = head[:-2] + b"".join([n + b": " + v + b"\r\n"
                                         for n, v in self.set_headers]) + b"\r\n"
        return head[:-2] + b"Connection: close\r\n\r\n"


def _with_length(head, length):
    """The forwarded head of a request whose body was read whole: ``Content-Length``."""
    lines = [line for line in head[:-4].split(b"\r\n")
             if line[:15].lower() != b"content-length:"
             and line[:18].lower() != b"transfer-encoding:"]
    return b"\r\n".join(lines) + b"\r\nContent-Length: %d\r\n\r\n" % length


def _without_body(head):
    """The forwarded head of a request whose body is not mirrored: Content-Length: 0."""
    lines = [line for line in head[:-4].split(b"\r\n")
             if line[:15].lower() != b"content-length:"
             and line[:18].lower() != b"transfer-encoding:"]
    return b"\r\n".join(lines) + b"\r\nContent-Length: 0\r\n\r\n"


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            value = line[15:].strip()
            return int(value) if value.isdigit() else -1
    return -1


class MirrorRequest:
    """The copies of one request for its mirrors (``conn.mirror`` while it is forwarded)."""

    __slots__ = ("mirroring", "copies", "heads", "parts", "size", "dec")

    def __init__(self, mirroring, copies):
        self.mirroring = mirroring
        self.copies = copies        # [Copy]
        self.heads = None           # per copy: its forwarded head (None: not sent)
        self.parts = None           # body pieces (payload only), None: nothing to copy
        self.size = 0               # payload bytes copied
        self.dec = None             # ChunkedDecoder over a chunked body's forwarded bytes

    def start(self, conn, data, complete):
        """``data``: the forwarded head (with the body bytes that came with it);
        ``complete``: the whole body is in it."""
        end = data.find(b"\r\n\r\n") + 4
        req = conn.req
        m = self.mirroring
        framing, length = req.framing, req.content_length
        kept = conn.body
        if kept is not None:
            # the body was read whole (buffering, retry): it goes with a Content-Length
            framing, length = _LENGTH, kept.size
            if kept.spooled and length and m.mirror_body:
                # in a temporary file, never read back into memory for a copy
                conn.mirror = None
                return
        if framing == _LENGTH and m.mirror_body and 0 <= m.max_body < length:
            conn.mirror = None      # Traefik: "no mirroring, request body larger than allowed"
            return
        self.heads = [c.head(conn) for c in self.copies]
        if kept is not None:
            self.heads = [_with_length(h, length) if h is not None else None
                          for h in self.heads]
        if framing == _NONE or length == 0:
            self._send(conn, b"")
            return
        if not m.mirror_body:
            self.heads = [_without_body(h) if h is not None else None for h in self.heads]
            self._send(conn, b"")
            return
        self.parts = []
        if framing == _CHUNKED:
            self.dec = ChunkedDecoder()
        self.body(conn, data[end:], complete)

    def body(self, conn, data, complete):
        """The next forwarded piece of the body; ``complete``: it was the last."""
        if self.parts is None:
            return
        dec = self.dec
        if dec is None:
            if data:
                self.parts.append(data)
                self.size += len(data)
        else:
            # the connection validated this framing already: only the payload is kept
            pos, end = 0, len(data)
            while pos < end and not dec.done:
                pos = dec.feed(data, pos, end)
                if dec.data_stop > dec.data_start:
                    self.parts.append(data[dec.data_start:dec.data_stop])
            self.size = dec.total
            if 0 <= self.mirroring.max_body < self.size:
                self.parts = None   # over maxBodySize: not mirrored, nothing more is kept
                conn.mirror = None
                return
        if complete:
            body = b"".join(self.parts)
            self.parts = None
            if dec is not None:
                body = (chunk_header(len(body)) + body + b"\r\n" if body else b"") + LAST_CHUNK
            self._send(conn, body)
            conn.mirror = None

    def _send(self, conn, body):
        rec = metering
        for copy, head in zip(self.copies, self.heads):
            if head is None:
                continue
            meter = rec.meter(conn, copy.server, len(body)) if rec is not None else None
            try:
                MirrorConn(conn.loop, copy.server.pool, head + body, meter)
            except OSError:
                pass


class MirrorConn:
    """One mirrored request: connect (TLS for an https server, with its ServersTransport's
    context and server name), send, read the answer until the backend closes."""

    __slots__ = ("loop", "sock", "fd", "out", "deadline", "closed", "connected", "ssl_ctx",
                 "server_hostname", "handshaking", "verify", "meter", "started", "first",
                 "head_len", "received")

    def __init__(self, loop, pool, data, meter=None):
        self.loop = loop
        # metrics: the Recorder's key parts for this copy (None: not metered), and what the
        # answer was (its status line and head, the bytes after it)
        self.meter = meter
        self.started = loop.now
        self.first = b""
        self.head_len = -1
        self.received = 0
        self.out = memoryview(data)       # slices of it cost nothing, whatever the body size
        self.closed = False
        self.connected = False
        self.handshaking = False
        self.ssl_ctx = pool.ssl_ctx
        self.server_hostname = pool.server_hostname
        self.verify = pool.verify                 # peerCertURI, checked after the handshake
        self.sock = None
        self.fd = -1
        self.deadline = loop.now + MIRROR_TIMEOUT
        loop.timed.add(self)
        if pool.resolver is None:
            self._connect(pool.family, pool.addr)
        else:
            # a host name: looked up for this copy, off the loop (pyroute.proxy.dns), then its
            # first address dialed (a mirror is best effort: the others are not tried)
            pool.resolver.resolve(loop, self._resolved)

    def _resolved(self, primaries, fallbacks, error):
        if self.closed:
            return
        if not primaries:
            self.abort()              # the name has no address: the copy is dropped
            return
        self._connect(*primaries[0])

    def _connect(self, family, addr):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        sock.connect_ex(addr)
        self.loop.register(self.fd, EPOLLOUT, self)

    def on_event(self, ev):
        if not self.connected:
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.abort()
                return
            self.connected = True
            if self.ssl_ctx is not None:
                try:
                    self.sock = self.ssl_ctx.wrap_socket(
                        self.sock, server_hostname=self.server_hostname,
                        do_handshake_on_connect=False)
                except (OSError, ValueError):
                    self.abort()
                    return
                self.handshaking = True
        try:
            if self.handshaking and not self._handshake():
                return
            if self.out is not None:
                n = self.sock.send(self.out)
                self.out = self.out[n:] or None
                if self.out is None:
                    self.loop.modify(self.fd, EPOLLIN)
                return
            while True:
                got = self.sock.recv(65536)
                if not got:
                    break
                if self.meter is not None and self._seen(got):
                    break           # the whole answer (Content-Length) is in: done
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except (OSError, ValueError):
            pass
        self.abort()       # the answer ended (or the connection failed): done

    def _handshake(self):
        # True once the TLS handshake is done; meanwhile wait for the direction it needs
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.loop.modify(self.fd, EPOLLIN)
            return False
        except ssl.SSLWantWriteError:
            self.loop.modify(self.fd, EPOLLOUT)
            return False
        self.handshaking = False
        if self.verify is not None and not self.verify(self.sock):
            raise OSError("the backend's certificate lacks the peerCertURI")   # -> abort
        self.loop.modify(self.fd, EPOLLOUT)
        return True

    def _seen(self, got):
        """Count an answer's bytes; True once a Content-Length answer is complete (a backend
        that keeps the connection open would otherwise be counted only at its timeout)."""
        self.received += len(got)
        if self.head_len < 0 and len(self.first) < 65536:
            self.first += got
            end = self.first.find(b"\r\n\r\n")
            if end >= 0:
                self.head_len = end + 4
        if self.head_len > 0:
            length = _content_length(self.first[:self.head_len])
            return length >= 0 and self.received - self.head_len >= length
        return False

    def _report(self):
        # Traefik: a copy its backend never answered gets the proxy's 502
        status = 0
        if self.head_len > 0:
            parts = self.first.split(b" ", 2)
            if len(parts) >= 2 and parts[1].isdigit():
                status = int(parts[1])
        body = self.received - self.head_len if status else 0
        meter, self.meter = self.meter, None
        if metering is not None:
            metering.mirror(meter, status or 502, self.loop.now - self.started, body)

    def on_timeout(self, now):
        self.abort()

    def abort(self):
        if self.closed:
            return
        self.closed = True
        if self.meter is not None:
            self._report()
        self.loop.timed.discard(self)
        if self.sock is not None:
            self.loop.unregister(self.fd)
            self.sock.close()
