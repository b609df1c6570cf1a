"""Hostile manifests: alias bombs, recursive aliases; error lines and strict core fields.

The bomb runs in a subprocess under an RLIMIT_AS: a regression fails the test (MemoryError or
a kill) instead of eating the machine.
"""
import resource
import subprocess
import sys
import time

from manifests_util import errors, load, write

PYTHON_MEMORY_LIMIT = 1 << 30      # address space for the subprocess (python + pyroute ~300 MiB)


def billion_laughs(levels=9):
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", "data:",
             '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for c in "bcdefghijklmnop"[:levels - 1]:
        lines.append("  %s: &%s [%s]" % (c, c, ",".join(["*" + prev] * 9)))
        prev = c
    return "\n".join(lines) + "\n"


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (PYTHON_MEMORY_LIMIT, PYTHON_MEMORY_LIMIT))


def check_limited(*paths):
    """``pyroute check`` in a child with bounded memory: (result, seconds, max RSS in KiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", *map(str, paths)],
                         capture_output=True, text=True, timeout=120, preexec_fn=_limited)
    took = time.monotonic() - start
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return out, took, max(rss, before)


def test_billion_laughs_is_refused_quickly_with_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    assert len(bomb.read_bytes()) < 450
    out, took, rss_kib = check_limited(bomb)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "MemoryError" not in out.stderr
    assert ("%s:11: invalid YAML: document expands to more than its allowed size through YAML "
            "aliases" % bomb) in out.stdout, out.stdout
    assert took < 30
    assert rss_kib < 400 * 1024


def test_excessive_aliasing_ratio_as_the_api_server(tmp_path):
    # small enough for the absolute limits, but almost every node comes from an alias:
    # go-yaml (the API server's YAML decoder) refuses it, and so does pyroute
    bomb = tmp_path / "ratio.yaml"
    bomb.write_text(billion_laughs(levels=5))   # 9^5 = 59049 aliased strings
    rc = load(tmp_path)
    assert errors(rc) == ["%s:1: invalid YAML: document contains excessive aliasing (74718 of "
                          "its 74748 nodes come from YAML aliases)" % bomb]


def test_alias_of_a_large_string_is_bounded_in_bytes(tmp_path):
    big = "x" * (1 << 20)
    text = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n"
            "  a: &a %s\n  b: [%s]\n" % (big, ",".join(["*a"] * 40)))
    (tmp_path / "big.yaml").write_text(text)
    rc = load(tmp_path)
    errs = errors(rc)
    assert len(errs) == 1 and "big.yaml:6: invalid YAML: document expands to more than its " \
        "allowed size" in errs[0], errs


def test_recursive_alias_is_refused_with_its_line(tmp_path):
    write(tmp_path, "rec.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: rec}\n"
          "data: &d\n  x: *d\n")
    rc = load(tmp_path)
    assert errors(rc) == ["%s:4: invalid YAML: anchor value contains itself (a recursive alias)"
                          % (tmp_path / "rec.yaml")]


# -- error lines point at the key; strict field validation of core kinds ----------------------

ROUTE = """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app}
spec:
  routes:
    - match: Host(`a.example.com`)
      kind: Rule
      servicez:
        - name: whoami
          port: 80
"""


def test_unknown_field_points_at_the_keys_line(tmp_path):
    write(tmp_path, "a.yaml", ROUTE)
    rc = load(tmp_path)
    errs = errors(rc)
    assert any(e.startswith("%s:8: IngressRoute default/app: spec.routes[0].servicez: unknown "
                            "field 'servicez'" % (tmp_path / "a.yaml")) for e in errs), errs


def test_unknown_fields_in_core_objects_as_strict_field_validation(tmp_path):
    write(tmp_path, "a.yaml", """\
apiVersion: v1
kind: Service
metadata: {name: whoami}
spec:
  ports:
    - name: http
      port: 80
      targetport: 8080
  selectr: {app: whoami}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: whoami-1
  labels: {kubernetes.io/service-name: whoami}
  namespce: default
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - addresses: ["10.0.0.1"]
    conditions: {ready: true, up: true}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
strinData: {a: b}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
dat: {a: b}
---
apiVersion: v1
kind: Endpoints
metadata: {name: e}
subsets:
  - addresses: [{ip: 10.0.0.2, hostName: x}]
""")
    rc = load(tmp_path)
    f = tmp_path / "a.yaml"
    assert errors(rc) == [
        '%s:8: Service default/whoami: spec.ports[0].targetport: unknown field '
        '"spec.ports[0].targetport"' % f,
        '%s:9: Service default/whoami: spec.selectr: unknown field "spec.selectr"' % f,
        '%s:16: EndpointSlice default/whoami-1: metadata.namespce: unknown field '
        '"metadata.namespce"' % f,
        '%s:21: EndpointSlice default/whoami-1: endpoints[0].conditions.up: unknown field '
        '"endpoints[0].conditions.up"' % f,
        '%s:26: Secret default/s: strinData: unknown field "strinData"' % f,
        '%s:31: ConfigMap default/c: dat: unknown field "dat"' % f,
        '%s:37: Endpoints default/e: subsets[0].addresses[0].hostName: unknown field '
        '"subsets[0].addresses[0].hostName"' % f,
    ]


def test_complete_core_objects_and_ordinary_anchors_pass_strict_validation(tmp_path):
    # every field the API has passes; ordinary anchors and '&' in strings are no bomb; the one
    # typo at the end is the only error
    write(tmp_path, "a.yaml", """\
apiVersion: v1
kind: ConfigMap
metadata: {name: ok, labels: &l {app: a}}
data:
  url: "http://x/?a=1&b=2"
  again: &again "same"
  copy: *again
---
apiVersion: v1
kind: Service
metadata:
  name: whoami
  namespace: default
  uid: 0b6f
  resourceVersion: "1"
  creationTimestamp: "2024-01-01T00:00:00Z"
  labels: {app: whoami}
  annotations: {a: b}
  ownerReferences: []
  finalizers: []
spec:
  type: ClusterIP
  selector: {app: whoami}
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  sessionAffinity: None
  internalTrafficPolicy: Cluster
  ports:
    - {name: http, port: 80, targetPort: 8080, protocol: TCP, appProtocol: http}
status: {loadBalancer: {}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: whoami-1
  labels: {kubernetes.io/service-name: whoami}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP, appProtocol: http}]
endpoints:
  - addresses: ["10.0.0.1"]
    conditions: {ready: true, serving: true, terminating: false}
    nodeName: n1
    zone: z
    targetRef: {kind: Pod, name: p}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
type: Opaque
immutable: true
data: {a: YQ==}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
immutable: false
data: {a: b}
binaryData: {b: YQ==}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: typo, labels: {app: a}}
date: {a: b}
""")
    rc = load(tmp_path)
    assert errors(rc) == ['%s:65: ConfigMap default/typo: date: unknown field "date"'
                          % (tmp_path / "a.yaml")]
