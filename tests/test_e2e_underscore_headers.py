"""End to end: entry point ``http.underscoreHeadersStrategy`` (Traefik v3.7,
pkg/server/server_entrypoint_tcp.go createHTTPServer): ``keep`` (the default) forwards request
headers whose name holds '_' as they are, ``delete`` removes them before routing
(removeHeadersWithUnderscores), ``reject`` answers 400 Bad Request (rejectHeadersWithUnderscores,
Go's http.Error: the connection stays open). An unknown value stops Traefik from starting."""
import socket
import subprocess
import sys

import pytest

from e2e_backend import Backend
from e2e_support import REPO, Pyroute, backend_service, ingressroute, read_response, request


def manifests(port):
    return backend_service("svc", [port]) + ingressroute("app", [
        # a router that needs a header with an underscore: under delete it cannot match
        ("Host(`a.test`) && Header(`X_Tenant`, `blue`)", "svc", "      priority: 100\n"),
        ("Host(`a.test`)", "svc", ""),
    ])


def send(port, path, fields):
    return request(port, ("GET %s HTTP/1.1\r\nHost: a.test\r\n%s\r\n"
                          % (path, "".join(f + "\r\n" for f in fields))).encode())


def last_request(backend, path):
    return [r for r in backend.requests if r[1] == path][-1]


@pytest.fixture(scope="module")
def backend():
    b = Backend("u")
    yield b
    b.close()


def run(tmp_path, backend, strategy):
    http = "{underscoreHeadersStrategy: %s}" % strategy if strategy else ""
    return Pyroute(tmp_path, manifests(backend.port), http=http, trusted=("127.0.0.1/32",))


@pytest.mark.parametrize("strategy", [None, "keep"])
def test_keep_forwards_underscore_headers(tmp_path, backend, strategy):
    with run(tmp_path, backend, strategy) as p:
        status, _, _ = send(p.port, "/keep", ["X_Custom: 1", "X_Tenant: blue",
                                              "X_Forwarded_Host: h.test", "X-Other: 2"])
        assert status == 200
        _, _, headers, _ = last_request(backend, "/keep")
        assert headers["x_custom"] == "1"
        assert headers["x_tenant"] == "blue"
        # from a trusted peer Traefik keeps a managed X-header's underscore spelling
        assert headers["x_forwarded_host"] == "h.test"
        assert headers["x-other"] == "2"


def test_delete_removes_them_before_routing_and_forwarding(tmp_path, backend):
    with run(tmp_path, backend, "delete") as p:
        status, _, _ = send(p.port, "/delete", ["X_Custom: 1", "X_Tenant: blue",
                                                "X_Forwarded_Host: h.test", "X-Other: 2",
                                                "x_lower: 3"])
        assert status == 200
        _, _, headers, _ = last_request(backend, "/delete")
        for name in ("x_custom", "x_tenant", "x_forwarded_host", "x_lower"):
            assert name not in headers, name
        assert headers["x-other"] == "2"
        # the deleted spelling does not become X-Forwarded-Host either: Traefik sets its own
        assert headers["x-forwarded-host"] == "a.test"


def test_delete_hides_the_header_from_the_router(tmp_path):
    # two backends: the Header(`X_Tenant`) router's and the catch-all's
    blue, rest = Backend("blue"), Backend("rest")
    m = (backend_service("blue", [blue.port]) + "---\n" + backend_service("rest", [rest.port])
         + ingressroute("app", [("Host(`a.test`) && Header(`X_Tenant`, `blue`)", "blue", ""),
                                ("Host(`a.test`)", "rest", "      priority: 1\n")]))
    try:
        for strategy, expect in (("keep", blue), ("delete", rest)):
            sub = tmp_path / strategy
            sub.mkdir()
            with Pyroute(sub, m, http="{underscoreHeadersStrategy: %s}" % strategy) as p:
                status, _, _ = send(p.port, "/route-" + strategy, ["X_Tenant: blue"])
                assert status == 200
                assert [r[1] for r in expect.requests][-1] == "/route-" + strategy
    finally:
        blue.close()
        rest.close()


def test_reject_answers_400_and_keeps_the_connection(tmp_path, backend):
    with run(tmp_path, backend, "reject") as p:
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            s.sendall(b"GET /reject HTTP/1.1\r\nHost: a.test\r\nX_Custom: 1\r\n\r\n")
            status, headers, body, rest = read_response(s)
            assert status == 400
            assert body == b"Bad Request\n"
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert headers["x-content-type-options"] == "nosniff"
            assert "close" not in headers.get("connection", "")
            # Go's http.Error leaves the connection open: the next request is served
            s.sendall(b"GET /after HTTP/1.1\r\nHost: a.test\r\nX-Ok: 1\r\n\r\n")
            status, _, _, _ = read_response(s)
            assert status == 200
        assert not [r for r in backend.requests if r[1] == "/reject"]
        # before routing: a request no router matches is refused, not 404
        status, _, _ = request(p.port, b"GET / HTTP/1.1\r\nHost: nobody.test\r\nA_B: 1\r\n\r\n")
        assert status == 400
        # even the managed X-header spelling an untrusted peer's would have lost
        status, _, _ = send(p.port, "/xff", ["X_Forwarded_For: 192.0.2.7"])
        assert status == 400
        status, _, _ = send(p.port, "/plain", ["X-Custom: 1"])
        assert status == 200


def test_invalid_value_is_a_config_error(tmp_path):
    cfg = tmp_path / "static.yaml"
    cfg.write_text("entryPoints:\n  web:\n    address: ':8000'\n"
                   "    http:\n      underscoreHeadersStrategy: drop\n")
    mdir = tmp_path / "m"
    mdir.mkdir()
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c", str(cfg), str(mdir)],
                         capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert out.returncode == 1
    assert "entryPoints.web.http.underscoreHeadersStrategy" in out.stderr
    assert "invalid underscoreHeadersStrategy value 'drop'" in out.stderr
    # the valid values load without the "ignored" warning the key used to give
    cfg.write_text("entryPoints:\n  web:\n    address: ':8000'\n"
                   "    http:\n      underscoreHeadersStrategy: reject\n")
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c", str(cfg), str(mdir)],
                         capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert "underscoreHeadersStrategy" not in out.stdout + out.stderr
