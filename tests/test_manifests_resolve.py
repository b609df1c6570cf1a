"""Resolution as Traefik's Kubernetes CRD provider does it: names, services, endpoints, TLS..."""
import base64

import pytest

from manifests_util import errors, load, router, service, services, tls_secret, write
from pyroute import manifests
from pyroute.manifests.names import format_duration, normalize

ROUTE = """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: %(name)s, namespace: %(ns)s}
spec:
  entryPoints: [web]
  routes:
    - match: %(match)s
      kind: Rule
      services:
%(services)s
"""


def route(name="app", ns="default", match="Host(`a.example.com`)",
          services="        - {name: whoami, port: 80}"):
    return ROUTE % {"name": name, "ns": ns, "match": match, "services": services}


# -- names ------------------------------------------------------------------------------------

def test_router_names_match_traefiks_own_integration_data():
    # traefik integration/testdata/rawdata-crd.json: IngressRoute "test.route" in "default"
    assert manifests.router_name("default", "test.route", "Host(`foo.com`) && PathPrefix(`/bar`)") \
        == "default-test-route-6b204d94623b3df4370c"
    assert manifests.router_name("default", "test2.route",
                                 "Host(`foo.com`) && PathPrefix(`/tobestripped`)") \
        == "default-test2-route-23c7f4c450289ee29016"


def test_normalize_is_traefiks_provider_normalize():
    assert normalize("default-test.route-abc") == "default-test-route-abc"
    assert normalize("--a__b..c--") == "a-b-c"
    assert normalize("café-ü") == "café-ü"   # unicode letters are kept, like Go's IsLetter


def test_qualified_names():
    assert manifests.qualified("default-x") == "default-x@kubernetescrd"
    assert manifests.qualified("x@file") == "x@file"


def test_go_duration_format():
    assert [format_duration(s) for s in (0, 0.1, 1.5, 90, 3600, 0.000001)] == \
        ["0s", "100ms", "1.5s", "1m30s", "1h0m0s", "1µs"]


# -- one service, Service -> EndpointSlice ----------------------------------------------------

def test_single_service_route_gets_a_load_balancer_named_after_the_router(tmp_path):
    write(tmp_path, "a.yaml", route(), service("whoami", addresses=("10.0.0.1", "10.0.0.2")))
    rc = load(tmp_path)
    assert errors(rc) == []
    name, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "enabled"
    assert r["entryPoints"] == ["web"]
    assert r["service"] == name.split("@")[0]
    lb = services(rc)[name]["loadBalancer"]
    assert lb["servers"] == [{"url": "http://10.0.0.1:8080"}, {"url": "http://10.0.0.2:8080"}]
    assert lb["passHostHeader"] is True
    assert lb["strategy"] == "wrr"
    assert lb["responseForwarding"] == {"flushInterval": "100ms"}


def test_port_by_name_uses_the_endpointslice_port_of_the_same_name(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - {name: whoami, port: web}"),
          service("whoami", port=80, port_name="web", target=9000))
    rc = load(tmp_path)
    name, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert services(rc)[name]["loadBalancer"]["servers"] == [{"url": "http://10.0.0.1:9000"}]


def test_unknown_port_disables_the_router_with_the_field_and_line(tmp_path):
    write(tmp_path, "a.yaml", route(services="        - {name: whoami, port: 81}"),
          service("whoami"))
    rc = load(tmp_path)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "disabled"
    errs = errors(rc)
    assert len(errs) == 1
    assert errs[0].startswith("%s:10: IngressRoute default/app: spec.routes[0].services[0].port: "
                              "service port not found: 81" % (tmp_path / "a.yaml"))


def test_missing_service_is_an_error_and_other_routes_still_serve(tmp_path):
    write(tmp_path, "a.yaml",
          route(name="broken", services="        - {name: nope, port: 80}"),
          route(name="fine", match="Host(`b.example.com`)"),
          service("whoami"))
    rc = load(tmp_path)
    _, broken = router(rc, "default", "broken", "Host(`a.example.com`)")
    _, fine = router(rc, "default", "fine", "Host(`b.example.com`)")
    assert broken["status"] == "disabled"
    assert "kubernetes service not found: default/nope" in broken["error"][0]
    assert fine["status"] == "enabled"
    assert any("spec.routes[0].services[0].name: kubernetes service not found" in e
               for e in errors(rc))


