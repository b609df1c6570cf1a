"""End to end: Traefik's API served by a real ``pyroute run`` (the master, on the ``traefik``
entry point with ``api.insecure``), compared with ``pyroute check --dump`` and
``pyroute explain --json`` on the same files, kept current across reloads, with health
status from the master's checker; pyroute's /api/pyroute additions; the dashboard's
redirects and files; attacking requests (X-Forwarded-Prefix, path traversal)."""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from e2e_support import REPO, Pyroute, backend_service, free_port, ingressroute, worker_pids
from test_e2e_health import HealthBackend, external

STRIP_ROUTER = {"using", "name", "provider", "priorityStr"}
STRIP_SERVICE = {"usedBy", "name", "provider", "type", "serverStatus"}
STRIP_MIDDLEWARE = {"usedBy", "name", "provider", "type"}


def static(port, api_port, api="{insecure: true}", extra=""):
    return ("entryPoints:\n  web: {address: \"127.0.0.1:%d\"}\n"
            "  traefik: {address: \"127.0.0.1:%d\"}\napi: %s\nlog: {level: INFO}\n%s"
            % (port, api_port, api, extra))


def start(tmp_path, manifests, api="{insecure: true}", extra="", workers=1):
    proxy = Pyroute(tmp_path, manifests, workers=workers)
    proxy.api_port = free_port()
    proxy.static.write_text(static(proxy.port, proxy.api_port, api, extra))
    proxy.start()
    wait_api(proxy)
    return proxy


