"""Detailed tracing end to end (``traceVerbosity: detailed``), against a real OTLP/HTTP
receiver and real backends: each internal span carries its own start (when the request
reached that handler) as Traefik's nested handlers do; a middleware that answers ends the
tree there; child routers of multi-layer routing get their own ``Router`` span
(pkg/server/router buildHTTPHandler); the retry middleware writes one ``Retry`` span per
attempt with that attempt's ``Service`` and ``ReverseProxy`` spans under it
(pkg/middlewares/retry/retry.go); forwardAuth's auth request is an ``AuthRequest`` CLIENT span,
in minimal mode too, whose context the auth server receives (pkg/middlewares/auth/forward.go).
"""
import socket

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response, static_yaml
from test_e2e_tracing import TP, HttpReceiver, backend_traceparent

SERVER, CLIENT, INTERNAL = 2, 3, 1
# admin:secret (htpasswd -nbB would be slow: an apr1/SHA1 entry is enough)
USERS = "admin:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="


def manifests(be_port, auth_port):
    mw = lambda name, spec: ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"  # noqa
                             "metadata: {name: %s, namespace: default}\nspec: %s\n"
                             % (name, spec))
    route = lambda match, mws, obs="{traceVerbosity: detailed}", svc=True: (  # noqa
        "    - match: %s\n      kind: Rule\n      observability: %s\n"
        "      middlewares: [%s]\n%s" % (match, obs, ", ".join("{name: %s}" % m for m in mws),
                                         "      services: [{name: app, port: 80}]\n"
                                         if svc else ""))
    return (backend_service("app", [be_port])
            + mw("hdr", "{headers: {customRequestHeaders: {X-Added: 'yes'}}}")
            + mw("auth", "{forwardAuth: {address: 'http://127.0.0.1:%d/slow/150'}}"
                 % auth_port)
            + mw("basic", "{basicAuth: {secret: users}}")
            + mw("again", "{retry: {attempts: 3, status: ['503']}}")
            + mw("strip", "{stripPrefix: {prefixes: [/s]}}")
            + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: users, namespace: default}\n"
              "stringData: {users: '%s'}\n" % USERS
            + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
              "metadata: {name: shop, namespace: default}\nspec:\n  entryPoints: [web]\n"
              "  routes:\n"
            + route("Host(`fa.test`)", ["auth", "hdr"])
            + route("Host(`fa-min.test`)", ["auth"], obs="{tracing: true}")
            + route("Host(`basic.test`)", ["hdr", "basic", "strip"])
            + route("Host(`retry.test`)", ["again", "hdr"])
            # multi-layer routing: the parent IngressRoute's routes all become parents
            + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
              "metadata: {name: top, namespace: default}\nspec:\n  entryPoints: [web]\n"
              "  routes:\n"
            + route("Host(`layers.test`)", ["hdr"], svc=False)
            + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
              "metadata: {name: child, namespace: default}\nspec:\n"
              "  parentRefs: [{name: top}]\n  routes:\n"
              "    - match: PathPrefix(`/c`)\n      kind: Rule\n"
              "      middlewares: [{name: strip}]\n"
              "      services: [{name: app, port: 80}]\n")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    rec = HttpReceiver()
    be = Backend("be")
    auth = Backend("auth")
    tmp = tmp_path_factory.mktemp("tracing-detailed")
    p = Pyroute(tmp, manifests(be.port, auth.port))
    p.static.write_text(static_yaml(p.port) + (
        "tracing:\n  otlp:\n    http:\n      endpoint: http://127.0.0.1:%d/v1/traces\n"
        % rec.port))
    p.start(wait=False)
    p.wait_ready(timeout=60.0)
    yield p, rec, be, auth
    p.stop()
    be.close()
    auth.close()
    rec.close()


