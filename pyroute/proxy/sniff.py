"""A new connection before it is a ClientConn: TLS or plain, then the TLS handshake.

Traefik serves TLS and non-TLS routers on one entry point and tells them apart by the first
byte of the connection (``pkg/server/router/tcp/router.go``: 0x16, a TLS handshake record, or
0x80, an SSLv2-style hello that the handshake then refuses). ``Sniffer`` peeks the first bytes
once (``TLSConfig.accept``): a plain connection becomes a ``ClientConn`` on the socket at once;
a TLS one gets the TLS option its ClientHello's SNI maps to (waiting with SO_RCVLOWAT while the
hello is incomplete), goes through the non-blocking handshake, then becomes a ``ClientConn`` on
a ``TLSStream`` with the TLS side of the entry point. The entry point's
readTimeout bounds all of it (Go's ReadTimeout covers the handshake). A refused or failed
handshake is closed and logged at debug level with its reason ("http: TLS handshake error" in
Traefik).
"""
import socket

from .. import tls
from ..server.log import log
from ..server.loop import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, ET_EVENTS
from .._engine.conn import ClientConn
from .._engine.h2 import H2Conn, PREFACE
from .._engine import proxyproto

_MSG_PEEK = socket.MSG_PEEK

# events that can make a peek or a handshake read progress (bytes, EOF, an error)
_READ_EVENTS = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR
_HUP_EVENTS = EPOLLRDHUP | EPOLLHUP | EPOLLERR


