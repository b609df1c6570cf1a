"""Tracing switches of the entry points (``entryPoints.<name>.observability.tracing`` /
``traceVerbosity``) and their precedence with a router's own ``observability``, end to end:
``pyroute run`` exports to a real OTLP/HTTP receiver (tests/test_e2e_tracing.py's), a real
backend records the traceparent it got.

Traefik: the entry point's section is a model (pkg/provider/traefik/internal.go
entryPointModels, SetDefaults: all on, minimal), whose values fill what a router leaves unset
(pkg/server/aggregator.go applyModel); the entry point's default handler (no router took the
request) is built with the model's config (pkg/server/router/router.go); in Kubernetes the
IngressRoute CRD defaults ``traceVerbosity`` to ``minimal`` in every route that has an
``observability`` section, so such a route does not inherit ``detailed``."""
import socket

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, free_port, read_response
from test_e2e_tracing import TP, HttpReceiver, backend_traceparent

SERVER = 2


def manifests(be_port):
    return backend_service("app", [be_port]) + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
        "metadata: {name: hdr, namespace: default}\n"
        "spec: {headers: {customRequestHeaders: {X-Added: 'yes'}}}\n"
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: loud, namespace: default}\nspec:\n  entryPoints: [web]\n"
        "  routes:\n"
        # no observability: the entry point's detailed verbosity
        "    - match: Host(`inherit.test`)\n      kind: Rule\n"
        "      middlewares: [{name: hdr}]\n"
        "      services: [{name: app, port: 80}]\n"
        # an observability section: the CRD's default minimal wins over the entry point's
        "    - match: Host(`own.test`)\n      kind: Rule\n"
        "      observability: {accessLogs: true}\n"
        "      middlewares: [{name: hdr}]\n"
        "      services: [{name: app, port: 80}]\n"
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: quiet, namespace: default}\nspec:\n  entryPoints: [quiet]\n"
        "  routes:\n"
        # the entry point's tracing: false
        "    - match: Host(`inherit.test`)\n      kind: Rule\n"
        "      services: [{name: app, port: 80}]\n"
        # the router's own tracing: true wins
        "    - match: Host(`own.test`)\n      kind: Rule\n"
        "      observability: {tracing: true, traceVerbosity: detailed}\n"
        "      middlewares: [{name: hdr}]\n"
        "      services: [{name: app, port: 80}]\n")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    rec = HttpReceiver()
    be = Backend("be")
    tmp = tmp_path_factory.mktemp("tracing-eps")
    p = Pyroute(tmp, manifests(be.port))
    p.quiet = free_port()
    p.static.write_text(
        "entryPoints:\n"
        "  web:\n    address: '127.0.0.1:%d'\n"
        "    observability: {traceVerbosity: detailed}\n"
        "  quiet:\n    address: '127.0.0.1:%d'\n"
        "    observability: {tracing: false}\n"
        "log: {level: INFO}\n"
        "tracing:\n  otlp:\n    http:\n      endpoint: http://127.0.0.1:%d/v1/traces\n"
        % (p.port, p.quiet, rec.port))
    p.start(wait=False)
    p.wait_ready(timeout=60.0)
    yield p, rec, be
    p.stop()
    be.close()
    rec.close()


def send(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        return read_response(s)[0]


def names(spans):
    by_parent = {s["parent"]: s for s in spans}
    out, at = [], by_parent[""]
    while at is not None:
        out.append(at["name"])
        at = by_parent.get(at["id"])
    return out


def test_entry_point_verbosity_is_the_default_of_its_routers(env):
    p, rec, be = env
    assert send(p.port, b"GET /e/1 HTTP/1.1\r\nHost: inherit.test\r\n\r\n") == 200
    trace_id = TP.match(backend_traceparent(be, "/e/1")[0]).group(1)
    assert names(rec.trace(trace_id, 5)) == ["GET", "Router", "Headers", "Service",
                                             "ReverseProxy"]


def test_a_route_with_an_observability_section_is_minimal_by_the_crd_default(env):
    p, rec, be = env
    assert send(p.port, b"GET /e/2 HTTP/1.1\r\nHost: own.test\r\n\r\n") == 200
    trace_id = TP.match(backend_traceparent(be, "/e/2")[0]).group(1)
    assert names(rec.trace(trace_id, 2)) == ["GET", "ReverseProxy"]


def test_entry_point_tracing_off_and_a_router_turning_it_on(env):
    p, rec, be = env
    client = "00-%s-b7ad6b7169203331-01" % ("a1" * 16)
    assert send(p.quiet, b"GET /q/1 HTTP/1.1\r\nHost: inherit.test\r\ntraceparent: %s\r\n\r\n"
                % client.encode()) == 200
    # not traced: the client's context goes on untouched, nothing is exported
    assert backend_traceparent(be, "/q/1")[0] == client
    assert send(p.quiet, b"GET /q/2 HTTP/1.1\r\nHost: own.test\r\n\r\n") == 200
    trace_id = TP.match(backend_traceparent(be, "/q/2")[0]).group(1)
    spans = rec.trace(trace_id, 5)
    assert names(spans) == ["GET", "Router", "Headers", "Service", "ReverseProxy"]
    assert next(s for s in spans if s["kind"] == SERVER)["attrs"]["entry_point"] == "quiet"
    assert not [s for s in rec.spans if s["trace"] == "a1" * 16]


def test_the_404_of_no_router_follows_the_entry_point_switch(env):
    p, rec, be = env
    on, off = "c3" * 16, "d4" * 16
    assert send(p.quiet, b"GET /none HTTP/1.1\r\nHost: nobody.test\r\n"
                b"traceparent: 00-%s-1111111111111111-01\r\n\r\n" % off.encode()) == 404
    assert send(p.port, b"GET /none HTTP/1.1\r\nHost: nobody.test\r\n"
                b"traceparent: 00-%s-1111111111111111-01\r\n\r\n" % on.encode()) == 404
    (span,) = rec.trace(on, 1)
    assert span["name"] == "GET" and span["attrs"]["entry_point"] == "web"
    assert not [s for s in rec.spans if s["trace"] == off]


def test_entry_point_tracing_keys_are_supported():
    from pyroute.static import STATIC_KEYS, static_from_mapping
    for key in ("tracing", "traceVerbosity"):
        assert STATIC_KEYS["entryPoints.<name>.observability." + key][0] == "supported"
    st = static_from_mapping({"entryPoints": {"web": {
        "address": ":80", "observability": {"traceVerbosity": "detailed"}}}})
    assert st.entry_points["web"].observability == {
        "accessLogs": True, "metrics": True, "tracing": True, "traceVerbosity": "detailed"}
    assert not [w for w in st.warnings if "observability" in str(w.field)]
