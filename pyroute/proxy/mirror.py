"""Mirroring (Traefik's ``mirroring`` service): copies of requests to mirror services.

The main service answers; each mirror gets its share of requests, chosen deterministically as
Traefik does (mirror.go getActiveMirrors: a mirror takes request n when
``count * 100 < n * percent``). Mirrors are fire-and-forget: each copy goes out on its own
connection with ``Connection: close``, its answer is read and dropped, and nothing a mirror
does (slow, failing, refusing) delays or changes the main response. Bodies are copied when
``mirrorBody`` (default true) and the whole body came with the head and fits ``maxBodySize``
(default -1: any); otherwise the request is not mirrored.
"""
import socket

from ..server.loop import EPOLLIN, EPOLLOUT

MIRROR_TIMEOUT = 30.0


class Mirroring:
    __slots__ = ("main", "mirrors", "counts", "total", "mirror_body", "max_body")

    def __init__(self, main, mirrors, mirror_body=True, max_body=-1):
        self.main = main
        self.mirrors = mirrors                  # [(service, percent)]
        self.counts = [0] * len(mirrors)
        self.total = 0
        self.mirror_body = mirror_body
        self.max_body = max_body

    def pick(self, conn):
        server = self.main.pick(conn)
        if server is None:
            return None
        self.total += 1
        chosen = None
        for i, (service, percent) in enumerate(self.mirrors):
            if self.counts[i] * 100 < self.total * percent:
                self.counts[i] += 1
                target = service.pick(conn)
                if target is not None:
                    chosen = (chosen or []) + [target]
        if chosen:
            conn.mirror = (self, chosen)
        return server

    def done(self, conn):
        pass

    def send(self, conn, head, body_in_head):
        """Send copies of the request (``head`` = the forwarded head, maybe with body)."""
        req = conn.req
        if req.framing != 0 and req.content_length != 0:
            if not self.mirror_body or not body_in_head:
                return
            if self.max_body >= 0 and req.content_length > self.max_body:
                return
        end = head.find(b"\r\n\r\n")
        data = head[:end] + b"\r\nConnection: close" + head[end:]
        for server in conn.mirror[1]:
            try:
                MirrorConn(conn.loop, server.pool, data)
            except OSError:
                pass


class MirrorConn:
    """One mirrored request: connect, send, read the answer until the backend closes."""

    __slots__ = ("loop", "sock", "fd", "out", "deadline", "closed")

    def __init__(self, loop, pool, data):
        self.loop = loop
        self.out = data
        self.closed = False
        sock = socket.socket(pool.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        sock.connect_ex(pool.addr)
        loop.register(self.fd, EPOLLOUT | EPOLLIN, self)
        self.deadline = loop.now + MIRROR_TIMEOUT
        loop.timed.add(self)

    def on_event(self, ev):
        if self.out is not None:
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.abort()
                return
            if not ev & EPOLLOUT:
                return
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return
            except OSError:
                self.abort()
                return
            self.out = self.out[n:] or None
            if self.out is None:
                self.loop.modify(self.fd, EPOLLIN)
            return
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.abort()

    def on_timeout(self, now):
        self.abort()

    def abort(self):
        if self.closed:
            return
        self.closed = True
        self.loop.timed.discard(self)
        self.loop.unregister(self.fd)
        self.sock.close()
