"""``metrics.otlp``: Traefik's metrics pushed to an OpenTelemetry collector (pkg/observability/
metrics/otel.go), from the master.

The master's ``Store`` already adds up every worker's counts; every ``pushInterval`` a thread
here turns its totals into OTLP metrics (cumulative temporality, as Traefik's Go SDK sends
them) and hands them to the OpenTelemetry SDK's exporter — OTLP/HTTP (protobuf, gzip) or
OTLP/gRPC (gzip) — so nothing of it runs in the workers or per request. Names, units and
descriptions are Traefik's: counters are monotonic sums of unit ``1``, the request durations
histograms of unit ``s`` with ``explicitBoundaries``, the gauges Traefik's (its
``traefik_config_last_reload_success`` says unit ``ms`` and holds seconds, as Traefik's does).
The resource is ``service.name`` (``serviceName``), ``service.version``, the
``resourceAttributes``, then ``OTEL_RESOURCE_ATTRIBUTES`` / ``OTEL_SERVICE_NAME`` over them
(Traefik's resource.WithFromEnv comes last).

The SDK is an optional dependency (``pip install pyroute[otlp]``); without it pyroute still
starts and reports, once, that metrics.otlp cannot be exported.
"""
import threading
import time

from .._version import __version__

SCOPE = "github.com/traefik/traefik"

# level -> metric suffix -> Traefik's description (they differ per level)
_DESC = {
    "entrypoint": {
        "requests_total": "How many HTTP requests processed on an entrypoint, partitioned by "
                          "status code, protocol, and method.",
        "requests_tls_total": "How many HTTP requests with TLS processed on an entrypoint, "
                              "partitioned by TLS Version and TLS cipher Used.",
        "request_duration_seconds": "How long it took to process the request on an "
                                    "entrypoint, partitioned by status code, protocol, and "
                                    "method.",
        "requests_bytes_total": "The total size of requests in bytes handled by an "
                                "entrypoint, partitioned by status code, protocol, and method.",
        "responses_bytes_total": "The total size of responses in bytes handled by an "
                                 "entrypoint, partitioned by status code, protocol, and "
                                 "method.",
    },
    "router": {
        "requests_total": "How many HTTP requests are processed on a router, partitioned by "
                          "service, status code, protocol, and method.",
        "requests_tls_total": "How many HTTP requests with TLS are processed on a router, "
                              "partitioned by service, TLS Version, and TLS cipher Used.",
        "request_duration_seconds": "How long it took to process the request on a router, "
                                    "partitioned by service, status code, protocol, and "
                                    "method.",
        "requests_bytes_total": "The total size of requests in bytes handled by a router, "
                                "partitioned by status code, protocol, and method.",
        "responses_bytes_total": "The total size of responses in bytes handled by a router, "
                                 "partitioned by status code, protocol, and method.",
    },
    "service": {
        "requests_total": "How many HTTP requests processed on a service, partitioned by "
                          "status code, protocol, and method.",
        "requests_tls_total": "How many HTTP requests with TLS processed on a service, "
                              "partitioned by TLS version and TLS cipher.",
        "request_duration_seconds": "How long it took to process the request on a service, "
                                    "partitioned by status code, protocol, and method.",
        "requests_bytes_total": "The total size of requests in bytes received by a service, "
                                "partitioned by status code, protocol, and method.",
        "responses_bytes_total": "The total size of responses in bytes returned by a service, "
                                 "partitioned by status code, protocol, and method.",
    },
}
_NAMES = {"entrypoint": ("entrypoint",), "router": ("router", "service"),
          "service": ("service",)}


