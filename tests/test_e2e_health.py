"""End to end: active health checks (Traefik's healthCheck on ExternalName services, status
propagation through TraefikServices with ``healthCheck: {}``), with real backends on 127.0.0.1
whose health endpoint the tests flip, and ``pyroute run`` probing them from its master."""
import json
import ssl
import subprocess
import sys
import time

import trustme

from e2e_backend import Backend
from e2e_support import REPO, Pyroute, get, worker_pids


class HealthBackend(Backend):
    """A backend whose ``/health...`` answers ``self.health`` (a status code), after
    ``self.delay`` seconds; ``/moved`` redirects to ``/ok``. Probes are recorded apart."""

    def __init__(self, name, tls=None):
        self.health = 200
        self.delay = 0.0
        self.probes = []
        super().__init__(name, tls=tls)

    def _answer(self, conn, f, method, target, version, raw_headers, headers, body):
        if target.startswith("/health") or target in ("/moved", "/ok"):
            with self.lock:
                self.probes.append((method, target, headers))
            if target == "/moved":
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n")
                return True
            if self.delay:
                time.sleep(self.delay)
            code = 200 if target == "/ok" else self.health
            conn.sendall(b"HTTP/1.1 %d X\r\n%s\r\n" % (
                code, b"" if method == "HEAD" or code == 204 else b"Content-Length: 0\r\n"))
            return True
        return super()._answer(conn, f, method, target, version, raw_headers, headers, body)


def external(name, port, scheme="http"):
    """An ExternalName Service on 127.0.0.1:port (Traefik: health checks only for these)."""
    return ("---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: default}\n"
            "spec:\n  type: ExternalName\n  externalName: 127.0.0.1\n"
            "  ports: [{name: %s, port: %d}]\n" % (name, scheme, port))


def route(host, service, kind="Service", port=None, hc=None):
    svc = "{name: %s, kind: %s%s%s}" % (service, kind, ", port: %d" % port if port else "",
                                        ", healthCheck: %s" % hc if hc else "")
    return ("    - match: Host(`%s`)\n      kind: Rule\n      services: [%s]\n" % (host, svc))


def ingress(routes):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
            "metadata: {name: main, namespace: default}\nspec:\n  entryPoints: [web]\n"
            "  routes:\n" + "".join(routes))


FAST = "{path: /health, interval: 200ms}"


def start(tmp_path, manifests, workers=1):
    proxy = Pyroute(tmp_path, manifests, workers=workers)
    proxy.static.write_text(proxy.static.read_text()
                            + "providers:\n  kubernetesCRD: {allowExternalNameServices: true}\n")
    return proxy.start()


def backend_of(port, host):
    status, _, body = get(port, "/", host)
    return json.loads(body)["backend"] if status == 200 else status


def wait_for(fn, want, timeout=8.0):
    end = time.time() + timeout
    while True:
        got = fn()
        if got == want or time.time() > end:
            return got
        time.sleep(0.05)


def test_health_server_leaves_rotation_and_comes_back_all_down_503(tmp_path):
    a, b, c = HealthBackend("a"), HealthBackend("b"), HealthBackend("c")
    m = external("svc-a", a.port) + external("svc-b", b.port) + external("svc-c", c.port)
    m += """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: wrr, namespace: default}
spec:
  weighted:
    healthCheck: {}
    services:
      - {name: svc-a, port: %d, weight: 1, healthCheck: %s}
      - {name: svc-b, port: %d, weight: 1, healthCheck: %s}
      - {name: svc-c, port: %d, weight: 2, healthCheck: %s}
""" % (a.port, FAST, b.port, FAST, c.port, FAST)
    m += ingress([route("wrr.test", "wrr", "TraefikService"),
                  route("one.test", "svc-a", port=a.port, hc=FAST)])
    proxy = start(tmp_path, m)
    try:
        seen = [backend_of(proxy.port, "wrr.test") for _ in range(8)]
        assert sorted(seen) == ["a", "a", "b", "b", "c", "c", "c", "c"]
        b.health = 503                        # b leaves the rotation; a:c keep 1:2
        assert wait_for(lambda: "b" not in [backend_of(proxy.port, "wrr.test")
                                            for _ in range(4)], True)
        seen = [backend_of(proxy.port, "wrr.test") for _ in range(30)]
        assert "b" not in seen and 9 <= seen.count("a") <= 11, seen
        a.health = c.health = 500             # every child down: 503, and the plain route too
        assert wait_for(lambda: backend_of(proxy.port, "wrr.test"), 503) == 503
        assert wait_for(lambda: backend_of(proxy.port, "one.test"), 503) == 503
        b.health = 204                        # b back: it alone serves
        assert wait_for(lambda: backend_of(proxy.port, "wrr.test"), "b") == "b"
        assert {backend_of(proxy.port, "wrr.test") for _ in range(6)} == {"b"}
        a.health = c.health = 302             # 3xx counts as healthy (default: 200-399)
        assert wait_for(lambda: backend_of(proxy.port, "one.test"), "a") == "a"
        assert wait_for(lambda: {backend_of(proxy.port, "wrr.test") for _ in range(8)},
                        {"a", "b", "c"}) == {"a", "b", "c"}
        out = proxy.output()
        assert "Health check failed." in out and "received error status code: 503" in out
        assert "status=DOWN" in out and "status=UP" in out
        assert "serviceName=default-svc-b-%d@kubernetescrd" % b.port in out
        assert "pyroute extension" in out     # weighted healthCheck is not in Traefik's CRD
    finally:
        proxy.stop()
        for x in (a, b, c):
            x.close()


