"""End to end through ``pyroute run``: the small middleware kinds (encodedCharacters,
passTLSClientCert, contentType) and how a Middleware pyroute cannot run is reported.

One ``pyroute run`` serves every case (plain HTTP and TLS on one entry point that trusts
127.0.0.1; untrusted requests leave from 127.0.0.3). Cases ported from Traefik's tests
(pkg/middlewares/<kind>/*_test.go) are translated to requests and to what the backend
receives or the client gets back."""
import base64
import datetime
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from urllib.parse import unquote_plus

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response

TRUSTED, UNTRUSTED = "127.0.0.1", "127.0.0.3"


def mw(name, spec):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: default}\nspec: %s\n" % (name, spec))


def route(name, host, middlewares, tls=None, service="be"):
    out = ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
           "metadata: {name: %s, namespace: default}\nspec:\n  entryPoints: [web]\n"
           "  routes:\n    - match: Host(`%s`)\n      kind: Rule\n"
           "      services: [{name: %s, port: 80}]\n" % (name, host, service))
    if middlewares:
        out += "      middlewares: [%s]\n" % ", ".join("{name: %s}" % m for m in middlewares)
    if tls is not None:
        out += "  tls: %s\n" % tls
    return out


# ---- encodedCharacters (pkg/middlewares/encodedcharacters/encoded_characters_test.go) --------

ENCODED = {                       # option -> the escape Traefik's case sends
    "Slash": "%2f", "BackSlash": "%5c", "NullCharacter": "%00", "Semicolon": "%3b",
    "Percent": "%25", "QuestionMark": "%3f", "Hash": "%23",
}


def encoded_manifests():
    out = mw("ec-none", "{encodedCharacters: {}}") + route("ec-none", "ec-none.test", ["ec-none"])
    for opt in ENCODED:
        name = "ec-" + opt.lower()
        out += mw(name, "{encodedCharacters: {allowEncoded%s: true}}" % opt)
        out += route(name, name + ".test", [name])
    out += route("ec-off", "ec-off.test", [])
    return out


# ---- passTLSClientCert (pkg/middlewares/passtlsclientcert/pass_tls_client_cert_test.go) -----
# Certificates equivalent to the test's signingCA, minimalCheeseCrt and completeCheeseCrt:
# the same subjects and issuers (attribute by attribute, in the same order), serial numbers,
# validity and SANs, with keys of our own, so that the client can present them.

DC = x509.ObjectIdentifier("0.9.2342.19200300.100.1.25")
C, ST, L, O, OU, CN, EMAIL = (NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME,
                              NameOID.LOCALITY_NAME, NameOID.ORGANIZATION_NAME,
                              NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME,
                              NameOID.EMAIL_ADDRESS)


def _name(*pairs):
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(o, v)])
                      for o, v in pairs])


SIGNING_CA = _name(
    (DC, "org"), (DC, "cheese"), (O, "Cheese"), (O, "Cheese 2"), (OU, "Simple Signing Section"),
    (OU, "Simple Signing Section 2"), (CN, "Simple Signing CA"), (CN, "Simple Signing CA 2"),
    (C, "FR"), (C, "US"), (L, "TOULOUSE"), (L, "LYON"), (ST, "Signing State"),
    (ST, "Signing State 2"), (EMAIL, "simple@signing.com"), (EMAIL, "simple2@signing.com"))
ROOT_CA = _name(
    (DC, "org"), (DC, "cheese"), (O, "Cheese"), (O, "Cheese 2"), (OU, "Cheese Section"),
    (OU, "Cheese Section 2"), (CN, "Simple Root CA"), (CN, "Simple Root CA 2"), (C, "FR"),
    (C, "US"), (L, "TOULOUSE"), (L, "LYON"), (ST, "Root State"), (ST, "Root State 2"),
    (EMAIL, "root@signing.com"), (EMAIL, "root2@signing.com"))
COMPLETE = _name(
    (DC, "org"), (DC, "cheese"), (O, "Cheese"), (O, "Cheese 2"), (OU, "Simple Signing Section"),
    (OU, "Simple Signing Section 2"), (CN, "*.cheese.org"), (CN, "*.cheese.com"), (C, "FR"),
    (C, "US"), (L, "TOULOUSE"), (L, "LYON"), (ST, "Cheese org state"),
    (ST, "Cheese com state"), (EMAIL, "cert@cheese.org"), (EMAIL, "cert@scheese.com"))
