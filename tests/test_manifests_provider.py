"""The Kubernetes CRD provider's options and resolution details, as Traefik v3.7 has them.

Ported by hand: traefik ``pkg/provider/kubernetes/crd/kubernetes_test.go``
TestCrossProviderNamespaces_HTTP* (their fixtures are in tests/data/traefik_crd/fixtures).
The rest are pyroute's own cases for what the provider's code does (kubernetes.go,
kubernetes_http.go): namespace isolation of chains, Secret decoding, defaults, nodePortLB.
"""
import base64
import json
import os
import subprocess
import sys

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, get
from manifests_util import errors, load, router, service, services, static, write
from pyroute import manifests, tls

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "traefik_crd", "fixtures")


def _runs(kind):
    """A Middleware's status: "enabled" when pyroute runs its kind, else "disabled" (with
    "middleware kind ... is not supported by pyroute yet", as ``check --dump`` shows it)."""
    from pyroute.middlewares import KINDS
    return "enabled" if kind in KINDS else "disabled"


def load_fixtures(names, **crd):
    return manifests.load([os.path.join(FIXTURES, n) for n in names], static(**crd))


def b64(text):
    return base64.b64encode(text.encode()).decode()


# -- crossProviderNamespaces (TestCrossProviderNamespaces_HTTP*) -----------------------------

CPN = [None, [], ["default"], ["other"]]


@pytest.mark.parametrize("allowed", CPN, ids=["unset", "empty", "default", "other"])
def test_cross_provider_middleware_refs(allowed):
    crd = {"allowCrossNamespace": True}
    if allowed is not None:
        crd["crossProviderNamespaces"] = allowed
    rc = load_fixtures(["services.yml", "with_middleware_cross_provider.yml"], **crd)
    r = rc.dynamic["http"]["routers"]["default-test2-route-23c7f4c450289ee29016@kubernetescrd"]
    if allowed is None or "default" in allowed:
        assert r["middlewares"] == ["default-stripprefix@kubernetescrd",
                                    "foo-addprefix@kubernetescrd", "basicauth@file",
                                    "redirect@file"]
    else:
        # Traefik drops the route; pyroute keeps it disabled, with the reason
        assert r["status"] == "disabled"
        assert "'default' is not in crossProviderNamespaces" in r["error"][0]
        assert not [n for n in services(rc) if n.startswith("default-test2-route-")]


@pytest.mark.parametrize("allowed,mirror,weighted", [
    (None, True, True), ([], False, False), (["foo"], True, False), (["bar"], False, True)])
def test_cross_provider_service_refs_in_traefik_services(allowed, mirror, weighted):
    crd = {"allowCrossNamespace": True}
    if allowed is not None:
        crd["crossProviderNamespaces"] = allowed
    rc = load_fixtures(["services.yml", "with_service_cross_provider.yml"], **crd)
    svcs = services(rc)
    for name, want in (("foo-mirror-cp@kubernetescrd", mirror),
                       ("bar-weighted-cp@kubernetescrd", weighted)):
        # Traefik drops a TraefikService it cannot build; pyroute keeps it disabled with the
        # reason (an allowed one is built, then disabled at runtime: pyroute has no @file
        # services)
        refused = any("is not in crossProviderNamespaces" in e
                      for e in svcs[name].get("error", ()))
        assert refused is not want, (name, svcs[name])
        assert svcs[name]["status"] == "disabled"
        if want:
            assert "mirroring" in svcs[name] or "weighted" in svcs[name]


@pytest.mark.parametrize("allowed", CPN, ids=["unset", "empty", "default", "other"])
def test_cross_provider_tls_option_ref(allowed):
    crd = {"allowCrossNamespace": True}
    if allowed is not None:
        crd["crossProviderNamespaces"] = allowed
    rc = load_fixtures(["services.yml", "with_tls_option_cross_provider.yml"], **crd)
    name = "default-test-route-6b204d94623b3df4370c@kubernetescrd"
    r = rc.dynamic["http"]["routers"][name]
    if allowed is None or "default" in allowed:
        assert r["tls"]["options"] == "foo@file"
        assert name not in rc.dropped_routers
    else:
        assert r["status"] == "disabled"
        assert r["error"][0].startswith("Invalid reference to TLSOption foo@file: ")
        assert name in rc.dropped_routers