def metrics_data(store, otlp, now_ns=None):
    """The SDK's MetricsData for the Store's totals as ``otlp`` (the static Otlp) exports
    them."""
    from opentelemetry.sdk.metrics.export import (AggregationTemporality, Gauge, Histogram,
                                                  HistogramDataPoint, Metric, MetricsData,
                                                  NumberDataPoint, ResourceMetrics,
                                                  ScopeMetrics, Sum)
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    cumulative = AggregationTemporality.CUMULATIVE
    now = now_ns or time.time_ns()
    start = int(store.started * 1e9)

    def point(attrs, v):
        return NumberDataPoint(attributes=attrs, start_time_unix_nano=start,
                               time_unix_nano=now, value=v)

    def counter(name, desc, points):
        return Metric(name=name, description=desc, unit="1",
                      data=Sum(data_points=points, aggregation_temporality=cumulative,
                               is_monotonic=True))

    def gauge(name, desc, unit, points):
        return Metric(name=name, description=desc, unit=unit, data=Gauge(data_points=points))

    out = [counter("traefik_config_reloads_total", "Config reloads",
                   [point({}, float(store.reloads))]),
           gauge("traefik_config_last_reload_success", "Last config reload success", "ms",
                 [point({}, store.last_reload)])]
    conns = {}
    for per in list(store.open.values()):
        for ep, n in per.items():
            conns[ep] = conns.get(ep, 0) + n
    out.append(gauge("traefik_open_connections", "How many open connections exist, by "
                     "entryPoint and protocol", "1",
                     [point({"entrypoint": ep, "protocol": "TCP"}, float(n))
                      for ep, n in sorted(conns.items())]))
    out.append(gauge("traefik_tls_certs_not_after", "Certificate expiration timestamp", "s",
                     [point({"cn": cn, "serial": serial, "sans": sans}, not_after)
                      for cn, serial, sans, not_after in store.certs]))
    bounds = tuple(float(b) for b in otlp.explicit_boundaries)
    index = tuple(store.buckets.index(b) for b in bounds)
    series = store.snapshot()
    from .metrics import _levels
    for level in _levels(otlp):
        rows = series.get(level, ())
        reqs, tls_reqs, bin_, bout, hist = {}, {}, {}, {}, {}
        for (names, code, method, proto, _hv, tls), acc in rows:
            # OTLP has no headerLabels (Traefik: NewCounterWithNoopHeaders)
            labels = tuple(zip(_NAMES[level], names)) + (
                ("code", str(code)), ("method", method), ("protocol", proto))
            _add(reqs, labels, acc[0])
            if tls is not None:
                _add(tls_reqs, tuple(zip(_NAMES[level], names)) + (
                    ("tls_version", tls[0]), ("tls_cipher", tls[1])), acc[0])
            _add(bin_, labels, acc[2])
            _add(bout, labels, acc[3])
            cum, count, total = store.histogram(acc, index)
            h = hist.get(labels)
            if h is None:
                h = hist[labels] = [0, 0.0, [0] * len(cum), acc[-2], acc[-1]]
            h[0] += count
            h[1] += total
            for i, n in enumerate(cum):
                h[2][i] += n
            h[3] = min(h[3], acc[-2])
            h[4] = max(h[4], acc[-1])
        prefix = "traefik_%s_" % level
        desc = _DESC[level]
        for suffix, table in (("requests_total", reqs), ("requests_tls_total", tls_reqs),
                              ("requests_bytes_total", bin_),
                              ("responses_bytes_total", bout)):
            out.append(counter(prefix + suffix, desc[suffix],
                               [point(dict(k), float(v)) for k, v in sorted(table.items())]))
        points = []
        for labels, (count, total, cum, least, most) in sorted(hist.items()):
            # OTLP's buckets are per bucket (not cumulative), one more than the bounds
            per, prev = [], 0
            for c in cum:
                per.append(c - prev)
                prev = c
            per.append(count - prev)
            points.append(HistogramDataPoint(
                attributes=dict(labels), start_time_unix_nano=start, time_unix_nano=now,
                count=count, sum=total, bucket_counts=per, explicit_bounds=bounds,
                # the Go SDK's explicit-bucket histogram records min and max (NoMinMax
                # false), over the whole cumulative period
                min=least, max=most))
        out.append(Metric(name=prefix + "request_duration_seconds",
                          description=desc["request_duration_seconds"], unit="s",
                          data=Histogram(data_points=points,
                                         aggregation_temporality=cumulative)))
        if level == "service":
            health = store.health
            ups = []
            if health is not None:
                for t in sorted(list(health.targets.values()),
                                key=lambda t: (t.service, t.url)):
                    ups.append(point({"service": t.service, "url": t.url},
                                     1.0 if t.up else 0.0))
            out.append(gauge("traefik_service_server_up", "service server is up, described "
                             "by gauge value of 0 or 1.", "1", ups))
    out = [m for m in out if m.data.data_points]       # the SDK sends no empty instrument
    scope = InstrumentationScope(SCOPE, __version__)
    return MetricsData(resource_metrics=[ResourceMetrics(
        resource=resource(otlp), scope_metrics=[ScopeMetrics(scope=scope, metrics=out,
                                                             schema_url="")],
        schema_url="")])


