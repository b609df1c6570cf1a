"""Traefik's own CRD provider table tests, run against pyroute's resolution.

``tests/data/traefik_crd/cases.json`` holds the HTTP cases of TestLoadIngressRoutes,
TestCrossNamespace, TestExternalNameService, TestNativeLB, TestNodePortLB and TestGlobalNativeLB
(traefik ``pkg/provider/kubernetes/crd/kubernetes_test.go``), their ``expected`` dynamic
configuration turned into JSON by ``scripts/port_traefik_crd_tests.py``; the fixtures they read
are in ``tests/data/traefik_crd/fixtures``. Each case loads its fixtures with the provider
options the Go test sets and compares ``rc.dynamic`` (what ``pyroute check --dump`` prints)
with Traefik's expected configuration:

- names: pyroute's map keys and references are qualified (``@kubernetescrd``), as Traefik's API
  shows them; the provider's output is not yet, so the suffix is removed before comparing;
- what the provider drops, pyroute keeps with ``"status": "disabled"`` (Traefik's runtime
  shape): a disabled entry that the provider dropped is fine, an enabled one is a difference;
- what Traefik's runtime fills in later (router observability defaults, default entry points)
  may be present in pyroute's output where the provider's output has nothing; zero values
  (false, 0, "", empty lists) equal absent fields, as Go's ``omitempty`` writes them.

Cases listed in DISAGREE still differ, with the reason; each must differ by exactly the
fields KNOWN_DIFFS names (no more, no less), so one that starts to agree, or differs in
something else, fails.
"""
import dataclasses
import json
import os

import pytest
import yaml

from pyroute import manifests
from pyroute.static import EntryPoint, ProvidersCRD, StaticConfig

DATA = os.path.join(os.path.dirname(__file__), "data", "traefik_crd")
with open(os.path.join(DATA, "cases.json")) as _f:
    CASES = json.load(_f)["cases"]

SUFFIX = "@kubernetescrd"
DEFAULT_OBSERVABILITY = {"accessLogs": True, "metrics": True, "tracing": True,
                         "traceVerbosity": "minimal"}
DEFAULT_ENTRY_POINTS = ["web"]

# (test, desc) -> why pyroute's answer still differs from Traefik's
DISAGREE = {
    ("TestLoadIngressRoutes", "one kube service in a failover"):
        "the fixture's failover TraefikService has no 'errors', which the CRD "
        "(traefik.io_traefikservices.yaml, failover.required) requires: a cluster refuses the "
        "object, and so does pyroute's schema check (Traefik's fake client validates nothing)",
    ("TestLoadIngressRoutes", "weighted services in a failover"):
        "the fixture's failover TraefikService has no 'errors', which the CRD "
        "(traefik.io_traefikservices.yaml, failover.required) requires: a cluster refuses the "
        "object, and so does pyroute's schema check (Traefik's fake client validates nothing)",
    ("TestLoadIngressRoutes", "TLS with unknown tls options"):
        "pyroute leaves cipherSuites out of a TLSOption that sets none, where Traefik's "
        "Options.SetDefaults writes Go's default list: pyroute serves such an option with "
        "Mozilla's intermediate suites (see pyroute/manifests/tlsconfig.py), and writing Go's "
        "list would make an option that lists them explicitly indistinguishable",
    ("TestLoadIngressRoutes", "TLS with unknown tls options namespace"):
        "pyroute leaves cipherSuites out of a TLSOption that sets none, where Traefik's "
        "Options.SetDefaults writes Go's default list: pyroute serves such an option with "
        "Mozilla's intermediate suites (see pyroute/manifests/tlsconfig.py), and writing Go's "
        "list would make an option that lists them explicitly indistinguishable",
    ("TestCrossNamespace", "HTTP TLSOption cross namespace allowed"):
        "pyroute leaves cipherSuites out of a TLSOption that sets none, where Traefik's "
        "Options.SetDefaults writes Go's default list: pyroute serves such an option with "
        "Mozilla's intermediate suites (see pyroute/manifests/tlsconfig.py), and writing Go's "
        "list would make an option that lists them explicitly indistinguishable",
    ("TestCrossNamespace", "HTTP TLSOption cross namespace disallowed"):
        "pyroute leaves cipherSuites out of a TLSOption that sets none, where Traefik's "
        "Options.SetDefaults writes Go's default list: pyroute serves such an option with "
        "Mozilla's intermediate suites (see pyroute/manifests/tlsconfig.py), and writing Go's "
        "list would make an option that lists them explicitly indistinguishable",
    ("TestLoadIngressRoutes", "ServersTransport"):
        "the fixture's ServersTransport foo/test has a rootCAs entry with both secret and "
        "configMap, which the CRD's validation rule refuses (a cluster never stores it; pyroute "
        "refuses the object too)",
}