def wait_api(proxy, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            get(proxy, "/api/version")
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("no API: %s" % proxy.output())


def get(proxy, path, method="GET", body=None, headers=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (proxy.api_port, path),
                                 method=method, data=body, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def get_json(proxy, path):
    status, _, body = get(proxy, path)
    assert status == 200, (path, status, body)
    return json.loads(body)


def cli(*args):
    out = subprocess.run([sys.executable, "-m", "pyroute"] + list(args), capture_output=True,
                         text=True, cwd=str(REPO), timeout=120)
    return out.stdout


MANIFESTS = (
    backend_service("whoami", [18999])
    + "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
      "metadata: {name: strip, namespace: default}\nspec: {stripPrefix: {prefixes: [/api]}}\n"
    + "---\napiVersion: traefik.io/v1alpha1\nkind: TraefikService\n"
      "metadata: {name: split, namespace: default}\n"
      "spec:\n  weighted:\n    services: [{name: whoami, port: 80, weight: 2}]\n"
    + ingressroute("main", [
        ("Host(`a.example`)", "whoami", "      middlewares: [{name: strip}]\n"),
        ("Host(`b.example`) && PathPrefix(`/x`)", "whoami", "      priority: 7\n"),
        ("Host(`c.example`)", "missing", ""),
    ])
    + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
      "metadata: {name: split, namespace: default}\nspec:\n  routes:\n"
      "    - {match: Host(`s.example`), kind: Rule, services: [{name: split, kind: "
      "TraefikService}]}\n"
)


def test_api_matches_check_dump_and_traefik_shapes(tmp_path):
    proxy = start(tmp_path, MANIFESTS)
    try:
        dump = json.loads(cli("check", "--dump", "-c", str(proxy.static), str(proxy.mdir)))
        raw = get_json(proxy, "/api/rawdata")
        routers = get_json(proxy, "/api/http/routers")
        services = get_json(proxy, "/api/http/services")
        middlewares = get_json(proxy, "/api/http/middlewares")
        ours = {n: r for n, r in dump["http"]["routers"].items()}
        # one source: every router/service/middleware of check --dump, field for field,
        # Traefik's internal ones (api.insecure's routers on traefik) included
        api_routers = {r["name"]: r for r in routers}
        assert set(api_routers) == set(ours)
        assert {"api@internal", "dashboard@internal"} <= set(ours)
        for name, r in api_routers.items():
            assert {k: v for k, v in r.items() if k not in STRIP_ROUTER} == ours[name]
            assert r["provider"] == ("internal" if name.endswith("@internal") else
                                     "kubernetescrd")
            assert r["priorityStr"] == str(ours[name].get("priority", 0))
            assert {k: v for k, v in raw["routers"][name].items() if k != "using"} == ours[name]
        api_services = {s["name"]: s for s in services}
        assert set(api_services) == set(dump["http"]["services"])
        for name, s in api_services.items():
            assert {k: v for k, v in s.items() if k not in STRIP_SERVICE} == \
                dump["http"]["services"][name]
        api_mws = {m["name"]: m for m in middlewares}
        assert set(api_mws) == set(dump["http"]["middlewares"])
        for name, m in api_mws.items():
            assert {k: v for k, v in m.items() if k not in STRIP_MIDDLEWARE} == \
                dump["http"]["middlewares"][name]

        # runtime additions, as Traefik's
        broken = next(r for r in routers if r["rule"] == "Host(`c.example`)")
        assert broken["status"] == "disabled" and broken["error"]
        assert broken["using"] == ["web"]
        strip = api_mws["default-strip@kubernetescrd"]
        assert strip["type"] == "stripprefix" and len(strip["usedBy"]) == 1
        assert api_routers[strip["usedBy"][0]]["rule"] == "Host(`a.example`)"
        split = api_services["default-split@kubernetescrd"]
        assert split["type"] == "weighted" and "serverStatus" not in split
        split_router = next(r for r in routers if r["rule"] == "Host(`s.example`)")
        assert split["usedBy"] == [split_router["name"]]
        assert split_router["entryPoints"] == ["web"]      # the default entry points
        a_router = next(r for r in routers if r["rule"] == "Host(`a.example`)")
        lb = api_services[a_router["service"] + "@kubernetescrd"]
        assert lb["type"] == "loadbalancer"
        assert lb["serverStatus"] == {"http://127.0.0.1:18999": "UP"}
        assert lb["usedBy"] == [a_router["name"]]
        # the weighted service's child: built (serverStatus) but used by no router
        child = api_services["default-whoami-80@kubernetescrd"]
        assert "usedBy" not in child
        assert child["serverStatus"] == {"http://127.0.0.1:18999": "UP"}

        # Traefik's internal provider for api.insecure (dashboard on by default)
        internal = {r["name"]: r for r in routers if r["provider"] == "internal"}
        assert internal["api@internal"]["rule"] == "PathPrefix(`/api`)"
        assert internal["api@internal"]["priorityStr"] == "9223372036854775806"
        assert internal["dashboard@internal"]["using"] == ["traefik"]
        assert {"api@internal", "dashboard@internal", "noop@internal"} <= {
            s["name"] for s in services}

        # by name, 404 for others
        name = broken["name"]
        assert get_json(proxy, "/api/http/routers/" + name) == broken
        assert get_json(proxy, "/api/http/services/" + lb["name"]) == lb
        status, headers, body = get(proxy, "/api/http/routers/nope@kubernetescrd")
        assert status == 404 and json.loads(body) == {
            "message": "router not found: nope@kubernetescrd"}

        # filters and paging
        got = get_json(proxy, "/api/http/routers?status=disabled")
        assert [r["name"] for r in got] == [name]
        got = get_json(proxy, "/api/http/routers?search=B.EXAMPLE")
        assert [r["rule"] for r in got] == ["Host(`b.example`) && PathPrefix(`/x`)"]
        got = get_json(proxy, "/api/http/routers?serviceName=" + lb["name"])
        assert [r["name"] for r in got] == [a_router["name"]]
        got = get_json(proxy, "/api/http/routers?middlewareName=default-strip@kubernetescrd")
        assert [r["rule"] for r in got] == ["Host(`a.example`)"]
        status, headers, body = get(proxy, "/api/http/routers?per_page=2&page=2")
        assert status == 200 and headers["X-Next-Page"] == "3" and len(json.loads(body)) == 2
        status, headers, body = get(proxy, "/api/http/routers?per_page=2&page=9")
        assert status == 400

        # entry points: the workers' and the API's own
        eps = get_json(proxy, "/api/entrypoints")
        assert [e["name"] for e in eps] == ["traefik", "web"]
        web = get_json(proxy, "/api/entrypoints/web")
        assert web["address"] == "127.0.0.1:%d" % proxy.port
        assert web["transport"] == {"lifeCycle": {"graceTimeOut": "10s"},
                                    "respondingTimeouts": {"readTimeout": "1m0s",
                                                           "idleTimeout": "3m0s"}}
        assert get(proxy, "/api/entrypoints/nope")[0] == 404

        ov = get_json(proxy, "/api/overview")
        assert ov["http"]["routers"] == {"total": len(routers), "warnings": 0, "errors": 1}
        assert ov["tcp"]["routers"] == {"total": 0, "warnings": 0, "errors": 0}
        assert set(ov["udp"]) == {"routers", "services"}
        assert ov["features"] == {"tracing": "", "metrics": "", "accessLog": False}
        ver = get_json(proxy, "/api/version")
        assert set(ver) >= {"Version", "Codename", "startDate"}
        for proto, kinds in (("tcp", ("routers", "services", "middlewares")),
                             ("udp", ("routers", "services"))):
            for kind in kinds:
                status, headers, body = get(proxy, "/api/%s/%s" % (proto, kind))
                assert (status, headers["X-Next-Page"], json.loads(body)) == (200, "1", [])
                assert get(proxy, "/api/%s/%s/x@y" % (proto, kind))[0] == 404
        assert get(proxy, "/api/udp/middlewares")[0] == 404
        assert get(proxy, "/api/http/routers", method="DELETE")[0] == 405

        # the API is not on the workers' entry point
        from e2e_support import request
        status, _, _ = request(proxy.port, b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404
    finally:
        proxy.stop()


def test_api_follows_reloads_and_reports_refused_ones(tmp_path):
    proxy = start(tmp_path, MANIFESTS)
    try:
        gen = get_json(proxy, "/api/pyroute/generation")
        assert gen["generation"] == 1 and gen["reload"]["ok"]
        before = {r["name"] for r in get_json(proxy, "/api/http/routers")}
        proxy.write_manifests(MANIFESTS + ingressroute("more", [("Host(`d.example`)", "whoami",
                                                                 "")]))
        end = time.time() + 15
        while get_json(proxy, "/api/pyroute/generation")["generation"] == 1:
            assert time.time() < end, proxy.output()
            time.sleep(0.1)
        after = get_json(proxy, "/api/http/routers")
        added = [r for r in after if r["name"] not in before]
        assert [r["rule"] for r in added] == ["Host(`d.example`)"]
        rel = get_json(proxy, "/api/pyroute/reload")
        assert rel["ok"] and rel["trigger"] == "file change" and rel["generation"] == 2
        assert any("default/missing" in p["message"] and p["kind"] == "IngressRoute"
                   for p in rel["problems"])
        # a refused reload: the static file broken; the API keeps the old configuration
        good = proxy.static.read_text()
        proxy.static.write_text(good + "bogusKey: 1\n")
        end = time.time() + 15
        while get_json(proxy, "/api/pyroute/reload")["ok"]:
            assert time.time() < end, proxy.output()
            time.sleep(0.1)
        rel = get_json(proxy, "/api/pyroute/reload")
        assert "bogusKey" in rel["error"] and rel["generation"] == 2
        assert isinstance(rel["refusedProblems"], list)
        assert len(get_json(proxy, "/api/http/routers")) == len(after)
        # fixed again: applied, and the generation counts applied configurations only
        proxy.static.write_text(good)
        end = time.time() + 15
        while not get_json(proxy, "/api/pyroute/reload")["ok"]:
            assert time.time() < end, proxy.output()
            time.sleep(0.1)
        assert get_json(proxy, "/api/pyroute/generation")["generation"] == 3
    finally:
        proxy.stop()


def test_api_server_status_from_the_masters_health_checks(tmp_path):
    be = HealthBackend("hb")
    manifests = external("hsvc", be.port) + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: main, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
        "    - match: Host(`h.example`)\n      kind: Rule\n      services: [{name: hsvc, port: "
        "%d, healthCheck: {path: /health, interval: 200ms}}]\n" % be.port)
    proxy = start(tmp_path, manifests,
                  extra="providers:\n  kubernetesCRD: {allowExternalNameServices: true}\n")
    try:
        url = "http://127.0.0.1:%d" % be.port
        svc = next(s for s in get_json(proxy, "/api/http/services")
                   if s.get("loadBalancer", {}).get("healthCheck"))
        assert svc["serverStatus"] == {url: "UP"}
        be.health = 500
        end = time.time() + 10
        while True:
            svc = get_json(proxy, "/api/http/services/" + svc["name"])
            if svc["serverStatus"] == {url: "DOWN"}:
                break
            assert time.time() < end, proxy.output()
            time.sleep(0.1)
        gen = get_json(proxy, "/api/pyroute/generation")
        assert gen["health"] == ["%s %s" % (svc["name"], url)]
        raw = get_json(proxy, "/api/rawdata")
        assert raw["services"][svc["name"]]["serverStatus"] == {url: "DOWN"}
        be.health = 200
        end = time.time() + 10
        while get_json(proxy, "/api/http/services/" + svc["name"])["serverStatus"][url] != "UP":
            assert time.time() < end
            time.sleep(0.1)
    finally:
        proxy.stop()


def test_pyroute_explain_is_the_cli_explain_on_the_running_config(tmp_path):
    proxy = start(tmp_path, MANIFESTS, workers=2)
    try:
        for args, query, post in [
            (["GET", "http://a.example/api/x"], "url=http://a.example/api/x",
             {"url": "http://a.example/api/x"}),
            (["POST", "/x/y", "-H", "Host: b.example", "--client-ip", "10.1.2.3"],
             "method=POST&url=/x/y&header=Host:%20b.example&client_ip=10.1.2.3",
             {"method": "POST", "url": "/x/y", "headers": ["Host: b.example"],
              "client_ip": "10.1.2.3"}),
            (["GET", "http://c.example/"], "url=http://c.example/", {"url": "http://c.example/"}),
        ]:
            want = json.loads(cli("explain", "-c", str(proxy.static), str(proxy.mdir), *args,
                                  "--json"))
            assert get_json(proxy, "/api/pyroute/explain?" + query) == want
            status, _, body = get(proxy, "/api/pyroute/explain", "POST",
                                  json.dumps(post).encode(),
                                  {"Content-Type": "application/json"})
            assert status == 200 and json.loads(body) == want
        assert get(proxy, "/api/pyroute/explain")[0] == 400
        assert get(proxy, "/api/pyroute/explain", "POST", b"{nope")[0] == 400

        workers = get_json(proxy, "/api/pyroute/workers")
        assert sorted(w["pid"] for w in workers) == sorted(worker_pids(proxy.proc.pid))
        assert all(w["alive"] and w["restarts"] == 0 for w in workers)
        victim = workers[0]["pid"]
        os.kill(victim, 9)
        end = time.time() + 10
        while True:
            try:
                w0 = get_json(proxy, "/api/pyroute/workers")[0]
            except OSError:
                # the entry point traefik is the workers': a connection queued at the one
                # killed is reset (as on any entry point), the next reaches the other
                time.sleep(0.1)
                continue
            if w0["pid"] not in (None, victim) and w0["alive"]:
                break
            assert time.time() < end
            time.sleep(0.1)
        assert w0["restarts"] == 1 and w0["recentDeaths"] == 1
    finally:
        proxy.stop()


def test_dashboard_redirects_files_and_attacks(tmp_path):
    proxy = start(tmp_path, MANIFESTS)
    try:
        here = "127.0.0.1:%d" % proxy.api_port
        # Traefik's dashboard_redirect@internal: the request's own scheme, host and port
        status, headers, _ = get(proxy, "/")
        assert (status, headers["Location"]) == (301, "http://%s/dashboard/" % here)
        # Traefik trusts X-Forwarded-Prefix from its upstream hop; here the client sends it:
        # it never decides where the redirect goes
        status, headers, _ = get(proxy, "/", headers={"X-Forwarded-Prefix": "//evil.example"})
        assert headers["Location"] == "http://%s/dashboard/" % here
        # a Host the redirect's regex does not take: no redirect, the dashboard's page
        status, headers, body = get(proxy, "/", headers={"Host": "a b"})
        assert status == 400 or (status == 200 and "Location" not in headers)
        # /dashboard: dashboard_stripprefix@internal makes it /, the page itself
        status, headers, body = get(proxy, "/dashboard")
        assert status == 200 and b"<title>pyroute" in body
        status, headers, body = get(proxy, "/dashboard/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b"<title>pyroute" in body
        for asset in ("app.js", "style.css"):
            assert get(proxy, "/dashboard/" + asset)[0] == 200
        for bad in ("/dashboard/..%2fapi%2f__init__.py", "/dashboard/%2e%2e/api/handler.py",
                    "/dashboard/../../static.py", "/dashboard/.hidden",
                    "/dashboard/%2e%2e%2fstatic.py", "/..%2fstatic.py"):
            status, _, body = get(proxy, bad)
            assert status in (400, 404) and b"import" not in body, bad
    finally:
        proxy.stop()


def test_base_path_and_dashboard_off(tmp_path):
    """basePath is for the API behind a route of the user's (Traefik's docs: incompatible
    with api.insecure, whose router is PathPrefix(`/api`)): warned, and served as Traefik
    serves it — through api@internal under the base path."""
    manifests = MANIFESTS + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: api, namespace: default}\nspec:\n  entryPoints: [web]\n"
        "  routes:\n    - {match: PathPrefix(`/traefik`), kind: Rule, services: "
        "[{name: api@internal, kind: TraefikService}]}\n")
    proxy = start(tmp_path, manifests, api="{insecure: true, basePath: /traefik, "
                                           "dashboard: false}")
    try:
        assert "api.basePath" in proxy.output() and "api.insecure" in proxy.output()
        # on the entry point traefik: PathPrefix(`/api`) reaches a handler under /traefik
        assert get(proxy, "/api/version")[0] == 404
        assert get(proxy, "/traefik/api/version")[0] == 404
        assert get(proxy, "/dashboard/")[0] == 404
        # through api@internal: the base path
        import urllib.request as ur
        with ur.urlopen("http://127.0.0.1:%d/traefik/api/http/routers" % proxy.port,
                        timeout=10) as r:
            names = {x["name"] for x in json.loads(r.read())}
        assert "api@internal" in names and "dashboard@internal" not in names
    finally:
        proxy.stop()


def test_api_internal_from_an_ingressroute_reaches_the_masters_api(tmp_path):
    """Traefik users' way: no api.insecure, an IngressRoute to api@internal (here behind an
    ipAllowList). The workers forward it to the master's API over its private unix socket."""
    from e2e_support import request
    manifests = MANIFESTS + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
        "metadata: {name: only-10, namespace: default}\n"
        "spec: {ipAllowList: {sourceRange: [10.0.0.0/8]}}\n"
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: dash, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
        "    - {match: Host(`traefik.example`), kind: Rule, services: [{name: api@internal, "
        "kind: TraefikService}]}\n"
        "    - {match: Host(`locked.example`), kind: Rule, middlewares: [{name: only-10}], "
        "services: [{name: api@internal, kind: TraefikService}]}\n")
    import glob
    import stat
    proxy = Pyroute(tmp_path, manifests, workers=2)
    proxy.api_port = free_port()
    proxy.static.write_text(static(proxy.port, proxy.api_port, api="{}"))
    before = set(glob.glob("/tmp/pyroute-api-*"))
    proxy.start()
    mine = set(glob.glob("/tmp/pyroute-api-*")) - before
    try:
        # no api.insecure: nothing on the traefik entry point (an ordinary, unused one)
        status, _, _ = request(proxy.api_port, b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404
        status, headers, body = request(
            proxy.port, b"GET /api/http/routers?search=traefik.example HTTP/1.1\r\n"
                        b"Host: traefik.example\r\n\r\n")
        assert status == 200 and headers["content-type"] == "application/json"
        routers = json.loads(body)
        assert [r["rule"] for r in routers] == ["Host(`traefik.example`)"]
        assert routers[0]["service"] == "api@internal" and routers[0]["status"] == "enabled"
        status, _, body = request(proxy.port, b"GET /api/http/services/api@internal HTTP/1.1"
                                              b"\r\nHost: traefik.example\r\n\r\n")
        svc = json.loads(body)
        assert status == 200 and svc["provider"] == "internal" and len(svc["usedBy"]) == 2
        status, headers, _ = request(proxy.port, b"GET / HTTP/1.1\r\nHost: traefik.example"
                                                 b"\r\n\r\n")
        assert (status, headers["location"]) == (302, "/dashboard/")   # dashboard.Append
        status, headers, body = request(proxy.port, b"GET /dashboard/ HTTP/1.1\r\n"
                                                    b"Host: traefik.example\r\n\r\n")
        assert status == 200 and b"<title>pyroute" in body
        # the configured check runs: 127.0.0.1 is not in 10.0.0.0/8, whatever it claims
        for extra in (b"", b"X-Forwarded-For: 10.1.2.3\r\n", b"X-Real-Ip: 10.1.2.3\r\n"):
            status, _, body = request(proxy.port, b"GET /api/rawdata HTTP/1.1\r\n"
                                                  b"Host: locked.example\r\n" + extra + b"\r\n")
            assert status == 403 and b"routers" not in body
        # explain tells where it goes
        res = json.loads(cli("explain", "-c", str(proxy.static), str(proxy.mdir),
                             "http://traefik.example/api/overview", "--json"))
        assert res["status"] is None and res["service"]["type"] == "internal"
        # the master's socket: this user's only
        assert len(mine) == 1
        folder = mine.pop()
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_ISSOCK(os.stat(folder + "/api.sock").st_mode)
    finally:
        proxy.stop()
    assert not os.path.exists(folder)          # removed when pyroute stops


def test_api_internal_without_the_api_section_does_not_exist(tmp_path):
    manifests = MANIFESTS + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: dash, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
        "    - {match: Host(`traefik.example`), kind: Rule, services: [{name: api@internal, "
        "kind: TraefikService}]}\n")
    (tmp_path / "m.yaml").write_text(manifests)
    dump = json.loads(cli("check", "--dump", str(tmp_path / "m.yaml")))
    r = next(r for r in dump["http"]["routers"].values() if r["service"] == "api@internal")
    assert r["status"] == "disabled"
    assert r["error"] == ["the service 'api@internal' does not exist"]    # Traefik's words
    assert "api@internal" not in dump["http"]["services"]


