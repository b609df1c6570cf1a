"""End to end: a response pyroute answers itself (middleware answer, router miss, 503, a
request whose body it did not read) that is the last one on its connection says
``Connection: close``, as Go's server writes it when it closes after the reply — whatever ends
the connection: the client's ``Connection: close``, HTTP/1.0 without keep-alive,
``keepAliveMaxRequests``, draining. Local answers that keep the connection say nothing and
leave it usable; a HEAD request gets no body."""
import json
import signal
import socket
import time

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response

MANIFESTS = """---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: to-https, namespace: default}
spec: {redirectScheme: {scheme: https}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: nobody, namespace: default}
spec: {ipAllowList: {sourceRange: [192.0.2.0/24]}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: main, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - {match: Host(`a.test`), kind: Rule, services: [{name: svc-a, port: 80}]}
    - match: Host(`redirect.test`)
      kind: Rule
      middlewares: [{name: to-https}]
      services: [{name: svc-a, port: 80}]
    - match: Host(`denied.test`)
      kind: Rule
      middlewares: [{name: nobody}]
      services: [{name: svc-a, port: 80}]
    - match: Host(`zero.test`)
      kind: Rule
      services: [{name: svc-a, port: 80, weight: 0}, {name: svc-a, port: 80, weight: 0}]
"""

# host -> the status pyroute answers itself
LOCAL = {"redirect.test": 302, "denied.test": 403, "nowhere.test": 404, "zero.test": 503}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("close")
    a = Backend("a")
    proxy = Pyroute(tmp, backend_service("svc-a", [a.port]) + MANIFESTS, workers=1)
    proxy.static.write_text(proxy.static.read_text().replace(
        "    transport:\n", "    transport:\n      keepAliveMaxRequests: 3\n"))
    proxy.start()
    yield {"port": proxy.port, "proxy": proxy}
    proxy.stop()
    a.close()


def _closed(s):
    s.settimeout(5)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


def _exchange(port, raw, head=False):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(raw)
        status, hdrs, body, rest = read_response(s, head)
        return status, hdrs, rest, _closed(s)


def test_client_connection_close(env):
    for host, code in LOCAL.items():
        status, hdrs, rest, closed = _exchange(
            env["port"], b"GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            % host.encode())
        assert (status, hdrs.get("connection"), rest, closed) == (code, "close", b"", True), \
            host


def test_http10_without_keep_alive(env):
    for host, code in LOCAL.items():
        status, hdrs, _, closed = _exchange(
            env["port"], b"GET /x HTTP/1.0\r\nHost: %s\r\n\r\n" % host.encode())
        assert (status, hdrs.get("connection"), closed) == (code, "close", True), host


def test_request_body_not_read(env):
    # pyroute answers without reading the body: the connection cannot be reused, and says so
    for host, code in dict(LOCAL, **{"redirect.test": 307}).items():     # POST: 307
        status, hdrs, _, closed = _exchange(
            env["port"], b"POST /x HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello"
            % host.encode())
        assert (status, hdrs.get("connection"), closed) == (code, "close", True), host


def test_keep_alive_max_requests(env):
    # keepAliveMaxRequests: 3 — the third response closes, whoever answers it
    for host, code in LOCAL.items():
        with socket.create_connection(("127.0.0.1", env["port"])) as s:
            for i in range(2):
                s.sendall(b"GET /k%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i)
                status, hdrs, body, _ = read_response(s)
                assert status == 200 and "connection" not in hdrs
            s.sendall(b"GET /last HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
            status, hdrs, _, rest = read_response(s)
            assert (status, hdrs.get("connection"), rest) == (code, "close", b""), host
            assert _closed(s), host


def test_local_answers_that_keep_the_connection_say_nothing(env):
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        for host, code in (("denied.test", 403), ("nowhere.test", 404)):
            s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
            status, hdrs, _, rest = read_response(s)
            assert (status, hdrs.get("connection"), rest) == (code, None, b"")
        s.sendall(b"GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n")
        status, hdrs, body, _ = read_response(s)
        assert status == 200 and json.loads(body)["target"] == "/after"


def test_head_gets_no_body_from_a_middleware_answer(env):
    # ipAllowList's 403 to a HEAD request: the head only, so the pipelined GET after it is
    # read as its own response
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: denied.test\r\n\r\n"
                  b"GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n")
        s.settimeout(10)
        data = b""
        while data.count(b"\r\n\r\n") < 2 or not data.endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        first, second = data.split(b"\r\n\r\n", 1)
        assert first.startswith(b"HTTP/1.1 403 ") and b"Content-Length: 9" in first
        assert second.startswith(b"HTTP/1.1 200 OK\r\n"), data
        assert json.loads(second.split(b"\r\n\r\n", 1)[1])["target"] == "/next"


def test_draining_worker_answers_a_late_request_with_connection_close(tmp_path):
    # A request whose head completes after SIGTERM (the connection was not idle: a partial
    # head was buffered) is answered, and the answer closes the connection
    a = Backend("a")
    proxy = Pyroute(tmp_path, backend_service("svc-a", [a.port]) + MANIFESTS, workers=1)
    try:
        proxy.start()
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.sendall(b"GET /d HTTP/1.1\r\nHost: denied.test\r\n")
            time.sleep(0.3)
            proxy.signal(signal.SIGTERM)
            time.sleep(1.0)           # the worker's drain check has run
            s.sendall(b"\r\n")
            status, hdrs, _, rest = read_response(s)
            assert (status, hdrs.get("connection"), rest) == (403, "close", b"")
            assert _closed(s)
    finally:
        proxy.stop()
        a.close()
