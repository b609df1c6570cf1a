"""``pyroute explain`` and the check warnings that need the rule engine."""
import base64
import json
import os
import subprocess
import sys

import pytest
import trustme

import pyroute
from manifests_util import load, service, static, write
from pyroute import manifests
from pyroute.manifests.analysis import analyse
from pyroute.manifests.trace import Explainer

DEMO = os.path.join(os.path.dirname(pyroute.__file__), "demo")


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "pyroute", *args], capture_output=True,
                          text=True, timeout=120, input=stdin)


def demo():
    return Explainer(manifests.load([DEMO]))


def test_winner_losers_middlewares_and_service_tree():
    res = demo().explain("GET", "http://demo.localhost:8000/api/users")
    assert res["status"] is None
    assert res["router"] == manifests.qualified(manifests.router_name(
        "default", "demo", "Host(`demo.localhost`) && PathPrefix(`/api`)"))
    assert res["rule"] == "Host(`demo.localhost`) && PathPrefix(`/api`)"
    assert res["priority"] == len(res["rule"])
    assert [m["router"] for m in res["matched"]] == [
        res["router"], manifests.qualified(manifests.router_name(
            "default", "demo", "Host(`demo.localhost`)"))]
    assert [m["why"] for m in res["matched"]] == ["winner", "lower priority (22 < 44)"]
    assert [(m["name"], m["type"]) for m in res["middlewares"]] == [
        ("default-strip-api@kubernetescrd", "stripPrefix"),
        ("default-demo-headers@kubernetescrd", "headers")]
    assert res["service"]["type"] == "loadBalancer"
    assert res["service"]["servers"] == [{"url": "http://127.0.0.1:18082", "weight": 1}]


def test_weighted_service_tree():
    res = demo().explain("GET", "http://demo.localhost/split")
    tree = res["service"]
    assert (tree["name"], tree["type"]) == ("default-split@kubernetescrd", "weighted")
    assert [(c["name"], c["weight"], c["servers"]) for c in tree["children"]] == [
        ("default-echo-a-80@kubernetescrd", 3, [{"url": "http://127.0.0.1:18081", "weight": 1}]),
        ("default-echo-c-80@kubernetescrd", 1, [{"url": "http://127.0.0.1:18083", "weight": 1}])]


def test_normalisation_happens_before_routing():
    ex = demo()
    # dot segments are removed before matching: /api/../v1 routes like /v1
    res = ex.explain("GET", "http://demo.localhost/api/../v1/x?a=1;b=2")
    assert res["rule"] == "Host(`demo.localhost`) && PathPrefix(`/v1`)"
    assert res["path"] == "/v1/x" and res["query"] == "a=1&b=2"
    assert ex.explain("GET", "http://demo.localhost/a#b")["status"] == 400
    assert ex.explain("GET", "http://demo.localhost/a%zz")["status"] == 400
    assert ex.explain("GET", "http://unknown.localhost/")["status"] == 404


def test_sanitize_path_off_changes_the_route(tmp_path):
    st = tmp_path / "static.yaml"
    st.write_text("entryPoints:\n  web:\n    address: '127.0.0.1:8000'\n"
                  "    http: {sanitizePath: false}\n")
    rc = manifests.load([DEMO], manifests_static(str(st)))
    res = Explainer(rc).explain("GET", "http://demo.localhost/api/../v1/x")
    assert res["rule"] == "Host(`demo.localhost`) && PathPrefix(`/api`)"


def manifests_static(path):
    from pyroute.static import load_static
    return load_static(path)


def test_middleware_answers_and_forwarded_headers():
    ex = demo()
    assert ex.explain("GET", "http://admin.localhost/", client_ip="10.1.2.3")["status"] == 403
    assert ex.explain("GET", "http://admin.localhost/", client_ip="127.0.0.1")["status"] is None
    res = ex.explain("POST", "http://secure.localhost:8000/x?y=1")
    assert res["status"] == 307
    assert "redirect to https://secure.localhost/x?y=1" in res["notes"][-1]
    # a client-sent X-Forwarded-Proto is dropped (127.0.0.1 is not a trusted IP), so the
    # request still counts as plain HTTP and is redirected
    res = ex.explain("GET", "http://secure.localhost/", [("X-Forwarded-Proto", "https")])
    assert res["status"] == 302


