"""``/api/pyroute/rates``: request rates and 4xx/5xx shares per router and service, computed
by the master from the metrics counters, through a real ``pyroute run`` (two workers: the
counts add up across them) with a real backend answering a known mix of 200, 404 and 500;
the windows (10 s, 1 min) and the "metrics off" answer. The Rates class itself is checked
on a real Store with a clock the test moves."""
import time

from e2e_backend import Backend
from e2e_support import backend_service, ingressroute, read_response
from test_e2e_api import get_json, start

from pyroute.observability.metrics import Store
from pyroute.observability.rates import Rates
from pyroute.static import Metrics, Prometheus

METRICS = "metrics: {prometheus: {}}\n"


def manifests(port):
    # a.test has a service of its own (Traefik names it after the router); b.test and c.test
    # share the TraefikService "split": its rates add both routers' requests up
    split = ("      services: [{name: split, kind: TraefikService}]\n")
    return (backend_service("be", [port])
            + "---\napiVersion: traefik.io/v1alpha1\nkind: TraefikService\n"
              "metadata: {name: split, namespace: default}\n"
              "spec:\n  weighted:\n    services: [{name: be, port: 80}]\n"
            + ingressroute("app", [("Host(`a.test`)", "be", "")])
            + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
              "metadata: {name: shared, namespace: default}\nspec:\n  entryPoints: [web]\n"
              "  routes:\n"
              "    - {match: Host(`b.test`), kind: Rule, services: [{name: split, kind: "
              "TraefikService}]}\n"
              "    - {match: Host(`c.test`), kind: Rule, services: [{name: split, kind: "
              "TraefikService}]}\n")


def send(port, host, path, n):
    import socket
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
            status = read_response(s)[0]
        finally:
            s.close()
        yield status


def load(port):
    """Router a: 10 x 200, 6 x 404, 4 x 500 (from the backend); router b: 5 x 200; router c:
    3 x 404; and 3 requests no router takes (pyroute's 404: no router, no service)."""
    got = []
    for host, path, n in (("a.test", "/", 10), ("a.test", "/status/404", 6),
                          ("a.test", "/status/500", 4), ("b.test", "/", 5),
                          ("c.test", "/status/404", 3), ("nowhere.test", "/", 3)):
        got += list(send(port, host, path, n))
    assert sorted(got) == [200] * 15 + [404] * 12 + [500] * 4


def router_names(proxy):
    """{"a": router name, "a service": its service, ...} from the API."""
    names = {}
    for r in get_json(proxy, "/api/http/routers"):
        if r["rule"] in ("Host(`a.test`)", "Host(`b.test`)", "Host(`c.test`)"):
            names[r["rule"][6]] = r["name"]
            names[r["rule"][6] + " service"] = r["service"]
    return names