def test_api_entry_point_busy_is_a_clear_start_error(tmp_path):
    import socket
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    proxy = Pyroute(tmp_path, MANIFESTS)
    proxy.api_port = holder.getsockname()[1]
    proxy.static.write_text(static(proxy.port, proxy.api_port))
    proxy.start(wait=False)
    try:
        assert proxy.proc.wait(30) == 1
        # the workers' entry point (pyroute.server.listeners)
        assert "entry point traefik: cannot listen on 127.0.0.1:%d" % proxy.api_port in \
            proxy.output()
    finally:
        holder.close()
        proxy.stop()


def test_api_static_settings_not_done_are_warned(tmp_path):
    static_file = tmp_path / "s.yaml"
    static_file.write_text("entryPoints:\n  web: {address: \"127.0.0.1:1\"}\n"
                           "api: {debug: true}\n")
    (tmp_path / "m.yaml").write_text(MANIFESTS)
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c", str(static_file),
                          str(tmp_path / "m.yaml")], capture_output=True, text=True,
                         cwd=str(REPO), timeout=120)
    text = out.stdout + out.stderr
    assert text.count("api.debug: warning: pyroute ignores this key (pyroute has no debug "
                      "endpoints") == 1


def test_idle_and_slow_api_clients_never_hold_the_master(tmp_path):
    """Clients that connect to the API and send nothing (or half a request) hold only their
    own threads: the API answers others, and the master still reloads and restarts workers."""
    import socket
    proxy = start(tmp_path, MANIFESTS)
    idle = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", proxy.api_port), timeout=5)
            if i % 2:
                s.sendall(b"GET /api/rawdata HTTP/1.1\r\nHost: x\r\n")   # never finished
            idle.append(s)
        t0 = time.time()
        assert get_json(proxy, "/api/version")
        assert time.time() - t0 < 2.0
        proxy.signal(1)                                   # SIGHUP: reload
        end = time.time() + 10
        while get_json(proxy, "/api/pyroute/generation")["generation"] < 2:
            assert time.time() < end, proxy.output()
            time.sleep(0.05)
        assert get_json(proxy, "/api/pyroute/reload")["trigger"] == "SIGHUP"
        victim = worker_pids(proxy.proc.pid)[0]
        os.kill(victim, 9)
        end = time.time() + 10
        while True:
            pids = worker_pids(proxy.proc.pid)
            if pids and victim not in pids:
                break
            assert time.time() < end
            time.sleep(0.05)
    finally:
        for s in idle:
            s.close()
        proxy.stop()
    assert proxy.proc.returncode == 0