MINIMAL = _name((C, "FR"), (ST, "Some-State"), (O, "Cheese"))


def _cert(subject, issuer, signer, serial, nb, na, sans=None, ca=False):
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(datetime.datetime.fromtimestamp(nb, datetime.timezone.utc))
         .not_valid_after(datetime.datetime.fromtimestamp(na, datetime.timezone.utc))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), True))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), False)
    return b.sign(signer or key, hashes.SHA256()), key


def cheese_certs():
    ca, ca_key = _cert(SIGNING_CA, ROOT_CA, None, 2, 1544094609, 1859454609, ca=True)
    minimal, minimal_key = _cert(MINIMAL, SIGNING_CA, ca_key,
                                 481535886039632329873080491016862977516759989652,
                                 1544094636, 1632568236)
    complete, complete_key = _cert(COMPLETE, SIGNING_CA, ca_key, 1, 1544094616, 1607166616, [
        x509.DNSName("*.cheese.org"), x509.DNSName("*.cheese.net"),
        x509.DNSName("*.cheese.com"), x509.IPAddress(ipaddress.ip_address("10.0.1.0")),
        x509.IPAddress(ipaddress.ip_address("10.0.1.2")), x509.RFC822Name("test@cheese.org"),
        x509.RFC822Name("test@cheese.net")])
    return {"minimal": (minimal, minimal_key), "complete": (complete, complete_key)}


# Traefik's expected values (TestPassTLSClientCert_certInfo)
MINIMAL_ALL_INFO = ";".join([
    'Subject="C=FR,ST=Some-State,O=Cheese"',
    'Issuer="DC=org,DC=cheese,C=FR,C=US,ST=Signing State,ST=Signing State 2,L=TOULOUSE,'
    'L=LYON,O=Cheese,O=Cheese 2,CN=Simple Signing CA 2"',
    'SerialNumber="481535886039632329873080491016862977516759989652"',
    'NB="1544094636"',
    'NA="1632568236"'])
COMPLETE_ALL_INFO = ";".join([
    'Subject="DC=org,DC=cheese,C=FR,C=US,ST=Cheese org state,ST=Cheese com state,L=TOULOUSE,'
    'L=LYON,O=Cheese,O=Cheese 2,OU=Simple Signing Section,OU=Simple Signing Section 2,'
    'CN=*.cheese.com"',
    'Issuer="DC=org,DC=cheese,C=FR,C=US,ST=Signing State,ST=Signing State 2,L=TOULOUSE,'
    'L=LYON,O=Cheese,O=Cheese 2,CN=Simple Signing CA 2"',
    'SerialNumber="1"',
    'NB="1544094616"',
    'NA="1607166616"',
    'SAN="*.cheese.org,*.cheese.net,*.cheese.com,test@cheese.org,test@cheese.net,10.0.1.0,'
    '10.0.1.2"'])

ALL_INFO = ("{notAfter: true, notBefore: true, sans: true, serialNumber: true, subject: "
            "{country: true, province: true, locality: true, organization: true, "
            "organizationalUnit: true, commonName: true, serialNumber: true, "
            "domainComponent: true}, issuer: {country: true, province: true, locality: true, "
            "organization: true, commonName: true, serialNumber: true, domainComponent: true}}")
PASS_TLS = {    # middleware -> its spec
    "pt-none": "{}",
    "pt-pem": "{pem: true}",
    "pt-all": "{info: %s}" % ALL_INFO,
    "pt-some": "{info: {notAfter: true, sans: true, subject: {organization: true}, "
               "issuer: {country: true}}}",
    "pt-nonexistent": "{info: {notAfter: true, sans: true, subject: {organization: true, "
                      "organizationalUnit: true}, issuer: {country: true}}}",
    "pt-subject-all": "{info: {subject: {commonName: true, organization: true, "
                      "organizationalUnit: true, locality: true, province: true, "
                      "country: true, serialNumber: true}}}",
    "pt-empty-subject": "{pem: false, info: {subject: {}}}",
    "pt-both": "{pem: true, info: %s}" % ALL_INFO,
}


def secret(name, leaf):
    data = {"tls.crt": b"".join(b.bytes() for b in leaf.cert_chain_pems),
            "tls.key": leaf.private_key_pem.bytes()}
    body = "".join("  %s: %s\n" % (k, base64.b64encode(v).decode()) for k, v in data.items())
    return ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: default}\n"
            "type: kubernetes.io/tls\ndata:\n%s" % (name, body))


