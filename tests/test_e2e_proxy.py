"""End to end: ``pyroute run`` with real backends on loopback — routing, middlewares,
keep-alive, pipelining, bodies, errors, timeouts, upgrades, load balancing."""
import json
import socket
import time

import pytest

from e2e_backend import Backend
from e2e_support import (Pyroute, backend_service, free_port, get, ingressroute, read_response,
                         request)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy")
    a, b, c = Backend("a"), Backend("b"), Backend("c")
    b2 = Backend("b", host="127.0.0.2")     # b's twin on another IP, for two-server services
    dead = free_port()          # nothing listens there: 502
    hang = socket.socket()      # accepts, never answers: 504
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    m = backend_service("svc-a", [a.port]) + "---\n" + backend_service("svc-b", [b.port])
    m += "---\n" + backend_service("svc-ab", [a.port, ("127.0.0.2", b2.port)])
    m += "---\n" + backend_service("svc-dead", [dead])
    m += "---\n" + backend_service("svc-hang", [hang.getsockname()[1]])
    m += "---\n" + backend_service("svc-c", [c.port])
    m += """---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: quick, namespace: default}
spec:
  forwardingTimeouts: {responseHeaderTimeout: 1s}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: strip, namespace: default}
spec: {stripPrefix: {prefixes: [/strip]}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: add, namespace: default}
spec: {addPrefix: {prefix: /added}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: hdrs, namespace: default}
spec:
  headers:
    customRequestHeaders: {X-Custom-Req: yes-req, User-Agent: ""}
    customResponseHeaders: {X-Custom-Resp: yes-resp, X-Backend: ""}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: to-https, namespace: default}
spec: {redirectScheme: {scheme: https, permanent: true}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: nobody, namespace: default}
spec: {ipAllowList: {sourceRange: [192.0.2.0/24]}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: loopback, namespace: default}
spec: {ipAllowList: {sourceRange: [127.0.0.1/32]}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: unknown-kind, namespace: default}
spec: {plugin: {nosuch: {a: b}}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: main, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - {match: Host(`a.test`), kind: Rule, services: [{name: svc-a, port: 80}]}
    - {match: Host(`b.test`), kind: Rule, services: [{name: svc-b, port: 80}]}
    - {match: Host(`c.test`), kind: Rule, services: [{name: svc-c, port: 80}]}
    - match: Host(`a.test`) && PathPrefix(`/strip`)
      kind: Rule
      middlewares: [{name: strip}, {name: hdrs}]
      services: [{name: svc-a, port: 80}]
    - match: Host(`a.test`) && PathPrefix(`/v1`)
      kind: Rule
      middlewares: [{name: add}]
      services: [{name: svc-a, port: 80}]
    - match: Host(`redirect.test`)
      kind: Rule
      middlewares: [{name: to-https}]
      services: [{name: svc-a, port: 80}]
    - match: Host(`denied.test`)
      kind: Rule
      middlewares: [{name: nobody}]
      services: [{name: svc-a, port: 80}]
    - match: Host(`allowed.test`)
      kind: Rule
      middlewares: [{name: loopback}]
      services: [{name: svc-a, port: 80}]
    - match: Host(`unknown.test`)
      kind: Rule
      middlewares: [{name: unknown-kind}]
      services: [{name: svc-a, port: 80}]
    - {match: Host(`rr.test`), kind: Rule, services: [{name: svc-ab, port: 80}]}
    - match: Host(`sticky.test`)
      kind: Rule
      services: [{name: svc-ab, port: 80, sticky: {cookie: {httpOnly: true}}}]
    - match: Host(`weighted.test`)
      kind: Rule
      services:
        - {name: svc-a, port: 80, weight: 3}
        - {name: svc-b, port: 80, weight: 1}
    - {match: Host(`dead.test`), kind: Rule, services: [{name: svc-dead, port: 80}]}
    - match: Host(`hang.test`)
      kind: Rule
      services: [{name: svc-hang, port: 80, serversTransport: quick}]
"""
    proxy = Pyroute(tmp, m, workers=1)
    proxy.start()
    yield {"port": proxy.port, "a": a, "b": b, "b2": b2, "c": c, "proxy": proxy}
    proxy.stop()
    for be in (a, b, b2, c):
        be.close()
    hang.close()