@pytest.mark.parametrize("port,port_name,scheme,want", [
    (443, "web", None, "https"),
    (80, "https-api", None, "https"),
    (80, "web", None, "http"),
    (80, "web", "h2c", "h2c"),
    (443, "web", "http", "http"),
])
def test_scheme_from_the_port_or_the_scheme_field(tmp_path, port, port_name, scheme, want):
    extra = ", scheme: %s" % scheme if scheme else ""
    write(tmp_path, "a.yaml",
          route(services="        - {name: whoami, port: %d%s}" % (port, extra)),
          service("whoami", port=port, port_name=port_name, target=8443))
    rc = load(tmp_path)
    name, _ = router(rc, "default", "app", "Host(`a.example.com`)")
    assert services(rc)[name]["loadBalancer"]["servers"][0]["url"] == want + "://10.0.0.1:8443"


def test_invalid_scheme_is_an_error(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - {name: whoami, port: 80, scheme: ftp}"), service("whoami"))
    rc = load(tmp_path)
    assert any("services[0].scheme: invalid scheme 'ftp'" in e for e in errors(rc))


def test_endpoint_conditions_ready_serving_terminating(tmp_path):
    write(tmp_path, "a.yaml", route(), """\
apiVersion: v1
kind: Service
metadata: {name: whoami}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: whoami-1
  labels: {kubernetes.io/service-name: whoami}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - addresses: ["10.0.0.1"]
    conditions: {ready: true}
  - addresses: ["10.0.0.2"]
    conditions: {ready: false, serving: true, terminating: true}
  - addresses: ["10.0.0.3"]
    conditions: {ready: false, serving: false, terminating: true}
  - addresses: ["10.0.0.4"]
  - addresses: ["10.0.0.1"]
    conditions: {ready: true}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: whoami-2
  labels: {kubernetes.io/service-name: whoami}
addressType: IPv4
ports: [{name: other, port: 9999}]
endpoints:
  - addresses: ["10.0.0.9"]
    conditions: {ready: true}
""")
    rc = load(tmp_path)
    name, _ = router(rc, "default", "app", "Host(`a.example.com`)")
    # Traefik >= v3.6.7 ("Fix condition used for serving and fenced endpoints"): serving decides,
    # an unset condition counts as true (ptr.Deref(Serving, true)); terminating -> fenced;
    # serving false -> left out; addresses are deduplicated; a slice without the service's
    # port name contributes nothing.
    assert services(rc)[name]["loadBalancer"]["servers"] == [
        {"url": "http://10.0.0.1:8080"}, {"url": "http://10.0.0.2:8080", "fenced": True},
        {"url": "http://10.0.0.4:8080"}]


def test_endpoints_object_is_used_when_there_is_no_endpointslice(tmp_path):
    write(tmp_path, "a.yaml", route(), """\
apiVersion: v1
kind: Service
metadata: {name: whoami}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: whoami}
subsets:
  - addresses: [{ip: 10.1.0.1}, {ip: "fd00::1"}]
    notReadyAddresses: [{ip: 10.1.0.2}]
    ports: [{name: http, port: 8080}]
""")
    rc = load(tmp_path)
    name, _ = router(rc, "default", "app", "Host(`a.example.com`)")
    assert services(rc)[name]["loadBalancer"]["servers"] == [
        {"url": "http://10.1.0.1:8080"}, {"url": "http://[fd00::1]:8080"}]


def test_service_without_endpoints_is_an_error_unless_allow_empty_services(tmp_path):
    write(tmp_path, "a.yaml", route(), service("whoami", addresses=()).replace(
        "endpoints:\n", "endpoints: []\n"))
    rc = load(tmp_path)
    assert any("no servers found for default/whoami" in e for e in errors(rc))
    rc = load(tmp_path, allowEmptyServices=True)
    assert errors(rc) == []
    name, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "enabled"
    assert services(rc)[name]["loadBalancer"]["servers"] == []
    assert any("has no servers" in w for w in errors(rc, "warning"))


def test_external_name_service_only_when_allowed(tmp_path):
    write(tmp_path, "a.yaml", route(services="        - {name: ext, port: 443}"), """\
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: api.example.org
  ports: [{name: https, port: 443}]
""")
    rc = load(tmp_path)
    assert any("externalName services not allowed: default/ext" in e for e in errors(rc))
    rc = load(tmp_path, allowExternalNameServices=True)
    name, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "enabled"
    assert services(rc)[name]["loadBalancer"]["servers"] == [{"url": "https://api.example.org:443"}]


def test_native_lb_uses_the_cluster_ip_and_refuses_headless(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - {name: whoami, port: 80, nativeLB: true}"),
          service("whoami").replace("spec:\n", "spec:\n  clusterIP: 10.96.0.10\n", 1),
          route(name="headless", match="Host(`h.example.com`)",
                services="        - {name: hl, port: 80, nativeLB: true}"),
          service("hl").replace("spec:\n", "spec:\n  clusterIP: None\n", 1))
    rc = load(tmp_path)
    name, _ = router(rc, "default", "app", "Host(`a.example.com`)")
    assert services(rc)[name]["loadBalancer"]["servers"] == [{"url": "http://10.96.0.10:80"}]
    _, r = router(rc, "default", "headless", "Host(`h.example.com`)")
    assert r["status"] == "disabled"
    assert "no clusterIP on headless service: default/hl" in r["error"][0]


def test_native_lb_by_default_from_the_provider(tmp_path):
    write(tmp_path, "a.yaml", route(),
          service("whoami").replace("spec:\n", "spec:\n  clusterIP: 10.96.0.10\n", 1))
    rc = load(tmp_path, nativeLBByDefault=True)
    name, _ = router(rc, "default", "app", "Host(`a.example.com`)")
    assert services(rc)[name]["loadBalancer"]["servers"] == [{"url": "http://10.96.0.10:80"}]


# -- several services, TraefikService -----------------------------------------------------------

def test_several_services_make_a_weighted_service(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - {name: v1, port: 80, weight: 3}\n"
                         "        - {name: v2, port: 80}"),
          service("v1", addresses=("10.0.0.1",)), service("v2", addresses=("10.0.0.2",)))
    rc = load(tmp_path)
    name, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert services(rc)[name]["weighted"] == {"services": [{"name": "default-v1-80", "weight": 3},
                                                           {"name": "default-v2-80", "weight": 1}]}
    assert services(rc)["default-v1-80@kubernetescrd"]["loadBalancer"]["servers"] == \
        [{"url": "http://10.0.0.1:8080"}]


