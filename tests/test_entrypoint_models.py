"""Entry point options that add to the dynamic configuration, ported from Traefik's own tables:
``pkg/provider/traefik/internal_test.go`` (fixtures redirection*.json, models.json) and
``pkg/server/aggregator_test.go`` (Test_applyModel), checked on what ``pyroute check --dump``
shows (``RuntimeConfig.dynamic``)."""
import pytest

from manifests_util import service, write
from pyroute import manifests
from pyroute.static import static_from_mapping

MAX = (1 << 63) - 1


def ingress(name, eps, extra=""):
    eps_line = "  entryPoints: [%s]\n" % ", ".join(eps) if eps is not None else ""
    return """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: %s, namespace: default}
spec:
%s  routes:
    - match: Host(`%s.test`)
      kind: Rule
      services: [{name: whoami, port: 80}]
%s""" % (name, eps_line, name, extra)


def load(tmp_path, eps, *docs):
    write(tmp_path, "m.yaml", service("whoami"), *docs)
    return manifests.load([str(tmp_path)], static_from_mapping({"entryPoints": eps}))


@pytest.mark.parametrize("websecure,to,name,port", [
    (":443", "websecure", "web-to-websecure", "443"),            # redirection.json
    (":443", ":443", "web-to-443", "443"),                       # redirection_port.json
    (":443/tcp", "websecure", "web-to-websecure", "443"),        # redirection_with_protocol
    ("127.0.0.1:8443", "websecure", "web-to-websecure", "8443"),
])
def test_redirection_routers(tmp_path, websecure, to, name, port):
    rc = load(tmp_path, {"web": {"address": ":80", "http": {"redirections": {"entryPoint": {
        "to": to, "scheme": "https", "permanent": True}}}}, "websecure": {"address": websecure}})
    http = rc.dynamic["http"]
    rt = http["routers"][name + "@internal"]
    assert {k: rt[k] for k in ("entryPoints", "middlewares", "service", "rule", "priority")} \
        == {"entryPoints": ["web"], "middlewares": ["redirect-%s@internal" % name],
            "service": "noop@internal", "rule": "HostRegexp(`^.+$`)", "priority": MAX - 1}
    assert http["middlewares"]["redirect-%s@internal" % name]["redirectScheme"] == {
        "scheme": "https", "port": port, "permanent": True}
    assert "noop@internal" in http["services"]
    assert not rc.has_errors


def test_redirection_defaults_and_priority(tmp_path):
    rc = load(tmp_path, {"web": {"address": ":80", "http": {"redirections": {"entryPoint": {
        "to": ":8443", "priority": 7, "permanent": False, "scheme": "http"}}}}})
    rt = rc.dynamic["http"]["routers"]["web-to-8443@internal"]
    assert rt["priority"] == 7
    assert rc.dynamic["http"]["middlewares"]["redirect-web-to-8443@internal"][
        "redirectScheme"] == {"scheme": "http", "port": "8443", "permanent": False}


def test_models_fixture(tmp_path):
    # internal_test.go "models.json": middlewares + tls (options, certResolver, domains)
    rc = load(tmp_path, {"websecure": {"address": ":443", "http": {
        "middlewares": ["test"],
        "tls": {"options": "opt", "certResolver": "le",
                "domains": [{"main": "mainA", "sans": ["sanA1", "sanA2"]},
                            {"main": "mainB", "sans": ["sanB1", "sanB2"]}]}}}},
        ingress("app", ["websecure"]))
    (name, rt), = rc.dynamic["http"]["routers"].items()
    assert rt["middlewares"] == ["test@kubernetescrd"]
    assert rt["tls"] == {"options": "opt", "certResolver": "le",
                         "domains": [{"main": "mainA", "sans": ["sanA1", "sanA2"]},
                                     {"main": "mainB", "sans": ["sanB1", "sanB2"]}]}
    # the references are checked as the router's own: neither exists here
    msgs = [e.message for e in rc.errors if e.severity == "error"]
    assert any("middleware 'test@kubernetescrd' does not exist" in m for m in msgs)
    assert any("unknown TLS options: opt@kubernetescrd" in m for m in msgs)


def test_model_not_used(tmp_path):
    # "with model, not used": a router on another entry point is left alone
    rc = load(tmp_path, {"web": {"address": ":80"},
                         "ep": {"address": ":81", "http": {"middlewares": ["test"], "tls": {}}}},
              ingress("app", ["web"]))
    (name, rt), = rc.dynamic["http"]["routers"].items()
    assert rt["entryPoints"] == ["web"] and "tls" not in rt and "middlewares" not in rt