@pytest.mark.parametrize("allowed", CPN, ids=["unset", "empty", "default", "other"])
def test_cross_provider_servers_transport_ref(allowed):
    crd = {"allowCrossNamespace": True}
    if allowed is not None:
        crd["crossProviderNamespaces"] = allowed
    rc = load_fixtures(["services.yml", "with_servers_transport_cross_provider.yml"], **crd)
    svc = services(rc).get("default-test-route-6b204d94623b3df4370c@kubernetescrd")
    if allowed is None or "default" in allowed:
        assert svc["loadBalancer"]["serversTransport"] == "foo@file"
    else:
        assert svc is None          # dropped, and its route with it
        r = rc.dynamic["http"]["routers"]["default-test-route-6b204d94623b3df4370c@kubernetescrd"]
        assert r["status"] == "disabled"
        assert "serversTransport 'foo@file' reference is not allowed" in r["error"][0]


def test_static_file_options_reach_the_provider(tmp_path):
    path = tmp_path / "static.yaml"
    path.write_text("entryPoints: {web: {address: '127.0.0.1:8000'}}\n"
                    "providers:\n  kubernetesCRD:\n    crossProviderNamespaces: [team-a]\n"
                    "    disableClusterScopeResources: true\n    throttleDuration: 2s\n")
    from pyroute.static import load_static
    crd = load_static(str(path)).providers_crd
    assert crd.cross_provider_namespaces == ("team-a",)
    assert crd.disable_cluster_scope_resources is True
    assert crd.throttle_duration == 2.0
    assert static().providers_crd.cross_provider_namespaces is None   # Traefik's nil


# -- chains: namespace isolation and names (createChainMiddleware, resolveReference) --------

CHAIN = """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: chain, namespace: team-a}
spec:
  chain:
    middlewares:
      - {name: inject.token, namespace: team-b}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: inject.token, namespace: team-b}
spec:
  headers: {customRequestHeaders: {Authorization: Bearer team-b-secret}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app, namespace: team-a}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`)
      kind: Rule
      middlewares: [{name: chain}]
      services: [{name: whoami, port: 80}]
"""


def test_chain_member_in_another_namespace_is_refused_without_allow_cross_namespace(tmp_path):
    write(tmp_path, "a.yaml", CHAIN, service("whoami", ns="team-a"))
    rc = load(tmp_path)
    mws = rc.dynamic["http"]["middlewares"]
    chain = mws["team-a-chain@kubernetescrd"]
    assert chain["status"] == "disabled"
    assert "allowCrossNamespace is disabled, cross-namespace are disallowed" in chain["error"][0]
    _, r = router(rc, "team-a", "app", "Host(`a.example.com`)")
    assert r["status"] == "disabled"
    assert any("spec.chain.middlewares[0].namespace" in e for e in errors(rc))


def test_chain_member_names_are_normalised(tmp_path):
    write(tmp_path, "a.yaml", CHAIN, service("whoami", ns="team-a"))
    rc = load(tmp_path, allowCrossNamespace=True)
    chain = rc.dynamic["http"]["middlewares"]["team-a-chain@kubernetescrd"]
    # Traefik v3.7: provider.Normalize(ns + "-" + name), as the middleware's own key
    assert chain["chain"] == {"middlewares": ["team-b-inject-token@kubernetescrd"]}
    assert "team-b-inject-token@kubernetescrd" in rc.dynamic["http"]["middlewares"]
    _, r = router(rc, "team-a", "app", "Host(`a.example.com`)")
    # Traefik's provider builds it; pyroute disables what it cannot run (yet), and says so
    assert chain["status"] == r["status"] == _runs("chain"), (chain, r)


def test_chain_kubernetescrd_reference_refused_without_allow_cross_namespace(tmp_path):
    write(tmp_path, "a.yaml", CHAIN.replace("{name: inject.token, namespace: team-b}",
                                            "{name: team-b-inject-token@kubernetescrd}"),
          service("whoami", ns="team-a"))
    chain = load(tmp_path).dynamic["http"]["middlewares"]["team-a-chain@kubernetescrd"]
    assert chain["status"] == "disabled"
    assert "@kubernetescrd references are disallowed" in chain["error"][0]


