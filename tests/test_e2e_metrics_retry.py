"""Service metrics per attempt of the retry middleware, end to end (a real backend, a real
scrape checked by promtool when installed).

Traefik meters a service in its load balancer, around each server's proxy
(pkg/server/service getLoadBalancerServiceHandler), and the retry middleware of the router
wraps the service: every attempt is a request of the service, with its own code and duration;
the entry point and the router see the exchange once, with the last attempt's code.
``traefik_service_retries_total`` stays without series: Traefik v3 builds the retry middleware
with an empty listener list (pkg/server/middleware/middlewares.go ``retry.Listeners{}``), so
the counter is never incremented."""
import pytest

from e2e_support import Pyroute, backend_service, free_port
from test_e2e_health import HealthBackend
from test_e2e_metrics import _req, series, value, wait_for


def manifests(be_port, dead_port):
    return backend_service("be", [be_port]) + "---\n" + backend_service("dead", [dead_port]) + """
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: again, namespace: default}
spec: {retry: {attempts: 3, status: ["503"]}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: twice, namespace: default}
spec: {retry: {attempts: 2}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.test`)
      kind: Rule
      middlewares: [{name: again}]
      services: [{name: be, port: 80}]
    - match: Host(`dead.test`)
      kind: Rule
      middlewares: [{name: twice}]
      services: [{name: dead, port: 80}]
"""


@pytest.fixture
def proxy(tmp_path):
    be = HealthBackend("be")
    tport = free_port()
    p = Pyroute(tmp_path, manifests(be.port, free_port()), workers=2)
    p.tport = tport
    p.static.write_text(
        "entryPoints:\n  web: {address: \"127.0.0.1:%d\"}\n"
        "  traefik: {address: \"127.0.0.1:%d\"}\n"
        "metrics: {prometheus: {addRoutersLabels: true}}\nlog: {level: INFO}\n"
        % (p.port, tport))
    p.start()
    yield p
    p.stop()
    be.close()


def _one(samples, metric, **labels):
    names = {ls["service"] for ls in series(samples, metric, **labels)}
    assert len(names) == 1, names
    return names.pop()


def test_each_attempt_is_metered_on_the_service(proxy):
    # status retries: three attempts answered 503, the last one is the client's
    assert _req(proxy.port, path="/status/503")[0] == 503, proxy.output()
    assert _req(proxy.port, path="/ok")[0] == 200
    # network retries: the server refuses both attempts (502)
    assert _req(proxy.port, host="dead.test")[0] == 502
    samples, _ = wait_for(proxy.tport, lambda s: value(
        s, "traefik_service_requests_total", code=502) >= 2 and value(
        s, "traefik_service_requests_total", code=503) >= 3)
    ep = dict(entrypoint="web")
    assert value(samples, "traefik_entrypoint_requests_total", code=503, **ep) == 1
    assert value(samples, "traefik_entrypoint_requests_total", code=502, **ep) == 1
    assert value(samples, "traefik_entrypoint_requests_total", code=200, **ep) == 1
    svc = _one(samples, "traefik_service_requests_total", code=503)
    assert value(samples, "traefik_service_requests_total", service=svc, code=503) == 3
    assert value(samples, "traefik_service_requests_total", service=svc, code=200) == 1
    assert value(samples, "traefik_service_request_duration_seconds_count", service=svc,
                 code=503) == 3
    assert value(samples, "traefik_router_requests_total", code=503) == 1
    assert value(samples, "traefik_router_requests_total", service=svc) == 2
    dead = _one(samples, "traefik_service_requests_total", code=502)
    assert dead != svc
    assert value(samples, "traefik_service_requests_total", service=dead) == 2
    assert value(samples, "traefik_router_requests_total", code=502) == 1
    # Traefik v3's retry has no listener: the family is there, never a series
    assert not series(samples, "traefik_service_retries_total")