TRAEFIK_SERVICES = """\
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: wrr}
spec:
  weighted:
    services:
      - {name: v1, port: 80, weight: 2}
      - {name: mirror, kind: TraefikService, weight: 1}
    sticky:
      cookie: {name: lb}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: mirror}
spec:
  mirroring:
    name: v1
    port: 80
    mirrors:
      - {name: v2, port: 80, percent: 10}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: hrw}
spec:
  highestRandomWeight:
    services:
      - {name: v1, port: 80, weight: 10}
      - {name: v2, port: 80, weight: 20}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: fo}
spec:
  failover:
    service: {name: v1, port: 80}
    fallback: {name: wrr, kind: TraefikService}
    errors: {status: ["500-503"]}
"""


def test_traefik_service_trees(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - {name: wrr, kind: TraefikService}"),
          route(name="b", match="Host(`b.example.com`)",
                services="        - {name: fo, kind: TraefikService}"),
          TRAEFIK_SERVICES, service("v1"), service("v2", addresses=("10.0.0.2",)))
    rc = load(tmp_path)
    assert errors(rc) == []
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["service"] == "default-wrr"
    svcs = services(rc)
    assert svcs["default-wrr@kubernetescrd"]["weighted"] == {
        "services": [{"name": "default-v1-80", "weight": 2},
                     {"name": "default-mirror", "weight": 1}],
        "sticky": {"cookie": {"name": "lb", "path": "/"}}}
    assert svcs["default-mirror@kubernetescrd"]["mirroring"] == {
        "service": "default-v1-80", "mirrors": [{"name": "default-v2-80", "percent": 10}]}
    assert svcs["default-hrw@kubernetescrd"]["highestRandomWeight"]["services"] == [
        {"name": "default-v1-80", "weight": 10}, {"name": "default-v2-80", "weight": 20}]
    assert svcs["default-fo@kubernetescrd"]["failover"] == {
        "service": "default-v1-80", "fallback": "default-wrr", "errors": {"status": ["500-503"]}}


