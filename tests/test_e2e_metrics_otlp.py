"""metrics.otlp end to end: ``pyroute run`` pushing Traefik's metrics to real OTLP receivers on
loopback — an OTLP/HTTP one (protobuf, gzip) and an OTLP/gRPC one (grpcio's server with
opentelemetry-proto's MetricsService) — each decoding ExportMetricsServiceRequest with
opentelemetry-proto, as a collector does."""
import gzip
import http.server
import threading
import time
from concurrent import futures

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, free_port
from test_e2e_metrics import _req, parse, scrape, value, wait_for

# opentelemetry-proto comes with the [test] extra (pyproject.toml)
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2  # noqa: E402

_MANIFESTS = """
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.test`)
      kind: Rule
      services: [{name: be, port: 80}]
"""


class HttpReceiver:
    """An OTLP/HTTP receiver: POSTs of ExportMetricsServiceRequest (protobuf, maybe gzip)."""

    def __init__(self):
        self.requests = []           # (path, headers, ExportMetricsServiceRequest)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                req = metrics_service_pb2.ExportMetricsServiceRequest()
                req.ParseFromString(body)
                outer.requests.append((self.path, self.headers, req))   # names: any case
                out = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def metrics_of(req):
    """{name: Metric} of one export, and its resource attributes and scope names."""
    out, res, scopes = {}, {}, []
    for rm in req.resource_metrics:
        for kv in rm.resource.attributes:
            res[kv.key] = kv.value.string_value
        for sm in rm.scope_metrics:
            scopes.append(sm.scope.name)
            for m in sm.metrics:
                out[m.name] = m
    return out, res, scopes


def attrs(point):
    return {kv.key: kv.value.string_value for kv in point.attributes}


def total(metric, **labels):
    return sum(p.as_double for p in metric.sum.data_points
               if all(attrs(p).get(k) == v for k, v in labels.items()))