def test_model_one_entry_point_router_keeps_its_tls(tmp_path):
    # "with model, one entry point, and router with tls": the router's tls wins, the
    # middlewares still come first
    eps = {"websecure": {"address": ":443", "http": {"middlewares": ["default-ep@kubernetescrd"],
                                                      "tls": {"certResolver": "ep"}}}}
    mw = """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: %s, namespace: default}
spec: {addPrefix: {prefix: /%s}}
"""
    extra = "      middlewares: [{name: rt}]\n  tls: {certResolver: router}\n"
    rc = load(tmp_path, eps, mw % ("ep", "ep"), mw % ("rt", "rt"),
              ingress("app", ["websecure"], extra))
    (name, rt), = rc.dynamic["http"]["routers"].items()
    assert rt["tls"] == {"certResolver": "router"}
    assert rt["middlewares"] == ["default-ep@kubernetescrd", "default-rt@kubernetescrd"]


def test_model_two_entry_points_splits_the_router(tmp_path):
    # "with model, two entry points": test -> test (web) + websecure-test (websecure)
    rc = load(tmp_path, {"web": {"address": ":80"},
                         "websecure": {"address": ":443", "http": {"tls": {}}}},
              ingress("app", ["websecure", "web"]))
    routers = rc.dynamic["http"]["routers"]
    (name,) = [n for n in routers if not n.startswith("websecure-")]
    assert routers[name]["entryPoints"] == ["web"] and "tls" not in routers[name]
    split = routers["websecure-" + name]
    assert split["entryPoints"] == ["websecure"] and split["tls"] == {}
    assert not rc.has_errors


def test_model_applies_to_routers_without_entry_points(tmp_path):
    # mergeConfiguration gives them the default entry points first, then applyModel splits
    rc = load(tmp_path, {"web": {"address": ":80"},
                         "websecure": {"address": ":443", "http": {"tls": {}}}},
              ingress("app", None))
    routers = rc.dynamic["http"]["routers"]
    assert sorted(r["entryPoints"][0] for r in routers.values()) == ["web", "websecure"]
    assert sum(1 for n in routers if n.startswith("websecure-")) == 1


def test_child_routers_follow_the_split_parent(tmp_path):
    child = """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: child, namespace: default}
spec:
  parentRefs: [{name: app}]
  routes:
    - match: PathPrefix(`/c`)
      kind: Rule
      services: [{name: whoami, port: 80}]
"""
    rc = load(tmp_path, {"web": {"address": ":80"},
                         "websecure": {"address": ":443", "http": {"tls": {}}}},
              ingress("app", ["web", "websecure"]).replace(
                  "      services: [{name: whoami, port: 80}]\n", ""), child)
    routers = rc.dynamic["http"]["routers"]
    parent = next(n for n in routers if n.startswith("default-app-"))
    (c,) = [r for n, r in routers.items() if r.get("parentRefs") is not None]
    assert c["parentRefs"] == [parent, "websecure-" + parent]
    assert "tls" not in c            # only root routers get the model


def test_static_servers_transport_is_default_at_internal(tmp_path):
    # internal.go serverTransport(): the static serversTransport as default@internal
    rc = manifests.load([str(write(tmp_path, "m.yaml", service("whoami")))],
                        static_from_mapping({"serversTransport": {
                            "insecureSkipVerify": True, "maxIdleConnsPerHost": 7,
                            "forwardingTimeouts": {"dialTimeout": "5s"}}}))
    assert rc.dynamic["http"]["serversTransports"]["default@internal"] == {
        "insecureSkipVerify": True, "maxIdleConnsPerHost": 7,
        "forwardingTimeouts": {"dialTimeout": "5s", "responseHeaderTimeout": "0s",
                               "idleConnTimeout": "1m30s"}}
    rc = manifests.load([str(tmp_path / "m.yaml")], static_from_mapping({}))
    assert "default@internal" not in rc.dynamic["http"]["serversTransports"]


def test_core_default_rule_syntax(tmp_path):
    # v2 rules read with the v2 syntax; a core section gives every entry point a model
    v2 = ingress("old", ["web", "websecure"]).replace("Host(`old.test`)",
                                                      "Host(`old.test`,`x.test`)")
    write(tmp_path, "m.yaml", service("whoami"), v2)
    st = static_from_mapping({"entryPoints": {"web": {"address": ":80"},
                                              "websecure": {"address": ":443"}},
                              "core": {"defaultRuleSyntax": "v2"}})
    assert st.default_rule_syntax == "v2"
    assert any("v2 rules syntax is now deprecated" in w.message for w in st.warnings)
    rc = manifests.load([str(tmp_path)], st)
    routers = rc.dynamic["http"]["routers"]
    assert sorted(n.split("-")[0] for n in routers) == ["web", "websecure"]
    assert all(r["ruleSyntax"] == "v2" and r["status"] == "enabled" for r in routers.values())
    # the same rule without it is refused (v3 Host takes one host)
    rc = manifests.load([str(tmp_path)], static_from_mapping(
        {"entryPoints": {"web": {"address": ":80"}, "websecure": {"address": ":443"}}}))
    assert all(r["status"] == "disabled" for r in rc.dynamic["http"]["routers"].values())
    with pytest.raises(Exception, match="unsupported default rule syntax"):
        static_from_mapping({"core": {"defaultRuleSyntax": "v4"}})