def test_missing_traefik_service_disables_the_router(tmp_path):
    write(tmp_path, "a.yaml", route(services="        - {name: nope, kind: TraefikService}"))
    rc = load(tmp_path)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "disabled"
    assert r["error"] == ["the service 'default-nope@kubernetescrd' does not exist"]


def test_traefik_service_cycle_is_refused(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: a}
spec:
  weighted:
    services: [{name: b, kind: TraefikService}]
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: b}
spec:
  weighted:
    services: [{name: a, kind: TraefikService}]
""")
    rc = load(tmp_path)
    assert services(rc)["default-a@kubernetescrd"]["status"] == "disabled"
    assert any("reference cycle" in e for e in errors(rc))


# -- namespaces and providers ---------------------------------------------------------------

def test_cross_namespace_service_refused_unless_allowed(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - {name: whoami, namespace: other, port: 80}"),
          service("whoami", ns="other"))
    rc = load(tmp_path)
    assert any("spec.routes[0].services[0].namespace: service other/whoami not in the parent "
               "resource namespace default" in e for e in errors(rc))
    rc = load(tmp_path, allowCrossNamespace=True)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "enabled"


def test_middleware_references(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app}
spec:
  routes:
    - match: Host(`a.example.com`)
      middlewares:
        - name: strip
        - name: auth
          namespace: default
        - name: other-chain@kubernetescrd
      services: [{name: whoami, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: strip}
spec:
  stripPrefix: {prefixes: [/api]}
""", service("whoami"))
    rc = load(tmp_path)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    # name@kubernetescrd is refused without allowCrossNamespace (the namespace could be anything)
    assert r["status"] == "disabled"
    assert "@kubernetescrd references are disallowed" in r["error"][0]
    rc = load(tmp_path, allowCrossNamespace=True)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["middlewares"] == ["default-strip@kubernetescrd", "default-auth@kubernetescrd",
                                "other-chain@kubernetescrd"]
    assert r["status"] == "disabled"
    assert "middleware 'default-auth@kubernetescrd' does not exist" in r["error"]


def test_default_entry_points_and_unknown_entry_point(tmp_path):
    write(tmp_path, "a.yaml", route().replace("  entryPoints: [web]\n", ""),
          route(name="b", match="Host(`b.example.com`)").replace("[web]", "[nope]"),
          service("whoami"))
    rc = load(tmp_path)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["entryPoints"] == ["web", "websecure"]   # no asDefault: every entry point
    _, r = router(rc, "default", "b", "Host(`b.example.com`)")
    assert r["status"] == "disabled"
    assert any("entryPoint 'nope' doesn't exist" in e for e in errors(rc))


def test_ingress_class_filtering(tmp_path):
    write(tmp_path, "a.yaml",
          route(name="plain"),
          route(name="traefik", match="Host(`t.example.com`)").replace(
              "metadata: {name: traefik, namespace: default}",
              "metadata:\n  name: traefik\n  annotations: {kubernetes.io/ingress.class: traefik}"),
          route(name="internal", match="Host(`i.example.com`)").replace(
              "spec:\n", "spec:\n  ingressClassName: internal\n", 1),
          service("whoami"))
    names = lambda rc: sorted(n.split("-")[1] for n in rc.dynamic["http"]["routers"])  # noqa
    assert names(load(tmp_path)) == ["plain", "traefik"]
    assert names(load(tmp_path, ingressClass="internal")) == ["internal"]


def test_namespaces_and_label_selector(tmp_path):
    write(tmp_path, "a.yaml",
          route(name="a", ns="team-a"), service("whoami", ns="team-a"),
          route(name="b", ns="team-b").replace(
              "metadata: {name: b, namespace: team-b}",
              "metadata:\n  name: b\n  namespace: team-b\n  labels: {expose: public}"),
          service("whoami", ns="team-b"))
    rc = load(tmp_path, namespaces=["team-b"])
    assert [n.split("-")[2] for n in rc.dynamic["http"]["routers"]] == ["b"]
    rc = load(tmp_path, labelSelector="expose in (public, partner)")
    assert [n.split("-")[2] for n in rc.dynamic["http"]["routers"]] == ["b"]
    rc = load(tmp_path, labelSelector="!expose")
    assert [n.split("-")[2] for n in rc.dynamic["http"]["routers"]] == ["a"]