def _add(d, key, v):
    d[key] = d.get(key, 0) + v


def resource(otlp):
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    attrs = {"service.name": otlp.service_name, "service.version": __version__,
             "telemetry.sdk.language": "python", "telemetry.sdk.name": "opentelemetry"}
    attrs.update(dict(otlp.resource_attributes))
    res = Resource(attrs)
    # the environment last, as Traefik's resource.WithFromEnv
    return res.merge(OTELResourceDetector().detect())


def exporter(otlp):
    """The SDK's OTLP metric exporter for ``otlp`` (Traefik's newHTTPExporter /
    newGRPCExporter: gzip, the headers, TLS)."""
    tls = otlp.tls or {}
    if otlp.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import \
            OTLPMetricExporter
        from grpc import Compression, ssl_channel_credentials
        creds = None
        if not otlp.insecure:
            def read(path):
                if not path:
                    return None
                with open(path, "rb") as f:
                    return f.read()
            creds = ssl_channel_credentials(read(tls.get("ca")), read(tls.get("key")),
                                            read(tls.get("cert")))
        return OTLPMetricExporter(endpoint=otlp.endpoint, insecure=otlp.insecure,
                                  credentials=creds, headers=dict(otlp.headers),
                                  compression=Compression.Gzip)
    import urllib.parse
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    u = urllib.parse.urlsplit(otlp.endpoint)
    # Go's otlpmetrichttp: the URL's host, its path when it has one, else /v1/metrics
    url = "%s://%s%s" % (u.scheme, u.netloc, u.path or "/v1/metrics")
    session = None
    if tls.get("insecureSkipVerify"):
        import requests
        session = requests.Session()
        session.verify = False
    return OTLPMetricExporter(endpoint=url, certificate_file=tls.get("ca") or None,
                              client_key_file=tls.get("key") or None,
                              client_certificate_file=tls.get("cert") or None,
                              headers=dict(otlp.headers), compression=Compression.Gzip,
                              session=session)


class Pusher:
    """The master's thread: every ``pushInterval`` the totals go to the collector; once more
    when pyroute stops (Traefik's MeterProvider.Shutdown flushes)."""

    def __init__(self, store, otlp, log=None):
        self.store = store
        self.otlp = otlp
        self.log = log
        self.exporter = None
        self.stopping = threading.Event()
        self.thread = None
        self.failed = False

    def start(self):
        self.thread = threading.Thread(target=self._run, name="pyroute-otlp", daemon=True)
        self.thread.start()
        return self

    def push(self):
        try:
            if self.exporter is None:
                self.exporter = exporter(self.otlp)
            result = self.exporter.export(metrics_data(self.store, self.otlp),
                                          timeout_millis=10_000)
        except Exception as e:       # a collector away must never stop pyroute
            self._report("metrics.otlp export failed", error=str(e))
            return False
        ok = getattr(result, "name", "") == "SUCCESS"
        if not ok:
            self._report("metrics.otlp export failed", error=str(result))
        elif self.failed:
            self.failed = False
        return ok

    def _report(self, msg, **fields):
        if self.failed:
            return                   # once until an export succeeds again
        self.failed = True
        if self.log is not None:
            self.log("error", msg, **fields)

    def _run(self):
        while not self.stopping.wait(self.otlp.push_interval):
            self.push()

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)
        self.push()
        if self.exporter is not None:
            try:
                self.exporter.shutdown()
            except Exception:
                pass