@pytest.fixture
def chain_proxy(tmp_path):
    be = Backend("team-a")
    proxy = Pyroute(tmp_path, backend_service("whoami", [be.port], namespace="team-a") +
                    "---\n" + CHAIN.replace("inject.token", "inject-token"))
    proxy.start()
    yield proxy, be
    proxy.stop()
    be.close()


def test_a_tenant_cannot_borrow_another_namespace_s_middleware_through_a_chain(chain_proxy):
    # (pyroute serves chains: the 404 is the isolation's, see test_e2e_mw_paths for a chain
    # that is allowed across namespaces)
    # the attack: team-a's chain pulls in team-b's headers middleware, which injects team-b's
    # credentials into team-a's backend. Without allowCrossNamespace Traefik drops the chain,
    # so the router has no middleware to run and is not served.
    proxy, be = chain_proxy
    status, _, _ = get(proxy.port, "/", "a.example.com")
    assert status == 404
    assert be.requests == []


# -- Secrets ---------------------------------------------------------------------------------

def test_secret_data_wrapped_over_lines_is_decoded_as_go_does(tmp_path):
    users = b64("alice:$apr1$x$y\nbob:$apr1$z$w\n")
    wrapped = "\n".join(users[i:i + 8] for i in range(0, len(users), 8))
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: auth}
spec:
  basicAuth: {secret: users}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: digest}
spec:
  digestAuth: {secret: users}
---
apiVersion: v1
kind: Secret
metadata: {name: users}
data:
  users: |
%s
""" % "\n".join("    " + line for line in wrapped.splitlines()))
    rc = load(tmp_path)
    mws = rc.dynamic["http"]["middlewares"]
    assert mws["default-auth@kubernetescrd"]["basicAuth"]["users"] == ["alice:$apr1$x$y",
                                                                       "bob:$apr1$z$w"]
    # the same lines read by digestAuth: decoded alike, but "name:hash" is no digest line
    # (Traefik's digestUserParser wants name:realm:HA1), so that middleware is refused
    assert mws["default-digest@kubernetescrd"]["digestAuth"]["users"] == ["alice:$apr1$x$y",
                                                                         "bob:$apr1$z$w"]
    assert mws["default-digest@kubernetescrd"]["status"] == "disabled"
    assert [e for e in errors(rc) if "base64" in e] == []
    assert any("Middleware default/digest: spec.digestAuth.users: error parsing DigestUser: "
               "alice:$apr1$x$y" in e for e in errors(rc)), errors(rc)


def test_rate_limit_redis_reads_its_secrets_and_gets_traefik_s_defaults(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: rl}
spec:
  rateLimit:
    average: 10
    redis:
      secret: creds
      tls: {caSecret: ca, certSecret: client}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {username: %s, password: %s}
---
apiVersion: v1
kind: Secret
metadata: {name: ca}
data: {ca.crt: %s}
---
apiVersion: v1
kind: Secret
metadata: {name: client}
data: {tls.crt: %s, tls.key: %s}
""" % (b64("redis-user"), b64("s3cret"), b64("CA"), b64("CERT"), b64("KEY")))
    rc = load(tmp_path)
    rl = rc.dynamic["http"]["middlewares"]["default-rl@kubernetescrd"]["rateLimit"]
    assert rl == {"average": 10, "burst": 1, "period": "1s", "redis": {
        "endpoints": ["localhost:6379"], "username": "redis-user", "password": "s3cret",
        "tls": {"insecureSkipVerify": False, "ca": "CA", "cert": "CERT", "key": "KEY"},
        "dialTimeout": "5s", "readTimeout": "3s", "writeTimeout": "3s"}}


def test_rate_limit_redis_secret_without_password_drops_the_middleware(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: rl}
spec:
  rateLimit: {redis: {secret: creds}}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {username: %s}
