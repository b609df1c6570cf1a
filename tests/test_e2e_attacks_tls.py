"""pyroute's own TLS attack regression cases, end to end over one ``pyroute run`` process.

Setup: TLS routers only, on the ``web`` entry point (which serves TLS and plain HTTP on one
port): ``shop.test`` with its own certificate and the default TLS option, ``admin.test`` with
its own certificate and a TLS option that requires a client certificate, a catch-all, and the
``/__blocked`` router whose ipAllowList matches nothing (pyroute answers 403: the smuggling
oracle). The backend (tests/e2e_backend.py) logs what reaches it.

What must hold: the certificate follows the SNI; a request whose Host belongs to another TLS
option than its SNI is answered 421 and never forwarded (domain fronting across options,
Traefik's SNICheck); ``/__blocked`` is never forwarded over TLS either, pipelined or not; TLS
1.0/1.1 ClientHellos are refused (Traefik's default minimum is TLS 1.2), checked with ClientHello
bytes written here, so no local OpenSSL policy can make the check pass by itself; TLS routers
are not reachable over plain HTTP.
"""
import os
import socket
import ssl
import struct
import time

import pytest
import trustme

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response
from test_e2e_tls import cert_names, secret, tls_option

SMUGGLED = b"GET /__blocked/admin HTTP/1.1\r\nHost: shop.test\r\n\r\n"


def manifests(port, ca, client_ca):
    out = backend_service("tls-be", [port])
    out += (secret("shop-cert", ca.issue_cert("shop.test"))
            + secret("admin-cert", ca.issue_cert("admin.test"))
            + secret("fallback-cert", ca.issue_cert("fallback.test"))
            + secret("clients", ca_pem=client_ca.cert_pem.bytes())
            + "---\napiVersion: traefik.io/v1alpha1\nkind: TLSStore\n"
              "metadata: {name: default, namespace: default}\n"
              "spec:\n  defaultCertificate: {secretName: fallback-cert}\n"
            + tls_option("mtls", "{clientAuth: {secretNames: [clients], "
                                 "clientAuthType: RequireAndVerifyClientCert}}")
            + """---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: nobody, namespace: default}
spec:
  ipAllowList: {sourceRange: ["198.51.100.7/32"]}
""")
    for name, tls, match, priority, blocked in (
            ("tls-blocked", "{}", "PathPrefix(`/__blocked`)", 500, True),
            ("tls-any", "{}", "PathPrefix(`/`)", 2, False),
            ("tls-shop", "{secretName: shop-cert}", "Host(`shop.test`)", 0, False),
            ("tls-admin", "{secretName: admin-cert, options: {name: mtls}}", "Host(`admin.test`)",
             0, False)):
        out += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
                "metadata: {name: %s, namespace: default}\nspec:\n  entryPoints: [web]\n"
                "  routes:\n    - match: %s\n      kind: Rule\n" % (name, match))
        if priority:
            out += "      priority: %d\n" % priority
        if blocked:
            out += "      middlewares: [{name: nobody}]\n"
        out += "      services: [{name: tls-be, port: 80}]\n  tls: %s\n" % tls
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks-tls")
    ca, client_ca = trustme.CA(), trustme.CA()
    backend = Backend("tls-be")
    proxy = Pyroute(tmp, manifests(backend.port, ca, client_ca), workers=1, read="3s")
    proxy.start()
    try:
        yield proxy, backend, ca, client_ca
    finally:
        proxy.stop()
        backend.close()


