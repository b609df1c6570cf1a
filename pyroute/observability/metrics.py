"""Prometheus metrics with Traefik's names, types and labels (pkg/observability/metrics).

Two halves:

- ``Recorder`` runs in each worker as one of ``Env.observers``: its ``observe`` is
  engine/metrics.pyx's (C): a finished exchange adds to its series' C counts, found in an
  open-addressing table by (entry point, routers, service, code, method, protocol) — no
  prometheus_client object, no Python object, no lock, no system call per request. TLS
  exchanges and header labels take ``observe_slow`` (Python: one accumulator, a plain list of
  numbers, per label set). ``take()`` hands both over as deltas (the worker sends them to
  the master every ``FLUSH_INTERVAL``).
- ``Store`` runs in the master: it adds the workers' deltas into totals and is the one
  prometheus_client collector of the master's registry, which ``render()`` serves as /metrics.

A worker's key is ``(entry point, routers, service, code, method, protocol, header values,
tls)`` where ``routers`` is the route's ``obs`` (the router and the routers above it) and
``service`` the load balancer of the server the request went to: the master expands one
accumulator into the entry point, router and service series Traefik's three metrics
middlewares write, keeping each level's series apart so that those of a router or service a
reload removed can be dropped (Traefik's prometheusState).
"""
import threading
import time
from bisect import bisect_left

from .._engine.metrics import Counts, method_name, protocol_name

FLUSH_INTERVAL = 1.0          # seconds between a worker's hand-offs to the master

# Traefik getMethod: the methods of RFC 7231/5789/7540, anything else is EXTENSION_METHOD
_METHODS = {m.encode(): m for m in ("HEAD", "GET", "POST", "PUT", "DELETE", "CONNECT",
                                    "OPTIONS", "TRACE", "PATCH", "PRI")}
EP_ONLY = ()                  # routers of a request no router took (Traefik's default handler)


def _has_token(value, token):
    # Traefik containsHeader: comma-separated items, trimmed, lower-cased, compared
    if value is None:
        return False
    for item in value.split(b","):
        if item.strip().lower() == token:
            return True
    return False


_TLS_VERSIONS = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}
_CIPHERS = None


def tls_labels(stream):
    """(tls_version, tls_cipher) as Traefik's GetVersion / GetCipherName write them ("1.3",
    Go's suite name; "unknown" otherwise) for a TLS connection's stream."""
    global _CIPHERS
    if _CIPHERS is None:
        from ..tls import CIPHER_SUITES
        _CIPHERS = {v: k for k, v in CIPHER_SUITES.items() if v}
        for name in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                     "TLS_CHACHA20_POLY1305_SHA256"):
            _CIPHERS[name] = name               # TLS 1.3: the same names in Go and OpenSSL
    conn = getattr(stream, "conn", None)
    try:
        version = conn.get_protocol_version_name()
        cipher = conn.get_cipher_name()
    except Exception:
        return "unknown", "unknown"
    return _TLS_VERSIONS.get(version, "unknown"), _CIPHERS.get(cipher, "unknown")


def protocol(req):
    """Traefik getRequestProtocol: websocket, sse, grpc-web, grpc, else http."""
    if _has_token(req.upgrade, b"websocket"):
        return "websocket"
    if _has_token(req.header(b"accept"), b"text/event-stream"):
        return "sse"
    ct = req.header(b"content-type")
    if ct is not None and ct.startswith(b"application/grpc"):
        return "grpc-web" if ct.startswith(b"application/grpc-web") else "grpc"
    return "http"


def recording(metrics):
    """(bucket bounds, header labels, levels) the workers count for ``metrics`` (the static
    Metrics): the union of the Prometheus buckets and the OTLP boundaries (each exposition
    reads its own bounds out of it exactly), Prometheus' headerLabels (OTLP has none), and
    the levels (entrypoint / router / service) either one has on."""
    bounds, levels = set(), set()
    labels = ()
    for sink in (metrics.prometheus, getattr(metrics, "otlp", None)):
        if sink is None:
            continue
        bounds.update(float(b) for b in (sink.buckets if sink is metrics.prometheus
                                         else sink.explicit_boundaries))
        levels.update(_levels(sink))
    if metrics.prometheus is not None:
        labels = tuple(metrics.prometheus.header_labels)
    return tuple(sorted(bounds)), labels, levels


def _levels(sink):
    return tuple(level for level, on in (("entrypoint", sink.add_entry_points_labels),
                                         ("router", sink.add_routers_labels),
                                         ("service", sink.add_services_labels)) if on)