""" % b64("u"))
    mw = load(tmp_path).dynamic["http"]["middlewares"]["default-rl@kubernetescrd"]
    assert mw["status"] == "disabled"
    assert mw["error"] == ["secret 'default/creds' must contain both username and password keys"]


# -- defaults the provider fills in ----------------------------------------------------------

def test_middleware_defaults_as_the_provider_sets_them(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: fa}
spec:
  forwardAuth: {address: "http://auth.example"}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: retry}
spec:
  retry: {attempts: 3, status: ["500-599"]}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: gz}
spec:
  compress: {minResponseBodyBytes: 100}
""")
    mws = load(tmp_path).dynamic["http"]["middlewares"]
    assert mws["default-fa@kubernetescrd"]["forwardAuth"] == {
        "address": "http://auth.example", "maxBodySize": -1}
    assert mws["default-retry@kubernetescrd"]["retry"] == {
        "attempts": 3, "status": ["500-599"], "initialInterval": "0s", "timeout": "0s",
        "maxRequestBodyBytes": 2097152}
    assert mws["default-gz@kubernetescrd"]["compress"] == {
        "minResponseBodyBytes": 100, "encodings": ["gzip", "br", "zstd"]}


def test_errors_middleware_backed_by_a_traefik_service(tmp_path):
    write(tmp_path, "a.yaml", service("pages"), """\
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: pages-wrr}
spec:
  weighted:
    services: [{name: pages, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: oops}
spec:
  errors:
    status: ["500-599"]
    query: /{status}.html
    service: {name: pages-wrr, kind: TraefikService}
""")
    rc = load(tmp_path)
    mw = rc.dynamic["http"]["middlewares"]["default-oops@kubernetescrd"]
    assert mw["errors"] == {"status": ["500-599"], "query": "/{status}.html",
                            "service": "default-pages-wrr"}
    assert mw["status"] == _runs("errors")
    assert "default-oops-errorpage-service@kubernetescrd" not in services(rc)


def test_two_kinds_in_one_middleware_are_kept_and_refused_by_the_runtime(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: two}
spec:
  stripPrefix: {prefixes: [/a]}
  addPrefix: {prefix: /b}
""")
    mw = load(tmp_path).dynamic["http"]["middlewares"]["default-two@kubernetescrd"]
    assert mw["stripPrefix"] == {"prefixes": ["/a"]} and mw["addPrefix"] == {"prefix": "/b"}
    assert mw["status"] == "disabled"


# -- services --------------------------------------------------------------------------------

def test_weighted_service_whose_child_names_a_missing_servers_transport_is_disabled(tmp_path):
    write(tmp_path, "a.yaml", service("whoami"), """\
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: wrr}
spec:
  weighted:
    services: [{name: whoami, port: 80, serversTransport: nowhere}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`)
      kind: Rule
      services: [{name: wrr, kind: TraefikService}]
""")
    rc = load(tmp_path)
    svcs = services(rc)
    assert svcs["default-whoami-80@kubernetescrd"]["status"] == "disabled"
    assert svcs["default-wrr@kubernetescrd"]["status"] == "disabled"
    assert svcs["default-wrr@kubernetescrd"]["error"] == [
        "the service 'default-whoami-80@kubernetescrd' is disabled"]
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "disabled"


NODEPORT = """\
apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  ports: [{name: http, port: 80, nodePort: 32080}]
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
status:
  addresses:
    - {type: Hostname, address: node-b}
    - {type: InternalIP, address: 10.1.0.2}
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
status:
  addresses: [{type: InternalIP, address: 10.1.0.1}, {type: ExternalIP, address: 203.0.113.1}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`)
      kind: Rule
      services: [{name: np, port: 80, nodePortLB: true}]
"""


def test_node_port_lb_serves_every_node_s_internal_ip(tmp_path):
    write(tmp_path, "a.yaml", NODEPORT)
    rc = load(tmp_path, namespaces=["default"])
    name, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "enabled"
    assert services(rc)[name]["loadBalancer"]["servers"] == [
        {"url": "http://10.1.0.1:32080"}, {"url": "http://10.1.0.2:32080"}]


def test_node_port_lb_without_cluster_scope_resources(tmp_path):
    write(tmp_path, "a.yaml", NODEPORT)
    rc = load(tmp_path, disableClusterScopeResources=True)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "disabled"
    assert "nodes lookup is disabled" in r["error"][0]
    write(tmp_path, "a.yaml", NODEPORT.split("---\napiVersion: v1\nkind: Node")[0] +
          NODEPORT.split("status:\n  addresses: [{type: InternalIP, address: 10.1.0.1}, "
                         "{type: ExternalIP, address: 203.0.113.1}]\n")[1])
    _, r = router(load(tmp_path), "default", "app", "Host(`a.example.com`)")
    assert "nodes not found for NodePort service default/np" in r["error"][0]


# -- TLS: which routers map their hosts to their option --------------------------------------

TLS_ROUTES = """\
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: strict}
spec: {minVersion: VersionTLS13}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: plain}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`shop.example.com`)
      kind: Rule
      services: [{name: whoami, port: 80}]
  tls: {}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: broken}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`shop.example.com`) && PathPrefix(`/x`)
      kind: Rule
      middlewares: [{name: mw, namespace: elsewhere}]
      services: [{name: whoami, port: 80}]
  tls: {options: {name: strict}}
