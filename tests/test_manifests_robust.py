"""Whatever a manifest holds, loading reports problems as ConfigErrors and never crashes."""
import yaml

from manifests_util import load, service, tls_secret
from test_manifests_load import _mutations

DOCS = [
    """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata:
  name: app
  labels: {team: a}
  annotations: {kubernetes.io/ingress.class: traefik}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.example.com`) && PathPrefix(`/api`)
      priority: 5
      middlewares: [{name: chain}]
      services:
        - {name: whoami, port: 80, weight: 2, serversTransport: st}
        - {name: wrr, kind: TraefikService}
  tls: {secretName: site, options: {name: opt}}
""",
    """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: chain}
spec:
  chain:
    middlewares: [{name: auth}]
""",
    """\
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: auth}
spec:
  basicAuth: {secret: users}
""",
    """\
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: wrr}
spec:
  weighted:
    services: [{name: whoami, port: 80}]
""",
    """\
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: st}
spec:
  serverName: x
  rootCAs: [{secret: site}]
""",
    """\
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: opt}
spec: {minVersion: VersionTLS12, clientAuth: {secretNames: [site]}}
""",
    """\
apiVersion: v1
kind: Secret
metadata: {name: users}
stringData: {users: "alice:x"}
""",
]
BASE = [yaml.safe_load(d) for d in DOCS] + [yaml.safe_load(d) for d in
                                            service("whoami").split("---\n")] + [
    yaml.safe_load(tls_secret("site"))]


def test_every_single_field_mutation_loads_without_crashing(tmp_path):
    path = tmp_path / "all.yaml"
    loads = 0
    for i, doc in enumerate(BASE):
        for mutated in _mutations(doc):
            docs = BASE[:i] + [mutated] + BASE[i + 1:]
            path.write_text(yaml.safe_dump_all(docs))
            rc = load(tmp_path)          # must not raise
            assert isinstance(rc.dynamic["http"]["routers"], dict)
            for e in rc.errors:
                assert e.render()
            loads += 1
    assert loads > 500