def send(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        return read_response(s)[0]


def tree(spans):
    """{span id: span} and {parent id: [children]}."""
    kids = {}
    for s in spans:
        kids.setdefault(s["parent"], []).append(s)
    return {s["id"]: s for s in spans}, kids


def path(spans):
    """The names down the single chain from the root."""
    by_id, kids = tree(spans)
    out, at = [], next(s for s in spans if s["parent"] not in by_id)
    while at is not None:
        out.append(at)
        nxt = kids.get(at["id"], [])
        at = nxt[0] if len(nxt) == 1 else (nxt and sorted(nxt, key=lambda s: s["start"])[0]
                                           or None)
    return out


def test_spans_have_their_own_start_and_auth_request(env):
    p, rec, be, auth = env
    assert send(p.port, b"GET /fa HTTP/1.1\r\nHost: fa.test\r\n\r\n") == 200
    trace_id, parent = TP.match(backend_traceparent(be, "/fa")[0]).group(1, 2)
    spans = rec.trace(trace_id, 7)
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"GET", "Router", "ForwardAuth", "AuthRequest", "Headers",
                            "Service", "ReverseProxy"}
    get, router, fa, ar, hdr, svc, rp = (by_name[n] for n in (
        "GET", "Router", "ForwardAuth", "AuthRequest", "Headers", "Service", "ReverseProxy"))
    # the tree: AuthRequest under ForwardAuth, Headers under it too (the next handler)
    assert router["parent"] == get["id"] and fa["parent"] == router["id"]
    assert ar["parent"] == fa["id"] and ar["kind"] == CLIENT
    assert hdr["parent"] == fa["id"] and svc["parent"] == hdr["id"]
    assert rp["parent"] == svc["id"] and rp["id"] == parent
    # own times: the auth request took its 150 ms; what follows it starts after its end
    assert get["start"] <= router["start"] <= fa["start"] <= ar["start"]
    assert ar["end"] - ar["start"] >= 140e6
    assert hdr["start"] >= ar["end"] and svc["start"] >= ar["end"]
    assert svc["start"] - router["start"] >= 140e6
    assert rp["end"] <= get["end"] and router["end"] <= get["end"]
    assert ar["attrs"]["http.response.status_code"] == 200
    assert ar["attrs"]["url.full"] == "http://127.0.0.1:%d/slow/150" % auth.port
    # the auth server continued the AuthRequest span
    tp, _ = backend_traceparent(auth, "/slow/150")
    assert TP.match(tp).group(1, 2) == (trace_id, ar["id"])


def test_auth_request_in_minimal_mode(env):
    p, rec, be, auth = env
    assert send(p.port, b"GET /fmin HTTP/1.1\r\nHost: fa-min.test\r\n\r\n") == 200
    trace_id = TP.match(backend_traceparent(be, "/fmin")[0]).group(1)
    spans = rec.trace(trace_id, 3)
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"GET", "AuthRequest", "ReverseProxy"}
    assert by_name["AuthRequest"]["parent"] == by_name["GET"]["id"]
    assert by_name["ReverseProxy"]["start"] >= by_name["AuthRequest"]["end"]


def test_a_middleware_that_answers_ends_the_tree(env):
    p, rec, be, auth = env
    trace_id = "5a" * 16
    assert send(p.port, b"GET /s/b HTTP/1.1\r\nHost: basic.test\r\n"
                b"traceparent: 00-%s-1111111111111111-01\r\n\r\n" % trace_id.encode()) == 401
    spans = rec.trace(trace_id, 4)
    assert [s["name"] for s in path(spans)] == ["GET", "Router", "Headers", "BasicAuth"]
    assert len(spans) == 4                  # no StripPrefix, Service or ReverseProxy


def test_retry_spans_per_attempt(env):
    p, rec, be, auth = env
    trace_id = "7c" * 16
    assert send(p.port, b"GET /status/503 HTTP/1.1\r\nHost: retry.test\r\n"
                b"traceparent: 00-%s-1111111111111111-01\r\n\r\n" % trace_id.encode()) == 503
    spans = rec.trace(trace_id, 1 + 1 + 3 * 4)
    by_id, kids = tree(spans)
    router = next(s for s in spans if s["name"] == "Router")
    retries = sorted(kids[router["id"]], key=lambda s: s["start"])
    assert [s["name"] for s in retries] == ["Retry"] * 3
    assert [s["attrs"].get("http.request.resend_count") for s in retries] == [None, 1, 2]
    assert all(s["attrs"]["traefik.middleware.name"] == "default-again@kubernetescrd"
               for s in retries)
    for a, b in zip(retries, retries[1:]):
        assert a["end"] <= b["start"]          # the next attempt starts when one ended
    for r in retries:
        (hdr,) = kids[r["id"]]
        assert hdr["name"] == "Headers"
        (svc,) = kids[hdr["id"]]
        (rp,) = kids[svc["id"]]
        assert svc["name"] == "Service" and rp["name"] == "ReverseProxy"
        assert rp["attrs"]["http.response.status_code"] == 503
        assert r["start"] <= svc["start"] <= rp["start"] <= rp["end"] <= r["end"]
    assert len({s["id"] for s in spans if s["name"] == "ReverseProxy"}) == 3