"""


def test_a_router_the_provider_drops_maps_no_host_to_its_tls_option(tmp_path):
    # "broken" names a middleware of another namespace: Traefik's provider drops the route,
    # so only "plain" (default option) claims shop.example.com: no conflict, no default
    # fallback, nothing reported
    write(tmp_path, "a.yaml", TLS_ROUTES, service("whoami"))
    rc = load(tmp_path)
    name, r = router(rc, "default", "broken", "Host(`shop.example.com`) && PathPrefix(`/x`)")
    assert r["status"] == "disabled" and name in rc.dropped_routers
    cfg = tls.TLSConfig.from_runtime(rc)["web"]
    assert cfg.host_options == {"shop.example.com": "default"}
    assert not [e for e in rc.errors if "different TLS options" in e.message]
    from pyroute.manifests.analysis import analyse
    assert not [e for e in analyse(rc) if "different TLS options" in e.message]


def test_a_router_the_runtime_disables_still_maps_its_hosts(tmp_path):
    # a missing middleware in the router's own namespace: the provider keeps the route, the
    # runtime disables it, and Traefik's TLS manager still reads its hosts: a conflict
    write(tmp_path, "a.yaml", TLS_ROUTES.replace("{name: mw, namespace: elsewhere}",
                                                 "{name: mw}"), service("whoami"))
    rc = load(tmp_path)
    name = manifests.qualified(manifests.router_name(
        "default", "broken", "Host(`shop.example.com`) && PathPrefix(`/x`)"))
    # Traefik v3.7 resolveHTTPTLSOptions: both routers of the conflict become
    # web-conflicted-* copies whose option is the default one
    copy = "web-conflicted-" + name
    r = rc.dynamic["http"]["routers"][copy]
    assert r["status"] == "disabled" and name not in rc.dropped_routers
    assert name not in rc.dynamic["http"]["routers"]
    assert len(rc.conflicted_routers) == 2 and copy in rc.conflicted_routers
    cfg = tls.TLSConfig.from_runtime(rc)["web"]
    assert cfg.host_options == {"shop.example.com": "default"}
    assert set(cfg.router_options.values()) == {"default"}


# -- --dump through the command line ---------------------------------------------------------

def test_check_dump_shows_the_nodeport_servers(tmp_path):
    write(tmp_path, "a.yaml", NODEPORT)
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "--dump", str(tmp_path)],
                         capture_output=True, text=True)
    dump = json.loads(out.stdout)
    name = manifests.qualified(manifests.router_name("default", "app", "Host(`a.example.com`)"))
    assert [s["url"] for s in dump["http"]["services"][name]["loadBalancer"]["servers"]] == [
        "http://10.1.0.1:32080", "http://10.1.0.2:32080"]


def test_node_port_lb_end_to_end(tmp_path):
    # a request through a nodePortLB route reaches <node InternalIP>:<nodePort>
    be = Backend("node")
    m = """\
apiVersion: v1
kind: Service
metadata: {name: np, namespace: default}
spec:
  type: NodePort
  ports: [{name: http, port: 80, nodePort: %d}]
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status:
  addresses: [{type: InternalIP, address: 127.0.0.1}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.test`)
      kind: Rule
      services: [{name: np, port: 80, nodePortLB: true}]
""" % be.port
    proxy = Pyroute(tmp_path, m)
    try:
        proxy.start()
        status, _, body = get(proxy.port, "/hello", "a.test")
        assert status == 200, proxy.output()
        assert json.loads(body)["backend"] == "node"
        assert [r[1] for r in be.requests] == ["/hello"]
    finally:
        proxy.stop()
        be.close()


# -- ServersTransport: TLS versions and suites, verifications pyroute lacks ------------------

TRANSPORT = """\
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: st}
spec:
%s
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`)
      kind: Rule
      services: [{name: whoami, port: 80, serversTransport: st}]