def test_servers_transport_reference_and_object(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - {name: whoami, port: 80, serversTransport: mtls}"),
          service("whoami"), tls_secret("client"), """\
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: mtls}
spec:
  serverName: backend.internal
  certificatesSecrets: [client]
  forwardingTimeouts: {dialTimeout: 5s}
""")
    rc = load(tmp_path)
    assert errors(rc) == []
    name, _ = router(rc, "default", "app", "Host(`a.example.com`)")
    # qualified, as in Traefik's API (integration/testdata/rawdata-crd.json)
    assert services(rc)[name]["loadBalancer"]["serversTransport"] == "default-mtls@kubernetescrd"
    st = rc.dynamic["http"]["serversTransports"]["default-mtls@kubernetescrd"]
    assert st["serverName"] == "backend.internal"
    assert st["certificates"] == [{"certFile": "CERT", "keyFile": "KEY"}]
    assert st["forwardingTimeouts"]["dialTimeout"] == "5s"
    assert st["forwardingTimeouts"]["idleConnTimeout"] == "1m30s"


# -- middlewares --------------------------------------------------------------------------------

def test_middleware_specs_secrets_and_chain(tmp_path):
    users = base64.b64encode(b"alice:$apr1$x$y\nbob:$apr1$z$w\n").decode()
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: auth}
spec:
  basicAuth: {secret: users, realm: demo}
---
apiVersion: v1
kind: Secret
metadata: {name: users}
data:
  users: %s
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: kauth}
spec:
  basicAuth: {secret: kubeauth}
---
apiVersion: v1
kind: Secret
metadata: {name: kubeauth}
type: kubernetes.io/basic-auth
stringData: {username: carol, password: secret}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: both}
spec:
  chain:
    middlewares: [{name: auth}, {name: kauth}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: two-kinds}
spec:
  addPrefix: {prefix: /a}
  stripPrefix: {prefixes: [/b]}
""" % users)
    rc = load(tmp_path)
    mws = rc.dynamic["http"]["middlewares"]
    assert mws["default-auth@kubernetescrd"]["basicAuth"] == {
        "users": ["alice:$apr1$x$y", "bob:$apr1$z$w"], "realm": "demo"}
    # kubernetes.io/basic-auth secrets become user:{SHA}base64(sha1(password))
    assert mws["default-kauth@kubernetescrd"]["basicAuth"]["users"] == [
        "carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="]
    assert mws["default-both@kubernetescrd"]["chain"]["middlewares"] == [
        "default-auth@kubernetescrd", "default-kauth@kubernetescrd"]
    # Traefik's provider keeps both kinds; its runtime refuses the Middleware
    two = mws["default-two-kinds@kubernetescrd"]
    assert two["addPrefix"] == {"prefix": "/a"} and two["stripPrefix"] == {"prefixes": ["/b"]}
    assert two["status"] == "disabled"
    assert two["error"] == ["cannot create middleware: multi-types middleware not supported, "
                            "consider declaring two different pieces of middleware instead"]
    assert any("multi-types middleware not supported" in e and
               "(found addPrefix, stripPrefix)" in e for e in errors(rc))


def test_errors_middleware_builds_its_service(tmp_path):
    write(tmp_path, "a.yaml", service("pages"), """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: oops}
spec:
  errors:
    status: ["500-599"]
    query: /{status}.html
    service: {name: pages, port: 80}
