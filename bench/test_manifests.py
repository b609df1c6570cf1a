"""Loading and resolving 10,000 IngressRoutes (the issue's budget: <= 2 s).

Run: .venv/bin/pip install -e '.[bench]' && .venv/bin/python -m pytest bench/test_manifests.py
The peer in the same group is PyYAML's own CSafeLoader reading the same files (parsing alone,
no validation or resolution), so the report shows what the loader adds on top of parsing.
"""
import os

import pytest
import yaml

from pyroute import manifests
from pyroute.static import static_from_mapping

N_ROUTES = 10_000
N_NAMESPACES = 50

ROUTE = """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: app-{i}
  namespace: team-{ns}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`app-{i}.example.com`) && PathPrefix(`/api`)
      kind: Rule
      middlewares:
        - name: strip
      services:
        - name: backend
          port: 80
"""

BACKEND = """\
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: team-{ns}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-1
  namespace: team-{ns}
  labels: {{kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
  - addresses: ["10.0.{ns}.1"]
    conditions: {{ready: true}}
  - addresses: ["10.0.{ns}.2"]
    conditions: {{ready: true}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {{name: strip, namespace: team-{ns}}}
spec:
  stripPrefix: {{prefixes: [/api]}}
"""


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("routes")
    routes = [ROUTE.format(i=i, ns=i % N_NAMESPACES) for i in range(N_ROUTES)]
    for k in range(10):   # ten files of 1,000 routes, as a repository of manifests would be
        (d / ("routes-%d.yaml" % k)).write_text("---\n".join(routes[k::10]))
    (d / "backends.yaml").write_text("---\n".join(BACKEND.format(ns=ns)
                                                   for ns in range(N_NAMESPACES)))
    return d


STATIC = static_from_mapping({"entryPoints": {"web": {"address": "127.0.0.1:8000"}}})


@pytest.mark.benchmark(group="manifests-10k")
def test_load_and_resolve_10k_ingressroutes(benchmark, manifest_dir):
    rc = benchmark.pedantic(manifests.load, args=([str(manifest_dir)], STATIC),
                            rounds=5, iterations=1, warmup_rounds=1)
    assert len(rc.dynamic["http"]["routers"]) == N_ROUTES
    assert [e for e in rc.errors if e.severity == "error"] == []
    assert all(r["status"] == "enabled" for r in rc.dynamic["http"]["routers"].values())


@pytest.mark.benchmark(group="manifests-10k")
def test_peer_pyyaml_csafeloader_parse_only(benchmark, manifest_dir):
    files = sorted(os.path.join(manifest_dir, f) for f in os.listdir(manifest_dir))

    def parse():
        n = 0
        for f in files:
            with open(f, "rb") as fh:
                n += sum(1 for _ in yaml.load_all(fh, Loader=yaml.CSafeLoader))
        return n

    assert benchmark.pedantic(parse, rounds=5, iterations=1, warmup_rounds=1) == \
        N_ROUTES + 3 * N_NAMESPACES