MAXINT = (1 << 63) - 1
MAX_USER_PRIORITY = MAXINT - 1000          # Traefik's router.go maxUserPriority
def traefik_ep_app(port):
    return (backend_service("app", [port])
            + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
              "metadata: {name: on-traefik, namespace: default}\nspec:\n"
              "  entryPoints: [traefik]\n  routes:\n"
              "    - {match: Host(`app.localhost`), kind: Rule, services: [{name: app, port: "
              "80}]}\n"
              # the highest priority a manifest may give: still below the API's routers
              "    - {match: Host(`top.localhost`), kind: Rule, priority: %d,\n"
              "       services: [{name: app, port: 80}]}\n" % MAX_USER_PRIORITY)


def _on_traefik(proxy, path, host):
    return get(proxy, path, headers={"Host": host})


def test_an_ingressroute_on_the_traefik_entry_point_beside_the_api(tmp_path):
    """As in Traefik, the entry point ``traefik`` serves the API's internal router
    (PathPrefix(`/api`) at MaxInt-1) and the IngressRoutes on it, priorities deciding: with
    ``api.dashboard: false`` the IngressRoute's Host(`app.localhost`) takes every path but
    /api. Served by the workers: the master holds no socket on the entry point."""
    from e2e_backend import Backend
    be = Backend("app")
    proxy = start(tmp_path, traefik_ep_app(be.port), api="{insecure: true, dashboard: false}",
                  workers=2)
    try:
        here = "127.0.0.1:%d" % proxy.api_port
        for host in ("app.localhost", "top.localhost"):
            for path in ("/hello", "/", "/dashboard/", "/ap"):
                status, headers, body = _on_traefik(proxy, path, host)
                assert status == 200 and headers["X-Backend"] == "app", (path, status, body)
                assert json.loads(body)["target"] == path
            # /api is the API's, whatever the host (MaxInt-1 above any user router)
            status, headers, body = _on_traefik(proxy, "/api/version", host)
            assert status == 200 and json.loads(body)["Codename"] == "pyroute", body
            assert "X-Backend" not in headers
            # PathPrefix is a string prefix (Traefik v3): /apix is the API's too
            status, headers, _ = _on_traefik(proxy, "/apix", host)
            assert status == 404 and "X-Backend" not in headers
        status, _, body = _on_traefik(proxy, "/api/overview", here)
        assert status == 200 and "http" in json.loads(body)
        status, _, _ = _on_traefik(proxy, "/hello", here)      # no router: pyroute's 404
        assert status == 404
        # the API lists the routers on traefik as any other, and its internal one
        routers = {r["name"]: r for r in get_json(proxy, "/api/http/routers")}
        mine = {r["rule"]: r for r in routers.values() if r.get("provider") != "internal"}
        assert mine["Host(`app.localhost`)"]["using"] == ["traefik"]
        assert mine["Host(`app.localhost`)"]["status"] == "enabled"
        assert routers["api@internal"]["using"] == ["traefik"]
        assert routers["api@internal"]["priority"] == MAXINT - 1
        assert "dashboard@internal" not in routers
        ex = get_json(proxy, "/api/pyroute/explain?url=http://app.localhost/api/version"
                             "&entrypoint=traefik")
        assert ex["router"] == "api@internal", ex
        # check says nothing against the routers on traefik
        out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c",
                              str(proxy.static), str(proxy.mdir)], capture_output=True,
                             text=True, cwd=str(REPO), timeout=120)
        assert out.returncode == 0 and "doesn't exist" not in out.stdout, out.stdout
        listening = subprocess.run(["ss", "-Hltnp", "sport = :%d" % proxy.api_port],
                                   capture_output=True, text=True).stdout
        assert "pid=%d," % proxy.proc.pid not in listening and "pid=" in listening, \
            listening
    finally:
        proxy.stop()
        be.close()