"""


def test_servers_transport_versions_and_suites_as_traefik_checks_them(tmp_path):
    write(tmp_path, "a.yaml", TRANSPORT % "  minVersion: VersionTLS13\n"
          "  cipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]", service("whoami"))
    st = load(tmp_path).dynamic["http"]["serversTransports"]["default-st@kubernetescrd"]
    assert st["minVersion"] == "VersionTLS13"
    assert st["cipherSuites"] == ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    write(tmp_path, "a.yaml", TRANSPORT % "  minVersion: VersionTLS13\n"
          "  maxVersion: VersionTLS12\n  cipherSuites: [TLS_NOPE]", service("whoami"))
    rc = load(tmp_path)
    st = rc.dynamic["http"]["serversTransports"]["default-st@kubernetescrd"]
    assert st["minVersion"] == "VersionTLS12" and "maxVersion" not in st
    assert "cipherSuites" not in st
    assert any("cipher suite not supported: TLS_NOPE" in e for e in errors(rc))
    assert any("above or equal to the MaxVersion" in e for e in errors(rc))


# (peerCertURI is verified: tests/test_e2e_service_fidelity.py)
@pytest.mark.parametrize("field,spec", [
    ("peerCertSANs", "  peerCertSANs: [{type: DNSName, value: backend.internal}]"),
    ("spiffe", "  spiffe: {ids: [spiffe://example.org/backend]}"),
])
def test_a_transport_verification_pyroute_lacks_is_never_skipped(tmp_path, field, spec):
    write(tmp_path, "a.yaml", TRANSPORT % spec, service("whoami"))
    rc = load(tmp_path)
    name, r = router(rc, "default", "app", "Host(`a.example.com`)")
    svc = services(rc)[name]
    assert svc["status"] == "disabled"
    assert "sets %s, which pyroute does not verify yet" % field in svc["error"][0]
    assert r["status"] == "disabled"


def test_servers_transport_min_version_is_enforced_end_to_end(tmp_path):
    import ssl
    import trustme
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("backend.internal").configure_cert(ctx)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2          # a backend stuck on TLS 1.2
    be = Backend("tls12", tls=ctx)
    ca_pem = base64.b64encode(ca.cert_pem.bytes()).decode()
    m = """\