def test_health_failover_follows_main_status_and_back(tmp_path):
    main, spare, x = HealthBackend("main"), HealthBackend("spare"), HealthBackend("x")
    m = external("svc-main", main.port) + external("svc-spare", spare.port)
    m += external("svc-x", x.port)
    m += """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: fo, namespace: default}
spec:
  failover:
    service: {name: svc-main, port: %d, healthCheck: %s}
    fallback: {name: svc-spare, port: %d}
    errors: {}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: fo2, namespace: default}
spec:
  failover:
    healthCheck: {}
    service: {name: svc-main, port: %d, healthCheck: %s}
    fallback: {name: svc-spare, port: %d, healthCheck: %s}
    errors: {}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: top, namespace: default}
spec:
  weighted:
    healthCheck: {}
    services:
      - {name: fo2, kind: TraefikService}
      - {name: svc-x, port: %d, healthCheck: %s}
""" % (main.port, FAST, spare.port, main.port, FAST, spare.port, FAST, x.port, FAST)
    m += ingress([route("fo.test", "fo", "TraefikService"),
                  route("top.test", "top", "TraefikService")])
    proxy = start(tmp_path, m)
    try:
        assert {backend_of(proxy.port, "fo.test") for _ in range(4)} == {"main"}
        main.health = 500
        assert wait_for(lambda: backend_of(proxy.port, "fo.test"), "spare") == "spare"
        assert {backend_of(proxy.port, "fo.test") for _ in range(4)} == {"spare"}
        # the failover with healthCheck {} reports main-or-fallback UP to its parent
        assert {backend_of(proxy.port, "top.test") for _ in range(4)} == {"spare", "x"}
        spare.health = 500                    # both sides down: top drops the failover
        assert wait_for(lambda: {backend_of(proxy.port, "top.test") for _ in range(4)},
                        {"x"}) == {"x"}
        assert backend_of(proxy.port, "fo.test") == 503
        main.health = 200
        assert wait_for(lambda: backend_of(proxy.port, "fo.test"), "main") == "main"
        assert {backend_of(proxy.port, "fo.test") for _ in range(4)} == {"main"}
        assert wait_for(lambda: {backend_of(proxy.port, "top.test") for _ in range(4)},
                        {"main", "x"}) == {"main", "x"}
    finally:
        proxy.stop()
        for b in (main, spare, x):
            b.close()