def pass_tls_manifests(server_leaf):
    out = secret("server-cert", server_leaf)
    out += ("---\napiVersion: traefik.io/v1alpha1\nkind: TLSOption\n"
            "metadata: {name: mtls, namespace: default}\n"
            "spec: {clientAuth: {clientAuthType: RequireAnyClientCert}}\n")
    tls = "{secretName: server-cert, options: {name: mtls}}"
    for name, spec in PASS_TLS.items():
        out += mw(name, "{passTLSClientCert: %s}" % spec)
        out += route(name, name + ".example.com", [name], tls=tls)
        # the same middleware on a plain-HTTP router: "No TLS" cases
        out += route(name + "-plain", name + ".plain.test", [name])
    # a TLS router whose option asks for no client certificate
    out += route("pt-nocert", "pt-nocert.example.com", ["pt-both"],
                 tls="{secretName: server-cert}")
    return out


# ---- contentType (pkg/middlewares/contenttype/content_type_test.go) -------------------------

HTML = b"<!DOCTYPE HTML><html><body>hi</body></html>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
RAW_ANSWERS = {   # path -> (head lines after the status line, body, pause before the body)
    "/test": (b"Content-Length: 4\r\n", b"Test", 0),
    "/json": (b"Content-Type: application/json\r\nContent-Length: 4\r\n", b"Test", 0),
    "/html": (b"Content-Length: %d\r\n" % len(HTML), HTML, 0),
    "/png": (b"Content-Length: %d\r\n" % len(PNG), PNG, 0),
    "/empty": (b"Content-Length: 0\r\n", b"", 0),
    "/empty-ct": (b"Content-Type: \r\nContent-Length: 4\r\n", b"Test", 0),
    "/gzip": (b"Content-Encoding: gzip\r\nContent-Length: 4\r\n", b"Test", 0),
    "/no-content": (b"", b"", 0),
    # the head first, the body later: the head waits for its first bytes
    "/late-html": (b"Content-Length: %d\r\n" % len(HTML), HTML, 0.3),
    "/late-chunked": (b"Transfer-Encoding: chunked\r\n",
                      b"%x\r\n%s\r\n0\r\n\r\n" % (len(HTML), HTML), 0.3),
    "/close-html": (b"Connection: close\r\n", HTML, 0.3),
    "/close-empty": (b"Connection: close\r\n", b"", 0.3),
}


