"""End to end: multi-layer routing (Traefik v3.6 ``parentRefs``) — the parent router matches,
its middlewares run, then one of its children is chosen by its own rule on the request as the
parent's middlewares left it (stripped path, added headers), and the child's middlewares and
service answer; intermediate routers descend again; no matching child is a 404; a parent's
middleware answer comes before any child is looked at; children are never reached without
their parent."""
import json
import socket

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, get, read_response

MANIFESTS = """---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: strip, namespace: default}
spec: {stripPrefix: {prefixes: [/api]}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: tier, namespace: default}
spec: {headers: {customRequestHeaders: {X-Tier: gold}}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: child-mark, namespace: default}
spec: {headers: {customResponseHeaders: {X-Child: admin}}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: nobody, namespace: default}
spec: {ipAllowList: {sourceRange: [192.0.2.0/24]}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: api, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`api.test`)
      kind: Rule
      middlewares: [{name: strip}, {name: tier}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: admin, namespace: default}
spec:
  parentRefs: [{name: api}]
  routes:
    - match: Header(`X-Role`, `admin`)
      kind: Rule
      middlewares: [{name: child-mark}]
      services: [{name: svc-admin, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: users, namespace: default}
spec:
  parentRefs: [{name: api}]
  routes:
    - match: PathPrefix(`/users`)
      kind: Rule
      services: [{name: svc-users, port: 80}]
    - match: Header(`X-Tier`, `gold`) && PathPrefix(`/gold`)
      kind: Rule
      services: [{name: svc-deep, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: mid, namespace: default}
spec:
  parentRefs: [{name: api}]
  routes:
    - match: PathPrefix(`/mid`)
      kind: Rule
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: leaf, namespace: default}
spec:
  parentRefs: [{name: mid}]
  routes:
    - match: PathPrefix(`/mid/leaf`)
      kind: Rule
      services: [{name: svc-deep, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: untier, namespace: default}
spec: {headers: {customRequestHeaders: {X-Tier: ""}}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: api2, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`api2.test`)
      kind: Rule
      middlewares: [{name: tier}, {name: untier}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: api2-children, namespace: default}
spec:
  parentRefs: [{name: api2}]
  routes:
    - match: Header(`X-Tier`, `gold`)
      kind: Rule
      services: [{name: svc-deep, port: 80}]
    - match: PathPrefix(`/`)
      kind: Rule
      services: [{name: svc-users, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: guarded, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`guard.test`)
      kind: Rule
      middlewares: [{name: nobody}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: guarded-child, namespace: default}
spec:
  parentRefs: [{name: guarded}]
  routes:
    - match: PathPrefix(`/`)
      kind: Rule
      services: [{name: svc-users, port: 80}]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multilayer")
    admin, users, deep = Backend("admin"), Backend("users"), Backend("deep")
    m = "---\n".join([backend_service("svc-admin", [admin.port]),
                      backend_service("svc-users", [users.port]),
                      backend_service("svc-deep", [deep.port])]) + MANIFESTS
    proxy = Pyroute(tmp, m, workers=1)
    proxy.start()
    yield {"port": proxy.port, "proxy": proxy}
    proxy.stop()
    for b in (admin, users, deep):
        b.close()


def _doc(body):
    doc = json.loads(body)
    doc["h"] = {k.lower(): v for k, v in doc["headers"]}
    return doc


def test_every_router_loads(env):
    assert "0 error(s)" in env["proxy"].output(), env["proxy"].output()


def test_the_child_is_chosen_on_the_request_as_the_parent_left_it(env):
    # the parent's stripPrefix ran before the children were matched: /users matches /api/users
    status, _, body = get(env["port"], "/api/users/1?q=2", "api.test")
    doc = _doc(body)
    assert status == 200 and doc["backend"] == "users" and doc["target"] == "/users/1?q=2"
    assert doc["h"]["x-forwarded-prefix"] == "/api" and doc["h"]["x-tier"] == "gold"
    # a header the parent's headers middleware sets is seen by a child's rule
    status, _, body = get(env["port"], "/api/gold/x", "api.test")
    assert status == 200 and _doc(body)["backend"] == "deep"


def test_the_child_s_middlewares_and_service_answer(env):
    status, hdrs, body = get(env["port"], "/api/anything", "api.test", "X-Role: admin\r\n")
    doc = _doc(body)
    assert status == 200 and doc["backend"] == "admin" and doc["target"] == "/anything"
    assert hdrs["x-child"] == "admin"                       # the child's own middleware
    assert doc["h"]["x-tier"] == "gold"                     # ... after the parent's


def test_an_intermediate_router_descends_again(env):
    status, _, body = get(env["port"], "/api/mid/leaf/z", "api.test")
    assert status == 200 and _doc(body)["backend"] == "deep"
    assert _doc(body)["target"] == "/mid/leaf/z"
    # the intermediate router matched, none of its children: 404
    assert get(env["port"], "/api/mid/other", "api.test")[0] == 404


def test_no_matching_child_is_a_404_and_children_need_their_parent(env):
    status, _, body = get(env["port"], "/api/nothing", "api.test")
    assert status == 404 and body == b"404 page not found\n"
    # the children's rules alone never route: their parent's Host does not match
    assert get(env["port"], "/users/1", "other.test")[0] == 404
    assert get(env["port"], "/x", "other.test", "X-Role: admin\r\n")[0] == 404


def test_a_parent_middleware_answers_before_any_child(env):
    assert get(env["port"], "/", "guard.test")[0] == 403


def test_keep_alive_through_different_children(env):
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        for path, extra, backend in (("/api/users/a", b"", "users"),
                                     ("/api/x", b"X-Role: admin\r\n", "admin"),
                                     ("/api/mid/leaf", b"", "deep"),
                                     ("/api/none", b"", None),
                                     ("/api/users/b", b"", "users")):
            s.sendall(b"GET %s HTTP/1.1\r\nHost: api.test\r\n%s\r\n" % (path.encode(), extra))
            status, _, body, rest = read_response(s)
            assert rest == b""
            if backend is None:
                assert status == 404
            else:
                assert status == 200 and _doc(body)["backend"] == backend, path


def test_explain_agrees_with_the_server(env):
    # `pyroute explain` walks the same layers: parents' middlewares (answers, stripped path,
    # added headers) before their children are matched
    import subprocess
    import sys
    proxy = env["proxy"]
    cases = [("/api/users/1", {}, "users"), ("/api/gold/x", {}, "users"),
             ("/api/mid/leaf/z", {}, "leaf"), ("/api/x", {"X-Role": "admin"}, "admin"),
             ("/api/nothing", {}, 404), ("/api/mid/other", {}, 404)]
    backends = {"/api/users/1": "users", "/api/gold/x": "deep", "/api/mid/leaf/z": "deep",
                "/api/x": "admin"}
    requests = [{"url": "http://%s:%d%s" % ("api.test", proxy.port, path), "headers": h}
                for path, h, _ in cases]
    requests.append({"url": "http://guard.test:%d/" % proxy.port, "headers": {}})
    cases.append(("/", {}, 403))
    reqfile = proxy.tmp / "explain-requests.jsonl"
    reqfile.write_text("".join(json.dumps(r) + "\n" for r in requests))
    out = subprocess.run([sys.executable, "-m", "pyroute", "explain", "-c", str(proxy.static),
                          str(proxy.mdir), "--requests", str(reqfile)], capture_output=True,
                         text=True, timeout=60)
    answers = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(answers) == len(cases), out.stdout + out.stderr
    for (path, h, expected), res in zip(cases, answers):
        host = "guard.test" if expected == 403 else "api.test"
        extra = "".join("%s: %s\r\n" % kv for kv in h.items())
        status, _, body = get(env["port"], path, host, extra)
        if isinstance(expected, int):
            assert res["status"] == expected == status, (path, res)
        else:
            # explain names the child IngressRoute's router; the server reached its backend
            assert res["status"] is None and res["router"].startswith(
                "default-%s-" % expected), (path, res)
            assert status == 200 and _doc(body)["backend"] == backends[path], path


def test_children_of_a_tls_parent_serve_its_tls_connections(tmp_path):
    # children carry no tls section: they serve the connections their parent serves (Traefik)
    import ssl
    be = Backend("tls-child")
    m = backend_service("be", [be.port]) + """---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: sec, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`sec.test`)
      kind: Rule
  tls: {}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: sec-child, namespace: default}
spec:
  parentRefs: [{name: sec}]
  routes:
    - match: PathPrefix(`/c`)
      kind: Rule
      services: [{name: be, port: 80}]
"""
    proxy = Pyroute(tmp_path, m, workers=1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        proxy.start()
        for path, expected in (("/c/1", 200), ("/other", 404)):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="sec.test") as s:
                    s.sendall(b"GET %s HTTP/1.1\r\nHost: sec.test\r\n\r\n" % path.encode())
                    status, _, body, _ = read_response(s)
            assert status == expected, path
            if expected == 200:
                doc = _doc(body)
                assert doc["backend"] == "tls-child" and doc["h"]["x-forwarded-proto"] == "https"
        # the TLS router and its child serve no plain connection
        assert get(proxy.port, "/c/1", "sec.test")[0] == 404
    finally:
        proxy.stop()
        be.close()


def test_a_later_parent_middleware_removes_what_an_earlier_one_set(env):
    # tier sets X-Tier, untier (after it) removes it: the children see no X-Tier
    status, _, body = get(env["port"], "/x", host="api2.test")
    assert status == 200
    doc = _doc(body)
    assert doc["backend"] == "users" and "x-tier" not in doc["h"]
