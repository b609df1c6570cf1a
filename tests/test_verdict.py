"""``pyroute check``, ``explain`` and ``run`` give one verdict (pyroute.verdict).

Every manifest set the test suite uses (the bundled demo, the YAML the tests write, and
purpose-made sets for each reason the compiler disables a router) goes through ``pyroute
check --dump`` and through ``pyroute run``'s compilation (the master's validation,
``pyroute.server.run.load_config``, and the worker's ``compile_config`` of a fresh load): the
routers check reports enabled are exactly the routers the compiled snapshot serves, router by
router, and check prints every error run prints.
"""
import ast
import contextlib
import io
import json
import os
from pathlib import Path

import pytest

import pyroute
from pyroute import cli
from pyroute.manifests import load
from pyroute.proxy.snapshot import Pools, compile_config
from pyroute.server.run import load_config
from pyroute.static import load_static

TESTS = Path(__file__).resolve().parent
DEMO = os.path.join(os.path.dirname(pyroute.__file__), "demo")

BACKEND = """\
apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-1
  namespace: default
  labels: {kubernetes.io/service-name: app}
addressType: IPv4
ports: [{name: http, port: 18099}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{name: http, port: 18099}]
"""


def _route(name, match, service="app", extra="", kind=""):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
            "metadata: {name: %s, namespace: default}\nspec:\n  entryPoints: [web]\n"
            "  routes:\n    - match: %s\n      kind: Rule\n%s"
            "      services: [{name: %s, port: 80%s}]\n"
            % (name, match, extra, service, kind))


# One set per reason pyroute's compiler disables a router that the manifests layer accepts.
DISABLING = {
    "middleware-kind": _route("plug", "Host(`plug.example`)",
                              extra="      middlewares: [{name: plug}]\n") +
    "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: plug}\n"
    "spec:\n  plugin:\n    example: {a: b}\n",
    "strategy-leasttime": _route("lt", "Host(`lt.example`)", kind=", strategy: leasttime"),
    "failover-errors": _route("fo", "Host(`fo.example`)", service="fo",
                              kind=", kind: TraefikService") +
    "---\napiVersion: traefik.io/v1alpha1\nkind: TraefikService\nmetadata: {name: fo}\n"
    "spec:\n  failover:\n    service: {name: app, port: 80}\n"
    "    fallback: {name: app, port: 80}\n    errors: {status: ['500-599']}\n",
    "spiffe": _route("sp", "Host(`sp.example`)", kind=", scheme: https, serversTransport: sp") +
    "---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\nmetadata: {name: sp}\n"
    "spec:\n  spiffe: {ids: ['spiffe://example.org/app']}\n",
    "transport-min-equals-max": _route("te", "Host(`te.example`)",
                                       kind=", scheme: https, serversTransport: te") +
    "---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\nmetadata: {name: te}\n"
    "spec:\n  minVersion: VersionTLS13\n  maxVersion: VersionTLS13\n",
    "transport-min-only": _route("tm", "Host(`tm.example`)",
                                 kind=", scheme: https, serversTransport: tm") +
    "---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\nmetadata: {name: tm}\n"
    "spec:\n  minVersion: VersionTLS12\n",
}

# Refused by the compiler today; the provider layer may come to sanitise them first (as
# Traefik's CRD provider does): compared for one verdict, not asserted disabled.
TRANSPORT_SETS = {
    "transport-version": _route("tv", "Host(`tv.example`)",
                                kind=", scheme: https, serversTransport: tv") +
    "---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\nmetadata: {name: tv}\n"
    "spec:\n  minVersion: VersionTLS12\n  maxVersion: VersionTLS11\n",
    "transport-cipher": _route("tc", "Host(`tc.example`)",
                               kind=", scheme: https, serversTransport: tc") +
    "---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\nmetadata: {name: tc}\n"
    "spec:\n  cipherSuites: [TLS_NOT_A_SUITE]\n",
}


def _test_yaml_strings():
    """YAML manifest strings written in the test files (string constants that hold an
    IngressRoute), each as one manifest set."""
    out = {}
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name == "test_verdict.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if "kind: IngressRoute" in text and "apiVersion" in text and "%" not in text \
                        and "{name}" not in text:
                    out["%s:%d" % (path.name, node.lineno)] = text
    return out


# Sets the compiler must not disable: its TLS-side router errors (certResolver) are reported,
# the router is served.
KEEPS = {
    "tls-cert-resolver": "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
    "metadata: {name: acme, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
    "    - match: Host(`acme.example`)\n      kind: Rule\n"
    "      services: [{name: app, port: 80}]\n  tls: {certResolver: letsencrypt}\n",
}

FIXTURES = TESTS / "data" / "traefik_crd" / "fixtures"


def _fixture_sets():
    """The Traefik CRD provider's test fixtures the suite ships (each with their
    services.yml, as the provider tests load them)."""
    out = {}
    if not FIXTURES.is_dir():
        return out
    services = FIXTURES / "services.yml"
    common = services.read_text() if services.is_file() else ""
    for f in sorted(FIXTURES.glob("*.yml")):
        if f.name == "services.yml":
            continue
        out["fixture-" + f.name] = common + "\n---\n" + f.read_text()
    return out


