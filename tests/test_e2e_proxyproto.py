"""End to end: entry point ``proxyProtocol`` (PROXY v1/v2 before HTTP or TLS), as Traefik reads
it with go-proxyproto: a header from a peer in trustedIPs (or any peer with insecure) sets the
client address that X-Forwarded-For, X-Real-Ip, ClientIP rules and ipAllowList see; from any
other peer it is read and ignored; a malformed header closes the connection."""
import json
import socket
import ssl

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response
from pyroute._engine.proxyproto import v1_header, v2_header

MANIFESTS = """
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: only-203, namespace: default}
spec:
  ipAllowList:
    sourceRange: ["203.0.113.7/32"]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: main, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.test`)
      kind: Rule
      services: [{name: svc, port: 80}]
    - match: Host(`ip.test`) && ClientIP(`203.0.113.0/24`)
      kind: Rule
      services: [{name: svc, port: 80}]
    - match: Host(`allow.test`)
      kind: Rule
      middlewares: [{name: only-203}]
      services: [{name: svc, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: secure, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`tls.test`)
      kind: Rule
      services: [{name: svc, port: 80}]
  tls: {}
"""


def _proxy(tmp, port_backend, pp):
    proxy = Pyroute(tmp, backend_service("svc", [port_backend]) + MANIFESTS, workers=1)
    proxy.static.write_text(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:%d\"\n    proxyProtocol: %s\n"
        "log: {level: DEBUG}\n" % (proxy.port, pp))
    return proxy


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    a = Backend("a")
    trusted = _proxy(tmp_path_factory.mktemp("pp-trusted"), a.port,
                     '{trustedIPs: ["127.0.0.1/32"]}')
    untrusted = _proxy(tmp_path_factory.mktemp("pp-untrusted"), a.port,
                       '{trustedIPs: ["10.0.0.0/8"]}')
    insecure = _proxy(tmp_path_factory.mktemp("pp-insecure"), a.port, "{insecure: true}")
    for p in (trusted, untrusted, insecure):
        p.start()
    yield {"trusted": trusted, "untrusted": untrusted, "insecure": insecure, "a": a}
    for p in (trusted, untrusted, insecure):
        p.stop()
    a.close()


def _exchange(port, prefix, host="a.test", split=False):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        req = b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode()
        if split:
            s.sendall(prefix)
            import time
            time.sleep(0.2)
            s.sendall(req)
        else:
            s.sendall(prefix + req)
        return read_response(s)[:3]


def _seen(body):
    headers = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
    return headers.get("x-forwarded-for"), headers.get("x-real-ip")


V1 = v1_header("203.0.113.7", "127.0.0.1", 40000, 80)
V2 = v2_header("203.0.113.7", "127.0.0.1", 40000, 80)
V2_6 = v2_header("2001:db8::7", "2001:db8::1", 40000, 80)


@pytest.mark.parametrize("prefix,ip", [(V1, "203.0.113.7"), (V2, "203.0.113.7"),
                                       (V2_6, "2001:db8::7")])
@pytest.mark.parametrize("split", [False, True])
def test_a_trusted_peer_sets_the_client_address(env, prefix, ip, split):
    status, _, body = _exchange(env["trusted"].port, prefix, split=split)
    assert status == 200
    assert _seen(body) == (ip, ip)


def test_insecure_trusts_every_peer(env):
    status, _, body = _exchange(env["insecure"].port, V2)
    assert status == 200 and _seen(body) == ("203.0.113.7", "203.0.113.7")


@pytest.mark.parametrize("prefix", [V1, V2])
def test_an_untrusted_peer_header_is_read_and_ignored(env, prefix):
    # the attacker's claimed address decides nothing: the peer's own address is used, and the
    # header bytes never reach the HTTP parser (go-proxyproto IGNORE)
    status, _, body = _exchange(env["untrusted"].port, prefix)
    assert status == 200 and _seen(body) == ("127.0.0.1", "127.0.0.1")
    assert _exchange(env["untrusted"].port, prefix, host="ip.test")[0] == 404
    assert _exchange(env["untrusted"].port, prefix, host="allow.test")[0] == 403


def test_client_ip_rules_and_ip_allow_list_see_the_proxied_address(env):
    port = env["trusted"].port
    assert _exchange(port, V1, host="ip.test")[0] == 200
    assert _exchange(port, b"", host="ip.test")[0] == 404             # no header: the peer
    assert _exchange(port, V2, host="allow.test")[0] == 200
    assert _exchange(port, b"", host="allow.test")[0] == 403
    assert _exchange(port, v1_header("198.51.100.1", "127.0.0.1", 1, 2),
                     host="allow.test")[0] == 403


def test_no_header_from_a_trusted_peer_is_served_as_is(env):
    status, _, body = _exchange(env["trusted"].port, b"")
    assert status == 200 and _seen(body) == ("127.0.0.1", "127.0.0.1")


def test_local_and_unknown_keep_the_peer_address(env):
    for prefix in (b"PROXY UNKNOWN\r\n", v2_header(local=True)):
        status, _, body = _exchange(env["trusted"].port, prefix)
        assert status == 200 and _seen(body) == ("127.0.0.1", "127.0.0.1")


@pytest.mark.parametrize("which", ["trusted", "untrusted"])
@pytest.mark.parametrize("bad", [
    b"PROXY TCP4 203.0.113.7 127.0.0.1 1\r\n",
    b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\n",
    b"PROXY " + b"9" * 120,
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x00\x00\x00",
])
def test_a_malformed_header_closes_the_connection(env, which, bad):
    with socket.create_connection(("127.0.0.1", env[which].port), timeout=5) as s:
        s.sendall(bad + b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass


def test_a_header_before_tls(env):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for which, expected in (("trusted", "203.0.113.7"), ("untrusted", "127.0.0.1")):
        with socket.create_connection(("127.0.0.1", env[which].port), timeout=10) as raw:
            raw.sendall(V2)
            with ctx.wrap_socket(raw, server_hostname="tls.test") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: tls.test\r\n\r\n")
                status, _, body, _ = read_response(s)
        assert status == 200 and _seen(body) == (expected, expected)


def test_a_client_x_forwarded_for_is_not_trusted_because_of_the_header(env):
    # the PROXY peer is trusted for the address, not for forwarded headers
    # (forwardedHeaders.trustedIPs is separate): a client's own X-Forwarded-For is dropped
    with socket.create_connection(("127.0.0.1", env["trusted"].port), timeout=10) as s:
        s.sendall(V1 + b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 10.9.9.9\r\n"
                  b"X-Real-Ip: 10.9.9.9\r\n\r\n")
        status, _, body, _ = read_response(s)
    assert status == 200 and _seen(body) == ("203.0.113.7", "203.0.113.7")
