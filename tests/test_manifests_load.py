"""Reading manifest files and validating them against the CRD schemas, with file:line errors."""
import copy
import json

import jsonschema
import pytest
import yaml

from manifests_util import errors, load, service, write
from pyroute import manifests
from pyroute.manifests import schema, source

ROUTE = """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: app
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`)
      kind: Rule
      services:
        - name: whoami
          port: 80
"""


def test_folders_are_read_recursively_with_yaml_yml_json_and_multi_documents(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    write(tmp_path / "sub", "route.yml", ROUTE)
    write(tmp_path / "sub" / "deeper", "svc.yaml", service("whoami"))
    (tmp_path / "mw.json").write_text(json.dumps({
        "apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
        "metadata": {"name": "strip"}, "spec": {"stripPrefix": {"prefixes": ["/a"]}}}))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / ".hidden.yaml").write_text("garbage: [")
    rc = load(tmp_path)
    assert errors(rc) == []
    assert sorted(p.split("/")[-1] for p in rc.sources) == ["mw.json", "route.yml", "svc.yaml"]
    assert rc.paths == (str(tmp_path),)
    assert len(rc.dynamic["http"]["routers"]) == 1
    assert "default-strip@kubernetescrd" in rc.dynamic["http"]["middlewares"]


def test_older_api_group_and_kind_list_are_accepted(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: v1
kind: List
items:
  - apiVersion: traefik.containo.us/v1alpha1
    kind: Middleware
    metadata: {name: strip}
    spec:
      stripPrefix: {prefixes: [/a]}
  - apiVersion: traefik.containo.us/v1alpha1
    kind: Middleware
    metadata: {name: bad}
    spec:
      stripPrefix: {prefixes: /a}
""")
    rc = load(tmp_path)
    assert "default-strip@kubernetescrd" in rc.dynamic["http"]["middlewares"]
    # the error inside a List item points at the item's own line
    assert errors(rc) == ["%s:13: Middleware default/bad: spec.stripPrefix.prefixes: expected a "
                          "list, got a string '/a'" % (tmp_path / "a.yaml")]


def test_kinds_pyroute_does_not_use_are_ignored_and_non_objects_are_errors(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 2}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRouteTCP
metadata: {name: tcp}
spec: {routes: []}
---
just: a mapping
---
- a list
""")
    rc = load(tmp_path)
    path = tmp_path / "a.yaml"
    assert errors(rc) == [
        "%s:11: not a Kubernetes object (a mapping with apiVersion and kind is expected)" % path,
        "%s:13: not a Kubernetes object (a mapping with apiVersion and kind is expected)" % path]


def test_invalid_yaml_names_file_and_line(tmp_path):
    write(tmp_path, "a.yaml", ROUTE + "  tls: [unclosed\n")
    rc = load(tmp_path)
    errs = errors(rc)
    assert len(errs) == 1
    assert errs[0].startswith("%s:14: invalid YAML" % (tmp_path / "a.yaml"))


def test_missing_path_and_missing_name(tmp_path):
    write(tmp_path, "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {}\nspec: {}\n")
    rc = manifests.load([str(tmp_path), str(tmp_path / "nope")])
    assert "%s: no such file or directory" % (tmp_path / "nope") in errors(rc)
    assert "%s:3: Service default/: metadata: metadata.name is required" % (
        tmp_path / "a.yaml") in errors(rc)


def test_no_paths_at_all_is_a_config_error():
    with pytest.raises(manifests.ConfigError, match="no manifest path"):
        manifests.load([])


def test_duplicate_object_warns_and_the_later_one_wins(tmp_path):
    write(tmp_path, "a.yaml", ROUTE, service("whoami"))
    write(tmp_path, "b.yaml", ROUTE.replace("port: 80", "port: http"))
    rc = load(tmp_path)
    warns = errors(rc, "warning")
    assert any("IngressRoute default/app is defined again (first at %s:1)" % (
        tmp_path / "a.yaml") in w for w in warns)
    assert errors(rc) == []


@pytest.mark.parametrize("mutate,field,line,message", [
    (lambda t: t.replace("      kind: Rule", "      kind: Rule\n      midlewares: []"),
     "spec.routes[0].midlewares", 10, "unknown field 'midlewares'"),
    (lambda t: t.replace("    - match: Host(`a.example.com`)\n", "    - priority: 3\n"),
     "spec.routes[0].match", 8, "required field is missing"),
    (lambda t: t.replace("port: 80", "port: [80]"),
     "spec.routes[0].services[0].port", 12, "expected an integer or a string, got a list"),
    (lambda t: t.replace("kind: Rule", "kind: Regex"),
     "spec.routes[0].kind", 9, "must be one of 'Rule' (got 'Regex')"),
    (lambda t: t.replace("entryPoints: [web]", "entryPoints: web"),
     "spec.entryPoints", 6, "expected a list, got a string 'web'"),
])
def test_schema_errors_name_the_field_and_line(tmp_path, mutate, field, line, message):
    write(tmp_path, "a.yaml", mutate(ROUTE), service("whoami"))
    rc = load(tmp_path)
    errs = errors(rc)
    want = "%s:%d: IngressRoute default/app: %s: %s" % (tmp_path / "a.yaml", line, field,
                                                        message)
    assert any(e.startswith(want) for e in errs), errs
    # an object its schema refuses is left out, as the API server would refuse it
    assert rc.dynamic["http"]["routers"] == {}