def new_acc(n):
    """A series' counts for ``n`` bucket bounds: [requests, duration sum, request bytes,
    response bytes, n per-bucket counts (the last bucket, +Inf, is the rest), min, max]."""
    return [0, 0.0, 0, 0] + [0] * n + [_INF, 0.0]


_INF = float("inf")


class Recorder(Counts):
    """The worker's observer: ``observe(ex)`` once per finished exchange.

    ``observe`` is engine/metrics.pyx's Counts.observe (C: a series slot per (entry point,
    routers, service, code, method, protocol), counts in C arrays); the exchanges whose key
    needs Python objects come back here (``observe_slow``), as do the retry attempts and the
    mirrors' copies; ``take()`` hands both over in one dict."""

    __slots__ = ("buckets", "data", "headers")

    def __init__(self, metrics):
        self.buckets, labels, _ = recording(metrics)
        self.headers = tuple(h.lower().encode("latin-1") for _, h in labels)
        # the histograms' min and max: only OTLP sends them (the slots are always there)
        Counts.__init__(self, self.buckets, getattr(metrics, "otlp", None) is not None,
                        bool(self.headers))
        self.data = {}

    def observe_slow(self, ex, obs, service):
        """A TLS exchange or one with header labels (the C part resolved obs and service)."""
        req = ex.req
        hv = ()
        if self.headers:
            hv = tuple([(req.header(h) or b"").decode("latin-1") for h in self.headers])
        key = (ex.ep.name, obs, service, ex.status, method_name(req), protocol_name(req), hv,
               tls_labels(ex.conn.sock) if ex.tls else None)
        acc = self.data.get(key)
        if acc is None:
            acc = self.data[key] = new_acc(self.n)
        took = ex.ended - ex.started
        acc[0] += 1
        acc[1] += took
        acc[2] += ex.bytes_in
        acc[3] += ex.bytes_out
        n = self.n
        i = bisect_left(self.buckets, took)      # le: the first bucket >= took
        if i < n:
            acc[4 + i] += 1
        if self.minmax:
            i = 4 + n
            if took < acc[i]:
                acc[i] = took
            if took > acc[i + 1]:
                acc[i + 1] = took

    # -- an attempt the retry middleware gave up (pyroute.middlewares.retry): its service only
    def attempt(self, ex, status):
        """Traefik meters a service around each server's proxy, inside the retry: every
        attempt counts on its service (code, duration since the server was picked, the body
        sent), the entry point and the router count the exchange once (``observe``). The
        dropped answer's body is not read, so not counted in the response bytes (Traefik's
        retry writer counts what the proxy copied into it)."""
        route = ex.route
        server = ex.server
        if route is None or route.obs is None or server is None or not ex.origin_started:
            return
        service = getattr(server, "service_name", "")
        if not service:
            return
        meter = self.meter(ex, server, ex.body.size if ex.body is not None else 0)
        if meter is not None:
            self.mirror(meter, status, ex.loop.now - ex.origin_started, 0)

    # -- a mirroring service's copies (pyroute.proxy.mirror): the mirror's service only
    def meter(self, ex, server, body):
        """What a copy of ``ex`` to ``server`` is counted under (None: not metered)."""
        route = ex.route
        if route is None or route.obs is None:
            return None
        service = getattr(server, "service_name", "")
        if not service:
            return None
        req = ex.req
        hv = ()
        if self.headers:
            hv = tuple([(req.header(h) or b"").decode("latin-1") for h in self.headers])
        return (service, _METHODS.get(req.method, "EXTENSION_METHOD"), protocol(req), hv,
                tls_labels(ex.conn.sock) if ex.tls else None, body)

    def mirror(self, meter, status, took, body_out):
        service, method, proto, hv, tls, body_in = meter
        # no entry point and no router: Traefik's mirror handler calls the service directly
        key = (None, (), service, status, method, proto, hv, tls)
        acc = self.data.get(key)
        if acc is None:
            acc = self.data[key] = new_acc(self.n)
        acc[0] += 1
        acc[1] += took
        acc[2] += body_in
        acc[3] += body_out
        n = self.n
        i = bisect_left(self.buckets, took)
        if i < n:
            acc[4 + i] += 1
        if took < acc[4 + n]:
            acc[4 + n] = took
        if took > acc[5 + n]:
            acc[5 + n] = took

    def take(self):
        """The deltas since the last call (and fresh, empty accumulators)."""
        data, self.data = self.data, {}
        return self.take_counts(data)


