"""End to end: https servers behind pyroute (ServersTransport serverName, rootCAs,
insecureSkipVerify, client certificates), and a refused certificate answered with 502."""
import json
import ssl

import pytest
import trustme

from e2e_backend import Backend
from e2e_support import Pyroute, get


def service(name, port):
    # a Service whose port is named https: Traefik's CRD provider then uses https:// URLs
    return """---
apiVersion: v1
kind: Service
metadata: {name: %s, namespace: default}
spec:
  ports: [{name: https, port: 443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s-1
  namespace: default
  labels: {kubernetes.io/service-name: %s}
addressType: IPv4
ports: [{name: https, port: %d}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
""" % (name, name, name, port)


def test_https_backends_with_servers_transport(tmp_path):
    ca = trustme.CA()
    other_ca = trustme.CA()
    cert = ca.issue_cert("backend.internal")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    # the mTLS backend asks for a client certificate signed by ``ca``
    mtls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(mtls_ctx)
    ca.configure_trust(mtls_ctx)
    mtls_ctx.verify_mode = ssl.CERT_REQUIRED
    client_cert = ca.issue_cert("pyroute-client")

    verified = Backend("verified", tls=server_ctx)
    mtls = Backend("mtls", tls=mtls_ctx)
    indent = lambda pem: "\n".join("      " + line for line in pem.strip().splitlines())
    m = service("verified", verified.port) + service("mtls", mtls.port)
    m += service("insecure", verified.port) + service("untrusted", verified.port)
    m += """---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: trusted, namespace: default}
spec:
  serverName: backend.internal
  rootCAsSecrets: [ca]
---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: client-cert, namespace: default}
spec:
  serverName: backend.internal
  rootCAsSecrets: [ca]
  certificatesSecrets: [client]
---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: skip, namespace: default}
spec:
  insecureSkipVerify: true
---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: wrong-ca, namespace: default}
spec:
  serverName: backend.internal
  rootCAsSecrets: [other-ca]
---
apiVersion: v1
kind: Secret
metadata: {name: ca, namespace: default}
type: Opaque
stringData:
  ca.crt: |
%s
---
apiVersion: v1
kind: Secret
metadata: {name: other-ca, namespace: default}
type: Opaque
stringData:
  ca.crt: |
%s
---
apiVersion: v1
kind: Secret
metadata: {name: client, namespace: default}
type: kubernetes.io/tls
stringData:
  tls.crt: |
%s
  tls.key: |
%s
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: main, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`verified.test`)
      kind: Rule
      services: [{name: verified, port: 443, serversTransport: trusted}]
    - match: Host(`mtls.test`)
      kind: Rule
      services: [{name: mtls, port: 443, serversTransport: client-cert}]
    - match: Host(`insecure.test`)
      kind: Rule
      services: [{name: insecure, port: 443, serversTransport: skip}]
    - match: Host(`untrusted.test`)
      kind: Rule
      services: [{name: untrusted, port: 443, serversTransport: wrong-ca}]
""" % (indent(ca.cert_pem.bytes().decode()), indent(other_ca.cert_pem.bytes().decode()),
       indent(client_cert.cert_chain_pems[0].bytes().decode()),
       indent(client_cert.private_key_pem.bytes().decode()))
    proxy = Pyroute(tmp_path, m)
    try:
        proxy.start()
        for host, name in (("verified.test", "verified"), ("mtls.test", "mtls"),
                           ("insecure.test", "verified")):
            for i in range(3):          # the pooled TLS connection is reused
                status, _, body = get(proxy.port, "/x%d" % i, host)
                assert status == 200, (host, status, body, proxy.output()[-2000:])
                assert json.loads(body)["backend"] == name
                assert json.loads(body)["target"] == "/x%d" % i
        status, _, body = get(proxy.port, "/big/300000", "verified.test")
        assert status == 200 and len(body) == 300000
        assert verified.connections <= 6
        # a certificate the transport's CAs do not vouch for: 502, never forwarded
        before = len(verified.requests)
        assert get(proxy.port, "/", "untrusted.test")[0] == 502
        assert len(verified.requests) == before
    finally:
        proxy.stop()
        verified.close()
        mtls.close()