# the differences DISAGREE explains, field by field
_CIPHERS = "cipherSuites: missing"
KNOWN_DIFFS = {
    ("TestLoadIngressRoutes", "one kube service in a failover"): [
        "http.services.default-failover1: missing", "http.services.default-whoami4-8080: missing",
        "http.services.default-whoami5-8080: missing"],
    ("TestLoadIngressRoutes", "weighted services in a failover"): [
        "http.services.default-failover1: missing"],
    ("TestLoadIngressRoutes", "TLS with unknown tls options"): [
        "tls.options.default-foo." + _CIPHERS],
    ("TestLoadIngressRoutes", "TLS with unknown tls options namespace"): [
        "tls.options.default-foo." + _CIPHERS],
    ("TestLoadIngressRoutes", "ServersTransport"): ["http.serversTransports.foo-test: missing"],
    ("TestCrossNamespace", "HTTP TLSOption cross namespace allowed"): [
        "tls.options.cross-ns-tls-options-cn." + _CIPHERS],
    ("TestCrossNamespace", "HTTP TLSOption cross namespace disallowed"): [
        "tls.options.cross-ns-tls-options-cn." + _CIPHERS],
}


def case_id(c):
    return "%s/%s" % (c["test"], c["desc"])


def entry_points(paths):
    eps = set(DEFAULT_ENTRY_POINTS)
    for p in paths:
        with open(os.path.join(DATA, "fixtures", p)) as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and isinstance(doc.get("spec"), dict):
                    eps.update(doc["spec"].get("entryPoints") or ())
    return eps


def static_for(case):
    o = case["options"]
    crd = ProvidersCRD(
        allow_cross_namespace=o.get("allowCrossNamespace", False),
        allow_external_name_services=o.get("allowExternalNameServices", False),
        allow_empty_services=o.get("allowEmptyServices", False),
        native_lb_by_default=o.get("nativeLBByDefault", False),
        namespaces=tuple(o.get("namespaces") or ()),
        ingress_class=o.get("ingressClass", ""),
        paths=tuple(os.path.join(DATA, "fixtures", p) for p in case["paths"]),
    )
    extra = {}
    fields = {f.name for f in dataclasses.fields(ProvidersCRD)}
    if "cross_provider_namespaces" in fields:
        extra["cross_provider_namespaces"] = (None if o.get("crossProviderNamespaces") is None
                                              else tuple(o["crossProviderNamespaces"]))
    if "disable_cluster_scope_resources" in fields:
        extra["disable_cluster_scope_resources"] = o.get("disableClusterScopeResources", False)
    crd = dataclasses.replace(crd, **extra)
    eps = {}
    for i, name in enumerate(sorted(entry_points(case["paths"]))):
        eps[name] = EntryPoint(name=name, port=18000 + i, as_default=name == "web")
    return StaticConfig(entry_points=eps, providers_crd=crd)