""")
    rc = load(tmp_path)
    mw = rc.dynamic["http"]["middlewares"]["default-oops@kubernetescrd"]
    assert mw["errors"]["service"] == "default-oops-errorpage-service"
    assert services(rc)["default-oops-errorpage-service@kubernetescrd"]["loadBalancer"][
        "servers"] == [{"url": "http://10.0.0.1:8080"}]


# -- TLS ----------------------------------------------------------------------------------------

def test_tls_secret_options_and_store(tmp_path):
    write(tmp_path, "a.yaml", route().replace(
        "  entryPoints: [web]\n",
        "  entryPoints: [websecure]\n  tls:\n    secretName: site\n    options: {name: modern}\n"),
        service("whoami"), tls_secret("site", cert="SITE-CERT", key="SITE-KEY"),
        tls_secret("fallback", cert="FB-CERT", key="FB-KEY"), """\
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: modern}
spec:
  minVersion: VersionTLS13
  sniStrict: true
---
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: pinned}
spec:
  cipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]
---
apiVersion: traefik.io/v1alpha1
kind: TLSStore
metadata: {name: default}
spec:
  defaultCertificate: {secretName: fallback}
""")
    rc = load(tmp_path)
    assert errors(rc) == []
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["tls"] == {"options": "default-modern"}
    tls = rc.dynamic["tls"]
    assert tls["options"]["default-modern@kubernetescrd"]["minVersion"] == "VersionTLS13"
    assert tls["options"]["default-modern@kubernetescrd"]["sniStrict"] is True
    assert tls["options"]["default"]["minVersion"] == "VersionTLS12"   # Traefik's defaults
    # cipherSuites left out stays absent (pyroute serves Mozilla intermediate for it, where
    # Traefik fills in Go's list): only a listed set is passed on, and then served exactly
    assert "cipherSuites" not in tls["options"]["default-modern@kubernetescrd"]
    assert "cipherSuites" not in tls["options"]["default"]
    assert tls["options"]["default-pinned@kubernetescrd"]["cipherSuites"] == [
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"]
    assert tls["stores"]["default"] == {"defaultCertificate": {"certFile": "FB-CERT",
                                                               "keyFile": "FB-KEY"}}
    assert tls["certificates"] == [{"certFile": "SITE-CERT", "keyFile": "SITE-KEY"}]


def test_unknown_tls_option_disables_the_router_and_missing_secret_is_reported(tmp_path):
    write(tmp_path, "a.yaml", route().replace(
        "  entryPoints: [web]\n",
        "  tls:\n    secretName: missing\n    options: {name: nope}\n"), service("whoami"))
    rc = load(tmp_path)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "disabled"
    assert r["error"] == ["unknown TLS options: default-nope@kubernetescrd"]
    assert any("spec.tls.secretName: Error configuring TLS: secret default/missing does not exist"
               in e for e in errors(rc))


def test_default_tls_option_in_two_namespaces_is_dropped(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: default, namespace: a}
spec: {minVersion: VersionTLS13}
---
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: default, namespace: b}
spec: {minVersion: VersionTLS12}
""")
    rc = load(tmp_path)
    assert "default" not in rc.dynamic["tls"]["options"]
    assert sum("Default TLS Options defined in multiple namespaces" in e
               for e in errors(rc)) == 2


def test_bad_base64_in_secret_is_reported(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: v1
kind: Secret
metadata: {name: site}
data:
  tls.crt: "not base64!"
  tls.key: a2V5
---
apiVersion: traefik.io/v1alpha1
kind: TLSStore
metadata: {name: default}
spec:
  defaultCertificate: {secretName: site}
""")
    rc = load(tmp_path)
    assert any("Secret default/site: data.tls.crt: not valid base64" in e for e in errors(rc))


# -- multi-layer routing ------------------------------------------------------------------------

def test_parent_refs_make_child_routers(tmp_path):
    write(tmp_path, "a.yaml", route(name="parent", services="        []"), """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: child}
