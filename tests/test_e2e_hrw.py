"""End to end: highest random weight (Traefik v3 ``strategy: hrw`` on a load balancer, and the
``highestRandomWeight`` TraefikService) — a client IP always reaches the same server or
service, the one Traefik's hrw.go would pick: ``weight / -ln(fnv64a(ip + name) / 2**64)``,
highest wins, names being server URLs (load balancer) or child service names (TraefikService).
Clients connect from many loopback source addresses (127.0.0.0/8 is all local)."""
import json
import math
import socket

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response
from pyroute import manifests
from pyroute.static import load_static

CLIENTS = ["127.0.%d.%d" % (i // 200, 1 + i % 200) for i in range(60)]

MANIFESTS = """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: hrw-svc, namespace: default}
spec:
  highestRandomWeight:
    services:
      - {name: svc-one, port: 80, weight: 1}
      - {name: svc-two, port: 80, weight: 3}
      - {name: svc-zero, port: 80, weight: 0}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`lb.test`)
      kind: Rule
      services: [{name: svc-three, port: 80, strategy: hrw}]
    - match: Host(`ts.test`)
      kind: Rule
      services: [{name: hrw-svc, kind: TraefikService}]
"""


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def traefik_hrw(ip, names, weights):
    """A plain-Python twin of Traefik's hrw.go nextServer/getNodeScore."""
    best, chosen = 0.0, None
    for name, weight in zip(names, weights):
        if weight <= 0:
            continue
        score = float(fnv1a64((ip + name).encode())) / 2.0 ** 64
        s = (1.0 / -math.log(score)) * weight
        if s > best:
            best, chosen = s, name
    return chosen


def test_hrw_engine_matches_the_python_twin():
    from pyroute._engine.balance import HRW
    names = ["http://10.0.0.%d:8080" % i for i in range(1, 6)]
    for weights in ([1, 1, 1, 1, 1], [1, 5, 0, 2, 10]):
        hrw = HRW(names, weights)
        for i in range(2000):
            ip = "10.%d.%d.%d" % (i % 7, i // 7 % 256, i % 251)
            got = hrw.next(ip.encode())
            assert (names[got] if got >= 0 else None) == traefik_hrw(ip, names, weights), ip
    assert HRW(names, [0] * 5).next(b"10.0.0.1") == -1


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hrw")
    # one server per endpoint IP (Traefik keeps one server per IP)
    three = [Backend("three-%d" % i, host="127.0.0.%d" % (i + 1)) for i in range(3)]
    one, two, zero = Backend("one"), Backend("two"), Backend("zero")
    m = "---\n".join([
        backend_service("svc-three", [(b.host, b.port) for b in three]),
        backend_service("svc-one", [one.port]), backend_service("svc-two", [two.port]),
        backend_service("svc-zero", [zero.port])]) + MANIFESTS
    proxy = Pyroute(tmp, m, workers=2)
    proxy.start()
    rc = manifests.load([str(proxy.mdir)], load_static(str(proxy.static)))
    yield {"port": proxy.port, "proxy": proxy, "rc": rc}
    proxy.stop()
    for b in three + [one, two, zero]:
        b.close()


def _backend_for(port, host, client_ip):
    s = socket.socket()
    s.bind((client_ip, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    with s:
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
        status, _, body, _ = read_response(s)
    assert status == 200
    return json.loads(body)["backend"]


def test_pyroute_check_and_run_accept_hrw(env):
    out = env["proxy"].output()
    assert "0 error(s)" in out and "2 router(s) (2 enabled)" in out, out


def test_load_balancer_strategy_hrw_picks_traefik_s_server(env):
    services = env["rc"].dynamic["http"]["services"]
    lb = next(s["loadBalancer"] for s in services.values()
              if (s.get("loadBalancer") or {}).get("strategy") == "hrw")
    assert len(lb["servers"]) == 3
    urls = [s["url"] for s in lb["servers"]]
    by_url = {"http://127.0.0.%d:" % (i + 1): "three-%d" % i for i in range(3)}
    seen = set()
    for ip in CLIENTS:
        expected = traefik_hrw(ip, urls, [s.get("weight", 1) for s in lb["servers"]])
        name = next(v for k, v in by_url.items() if expected.startswith(k))
        got = _backend_for(env["port"], "lb.test", ip)
        assert got == name, ip
        assert _backend_for(env["port"], "lb.test", ip) == name     # the same, every time
        seen.add(got)
    assert len(seen) == 3       # and the clients spread over every server


def test_highest_random_weight_service_picks_traefik_s_child(env):
    services = env["rc"].dynamic["http"]["services"]
    spec = next(s["highestRandomWeight"] for name, s in services.items()
                if "highestRandomWeight" in s)
    names = [c["name"] for c in spec["services"]]
    weights = [c.get("weight", 1) for c in spec["services"]]
    counts = {"one": 0, "two": 0}
    for ip in CLIENTS:
        expected = traefik_hrw(ip, names, weights)
        backend = {"one": "one", "two": "two"}[
            next(k for k in ("one", "two") if "svc-%s" % k in expected)]
        assert _backend_for(env["port"], "ts.test", ip) == backend, ip
        counts[backend] += 1
    # weight 3 against 1 (and weight 0 never): "two" gets most clients
    assert counts["two"] > counts["one"] > 0