def test_health_probe_request_status_timeout_redirects(tmp_path):
    web, alt, slow, redir = (HealthBackend("web"), HealthBackend("alt"), HealthBackend("slow"),
                             HealthBackend("redir"))
    slow.delay = 1.0
    m = "".join(external("svc-" + x.name, x.port) for x in (web, alt, slow, redir))
    probe = ("{path: '/health/x?y=1', method: HEAD, port: %d, hostname: hc.example, "
             "headers: {x-check: 'yes', User-Agent: probe/1}, status: 204, interval: 200ms}"
             % alt.port)
    m += ingress([
        route("probe.test", "svc-web", port=web.port, hc=probe),
        route("slow.test", "svc-slow", port=slow.port,
              hc="{path: /health, interval: 200ms, timeout: 300ms}"),
        route("follow.test", "svc-redir", port=redir.port, hc="{path: /moved, interval: 200ms}"),
        route("nofollow.test", "svc-alt", port=alt.port,
              hc="{path: /moved, interval: 200ms, followRedirects: false, status: 200}"),
    ])
    alt.health = 204
    proxy = start(tmp_path, m)
    try:
        assert backend_of(proxy.port, "probe.test") == "web"
        assert wait_for(lambda: len([p for p in alt.probes if p[1] != "/moved"]) > 0, True)
        method, target, headers = next(p for p in alt.probes if p[1] != "/moved")
        # the probe goes to healthCheck.port, with the configured method/path/Host/headers
        assert (method, target) == ("HEAD", "/health/x?y=1")
        assert headers["host"] == "hc.example" and headers["x-check"] == "yes"
        assert headers["user-agent"] == "probe/1"
        assert not web.probes
        # slow answers after 1s > timeout 300ms: down; redirects followed by default
        assert wait_for(lambda: backend_of(proxy.port, "slow.test"), 503) == 503
        assert wait_for(lambda: ("GET", "/ok") in [p[:2] for p in redir.probes], True)
        assert backend_of(proxy.port, "follow.test") == "redir"
        # followRedirects false: the 302 itself is judged, and status 200 is expected
        assert wait_for(lambda: backend_of(proxy.port, "nofollow.test"), 503) == 503
        assert ("GET", "/ok") not in [p[:2] for p in alt.probes]
        alt.health = 200                      # expected 204 exactly: 200 is a failure
        assert wait_for(lambda: backend_of(proxy.port, "probe.test"), 503) == 503
        out = proxy.output()
        assert "context deadline exceeded" in out
        assert "received error status code: 200 expected status code: 204" in out
    finally:
        proxy.stop()
        for x in (web, alt, slow, redir):
            x.close()


def test_health_status_survives_reload_and_worker_restart(tmp_path):
    a = HealthBackend("a")
    hc = "{path: /health, interval: 200ms, unhealthyInterval: 60s}"
    m = external("svc-a", a.port) + ingress([route("a.test", "svc-a", port=a.port, hc=hc)])
    proxy = start(tmp_path, m)
    try:
        a.health = 503
        assert wait_for(lambda: backend_of(proxy.port, "a.test"), 503) == 503
        a.health = 200      # healthy again, but the next probe is 60s away: still down
        def probes():
            return len([p for p in a.probes if p[1] == "/health"])
        n = probes()
        other = hc.replace("/health", "/health-other")
        proxy.write_manifests(m + ingress([route("other.test", "svc-a", port=a.port, hc=other)])
                              .replace("name: main", "name: other"))
        # a route of its own is a service of its own (Traefik names it after the route):
        # a new target, UP until probed
        assert wait_for(lambda: backend_of(proxy.port, "other.test"), "a") == "a"
        assert backend_of(proxy.port, "a.test") == 503     # same service, same settings
        pid = worker_pids(proxy.proc.pid)[0]
        subprocess.run(["kill", "-KILL", str(pid)])
        # one read of the worker list per try: a second read may see the slot empty
        assert wait_for(lambda: [w for w in worker_pids(proxy.proc.pid) if w != pid] != [],
                        True)
        assert wait_for(lambda: backend_of(proxy.port, "a.test"), 503) == 503
        assert probes() == n          # nothing re-probed it: the status was carried over
        # changed health-check settings start afresh (UP), as a new checker would
        proxy.write_manifests(m.replace("unhealthyInterval: 60s", "unhealthyInterval: 59s"))
        assert wait_for(lambda: backend_of(proxy.port, "a.test"), "a") == "a"
    finally:
        proxy.stop()
        a.close()


