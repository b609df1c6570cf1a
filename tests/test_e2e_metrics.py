"""End to end: ``metrics.prometheus``, ``ping`` and ``pyroute healthcheck`` through a real
``pyroute run`` (two workers: the counts must add up across them) with real backends.

- the scrape after known requests: Traefik's metric names, types and labels (the cases of
  Traefik's pkg/observability/metrics/prometheus_test.go TestPrometheus, ported as a table),
  counts summed over the workers, the histogram's buckets, request bytes, headerLabels, the
  protocol and method labels, a router with ``observability.metrics: false`` left out,
  config reloads, open connections, a health-checked server's ``server_up``;
- ``promtool check metrics`` on every scrape, and a real Prometheus scraping pyroute with the
  query results checked (needs Debian's ``prometheus`` package: .ci/run installs it);
- ``/ping`` through ``ping@internal`` on the ``traefik`` entry point and on another one:
  200, then terminatingStatusCode while draining; manualRouting; and ``pyroute healthcheck``
  exit codes (the ``traefik`` entry point ping creates on ``:8080``:
  tests/test_e2e_traefik_entrypoint.py).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from e2e_support import REPO, Pyroute, backend_service, free_port, read_response
from test_e2e_health import HealthBackend, external

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
REQUIRE_PROMETHEUS = os.environ.get("PYROUTE_REQUIRE_PROMETHEUS") == "1"


def _manifests(be_port, hc_port):
    # r-main: metered; r-quiet: observability.metrics false; r-hc: an ExternalName service
    # with a health check (server_up)
    return (backend_service("be", [be_port]) + external("hc", hc_port) + """
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
    - match: Host(`quiet.test`)
      kind: Rule
      observability: {metrics: false}
      services: [{name: be, port: 80}]
    - match: Host(`hc.test`)
      kind: Rule
      services: [{name: hc, port: %d, healthCheck: {path: /health, interval: 1s}}]
""" % hc_port)


def _raw(port, data, keep=None):
    s = keep or socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        status, headers, body, _ = read_response(s, data.startswith(b"HEAD "))
        return status, headers, body
    finally:
        if keep is None:
            s.close()


def _req(port, method="GET", path="/", host="a.test", headers="", body=b""):
    head = "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n%s" % (
        method, path, host, "probe/1", headers)
    if body:
        head += "Content-Length: %d\r\n" % len(body)
    return _raw(port, head.encode() + b"\r\n" + body)


def _http(port, path, method="GET"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """[(name, {label: value}, float)] of a text exposition; ``# TYPE`` lines as types."""
    samples, types = [], {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, line
        samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")),
                        float(m.group(3))))
    return samples, types


def value(samples, name, **labels):
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for n, ls, v in samples if n == name and
               all(ls.get(k) == str(x) for k, x in labels.items()))


def series(samples, name, **labels):
    return [ls for n, ls, v in samples if n == name and
            all(ls.get(k) == str(x) for k, x in labels.items())]


def scrape(port, path="/metrics"):
    status, headers, body = _http(port, path)
    assert status == 200, (status, body)
    text = body.decode()
    if PROMTOOL:
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True,
                               capture_output=True)
        # promtool lints too (e.g. a counter's name without _total); only errors fail here
        assert "error" not in check.stderr.lower(), check.stderr
    return text


def wait_for(port, pred, timeout=8.0, path="/metrics"):
    """Scrape until ``pred(samples)`` holds (the workers hand over every second)."""
    end = time.time() + timeout
    while True:
        samples, types = parse(scrape(port, path))
        if pred(samples) or time.time() > end:
            return samples, types
        time.sleep(0.2)


ROUTER = "default-r-"     # Traefik's router / service names of IngressRoute r start so


def _name(samples, metric, prefix, host_filter=None):
    names = sorted({ls["router" if "router" in ls else "service"] for ls in
                    series(samples, metric)
                    if ls.get("router", ls.get("service", "")).startswith(prefix)})
    return names


@pytest.fixture
def metered(tmp_path):
    be = HealthBackend("be")
    hc = HealthBackend("hc")
    tport = free_port()
    proxy = Pyroute(tmp_path, _manifests(be.port, hc.port), workers=2)
    proxy.traefik_port = tport
    proxy.static.write_text("""entryPoints:
  web:
    address: "127.0.0.1:%d"
    transport: {lifeCycle: {requestAcceptGraceTimeout: 3s, graceTimeOut: 2s}}
  traefik:
    address: "127.0.0.1:%d"
    transport: {lifeCycle: {requestAcceptGraceTimeout: 3s, graceTimeOut: 2s}}
ping: {}
metrics:
  prometheus:
    buckets: [0.1, 0.5, 2]
    addRoutersLabels: true
    headerLabels: {useragent: User-Agent}
providers:
  kubernetesCRD: {allowExternalNameServices: true}
log: {level: INFO}
""" % (proxy.port, tport))
    proxy.start()
    try:
        yield proxy, be, hc
    finally:
        proxy.stop()
        be.close()
        hc.close()