spec:
  parentRefs: [{name: parent}]
  routes:
    - match: PathPrefix(`/admin`)
      services: [{name: whoami, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: orphan}
spec:
  parentRefs: [{name: nobody}]
  routes:
    - match: PathPrefix(`/x`)
      services: [{name: whoami, port: 80}]
""", service("whoami"))
    rc = load(tmp_path)
    pname, parent = router(rc, "default", "parent", "Host(`a.example.com`)")
    assert "service" not in parent and parent["status"] == "enabled"
    _, child = router(rc, "default", "child", "PathPrefix(`/admin`)")
    assert child["parentRefs"] == [pname]
    assert "entryPoints" not in child
    _, orphan = router(rc, "default", "orphan", "PathPrefix(`/x`)")
    assert orphan["status"] == "disabled"
    assert orphan["error"] == ["Error resolving parent routers: parent IngressRoute "
                               "default/nobody does not exist"]
    # Traefik skips the whole IngressRoute: no service is built for it
    assert "service" not in orphan
    assert not [n for n in services(rc) if n.startswith("default-orphan-")]


def test_provider_qualified_service_references(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - {name: wrr@kubernetescrd, kind: TraefikService}"),
          route(name="int", match="Host(`i.example.com`)",
                services="        - {name: api@internal, kind: TraefikService}"), """\
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: wrr}
spec:
  weighted:
    services: [{name: whoami, port: 80}]
""", service("whoami"))
    rc = load(tmp_path)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert (r["service"], r["status"]) == ("default-wrr", "enabled")
    _, r = router(rc, "default", "int", "Host(`i.example.com`)")
    assert r["service"] == "api@internal"
    assert r["error"] == ["the service 'api@internal' does not exist"]


def test_service_level_middlewares(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - name: whoami\n          port: 80\n"
                         "          middlewares: [{name: add-header}, {name: nope}]"),
          service("whoami"), """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: add-header}
spec:
  headers: {customRequestHeaders: {X-Svc: "1"}}
""")
    rc = load(tmp_path)
    name, r = router(rc, "default", "app", "Host(`a.example.com`)")
    svc = services(rc)[name]
    assert svc["middlewares"] == ["default-add-header@kubernetescrd", "default-nope@kubernetescrd"]
    assert svc["status"] == "disabled"
    assert r["status"] == "disabled"
    assert any("middleware 'default-nope@kubernetescrd' does not exist" in e for e in errors(rc))


def test_missing_servers_transport_disables_the_service(tmp_path):
    write(tmp_path, "a.yaml",
          route(services="        - {name: whoami, port: 80, serversTransport: nope}"),
          service("whoami"))
    rc = load(tmp_path)
    _, r = router(rc, "default", "app", "Host(`a.example.com`)")
    assert r["status"] == "disabled"
    assert any("spec.routes[0].services[0].serversTransport: service default-app-"
               in e and "servers transport 'default-nope@kubernetescrd' not found" in e
               for e in errors(rc))


def test_dump_is_json_and_deterministic(tmp_path):
    import json
    write(tmp_path, "a.yaml", route(), route(name="b", match="Host(`b.example.com`)"),
          service("whoami"), TRAEFIK_SERVICES.split("---\n")[0].replace(
              "      - {name: mirror, kind: TraefikService, weight: 1}\n", ""),
          service("v1"))
    first = json.dumps(load(tmp_path).dynamic, sort_keys=False)
    assert json.dumps(load(tmp_path).dynamic, sort_keys=False) == first


def test_route_entries_split_tls_plain_and_children(tmp_path):
    from pyroute.manifests.routing import route_entries
    write(tmp_path, "a.yaml", route(), route(name="sec", match="Host(`s.example.com`)").replace(
        "  entryPoints: [web]\n", "  entryPoints: [web]\n  tls: {}\n"), """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: child}
spec:
  parentRefs: [{name: app}]
  routes:
    - match: PathPrefix(`/c`)
      priority: 7
      syntax: v2
      services: [{name: whoami, port: 80}]
""", service("whoami"))
    rc = load(tmp_path)
    app, _ = router(rc, "default", "app", "Host(`a.example.com`)")
    sec, _ = router(rc, "default", "sec", "Host(`s.example.com`)")
    child, _ = router(rc, "default", "child", "PathPrefix(`/c`)")
    assert route_entries(rc, "web", False) == [(app, "Host(`a.example.com`)", 0, "")]
    assert route_entries(rc, "web", True) == [(sec, "Host(`s.example.com`)", 0, "")]
    assert route_entries(rc, "websecure", False) == []
    assert route_entries(rc, "web", False, parent=app) == [(child, "PathPrefix(`/c`)", 7, "v2")]
    # children carry no tls section: they serve whatever connections their parent serves
    assert route_entries(rc, "web", True, parent=app) == [(child, "PathPrefix(`/c`)", 7, "v2")]