def open_connections(clients, names=()):
    """{entry point: open client connections} (Traefik: TCP connections per entry point;
    ``names``: the worker's entry points, 0 when none is open)."""
    out = dict.fromkeys(names, 0)
    for c in clients:
        ep = getattr(c, "ep", None)
        name = getattr(ep, "name", None)
        if name is not None:
            out[name] = out.get(name, 0) + 1
    return out


# ---- the master's side ---------------------------------------------------------------------

_REQ = ("code", "method", "protocol")


class Store:
    """Totals of every worker's deltas, the config and health gauges; a prometheus_client
    collector (``collect``) yielding Traefik's metric families."""

    def __init__(self, metrics):
        self.settings = metrics.prometheus          # None: OTLP only (nothing to scrape)
        self.otlp = getattr(metrics, "otlp", None)
        self.buckets, labels, levels = recording(metrics)
        self.header_labels = tuple(label for label, _ in labels)
        self.prom_levels = _levels(self.settings) if self.settings is not None else ()
        # for a histogram of other bounds: the index in ``buckets`` of each of its bounds
        self.prom_bounds = _bound_index(self.buckets, self.settings.buckets) \
            if self.settings is not None else ()
        self.started = time.time()
        # level -> {(names, code, method, protocol, header values, tls): [count, sum,
        # req bytes, resp bytes, bucket counts...]}; names: (entrypoint,), (router,
        # service) or (service,) as the level's labels
        # the router and service levels are kept even when no exposition sends them: the
        # API's rates (pyroute.observability.rates) read them
        self.series = {level: {} for level in ("entrypoint", "router", "service")
                       if level in levels or level != "entrypoint"}
        self.open = {}                # worker index -> {entry point: connections}
        self.reloads = 0
        self.last_reload = 0.0
        self.health = None            # pyroute.server.health.HealthChecks (the master's)
        self.certs = ()               # (cn, serial, sans, not after) of the loaded certificates
        # Traefik's prometheusState: the routers and services of the configuration in force,
        # and those a reload removed, whose series go after the next scrape showed them
        self.names = None             # (routers, services) or None before a configuration
        self.gone = (set(), set())
        self._registry = None
        # the master's thread adds, the API's thread reads: a scrape sees whole hand-offs
        # (once a second per worker, never per request)
        self._lock = threading.Lock()

    # -- updates (the master's thread) -------------------------------------------------
    def add(self, worker, deltas, connections):
        series = self.series
        ep_s, router_s, service_s = (series.get("entrypoint"), series.get("router"),
                                     series.get("service"))
        with self._lock:
            for (ep, routers, service, code, method, proto, hv, tls), acc in deltas.items():
                rest = (code, method, proto, hv, tls)
                if ep_s is not None and ep is not None:     # None: a mirror's copy
                    _merge(ep_s, ((ep,),) + rest, acc)
                if router_s is not None:
                    for names in routers:
                        _merge(router_s, (tuple(names),) + rest, acc)
                if service_s is not None and service:
                    _merge(service_s, ((service,),) + rest, acc)
            self.open[worker] = connections

    def worker_gone(self, worker):
        self.open.pop(worker, None)

    def reloaded(self, config=None, names=None):
        """A configuration was applied. ``names``: its (routers, services) names (taken from
        ``config`` when not given): those the previous one had and this one has not are
        dropped after the next scrape (Traefik's SetDynamicConfig, then Collect)."""
        if config is not None:
            self.certs = certificates(config)
            if names is None:
                names = config_names(config)
        if names is not None:
            routers, services = set(names[0]), set(names[1])
            with self._lock:
                if self.names is not None:
                    self.gone[0].update(self.names[0] - routers)
                    self.gone[1].update(self.names[1] - services)
                self.names = (routers, services)
        # cmd/traefik: every configuration applied counts (the first one too); counted last,
        # so that a scrape showing this reload drops what it removed
        self.reloads += 1
        self.last_reload = float(int(time.time()))

    def _drop_gone(self):
        # after a scrape: the series of routers / services no longer configured (Traefik's
        # DeletePartialMatch: a service's go from the router level too, by its service label)
        routers, services = self.gone
        if not routers and not services:
            return
        with self._lock:
            now_r, now_s = self.names
            routers = {r for r in routers if r not in now_r}
            services = {s for s in services if s not in now_s}
            d = self.series.get("router")
            if d is not None:
                for key in [k for k in d if k[0][0] in routers or k[0][1] in services]:
                    del d[key]
            d = self.series.get("service")
            if d is not None:
                for key in [k for k in d if k[0][0] in services]:
                    del d[key]
            self.gone = (set(), set())

    # -- exposition (the API thread) ---------------------------------------------------
    def collect(self):
        try:
            yield from self._collect()
        finally:
            self._drop_gone()

    def snapshot(self):
        """{level: [(key, totals)]}: a copy the exposition reads without the lock."""
        with self._lock:
            return {level: [(k, list(v)) for k, v in d.items()]
                    for level, d in self.series.items()}

    def histogram(self, acc, bounds):
        """(cumulative counts at ``bounds`` (indexes in ``buckets``), count, sum)."""
        cum, out, at = 0, [], 0
        for j in bounds:
            while at <= j:
                cum += acc[4 + at]
                at += 1
            out.append(cum)
        return out, acc[0], acc[1]

    def _collect(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)
        series = self.snapshot()
        prom_buckets = tuple(self.settings.buckets)
        yield _counter(CounterMetricFamily, "traefik_config_reloads", "Config reloads", [],
                       [((), self.reloads)])
        g = GaugeMetricFamily("traefik_config_last_reload_success",
                              "Last config reload success", labels=[])
        g.add_metric([], self.last_reload)
        yield g
        g = GaugeMetricFamily("traefik_open_connections", "How many open connections exist, "
                              "by entryPoint and protocol", labels=["entrypoint", "protocol"])
        conns = {}
        for per in list(self.open.values()):
            for ep, n in per.items():
                conns[ep] = conns.get(ep, 0) + n
        for ep in sorted(conns):
            g.add_metric([ep, "TCP"], conns[ep])
        yield g
        g = GaugeMetricFamily("traefik_tls_certs_not_after", "Certificate expiration "
                              "timestamp", labels=["cn", "serial", "sans"])
        for cn, serial, sans, not_after in self.certs:
            g.add_metric([cn, serial, sans], not_after)
        yield g
        for level, base, where in (("entrypoint", ["entrypoint"], "an entrypoint"),
                                   ("router", ["router", "service"], "a router"),
                                   ("service", ["service"], "a service")):
            if level not in self.prom_levels:
                continue
            reqs_h, reqs_tls, bytes_in, bytes_out, hist = {}, {}, {}, {}, {}
            for (names, code, method, proto, hv, tls), acc in series[level]:
                labels = (str(code), method, proto) + names
                _add(reqs_h, labels + tuple(hv), acc[0])
                if tls is not None:
                    _add(reqs_tls, tuple(tls) + names, acc[0])
                _add(bytes_in, labels, acc[2])
                _add(bytes_out, labels, acc[3])
                cum, count, total = self.histogram(acc, self.prom_bounds)
                h = hist.get(labels)
                if h is None:
                    h = hist[labels] = [0.0] + [0] * len(cum) + [0]
                h[0] += total
                for i, n in enumerate(cum):
                    h[i + 1] += n
                h[-1] += count
            prefix = "traefik_%s_" % level
            yield _counter(CounterMetricFamily, prefix + "requests",
                           "How many HTTP requests processed on %s, partitioned by status "
                           "code, protocol, and method." % where,
                           list(_REQ) + base + list(self.header_labels), reqs_h.items())
            yield _counter(CounterMetricFamily, prefix + "requests_tls",
                           "How many HTTP requests with TLS processed on %s, partitioned by "
                           "TLS Version and TLS cipher Used." % where,
                           ["tls_version", "tls_cipher"] + base, reqs_tls.items())
            hf = HistogramMetricFamily(prefix + "request_duration_seconds",
                                       "How long it took to process the request on %s, "
                                       "partitioned by status code, protocol, and method."
                                       % where, labels=list(_REQ) + base)
            for labels, h in sorted(hist.items()):
                out = [(_fmt(b), n) for b, n in zip(prom_buckets, h[1:-1])]
                out.append(("+Inf", h[-1]))
                hf.add_metric(list(labels), out, h[0])
            yield hf
            yield _counter(CounterMetricFamily, prefix + "requests_bytes",
                           "The total size of requests in bytes handled by %s, partitioned "
                           "by status code, protocol, and method." % where,
                           list(_REQ) + base, bytes_in.items())
            yield _counter(CounterMetricFamily, prefix + "responses_bytes",
                           "The total size of responses in bytes handled by %s, partitioned "
                           "by status code, protocol, and method." % where,
                           list(_REQ) + base, bytes_out.items())
            if level == "service":
                yield _counter(CounterMetricFamily, "traefik_service_retries",
                               "How many request retries happened on a service.",
                               ["service"], ())
                g = GaugeMetricFamily("traefik_service_server_up", "service server is up, "
                                      "described by gauge value of 0 or 1.",
                                      labels=["service", "url"])
                health = self.health
                if health is not None:
                    for t in sorted(list(health.targets.values()),
                                    key=lambda t: (t.service, t.url)):
                        g.add_metric([t.service, t.url], 1 if t.up else 0)
                yield g

    def registry(self):
        if self._registry is None:
            from prometheus_client import CollectorRegistry
            from prometheus_client.process_collector import ProcessCollector
            reg = CollectorRegistry(auto_describe=False)
            reg.register(_Collector(self))
            ProcessCollector(registry=reg)     # process_* as Traefik's ProcessCollector
            self._registry = reg
        return self._registry

    def render(self, accept=""):
        """(content type, body) of a scrape."""
        from prometheus_client import exposition
        encoder, content_type = exposition.choose_encoder(accept or "")
        return content_type, encoder(self.registry())


