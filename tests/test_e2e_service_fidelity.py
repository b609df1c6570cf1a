"""End to end: ServersTransport TLS settings on backend connections (peerCertURI, minVersion,
maxVersion, cipherSuites), backend names resolved per connection (ExternalName), empty
Services (allowEmptyServices: 503) and fenced (terminating) endpoints (sticky traffic only)."""
import datetime
import json
import ssl
import subprocess
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
import ipaddress

from e2e_backend import Backend
from e2e_support import Pyroute, get, request, static_yaml
from pyroute._engine.balance import sticky_value


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca, uris=(), dns=("backend.internal",), ips=("127.0.0.1",)):
    ca_key, ca_cert = ca
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.DNSName(d) for d in dns] + \
        [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + \
        [x509.UniformResourceIdentifier(u) for u in uris]
    cert = (x509.CertificateBuilder().subject_name(_name("backend")).issuer_name(
        ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256()))
    return key, cert


def server_ctx(tmp_path, name, key, cert, min_v=None, max_v=None, ciphers=None):
    pem = tmp_path / (name + ".pem")
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pem))
    if min_v:
        ctx.minimum_version = min_v
    if max_v:
        ctx.maximum_version = max_v
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def https_service(name, port, ip="127.0.0.1"):
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
endpoints: [{addresses: ["%s"], conditions: {ready: true}}]
""" % (name, name, name, port, ip)


def transport(name, **fields):
    fields.setdefault("rootCAsSecrets", ["ca"])
    if not fields["rootCAsSecrets"]:
        del fields["rootCAsSecrets"]
    body = "".join("  %s: %s\n" % (k, json.dumps(v)) for k, v in fields.items())
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\n"
            "metadata: {name: %s, namespace: default}\nspec:\n%s" % (name, body))


def route(host, service, port, st):
    return ("    - match: Host(`%s`)\n      kind: Rule\n"
            "      services: [{name: %s, port: %d, serversTransport: %s}]\n"
            % (host, service, port, st))


def test_servers_transport_tls_fields(tmp_path):
    ca = make_ca()
    key, cert = issue(ca, uris=("spiffe://example.org/app",))
    ca_pem = ca[1].public_bytes(serialization.Encoding.PEM).decode()
    any_tls = Backend("any", tls=server_ctx(tmp_path, "any", key, cert))
    tls12 = Backend("tls12", tls=server_ctx(tmp_path, "t12", key, cert,
                                            max_v=ssl.TLSVersion.TLSv1_2))
    tls13 = Backend("tls13", tls=server_ctx(tmp_path, "t13", key, cert,
                                            min_v=ssl.TLSVersion.TLSv1_3))
    aes256 = Backend("aes256", tls=server_ctx(tmp_path, "a256", key, cert,
                                              max_v=ssl.TLSVersion.TLSv1_2,
                                              ciphers="ECDHE-RSA-AES256-GCM-SHA384"))
    m = (https_service("any", any_tls.port) + https_service("tls12", tls12.port) +
         https_service("tls13", tls13.port) + https_service("aes256", aes256.port))
    m += "---\napiVersion: v1\nkind: Secret\nmetadata: {name: ca, namespace: default}\n" \
         "type: Opaque\nstringData:\n  ca.crt: |\n%s\n" % "\n".join(
             "    " + line for line in ca_pem.strip().splitlines())
    m += transport("uri-ok", peerCertURI="spiffe://example.org/app")
    m += transport("uri-other", peerCertURI="spiffe://example.org/other")
    m += transport("uri-other-insecure", peerCertURI="spiffe://example.org/other",
                   insecureSkipVerify=True)
    m += transport("uri-ok-wrong-name", peerCertURI="spiffe://example.org/app",
                   serverName="wrong.internal")
    m += transport("uri-ok-insecure", peerCertURI="spiffe://EXAMPLE.org/app",
                   serverName="wrong.internal", insecureSkipVerify=True)
    m += transport("uri-ok-insecure-other-ca", peerCertURI="spiffe://example.org/app",
                   insecureSkipVerify=True, rootCAsSecrets=[])
    # Traefik refuses a minVersion without a maxVersion (it compares it with 0), and its
    # provider turns min >= max into exactly that: TLS 1.3 only cannot be asked for
    m += transport("min11", minVersion="VersionTLS11", maxVersion="VersionTLS12")
    m += transport("min12", minVersion="VersionTLS12", maxVersion="VersionTLS13")
    m += transport("max12", maxVersion="VersionTLS12")
    m += transport("c128", cipherSuites=["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])
    m += transport("c256", cipherSuites=["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"])
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: main, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n")
    m += route("uri-ok.test", "any", 443, "uri-ok")
    m += route("uri-other.test", "any", 443, "uri-other")
    m += route("uri-insecure.test", "any", 443, "uri-other-insecure")
    m += route("uri-wrong-name.test", "any", 443, "uri-ok-wrong-name")
    m += route("uri-ok-insecure.test", "any", 443, "uri-ok-insecure")
    m += route("uri-insecure-no-ca.test", "any", 443, "uri-ok-insecure-other-ca")
    m += route("min11-vs-13.test", "tls13", 443, "min11")
    m += route("min12-vs-any.test", "any", 443, "min12")
    m += route("min12-vs-12.test", "tls12", 443, "min12")
    m += route("max12-vs-13.test", "tls13", 443, "max12")
    m += route("max12-vs-12.test", "tls12", 443, "max12")
    m += route("c128.test", "aes256", 443, "c128")
    m += route("c256.test", "aes256", 443, "c256")
    proxy = Pyroute(tmp_path, m)
    try:
        proxy.start()
        ok = {"uri-ok.test": "any", "min12-vs-any.test": "any", "min12-vs-12.test": "tls12",
              "max12-vs-12.test": "tls12",
              "c256.test": "aes256", "uri-ok-insecure.test": "any"}
        for host, name in ok.items():
            status, _, body = get(proxy.port, "/", host)
            assert status == 200, (host, status, body, proxy.output()[-3000:])
            assert json.loads(body)["backend"] == name
        backends = {"any": any_tls, "tls12": tls12, "tls13": tls13, "aes256": aes256}
        # peerCertURI adds to the host name check (without insecureSkipVerify) and keeps the
        # chain check (with it: the system's roots do not vouch for the test CA)
        for host, name in (("uri-other.test", "any"), ("uri-insecure.test", "any"),
                           ("uri-wrong-name.test", "any"), ("uri-insecure-no-ca.test", "any"),
                           ("min11-vs-13.test", "tls13"), ("max12-vs-13.test", "tls13"),
                           ("c128.test", "aes256")):
            before = len(backends[name].requests)
            status, _, body = get(proxy.port, "/", host)
            assert status == 502, (host, status, body)
            assert len(backends[name].requests) == before, host     # never forwarded
    finally:
        proxy.stop()
        for b in (any_tls, tls12, tls13, aes256):
            b.close()


def _check(tmp_path, manifests, static=None):
    d = tmp_path / "chk"
    d.mkdir(exist_ok=True)
    (d / "config.yaml").write_text(manifests)
    args = [sys.executable, "-m", "pyroute", "check", str(d)]
    if static:
        (d / "static.yml.txt").write_text(static)
        args[4:4] = ["-c", str(d / "static.yml.txt")]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


EXTERNAL = """---
apiVersion: v1
kind: Service
metadata: {name: %s, namespace: default}
spec:
  type: ExternalName
  externalName: %s
  ports: [{name: http, port: %d}]