def _sets():
    sets = {"demo": None}
    sets.update({"keeps-" + k: BACKEND + v for k, v in KEEPS.items()})
    sets.update(_fixture_sets())
    sets.update({"disabling-" + k: BACKEND + v for k, v in DISABLING.items()})
    sets.update({"disabling-" + k: BACKEND + v for k, v in TRANSPORT_SETS.items()})
    sets.update({"tests-" + k: BACKEND + "---\n" + v for k, v in _test_yaml_strings().items()})
    return sets


SETS = _sets()


def test_the_collection_covers_the_suites_yaml():
    # the demo, every disabling reason, and the fixtures of several test files
    files = {k.split(":")[0] for k in SETS if k.startswith("tests-")}
    assert len(files) >= 3, files
    assert len(SETS) >= 20


def _dir(tmp_path, name):
    if SETS[name] is None:
        return DEMO
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.yaml").write_text(SETS[name])
    return str(d)


def _check_dump(path):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["check", "--dump", path])
    return code, json.loads(out.getvalue()), err.getvalue()


def _served(snap):
    """Router names the compiled snapshot serves (entry point tables and child tables)."""
    names = set()

    def walk(targets):
        for route in targets:
            names.add(route.name)
            if route.children is not None:
                walk(route.children.targets)
    for entries in (snap.entries, snap.entries_tls):
        for entry in entries.values():
            walk(entry.targets)
    return names


def _reachable_enabled(dynamic):
    """Routers check says are served: enabled, top-level ones and the enabled children of
    served parents."""
    routers = dynamic["http"]["routers"]
    out = {n for n, r in routers.items() if r["status"] == "enabled" and
           r.get("parentRefs") is None}
    grew = True
    while grew:
        grew = False
        for n, r in routers.items():
            if n not in out and r["status"] == "enabled" and \
                    any(p in out for p in r.get("parentRefs") or ()):
                out.add(n)
                grew = True
    return out


@pytest.mark.parametrize("name", sorted(SETS))
def test_check_and_run_give_one_verdict(tmp_path, name):
    path = _dir(tmp_path, name)
    code, dynamic, err = _check_dump(path)
    # what the worker serves: compile_config of a fresh load (no verdict applied)
    snap = compile_config(load([path], load_static(None)), Pools())
    served = _served(snap)
    assert _reachable_enabled(dynamic) == served, err
    for rname, router in dynamic["http"]["routers"].items():
        if rname not in served:
            assert router["status"] == "disabled" or router.get("parentRefs") is not None, \
                rname
    # what the master prints at start is what check prints
    run_cfg = load_config(None, [path])
    for e in run_cfg.errors:
        if e.severity == "error":
            assert e.render() in err, (e.render(), err)
    assert code == (1 if any(e.severity == "error" for e in run_cfg.errors) else 0)


@pytest.mark.parametrize("name", sorted(KEEPS))
def test_what_the_compiler_serves_stays_enabled(tmp_path, name):
    path = _dir(tmp_path, "keeps-" + name)
    code, dynamic, err = _check_dump(path)
    assert all(r["status"] == "enabled" for r in dynamic["http"]["routers"].values()), err
    assert _served(compile_config(load([path], load_static(None)), Pools())) == \
        set(dynamic["http"]["routers"])


@pytest.mark.parametrize("reason", sorted(DISABLING))
def test_each_disabling_reason_is_an_error_of_check(tmp_path, reason):
    path = _dir(tmp_path, "disabling-" + reason)
    code, dynamic, err = _check_dump(path)
    assert code == 1, err
    disabled = [n for n, r in dynamic["http"]["routers"].items() if r["status"] == "disabled"]
    assert len(disabled) == 1, (disabled, err)
    assert dynamic["http"]["routers"][disabled[0]]["error"], dynamic
    # file:line: IngressRoute ns/name: spec.routes[0].<field>: ... the reason
    f = os.path.join(path, "config.yaml") + ":"
    lines = [ln for ln in err.splitlines() if ln.startswith(f) and "warning:" not in ln and
             ": IngressRoute default/" in ln and ("spec.routes[0].middlewares" in ln or
                                                  "spec.routes[0].services" in ln)]
    assert lines, err
    line = lines[0]
    assert int(line[len(f):].split(":")[0]) > 0, line
    assert "1 disabled" in err


def test_explain_never_simulates_a_router_run_disables(tmp_path):
    # a router whose middleware run cannot build: explain shows it disabled, with run's
    # reason, and answers as run does (here: no other router, 404) -- no middleware verdict
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.yaml").write_text(BACKEND + DISABLING["middleware-kind"] +
                                   _route("other", "PathPrefix(`/`)"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["explain", "--json", str(d), "GET", "http://plug.example/x"])
    assert code == 0
    res = json.loads(out.getvalue())
    assert res["router"] == "default-other-" + res["router"].split("-")[-1]
    assert [x["router"] for x in res["disabled"]][0].startswith("default-plug-")
    assert "plugin" in " ".join(res["disabled"][0]["error"])
    assert any("would match but is disabled" in n for n in res["notes"])
    # the Middleware's own error (its kind) and its router's
    assert "configuration has 2 error(s)" in err.getvalue()


def test_explain_disabled_router_alone_is_404(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.yaml").write_text(BACKEND + DISABLING["strategy-leasttime"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        cli.main(["explain", "--json", str(d), "GET", "http://lt.example/"])
    res = json.loads(out.getvalue())
    assert res["status"] == 404
    assert res["router"] is None
    assert "leasttime" in " ".join(res["disabled"][0]["error"])