def test_counts_labels_buckets_across_two_workers(metered):
    proxy, be, hc = metered
    port, tport = proxy.port, proxy.traefik_port
    # known requests, each on its own connection (SO_REUSEPORT spreads them over the workers)
    for _ in range(20):
        assert _req(port)[0] == 200
    for _ in range(3):
        assert _req(port, "POST", "/form", body=b"0123456789")[0] == 200
    for _ in range(2):
        assert _req(port, path="/slow/250")[0] == 200   # the backend waits 0.25 s
    assert _req(port, "PURGE", "/x")[0] == 200
    assert _req(port, headers="Accept: text/event-stream\r\n")[0] == 200
    for _ in range(4):
        assert _req(port, host="nowhere.test")[0] == 404
    for _ in range(5):
        assert _req(port, host="quiet.test")[0] == 200
    ep = dict(entrypoint="web")
    samples, types = wait_for(tport, lambda s: value(
        s, "traefik_entrypoint_requests_total", **ep) >= 31)
    total = value(samples, "traefik_entrypoint_requests_total", **ep)
    # 20 + 3 + 2 + 1 + 1 + 4 (404: Traefik's default handler is metered too); quiet.test's
    # 5 are left out (observability.metrics: false)
    assert total == 31, samples
    assert value(samples, "traefik_entrypoint_requests_total", code=200, method="GET",
                 protocol="http", useragent="probe/1", **ep) == 22
    assert value(samples, "traefik_entrypoint_requests_total", code=404, **ep) == 4
    assert value(samples, "traefik_entrypoint_requests_total", method="EXTENSION_METHOD",
                 **ep) == 1
    assert value(samples, "traefik_entrypoint_requests_total", protocol="sse", **ep) == 1
    assert value(samples, "traefik_entrypoint_requests_total", method="POST", **ep) == 3
    # request bytes: the bodies (3 x 10)
    assert value(samples, "traefik_entrypoint_requests_bytes_total", method="POST", **ep) == 30
    assert value(samples, "traefik_entrypoint_responses_bytes_total", code=200, **ep) > 0
    # the histogram: the configured buckets, cumulative; /slow (0.25 s) is above 0.1
    h = "traefik_entrypoint_request_duration_seconds"
    assert types[h] == "histogram"
    les = sorted({ls["le"] for ls in series(samples, h + "_bucket", **ep)})
    assert les == sorted(["0.1", "0.5", "2.0", "+Inf"])
    get200 = dict(code=200, method="GET", protocol="http", **ep)
    assert value(samples, h + "_count", **get200) == 22
    assert value(samples, h + "_bucket", le="+Inf", **get200) == 22
    assert value(samples, h + "_bucket", le="0.5", **get200) == 22
    assert value(samples, h + "_bucket", le="0.1", **get200) == 20
    assert value(samples, h + "_sum", **get200) >= 0.5
    # router and service series: r's first route only; the quiet route has none
    routers = _name(samples, "traefik_router_requests_total", ROUTER)
    assert len(routers) == 1, routers        # a.test's router (hc.test had no request)
    router = routers[0]
    rs = series(samples, "traefik_router_requests_total", router=router)
    assert {ls["service"] for ls in rs} == {router}     # Traefik: the route's service name
    assert value(samples, "traefik_router_requests_total", router=router) == 27
    assert value(samples, "traefik_service_requests_total", service=router) == 27
    assert not series(samples, "traefik_router_requests_total", code=404)
    assert value(samples, "traefik_router_request_duration_seconds_count",
                 router=router) == 27
    # the gauges and counters that do not come from requests
    assert value(samples, "traefik_config_reloads_total") == 1
    assert value(samples, "traefik_config_last_reload_success") > time.time() - 120
    hc_up = series(samples, "traefik_service_server_up")
    assert any(ls["url"] == "http://127.0.0.1:%d" % hc.port for ls in hc_up), hc_up
    assert value(samples, "traefik_service_server_up") == 1
    # open connections: three kept open show up at the next hand-off
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        for s in held:
            _raw(port, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", keep=s)
        samples, _ = wait_for(tport, lambda s: value(
            s, "traefik_open_connections", entrypoint="web", protocol="TCP") >= 3)
        assert value(samples, "traefik_open_connections", entrypoint="web",
                     protocol="TCP") == 3
    finally:
        for s in held:
            s.close()
    # a reload counts
    proxy.write_manifests((proxy.mdir / "config.yaml").read_text() + "\n# changed\n")
    samples, _ = wait_for(tport, lambda s: value(s, "traefik_config_reloads_total") >= 2)
    assert value(samples, "traefik_config_reloads_total") == 2
    # /ping on the traefik entry point (defined here, so the workers' entry point, with the
    # routers ping@internal and prometheus@internal): 200 "OK", then 503 once draining
    assert _http(tport, "/ping") [:1] == (200,)
    assert _http(tport, "/ping")[2] == b"OK"
    proxy.signal(signal.SIGTERM)
    end = time.time() + 3
    code = 200
    while time.time() < end and code == 200:
        code = _http(tport, "/ping")[0]
        time.sleep(0.05)
    assert code == 503
    # the workers still serve during requestAcceptGraceTimeout
    assert _req(port)[0] == 200


# Traefik's TestPrometheus (pkg/observability/metrics/prometheus_test.go): each metric family
# with its labels after one request of each kind. Ported: the names and label sets, against
# pyroute's scrape (retries and TLS requests are not counted by pyroute: their families exist
# with no series, see docs/observability.md); the TLS cases are in
# test_tls_requests_and_certificates.
TRAEFIK_CASES = [
    ("traefik_config_reloads_total", {}, "counter"),
    ("traefik_config_last_reload_success", {}, "gauge"),
    ("traefik_open_connections", {"entrypoint": "web", "protocol": "TCP"}, "gauge"),
    ("traefik_entrypoint_requests_total",
     {"code": "200", "method": "GET", "protocol": "http", "entrypoint": "web"}, "counter"),
    ("traefik_entrypoint_request_duration_seconds_bucket",
     {"code": "200", "method": "GET", "protocol": "http", "entrypoint": "web"}, "histogram"),
    ("traefik_entrypoint_requests_bytes_total",
     {"code": "200", "method": "GET", "protocol": "http", "entrypoint": "web"}, "counter"),
    ("traefik_entrypoint_responses_bytes_total",
     {"code": "200", "method": "GET", "protocol": "http", "entrypoint": "web"}, "counter"),
    ("traefik_router_requests_total",
     {"code": "200", "method": "GET", "protocol": "http"}, "counter"),
    ("traefik_router_request_duration_seconds_bucket",
     {"code": "200", "method": "GET", "protocol": "http"}, "histogram"),
    ("traefik_router_requests_bytes_total",
     {"code": "200", "method": "GET", "protocol": "http"}, "counter"),
    ("traefik_router_responses_bytes_total",
     {"code": "200", "method": "GET", "protocol": "http"}, "counter"),
    ("traefik_service_requests_total",
     {"code": "200", "method": "GET", "protocol": "http"}, "counter"),
    ("traefik_service_request_duration_seconds_bucket",
     {"code": "200", "method": "GET", "protocol": "http"}, "histogram"),
    ("traefik_service_server_up", {}, "gauge"),
    ("traefik_service_requests_bytes_total",
     {"code": "200", "method": "GET", "protocol": "http"}, "counter"),
    ("traefik_service_responses_bytes_total",
     {"code": "200", "method": "GET", "protocol": "http"}, "counter"),
]


def test_traefik_prometheus_table_and_real_prometheus(metered, tmp_path):
    proxy, be, hc = metered
    port, tport = proxy.port, proxy.traefik_port
    for _ in range(6):
        assert _req(port)[0] == 200
    samples, types = wait_for(tport, lambda s: value(
        s, "traefik_entrypoint_requests_total", entrypoint="web") >= 6)
    for name, labels, typ in TRAEFIK_CASES:
        found = series(samples, name, **labels)
        assert found, (name, labels)
        family = re.sub(r"_(bucket|total)$", "", name)
        assert types.get(family, types.get(name)) == typ, (name, types.get(family))
        if name.startswith("traefik_router_"):
            assert all("router" in ls and "service" in ls for ls in found)
        if name.startswith("traefik_service_") and name != "traefik_service_server_up":
            assert all("service" in ls and "router" not in ls for ls in found)
    # plain HTTP only here: no TLS series (test_tls_requests_and_certificates has them)
    assert not series(samples, "traefik_entrypoint_requests_tls_total")
    # addEntryPointsLabels / addServicesLabels default on, addRoutersLabels on here; the
    # internal routers (ping@internal on traefik) are not metered without addInternals
    _http(tport, "/ping")
    assert not [ls for n, ls, v in samples if "ping@internal" in ls.values()]
    if not (PROMETHEUS and PROMTOOL):
        if REQUIRE_PROMETHEUS:
            pytest.fail("prometheus / promtool missing (Debian package prometheus)")
        pytest.skip("Debian package prometheus (prometheus, promtool) is not installed: the "
                    "real-Prometheus half of this test needs it (.ci/run installs it)")
    pport = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                   "scrape_configs:\n  - job_name: pyroute\n"
                   "    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % tport)
    prom = subprocess.Popen([PROMETHEUS, "--config.file=%s" % cfg,
                             "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
                             "--web.listen-address=127.0.0.1:%d" % pport],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        def query(q):
            url = "http://127.0.0.1:%d/api/v1/query?%s" % (
                pport, urllib.parse.urlencode({"query": q}))
            with urllib.request.urlopen(url, timeout=5) as r:
                data = json.load(r)
            assert data["status"] == "success", data
            return data["data"]["result"]
        q = 'sum(traefik_entrypoint_requests_total{entrypoint="web",code="200"})'
        end = time.time() + 25
        result = None
        while time.time() < end:
            try:
                result = query(q)
                if result and float(result[0]["value"][1]) >= 6:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert result and float(result[0]["value"][1]) == 6, result
        # queries of Traefik's stock Grafana dashboard shape
        by_service = query('sum by (service) (traefik_service_requests_total)')
        assert any(r["metric"].get("service", "").startswith(ROUTER) and
                   float(r["value"][1]) == 6 for r in by_service), by_service
        quantile = query('histogram_quantile(0.5, sum by (le) '
                         '(traefik_entrypoint_request_duration_seconds_bucket))')
        assert quantile and 0 < float(quantile[0]["value"][1]) <= 0.1, quantile
        up = query('traefik_service_server_up')
        assert up and float(up[0]["value"][1]) == 1, up
    finally:
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()


def test_traefik_entry_point_with_the_api_ping_and_metrics(tmp_path):
    """With api.insecure the workers serve the traefik entry point (as Traefik, one entry
    point for the internal routers and the IngressRoutes on it): /ping and /metrics are
    routed there to the master (beside /api), /ping 503 once it drains."""
    be = HealthBackend("be")
    tport = free_port()
    proxy = Pyroute(tmp_path, backend_service("be", [be.port]) + """
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
""", workers=2)
    proxy.static.write_text(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:%d\"\n"
        "    transport: {lifeCycle: {requestAcceptGraceTimeout: 3s, graceTimeOut: 2s}}\n"
        "  traefik:\n    address: \"127.0.0.1:%d\"\n"
        "    transport: {lifeCycle: {requestAcceptGraceTimeout: 3s, graceTimeOut: 2s}}\n"
        "api: {insecure: true}\nping: {}\nmetrics: {prometheus: {}}\nlog: {level: INFO}\n"
        % (proxy.port, tport))
    try:
        proxy.start()
        assert "entry point traefik (served by the master)" not in proxy.output()
        assert "entry point traefik listening on http://127.0.0.1:%d" % tport in \
            proxy.output()
        for _ in range(3):
            assert _req(proxy.port)[0] == 200
        samples, _ = wait_for(tport, lambda s: value(
            s, "traefik_entrypoint_requests_total", entrypoint="web") >= 3)
        assert value(samples, "traefik_entrypoint_requests_total", entrypoint="web") == 3
        # the internal routers on traefik are not metered (metrics.addInternals off)
        assert not series(samples, "traefik_entrypoint_requests_total", entrypoint="traefik")
        assert _http(tport, "/ping")[::2] == (200, b"OK")
        assert _http(tport, "/api/version")[0] == 200          # the API beside them
        assert _http(tport, "/ping", "HEAD")[0] == 200
        proxy.signal(signal.SIGTERM)
        end = time.time() + 2.5
        code = 200
        while time.time() < end and code == 200:
            code = _http(tport, "/ping")[0]
            time.sleep(0.05)
        assert code == 503
        assert _http(tport, "/ping")[2] == b"Service Unavailable"
    finally:
        proxy.stop()
        be.close()


def _healthcheck(static_path, *flags):
    return subprocess.run([sys.executable, "-m", "pyroute", "healthcheck", "-c",
                           str(static_path)] + list(flags), capture_output=True, text=True,
                          cwd=str(REPO), timeout=20)


def test_ping_on_a_worker_entry_point_draining_and_healthcheck(tmp_path):
    be = HealthBackend("be")
    proxy = Pyroute(tmp_path, backend_service("be", [be.port]) + """
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
""", workers=2)
    proxy.static.write_text(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:%d\"\n"
        "    transport: {lifeCycle: {requestAcceptGraceTimeout: 3s, graceTimeOut: 2s}}\n"
        "ping: {entryPoint: web, terminatingStatusCode: 204}\nlog: {level: INFO}\n"
        % proxy.port)
    try:
        # not running yet: healthcheck fails (connection refused)
        r = _healthcheck(proxy.static)
        assert r.returncode == 1 and r.stdout.startswith("Error calling healthcheck"), r
        proxy.start()
        # ping@internal on web: any host, PathPrefix(`/ping`), above every other router
        status, headers, body = _req(proxy.port, path="/ping", host="whatever.test")
        assert (status, body) == (200, b"OK")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert _req(proxy.port, path="/ping/deeper", host="a.test")[0] == 200
        assert _req(proxy.port, "HEAD", "/ping")[0] == 200
        r = _healthcheck(proxy.static)
        assert r.returncode == 0 and r.stdout.strip() == \
            "OK: http://127.0.0.1:%d/ping" % proxy.port, r
        # without ping in the static configuration: Traefik's message, exit 1
        other = tmp_path / "noping.yaml"
        other.write_text("entryPoints:\n  web: {address: \"127.0.0.1:%d\"}\n" % proxy.port)
        r = _healthcheck(other)
        assert r.returncode == 1 and "please enable `ping`" in r.stdout, r
        # Traefik's flags work too (--ping --ping.entryPoint=web)
        r = subprocess.run([sys.executable, "-m", "pyroute", "healthcheck",
                            "--entryPoints.web.address=127.0.0.1:%d" % proxy.port, "--ping",
                            "--ping.entryPoint=web"], capture_output=True, text=True,
                           cwd=str(REPO), timeout=20)
        assert r.returncode == 0, r
        # draining: the workers still accept (requestAcceptGraceTimeout), /ping says 204
        proxy.signal(signal.SIGTERM)
        end = time.time() + 2.5
        code = 200
        while time.time() < end and code == 200:
            code = _req(proxy.port, path="/ping")[0]
            time.sleep(0.05)
        assert code == 204
        assert _req(proxy.port)[0] == 200
        r = _healthcheck(proxy.static)
        assert r.returncode == 1 and r.stdout.startswith("Bad healthcheck status: 204"), r
    finally:
        proxy.stop()
        be.close()


def test_manual_routing_and_internals_not_metered(tmp_path):
    be = HealthBackend("be")
    proxy = Pyroute(tmp_path, backend_service("be", [be.port]) + """
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
    - match: Host(`ops.test`) && Path(`/healthz`)
      kind: Rule
      services: [{name: ping@internal, kind: TraefikService}]
    - match: Host(`ops.test`) && Path(`/stats`)
      kind: Rule
      services: [{name: prometheus@internal, kind: TraefikService}]
    - match: PathPrefix(`/api`)
      kind: Rule
      services: [{name: api@internal, kind: TraefikService}]
""", workers=2)
    proxy.static.write_text(
        "entryPoints:\n  web: {address: \"127.0.0.1:%d\"}\n"
        "api: {dashboard: false}\n"
        "ping: {entryPoint: web, manualRouting: true}\n"
        "metrics:\n  prometheus: {entryPoint: web, manualRouting: true}\n"
        "log: {level: INFO}\n" % proxy.port)
    try:
        proxy.start()
        # manualRouting: no automatic /ping or /metrics router
        assert _req(proxy.port, path="/ping", host="a.test")[0] == 200     # the backend's
        assert be.received, "the backend got /ping"
        assert _req(proxy.port, path="/metrics", host="x.test")[0] == 404
        assert _req(proxy.port, path="/healthz", host="ops.test")[:3:2] == (200, b"OK")
        for _ in range(4):
            assert _req(proxy.port, host="a.test")[0] == 200
        end = time.time() + 8
        while True:
            status, headers, body = _req(proxy.port, path="/stats", host="ops.test")
            assert status == 200 and headers["content-type"].startswith("text/plain")
            samples, _ = parse(body.decode())
            if value(samples, "traefik_entrypoint_requests_total", code=200) >= 5 or \
                    time.time() > end:
                break
            time.sleep(0.2)
        # the attacking request: a client's Host never picks another internal service than
        # the one its route forwards to (api@internal answers the API, not the metrics)
        for host in ("prometheus.internal", "ping.internal"):
            status, headers, body = _req(proxy.port, path="/api/version", host=host)
            assert status == 200 and json.loads(body)["Version"], (status, body)
            assert b"traefik_" not in body and body != b"OK"
        # 5 to the backend (4 + /ping); /healthz and /stats go to @internal services: not
        # metered without metrics.addInternals
        assert value(samples, "traefik_entrypoint_requests_total", code=200) == 5, samples
        assert value(samples, "traefik_entrypoint_requests_total", code=404) == 1
        assert not [ls for n, ls, v in samples if any("@internal" in x for x in ls.values())]
        # addRoutersLabels is off by default: no router series
        assert not series(samples, "traefik_router_requests_total")
        # the traefik entry point is not served (nothing needs it)
        out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c",
                              str(proxy.static), str(proxy.mdir)], capture_output=True,
                             text=True, cwd=str(REPO), timeout=30)
        assert "ping@internal" not in out.stdout + out.stderr, out
    finally:
        proxy.stop()
        be.close()


