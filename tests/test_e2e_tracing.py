"""Tracing end to end: ``pyroute run`` with a static ``tracing`` section exports its spans to
a real OTLP receiver on loopback (OTLP/HTTP: an HTTP server decoding ExportTraceServiceRequest
with opentelemetry-proto; OTLP/gRPC: grpcio's server with the proto's TraceService), and a
real backend records the traceparent it was sent. The spans' tree, names, kinds and
attributes are checked against Traefik's (pkg/middlewares/observability, pkg/observability/
tracing, pkg/proxy/httputil/observability.go)."""
import gzip
import os
import re
import socket
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts_grpc

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response, static_yaml, worker_pids

# the SDK's BatchSpanProcessor exports every 5 s by default (Go's too): the standard knob,
# read by the workers, makes the tests wait less
os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "100"

SERVER, CLIENT, INTERNAL = 2, 3, 1      # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, kind)


def _attrs(kvs):
    return {kv.key: _value(kv.value) for kv in kvs}


class Collector:
    """What a receiver got: flattened spans, and the export requests' headers."""

    def __init__(self):
        self.spans = []
        self.headers = []
        self.lock = threading.Lock()

    def add(self, req, headers):
        with self.lock:
            self.headers.append(headers)
            for rs in req.resource_spans:
                resource = _attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append({
                            "name": s.name, "kind": s.kind, "trace": s.trace_id.hex(),
                            "id": s.span_id.hex(), "parent": s.parent_span_id.hex(),
                            "attrs": _attrs(s.attributes), "status": s.status.code,
                            "start": s.start_time_unix_nano, "end": s.end_time_unix_nano,
                            "resource": resource, "scope": ss.scope.name})

    def trace(self, trace_id, n, timeout=10.0):
        """The ``n`` spans of trace ``trace_id`` (waits for them)."""
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                got = [s for s in self.spans if s["trace"] == trace_id]
            if len(got) >= n:
                time.sleep(0.2)           # nothing more should come
                with self.lock:
                    return [s for s in self.spans if s["trace"] == trace_id]
            time.sleep(0.05)
        raise AssertionError("trace %s: expected %d spans, got %r" % (trace_id, n, got))


class HttpReceiver(Collector):
    def __init__(self, tls=None):
        super().__init__()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                req = ts.ExportTraceServiceRequest()
                req.ParseFromString(body)
                outer.add(req, dict(self.headers.items()) | {":path": self.path})
                out = ts.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class GrpcReceiver(Collector):
    def __init__(self):
        super().__init__()
        outer = self

        class Service(ts_grpc.TraceServiceServicer):
            def Export(self, request, context):
                outer.add(request, dict(context.invocation_metadata()))
                return ts.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        ts_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self):
        self.server.stop(0)


def manifests(be_port):
    mw = ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: hdr, namespace: default}\n"
          "spec: {headers: {customRequestHeaders: {X-Added: 'yes'}}}\n"
          "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: strip, namespace: default}\nspec: {stripPrefix: {prefixes: [/s]}}\n"
          "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: both, namespace: default}\n"
          "spec: {chain: {middlewares: [{name: hdr}, {name: strip}]}}\n")
    return backend_service("app", [be_port]) + mw + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: shop, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
        "    - match: Host(`a.test`)\n      kind: Rule\n"
        "      services: [{name: app, port: 80}]\n"
        "    - match: Host(`detail.test`)\n      kind: Rule\n"
        "      observability: {traceVerbosity: detailed}\n"
        "      middlewares: [{name: both}]\n"
        "      services: [{name: app, port: 80}]\n"
        "    - match: Host(`off.test`)\n      kind: Rule\n"
        "      observability: {tracing: false}\n"
        "      services: [{name: app, port: 80}]\n")


def start(tmp, be, tracing, workers=1):
    p = Pyroute(tmp, manifests(be.port), workers=workers)
    p.static.write_text(static_yaml(p.port) + tracing)
    p.start(wait=False)
    p.wait_ready(timeout=60.0)
    return p


