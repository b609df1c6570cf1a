"""Connections to backends and their per-server pools.

An ``UpstreamConn`` is a thin I/O object: the client connection that owns it for an exchange
drives the protocol (``ClientConn.on_upstream_*``). While idle in its ``Pool`` it stays
registered for reading, so a backend that closes it (or sends anything unasked) is seen at
once and the connection is dropped, never reused. A connection that saw anything odd is closed
by its owner instead of being put back.
"""
import errno
import socket

from ..server.loop import EPOLLIN, EPOLLOUT

_CONNECT_OK = (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK)


class Pool:
    """Idle keep-alive connections to one server (scheme, host, port, transport)."""

    __slots__ = ("addr", "family", "idle", "max_idle", "dial_timeout", "header_timeout",
                 "idle_timeout", "name")

    def __init__(self, addr, family, max_idle, dial_timeout, header_timeout, idle_timeout, name):
        self.addr = addr
        self.family = family
        self.idle = []                   # UpstreamConn, most recently used last
        self.max_idle = max_idle         # ServersTransport maxIdleConnsPerHost (Traefik: 200)
        self.dial_timeout = dial_timeout         # seconds; 0 = none (Traefik: 30s)
        self.header_timeout = header_timeout     # responseHeaderTimeout; 0 = none
        self.idle_timeout = idle_timeout         # idleConnTimeout (Traefik: 90s)
        self.name = name

    def get(self, loop):
        """An idle connection, or a new one being dialled (its ``connecting`` is True)."""
        idle = self.idle
        if idle:
            up = idle.pop()
            up.deadline = 0.0
            return up
        return UpstreamConn(loop, self)

    def put(self, up, now):
        if len(self.idle) >= self.max_idle:
            up.close()
            return
        up.client = None
        up.deadline = now + self.idle_timeout if self.idle_timeout else 0.0
        self.idle.append(up)

    def discard(self, up):
        try:
            self.idle.remove(up)
        except ValueError:
            pass

    def close_all(self):
        for up in self.idle:
            up.close()
        self.idle = []


class UpstreamConn:
    __slots__ = ("loop", "pool", "sock", "fd", "client", "events", "out", "connecting",
                 "deadline", "closed", "_recv", "_send", "reads", "err")

    def __init__(self, loop, pool):
        self.loop = loop
        self.pool = pool
        self.client = None
        self.out = None          # bytes not yet written (backpressure)
        self.closed = False
        self.reads = 0           # responses read on this connection (0: fresh)
        sock = socket.socket(pool.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()
        self._recv = sock.recv
        self._send = sock.send
        err = sock.connect_ex(pool.addr)
        # refused at once (nothing listens on loopback): reported by the first event, which
        # epoll delivers at once for a socket whose connect failed
        self.err = 0 if err in _CONNECT_OK else err
        self.connecting = True
        self.events = EPOLLOUT | EPOLLIN
        loop.register(self.fd, self.events, self)
        self.deadline = loop.now + pool.dial_timeout if pool.dial_timeout else 0.0
        loop.timed.add(self)

    def set_events(self, events):
        if events != self.events and not self.closed:
            self.events = events
            self.loop.modify(self.fd, events)

    def on_event(self, ev):
        if self.connecting:
            err = self.err or self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail_connect(err)
                return
            if not ev & EPOLLOUT and ev & EPOLLIN == 0:
                return
            self.connecting = False
            self.deadline = 0.0
            if self.client is not None:
                self.client.on_upstream_connected(self)
            if self.out is None:
                self.set_events(EPOLLIN)
            if not ev & EPOLLIN:
                return
        if ev & EPOLLOUT and self.out is not None:
            self.flush()
        if ev & ~EPOLLOUT:
            self.on_readable()

    def _fail_connect(self, err):
        client = self.client
        self.close()
        if client is not None:
            client.on_upstream_error(self, 502, "dial: " + errno.errorcode.get(err, str(err)))

    def on_readable(self):
        try:
            data = self._recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            client = self.client
            self.close()
            if client is not None:
                client.on_upstream_error(self, 502, str(e))
            return
        client = self.client
        if client is None:
            # idle in the pool: EOF or unsolicited bytes -> never reuse
            self.pool.discard(self)
            self.close()
            return
        if data:
            client.on_upstream_data(self, data)
        else:
            client.on_upstream_eof(self)

    def write(self, data):
        """Send ``data``; True when all of it left, False when the rest waits for EPOLLOUT."""
        if self.out is not None:
            self.out += data
            return False
        if self.connecting:
            self.out = data
            return False
        try:
            n = self._send(data)
        except BlockingIOError:
            n = 0
        except OSError as e:
            client = self.client
            self.close()
            if client is not None:
                client.on_upstream_error(self, 502, str(e))
            return False
        if n == len(data):
            return True
        self.out = data[n:]
        self.set_events(self.events | EPOLLOUT)
        return False

    def flush(self):
        data = self.out
        try:
            n = self._send(data)
        except BlockingIOError:
            return
        except OSError as e:
            client = self.client
            self.close()
            if client is not None:
                client.on_upstream_error(self, 502, str(e))
            return
        if n < len(data):
            self.out = data[n:]
            return
        self.out = None
        self.set_events(self.events & ~EPOLLOUT)
        if self.client is not None:
            self.client.on_upstream_drained(self)

    def on_timeout(self, now):
        client = self.client
        if self.connecting:
            self.close()
            if client is not None:
                client.on_upstream_error(self, 504, "dial timeout")
            return
        if client is None:          # idle too long in the pool
            self.pool.discard(self)
            self.close()
            return
        self.close()
        client.on_upstream_error(self, 504, "response header timeout")

    def abort(self):
        client = self.client
        self.pool.discard(self)
        self.close()
        if client is not None:
            client.abort()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.deadline = 0.0
        self.loop.timed.discard(self)
        self.loop.unregister(self.fd)
        try:
            self.sock.close()
        except OSError:
            pass