class Sniffer:
    """Registered once, edge-triggered, with the events a ClientConn uses: the ClientConn that
    follows takes the registration over (no epoll_ctl between sniffing and serving), and closing
    the socket takes it out of the epoll set."""

    __slots__ = ("env", "loop", "ep", "tls_ep", "sock", "fd", "remote_ip", "conn", "wait",
                 "deadline", "hello_wait", "pp", "remote_port")

    def __init__(self, env, ep, tls_ep, sock, remote_ip, remote_port=0):
        self.env = env
        self.remote_port = remote_port   # the access log's ClientPort
        self.loop = env.loop
        self.ep = ep
        self.tls_ep = tls_ep
        self.sock = sock
        self.fd = sock.fileno()
        self.remote_ip = remote_ip
        self.conn = None            # the TLSStream once the ClientHello is there
        self.hello_wait = False     # the ClientHello was incomplete: SO_RCVLOWAT is set
        # proxyProtocol on the entry point: a PROXY header may come first (before TLS/HTTP)
        self.pp = ep.proxy_protocol is not None
        self.wait = _READ_EVENTS    # the events that can move this connection on
        self.loop.register(self.fd, ET_EVENTS, self)
        rt = ep.read_timeout
        self.deadline = self.loop.now + rt if rt else 0.0
        self.loop.timed.add(self)

    def on_event(self, ev):
        if not ev & self.wait:
            return                  # e.g. the first edge: writable, before the ClientHello
        if self.pp and not self._proxy_header(ev):
            return
        if self.conn is None:
            # One peek tells TLS from plain and, for TLS, reads the SNI of the ClientHello.
            try:
                conn = self.env.snapshot.tls[self.ep.name].accept(self.sock, self.hello_wait)
            except tls.TLSRefused as e:
                self._refuse(e.reason)
                return
            if conn is None:
                self.hello_wait = True   # the rest of the ClientHello is on its way
                return
            if conn is tls.PLAIN:
                if self.ep.http2 and not self._h2c_sniffed(ev):
                    return
                self._hand_over(self.ep, self.sock, False, ev)
                return
            self.conn = conn
        try:
            want = self.conn.handshake()
        except tls.TLSRefused as e:
            self._refuse(e.reason)
            return
        # edge-triggered: OpenSSL said so after a read or write that would block, so an edge
        # of that kind will come
        if want == tls.WANT_READ:
            self.wait = _READ_EVENTS
        elif want == tls.WANT_WRITE:
            self.wait = EPOLLOUT | EPOLLHUP | EPOLLERR
        else:
            self._hand_over(self.tls_ep, self.conn, True, ev)

    def _h2c_sniffed(self, ev):
        """HTTP/2 with prior knowledge (RFC 9113 §3.3) on a plain entry point that serves
        HTTP/2 (the default): the connection preface instead of a request line, told from the
        bytes the TLS test just peeked (no syscall more for an HTTP/1.1 connection). True:
        serve it as HTTP/1.1; False: it was handed to an H2Conn, or the first bytes are a
        prefix of the preface: wait for more (the next edge peeks again)."""
        data = tls.TLSConfig.plain_peek(len(PREFACE))
        if len(data) < len(PREFACE) and PREFACE.startswith(data) and not ev & _HUP_EVENTS:
            return False
        if data == PREFACE:
            self.loop.timed.discard(self)
            self.env.clients.discard(self)
            h2 = H2Conn(self.env, self.ep, self.sock, self.remote_ip, False, True)
            h2.remote_port = self.remote_port
            self.env.clients.add(h2)
            try:
                h2.start()
            except Exception as e:
                self.loop._fail(h2, e)
            return False
        return True

    def _hand_over(self, ep, stream, is_tls=False, ev=0):
        self.loop.timed.discard(self)
        self.env.clients.discard(self)
        if is_tls and ep.http2 and stream.conn.get_alpn_proto_negotiated() == b"h2":
            # ALPN picked h2 (only offered where http2 is enabled)
            h2 = H2Conn(self.env, ep, stream, self.remote_ip, True, True)
            h2.remote_port = self.remote_port
            self.env.clients.add(h2)
            try:
                h2.start()
            except Exception as e:
                self.loop._fail(h2, e)
            return
        client = ClientConn(self.env, ep, stream, self.remote_ip, is_tls, True)
        client.remote_port = self.remote_port
        self.env.clients.add(client)
        # Bytes already there (the peeked request; a request that came with the client's
        # Finished) make no new edge: read now. The edge's hang-up bits go along: a request
        # that came with the client's FIN makes no later edge either, so the connection must
        # read on to the EOF now (or it would wait for the idle timeout)
        try:
            client.on_event(EPOLLIN | (ev & _HUP_EVENTS))
        except Exception as e:   # as the loop does for a handler that raises
            self.loop._fail(client, e)

    def _proxy_header(self, ev):
        """The PROXY protocol header (entry point ``proxyProtocol``), as Traefik reads it with
        go-proxyproto before its TLS/HTTP routing: peeked (so TLS and HTTP see the stream
        untouched when there is none), parsed by the engine (``proxyproto.parse``), then
        exactly its bytes consumed. From a peer in ``trustedIPs`` (or any peer with
        ``insecure``) its source address becomes the client's — X-Forwarded-For, X-Real-Ip,
        ClientIP rules and ipAllowList see it; from any other peer it is read and ignored
        (go-proxyproto IGNORE: the header still has to be valid). No header: the connection
        goes on as it is (policy USE). A malformed one closes the connection. True: go on to
        the TLS/HTTP sniff now; False: wait for the next edge (or closed)."""
        try:
            data = self.sock.recv(proxyproto.MAX_HEADER, _MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.close()
            return False
        if not data:
            self.close()            # EOF before anything
            return False
        try:
            got = proxyproto.parse(data)
        except ValueError as e:
            log("debug", "invalid PROXY protocol header", entryPointName=self.ep.name,
                remoteAddr=self.remote_ip.decode("ascii", "replace"), error=str(e))
            self.close()
            return False
        if got is None:
            return False            # the rest of the header (or of its signature) is coming
        n, ip = got
        self.pp = False
        if not n:
            return True
        try:
            self.sock.recv(n)       # exactly the header: it is all there (peeked)
        except OSError:
            self.close()
            return False
        if ip is not None and self.ep.proxy_trusted(self.remote_ip):
            self.remote_ip = ip
        # more bytes already there: sniff them now; else the next edge brings them (or the
        # FIN that came with the header: read on)
        return len(data) > n or bool(ev & _HUP_EVENTS)

    def _refuse(self, reason):
        log("debug", "TLS handshake error", entryPointName=self.ep.name,
            remoteAddr=self.remote_ip.decode("ascii", "replace"), error=reason)
        self.close()

    def on_timeout(self, now):
        self.close()

    def is_idle(self):
        return True        # no request started yet: draining closes it

    def close(self):
        self.loop.forget(self.fd)       # closing the socket takes it out of the epoll set
        self.loop.timed.discard(self)
        self.env.clients.discard(self)
        self.sock.close()

    abort = close