def send(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        status, headers, body, _ = read_response(s)
        return status, headers, s.getsockname()[1]


def backend_traceparent(be, marker):
    end = time.time() + 5
    while time.time() < end:
        for method, target, headers, body in list(be.requests):
            if marker in target:
                return headers.get("traceparent"), headers
        time.sleep(0.02)
    raise AssertionError("the backend never got %s" % marker)


TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$")


@pytest.fixture(scope="module")
def http_env(tmp_path_factory):
    rec = HttpReceiver()
    be = Backend("be")

    tracing = ("tracing:\n  serviceName: shop-proxy\n"
               "  globalAttributes: {deployment.environment: test}\n"
               "  capturedRequestHeaders: [x-req-a]\n"
               "  capturedResponseHeaders: [content-type]\n"
               "  safeQueryParams: [page]\n"
               "  otlp:\n    http:\n      endpoint: http://127.0.0.1:%d/v1/traces\n"
               "      headers: {Authorization: Bearer t0k}\n" % rec.port)
    p = start(tmp_path_factory.mktemp("tracing-http"), be, tracing)
    yield p, rec, be
    p.stop()
    be.close()
    rec.close()


def test_minimal_tree_attributes_and_propagation(http_env):
    p, rec, be = http_env
    status, _, cport = send(p.port, b"GET /x/m1?page=2&token=s3cret&a=1 HTTP/1.1\r\n"
                            b"Host: a.test\r\nUser-Agent: ua/1\r\nX-Req-A: v1\r\n\r\n")
    assert status == 200
    tp, _ = backend_traceparent(be, "/x/m1")
    m = TP.match(tp)
    assert m and m.group(3) == "01", tp           # sampled (sampleRate 1.0 by default)
    trace_id, parent = m.group(1), m.group(2)
    spans = rec.trace(trace_id, 2)
    assert sorted(s["name"] for s in spans) == ["GET", "ReverseProxy"]
    server = next(s for s in spans if s["name"] == "GET")
    client = next(s for s in spans if s["name"] == "ReverseProxy")
    # the tree: a new trace's root SERVER span, the CLIENT span under it, which is the
    # backend's parent
    assert server["kind"] == SERVER and server["parent"] == ""
    assert client["kind"] == CLIENT and client["parent"] == server["id"]
    assert client["id"] == parent
    assert server["start"] <= client["start"] <= client["end"] <= server["end"]
    sa = server["attrs"]
    assert sa["entry_point"] == "web"
    assert sa["http.request.method"] == "GET"
    assert sa["network.protocol.version"] == "1.1"
    assert sa["url.path"] == "/x/m1"
    # safeQueryParams: only page keeps its value; url.Values.Encode sorts the keys
    assert sa["url.query"] == "a=REDACTED&page=2&token=REDACTED"
    assert sa["url.scheme"] == "http"
    assert sa["user_agent.original"] == "ua/1"
    assert sa["server.address"] == "a.test"
    assert sa["network.peer.address"] == "127.0.0.1" == sa["client.address"]
    assert sa["client.port"] == cport == sa["network.peer.port"]
    assert sa["http.request.body.size"] == 0
    assert sa["http.request.header.x-req-a"] == ("v1",)
    assert sa["http.response.status_code"] == 200
    assert "http.response.header.content-type" in sa
    assert server["status"] != STATUS_ERROR
    ca = client["attrs"]
    assert ca["url.full"] == ("http://127.0.0.1:%d/x/m1?a=REDACTED&page=2&token=REDACTED"
                              % be.port)
    assert ca["server.address"] == "127.0.0.1" == ca["network.peer.address"]
    assert ca["server.port"] == be.port == ca["network.peer.port"]
    assert ca["url.scheme"] == "http"
    assert ca["http.response.status_code"] == 200
    assert ca["http.request.header.x-req-a"] == ("v1",)
    # the resource and the scope as Traefik's
    res = server["resource"]
    assert res["service.name"] == "shop-proxy"
    assert res["deployment.environment"] == "test"      # globalAttributes
    assert server["scope"] == "github.com/traefik/traefik"
    # otlp.http: the path given, the headers sent
    h = {k.lower(): v for k, v in rec.headers[-1].items()}
    assert h[":path"] == "/v1/traces" and h["authorization"] == "Bearer t0k"


def test_client_trace_is_continued(http_env):
    p, rec, be = http_env
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    status, _, _ = send(p.port, b"GET /x/m2 HTTP/1.1\r\nHost: a.test\r\n"
                        b"traceparent: 00-%s-%s-01\r\ntracestate: vendor=x1\r\n\r\n"
                        % (trace_id.encode(), span_id.encode()))
    assert status == 200
    tp, headers = backend_traceparent(be, "/x/m2")
    m = TP.match(tp)
    assert m.group(1) == trace_id and m.group(2) != span_id and m.group(3) == "01"
    assert headers.get("tracestate") == "vendor=x1"
    spans = rec.trace(trace_id, 2)
    server = next(s for s in spans if s["name"] == "GET")
    assert server["parent"] == span_id          # the client's span is the remote parent
    assert next(s for s in spans if s["name"] == "ReverseProxy")["id"] == m.group(2)


def test_invalid_traceparent_starts_a_new_trace(http_env):
    p, rec, be = http_env
    bad = b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"    # zero trace id
    send(p.port, b"GET /x/m3 HTTP/1.1\r\nHost: a.test\r\ntraceparent: %s\r\n\r\n" % bad)
    tp, _ = backend_traceparent(be, "/x/m3")
    m = TP.match(tp)
    assert m and m.group(1) != "0" * 32
    spans = rec.trace(m.group(1), 2)
    assert next(s for s in spans if s["name"] == "GET")["parent"] == ""


def test_detailed_verbosity_adds_router_middleware_service_spans(http_env):
    p, rec, be = http_env
    status, _, _ = send(p.port, b"POST /s/d1 HTTP/1.1\r\nHost: detail.test\r\n"
                        b"Content-Length: 3\r\n\r\nabc")
    assert status == 200
    tp, headers = backend_traceparent(be, "/d1")
    assert headers.get("x-added") == "yes"
    trace_id, parent = TP.match(tp).group(1, 2)
    spans = rec.trace(trace_id, 6)
    by_parent = {s["parent"]: s for s in spans}
    # walk the chain from the root: Traefik nests each handler in the one before
    chain, at = [], by_parent[""]
    while at is not None:
        chain.append(at)
        at = by_parent.get(at["id"])
    assert [s["name"] for s in chain] == ["POST", "Router", "Headers", "StripPrefix",
                                          "Service", "ReverseProxy"]
    assert [s["kind"] for s in chain] == [SERVER, INTERNAL, INTERNAL, INTERNAL, INTERNAL,
                                          CLIENT]
    router = chain[1]["attrs"]
    assert router["traefik.router.name"].startswith("default-shop-")
    # an IngressRoute's one service is named after the route (Traefik's CRD provider)
    assert re.fullmatch(r"default-shop-[0-9a-f]+@kubernetescrd", router["traefik.service.name"])
    assert router["http.route"] == "Host(`detail.test`)"
    assert chain[2]["attrs"]["traefik.middleware.name"] == "default-hdr@kubernetescrd"
    assert chain[3]["attrs"]["traefik.middleware.name"] == "default-strip@kubernetescrd"
    assert chain[4]["attrs"]["traefik.service.name"] == router["traefik.service.name"]
    assert chain[5]["id"] == parent
    assert chain[0]["attrs"]["http.request.body.size"] == 3
    assert chain[0]["attrs"]["url.path"] == "/s/d1"           # as the entry point saw it
    assert chain[5]["attrs"]["url.full"].endswith("/d1")     # stripPrefix ran before


def test_router_with_tracing_off_is_not_traced(http_env):
    p, rec, be = http_env
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    client_tp = "00-%s-b7ad6b7169203331-01" % trace_id
    send(p.port, b"GET /x/off HTTP/1.1\r\nHost: off.test\r\ntraceparent: %s\r\n\r\n"
         % client_tp.encode())
    tp, _ = backend_traceparent(be, "/x/off")
    assert tp == client_tp                 # forwarded untouched, nothing injected
    # a traced request afterwards: its spans arrive, the off router's never do
    send(p.port, b"GET /x/after HTTP/1.1\r\nHost: a.test\r\n\r\n")
    tp2, _ = backend_traceparent(be, "/x/after")
    rec.trace(TP.match(tp2).group(1), 2)
    assert not [s for s in rec.spans if s["trace"] == trace_id]


def test_no_router_404_is_traced_as_the_entry_point(http_env):
    p, rec, be = http_env
    trace_id = "11111111111111111111111111111111"
    status, _, _ = send(p.port, b"GET /nowhere HTTP/1.1\r\nHost: none.test\r\n"
                        b"traceparent: 00-%s-2222222222222222-01\r\n\r\n" % trace_id.encode())
    assert status == 404
    (span,) = rec.trace(trace_id, 1)
    assert span["name"] == "GET" and span["kind"] == SERVER
    assert span["attrs"]["http.response.status_code"] == 404
    assert span["status"] != STATUS_ERROR       # 4xx is no server error


@pytest.fixture(scope="module")
def unsampled_env(tmp_path_factory):
    rec = GrpcReceiver()
    be = Backend("be0")

    tracing = ("tracing:\n  sampleRate: 0\n  otlp:\n    grpc:\n"
               "      endpoint: 127.0.0.1:%d\n      insecure: true\n"
               "      headers: {x-team: edge}\n" % rec.port)
    p = start(tmp_path_factory.mktemp("tracing-grpc"), be, tracing)
    yield p, rec, be
    p.stop()
    be.close()
    rec.close()


def test_sample_rate_zero_exports_nothing_but_propagates(unsampled_env):
    p, rec, be = unsampled_env
    send(p.port, b"GET /u/1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    tp, _ = backend_traceparent(be, "/u/1")
    # Traefik injects the (non-recording) ReverseProxy span's context: flags 00
    m = TP.match(tp)
    assert m and m.group(3) == "00", tp
    unsampled = m.group(1)
    # ParentBased: a client's sampled trace is sampled whatever sampleRate says; over gRPC
    trace_id = "55555555555555555555555555555555"
    send(p.port, b"GET /u/2 HTTP/1.1\r\nHost: a.test\r\n"
         b"traceparent: 00-%s-6666666666666666-01\r\n\r\n" % trace_id.encode())
    spans = rec.trace(trace_id, 2)
    assert sorted(s["name"] for s in spans) == ["GET", "ReverseProxy"]
    assert next(s for s in spans if s["name"] == "GET")["parent"] == "6666666666666666"
    assert spans[0]["resource"]["service.name"] == "traefik"      # the default serviceName
    assert not [s for s in rec.spans if s["trace"] == unsampled]
    assert rec.headers[-1].get("x-team") == "edge"
    # a client's unsampled trace stays unsampled and is propagated as such
    send(p.port, b"GET /u/3 HTTP/1.1\r\nHost: a.test\r\n"
         b"traceparent: 00-%s-6666666666666666-00\r\n\r\n" % (b"7" * 32))
    tp3, _ = backend_traceparent(be, "/u/3")
    assert TP.match(tp3).group(1, 3) == ("7" * 32, "00")


def test_sample_rate_out_of_range_is_refused(tmp_path):
    from pyroute.static import static_from_mapping
    from pyroute.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        static_from_mapping({"tracing": {"sampleRate": 1.5}})
    assert "sampleRate" in str(e.value)
    conf = static_from_mapping({"tracing": {"resourceAttributes": {"a": "1"},
                                            "globalAttributes": {"b": "2"}}}).tracing
    # Traefik: globalAttributes only stand in for unset resourceAttributes
    assert conf.resource_attributes == (("a", "1"),)
    assert conf.endpoint == "https://localhost:4318" and conf.sample_rate == 1.0


@pytest.mark.parametrize("tls", ["{ca: ca.pem}", "{insecureSkipVerify: true}"])
def test_otlp_http_over_tls(tmp_path, tls):
    import ssl
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    rec = HttpReceiver(tls=ctx)
    be = Backend("be-tls")
    # no path in the endpoint: otlptracehttp's default /v1/traces; tls.ca relative to the file
    tracing = ("tracing:\n  otlp:\n    http:\n      endpoint: https://127.0.0.1:%d\n"
               "      tls: %s\n" % (rec.port, tls))
    p = start(tmp_path, be, tracing)
    try:
        send(p.port, b"GET /t/1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        tp, _ = backend_traceparent(be, "/t/1")
        try:
            spans = rec.trace(TP.match(tp).group(1), 2)
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, p.output())) from None
        assert sorted(s["name"] for s in spans) == ["GET", "ReverseProxy"]
        assert rec.headers[-1][":path"] == "/v1/traces"
        assert rec.headers[-1].get("Content-Encoding") == "gzip"     # Traefik: gzip
    finally:
        p.stop()
        be.close()
        rec.close()


def test_untrusted_forwarded_proto_does_not_set_the_scheme(http_env):
    # the entry point trusts nobody: the client's X-Forwarded-Proto is replaced before
    # tracing reads it (Traefik's forwarded-headers middleware runs first)
    p, rec, be = http_env
    trace_id = "99999999999999999999999999999999"
    send(p.port, b"GET /x/xfp HTTP/1.0\r\nHost: a.test\r\nX-Forwarded-Proto: https\r\n"
         b"traceparent: 00-%s-1212121212121212-01\r\n\r\n" % trace_id.encode())
    spans = rec.trace(trace_id, 2)
    server = next(s for s in spans if s["name"] == "GET")
    assert server["attrs"]["url.scheme"] == "http"
    assert server["attrs"]["network.protocol.version"] == "1.0"
    assert server["attrs"]["http.response.header.content-type"] == ("application/json",)


def test_backend_failure_marks_the_spans_as_errors(http_env):
    # a 502 (the backend answers no status line): the SERVER span is an error (5xx), the CLIENT one too
    p, rec, be = http_env
    trace_id = "abababababababababababababababab"
    status, _, _ = send(p.port, b"GET /fault/no-status HTTP/1.1\r\nHost: a.test\r\n"
                        b"traceparent: 00-%s-3434343434343434-01\r\n\r\n" % trace_id.encode())
    assert status == 502
    spans = rec.trace(trace_id, 2)
    server = next(s for s in spans if s["name"] == "GET")
    client = next(s for s in spans if s["name"] == "ReverseProxy")
    assert server["status"] == STATUS_ERROR and client["status"] == STATUS_ERROR
    assert server["attrs"]["http.response.status_code"] == 502


def test_each_worker_exports_its_own_spans_never_the_master(tmp_path):
    rec = HttpReceiver()
    be = Backend("be-w")
    tracing = ("tracing:\n  otlp:\n    http:\n      endpoint: http://127.0.0.1:%d\n"
               % rec.port)
    p = start(tmp_path, be, tracing, workers=2)
    try:
        workers = set(worker_pids(p.proc.pid))
        assert len(workers) == 2
        traces = []
        for i in range(30):             # new connections: SO_REUSEPORT spreads them
            send(p.port, b"GET /w/%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i)
            traces.append(TP.match(backend_traceparent(be, "/w/%d" % i)[0]).group(1))
        pids = set()
        for t in traces:
            pids.update(s["resource"]["process.pid"] for s in rec.trace(t, 2))
        assert pids <= workers and p.proc.pid not in pids, (pids, workers)
    finally:
        p.stop()
        be.close()
        rec.close()