class _Collector:
    def __init__(self, store):
        self.store = store

    def collect(self):
        return self.store.collect()


def _bound_index(union, bounds):
    return tuple(union.index(float(b)) for b in bounds)


def _merge(d, key, acc):
    tot = d.get(key)
    if tot is None:
        d[key] = list(acc)
    else:
        # counts add up; the last two (min, max) are the least and the greatest
        m = len(acc) - 2
        for i in range(m):
            tot[i] += acc[i]
        if acc[m] < tot[m]:
            tot[m] = acc[m]
        if acc[m + 1] > tot[m + 1]:
            tot[m + 1] = acc[m + 1]


def _add(d, key, v):
    d[key] = d.get(key, 0) + v


def _fmt(b):
    return repr(float(b)) if float(b) != int(b) else "%s" % float(b)


def _counter(cls, name, doc, labels, items):
    c = cls(name, doc, labels=list(labels))
    for labels_, v in sorted(items):
        c.add_metric(list(labels_), v)
    return c


def route_obs(router_name, service_name, metrics_on, parents=()):
    """What a compiled Route carries for the Recorder: None (not metered: the router's
    ``observability.metrics`` is false) or ``((router, service), ...)`` — the router and the
    routers above it (multi-layer routing: Traefik meters each router with service
    ``<router>-muxer`` for a parent), each with its ``service`` label."""
    if not metrics_on:
        return None
    return tuple(parents) + ((router_name, service_name),)