def echo(body):
    return json.loads(body)


def headers_of(doc):
    return {k.lower(): v for k, v in doc["headers"]}


def test_routes_by_host_and_answers_404_otherwise(env):
    status, hdrs, body = get(env["port"], "/x", "a.test")
    assert status == 200 and echo(body)["backend"] == "a" and echo(body)["target"] == "/x"
    status, _, body = get(env["port"], "/y?q=1", "b.test")
    assert status == 200 and echo(body)["backend"] == "b" and echo(body)["target"] == "/y?q=1"
    status, hdrs, body = get(env["port"], "/", "nowhere.test")
    assert status == 404 and body == b"404 page not found\n"
    # no TLS router on the entry point: `pyroute run` says plain HTTP only
    out = env["proxy"].output()
    assert "entry point web listening on http://127.0.0.1:%d\n" % env["port"] in out
    assert "https://" not in out


def test_forwarded_headers_and_hop_by_hop(env):
    status, _, body = get(env["port"], "/", "a.test",
                          "X-Forwarded-For: 6.6.6.6\r\nConnection: keep-alive, X-Drop\r\n"
                          "X-Drop: 1\r\nKeep-Alive: 5\r\n")
    h = headers_of(echo(body))
    assert h["x-forwarded-for"] == "127.0.0.1"           # untrusted peer: its value dropped
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "a.test"
    assert "x-drop" not in h and "keep-alive" not in h and "connection" not in h
    assert h["host"] == "a.test"                         # passHostHeader (default true)


def test_strip_prefix_and_custom_headers(env):
    status, hdrs, body = get(env["port"], "/strip/inner?x=1", "a.test", "User-Agent: t\r\n")
    doc = echo(body)
    h = headers_of(doc)
    assert doc["target"] == "/inner?x=1"
    assert h["x-forwarded-prefix"] == "/strip"
    assert h["x-custom-req"] == "yes-req"
    assert "user-agent" not in h                          # "" removes the header
    assert hdrs["x-custom-resp"] == "yes-resp"
    assert "x-backend" not in hdrs


def test_add_prefix(env):
    _, _, body = get(env["port"], "/v1/items", "a.test")
    assert echo(body)["target"] == "/added/v1/items"


def test_redirect_scheme(env):
    status, hdrs, body = get(env["port"], "/p?q=1", "redirect.test:8080")
    assert status == 301
    assert hdrs["location"] == "https://redirect.test/p?q=1"


def test_ip_allow_list(env):
    assert get(env["port"], "/", "denied.test")[0] == 403
    assert get(env["port"], "/", "allowed.test")[0] == 200


def test_unknown_middleware_kind_disables_its_router_with_an_error(env):
    assert get(env["port"], "/", "unknown.test")[0] == 404
    out = env["proxy"].output()
    assert "unknown-kind" in out and "unknown plugin type: nosuch" in out


def test_keep_alive_both_sides(env):
    c = env["c"]
    before = c.connections
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        for i in range(20):
            s.sendall(b"GET /k%d HTTP/1.1\r\nHost: c.test\r\n\r\n" % i)
            status, hdrs, body, rest = read_response(s)
            assert status == 200 and echo(body)["target"] == "/k%d" % i
            assert rest == b""
    # twenty requests over one backend connection (the pool kept it)
    assert c.connections - before <= 1


def test_pipelined_requests_answered_in_order(env):
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        s.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i for i in range(5))
                  + b"GET /nope HTTP/1.1\r\nHost: nowhere.test\r\n\r\n"
                  + b"POST /p6 HTTP/1.1\r\nHost: b.test\r\nContent-Length: 3\r\n\r\nabc")
        rest = b""
        targets = []
        for i in range(7):
            s.settimeout(10)
            status, hdrs, body, rest = _read_buffered(s, rest)
            targets.append((status, echo(body)["target"] if status == 200 else None))
        assert targets == [(200, "/p%d" % i) for i in range(5)] + [(404, None), (200, "/p6")]