def test_child_routers_get_their_router_span(env):
    p, rec, be, auth = env
    assert send(p.port, b"GET /c/x HTTP/1.1\r\nHost: layers.test\r\n\r\n") == 200
    trace_id = TP.match(backend_traceparent(be, "/x")[0]).group(1)
    spans = rec.trace(trace_id, 7)
    chain = path(spans)
    assert [s["name"] for s in chain] == ["GET", "Router", "Headers", "Router", "StripPrefix",
                                          "Service", "ReverseProxy"]
    parent, child = chain[1]["attrs"], chain[3]["attrs"]
    assert parent["traefik.service.name"] == parent["traefik.router.name"] + "-muxer"
    assert child["traefik.router.name"].startswith("default-child-")
    assert child["http.route"] == "PathPrefix(`/c`)"
    assert child["traefik.service.name"] == chain[5]["attrs"]["traefik.service.name"]
    assert all(a["start"] <= b["start"] for a, b in zip(chain, chain[1:]))


def test_metrics_handlers_get_their_spans(tmp_path):
    # with metrics on, Traefik wraps its entry point, router and service metrics handlers
    # in a Metrics span each (observability.WrapMiddleware; detailed only)
    rec = HttpReceiver()
    be = Backend("be-m")
    p = Pyroute(tmp_path, manifests(be.port, be.port))
    p.static.write_text(static_yaml(p.port) + (
        "metrics: {prometheus: {addRoutersLabels: true, manualRouting: true}}\n"
        "tracing:\n  otlp:\n    http:\n      endpoint: http://127.0.0.1:%d/v1/traces\n"
        % rec.port))
    p.start(wait=False)
    try:
        p.wait_ready(timeout=60.0)
        assert send(p.port, b"GET /s/m HTTP/1.1\r\nHost: basic.test\r\n"
                    b"Authorization: Basic YWRtaW46c2VjcmV0\r\n\r\n") == 200
        trace_id = TP.match(backend_traceparent(be, "/m")[0]).group(1)
        chain = path(rec.trace(trace_id, 10))
        assert [(s["name"], s["attrs"].get("traefik.middleware.name", "")) for s in chain] == [
            ("GET", ""), ("Metrics", "metrics-entrypoint"), ("Router", ""),
            ("Metrics", "metrics-router"), ("Headers", "default-hdr@kubernetescrd"),
            ("BasicAuth", "default-basic@kubernetescrd"),
            ("StripPrefix", "default-strip@kubernetescrd"), ("Service", ""),
            ("Metrics", "metrics-service"), ("ReverseProxy", "")]
    finally:
        p.stop()
        be.close()
        rec.close()


def test_unsampled_auth_request_carries_the_context(env):
    # a client's unsampled trace: nothing exported, but the auth server and the backend get
    # the trace's context with flags 00 (Traefik injects the non-recording spans' context)
    p, rec, be, auth = env
    trace_id = "9e" * 16
    assert send(p.port, b"GET /fun HTTP/1.1\r\nHost: fa-min.test\r\n"
                b"traceparent: 00-%s-1111111111111111-00\r\n\r\n" % trace_id.encode()) == 200
    tp = backend_traceparent(be, "/fun")[0]
    assert TP.match(tp).group(1, 3) == (trace_id, "00")
    seen = [h.get("traceparent") for m, target, h, b in list(auth.requests)
            if trace_id in (h.get("traceparent") or "")]
    assert len(seen) == 1
    m = TP.match(seen[0])
    assert m.group(3) == "00" and m.group(2) not in ("1111111111111111", TP.match(tp).group(2))
    assert not [s for s in rec.spans if s["trace"] == trace_id]