def wait_export(receiver, pred, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if receiver.requests and pred(receiver.requests[-1]):
            return receiver.requests[-1]
        time.sleep(0.1)
    raise AssertionError("no export matched: %d received" % len(receiver.requests))


def test_otlp_http_push_names_labels_histogram_resource(tmp_path, monkeypatch):
    be = Backend("be")
    rx = HttpReceiver()
    tport = free_port()
    proxy = Pyroute(tmp_path, backend_service("be", [be.port]) + _MANIFESTS, workers=2)
    # prometheus too, with other buckets: both read their own bounds from one count
    proxy.static.write_text("""entryPoints:
  web: {address: "127.0.0.1:%d"}
  traefik: {address: "127.0.0.1:%d"}
metrics:
  prometheus: {buckets: [0.5, 3]}
  otlp:
    addRoutersLabels: true
    explicitBoundaries: [0.1, 1]
    pushInterval: 1s
    serviceName: edge-proxy
    resourceAttributes: {deployment.environment: test}
    http:
      endpoint: http://127.0.0.1:%d/collector/v1/metrics
      headers: {X-Token: s3cret}
log: {level: INFO}
""" % (proxy.port, tport, rx.port))
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.cluster.name=lab")
    proxy.start()
    try:
        for _ in range(5):
            assert _req(proxy.port)[0] == 200
        assert _req(proxy.port, path="/slow/300")[0] == 200
        assert _req(proxy.port, host="nowhere.test")[0] == 404

        def done(r):
            ms, _, _ = metrics_of(r[2])
            m = ms.get("traefik_entrypoint_requests_total")
            return m is not None and total(m, entrypoint="web") == 7
        path, headers, req = wait_export(rx, done)
        assert path == "/collector/v1/metrics"
        assert headers.get("X-Token") == "s3cret"
        assert headers.get("Content-Type") == "application/x-protobuf"
        ms, res, scopes = metrics_of(req)
        assert res["service.name"] == "edge-proxy"
        assert res["deployment.environment"] == "test"
        assert res["k8s.cluster.name"] == "lab"          # OTEL_RESOURCE_ATTRIBUTES
        assert scopes == ["github.com/traefik/traefik"]
        ep = ms["traefik_entrypoint_requests_total"]
        assert ep.unit == "1" and ep.sum.is_monotonic
        assert ep.sum.aggregation_temporality == 2       # CUMULATIVE
        assert total(ep, entrypoint="web", code="200", method="GET", protocol="http") == 6
        assert total(ep, entrypoint="web", code="404") == 1
        # no headerLabels in OTLP (Traefik: NewCounterWithNoopHeaders)
        assert all("useragent" not in attrs(p) for p in ep.sum.data_points)
        router = ms["traefik_router_requests_total"]
        (rp,) = router.sum.data_points
        assert attrs(rp)["router"].startswith("default-r-") and rp.as_double == 6
        assert attrs(rp)["service"] == attrs(rp)["router"]
        svc = ms["traefik_service_requests_total"]
        assert total(svc) == 6
        # the histogram: explicitBoundaries, per-bucket counts, unit s
        h = ms["traefik_entrypoint_request_duration_seconds"]
        assert h.unit == "s"
        (hp,) = [p for p in h.histogram.data_points if attrs(p)["code"] == "200"]
        assert list(hp.explicit_bounds) == [0.1, 1.0]
        assert hp.count == 6 and sum(hp.bucket_counts) == 6
        assert hp.bucket_counts[0] == 5 and hp.bucket_counts[1] == 1   # /slow/300
        assert hp.sum >= 0.3
        # min and max, as the Go SDK's explicit-bucket histogram exports them
        assert hp.HasField("min") and hp.HasField("max")
        assert 0 < hp.min < 0.1 and 0.3 <= hp.max < 1.0
        assert hp.min * 5 + hp.max <= hp.sum + 1e-9
        assert ms["traefik_config_reloads_total"].sum.data_points[0].as_double == 1
        bytes_out = ms["traefik_entrypoint_responses_bytes_total"]
        assert total(bytes_out, code="200") > 0
        # Prometheus, same counts, its own buckets
        samples, _ = wait_for(tport, lambda s: value(
            s, "traefik_entrypoint_requests_total", entrypoint="web") >= 7)
        b = "traefik_entrypoint_request_duration_seconds_bucket"
        get = dict(code=200, method="GET", entrypoint="web")
        assert value(samples, b, le="0.5", **get) == 6
        assert value(samples, b, le="3.0", **get) == 6
        assert value(samples, b, le="+Inf", **get) == 6
        # a stop pushes what is left (Traefik's MeterProvider.Shutdown)
        assert _req(proxy.port)[0] == 200
        n = len(rx.requests)
        proxy.stop()
        assert len(rx.requests) > n
        ms, _, _ = metrics_of(rx.requests[-1][2])
        assert total(ms["traefik_entrypoint_requests_total"], entrypoint="web") == 8
    finally:
        proxy.stop()
        rx.close()
        be.close()


def test_otlp_grpc_push(tmp_path):
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    got = []

    class Service(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):
            got.append((dict(context.invocation_metadata()), request))
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Service(), server)
    gport = server.add_insecure_port("127.0.0.1:0")
    server.start()
    be = Backend("be")
    proxy = Pyroute(tmp_path, backend_service("be", [be.port]) + _MANIFESTS, workers=1)
    proxy.static.write_text("""entryPoints:
  web: {address: "127.0.0.1:%d"}
metrics:
  otlp:
    pushInterval: 500ms
    addServicesLabels: false
    grpc: {endpoint: "127.0.0.1:%d", insecure: true, headers: {x-tenant: blue}}
log: {level: INFO}
""" % (proxy.port, gport))
    proxy.start()
    try:
        for _ in range(3):
            assert _req(proxy.port)[0] == 200
        end = time.time() + 10
        ms = {}
        while time.time() < end:
            if got:
                ms, res, _ = metrics_of(got[-1][1])
                m = ms.get("traefik_entrypoint_requests_total")
                if m is not None and total(m) == 3:
                    break
            time.sleep(0.1)
        assert total(ms["traefik_entrypoint_requests_total"], entrypoint="web") == 3
        assert got[-1][0].get("x-tenant") == "blue"
        assert res["service.name"] == "traefik"              # serviceName's default
        # addServicesLabels: false, addRoutersLabels' default false: neither is sent
        assert not any(n.startswith(("traefik_service_", "traefik_router_")) for n in ms)
        # no Prometheus configured: nothing is served on /metrics (no traefik entry point)
    finally:
        proxy.stop()
        be.close()
        server.stop(0)


def test_otlp_static_errors_and_defaults(tmp_path):
    from pyroute.static import STATIC_KEYS, load_static
    assert STATIC_KEYS["metrics.otlp.http.endpoint"][0] == "supported"
    assert STATIC_KEYS["metrics.otlp.grpc.tls.ca"][0] == "supported"
    path = tmp_path / "s.yaml"
    path.write_text("entryPoints:\n  web: {address: ':80'}\nmetrics:\n  otlp: {}\n")
    o = load_static(str(path)).metrics.otlp
    # Traefik's OTLP SetDefaults
    assert (o.protocol, o.endpoint, o.push_interval, o.service_name) == (
        "http", "https://localhost:4318", 10.0, "traefik")
    assert (o.add_entry_points_labels, o.add_routers_labels, o.add_services_labels) == (
        True, False, True)
    assert o.explicit_boundaries[0] == 0.005 and o.explicit_boundaries[-1] == 10.0
    for text, field in (
            ("  otlp: {explicitBoundaries: [1, 0.5]}\n", "explicitBoundaries"),
            ("  otlp: {grpc: {endpoint: nohostport}}\n", "endpoint"),
            ("  otlp: {http: {endpoint: 'ftp://x'}}\n", "endpoint"),
            ("  otlp: {pushInterval: soon}\n", "pushInterval")):
        path.write_text("entryPoints:\n  web: {address: ':80'}\nmetrics:\n" + text)
        from pyroute.errors import ConfigError
        with pytest.raises(ConfigError) as e:
            load_static(str(path))
        assert e.value.line == 4, (text, e.value)
        assert field in str(e.value.field), (text, e.value.field)