def _read_buffered(s, rest):
    class Pre:
        def __init__(self, sock, data):
            self.sock, self.data = sock, data

        def settimeout(self, t):
            self.sock.settimeout(t)

        def recv(self, n):
            if self.data:
                d, self.data = self.data, b""
                return d
            return self.sock.recv(n)
    return read_response(Pre(s, rest))


def test_request_bodies_content_length_and_chunked(env):
    body = b"x" * 300000
    status, _, resp = request(env["port"], b"POST /cl HTTP/1.1\r\nHost: a.test\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert status == 200 and echo(resp)["body"] == body.decode()
    chunks = b"".join(b"%x\r\n" % 1000 + b"y" * 1000 + b"\r\n" for _ in range(50)) + b"0\r\n\r\n"
    status, _, resp = request(env["port"], b"POST /ch HTTP/1.1\r\nHost: a.test\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    doc = echo(resp)
    assert status == 200 and doc["body"] == "y" * 50000
    assert headers_of(doc)["transfer-encoding"] == "chunked"


def test_response_bodies_length_chunked_and_until_close(env):
    status, hdrs, body = get(env["port"], "/big/2000000", "a.test")
    assert status == 200 and len(body) == 2000000 and hdrs["content-length"] == "2000000"
    status, hdrs, body = get(env["port"], "/chunked/5500", "a.test")
    assert status == 200 and body == b"c" * 5500 and hdrs["transfer-encoding"] == "chunked"
    # until-close body: re-chunked for an HTTP/1.1 client ...
    status, hdrs, body = get(env["port"], "/close/7000", "a.test")
    assert status == 200 and body == b"z" * 7000 and hdrs["transfer-encoding"] == "chunked"
    # ... and sent until close to an HTTP/1.0 client
    status, hdrs, body = request(env["port"], b"GET /chunked/3000 HTTP/1.0\r\nHost: a.test\r\n\r\n")
    assert status == 200 and body == b"c" * 3000 and "transfer-encoding" not in hdrs


def test_slow_reader_gets_every_byte(env):
    # backpressure: the client reads slowly; pyroute must neither lose nor buffer it all
    n = 8 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % n)
        time.sleep(1.0)
        status, hdrs, body, _ = read_response(s, timeout=30)
    assert status == 200 and len(body) == n


def test_head_204_304(env):
    status, hdrs, body = request(env["port"], b"HEAD /big/1234 HTTP/1.1\r\nHost: a.test\r\n\r\n",
                                 head_request=True)
    assert status == 200 and hdrs["content-length"] == "1234" and body == b""
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        for code in (204, 304):
            s.sendall(b"GET /status/%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % code)
            status, hdrs, body, rest = read_response(s)
            assert status == code and body == b"" and rest == b""
        s.sendall(b"GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n")
        assert echo(read_response(s)[2])["target"] == "/after"


def test_expect_100_continue(env):
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        s.sendall(b"POST /continue HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        s.settimeout(5)
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        rest = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        s.sendall(b"hello")
        status, _, body, _ = _read_buffered(s, rest)
        assert status == 200 and echo(body)["body"] == "hello"


def test_websocket_upgrade_is_tunnelled(env):
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\n"
                  b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        status, hdrs, _, rest = read_response(s)
        assert status == 101 and hdrs["upgrade"] == "websocket"
        for msg in (b"ping-1", b"x" * 100000):
            s.sendall(msg)
            got = rest
            rest = b""
            while len(got) < len(msg):
                got += s.recv(65536)
            assert got == msg


def test_backend_errors_502_504_and_codec_errors(env):
    status, hdrs, body = get(env["port"], "/", "dead.test")
    assert status == 502 and body == b"Bad Gateway\n"
    t0 = time.time()
    status, _, body = get(env["port"], "/", "hang.test")
    assert status == 504 and body == b"Gateway Timeout\n"
    assert 0.9 <= time.time() - t0 < 3.5
    assert request(env["port"], b"GET / HTTP/1.1\r\nHost: a.test\r\nBad Header\r\n\r\n")[0] == 400
    assert request(env["port"], b"GET / HTTP/2.0\r\nHost: a.test\r\n\r\n")[0] == 505
    assert request(env["port"], b"GET / HTTP/1.1\r\nHost: a.test\r\n"
                   b"Transfer-Encoding: xchunked\r\n\r\n")[0] == 501
    # Go bounds the head by maxHeaderBytes (+4096) only: a long line or many lines under it
    # are served, a head over it is 431
    assert request(env["port"], b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a.test\r\n\r\n")[0] == 200
    assert request(env["port"], b"GET / HTTP/1.1\r\nHost: a.test\r\n"
                   + b"X-A: b\r\n" * 200 + b"\r\n")[0] == 200
    assert request(env["port"], b"GET /" + b"a" * ((1 << 20) + 5000)
                   + b" HTTP/1.1\r\nHost: a.test\r\n\r\n")[0] == 431
    # the worker survived all of it
    assert get(env["port"], "/still", "a.test")[0] == 200


def test_weighted_round_robin_over_servers_and_services(env):
    seen = [echo(get(env["port"], "/", "rr.test")[2])["backend"] for _ in range(6)]
    assert sorted(seen) == ["a", "a", "a", "b", "b", "b"]
    seen = [echo(get(env["port"], "/", "weighted.test")[2])["backend"] for _ in range(8)]
    assert seen.count("a") == 6 and seen.count("b") == 2


def test_sticky_cookie_keeps_a_client_on_one_server(env):
    import hashlib
    status, hdrs, body = get(env["port"], "/", "sticky.test")
    first = echo(body)["backend"]
    cookie = hdrs["set-cookie"]
    name, rest = cookie.split("=", 1)
    value = rest.split(";")[0]
    assert "HttpOnly" in cookie and "Path=/" in cookie
    assert len(name) == 6 and name.startswith("_")       # Traefik's hashed default name
    url = ("http://127.0.0.1:%d" % env["a"].port) if first == "a" else (
        "http://127.0.0.2:%d" % env["b2"].port)
    assert value == hashlib.sha256(url.encode()).hexdigest()[:16]
    for _ in range(4):
        status, hdrs, body = get(env["port"], "/", "sticky.test", "Cookie: %s=%s\r\n" % (name, value))
        assert echo(body)["backend"] == first
        assert "set-cookie" not in hdrs


def test_streamed_response_reaches_the_client_as_it_comes(env):
    # flushInterval: pyroute holds no response bytes back, each chunk leaves as it arrives
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        s.sendall(b"GET /drip/5/300 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        s.settimeout(5)
        t0 = time.time()
        data = b""
        while b"drip00" not in data:
            data += s.recv(65536)
        assert time.time() - t0 < 1.0          # the whole body takes 1.5 s
        status, hdrs, body, _ = _read_buffered(s, data)
        assert body == b"".join(b"drip%02d" % i for i in range(5))


def test_entry_point_normalisation(env):
    # dot segments and repeated slashes cleaned (sanitizePath), unreserved escapes decoded,
    # ';' in the query read as '&' (Go's AllowQuerySemicolons), '#' refused
    _, _, body = get(env["port"], "/a/../b//c/./%7Ed?x=1;y=2", "a.test")
    assert echo(body)["target"] == "/b/c/~d?x=1&y=2"
    assert request(env["port"], b"GET /a#b HTTP/1.1\r\nHost: a.test\r\n\r\n")[0] == 400
    # encoded characters allowed by default (Traefik >= v3.6.7): %2F reaches the backend as is
    _, _, body = get(env["port"], "/x%2Fy", "a.test")
    assert echo(body)["target"] == "/x%2Fy"
    _, _, body = get(env["port"], "/x%25y", "a.test")
    assert echo(body)["target"] == "/x%25y"