def test_the_dashboards_router_takes_the_traefik_entry_point(tmp_path):
    """With the dashboard on, Traefik's dashboard@internal router (PathPrefix(`/`) at
    MaxInt-2, behind dashboard_redirect@internal and dashboard_stripprefix@internal) is
    above any router a manifest may write (at most MaxInt-1000): an IngressRoute on
    ``traefik`` is enabled, and the dashboard answers its requests — as Traefik does."""
    from e2e_backend import Backend
    be = Backend("app")
    proxy = start(tmp_path, traefik_ep_app(be.port), workers=2)
    try:
        here = "127.0.0.1:%d" % proxy.api_port
        for host in (here, "app.localhost", "top.localhost"):
            status, _, body = _on_traefik(proxy, "/api/version", host)
            assert status == 200 and json.loads(body)["Codename"] == "pyroute", body
            status, headers, body = _on_traefik(proxy, "/dashboard/", host)
            assert status == 200 and b"pyroute dashboard" in body, (status, body)
            assert b'content="/api/"' in body
            status, headers, body = _on_traefik(proxy, "/dashboard/app.js", host)
            assert status == 200 and headers["Content-Type"].startswith("text/javascript")
            # /dashboard (no slash): stripped to /, the page itself (dashboard.Handler)
            status, _, body = _on_traefik(proxy, "/dashboard", host)
            assert status == 200 and b"pyroute dashboard" in body
            # anything else: the dashboard's file server, never the app
            status, headers, body = _on_traefik(proxy, "/hello", host)
            assert status == 404 and body == b"404 page not found\n"
            assert "X-Backend" not in headers
        # / gets the dashboard_redirect middleware's 301 (Traefik's regex: the request's
        # own host and port)
        for host in (here, "app.localhost"):
            status, headers, _ = _on_traefik(proxy, "/", host)
            assert status == 301 and headers["Location"] == "http://%s/dashboard/" % host
        assert not be.requests
        routers = {r["name"]: r for r in get_json(proxy, "/api/http/routers")}
        assert routers["dashboard@internal"]["priority"] == MAXINT - 2
        assert routers["dashboard@internal"]["middlewares"] == [
            "dashboard_redirect@internal", "dashboard_stripprefix@internal"]
        mine = [r for r in routers.values() if r.get("rule") == "Host(`top.localhost`)"]
        assert mine[0]["status"] == "enabled" and mine[0]["priority"] == MAX_USER_PRIORITY
        ex = get_json(proxy, "/api/pyroute/explain?url=http://top.localhost/hello"
                             "&entrypoint=traefik")
        assert ex["router"] == "dashboard@internal", ex
        assert mine[0]["name"] in [m["router"] for m in ex["matched"]]
    finally:
        proxy.stop()
        be.close()


def test_traefik_entry_point_created_when_not_defined(tmp_path):
    """api.insecure without entryPoints.traefik: Traefik creates it on :8080; it is a
    workers' entry point here too (an IngressRoute on it is not refused)."""
    from pyroute.static import load_static
    static_file = tmp_path / "s.yaml"
    static_file.write_text("entryPoints:\n  web: {address: \":%d\"}\napi: {insecure: true}\n"
                           % free_port())
    st = load_static(str(static_file))
    assert st.entry_points["traefik"].port == 8080 and st.entry_points["traefik"].host == ""
    assert st.default_entry_points() == ["web"]
    (tmp_path / "m.yaml").write_text(traefik_ep_app(18998))
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c", str(static_file),
                          str(tmp_path / "m.yaml")], capture_output=True, text=True,
                         cwd=str(REPO), timeout=120)
    assert "doesn't exist" not in out.stdout, out.stdout
    assert out.returncode == 0, out.stdout + out.stderr
