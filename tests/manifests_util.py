"""Helpers shared by the manifests tests: write manifests to a folder, load them."""
import base64
import dataclasses
import textwrap

from pyroute import manifests
from pyroute.static import load_static, static_from_mapping

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports:
    - {{name: {port_name}, port: {port}, targetPort: {target}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abc
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: {port_name}, port: {target}}}]
endpoints:
{endpoints}
"""


def service(name, ns="default", port=80, port_name="http", target=8080,
            addresses=("10.0.0.1",)):
    eps = "\n".join('  - addresses: ["%s"]\n    conditions: {ready: true}' % a
                    for a in addresses)
    return SERVICE.format(name=name, ns=ns, port=port, port_name=port_name, target=target,
                          endpoints=eps)


def tls_secret(name, ns="default", cert="CERT", key="KEY"):
    return """\
apiVersion: v1
kind: Secret
metadata: {name: %s, namespace: %s}
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
""" % (name, ns, base64.b64encode(cert.encode()).decode(), base64.b64encode(key.encode()).decode())


def write(folder, name, *docs):
    path = folder / name
    path.write_text("---\n".join(textwrap.dedent(d) for d in docs))
    return path


def static(**crd):
    """A StaticConfig with entry points web/websecure and the given kubernetesCRD options."""
    data = {"entryPoints": {"web": {"address": "127.0.0.1:8000"},
                            "websecure": {"address": "127.0.0.1:8443"}}}
    if crd:
        data["providers"] = {"kubernetesCRD": crd}
    return static_from_mapping(data)


def load(folder, **crd):
    return manifests.load([str(folder)], static(**crd))


def errors(rc, severity="error"):
    return [e.render() for e in rc.errors if e.severity == severity]


def router(rc, ns, ingress, rule):
    name = manifests.qualified(manifests.router_name(ns, ingress, rule))
    return name, rc.dynamic["http"]["routers"][name]


def services(rc):
    return rc.dynamic["http"]["services"]


__all__ = ["service", "tls_secret", "write", "static", "load", "errors", "router", "services",
           "load_static", "dataclasses"]