class RawBackend:
    """Answers RAW_ANSWERS byte for byte (no Content-Type unless the case has one)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                method, path = head.split(b" ")[:2]
                lines, body, pause = RAW_ANSWERS[path.decode()]
                status = b"204 No Content" if path == b"/no-content" else b"200 OK"
                conn.sendall(b"HTTP/1.1 " + status + b"\r\n" + lines + b"\r\n")
                if method == b"HEAD":
                    continue
                if pause:
                    time.sleep(pause)
                conn.sendall(body)
                if b"Connection: close" in lines:
                    return

    def close(self):
        self.sock.close()


def content_type_manifests(raw_port):
    return ("---\n" + backend_service("raw", [raw_port])
            + mw("ct", "{contentType: {}}") + mw("ct-auto", "{contentType: {autoDetect: true}}")
            + mw("ct-off", "{contentType: {autoDetect: false}}")
            + mw("ct-hdr", "{headers: {customResponseHeaders: {Content-Type: text/x-set}}}")
            + route("ct", "ct.test", ["ct"], service="raw")
            + route("ct-none", "ct-none.test", [], service="raw")
            + route("ct-auto", "ct-auto.test", ["ct-auto"], service="raw")
            + route("ct-off", "ct-off.test", ["ct-off"], service="raw")
            + route("ct-hdr", "ct-hdr.test", ["ct-hdr", "ct"], service="raw")
            + route("ct-ec", "ct-ec.test", ["ct", "ec-none"], service="raw"))


# ---- reporting: kinds pyroute cannot run --------------------------------------------------

def _unsupported_kind():
    """A kind pyroute does not run yet (with a spec its CRD schema accepts), or None once it
    runs them all."""
    from pyroute.middlewares import KINDS
    for kind, spec in (("grpcWeb", "{allowOrigins: [\"*\"]}"),
                       ("buffering", "{maxRequestBodyBytes: 1000}"),
                       ("compress", "{minResponseBodyBytes: 100}")):
        if kind not in KINDS:
            return kind, spec
    return None


KIND = _unsupported_kind()
UNSUPPORTED = (mw("rr", "{%s: %s}" % KIND if KIND else "{addPrefix: {prefix: /p}}")
               + mw("jwt", "{plugin: {jwt: {signingSecret: s}}}")
               + route("uses-rr", "rr.test", ["rr"]) + route("uses-jwt", "jwt.test", ["jwt"]))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mw_small")
    be = Backend("be")
    raw = RawBackend()
    server_ca = trustme.CA()
    certs = cheese_certs()
    manifests = (backend_service("be", [be.port]) + encoded_manifests() + UNSUPPORTED
                 + pass_tls_manifests(server_ca.issue_cert("*.example.com"))
                 + content_type_manifests(raw.port))
    proxy = Pyroute(tmp, manifests, workers=1, trusted=(TRUSTED,))
    proxy.start()
    yield {"port": proxy.port, "be": be, "proxy": proxy, "dir": proxy.mdir,
           "static": proxy.static, "tmp": tmp, "certs": certs, "server_ca": server_ca}
    proxy.stop()
    be.close()
    raw.close()


def client_ctx(env, chain=()):
    """A TLS client context presenting ``chain`` (labels of cheese_certs(), its own first)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    env["server_ca"].configure_trust(ctx)
    if chain:
        certs = env["certs"]
        pem = b"".join(certs[c][0].public_bytes(serialization.Encoding.PEM) for c in chain)
        crt = env["tmp"] / ("chain-%s.crt" % "-".join(chain))
        key = env["tmp"] / ("%s.key" % chain[0])
        crt.write_bytes(pem)
        key.write_bytes(certs[chain[0]][1].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        ctx.load_cert_chain(str(crt), str(key))
    return ctx


def tls_exchange(env, ctx, host, extra="", source=TRUSTED, session=None, requests=1):
    """Requests over one TLS connection: [(status, headers, body)], and its session."""
    out = []
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10,
                                  source_address=(source, 0)) as raw:
        with ctx.wrap_socket(raw, server_hostname=host, session=session) as s:
            for _ in range(requests):
                s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (host, extra)).encode())
                status, headers, body, _ = read_response(s)
                out.append((status, headers, body))
            return out, s.session, s.session_reused


def forwarded(body):
    """The X-Forwarded-Tls-Client-Cert* lines the backend received: {lower name: [values]}."""
    out = {}
    for name, value in json.loads(body)["headers"]:
        if name.lower().replace("_", "-").startswith("x-forwarded-tls-client-cert"):
            out.setdefault(name.lower(), []).append(value)
    return out


def der_b64(env, *labels):
    return ",".join(base64.b64encode(env["certs"][c][0].public_bytes(
        serialization.Encoding.DER)).decode() for c in labels)


def send(env, raw, source=TRUSTED):
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10,
                                  source_address=(source, 0)) as s:
        s.sendall(raw if isinstance(raw, bytes) else raw.encode("latin-1"))
        status, headers, body, _ = read_response(s)
        return status, headers, body


def get(env, host, path="/", extra="", source=TRUSTED):
    return send(env, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, extra), source)


def test_encoded_characters_denied_by_default_and_allowed_one_by_one(env):
    seen = len(env["be"].received)
    for opt, esc in ENCODED.items():
        path = "/foo%sbar" % esc
        # "deny encoded X": encodedCharacters {} refuses every one of them
        status, headers, body = get(env, "ec-none.test", path)
        assert (status, headers.get("content-length"), body) == (400, "0", b""), (opt, status)
        for esc2 in (esc, esc.upper()):
            # "allow encoded X": only the allowed escape passes, in either case
            status, _, body = get(env, "ec-%s.test" % opt.lower(), "/foo%sbar" % esc2)
            assert status == 200, (opt, esc2, status)
            assert json.loads(body)["target"].lower() == path, (opt, json.loads(body))
        for other, esc3 in ENCODED.items():
            if other != opt:
                assert get(env, "ec-%s.test" % opt.lower(), "/a%sb" % esc3)[0] == 400, (
                    opt, other)
    # every refused request stopped at pyroute: the backend saw only the allowed ones
    assert len(env["be"].received) - seen == 2 * len(ENCODED)
    # a router without the middleware: the entry point's defaults (Traefik v3.7) allow them
    for esc in ENCODED.values():
        assert get(env, "ec-off.test", "/foo%sbar" % esc)[0] == 200, esc
    # Traefik skips a checked escape whole: %252F is "%25" then "2F", refused for the %25
    assert get(env, "ec-slash.test", "/a%252Fb")[0] == 400
    assert get(env, "ec-percent.test", "/a%252fb")[0] == 200
    assert get(env, "ec-none.test", "/plain/path")[0] == 200
    # pyroute explain reaches the same verdict, with the server's own middleware object
    for host, path, status in (("ec-none.test", "/foo%2fbar", "400"),
                               ("ec-slash.test", "/foo%2fbar", None)):
        out = subprocess.run([sys.executable, "-m", "pyroute", "explain", "-c",
                              str(env["static"]), str(env["dir"]), "GET",
                              "http://%s%s" % (host, path)],
                             capture_output=True, text=True, timeout=120).stdout
        lines = [ln.split() for ln in out.splitlines()]
        assert (["status", status] in lines) if status else not any(
            ln[:2] == ["status", "400"] for ln in lines), out