def wait_rates(proxy, router, requests, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        rates = get_json(proxy, "/api/pyroute/rates")
        row = rates["routers"].get(router)
        if row is not None and row["total"]["requests"] >= requests:
            return rates
        time.sleep(0.2)
    raise AssertionError("rates never reached %d for %s: %r" % (requests, router, rates))


def check_window(w, requests, share4xx, share5xx):
    assert w["requests"] == requests, w
    assert w["share4xx"] == share4xx and w["share5xx"] == share5xx, w
    assert w["seconds"] > 0
    assert abs(w["perSecond"] - requests / w["seconds"]) < 0.01 * max(1, w["perSecond"]), w


def test_rates_from_a_known_mix(tmp_path):
    be = Backend("be")
    proxy = start(tmp_path, manifests(be.port), extra=METRICS, workers=2)
    try:
        names = router_names(proxy)
        load(proxy.port)
        rates = wait_rates(proxy, names["a"], 20)
        rates = wait_rates(proxy, names["b"], 5)
        rates = wait_rates(proxy, names["c"], 3)
        assert rates["enabled"] is True and rates["windows"] == ["10s", "1m"]
        a, b = rates["routers"][names["a"]], rates["routers"][names["b"]]
        assert a["total"] == {"requests": 20, "4xx": 6, "5xx": 4}
        assert b["total"] == {"requests": 5, "4xx": 0, "5xx": 0}
        for window in ("10s", "1m"):            # everything happened within both windows
            check_window(a[window], 20, 0.3, 0.2)
            check_window(b[window], 5, 0.0, 0.0)
        check_window(rates["routers"][names["c"]]["1m"], 3, 1.0, 0.0)
        # a's own service: a's requests; the TraefikService b and c share: theirs added up
        assert names["b service"] == names["c service"] == "default-split"
        svc_a = rates["services"][_qualified(names["a service"])]
        assert svc_a["total"] == {"requests": 20, "4xx": 6, "5xx": 4}
        split = rates["services"][_qualified(names["b service"])]
        assert split["total"] == {"requests": 8, "4xx": 3, "5xx": 0}
        check_window(split["1m"], 8, 0.375, 0.0)
        # requests no router took belong to no router and no service
        assert set(rates["routers"]) == {names["a"], names["b"], names["c"]}
        assert set(rates["services"]) == {_qualified(names["a service"]),
                                          _qualified(names["b service"])}
        # the internal routers (the API's own requests) are not metered (addInternals off)
        assert not any(n.endswith("@internal") for n in rates["routers"])

        # 10 s later the short window is empty, the minute still holds them
        time.sleep(11)
        send_more = list(send(proxy.port, "a.test", "/status/500", 2))
        assert send_more == [500, 500]
        rates = wait_rates(proxy, names["a"], 22)
        a = rates["routers"][names["a"]]
        check_window(a["10s"], 2, 0.0, 1.0)
        assert 9.5 <= a["10s"]["seconds"] <= 11.5, a["10s"]
        check_window(a["1m"], 22, round(6 / 22, 4), round(6 / 22, 4))
    finally:
        proxy.stop()
        be.close()


def _qualified(service):
    return service if "@" in service else service + "@kubernetescrd"


def test_rates_when_metrics_are_off(tmp_path):
    be = Backend("be")
    proxy = start(tmp_path, manifests(be.port))
    try:
        rates = get_json(proxy, "/api/pyroute/rates")
        assert rates["enabled"] is False
        assert "metrics.prometheus" in rates["reason"]
    finally:
        proxy.stop()
        be.close()


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _add(store, router, service, code, n):
    # a worker's key (pyroute.observability.metrics.Recorder): entry point, routers, the
    # service of the server picked, code, method, protocol, header values, tls
    key = ("web", ((router, service),), service, code, "GET", "http", (), None)
    store.add(0, {key: [n, 0.0, 0, 0, 0, 0, 0, 0, 0.0, 0.0]}, {"web": 0})   # ..., min, max


def test_rates_windows_on_a_store():
    store = Store(Metrics(prometheus=Prometheus()))
    clock = Clock()
    rates = Rates(store, clock)
    rates.sample()                                   # t=1000: nothing yet
    _add(store, "r", "s", 200, 30)
    _add(store, "r", "s", 503, 10)
    for _ in range(30):                              # 30 s of samples, one per second
        clock.t += 1
        rates.sample()
    _add(store, "r", "s", 404, 5)
    clock.t += 0.5
    rep = rates.report()
    r = rep["routers"]["r"]
    assert r["total"] == {"requests": 45, "4xx": 5, "5xx": 10}
    # 10 s: the sample at t=1020 holds the 40 earlier requests; only the 5 404s are newer
    assert r["10s"] == {"seconds": 10.5, "requests": 5, "perSecond": round(5 / 10.5, 3),
                        "share4xx": 1.0, "share5xx": 0.0}
    # 1 min: pyroute has run 30.5 s, the window starts at its first sample
    assert r["1m"] == {"seconds": 30.5, "requests": 45, "perSecond": round(45 / 30.5, 3),
                       "share4xx": round(5 / 45, 4), "share5xx": round(10 / 45, 4)}
    assert rep["services"]["s"]["1m"]["requests"] == 45
    # the samples kept cover the longest window and no more
    for _ in range(200):
        clock.t += 1
        rates.sample()
    assert len(rates.samples) == 62
    assert rates.report()["routers"]["r"]["1m"]["requests"] == 0