def test_cel_rule_translated_from_the_crd(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: add}
spec:
  addPrefix: {prefix: "api"}
""")
    rc = load(tmp_path)
    assert errors(rc) == ["%s:5: Middleware default/add: spec.addPrefix.prefix: must start with "
                          "a '/'" % (tmp_path / "a.yaml")]


def test_core_kinds_are_checked_for_the_fields_pyroute_reads(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports: [{name: http, port: "80"}]
""")
    rc = load(tmp_path)
    assert errors(rc) == ["%s:5: Service default/s: spec.ports[0].port: expected an integer, got "
                          "a string '80'" % (tmp_path / "a.yaml")]


def test_yaml_features_anchors_merge_keys_and_typed_scalars(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: v1
kind: Service
metadata: {name: whoami, namespace: default}
spec:
  ports: [{name: http, port: 0x50, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  <<: &meta {name: x, namespace: &ns default}
  name: whoami-1
  labels: {kubernetes.io/service-name: whoami, env: *ns}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - addresses: ["10.0.0.1"]
    conditions: {ready: yes}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: dated}
spec:
  headers:
    customRequestHeaders: {X-Since: 2024-01-01}
""", ROUTE)
    rc = load(tmp_path)
    assert errors(rc) == []
    assert len(rc.dynamic["http"]["routers"]) == 1
    # an unquoted date is a string, as Kubernetes reads it
    assert rc.dynamic["http"]["middlewares"]["default-dated@kubernetescrd"]["headers"] == {
        "customRequestHeaders": {"X-Since": "2024-01-01"}}


# -- the fast schema gate agrees with jsonschema -----------------------------------------------

def _mutations(doc):
    """Every single-field mutation of ``doc``: wrong types, removed keys, unknown keys."""
    def walk(node, path):
        yield path, node
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, path + (i,))

    def setter(root, path, value):
        out = copy.deepcopy(root)
        node = out
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        return out

    for path, node in list(walk(doc, ())):
        if not path:
            continue
        for value in (None, 7, "text", True, [], {}, ["x"], {"bogus": 1}, -1, 1.5):
            yield setter(doc, path, value)
        if isinstance(node, dict):
            yield setter(doc, path, dict(node, unknownField=1))
            for k in node:
                yield setter(doc, path, {kk: vv for kk, vv in node.items() if kk != k})


SAMPLES = [yaml.safe_load(t) for t in (ROUTE, """\
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: t}
spec:
  weighted:
    services: [{name: a, port: 80, weight: 1}]
    sticky: {cookie: {name: c, secure: true}}
""", """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: m}
spec:
  headers:
    customRequestHeaders: {X-A: b}
    sslRedirect: true
""", """\
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: o}
spec:
  minVersion: VersionTLS12
  clientAuth: {secretNames: [ca], clientAuthType: RequireAndVerifyClientCert}
""")]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["kind"])
def test_fast_gate_accepts_exactly_what_jsonschema_accepts(sample):
    reference = schema._validator(sample["kind"])
    gate = schema._gate(sample["kind"])
    checked = 0
    for doc in _mutations(sample):
        ref_ok = reference.is_valid(doc)
        try:
            gate(doc)
            gate_ok = True
        except Exception:
            gate_ok = False
        assert gate_ok == ref_ok, (doc, list(reference.iter_errors(doc)))
        checked += 1
    assert checked > 50


def test_generated_schemas_are_valid_draft7():
    for kind in ("IngressRoute", "Middleware", "TraefikService", "TLSOption", "TLSStore",
                 "ServersTransport"):
        jsonschema.Draft7Validator.check_schema(schema._schema(kind))


def test_line_of_nested_fields(tmp_path):
    path = write(tmp_path, "a.yaml", "# comment\n" + ROUTE)
    objs, errs, _ = source.read_paths([str(path)])
    assert errs == []
    (obj,) = objs
    assert obj.line == 2
    assert obj.line_of(("spec", "routes", 0, "services", 0, "port")) == 13
    assert obj.line_of(("spec", "routes", 0, "nothere")) == 9


def test_committed_schemas_are_what_the_generator_makes(tmp_path):
    import pathlib
    import subprocess
    import sys
    repo = pathlib.Path(__file__).resolve().parent.parent
    ref = repo.parent / "shared" / "reference" / "traefik"
    if not ref.is_dir():     # the CRD definitions are an outside reference, not in the clone
        pytest.skip("Traefik's CRD definitions not found at %s (optional outside reference the "
                    "schemas are generated from)" % ref)
    subprocess.run([sys.executable, str(repo / "scripts" / "gen_schemas.py"), str(ref),
                    str(tmp_path)], check=True, capture_output=True)
    generated = sorted(p.name for p in tmp_path.iterdir())
    assert generated == sorted(p.name for p in (repo / "pyroute" / "schemas").iterdir())
    for name in generated:
        assert (tmp_path / name).read_text() == (repo / "pyroute" / "schemas" / name).read_text()