def tls_exchange(port, ctx, sni, raw, answers, timeout=5.0):
    """Send ``raw`` over TLS with ``sni``; read ``answers`` responses. (statuses, bodies,
    served certificate's names)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname=sni) as s:
            names = cert_names(s.getpeercert(binary_form=True))
            s.sendall(raw)
            statuses, bodies, rest = [], [], b""
            for _ in range(answers):
                status, _, body, rest = read_response(_Prefixed(s, rest), timeout=timeout)
                statuses.append(status)
                bodies.append(body)
            return statuses, bodies, names


class _Prefixed:
    """A socket whose first recv returns bytes already read (pipelined answers)."""

    def __init__(self, sock, first):
        self.sock, self.first = sock, first

    def settimeout(self, t):
        self.sock.settimeout(t)

    def recv(self, n):
        if self.first:
            data, self.first = self.first, b""
            return data
        return self.sock.recv(n)


def trusting(ca, client_cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    if client_cert is not None:
        client_cert.configure_cert(ctx)
    return ctx


def forwarded_since(backend, start):
    time.sleep(0.1)
    with backend.lock:
        return [r.target for r in backend.received[start:]]


def count(backend):
    with backend.lock:
        return len(backend.received)


def test_certificate_follows_sni(env):
    proxy, backend, ca, _ = env
    start = count(backend)
    statuses, _, names = tls_exchange(proxy.port, trusting(ca), "shop.test",
                                      b"GET /tls-ok HTTP/1.1\r\nHost: shop.test\r\n\r\n", 1)
    assert (statuses, names) == ([200], ["shop.test"])
    assert forwarded_since(backend, start) == [b"/tls-ok"]


def test_domain_fronting_across_tls_options_is_421_and_not_forwarded(env):
    # SNI shop.test (no client certificate needed) with Host admin.test (whose option requires
    # one): the client would reach admin.test without ever showing a certificate.
    proxy, backend, ca, _ = env
    start = count(backend)
    for host in (b"admin.test", b"ADMIN.test:443"):
        statuses, bodies, names = tls_exchange(
            proxy.port, trusting(ca), "shop.test",
            b"GET /fronted HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", 1)
        assert (statuses, names) == ([421], ["shop.test"]), host
    # Absolute-form: the target's authority is the host that counts.
    statuses, _, _ = tls_exchange(proxy.port, trusting(ca), "shop.test",
                                  b"GET https://admin.test/fronted HTTP/1.1\r\n"
                                  b"Host: shop.test\r\n\r\n", 1)
    assert statuses == [421]
    assert forwarded_since(backend, start) == []


def test_option_with_client_auth_refuses_a_handshake_without_certificate(env):
    proxy, backend, ca, client_ca = env
    start = count(backend)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_exchange(proxy.port, trusting(ca), "admin.test",
                     b"GET /mtls HTTP/1.1\r\nHost: admin.test\r\n\r\n", 1)
    assert forwarded_since(backend, start) == []
    statuses, _, names = tls_exchange(proxy.port, trusting(ca, client_ca.issue_cert("me.test")),
                                      "admin.test",
                                      b"GET /mtls HTTP/1.1\r\nHost: admin.test\r\n\r\n", 1)
    assert (statuses, names) == ([200], ["admin.test"])
    assert forwarded_since(backend, start) == [b"/mtls"]


def test_blocked_path_is_never_forwarded_over_tls(env):
    proxy, backend, ca, _ = env
    start = count(backend)
    raw = (b"GET /one HTTP/1.1\r\nHost: shop.test\r\n\r\n" + SMUGGLED
           + b"GET /x/../__blocked HTTP/1.1\r\nHost: shop.test\r\n\r\n"
           + b"GET /three HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    statuses, _, _ = tls_exchange(proxy.port, trusting(ca), "shop.test", raw, 4)
    assert statuses == [200, 403, 403, 200]
    assert forwarded_since(backend, start) == [b"/one", b"/three"]


def test_tls_routers_are_not_reachable_over_plain_http(env):
    proxy, backend, _, _ = env
    start = count(backend)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        assert read_response(s)[0] == 404
    assert forwarded_since(backend, start) == []


def client_hello(version, sni):
    """A ClientHello as bytes: ``version`` (0x0301 TLS 1.0, 0x0302 TLS 1.1, 0x0303 TLS 1.2)
    is the highest version offered (no supported_versions extension), with ECDHE suites that
    version can use, SNI, groups, point formats and signature algorithms."""
    suites = [0xc02b, 0xc02f, 0xc009, 0xc013, 0xc00a, 0xc014, 0x002f, 0x0035]
    name = sni.encode()
    ext = b""
    sni_list = struct.pack("!BH", 0, len(name)) + name
    ext += struct.pack("!HHH", 0, len(sni_list) + 2, len(sni_list)) + sni_list
    groups = struct.pack("!HH", 0x001d, 0x0017)
    ext += struct.pack("!HHH", 10, len(groups) + 2, len(groups)) + groups
    ext += struct.pack("!HHB", 11, 2, 1) + b"\x00"
    sigalgs = struct.pack("!HHHH", 0x0403, 0x0804, 0x0401, 0x0201)
    ext += struct.pack("!HHH", 13, len(sigalgs) + 2, len(sigalgs)) + sigalgs
    ext += struct.pack("!HH", 0xff01, 1) + b"\x00"              # renegotiation_info
    body = (struct.pack("!H", version) + os.urandom(32) + b"\x00"
            + struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", c) for c in suites)
            + b"\x01\x00" + struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_answer(port, hello):
    """'server-hello' (and the version it chose), 'alert', or 'closed'."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(hello)
        data = b""
        try:
            while len(data) < 11:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionError:
            pass
    if data[:1] == b"\x16" and len(data) >= 11 and data[5] == 2:
        return "server-hello", struct.unpack("!H", data[9:11])[0]
    if data[:1] == b"\x15":
        return "alert", None
    assert data == b"", data
    return "closed", None


def test_legacy_tls_versions_are_refused(env):
    proxy, backend, _, _ = env
    start = count(backend)
    # the same bytes offering TLS 1.2 are served: the refusals below are about the version
    assert server_answer(proxy.port, client_hello(0x0303, "shop.test")) == ("server-hello",
                                                                           0x0303)
    for version in (0x0301, 0x0302):
        outcome, _ = server_answer(proxy.port, client_hello(version, "shop.test"))
        assert outcome in ("alert", "closed"), hex(version)
    assert forwarded_since(backend, start) == []
