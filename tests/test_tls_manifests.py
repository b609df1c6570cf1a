"""From manifests to handshakes: Secrets, TLSOption, TLSStore and IngressRoute tls sections as
the manifests layer resolves them, served by pyroute.tls (the seed's TLS examples)."""
import base64
import ssl

import pytest
import trustme

from pyroute import manifests, tls
from _tls_harness import Server, client_context, fetch, pem_pair, peer_names
from manifests_util import service, static, write


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def secret(name, leaf=None, ns="apps", ca_cert=None):
    data = {}
    if leaf is not None:
        cert, key = pem_pair(leaf)
        data["tls.crt"], data["tls.key"] = cert, key
    if ca_cert is not None:
        data["ca.crt"] = ca_cert
    lines = "\n".join("  %s: %s" % (k, base64.b64encode(v.encode()).decode())
                      for k, v in data.items())
    return ("apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: %s}\n"
            "type: kubernetes.io/tls\ndata:\n%s\n" % (name, ns, lines))


def ingress_route(name, host, tls_spec, ns="apps"):
    return """\
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: %s, namespace: %s}
spec:
  entryPoints: [websecure]
  routes:
    - match: Host(`%s`)
      kind: Rule
      services: [{name: whoami, port: 80}]
  tls: %s
""" % (name, ns, host, tls_spec)


def tls_config(tmp_path, *docs):
    write(tmp_path, "m.yaml", service("whoami", ns="apps"), *docs)
    rc = manifests.load([tmp_path], static())
    return rc, tls.TLSConfig.build(rc.dynamic.get("tls"), rc.dynamic["http"]["routers"],
                                   entry_point="websecure")


def test_secret_name_serves_its_certificate_with_default_option(tmp_path, ca):
    leaf = ca.issue_cert("whoami.example.com")
    rc, config = tls_config(tmp_path, secret("supersecret", leaf),
                            ingress_route("r", "whoami.example.com", "{secretName: supersecret}"))
    assert config.errors == []
    with Server(config) as srv:
        status, body, peer = fetch(srv.port, client_context(ca), "whoami.example.com")
        assert status == 200 and body["option"] == "default" and body["alpn"] == "http/1.1"
        assert peer.version == "TLSv1.3"


def test_empty_tls_serves_the_generated_certificate(tmp_path):
    rc, config = tls_config(tmp_path, ingress_route("r", "bare.example.com", "{}"))
    with Server(config) as srv:
        _, _, peer = fetch(srv.port, client_context(verify=False), "bare.example.com")
        assert peer_names(peer)[0] == ["TRAEFIK DEFAULT CERT"]


def test_tls_option_reference_and_tlsstore_default(tmp_path, ca):
    leaf = ca.issue_cert("opt.example.com")
    fallback = ca.issue_cert("fallback.example.com")
    client_ca = trustme.CA()
    rc, config = tls_config(
        tmp_path,
        secret("opt-cert", leaf), secret("fallback", fallback, ns="default"),
        secret("client-ca", ca_cert=client_ca.cert_pem.bytes().decode()),
        """\
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: opt, namespace: apps}
spec:
  minVersion: VersionTLS13
  sniStrict: true
  clientAuth:
    secretNames: [client-ca]
    clientAuthType: RequireAndVerifyClientCert
""",
        """\
apiVersion: traefik.io/v1alpha1
kind: TLSStore
metadata: {name: default, namespace: default}
spec:
  defaultCertificate: {secretName: fallback}
""",
        ingress_route("r", "opt.example.com",
                      "{secretName: opt-cert, options: {name: opt, namespace: apps}}"))
    assert [e for e in config.errors if e.severity == "error"] == []
    assert config.host_options == {"opt.example.com": "apps-opt@kubernetescrd"}
    with Server(config) as srv:
        client = client_ca.issue_cert("client", common_name="client")
        _, body, peer = fetch(srv.port, client_context(ca, client_cert=client), "opt.example.com")
        assert (body["option"], body["client_cn"], peer.version) == (
            "apps-opt@kubernetescrd", "client", "TLSv1.3")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            fetch(srv.port, client_context(ca), "opt.example.com")       # no client cert
        # Other names: default option, TLSStore default certificate.
        _, body, peer = fetch(srv.port, client_context(verify=False), "other.example.com")
        assert body["option"] == "default"
        assert peer_names(peer)[1] == ["fallback.example.com"]


def test_seed_conflicting_options_example(tmp_path, ca):
    # The seed's IngressRoute01 (options foo) and IngressRoute02 (options bar) on example.net
    # (the seed writes `options: foo`; the CRD schema wants {name: foo}).
    opts = "".join("""\
---
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: %s, namespace: apps}
spec: {minVersion: VersionTLS13}
""" % n for n in ("foo", "bar"))
    write(tmp_path, "opts.yaml", opts)
    rc, config = tls_config(
        tmp_path,
        ingress_route("ingressroute01", "example.net", "{options: {name: foo}}"),
        ingress_route("ingressroute02", "example.net", "{options: {name: bar}}"))
    assert config.host_options == {"example.net": "default"}
    assert sum("found different TLS options" in e.message for e in config.errors) == 2
    with Server(config) as srv:
        # The default option: TLS 1.2 still accepted (foo and bar would refuse it).
        _, body, peer = fetch(srv.port, client_context(verify=False,
                                                       maximum=ssl.TLSVersion.TLSv1_2),
                              "example.net")
        assert (body["option"], peer.version) == ("default", "TLSv1.2")