def test_trusted_forwarded_proto_is_kept(tmp_path):
    st = tmp_path / "static.yaml"
    st.write_text("entryPoints:\n  web:\n    address: '127.0.0.1:8000'\n"
                  "    forwardedHeaders: {trustedIPs: [127.0.0.1]}\n")
    rc = manifests.load([DEMO], manifests_static(str(st)))
    res = Explainer(rc).explain("GET", "http://secure.localhost/",
                                [("X-Forwarded-Proto", "https")])
    assert res["status"] is None   # already https: no redirect


TLS_ROUTES = """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: shop}
spec:
  entryPoints: [websecure]
  routes:
    - match: Host(`shop.example.com`)
      services: [{name: whoami, port: 80}]
  tls:
    secretName: shop-cert
    options: {name: modern}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: blog}
spec:
  entryPoints: [websecure]
  routes:
    - match: Host(`blog.example.com`)
      services: [{name: whoami, port: 80}]
  tls: {}
---
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: modern}
spec: {minVersion: VersionTLS13}
"""


def _secret(name, cert):
    return """\
apiVersion: v1
kind: Secret
metadata: {name: %s}
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
""" % (name, base64.b64encode(cert.cert_chain_pems[0].bytes()).decode(),
       base64.b64encode(cert.private_key_pem.bytes()).decode())


def test_tls_option_certificate_and_421(tmp_path):
    ca = trustme.CA()
    write(tmp_path, "a.yaml", TLS_ROUTES, service("whoami"),
          _secret("shop-cert", ca.issue_cert("shop.example.com")))
    ex = Explainer(load(tmp_path))
    res = ex.explain("GET", "https://shop.example.com:8443/")
    assert res["status"] is None
    assert res["tls"]["option"] == "default-modern@kubernetescrd"
    assert res["tls"]["certificate_names"] == ["shop.example.com"]
    res = ex.explain("GET", "https://blog.example.com/", entrypoint="websecure")
    assert res["tls"]["option"] == "default"
    assert res["tls"]["certificate"].startswith("pyroute's generated")
    # domain fronting: SNI blog (default option), Host shop (modern option) -> 421
    res = ex.explain("GET", "https://shop.example.com:8443/", sni="blog.example.com")
    assert res["status"] == 421
    # plain HTTP does not reach TLS routers
    assert ex.explain("GET", "http://shop.example.com:8000/")["status"] == 404