"""

PROVIDERS = ("providers:\n  kubernetesCRD: {allowExternalNameServices: true, "
             "allowEmptyServices: true}\n")


def test_external_names_are_resolved_per_connection_and_empty_services_answer_503(tmp_path):
    be = Backend("ext")
    m = EXTERNAL % ("local", "localhost", be.port)
    m += EXTERNAL % ("nowhere", "no-such-host.invalid", 80)
    m += ("---\napiVersion: v1\nkind: Service\nmetadata: {name: empty, namespace: default}\n"
          "spec:\n  ports: [{name: http, port: 80}]\n")
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: main, namespace: default}\nspec:\n  entryPoints: [web]\n"
          "  routes:\n")
    for host, svc, port in (("local.test", "local", be.port), ("nowhere.test", "nowhere", 80),
                            ("empty.test", "empty", 80)):
        m += ("    - match: Host(`%s`)\n      kind: Rule\n"
              "      services: [{name: %s, port: %d}]\n" % (host, svc, port))
    proxy = Pyroute(tmp_path, m)
    proxy.static.write_text(static_yaml(proxy.port) + PROVIDERS)
    try:
        # DNS is per connection, not a configuration matter: check is clean
        out = _check(tmp_path, m, static_yaml(proxy.port) + PROVIDERS)
        assert "0 error(s)" in out.stderr, out.stdout + out.stderr
        proxy.start()
        for i in range(3):
            status, _, body = get(proxy.port, "/x", "local.test")
            assert status == 200, (status, body, proxy.output()[-2000:])
            assert json.loads(body)["backend"] == "ext"
        # a name that does not resolve: the request fails as Traefik's dial does (502)
        assert get(proxy.port, "/", "nowhere.test")[0] == 502
        # a Service without endpoints kept by allowEmptyServices: 503, as Traefik
        assert get(proxy.port, "/", "empty.test")[0] == 503
    finally:
        proxy.stop()
        be.close()


def test_fenced_endpoints_receive_sticky_traffic_only(tmp_path):
    ready = Backend("ready", host="127.0.0.1")
    fenced = Backend("fenced", host="127.0.0.2")
    m = """---
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
ports: [{name: http, port: %d}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-2
  namespace: default
  labels: {kubernetes.io/service-name: app}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints: [{addresses: ["127.0.0.2"], conditions: {ready: false, serving: true,
                                                    terminating: true}}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: main, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`sticky.test`)
      kind: Rule
      services: [{name: app, port: 80, sticky: {cookie: {name: s}}}]
    - match: Host(`plain.test`)
      kind: Rule
      services: [{name: app, port: 80}]
    - match: Host(`p2c.test`)
      kind: Rule
      services: [{name: app, port: 80, strategy: p2c, sticky: {cookie: {name: s}}}]
""" % (ready.port, fenced.port)
    proxy = Pyroute(tmp_path, m)
    try:
        proxy.start()
        for host in ("plain.test", "sticky.test", "p2c.test"):
            for _ in range(6):
                status, headers, body = get(proxy.port, "/", host)
                assert status == 200
                assert json.loads(body)["backend"] == "ready", host   # never a new session
        # an existing session on the terminating endpoint keeps reaching it
        cookie = "s=%s" % sticky_value("http://127.0.0.2:%d" % fenced.port)
        for host in ("sticky.test", "p2c.test"):
            status, _, body = request(proxy.port, (
                "GET / HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n\r\n" % (host, cookie)).encode())
            assert status == 200 and json.loads(body)["backend"] == "fenced", host
    finally:
        proxy.stop()
        ready.close()
        fenced.close()


def test_mirrors_to_an_external_name_are_resolved_per_connection(tmp_path):
    main, copy = Backend("main"), Backend("copy")
    m = EXTERNAL % ("main", "localhost", main.port) + EXTERNAL % ("copy", "localhost", copy.port)
    m += """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: mirrored, namespace: default}
spec:
  mirroring:
    name: main
    port: %d
    mirrors: [{name: copy, port: %d, percent: 100}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`m.test`)
      kind: Rule
      services: [{name: mirrored, kind: TraefikService}]
""" % (main.port, copy.port)
    proxy = Pyroute(tmp_path, m)
    proxy.static.write_text(static_yaml(proxy.port) + PROVIDERS)
    try:
        proxy.start()
        status, _, body = get(proxy.port, "/m", "m.test")
        assert status == 200 and json.loads(body)["backend"] == "main", proxy.output()[-2000:]
        end = time.time() + 5
        while not copy.requests and time.time() < end:
            time.sleep(0.05)
        assert [r[1] for r in copy.requests] == ["/m"]
    finally:
        proxy.stop()
        main.close()
        copy.close()
