"""The entry point ``traefik`` that ``ping`` / ``metrics.prometheus`` create (Traefik's
SetEffectiveConfiguration: ``:8080`` when nobody defined it, no ``api.insecure`` needed) is a
regular entry point the workers serve: ``ping@internal`` and ``prometheus@internal`` are
routed there (to the master, whose Store holds the instance's totals), an IngressRoute on
``entryPoints: [traefik]`` is served beside them, ``ping.terminatingStatusCode`` shows while
draining and ``pyroute healthcheck`` finds it.

Traefik's address is ``:8080`` (every interface): the test waits until no other process holds
that port (another pyroute test run on this machine may, for a while) and serializes the
runs of this file with a lock file."""
import fcntl
import signal
import socket
import time

import pytest

from e2e_support import Pyroute, backend_service
from test_e2e_health import HealthBackend
from test_e2e_metrics import _healthcheck, _raw, _req, value, wait_for

PORT = 8080


def _port_free():
    s = socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET)
    try:
        s.bind(("", PORT))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture
def port_8080():
    with open("/tmp/pyroute-test-8080.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        end = time.time() + 120
        while not _port_free():
            assert time.time() < end, "port 8080 stayed busy"
            time.sleep(0.5)
        yield PORT


MANIFESTS = """
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
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: ops, namespace: default}
spec:
  entryPoints: [traefik]
  routes:
    - match: Host(`ops.test`)
      kind: Rule
      services: [{name: be, port: 80}]
"""


def test_ping_and_metrics_create_a_workers_traefik_entry_point(tmp_path, port_8080):
    be = HealthBackend("be")
    proxy = Pyroute(tmp_path, backend_service("be", [be.port]) + MANIFESTS, workers=2)
    proxy.static.write_text(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:%d\"\n"
        "    transport: {lifeCycle: {requestAcceptGraceTimeout: 3s, graceTimeOut: 2s}}\n"
        "ping: {}\nmetrics: {prometheus: {addRoutersLabels: true}}\nlog: {level: INFO}\n"
        % proxy.port)
    try:
        proxy.start()
        out = proxy.output()
        assert "served by the master" not in out
        assert "entry point traefik listening on http://:%d" % PORT in out, out
        # the IngressRoute on traefik is accepted and served (Traefik: a regular entry point)
        assert "traefik" not in [line for line in out.splitlines() if "error" in line.lower()]
        status, _, body = _req(PORT, host="ops.test", path="/ops")
        assert status == 200 and b"/ops" in body
        # the internal routers: /ping, and /metrics with the whole instance's counts (two
        # workers, each connection wherever SO_REUSEPORT puts it; one scrape, one worker)
        assert _req(PORT, path="/ping", host="any.test")[::2] == (200, b"OK")
        for _ in range(12):
            assert _req(proxy.port)[0] == 200
        samples, _ = wait_for(PORT, lambda s: value(
            s, "traefik_entrypoint_requests_total", entrypoint="web") >= 12)
        assert value(samples, "traefik_entrypoint_requests_total", entrypoint="web") == 12
        # the IngressRoute's request on traefik is metered on that entry point, the internal
        # routers' are not (metrics.addInternals off)
        assert value(samples, "traefik_entrypoint_requests_total", entrypoint="traefik") == 1
        assert not [ls for n, ls, v in samples if "ping@internal" in ls.values()
                    or "prometheus@internal" in ls.values()]
        # pyroute healthcheck: ping's entry point is traefik, ":8080"
        r = _healthcheck(proxy.static)
        assert r.returncode == 0 and r.stdout.strip().endswith(":%d/ping" % PORT), r
        # draining: a connection kept open to traefik sees terminatingStatusCode (503)
        keep = socket.create_connection(("127.0.0.1", PORT))
        try:
            assert _raw(PORT, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", keep=keep)[0] == 200
            proxy.signal(signal.SIGTERM)
            end = time.time() + 2.5
            code = 200
            while time.time() < end and code == 200:
                code = _raw(PORT, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n", keep=keep)[0]
                time.sleep(0.05)
            assert code == 503
        finally:
            keep.close()
        assert _req(proxy.port)[0] == 200      # web still serves (requestAcceptGraceTimeout)
    finally:
        proxy.stop()
        be.close()


def test_traefik_entry_point_address_taken_by_another(tmp_path):
    from pyroute.errors import ConfigError
    from pyroute.static import static_from_mapping
    with pytest.raises(ConfigError) as e:
        static_from_mapping({"entryPoints": {"web": {"address": ":8080"}}, "ping": {}})
    assert "same address as entry point 'traefik'" in str(e.value)
    # manualRouting: no router, so no entry point is created for it
    st = static_from_mapping({"entryPoints": {"web": {"address": ":80"}},
                              "ping": {"manualRouting": True}})
    assert list(st.entry_points) == ["web"]
    st = static_from_mapping({"entryPoints": {"web": {"address": ":80"}},
                              "metrics": {"prometheus": {}}})
    assert st.entry_points["traefik"].port == 8080 and st.default_entry_points() == ["web"]