def test_never_winning_router_and_tls_conflict_warnings(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`)
      priority: 100
      services: [{name: whoami, port: 80}]
    - match: Host(`a.example.com`) && PathPrefix(`/api`)
      services: [{name: whoami, port: 80}]
    - match: Host(`a.example.com`) && Path(`/x`) && Method(`POST`)
      services: [{name: whoami, port: 80}]
    - match: Host(`b.example.com`) && PathPrefix(`/api`)
      services: [{name: whoami, port: 80}]
    - match: Host(`a.example.com`) || Host(`c.example.com`)
      services: [{name: whoami, port: 80}]
""", TLS_ROUTES.replace("shop.example.com", "x.example.com").replace(
        "blog.example.com", "x.example.com"), service("whoami"))
    rc = load(tmp_path)
    warnings = [e.render() for e in analyse(rc)]
    never = [w for w in warnings if "can never win" in w]
    assert len(never) == 2
    assert "spec.routes[1].match: router default-app-" in never[0]
    assert "spec.routes[2].match: router default-app-" in never[1]
    # the TLS option conflict: Traefik v3.7 makes both routers websecure-conflicted-* copies
    # (pyroute.manifests.tlsresolve), which the load reports with Traefik's messages
    assert not [w for w in warnings if "different TLS options" in w]
    loaded = [e.render() for e in rc.errors]
    conflicts = [w for w in loaded if 'Host "x.example.com" is served by multiple routers '
                 'with different TLS options' in w]
    assert len(conflicts) == 1 and 'On EntryPoint "websecure"' in conflicts[0]
    copies = [w for w in loaded if "router's TLSOptions configuration is conflicting" in w]
    assert len(copies) == 2
    assert sorted(n.split("-")[3] for n in rc.conflicted_routers) == ["blog", "shop"]
    assert all(n.startswith("websecure-conflicted-default-") for n in rc.conflicted_routers)


def test_invalid_rule_disables_the_router(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app}
spec:
  routes:
    - match: Host(`a.example.com`) && Foo(`/x`)
      services: [{name: whoami, port: 80}]
    - match: Host(`b.example.com`)
      syntax: v4
      services: [{name: whoami, port: 80}]
    - match: Host(`c.example.com`)
      priority: 9223372036854774900
      services: [{name: whoami, port: 80}]
""", service("whoami"))
    rc = load(tmp_path)
    errs = [e.render() for e in rc.errors if e.severity == "error"]
    assert any("spec.routes[0].match: invalid rule" in e for e in errs), errs
    assert any("spec.routes[1].match: invalid rule syntax 'v4'" in e for e in errs), errs
    assert any("spec.routes[2].priority: the router priority 9223372036854774900 exceeds the "
               "max user-defined priority" in e for e in errs), errs
    assert all(r["status"] == "disabled" for r in rc.dynamic["http"]["routers"].values())


def test_cli_text_json_and_requests():
    out = run("explain", DEMO, "GET", "http://demo.localhost/api/users")
    assert out.returncode == 0, out.stderr
    assert "router       default-demo-" in out.stdout
    assert "1. default-strip-api@kubernetescrd  stripPrefix" in out.stdout
    assert "http://127.0.0.1:18082  weight 1" in out.stdout
    out = run("explain", DEMO, "http://nowhere.localhost/", "--json")
    res = json.loads(out.stdout)
    assert {"status", "entrypoint", "router", "rule", "priority", "middlewares", "service",
            "tls", "matched"} <= set(res)
    assert res["status"] == 404 and res["entrypoint"] == "web"
    reqs = "\n".join(json.dumps(r) for r in [
        {"method": "GET", "url": "http://demo.localhost/"},
        {"url": "/split", "headers": [["Host", "demo.localhost"]]},
        {"url": "http://admin.localhost/", "client_ip": "192.0.2.1"},
    ])
    out = run("explain", DEMO, "--requests", "-", stdin=reqs + "\n")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["status"] for r in lines] == [None, None, 403]
    assert lines[1]["service"]["type"] == "weighted"


def test_cli_bad_header():
    out = run("explain", DEMO, "/", "-H", "nocolon")
    assert out.returncode == 2
    assert "not 'Name: value'" in out.stderr


@pytest.fixture(autouse=True)
def _static_is_used(monkeypatch):
    # keep the helper imported (static() builds web/websecure for load())
    assert static().entry_points["websecure"].port == 8443


def test_denied_encoded_characters_after_routing(tmp_path):
    st = tmp_path / "static.yaml"
    st.write_text("entryPoints:\n  web:\n    address: '127.0.0.1:8000'\n"
                  "    http: {encodedCharacters: {allowEncodedSlash: false}}\n")
    ex = Explainer(manifests.load([DEMO], manifests_static(str(st))))
    res = ex.explain("GET", "http://demo.localhost/a%2Fb")
    assert res["status"] == 400 and "%2F" in res["notes"][-1]
    assert ex.explain("GET", "http://nowhere.localhost/a%2Fb")["status"] == 404
    # Traefik >= v3.6.7 lets an encoded slash through by default, as allowEncodedSlash: true
    assert demo().explain("GET", "http://demo.localhost/a%2Fb")["status"] is None
    st.write_text("entryPoints:\n  web:\n    address: '127.0.0.1:8000'\n"
                  "    http: {encodedCharacters: {allowEncodedSlash: true}}\n")
    allowed = Explainer(manifests.load([DEMO], manifests_static(str(st))))
    assert allowed.explain("GET", "http://demo.localhost/a%2Fb")["status"] is None


def test_tls_option_on_a_router_without_host_warns(tmp_path):
    write(tmp_path, "a.yaml", TLS_ROUTES.replace("Host(`shop.example.com`)", "PathPrefix(`/`)"),
          service("whoami"))
    # Traefik v3.7: such a router conflicts by itself and becomes a conflicted copy
    # (the default option), with Traefik's "no domain found in rule" error
    rc = load(tmp_path)
    warnings = [e.render() for e in rc.errors]
    assert any("no domain found in rule PathPrefix(`/`), the TLS option "
               "default-modern@kubernetescrd cannot be applied" in w
               for w in warnings), warnings
    assert [n.split("-")[3] for n in rc.conflicted_routers] == ["shop"]


def test_multi_layer_routing_walks_parent_then_children(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: api}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`api.example.com`)
      middlewares: [{name: strip}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: admin}
spec:
  parentRefs: [{name: api}]
  routes:
    - match: Header(`X-Role`, `admin`)
      services: [{name: whoami, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: strip}
spec:
  stripPrefix: {prefixes: [/v1]}
""", service("whoami"))
    ex = Explainer(load(tmp_path))
    res = ex.explain("GET", "http://api.example.com:8000/v1/x", [("X-Role", "admin")])
    parent = manifests.qualified(manifests.router_name("default", "api", "Host(`api.example.com`)"))
    assert res["router"] == manifests.qualified(manifests.router_name(
        "default", "admin", "Header(`X-Role`, `admin`)"))
    assert [m["parent"] for m in res["matched"]] == [None, parent]
    assert [m["name"] for m in res["middlewares"]] == ["default-strip@kubernetescrd"]
    res = ex.explain("GET", "http://api.example.com:8000/v1/x")
    assert res["status"] == 404
    assert "matched but none of its children does" in res["notes"][0]


def test_cli_entrypoint_and_sni_flags(tmp_path):
    ca = trustme.CA()
    write(tmp_path, "a.yaml", TLS_ROUTES, service("whoami"),
          _secret("shop-cert", ca.issue_cert("shop.example.com")))
    st = tmp_path / "static.yaml"
    st.write_text("entryPoints:\n  web: {address: ':8000'}\n  websecure: {address: ':8443'}\n")
    out = run("explain", "-c", str(st), str(tmp_path / "a.yaml"), "https://shop.example.com/",
              "--entrypoint", "websecure", "--sni", "blog.example.com", "--json")
    res = json.loads(out.stdout)
    assert (res["entrypoint"], res["status"]) == ("websecure", 421)
    assert res["tls"]["sni"] == "blog.example.com"


def test_host_header_is_the_requests_host_as_curl_sends_it():
    # the demo's own curl line: the URL says where the request goes, -H Host what it asks for
    out = run("explain", DEMO, "GET", "http://127.0.0.1:8000/", "-H", "Host: demo.localhost")
    assert out.returncode == 0, out.stderr
    assert "host         demo.localhost" in out.stdout
    assert "router       default-demo-" in out.stdout
    assert "status       forwarded to the service" in out.stdout
    out = run("explain", DEMO, "http://127.0.0.1:8000/api/users", "-H", "host: demo.localhost",
              "--json")
    res = json.loads(out.stdout)
    assert res["host"] == "demo.localhost" and res["status"] is None
    assert res["router"].startswith("default-demo-")
    # without a Host header the URL's authority is the Host, as curl sends it
    res = demo().explain("GET", "http://127.0.0.1:8000/")
    assert res["host"] == "127.0.0.1:8000" and res["status"] == 404
    # the entry point still comes from where the request was sent
    res = demo().explain("GET", "http://127.0.0.1:8000/", [("Host", "demo.localhost")])
    assert res["entrypoint"] == "web" and res["status"] is None


def test_origin_form_url_takes_the_host_header():
    res = demo().explain("GET", "/", [("Host", "demo.localhost")])
    assert res["host"] == "demo.localhost" and res["status"] is None


EXPLAIN_VS_RUN = """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: strip, namespace: default}
spec:
  stripPrefix: {prefixes: [/api]}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: by-depth, namespace: default}
spec:
  ipAllowList:
    sourceRange: ["192.0.2.0/24"]
    ipStrategy: {depth: 1}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: v6-subnet, namespace: default}
spec:
  ipAllowList:
    sourceRange: ["2001:db8::/64"]
    ipStrategy: {depth: 1, ipv6Subnet: 64}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`strip.test`)
      kind: Rule
      middlewares: [{name: strip}]
      services: [{name: svc, port: 80}]
    - match: Host(`depth.test`)
      kind: Rule
      middlewares: [{name: by-depth}]
      services: [{name: svc, port: 80}]
    - match: Host(`v6.test`)
      kind: Rule
      middlewares: [{name: v6-subnet}]
      services: [{name: svc, port: 80}]
"""


def test_explain_runs_the_servers_middlewares_and_agrees_with_run(tmp_path):
    # explain answers with the very middleware objects `pyroute run` serves with: the
    # stripPrefix dot-segment 400, the depth strategy that never trusts an untrusted peer's
    # X-Forwarded-For, and ipv6Subnet — each checked against a real `pyroute run`
    from e2e_backend import Backend
    from e2e_support import Pyroute, backend_service, request
    be = Backend("a")
    text = backend_service("svc", [be.port]) + "---\n" + EXPLAIN_VS_RUN
    proxy = Pyroute(tmp_path, text, workers=1, trusted=("127.0.0.1",))
    cases = [
        # (host, target, extra headers, client ip as explain is told)
        ("strip.test", "/api./foo", [], "127.0.0.1"),          # 400 (dot segment left)
        ("strip.test", "/api/foo", [], "127.0.0.1"),           # forwarded, /foo
        ("depth.test", "/", [("X-Forwarded-For", "192.0.2.7")], "127.0.0.1"),   # trusted: 200
        ("depth.test", "/", [("X-Forwarded-For", "198.51.100.1")], "127.0.0.1"),  # 403
        ("v6.test", "/", [("X-Forwarded-For", "2001:db8::1234")], "127.0.0.1"),   # 200
        ("v6.test", "/", [("X-Forwarded-For", "2001:db8:1::1")], "127.0.0.1"),    # 403
    ]
    try:
        proxy.start()
        ex = Explainer(manifests.load([str(proxy.mdir)], manifests_static(str(proxy.static))))
        got_run, got_explain = [], []
        for host, target, hdrs, ip in cases:
            raw = ("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
                target, host, "".join("%s: %s\r\n" % h for h in hdrs))).encode()
            got_run.append(request(proxy.port, raw)[0])
            res = ex.explain("GET", "http://%s%s" % (host, target), hdrs, client_ip=ip)
            got_explain.append(res["status"] or 200)
        assert got_run == [400, 200, 200, 403, 200, 403]
        assert got_explain == got_run
        # and from an untrusted peer a spoofed X-Forwarded-For decides nothing: 403
        res = ex.explain("GET", "http://depth.test/", [("X-Forwarded-For", "192.0.2.7")],
                         client_ip="10.9.9.9")
        assert res["status"] == 403
    finally:
        proxy.stop()
        be.close()


HEADERS_EXPLAIN = """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: cors, namespace: default}
spec:
  headers:
    accessControlAllowOriginList: ["https://a.example"]
    accessControlAllowMethods: [GET]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: hosts, namespace: default}
spec:
  headers:
    allowedHosts: [ok.test]
    hostsProxyHeaders: [X-Forwarded-Host]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: PathPrefix(`/cors`)
      kind: Rule
      middlewares: [{name: cors}]
      services: [{name: svc, port: 80}]
    - match: PathPrefix(`/hosts`)
      kind: Rule
      middlewares: [{name: hosts}]
      services: [{name: svc, port: 80}]
"""


def test_explain_runs_the_headers_middleware_and_agrees_with_run(tmp_path):
    # the CORS preflight pyroute answers itself and the allowedHosts refusal, decided by the
    # same middleware objects as `pyroute run`, the proxy header trusted from trusted peers only
    from e2e_backend import Backend
    from e2e_support import Pyroute, backend_service, request
    be = Backend("a")
    proxy = Pyroute(tmp_path, backend_service("svc", [be.port]) + "---\n" + HEADERS_EXPLAIN,
                    workers=1, trusted=("127.0.0.1",))
    preflight = [("Origin", "https://a.example"), ("Access-Control-Request-Method", "GET")]
    cases = [
        ("OPTIONS", "x.test", "/cors", preflight),                      # 200, answered
        ("OPTIONS", "x.test", "/cors", preflight[:1]),                  # forwarded
        ("GET", "ok.test", "/hosts", []),                               # forwarded
        ("GET", "bad.test", "/hosts", []),                              # 500 Bad Host
        ("GET", "bad.test", "/hosts", [("X-Forwarded-Host", "ok.test")]),  # trusted: forwarded
    ]
    try:
        proxy.start()
        ex = Explainer(manifests.load([str(proxy.mdir)], manifests_static(str(proxy.static))))
        got_run, got_explain = [], []
        for method, host, target, hdrs in cases:
            raw = ("%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
                method, target, host, "".join("%s: %s\r\n" % h for h in hdrs))).encode()
            got_run.append(request(proxy.port, raw)[0])
            res = ex.explain(method, "http://%s%s" % (host, target), hdrs,
                             client_ip="127.0.0.1")
            got_explain.append(res["status"] or 200)
            if res["status"]:
                assert "middleware" in res["notes"][-1]
        assert got_run == [200, 200, 200, 500, 200]
        assert got_explain == got_run
        res = ex.explain("OPTIONS", "http://x.test/cors", preflight, client_ip="127.0.0.1")
        assert "CORS preflight" in res["notes"][-1]
        # an untrusted peer's X-Forwarded-Host is not its Host
        res = ex.explain("GET", "http://bad.test/hosts", [("X-Forwarded-Host", "ok.test")],
                         client_ip="10.9.9.9")
        assert res["status"] == 500 and "bad.test is not in allowedHosts" in res["notes"][-1]
    finally:
        proxy.stop()
        be.close()