def test_unsupported_kinds_disable_their_routers_and_are_reported(env):
    out = env["proxy"].output()
    cfg = str(env["dir"] / "config.yaml")
    # the start-up log names the Middleware's file, line, object and field
    assert ("%s:" % cfg) in out
    if KIND:
        assert ("Middleware default/rr: spec.%s: middleware kind '%s' is not supported by "
                "pyroute yet" % (KIND[0], KIND[0])) in out
    assert ("Middleware default/jwt: spec.plugin.jwt: plugin: unknown plugin type: jwt") in out
    # their routers are not served (404: no router), the others are
    assert get(env, "rr.test", "/a")[0] == (404 if KIND else 200)
    assert get(env, "jwt.test")[0] == 404
    assert get(env, "ec-off.test")[0] == 200
    # pyroute check says the same, and --dump shows the Middlewares disabled
    cmd = [sys.executable, "-m", "pyroute", "check", "-c", str(env["static"]), str(env["dir"])]
    chk = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert chk.returncode == 1
    lines = chk.stdout.splitlines()
    assert not KIND or any(ln.startswith(cfg + ":") and ln.endswith(
        "Middleware default/rr: spec.%s: middleware kind '%s' is not supported by pyroute "
        "yet" % (KIND[0], KIND[0])) for ln in lines), lines
    assert any(ln.startswith(cfg + ":") and "Middleware default/jwt: spec.plugin.jwt: plugin: "
               "unknown plugin type: jwt (jwt is Traefik Hub's JWT Authentication middleware"
               in ln for ln in lines), lines
    assert any("IngressRoute default/uses-jwt: spec.routes[0].middlewares[0]: middleware "
               "'default-jwt@kubernetescrd' is disabled" in ln for ln in lines), lines
    dump = json.loads(subprocess.run(cmd + ["--dump"], capture_output=True, text=True,
                                     timeout=120).stdout)
    mws = dump["http"]["middlewares"]
    for name in ("default-rr@kubernetescrd",) * bool(KIND) + ("default-jwt@kubernetescrd",):
        assert mws[name]["status"] == "disabled" and mws[name]["error"], mws[name]
    assert mws["default-jwt@kubernetescrd"]["plugin"] == {"jwt": {"signingSecret": "s"}}
    assert mws["default-ec-none@kubernetescrd"]["status"] == "enabled"
    uses = [r for k, r in dump["http"]["routers"].items() if k.startswith("default-uses-")]
    assert len(uses) == 2 and sum(r["status"] == "disabled" for r in uses) == 1 + bool(KIND)


def pt(env, mw, chain=(), extra="", source=TRUSTED):
    """What the backend got through middleware ``mw``: over TLS presenting ``chain``, or over
    plain HTTP when ``chain`` is None. Returns (forwarded lines, client response headers)."""
    if chain is None:
        status, headers, body = get(env, mw + ".plain.test", "/", extra, source)
    else:
        (status, headers, body), = tls_exchange(env, client_ctx(env, chain),
                                                mw + ".example.com", extra, source)[0]
    assert status == 200, (mw, status, body)
    assert not any(h.startswith("x-forwarded-tls-client-cert") for h in headers), headers
    return forwarded(body)