def unqualify(v):
    if isinstance(v, str) and v.endswith(SUFFIX):
        return v[:-len(SUFFIX)]
    if isinstance(v, dict):
        return {unqualify(str(k)): unqualify(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unqualify(x) for x in v]
    return v


def is_zero(v):
    return v is None or v is False or v in ("", "0s") or v == [] or v == {} or (
        type(v) in (int, float) and v == 0)


def compare(exp, act, path, diffs):
    if isinstance(exp, dict) and isinstance(act, dict):
        for k, e in exp.items():
            if k not in act:
                diffs.append("%s.%s: missing (Traefik: %s)" % (path, k, json.dumps(e)[:200]))
            else:
                compare(e, act[k], "%s.%s" % (path, k), diffs)
        for k, a in act.items():
            if k in exp or is_zero(a):
                continue
            if path.endswith(".observability") and DEFAULT_OBSERVABILITY.get(k) == a:
                continue        # Traefik's runtime applies the default observability model
            if k == "observability" and a == DEFAULT_OBSERVABILITY:
                continue
            diffs.append("%s.%s: extra %s" % (path, k, json.dumps(a)[:200]))
        return
    if isinstance(exp, list) and isinstance(act, list) and len(exp) == len(act):
        for i, (e, a) in enumerate(zip(exp, act)):
            compare(e, a, "%s[%d]" % (path, i), diffs)
        return
    if exp != act:
        diffs.append("%s: %s != Traefik's %s" % (path, json.dumps(act)[:300],
                                                json.dumps(exp)[:300]))


def diff_case(case, rc):
    exp_http = unqualify(case["expected"].get("http") or {})
    exp_tls = unqualify(case["expected"].get("tls") or {})
    act = unqualify(rc.dynamic)
    diffs = []
    for section in ("routers", "services", "middlewares", "serversTransports"):
        exp = exp_http.get(section) or {}
        got = act["http"].get(section) or {}
        for name, e in exp.items():
            a = got.get(name)
            if a is None:
                diffs.append("http.%s.%s: missing" % (section, name))
                continue
            a = {k: v for k, v in a.items() if k not in ("status", "error")}
            if section == "routers" and "entryPoints" not in e and \
                    a.get("entryPoints") == DEFAULT_ENTRY_POINTS:
                a.pop("entryPoints")        # the runtime's default entry points
            compare(e, a, "http.%s.%s" % (section, name), diffs)
        for name, a in got.items():
            if name not in exp and a.get("status") == "enabled":
                diffs.append("http.%s.%s: served, Traefik drops it" % (section, name))
    got_opts = act["tls"].get("options") or {}
    for name, e in (exp_tls.get("options") or {}).items():
        if name not in got_opts:
            diffs.append("tls.options.%s: missing" % name)
        else:
            compare(e, {k: v for k, v in got_opts[name].items() if k not in ("status", "error")},
                    "tls.options." + name, diffs)
    for name in got_opts:
        if name not in (exp_tls.get("options") or {}) and name != "default":
            diffs.append("tls.options.%s: present, Traefik drops it" % name)
    exp_stores = exp_tls.get("stores") or {}
    for name, e in exp_stores.items():
        compare(e, (act["tls"].get("stores") or {}).get(name), "tls.stores." + name, diffs)
    key = lambda c: (c.get("certFile", ""), c.get("keyFile", ""))   # noqa: E731
    compare(sorted(exp_tls.get("certificates") or [], key=key),
            sorted(act["tls"].get("certificates") or [], key=key), "tls.certificates", diffs)
    return diffs


def run_case(case, empty_dir):
    static = static_for(case)
    # the "Empty" cases read nothing: an empty folder stands for an empty cluster
    return manifests.load([] if case["paths"] else [str(empty_dir)], static)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_traefik_provider_case(case, tmp_path):
    why = DISAGREE.get((case["test"], case["desc"]))
    rc = run_case(case, tmp_path)
    diffs = diff_case(case, rc)
    if why is not None:
        # a known difference: exactly the one the reason describes, nothing more (and a case
        # that starts to agree fails until it leaves DISAGREE)
        heads = sorted(d.split(" (Traefik")[0] for d in diffs)
        assert heads == sorted(KNOWN_DIFFS[(case["test"], case["desc"])]), (why, diffs)
        return
    assert diffs == [], "\n".join(diffs)