apiVersion: v1
kind: Service
metadata: {name: secure, namespace: default}
spec:
  ports: [{name: https, port: 443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: secure-1
  namespace: default
  labels: {kubernetes.io/service-name: secure}
addressType: IPv4
ports: [{name: https, port: %d}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: v1
kind: Secret
metadata: {name: ca, namespace: default}
data: {ca.crt: %s}
""" % (be.port, ca_pem)
    # both with a maxVersion: Traefik's transport manager refuses a minVersion without one
    # (it compares it with the unset maxVersion's 0; tests/test_verdict.py)
    for name, version in (("v12", "VersionTLS12"), ("v13", "VersionTLS13")):
        m += """---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: %s, namespace: default}
spec:
  serverName: backend.internal
  rootCAs: [{secret: ca}]
  minVersion: %s
  maxVersion: VersionTLS13
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: %s, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`%s.test`)
      kind: Rule
      services: [{name: secure, port: 443, serversTransport: %s}]
""" % (name, version, name, name, name)
    proxy = Pyroute(tmp_path, m)
    try:
        proxy.start()
        assert get(proxy.port, "/", "v12.test")[0] == 200, proxy.output()
        # minVersion TLS 1.3 = maxVersion: Traefik's provider falls back to minVersion
        # VersionTLS12 without a maximum, which its transport manager then refuses (min above
        # the unset max): the transport is dropped, its routers disabled, never served weaker
        assert get(proxy.port, "/", "v13.test")[0] == 404
        assert "TLS minimum version VersionTLS12 is above the maximum version" in \
            proxy.output()
    finally:
        proxy.stop()
        be.close()


# -- ingress class, TLS stores ----------------------------------------------------------------

def test_ingress_class_name_wins_over_the_deprecated_annotation(tmp_path):
    write(tmp_path, "a.yaml", service("whoami"), """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: empty-class
  annotations: {kubernetes.io/ingress.class: internal}
spec:
  ingressClassName: ""
  entryPoints: [web]
  routes: [{match: Host(`a.example.com`), kind: Rule, services: [{name: whoami, port: 80}]}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: annotated
  annotations: {kubernetes.io/ingress.class: internal}
spec:
  entryPoints: [web]
  routes: [{match: Host(`b.example.com`), kind: Rule, services: [{name: whoami, port: 80}]}]
""")
    def names(rc):
        return sorted(n.split("-")[1] for n in rc.dynamic["http"]["routers"])
    # spec.ingressClassName "" is the class, the annotation is not looked at (Traefik
    # getIngressClassName): only the annotated one belongs to "internal"
    assert names(load(tmp_path, ingressClass="internal")) == ["annotated"]
    rc = load(tmp_path)
    assert names(rc) == ["empty"]
    assert any("deprecated annotation" in e for e in errors(rc, "warning"))


def test_a_tls_store_certificate_that_cannot_be_read_is_skipped(tmp_path):
    from manifests_util import tls_secret
    write(tmp_path, "a.yaml", tls_secret("good"), """\
apiVersion: traefik.io/v1alpha1
kind: TLSStore
metadata: {name: default}
spec:
  certificates: [{secretName: missing}, {secretName: good}]
""")
    rc = load(tmp_path)
    assert "default" in rc.dynamic["tls"]["stores"]
    assert rc.dynamic["tls"]["certificates"] == [
        {"certFile": "CERT", "keyFile": "KEY", "stores": ["default"]}]
    assert any("Unable to read certificate secret default/missing" in e for e in errors(rc))


def test_service_middlewares_are_relative_to_the_service_s_namespace(tmp_path):
    # Traefik buildServersLB: makeMiddlewareKeys(svc.Namespace, ...), the Service's namespace
    write(tmp_path, "a.yaml", service("whoami", ns="backend"), """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app, namespace: front}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`)
      kind: Rule
      services: [{name: whoami, namespace: backend, port: 80, middlewares: [{name: strip}]}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: strip, namespace: backend}
spec: {stripPrefix: {prefixes: [/api]}}
""")
    rc = load(tmp_path, allowCrossNamespace=True)
    name, r = router(rc, "front", "app", "Host(`a.example.com`)")
    assert services(rc)[name]["middlewares"] == ["backend-strip@kubernetescrd"]
    assert r["status"] == "enabled"


def test_an_endpointslice_port_without_a_name_matches_no_service_port(tmp_path):
    # Traefik: p.Name != nil && svcPort.Name == *p.Name
    write(tmp_path, "a.yaml", """\
apiVersion: v1
kind: Service
metadata: {name: whoami}
spec:
  ports: [{port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: whoami-1
  labels: {kubernetes.io/service-name: whoami}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: ["10.0.0.1"]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: whoami-2
  labels: {kubernetes.io/service-name: whoami}
addressType: IPv4
ports: [{name: "", port: 9090}]
endpoints: [{addresses: ["10.0.0.2"]}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`)
      kind: Rule
      services: [{name: whoami, port: 80}]
""")
    rc = load(tmp_path)
    name, _ = router(rc, "default", "app", "Host(`a.example.com`)")
    assert services(rc)[name]["loadBalancer"]["servers"] == [{"url": "http://10.0.0.2:9090"}]


def test_multiple_endpoint_addresses():
    # TestLoadIngressRoutes_multipleEndpointAddresses: every address of every slice, once
    # (Traefik compares them as a set)
    rc = load_fixtures(["services.yml", "with_multiple_endpointslices.yml"])
    svc = services(rc)["default-test-route-6b204d94623b3df4370c@kubernetescrd"]
    assert sorted(s["url"] for s in svc["loadBalancer"]["servers"]) == [
        "http://10.10.0.3:8080", "http://10.10.0.4:8080", "http://10.10.0.5:8080",
        "http://10.10.0.6:8080"]
    assert svc["status"] == "enabled"