def test_pass_tls_client_cert_pem(env):
    # TestPassTLSClientCert_PEM
    assert pt(env, "pt-none", None) == {}                       # No TLS, no option
    assert pt(env, "pt-none", ["minimal"]) == {}                # TLS, no option
    assert pt(env, "pt-pem", None) == {}                        # No TLS, with pem option true
    assert pt(env, "pt-pem", ["minimal"]) == {                  # simple certificate
        "x-forwarded-tls-client-cert": [der_b64(env, "minimal")]}
    assert pt(env, "pt-pem", ["complete"]) == {                 # complete certificate
        "x-forwarded-tls-client-cert": [der_b64(env, "complete")]}
    # two certificates: the client's own, then the one it sent with it, ","-joined
    assert pt(env, "pt-pem", ["minimal", "complete"]) == {
        "x-forwarded-tls-client-cert": [der_b64(env, "minimal", "complete")]}


def info(env, mw, chain):
    lines = pt(env, mw, chain)
    assert list(lines) == ["x-forwarded-tls-client-cert-info"], lines
    (value,) = lines["x-forwarded-tls-client-cert-info"]
    return value


def test_pass_tls_client_cert_info(env):
    # TestPassTLSClientCert_certInfo
    assert pt(env, "pt-none", None) == {}                       # No TLS, no option
    assert pt(env, "pt-none", ["minimal"]) == {}                # TLS, no option
    assert pt(env, "pt-subject-all", None) == {}                # No TLS, with subject info
    assert pt(env, "pt-empty-subject", None) == {}              # No TLS, empty subject info
    # TLS with simple certificate, with all info
    assert unquote_plus(info(env, "pt-all", ["minimal"])) == MINIMAL_ALL_INFO
    # with some info; requesting non-existent info (no OU in this certificate)
    some = 'Subject="O=Cheese";Issuer="C=FR,C=US";NA="1632568236"'
    assert unquote_plus(info(env, "pt-some", ["minimal"])) == some
    assert unquote_plus(info(env, "pt-nonexistent", ["minimal"])) == some
    # TLS with complete certificate, with all info; with 2 certificates
    assert unquote_plus(info(env, "pt-all", ["complete"])) == COMPLETE_ALL_INFO
    assert unquote_plus(info(env, "pt-all", ["minimal", "complete"])) == \
        MINIMAL_ALL_INFO + "," + COMPLETE_ALL_INFO
    # the value is escaped as Go's url.QueryEscape does it (space: '+', the rest %XX)
    assert info(env, "pt-some", ["minimal"]) == (
        "Subject%3D%22O%3DCheese%22%3BIssuer%3D%22C%3DFR%2CC%3DUS%22%3BNA%3D%221632568236%22")
    assert info(env, "pt-all", ["minimal"]).startswith(
        "Subject%3D%22C%3DFR%2CST%3DSome-State%2CO%3DCheese%22%3BIssuer%3D%22DC%3Dorg%2C"
        "DC%3Dcheese%2CC%3DFR%2CC%3DUS%2CST%3DSigning+State%2CST%3DSigning+State+2%2C")
    # an info section that selects nothing still sets the header (empty), as Header.Set("")
    assert info(env, "pt-empty-subject", ["complete"]) == ""
    assert info(env, "pt-subject-all", ["complete"]) == (
        "Subject%3D%22C%3DFR%2CC%3DUS%2CST%3DCheese+org+state%2CST%3DCheese+com+state%2C"
        "L%3DTOULOUSE%2CL%3DLYON%2CO%3DCheese%2CO%3DCheese+2%2COU%3DSimple+Signing+Section%2C"
        "OU%3DSimple+Signing+Section+2%2CCN%3D%2A.cheese.com%22")


SPOOF = ("X-Forwarded-Tls-Client-Cert: forged\r\nX-Forwarded-Tls-Client-Cert-Info: forged\r\n"
         "X_Forwarded_Tls_Client_Cert: forged\r\n")