def test_tls_requests_and_certificates(tmp_path):
    import base64
    import ssl

    import trustme
    from cryptography import x509
    ca = trustme.CA()
    leaf = ca.issue_cert("b.test", "a.tls.test")
    be = HealthBackend("be")
    tport = free_port()
    pem = b"".join(b.bytes() for b in leaf.cert_chain_pems)
    secret = ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: cert, namespace: default}\n"
              "type: kubernetes.io/tls\ndata:\n  tls.crt: %s\n  tls.key: %s\n" % (
                  base64.b64encode(pem).decode(),
                  base64.b64encode(leaf.private_key_pem.bytes()).decode()))
    proxy = Pyroute(tmp_path, backend_service("be", [be.port]) + secret + """
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: s, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.tls.test`)
      kind: Rule
      services: [{name: be, port: 80}]
  tls: {secretName: cert}
""", workers=2)
    proxy.static.write_text(
        "entryPoints:\n  web: {address: \"127.0.0.1:%d\"}\n"
        "  traefik: {address: \"127.0.0.1:%d\"}\n"
        "metrics:\n  prometheus: {addRoutersLabels: true}\nlog: {level: INFO}\n"
        % (proxy.port, tport))
    try:
        proxy.start()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(ctx)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256")
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="a.tls.test") as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: a.tls.test\r\n\r\n")
                    assert read_response(s)[0] == 200
                    suite = s.cipher()[0]
        go = {"ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
              "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}[suite]
        samples, _ = wait_for(tport, lambda s: value(
            s, "traefik_entrypoint_requests_tls_total") >= 3)
        assert value(samples, "traefik_entrypoint_requests_tls_total", tls_version="1.2",
                     tls_cipher=go, entrypoint="web") == 3, samples
        rt = series(samples, "traefik_router_requests_tls_total", tls_version="1.2")
        assert len(rt) == 1 and rt[0]["router"].startswith("default-s-"), rt
        assert value(samples, "traefik_service_requests_tls_total", tls_cipher=go) == 3
        # TLS 1.3 is labelled "1.3" with its suite's name
        ctx13 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(ctx13)
        ctx13.minimum_version = ssl.TLSVersion.TLSv1_3
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
            with ctx13.wrap_socket(raw, server_hostname="a.tls.test") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: a.tls.test\r\n\r\n")
                assert read_response(s)[0] == 200
                suite13 = s.cipher()[0]
        samples, _ = wait_for(tport, lambda s: value(
            s, "traefik_entrypoint_requests_tls_total", tls_version="1.3") >= 1)
        assert value(samples, "traefik_entrypoint_requests_tls_total", tls_version="1.3",
                     tls_cipher=suite13) == 1
        # traefik_tls_certs_not_after{cn, serial, sans}: the secret's certificate
        cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        found = series(samples, "traefik_tls_certs_not_after", serial=cert.serial_number)
        assert found and found[0]["sans"] == "a.tls.test,b.test", found
        assert value(samples, "traefik_tls_certs_not_after", serial=cert.serial_number) == \
            int(cert.not_valid_after_utc.timestamp())
    finally:
        proxy.stop()
        be.close()


@pytest.mark.parametrize("text,field,message", [
    ("metrics:\n  prometheus:\n    buckets: [0.5, 0.1]\n", "metrics.prometheus.buckets",
     "histogram buckets must be in increasing order"),
    ("metrics:\n  prometheus:\n    headerLabels: {code: X-Code}\n",
     "metrics.prometheus.headerLabels.code", "invalid Prometheus label name 'code'"),
    ("ping:\n  terminatingStatusCode: 42\n", "ping.terminatingStatusCode",
     "expected an HTTP status code"),
])
def test_static_errors_name_file_line_and_field(tmp_path, text, field, message):
    from pyroute.errors import ConfigError
    from pyroute.static import load_static
    path = tmp_path / "static.yaml"
    path.write_text("entryPoints:\n  web: {address: \"127.0.0.1:1\"}\n" + text)
    with pytest.raises(ConfigError) as info:
        load_static(str(path))
    e = info.value
    assert (e.file, e.field) == (str(path), field) and e.line and e.line >= 3, e.render()
    assert message in e.message


# ---- service series, bytes, stale series, entry points' observability --------------------

def _split_manifests(one, two):
    # a weighted TraefikService over two Services; a route whose middleware answers (403)
    return (backend_service("one", [one]) + "---\n" + backend_service("two", [two]) + """
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: split, namespace: default}
spec:
  weighted:
    services: [{name: one, port: 80, weight: 1}, {name: two, port: 80, weight: 1}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: deny, namespace: default}
spec:
  ipAllowList: {sourceRange: [10.0.0.0/8]}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: w, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`w.test`)
      kind: Rule
      services: [{name: split, kind: TraefikService}]
    - match: Host(`deny.test`)
      kind: Rule
      middlewares: [{name: deny}]
      services: [{name: one, port: 80}]
""")


def _chunked_req(port, host, payload, pieces=3):
    body = b""
    step = -(-len(payload) // pieces)
    for i in range(0, len(payload), step):
        part = payload[i:i + step]
        body += b"%x\r\n" % len(part) + part + b"\r\n"
    head = ("POST /post HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
            % host).encode()
    return _raw(port, head + body + b"0\r\n\r\n")


def test_weighted_children_bytes_and_stale_series(tmp_path):
    # Traefik meters a service around each server of a load balancer
    # (pkg/server/service getLoadBalancerServiceHandler): a request through a weighted
    # TraefikService counts for the child load balancer it went to, not for the weighted
    # service (whose name is the router's service label); a request a middleware answered
    # reached no server, so no service series. Bytes: the bodies only (capture's counters).
    from e2e_backend import Backend
    one, two = Backend("one"), Backend("two")
    tport = free_port()
    proxy = Pyroute(tmp_path, _split_manifests(one.port, two.port), workers=2)
    proxy.static.write_text("""entryPoints:
  web: {address: "127.0.0.1:%d"}
  traefik: {address: "127.0.0.1:%d"}
metrics:
  prometheus: {addRoutersLabels: true}
log: {level: INFO}
""" % (proxy.port, tport))
    proxy.start()
    try:
        for _ in range(6):
            status, headers, body = _req(proxy.port, path="/big/1000", host="w.test")
            assert status == 200 and len(body) == 1000
        for _ in range(3):
            assert _req(proxy.port, host="deny.test")[0] == 403
        # a chunked request body counts what was read of it (Traefik's readCounter), not
        # its chunk framing
        assert _chunked_req(proxy.port, "w.test", b"z" * 300)[0] == 200
        samples, _ = wait_for(tport, lambda s: value(
            s, "traefik_entrypoint_requests_total", entrypoint="web") >= 10)
        split = "default-split@kubernetescrd"
        routers = {ls["router"]: ls["service"] for ls in
                   series(samples, "traefik_router_requests_total")}
        w_router = next(r for r, svc in routers.items() if svc == split)
        assert value(samples, "traefik_router_requests_total", router=w_router) == 7
        services = {ls["service"] for ls in series(samples, "traefik_service_requests_total")}
        assert split not in services, services
        children = sorted(s for s in services if s.startswith(("default-one", "default-two")))
        assert len(children) == 2, services
        # WRR 1:1 over the children: each got some; together all 7
        per = [value(samples, "traefik_service_requests_total", service=s) for s in children]
        assert sum(per) == 7 and min(per) >= 3, per
        # the 403s: the router counts them, no service does
        deny = next(r for r in routers if r != w_router)
        assert value(samples, "traefik_router_requests_total", router=deny, code=403) == 3
        assert not series(samples, "traefik_service_requests_total", code=403)
        assert value(samples, "traefik_entrypoint_requests_total", code=403) == 3
        # bytes: six 1000-byte bodies, the chunked POST's answer is the echo backend's JSON
        # (its length read from its Content-Length below); the request bodies: 300
        get = dict(method="GET", code=200)
        assert value(samples, "traefik_entrypoint_responses_bytes_total", **get) == 6000
        assert value(samples, "traefik_service_responses_bytes_total", **get) == 6000
        assert value(samples, "traefik_router_responses_bytes_total", router=w_router,
                     **get) == 6000
        assert value(samples, "traefik_entrypoint_requests_bytes_total", method="POST") == 300
        assert value(samples, "traefik_entrypoint_requests_bytes_total", method="GET") == 0
        assert value(samples, "traefik_service_requests_bytes_total", method="POST") == 300
        # the 403 answers are pyroute's own: their body ("Forbidden") counts
        assert value(samples, "traefik_entrypoint_responses_bytes_total", code=403) == \
            3 * len(b"Forbidden")

        # a reload removes route w.test and the TraefikService: Traefik's prometheusState
        # shows their series at the next scrape, then drops them; what stays, stays
        proxy.write_manifests(_split_manifests(one.port, two.port).replace(
            "    - match: Host(`w.test`)\n      kind: Rule\n      services: [{name: split, "
            "kind: TraefikService}]\n", ""))
        samples, _ = wait_for(tport, lambda s: value(s, "traefik_config_reloads_total") >= 2)
        assert value(samples, "traefik_config_reloads_total") == 2
        assert value(samples, "traefik_router_requests_total", router=w_router) == 7
        samples, _ = parse(scrape(tport))
        assert not series(samples, "traefik_router_requests_total", router=w_router)
        assert value(samples, "traefik_router_requests_total", router=deny) == 3
        # the child services are still configured (services one and two stay): kept
        assert sum(value(samples, "traefik_service_requests_total", service=s)
                   for s in children) == 7
        assert value(samples, "traefik_entrypoint_requests_total", entrypoint="web") == 10
    finally:
        proxy.stop()
        one.close()
        two.close()


def test_entry_point_observability_switches(tmp_path):
    # entryPoints.<name>.observability is the default of its routers (Traefik's entry point
    # model, aggregator.go: a router's own value wins) and what its 404s get (the default
    # handler is built with the entry point's config)
    from e2e_backend import Backend
    be = Backend("be")
    tport, quiet_port = free_port(), free_port()
    manifests = backend_service("be", [be.port]) + """
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: q, namespace: default}
spec:
  entryPoints: [web, quiet]
  routes:
    - match: Host(`plain.test`)
      kind: Rule
      services: [{name: be, port: 80}]
    - match: Host(`own.test`)
      kind: Rule
      observability: {metrics: true, accessLogs: true}
      services: [{name: be, port: 80}]
"""
    proxy = Pyroute(tmp_path, manifests, workers=1)
    log_path = tmp_path / "access.log"
    proxy.static.write_text("""entryPoints:
  web: {address: "127.0.0.1:%d"}
  quiet:
    address: "127.0.0.1:%d"
    observability: {metrics: false, accessLogs: false}
  traefik: {address: "127.0.0.1:%d"}
metrics:
  prometheus: {addRoutersLabels: true}
accessLog: {filePath: "%s", format: json, bufferingSize: 0}
log: {level: INFO}
""" % (proxy.port, quiet_port, tport, log_path))
    proxy.start()
    try:
        for port, n in ((proxy.port, 2), (quiet_port, 3)):
            for _ in range(n):
                assert _req(port, host="plain.test")[0] == 200
                assert _req(port, host="own.test")[0] == 200
                assert _req(port, host="none.test")[0] == 404
        samples, _ = wait_for(tport, lambda s: value(
            s, "traefik_entrypoint_requests_total", entrypoint="quiet") >= 3 and value(
            s, "traefik_entrypoint_requests_total", entrypoint="web") >= 6)
        # web: everything (2 x 3); quiet: only own.test's 3, whose router switches back on
        assert value(samples, "traefik_entrypoint_requests_total", entrypoint="web") == 6
        assert value(samples, "traefik_entrypoint_requests_total", entrypoint="quiet") == 3
        assert value(samples, "traefik_entrypoint_requests_total", entrypoint="quiet",
                     code=404) == 0
        # the router on two entry points with a model on one is split per entry point
        # (quiet-<router>), as Traefik names it
        quiet_routers = {ls["router"] for ls in series(samples,
                                                         "traefik_router_requests_total")
                         if ls["router"].startswith("quiet-")}
        assert len(quiet_routers) == 1, quiet_routers
        assert value(samples, "traefik_router_requests_total",
                     router=next(iter(quiet_routers))) == 3
        # the access log: the same switches
        end = time.time() + 5
        lines = []
        while time.time() < end:
            lines = [json.loads(x) for x in log_path.read_text().splitlines() if x]
            if len(lines) >= 9:
                break
            time.sleep(0.1)
        time.sleep(0.3)
        lines = [json.loads(x) for x in log_path.read_text().splitlines() if x]
        by_ep = {}
        for line in lines:
            by_ep.setdefault(line["entryPointName"], []).append(line)
        assert len(by_ep["web"]) == 6
        assert len(by_ep["quiet"]) == 3
        assert {line["RequestHost"] for line in by_ep["quiet"]} == {"own.test"}
    finally:
        proxy.stop()
        be.close()


def test_entry_point_observability_is_supported(tmp_path):
    # tracing's switches: tests/test_e2e_tracing_entrypoints.py
    from pyroute.static import STATIC_KEYS
    assert STATIC_KEYS["entryPoints.<name>.observability.metrics"][0] == "supported"
    assert STATIC_KEYS["entryPoints.<name>.observability.accessLogs"][0] == "supported"
    from pyroute.static import load_static
    path = tmp_path / "s.yaml"
    path.write_text("entryPoints:\n  web:\n    address: ':80'\n"
                    "    observability: {metrics: false, tracing: false}\n")
    st = load_static(str(path))
    assert st.entry_points["web"].observability["metrics"] is False
    assert st.entry_points["web"].observability["accessLogs"] is True   # SetDefaults
    assert st.entry_points["web"].observability["tracing"] is False
    fields = [w.field for w in st.warnings]
    assert not any("observability" in str(f) for f in fields), fields


def test_mirror_copies_count_on_the_mirror_service(tmp_path):
    # Traefik's mirroring handler sends each copy to the mirror's service handler, whose load
    # balancer's servers are metered: the copies count on the mirror's service (their own
    # status), not on the entry point or the router; the main request counts as always
    from e2e_backend import Backend
    main, copy = Backend("main"), Backend("copy")
    dead = free_port()                       # nothing listens: the copy fails (502)
    tport = free_port()
    manifests = (backend_service("main", [main.port]) + "---\n"
                 + backend_service("copy", [copy.port]) + "---\n"
                 + backend_service("dead", [dead]) + """
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: mirrored, namespace: default}
spec:
  mirroring:
    name: main
    port: 80
    mirrors: [{name: copy, port: 80, percent: 100}, {name: dead, port: 80, percent: 100}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: m, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`m.test`)
      kind: Rule
      services: [{name: mirrored, kind: TraefikService}]
""")
    proxy = Pyroute(tmp_path, manifests, workers=1)
    proxy.static.write_text("""entryPoints:
  web: {address: "127.0.0.1:%d"}
  traefik: {address: "127.0.0.1:%d"}
metrics:
  prometheus: {addRoutersLabels: true}
log: {level: INFO}
""" % (proxy.port, tport))
    proxy.start()
    try:
        for _ in range(4):
            assert _req(proxy.port, "POST", "/big/500", host="m.test", body=b"0123456789")[0] \
                == 200

        def svc(s, prefix, **kw):
            return sum(value(s, "traefik_service_requests_total", service=n, **kw)
                       for n in {ls["service"] for ls in series(
                           s, "traefik_service_requests_total")} if n.startswith(prefix))
        samples, _ = wait_for(tport, lambda s: svc(s, "default-copy") >= 4 and svc(
            s, "default-dead") >= 4)
        assert value(samples, "traefik_entrypoint_requests_total", entrypoint="web") == 4
        assert value(samples, "traefik_router_requests_total") == 4
        assert svc(samples, "default-main", code=200) == 4
        assert svc(samples, "default-copy", code=200, method="POST") == 4
        assert svc(samples, "default-dead", code=502) == 4
        copy_name = next(ls["service"] for ls in series(samples,
                                                        "traefik_service_requests_total")
                         if ls["service"].startswith("default-copy"))
        # the copy's bodies: 10 bytes sent each, 500 answered each
        assert value(samples, "traefik_service_requests_bytes_total", service=copy_name) == 40
        assert value(samples, "traefik_service_responses_bytes_total",
                     service=copy_name) == 2000
    finally:
        proxy.stop()
        main.close()
        copy.close()
