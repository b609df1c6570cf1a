"""A tiny selectors-based TLS server for the tests of pyroute.tls, and client helpers.

It uses pyroute.tls exactly as a worker does: first-byte sniff, TLSConfig.accept (ClientHello
peek), non-blocking handshake driving, then one HTTP/1.1 exchange per request on keep-alive,
answering 421 when TLSConfig.is_misdirected says so. The response body is JSON describing the
connection (option, served certificate, protocol, ALPN, client certificate) so that tests can
assert what the server saw. Clients are the stdlib ``ssl`` module (OpenSSL underneath), a real
peer that shares no code with pyroute.tls.
"""
import json
import selectors
import socket
import ssl
import threading
import time
import warnings

from cryptography.x509.oid import NameOID

from pyroute import tls


class Server:
    """Serve ``config`` (a TLSConfig) on 127.0.0.1 in a background thread."""

    def __init__(self, config, port=0):
        self.config = config
        self.refusals = []            # reasons of connections closed by TLSRefused
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.thread = threading.Thread(target=self._run, daemon=True)

    def wait_refusals(self, count, timeout=5.0):
        """The refusal reasons, once ``count`` of them are recorded (the server thread records
        a refusal after the client has already seen the alert or the close)."""
        deadline = time.monotonic() + timeout
        while len(self.refusals) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.refusals)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._wake_w.send(b"x")
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()
        self._wake_w.close()

    # -- the loop -------------------------------------------------------------------------

    def _run(self):
        while not self._stop:
            for key, _ in self.sel.select(1.0):
                if key.data == "wake":
                    return
                if key.data is None:
                    self._accept()
                else:
                    key.data.step()

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            _Conn(self, sock)


class _Conn:
    SNIFF, HELLO, HANDSHAKE, REQUEST = range(4)

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.tls = None
        self.state = self.SNIFF
        self.stream = None
        self.closing = False
        self.hello_wait = False
        self.buf = b""
        self.out = b""
        self.registered = selectors.EVENT_READ
        server.sel.register(sock, selectors.EVENT_READ, self)

    def close(self, reason=None):
        if reason is not None:
            self.server.refusals.append(reason)
        try:
            self.server.sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        if self.stream is not None:
            self.stream.close()
        else:
            self.sock.close()

    def want(self, events):
        if events != self.registered:
            self.server.sel.modify(self.sock, events, self)
            self.registered = events

    def step(self):
        try:
            self._step()
        except tls.TLSRefused as exc:
            self.close(exc.reason)

    def _step(self):
        if self.state == self.SNIFF:
            first = self.sock.recv(1, socket.MSG_PEEK)
            if not first:
                return self.close()
            if not tls.is_tls_record_start(first[0]):
                return self.close("plain connection on a TLS-only harness")
            self.state = self.HELLO
        if self.state == self.HELLO:
            conn = self.server.config.accept(self.sock, again=self.hello_wait)
            if conn is None:
                self.hello_wait = True
                return
            self.tls = conn
            self.state = self.HANDSHAKE
        if self.state == self.HANDSHAKE:
            want = tls.handshake(self.tls)
            if want == tls.WANT_READ:
                return self.want(selectors.EVENT_READ)
            if want == tls.WANT_WRITE:
                return self.want(selectors.EVENT_WRITE)
            self.state = self.REQUEST
            self.stream = self.tls
            self.want(selectors.EVENT_READ)
        if self.out:
            return self._flush()
        # From here on the connection is used as a plain socket would be (what the worker does).
        try:
            data = self.stream.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            return self.close("read failed: %s" % exc)
        if not data:
            return self.close()
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.out += self._respond(head)
            if head.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0"):
                self.closing = True          # HTTP/1.0: the response ends at close
        if self.out:
            self._flush()

    def _flush(self):
        try:
            n = self.stream.send(self.out)
        except BlockingIOError:
            return self.want(selectors.EVENT_WRITE)
        except OSError:
            return self.close()
        self.out = self.out[n:]
        if not self.out and self.closing:
            return self.close()
        self.want(selectors.EVENT_WRITE if self.out else selectors.EVENT_READ)

    def _respond(self, head):
        lines = head.decode("latin-1").split("\r\n")
        host = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "host":
                host = value.strip()
        host_only = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        config = self.server.config
        target = lines[0].split(" ")[1] if " " in lines[0] else "/"
        if target.startswith("/big/"):
            body = b"0123456789abcdef" * (int(target[5:]) // 16)
            return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        if config.is_misdirected(self.tls, host_only):
            body = b"Misdirected Request\n"
            return (b"HTTP/1.1 421 Misdirected Request\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body))
        peer = self.tls.conn.get_peer_certificate(as_cryptography=True)
        cert = config.served_certificate(self.tls)
        info = {
            "option": config.option_name_of(self.tls),
            "certificate": cert.label if cert is not None else None,
            "version": self.tls.conn.get_protocol_version_name(),
            "cipher": self.tls.conn.get_cipher_name(),
            "alpn": (self.tls.conn.get_alpn_proto_negotiated() or b"").decode(),
            "client_cn": (peer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
                          if peer is not None else None),
            "resumed": tls.session_reused(self.tls),
            "group": self.tls.conn.get_group_name(),
        }
        body = json.dumps(info).encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body))


# -- clients ------------------------------------------------------------------------------------

def client_context(ca=None, *, alpn=("http/1.1",), minimum=None, maximum=None, ciphers=None,
                   client_cert=None, verify=True):
    """A stdlib ssl client context trusting ``ca`` (a trustme.CA), or verifying nothing."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify and ca is not None:
        ca.configure_trust(ctx)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    with warnings.catch_warnings():   # TLS 1.0/1.1 clients are deprecated, and tested on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if client_cert is not None:
        client_cert.configure_cert(ctx)
    return ctx


def connect(port, ctx, server_name=None, session=None, timeout=5):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname=server_name, session=session)
    except BaseException:
        sock.close()
        raise


def get(conn, host, path="/"):
    """One request on an established TLS socket; returns (status, json-or-text body)."""
    conn.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("server closed before answering")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        body += conn.recv(65536)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


class Peer:
    """What the client saw of a finished connection."""

    def __init__(self, conn):
        self.der = conn.getpeercert(binary_form=True)
        self.version = conn.version()
        self.cipher = conn.cipher()[0]
        self.alpn = conn.selected_alpn_protocol()
        self.session = conn.session
        self.session_reused = conn.session_reused


def fetch(port, ctx, server_name, host=None, **kw):
    """Connect, handshake, GET /, close: (status, body, Peer)."""
    with connect(port, ctx, server_name, **kw) as conn:
        status, body = get(conn, host or server_name or "127.0.0.1")
        return status, body, Peer(conn)


# -- certificates ---------------------------------------------------------------------------

def pem_pair(leaf):
    """(certFile, keyFile) PEM text of a trustme LeafCert, chain included, as a Secret holds."""
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems).decode()
    return chain, leaf.private_key_pem.bytes().decode()


def certificate_entry(leaf, **extra):
    cert, key = pem_pair(leaf)
    entry = {"certFile": cert, "keyFile": key}
    entry.update(extra)
    return entry


def peer_names(peer):
    """CN and DNS SANs of the certificate the server presented (a Peer)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    cert = x509.load_der_x509_certificate(peer.der)
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        sans = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    return cns, sans