def test_pass_tls_client_cert_spoofed_headers(env):
    ours = {"x-forwarded-tls-client-cert": [der_b64(env, "complete")],
            "x-forwarded-tls-client-cert-info": [
                info(env, "pt-all", ["complete"])]}
    # an untrusted client's own headers never reach the backend: without a certificate...
    assert pt(env, "pt-both", None, SPOOF, UNTRUSTED) == {}
    (status, _, body), = tls_exchange(env, client_ctx(env), "pt-nocert.example.com", SPOOF,
                                      UNTRUSTED)[0]
    assert status == 200 and forwarded(body) == {}
    # ... and with one, only the values from its certificate do
    assert pt(env, "pt-both", ["complete"], SPOOF, UNTRUSTED) == ours
    # a trusted peer's values are replaced when the connection has a certificate
    # (Header.Set), and kept when it has none (Traefik: nothing to extract)
    # (Go's Header.Set replaces the canonical name only: a trusted peer's "_" spelling stays)
    assert pt(env, "pt-both", ["complete"], SPOOF, TRUSTED) == dict(
        ours, x_forwarded_tls_client_cert=["forged"])
    assert pt(env, "pt-both", None, SPOOF, TRUSTED) == {
        "x-forwarded-tls-client-cert": ["forged"],
        "x-forwarded-tls-client-cert-info": ["forged"],
        "x_forwarded_tls_client_cert": ["forged"]}


def test_pass_tls_client_cert_keep_alive_and_resumption(env):
    ctx = client_ctx(env, ["minimal", "complete"])
    want = {"x-forwarded-tls-client-cert": [der_b64(env, "minimal", "complete")]}
    first, session, _ = tls_exchange(env, ctx, "pt-pem.example.com", requests=3)
    assert [forwarded(b) for _, _, b in first] == [want] * 3
    # a resumed session: the certificates of the full handshake (Go keeps them in tickets)
    again, _, reused = tls_exchange(env, ctx, "pt-pem.example.com", session=session)
    assert reused
    assert forwarded(again[0][2]) == want


def ct(env, host, path, method="GET"):
    """(status, Content-Type the client got or None, body)."""
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(("%s %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (method, path, host)).encode())
        status, headers, body, _ = read_response(s, method == "HEAD")
        return status, headers.get("content-type"), body


def test_content_type_traefik_cases(env):
    # TestAutoDetection
    assert ct(env, "ct-none.test", "/json") == (200, "application/json", b"Test")
    assert ct(env, "ct-none.test", "/test") == (200, None, b"Test")      # no sniffing by default
    assert ct(env, "ct.test", "/json") == (200, "application/json", b"Test")
    assert ct(env, "ct.test", "/test") == (200, "text/plain; charset=utf-8", b"Test")


def test_content_type_detection(env):
    assert ct(env, "ct.test", "/html") == (200, "text/html; charset=utf-8", HTML)
    assert ct(env, "ct.test", "/png") == (200, "image/png", PNG)
    assert ct(env, "ct-none.test", "/html") == (200, None, HTML)
    # the head waits for the body's first bytes: Content-Length, chunked, until close
    assert ct(env, "ct.test", "/late-html") == (200, "text/html; charset=utf-8", HTML)
    assert ct(env, "ct.test", "/late-chunked") == (200, "text/html; charset=utf-8", HTML)
    assert ct(env, "ct.test", "/close-html") == (200, "text/html; charset=utf-8", HTML)
    # Go sniffs only bytes that are written: no body, HEAD, 204 -> no Content-Type
    assert ct(env, "ct.test", "/empty") == (200, None, b"")
    assert ct(env, "ct.test", "/close-empty") == (200, None, b"")
    assert ct(env, "ct.test", "/html", "HEAD")[:2] == (200, None)
    assert ct(env, "ct.test", "/no-content")[:2] == (204, None)
    # a Content-Type line (even empty) or a Content-Encoding: left alone
    assert ct(env, "ct.test", "/empty-ct") == (200, "", b"Test")
    assert ct(env, "ct.test", "/gzip") == (200, None, b"Test")
    # a Content-Type set by another middleware wins (Traefik: the middleware has no effect)
    assert ct(env, "ct-hdr.test", "/html") == (200, "text/x-set", HTML)
    # autoDetect (deprecated): true sniffs, false turns the middleware off
    assert ct(env, "ct-auto.test", "/html")[1] == "text/html; charset=utf-8"
    assert ct(env, "ct-off.test", "/html") == (200, None, HTML)
    # an answer of a middleware after it with no body (encodedCharacters' 400): none
    assert ct(env, "ct-ec.test", "/a%2fb") == (400, None, b"")
    assert ct(env, "ct-ec.test", "/html")[1] == "text/html; charset=utf-8"
    out = env["proxy"].output()
    assert ("Middleware default/ct-off: spec.contentType.autoDetect: warning: AutoDetect "
            "option is deprecated") in out
    assert "Middleware default/ct-auto: spec.contentType.autoDetect: warning: AutoDetect" in out