def config_names(config):
    """(router names, service names) of a configuration (Traefik's OnConfigurationUpdate)."""
    http = (getattr(config, "dynamic", None) or {}).get("http") or {}
    return tuple(http.get("routers") or ()), tuple(http.get("services") or ())


def certificates(config):
    """(cn, serial, sans, not after) for the certificates the configuration loads."""
    out = []
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
    except ImportError:
        return ()
    tls = config.dynamic.get("tls") or {}
    pems = [cert.get("certFile") for cert in tls.get("certificates") or ()
            if isinstance(cert, dict)]
    for store in (tls.get("stores") or {}).values():
        dc = (store or {}).get("defaultCertificate") if isinstance(store, dict) else None
        if isinstance(dc, dict):
            pems.append(dc.get("certFile"))
    seen = set()
    for pem in pems:
        if not pem or not isinstance(pem, (str, bytes)):
            continue
        data = pem.encode() if isinstance(pem, str) else pem
        if b"-----BEGIN" not in data:
            continue
        try:
            c = x509.load_pem_x509_certificate(data)
        except ValueError:
            continue
        cns = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = cns[0].value if cns else ""
        try:
            san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            sans = sorted(san.value.get_values_for_type(x509.DNSName))   # appendCertMetric
        except x509.ExtensionNotFound:
            sans = []
        serial = "%d" % c.serial_number
        key = (cn, serial)
        if key in seen:
            continue
        seen.add(key)
        try:
            not_after = c.not_valid_after_utc.timestamp()
        except AttributeError:
            import calendar
            not_after = calendar.timegm(c.not_valid_after.timetuple())
        out.append((cn, serial, ",".join(sans), float(int(not_after))))
    return tuple(out)