def test_health_check_explain_shows_settings(tmp_path):
    a = HealthBackend("a")
    m = external("svc-a", a.port) + """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: w, namespace: default}
spec:
  weighted:
    healthCheck: {}
    services: [{name: svc-a, port: %d}]
""" % a.port + ingress([
        route("w.test", "w", "TraefikService"),
        route("http.test", "svc-a", port=a.port,
              hc="{path: /hz, interval: 10s, headers: {X-A: b}}")])
    (tmp_path / "m.yaml").write_text(m)
    static = tmp_path / "static.yaml"
    static.write_text("entryPoints:\n  web: {address: ':8000'}\n"
                      "providers:\n  kubernetesCRD: {allowExternalNameServices: true}\n")
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c", str(static),
                          str(tmp_path / "m.yaml")], capture_output=True, text=True,
                         cwd=str(REPO))
    text = out.stdout + out.stderr
    assert "healthCheck mode grpc" not in text    # served since h2c backends (test_e2e_grpc)
    # a weighted service with healthCheck {} over a child without health checks: Traefik
    # does not build it (the child cannot report its status)
    assert ("TraefikService default/w: spec.weighted.healthCheck: service "
            "default-w@kubernetescrd: cannot register default-svc-a-%d@kubernetescrd as "
            "updater for default-w@kubernetescrd" % a.port) in text, text
    assert "warning: healthCheck on a weighted TraefikService is a pyroute extension" in text
    out = subprocess.run([sys.executable, "-m", "pyroute", "explain", "-c", str(static),
                          str(tmp_path / "m.yaml"), "http://http.test/"],
                         capture_output=True, text=True, cwd=str(REPO))
    text = out.stdout + out.stderr
    assert "healthCheck" in text and "/hz" in text and "10s" in text, text
    a.close()


def test_health_probes_https_servers_with_their_servers_transport(tmp_path):
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("backend.internal").configure_cert(ctx)
    secure = HealthBackend("secure", tls=ctx)
    m = external("svc-s", secure.port, "https")
    m += """---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: skip, namespace: default}
spec:
  insecureSkipVerify: true
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: main, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`skip.test`)
      kind: Rule
      services: [{name: svc-s, port: %d, serversTransport: skip, healthCheck: %s}]
    - match: Host(`verify.test`)
      kind: Rule
      services: [{name: svc-s, port: %d, healthCheck: %s}]
""" % (secure.port, FAST, secure.port, FAST)
    proxy = start(tmp_path, m)
    try:
        # probes go over TLS with the service's ServersTransport: skip verifies nothing and
        # stays UP; without it the unknown CA fails the handshake: DOWN
        assert wait_for(lambda: len(secure.probes) >= 2, True)
        assert backend_of(proxy.port, "skip.test") == "secure"
        assert wait_for(lambda: backend_of(proxy.port, "verify.test"), 503) == 503
        assert backend_of(proxy.port, "skip.test") == "secure"
        assert "CERTIFICATE_VERIFY_FAILED" in proxy.output()
        secure.health = 500
        assert wait_for(lambda: backend_of(proxy.port, "skip.test"), 503) == 503
    finally:
        proxy.stop()
        secure.close()


def test_health_sticky_cookie_to_a_down_child_moves_to_a_healthy_one(tmp_path):
    # Traefik: "If the server specified in the cookie becomes unhealthy, the request will be
    # forwarded to a new server (and the cookie will keep track of the new server)."
    a, b = HealthBackend("a"), HealthBackend("b")
    m = external("svc-a", a.port) + external("svc-b", b.port)
    m += """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: sticky, namespace: default}
spec:
  weighted:
    healthCheck: {}
    sticky: {cookie: {name: lb}}
    services:
      - {name: svc-a, port: %d, healthCheck: %s}
      - {name: svc-b, port: %d, healthCheck: %s}
""" % (a.port, FAST, b.port, FAST)
    m += ingress([route("s.test", "sticky", "TraefikService")])
    proxy = start(tmp_path, m)
    try:
        cookies = {}
        for _ in range(2):
            status, headers, body = get(proxy.port, "/", "s.test")
            cookies[json.loads(body)["backend"]] = headers["set-cookie"].split(";")[0]
        assert set(cookies) == {"a", "b"}
        for _ in range(3):            # the cookie keeps its child
            _, headers, body = get(proxy.port, "/", "s.test", "Cookie: %s\r\n" % cookies["b"])
            assert json.loads(body)["backend"] == "b" and "set-cookie" not in headers
        b.health = 503

        def with_b_cookie():
            _, headers, body = get(proxy.port, "/", "s.test", "Cookie: %s\r\n" % cookies["b"])
            return json.loads(body)["backend"], headers.get("set-cookie", "").split(";")[0]
        assert wait_for(with_b_cookie, ("a", cookies["a"])) == ("a", cookies["a"])
    finally:
        proxy.stop()
        a.close()
        b.close()
