"""End to end: forwardAuth as Traefik v3.7 runs it (pkg/middlewares/auth/forward.go), through a
real ``pyroute run``, a real scripted auth server (tests/e2e_authserver.py) and real backends.

The cases of Traefik's forward_test.go are ported as requests and answers: its
``TestForwardAuth_writeHeader`` / ``TestForwardAuth_oldWriteHeader`` tables check the header
map of the auth request; here the auth server records what arrived on the wire, so each case
expects what Go's client writes for that map (see ``wire_expectations``): its own ``Host`` and
``Accept-Encoding: gzip``, ``User-Agent: Go-http-client/1.1`` when the map has no User-Agent
(none when it holds an empty one), and what the entry point in front adds (X-Forwarded-For
with the peer's address, X-Real-Ip, X-Forwarded-Server, X-Forwarded-Port) where the middleware
keeps it. Traefik's unit tests build the request without an entry point; its cases that rely
on the client's X-Forwarded-* surviving are sent from a peer the entry point trusts
(``forwardedHeaders.trustedIPs``: 127.0.0.0/26), as they would have to be in Traefik.
Untrusted peers (the spoofing cases) leave from 127.0.0.100.
"""
import gzip
import json
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import trustme

from e2e_authserver import ScriptedServer, go_error
from e2e_backend import Backend
from e2e_support import REPO, Pyroute, backend_service

UNTRUSTED = "127.0.0.100"
TABLE_BASE = 10          # table case i is sent from 127.0.0.(10 + i)


# ---- helpers ---------------------------------------------------------------------------------

def mw(name, spec):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: default}\nspec:\n  forwardAuth: %s\n"
            % (name, spec))


def exchange(port, raw, source="127.0.0.1", timeout=10.0):
    """One request on a new connection: (status, [(name, value)], body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        s.sendall(raw if isinstance(raw, bytes) else raw.encode("latin-1"))
        return read_full(s, head_request=raw.startswith(b"HEAD " if isinstance(raw, bytes)
                                                        else "HEAD "))


def read_full(s, head_request=False):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a full head: %r" % data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields.append((k, v.strip()))
    low = {k.lower(): v for k, v in fields}
    if head_request or status in (204, 304):
        return status, fields, b""
    if "content-length" in low:
        n = int(low["content-length"])
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, fields, rest[:n]
    if "chunked" in low.get("transfer-encoding", ""):
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += s.recv(65536)
            line, rest = rest.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += s.recv(65536)
            if size == 0:
                return status, fields, body
            body += rest[:size]
            rest = rest[size + 2:]
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return status, fields, rest
        rest += chunk


def values(fields, name):
    return [v for k, v in fields if k.lower() == name.lower()]


def first(fields, name):
    v = values(fields, name)
    return v[0] if v else None


def get(env, host, path="/", extra="", source="127.0.0.1", method="GET", body=None,
        version="HTTP/1.1"):
    raw = ("%s %s %s\r\n" % (method, path, version)
           + ("Host: %s\r\n" % host if host is not None else "") + extra)
    if body is not None:
        raw += "Content-Length: %d\r\n" % len(body)
    raw = (raw + "\r\n").encode("latin-1") + (body or b"")
    return exchange(env["port"], raw, source)


def echoed(body):
    return json.loads(body)


def echo_values(doc, name):
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


# ---- the Traefik writeHeader / oldWriteHeader tables ---------------------------------------

FWD = "X-Forwarded-"
HOP_REQUEST = {
    # forward.Connection, KeepAlive, ProxyAuthenticate, ProxyAuthorization, Te, Trailers,
    # Upgrade (Traefik's table also sends "Transfer-Encoding: TransferEncoding", which Go's
    # server, and pyroute's, refuse with 501 before any middleware: left out)
    "Connection": "Connection", "Keep-Alive": "KeepAlive",
    "Proxy-Authenticate": "ProxyAuthenticate", "Proxy-Authorization": "ProxyAuthorization",
    "Te": "Te", "Trailers": "Trailers", "Upgrade": "Upgrade",
    "X-CustomHeader": "CustomHeader",
}
STD = {FWD + "Proto": "http", FWD + "Host": "foo.bar", FWD + "Uri": "/path?q=1",
       FWD + "Method": "GET", FWD + "Port": "80"}
STD_OLD = {k: v for k, v in STD.items() if k != FWD + "Port"}

# (desc, headers, authRequestHeaders, trustForwardHeader (None: unset, the legacy writer),
#  emptyHost, expectedHeaders, checkForUnexpectedHeaders)
WRITE_HEADER = [
    ("trust forward header", {"Accept": "application/json", FWD + "Host": "fii.bir"}, None,
     True, False, {"Accept": "application/json", FWD + "Host": "fii.bir"}, False),
    ("not trust forward header", {"Accept": "application/json", FWD + "Host": "fii.bir"}, None,
     False, False, {"Accept": "application/json", FWD + "Host": "foo.bar"}, False),
    ("trust forward header with empty Host",
     {"Accept": "application/json", FWD + "Host": "fii.bir"}, None, True, True,
     {"Accept": "application/json", FWD + "Host": "fii.bir"}, False),
    ("not trust forward header with empty Host",
     {"Accept": "application/json", FWD + "Host": "fii.bir"}, None, False, True,
     {"Accept": "application/json"}, False),
    ("trust forward header with forwarded URI",
     {"Accept": "application/json", FWD + "Host": "fii.bir", FWD + "Uri": "/forward?q=1"},
     None, True, False,
     {"Accept": "application/json", FWD + "Host": "fii.bir", FWD + "Uri": "/forward?q=1"},
     False),
    ("not trust forward header with forward requested URI",
     {"Accept": "application/json", FWD + "Host": "fii.bir", FWD + "Uri": "/forward?q=1"},
     None, False, False,
     {"Accept": "application/json", FWD + "Host": "foo.bar", FWD + "Uri": "/path?q=1"}, False),
    ("trust forward header with forwarded request Method", {FWD + "Method": "OPTIONS"}, None,
     True, False, {FWD + "Method": "OPTIONS"}, False),
    ("not trust forward header with forward request Method", {FWD + "Method": "OPTIONS"},
     None, False, False, {FWD + "Method": "GET"}, False),
    ("remove hop-by-hop headers", HOP_REQUEST, None, False, False,
     dict(STD, **{"X-CustomHeader": "CustomHeader", "Proxy-Authenticate": "ProxyAuthenticate",
                  "Proxy-Authorization": "ProxyAuthorization", "User-Agent": ""}), True),
    ("filter forward request headers",
     {"X-CustomHeader": "CustomHeader", "Content-Type": "multipart/form-data; boundary=---123456"},
     ["X-CustomHeader"], False, False, dict(STD, **{"x-customHeader": "CustomHeader"}), True),
    ("filter forward request headers doesn't add new headers",
     {"X-CustomHeader": "CustomHeader", "Content-Type": "multipart/form-data; boundary=---123456"},
     ["X-CustomHeader", "X-Non-Exists-Header"], False, False,
     dict(STD, **{"X-CustomHeader": "CustomHeader"}), True),
    ("set empty User-Agent header if header is allowed but missing",
     {"X-CustomHeader": "CustomHeader", "Accept": "application/json"},
     ["X-CustomHeader", "Accept", "User-Agent"], False, False,
     dict(STD, **{"X-CustomHeader": "CustomHeader", "Accept": "application/json",
                  "User-Agent": ""}), True),
    ("ignore User-Agent header if header is not allowed and missing",
     {"X-CustomHeader": "CustomHeader", "Accept": "application/json"},
     ["X-CustomHeader", "Accept"], False, False,
     dict(STD, **{"X-CustomHeader": "CustomHeader", "Accept": "application/json"}), True),
    ("set empty User-Agent header if header is missing",
     {"X-CustomHeader": "CustomHeader", "Accept": "application/json"}, None, False, False,
     dict(STD, **{"X-CustomHeader": "CustomHeader", "Accept": "application/json",
                  "User-Agent": ""}), True),
    ("authRequestHeaders and XForwarded are kept if trusted",
     {"X-CustomHeader": "CustomHeader", FWD + "Uri": "/path?q=2"}, ["X-CustomHeader"], True,
     False, dict(STD, **{"X-CustomHeader": "CustomHeader", FWD + "Uri": "/path?q=2"}), True),
    ("X-Forwarded and X_forwarded headers are removed when not trusted",
     {"X-CustomHeader": "CustomHeader", "X_forwarded_for": "127.0.0.1", FWD + "Proto": "xxx"},
     None, False, False, dict(STD, **{"X-CustomHeader": "CustomHeader"}), False),
    ("X-Forwarded-Proto is not used to calculate X-Forwarded-Port if trustForwardHeader=false",
     {"X-CustomHeader": "CustomHeader", FWD + "Proto": "https"}, None, False, False,
     dict(STD), False),
    # TestForwardAuth_oldWriteHeader (trustForwardHeader unset)
    ("old: not trust forward header", {"Accept": "application/json", FWD + "Host": "fii.bir"},
     None, None, False, {"Accept": "application/json", FWD + "Host": "foo.bar"}, False),
    ("old: not trust forward header with empty Host",
     {"Accept": "application/json", FWD + "Host": "fii.bir"}, None, None, True,
     {"Accept": "application/json", FWD + "Host": ""}, False),
    ("old: not trust forward header with forward requested URI",
     {"Accept": "application/json", FWD + "Host": "fii.bir", FWD + "Uri": "/forward?q=1"},
     None, None, False,
     {"Accept": "application/json", FWD + "Host": "foo.bar", FWD + "Uri": "/path?q=1"}, False),
    ("old: not trust forward header with forward request Method", {FWD + "Method": "OPTIONS"},
     None, None, False, {FWD + "Method": "GET"}, False),
    ("old: remove hop-by-hop headers", HOP_REQUEST, None, None, False,
     dict(STD_OLD, **{"X-CustomHeader": "CustomHeader",
                      "Proxy-Authenticate": "ProxyAuthenticate",
                      "Proxy-Authorization": "ProxyAuthorization"}), True),
    ("old: filter forward request headers",
     {"X-CustomHeader": "CustomHeader", "Content-Type": "multipart/form-data; boundary=---123456"},
     ["X-CustomHeader"], None, False, dict(STD_OLD, **{"x-customHeader": "CustomHeader"}), True),
    ("old: filter forward request headers doesn't add new headers",
     {"X-CustomHeader": "CustomHeader", "Content-Type": "multipart/form-data; boundary=---123456"},
     ["X-CustomHeader", "X-Non-Exists-Header"], None, False,
     dict(STD_OLD, **{"X-CustomHeader": "CustomHeader"}), True),
    ("old: X-Forwarded-Prefix is kept for non-breaking behavior",
     {"X-CustomHeader": "CustomHeader", FWD + "Prefix": "foo.bar"}, None, None, False,
     dict(STD_OLD, **{"X-CustomHeader": "CustomHeader", FWD + "Prefix": "foo.bar"}), True),
]


def table_spec(i, auth):
    _, _, arh, trust, _, _, _ = WRITE_HEADER[i]
    spec = "{address: \"%s/wh/%d\"" % (auth.url, i)
    if trust is not None:
        spec += ", trustForwardHeader: %s" % ("true" if trust else "false")
    if arh:
        spec += ", authRequestHeaders: [%s]" % ", ".join(arh)
    return spec + "}"


def wire_expectations(i):
    """What the auth server must see for table case ``i``: {name: value or None (absent)},
    and the names it may see besides (None: anything)."""
    _, _, arh, trust, _, expected, check = WRITE_HEADER[i]
    ip = "127.0.0.%d" % (TABLE_BASE + i)
    want = {}
    for k, v in expected.items():
        # an empty User-Agent in Go's header map: Go's client writes no User-Agent line
        want[k.lower()] = None if (k.lower() == "user-agent" and v == "") else v
    want["x-forwarded-for"] = ip
    if not check:
        return want, None
    extra = {"host", "accept-encoding", "x-forwarded-for"}
    if "user-agent" not in want:
        want["user-agent"] = "Go-http-client/1.1"      # no User-Agent in the map: Go's own
    if trust is True:
        extra |= {"x-real-ip", "x-forwarded-server"}   # the entry point's, XHeadersSet allowed
    elif trust is None and not arh:
        extra |= {"x-real-ip", "x-forwarded-server", "x-forwarded-port"}
    return want, extra | set(want)


# ---- the environment -------------------------------------------------------------------------

GZ_BODY = gzip.compress(b"denied, in gzip")
SIGNIN = "https://auth.example.com/login"


def go_redirect(location, status=302):
    # Go's http.Redirect for a GET: Location, text/html, the <a> body
    body = ('<a href="%s">%s</a>.\n\n' % (location, "Found" if status == 302 else "Moved"))
    return (status, [("Location", location), ("Content-Type", "text/html; charset=utf-8")],
            body.encode())


def auth_script(auth):
    s = auth.script
    s["/allow"] = (200, [], b"")
    s["/fail"] = lambda r: go_error(403, "Forbidden", [("Proxy-Authenticate", "test")])
    s["/success"] = (200, [("X-Auth-User", "user@example.com"), ("X-Auth-Secret", "secret"),
                           ("X-Auth-Group", "group1"), ("X-Auth-Group", "group2"),
                           ("Foo-Bar", "auth-value"), ("Set-Cookie", "authCookie=Auth"),
                           ("Set-Cookie", "authCookieNotAdded=Auth")], b"Success\n")
    s["/redirect"] = go_redirect("http://example.com/redirect-test")
    # TestForwardAuthRemoveHopByHopHeaders: every hop-by-hop header on a redirect
    s["/hop"] = (b"HTTP/1.1 302 Found\r\nConnection: test\r\nKeep-Alive: test\r\nTe: test\r\n"
                 b"Trailers: test\r\nUpgrade: test\r\nLocation: http://example.com/redirect-test"
                 b"\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n"
                 b"\r\n37\r\n<a href=\"http://example.com/redirect-test\">Found</a>.\n\n\r\n"
                 b"0\r\n\r\n")
    s["/failheaders"] = (403, [("Set-Cookie", "example=testing; Path=/"), ("X-Foo", "bar"),
                               ("Date", "Wed, 02 Dec 2026 06:00:00 GMT"),
                               ("Content-Type", "text/plain; charset=utf-8"),
                               ("X-Content-Type-Options", "nosniff")], b"Forbidden\n")
    s["/relative"] = lambda r: go_error(401, "Unauthorized", [("Location", "/index.html")])
    s["/maxresp-403"] = (403, [], b"Forbidden")
    s["/maxresp-200"] = (200, [], b"ok")
    s["/maxresp-200-large"] = (200, [], b"large auth response")
    for code in (401, 403, 200):
        s["/status-%d" % code] = go_error(code, {401: "Unauthorized", 403: "Forbidden",
                                                 200: "OK"}[code])
    s["/method"] = (200, [], b"")
    s["/gzip"] = lambda r: (403, [("Content-Encoding", "gzip"),
                                  ("Content-Type", "text/plain")], GZ_BODY) \
        if "gzip" in (r.get("Accept-Encoding") or "") else (500, [], b"no gzip asked")
    s["/nocontenttype"] = (403, [], b"<html><body>no</body></html>")
    s["/session"] = lambda r: (200, [("X-Auth-User", "alice")], b"") \
        if "session=good" in (r.get("Cookie") or "") else \
        (401, [("Set-Cookie", "session=; Max-Age=0"), ("WWW-Authenticate", "Basic")],
         b"who are you?")
    s["/signin-page"] = lambda r: (302, [("Location", "/login?rd=" + (r.get(FWD + "Uri")
                                                                        or ""))], b"")
    s["/slow"] = (200, [("X-Auth-User", "slowpoke")], b"")
    auth.delay["/slow"] = 2.0
    s["/hangup"] = None
    s["/hold"] = "hold"
    s["/identity"] = lambda r: (200, [("X-Auth-User", "verified-user")], b"") \
        if r.get("Authorization") == "Bearer good" else (200, [], b"")
    s["/body"] = lambda r: (200, [("X-Body-Seen", str(len(r.body)))], b"")


def cookie_backend(be):
    be.script["/"] = (200, [("Set-Cookie", "authCookie=Backend"),
                            ("Set-Cookie", "backendCookie=Backend"),
                            ("Other-Header", "BackendHeaderValue")], b"traefik\n")
    # cookies Go reads and writes back normalised, and one it cannot read (dropped)
    be.script["/norm"] = (200, [("Set-Cookie", "b=1; path=/x; httponly; secure; samesite=lax;"
                                 " max-age=60; domain=.Example.com"),
                                ("Set-Cookie", "bad name=1"),
                                ("Set-Cookie", 'q="a b"')], b"")


def manifests(env):
    auth, echo, cookies, tls_auth = env["auth"], env["echo"], env["cookies"], env["tls_auth"]
    a = auth.url
    m = backend_service("echo", [echo.port]) + "---\n" + backend_service("cookies", [cookies.port])
    m += "---\n" + backend_service("nobody", [env["dead_port"]])
    dead = env["dead_port"]
    specs = {
        "fail": '{address: "%s/fail"}' % a,
        "success": ('{address: "%s/success", authResponseHeaders: [X-Auth-User, X-Auth-Group],'
                    ' authResponseHeadersRegex: "^Foo-", addAuthCookiesToResponse: [authCookie]}'
                    % a),
        "redirect": '{address: "%s/redirect"}' % a,
        "success-down": ('{address: "%s/success", addAuthCookiesToResponse: [authCookie]}' % a),
        "hop": '{address: "%s/hop"}' % a,
        "failheaders": '{address: "%s/failheaders"}' % a,
        "down": '{address: "http://127.0.0.1:%d/auth"}' % dead,
        "hangup": '{address: "%s/hangup"}' % a,
        "hold": '{address: "%s/hold"}' % a,
        "preserve": '{address: "%s/relative", preserveLocationHeader: true}' % a,
        "absolute": '{address: "%s/relative"}' % a,
        "method-keep": '{address: "%s/method", preserveRequestMethod: true}' % a,
        "method-get": '{address: "%s/method"}' % a,
        "mr-unlimited": '{address: "%s/maxresp-403", maxResponseBodySize: -1}' % a,
        "mr-403": '{address: "%s/maxresp-403", maxResponseBodySize: 1}' % a,
        "mr-200": '{address: "%s/maxresp-200", maxResponseBodySize: 100}' % a,
        "mr-200-large": '{address: "%s/maxresp-200-large", maxResponseBodySize: 1}' % a,
        "signin-401": '{address: "%s/status-401", authSigninURL: "%s"}' % (a, SIGNIN),
        "nosignin-401": '{address: "%s/status-401"}' % a,
        "signin-403": '{address: "%s/status-403", authSigninURL: "%s"}' % (a, SIGNIN),
        "signin-200": '{address: "%s/status-200", authSigninURL: "%s"}' % (a, SIGNIN),
        "gzip": '{address: "%s/gzip"}' % a,
        "sniff": '{address: "%s/nocontenttype"}' % a,
        "session": ('{address: "%s/session", authResponseHeaders: [X-Auth-User],'
                    ' trustForwardHeader: false}' % a),
        "signin-page": '{address: "%s/signin-page", trustForwardHeader: false}' % a,
        "slow": '{address: "%s/slow", authResponseHeaders: [X-Auth-User]}' % a,
        "identity": ('{address: "%s/identity", authResponseHeaders: [X-Auth-User],'
                     ' trustForwardHeader: true}' % a),
        "identity-regex": ('{address: "%s/identity", authResponseHeadersRegex: "^X-Auth-",'
                           ' trustForwardHeader: true}' % a),
        "spoof-true": '{address: "%s/allow", trustForwardHeader: true}' % a,
        "spoof-false": '{address: "%s/allow", trustForwardHeader: false}' % a,
        "spoof-unset": '{address: "%s/allow"}' % a,
        "body": ('{address: "%s/body", forwardBody: true, maxBodySize: 15,'
                 ' preserveRequestMethod: true}' % a),
        "body-nolimit": '{address: "%s/body", forwardBody: true}' % a,
        "nobody": '{address: "%s/body", preserveRequestMethod: true}' % a,
        "tls-ca": ('{address: "%s/allow", tls: {caSecret: auth-ca}}' % tls_auth.url),
        "tls-mtls": ('{address: "%s/allow", tls: {caSecret: auth-ca, certSecret: auth-client}}'
                     % env["mtls_auth"].url),
        "tls-nocert": '{address: "%s/allow", tls: {caSecret: auth-ca}}' % env["mtls_auth"].url,
        "tls-wrongca": ('{address: "%s/allow", tls: {caSecret: other-ca}}' % tls_auth.url),
        "tls-skip": ('{address: "%s/allow", tls: {insecureSkipVerify: true}}' % tls_auth.url),
        "tls-system": '{address: "%s/allow"}' % tls_auth.url,
    }
    for name, spec in specs.items():
        m += mw(name, spec)
    for i in range(len(WRITE_HEADER)):
        m += mw("wh-%d" % i, table_spec(i, auth))
    # a headers middleware before forwardAuth: its request headers reach the auth server too
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: hdr, namespace: default}\nspec:\n  headers:\n"
          "    customRequestHeaders: {X-From-Chain: chained, X-Drop-Me: \"\"}\n")
    m += mw("chained", '{address: "%s/allow", trustForwardHeader: false}' % a)
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: hdr-after, namespace: default}\nspec:\n  headers:\n"
          "    customRequestHeaders: {X-Auth-User: set-after}\n")
    m += mw("broken", '{address: "not a url"}')
    m += env["secrets"]
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: fa, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n")
    for name in specs:
        svc = {"success": "cookies", "success-down": "nobody"}.get(name, "echo")
        m += ("    - match: Host(`%s.test`)\n      kind: Rule\n      middlewares: [{name: %s}]\n"
              "      services: [{name: %s, port: 80}]\n" % (name, name, svc))
    m += ("    - match: Host(`chained.test`)\n      kind: Rule\n"
          "      middlewares: [{name: hdr}, {name: chained}]\n"
          "      services: [{name: echo, port: 80}]\n")
    m += ("    - match: Host(`later.test`)\n      kind: Rule\n"
          "      middlewares: [{name: identity}, {name: hdr-after}]\n"
          "      services: [{name: echo, port: 80}]\n")
    m += ("    - match: Host(`broken.test`)\n      kind: Rule\n"
          "      middlewares: [{name: broken}]\n"
          "      services: [{name: echo, port: 80}]\n")
    m += ("    - match: Host(`free.test`)\n      kind: Rule\n"
          "      services: [{name: echo, port: 80}]\n")
    for i in range(len(WRITE_HEADER)):
        m += ("    - match: ClientIP(`127.0.0.%d`)\n      kind: Rule\n"
              "      middlewares: [{name: wh-%d}]\n      services: [{name: echo, port: 80}]\n"
              % (TABLE_BASE + i, i))
    return m


def secret(name, data):
    import base64
    lines = "".join("  %s: %s\n" % (k, base64.b64encode(v.encode()).decode())
                    for k, v in data.items())
    return ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: default}\n"
            "data:\n%s" % (name, lines))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forwardauth")
    ca, other = trustme.CA(), trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(tls_ctx)
    mtls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(mtls_ctx)
    ca.configure_trust(mtls_ctx)
    mtls_ctx.verify_mode = ssl.CERT_REQUIRED
    client = ca.issue_cert("pyroute-client")
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))             # bound, never listening: connections refused
    env = {"auth": ScriptedServer(), "echo": Backend("echo"), "cookies": ScriptedServer(),
           "tls_auth": ScriptedServer(tls=tls_ctx), "mtls_auth": ScriptedServer(tls=mtls_ctx),
           "dead_port": dead.getsockname()[1]}
    auth_script(env["auth"])
    cookie_backend(env["cookies"])
    env["secrets"] = (
        secret("auth-ca", {"ca.crt": ca.cert_pem.bytes().decode()})
        + secret("other-ca", {"tls.ca": other.cert_pem.bytes().decode()})
        + secret("auth-client", {"tls.crt": client.cert_chain_pems[0].bytes().decode(),
                                 "tls.key": client.private_key_pem.bytes().decode()}))
    proxy = Pyroute(tmp, manifests(env), workers=1, trusted=("127.0.0.0/26",))
    proxy.start()
    env["port"] = proxy.port
    env["proxy"] = proxy
    env["manifest_dir"] = proxy.mdir
    env["static"] = proxy.static
    yield env
    proxy.stop()
    dead.close()
    for k in ("auth", "echo", "cookies", "tls_auth", "mtls_auth"):
        env[k].close()


def last_auth(env, path):
    seen = env["auth"].seen(path)
    assert seen, "the auth server got no request for %s" % path
    return seen[-1]


def backend_count(env):
    with env["echo"].lock:
        return len(env["echo"].requests)


# ---- Traefik's forward_test.go ---------------------------------------------------------------

def test_auth_failure_is_the_clients_answer(env):
    # TestForwardAuthFail
    before = backend_count(env)
    status, fields, body = get(env, "fail.test")
    assert status == 403
    assert first(fields, "Proxy-Authenticate") == "test"
    assert body == b"Forbidden\n"
    assert backend_count(env) == before


def test_auth_success_copies_headers_and_cookies(env):
    # TestForwardAuthSuccess: listed headers and the regex's replace the client's copies; the
    # backend's cookie named in addAuthCookiesToResponse gives way to the auth server's
    env["cookies"].clear()
    status, fields, body = get(env, "success.test", extra="X-Auth-Group: admin_group\r\n"
                               "Foo-Bar: client-value\r\nFoo-Baz: client-value\r\n")
    assert status == 200
    assert body == b"traefik\n"
    assert values(fields, "Set-Cookie") == ["backendCookie=Backend", "authCookie=Auth"]
    assert values(fields, "Other-Header") == ["BackendHeaderValue"]
    seen = env["cookies"].requests[-1]
    assert seen.values("X-Auth-User") == ["user@example.com"]
    assert seen.values("X-Auth-Secret") == []
    assert seen.values("X-Auth-Group") == ["group1", "group2"]
    assert seen.values("Foo-Bar") == ["auth-value"]
    assert seen.values("Foo-Baz") == []


def test_auth_cookies_reach_pyroutes_own_error_answers(env):
    # the cookie modifier wraps the response writer: Traefik's proxy 502 gets them too
    status, fields, _ = get(env, "success-down.test")
    assert status == 502
    assert values(fields, "Set-Cookie") == ["authCookie=Auth"]


def test_backend_cookies_are_rewritten_as_go_writes_them(env):
    status, fields, _ = get(env, "success.test", "/norm")
    assert status == 200
    assert values(fields, "Set-Cookie") == [
        "b=1; Path=/x; Domain=Example.com; Max-Age=60; HttpOnly; Secure; SameSite=Lax",
        'q="a b"', "authCookie=Auth"]


def test_auth_redirect_is_passed_on(env):
    # TestForwardAuthRedirect
    status, fields, body = get(env, "redirect.test")
    assert status == 302
    assert first(fields, "Location") == "http://example.com/redirect-test"
    assert body


def test_hop_by_hop_headers_of_the_auth_answer_are_removed(env):
    # TestForwardAuthRemoveHopByHopHeaders
    status, fields, body = get(env, "hop.test")
    assert status == 302
    names = {k.lower() for k, _ in fields}
    for h in ("keep-alive", "te", "trailers", "upgrade", "transfer-encoding",
              "proxy-authenticate", "proxy-authorization"):
        assert h not in names, h
    assert values(fields, "Connection") == []
    assert first(fields, "Location") == "http://example.com/redirect-test"
    assert body.startswith(b'<a href="http://example.com/redirect-test">')


def test_auth_failure_headers_are_the_auth_servers(env):
    # TestForwardAuthFailResponseHeaders: exactly the auth server's headers (Go's server adds
    # Date when the auth server sent none; this one sends one)
    status, fields, body = get(env, "failheaders.test")
    assert status == 403
    assert body == b"Forbidden\n"
    assert sorted(fields) == sorted([
        ("Content-Length", "10"), ("Content-Type", "text/plain; charset=utf-8"),
        ("Date", "Wed, 02 Dec 2026 06:00:00 GMT"), ("Set-Cookie", "example=testing; Path=/"),
        ("X-Content-Type-Options", "nosniff"), ("X-Foo", "bar")])


def test_unreachable_auth_server_is_500_and_nothing_is_forwarded(env):
    # TestForwardAuthForwardError: a client error (here: connection refused) -> 500
    before = backend_count(env)
    for host in ("down.test", "hangup.test"):
        status, fields, body = get(env, host)
        assert status == 500, host
        assert body == b""
    assert backend_count(env) == before


@pytest.mark.parametrize("i", range(len(WRITE_HEADER)), ids=[c[0] for c in WRITE_HEADER])
def test_write_header_cases(env, i):
    desc, headers, _, _, empty_host, _, _ = WRITE_HEADER[i]
    extra = "".join("%s: %s\r\n" % kv for kv in headers.items())
    ip = "127.0.0.%d" % (TABLE_BASE + i)
    if empty_host:
        # Go's req.Host == "": an HTTP/1.0 request without Host
        status, _, _ = get(env, None, "/path?q=1", extra, source=ip, version="HTTP/1.0")
    else:
        status, _, _ = get(env, "foo.bar", "/path?q=1", extra, source=ip)
    assert status == 200, desc
    seen = last_auth(env, "/wh/%d" % i)
    want, allowed = wire_expectations(i)
    for name, value in want.items():
        got = seen.values(name)
        if value is None:
            assert got == [], (desc, name, got)
        else:
            assert got[:1] == [value], (desc, name, got)
    if allowed is not None:
        unexpected = {k.lower() for k in seen.names()} - allowed
        assert not unexpected, (desc, unexpected)
    assert seen.get("Accept-Encoding") == "gzip"


def test_preserve_location_header(env):
    # TestForwardAuthPreserveLocationHeader, and Location made absolute without it
    status, fields, _ = get(env, "preserve.test")
    assert status == 401
    assert first(fields, "Location") == "/index.html"
    status, fields, _ = get(env, "absolute.test")
    assert status == 401
    assert first(fields, "Location") == env["auth"].url + "/index.html"


@pytest.mark.parametrize("host,method", [("method-keep.test", "POST"),
                                         ("method-get.test", "GET")])
def test_preserve_request_method(env, host, method):
    # TestForwardAuthPreserveRequestMethod
    status, _, body = get(env, host, method="POST", body=b"")
    assert status == 200
    assert last_auth(env, "/method").method == method
    assert echoed(body)["method"] == "POST"


@pytest.mark.parametrize("host,status,body", [
    ("mr-unlimited.test", 403, b"Forbidden"),
    ("mr-403.test", 401, b""),
    ("mr-200.test", 200, None),
    ("mr-200-large.test", 401, b""),
])
def test_max_response_body_size(env, host, status, body):
    # TestForwardAuthMaxResponseBodySize
    got, _, got_body = get(env, host)
    assert got == status
    if body is not None:
        assert got_body == body
    else:
        assert echoed(got_body)["backend"] == "echo"


@pytest.mark.parametrize("host,status,location,reached", [
    ("signin-401.test", 302, SIGNIN, False),
    ("nosignin-401.test", 401, None, False),
    ("signin-403.test", 403, None, False),
    ("signin-200.test", 200, None, True),
])
def test_auth_signin_url(env, host, status, location, reached):
    # TestForwardAuthAuthSigninURL
    before = backend_count(env)
    got, fields, body = get(env, host)
    assert got == status
    assert first(fields, "Location") == location
    assert (backend_count(env) > before) == reached
    if location:
        assert body == ('<a href="%s">Found</a>.\n\n' % SIGNIN).encode()


# ---- forwardBody / maxBodySize (TestForwardAuthForwardBody*, TestForwardAuthNotForwardBody) --

def test_forward_body(env):
    data = b"forwardBodyTest"
    status, _, body = get(env, "body.test", method="POST", body=data)
    assert status == 200
    assert last_auth(env, "/body").body == data
    assert echoed(body)["body"] == data.decode()          # the backend still gets it


def test_forward_body_size_limit(env):
    before = len(env["auth"].seen("/body"))
    b0 = backend_count(env)
    status, _, body = get(env, "body.test", method="POST", body=b"forwardBodyTest!")
    assert status == 401
    assert body == b""
    assert len(env["auth"].seen("/body")) == before and backend_count(env) == b0


def test_forward_body_chunked_and_empty(env):
    raw = (b"POST / HTTP/1.1\r\nHost: body-nolimit.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    status, _, body = exchange(env["port"], raw)
    assert status == 200
    seen = last_auth(env, "/body")
    assert seen.body == b"hello world" and seen.get("Transfer-Encoding") == "chunked"
    assert echoed(body)["body"] == "hello world"
    status, _, _ = get(env, "body-nolimit.test", method="GET")
    assert status == 200 and last_auth(env, "/body").body == b""


def test_forward_body_arriving_later_and_expect_continue(env):
    # the head first, the body later in pieces (read while the chain waits); with
    # Expect: 100-continue the client is told to send it, as Go's server does on the first read
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(b"PUT /up HTTP/1.1\r\nHost: body.test\r\nContent-Length: 12\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello ")
        time.sleep(0.2)
        s.sendall(b"world!")
        status, _, body = read_full(s)
    assert status == 200
    seen = last_auth(env, "/body")
    assert seen.method == "PUT" and seen.body == b"hello world!"
    assert echoed(body)["body"] == "hello world!"


def test_forward_body_chunked_over_the_limit_and_malformed(env):
    before = backend_count(env)
    n_auth = len(env["auth"].seen("/body"))
    raw = (b"POST / HTTP/1.1\r\nHost: body.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"a\r\n0123456789\r\n")
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(raw)
        time.sleep(0.2)
        s.sendall(b"a\r\n0123456789\r\n0\r\n\r\n")      # 20 bytes > maxBodySize 15
        status, _, body = read_full(s)
    assert status == 401 and body == b""
    # Traefik: the body cannot be read -> 500
    status, _, _ = exchange(env["port"], b"POST / HTTP/1.1\r\nHost: body.test\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n")
    assert status == 500
    assert backend_count(env) == before and len(env["auth"].seen("/body")) == n_auth


def test_body_not_forwarded_without_forward_body(env):
    status, _, body = get(env, "nobody.test", method="POST", body=b"forwardBodyTest")
    assert status == 200
    seen = last_auth(env, "/body")
    assert seen.body == b"" and seen.get("Content-Length") == "0"
    assert echoed(body)["body"] == "forwardBodyTest"


# ---- beyond Traefik's unit tests: sessions, sign-in pages, TLS, load, spoofing ---------------

def test_session_cookies_both_ways(env):
    # the client's Cookie reaches the auth server; a denial's Set-Cookie reaches the client
    status, fields, body = get(env, "session.test", extra="Cookie: session=bad\r\n")
    assert status == 401 and body == b"who are you?"
    assert values(fields, "Set-Cookie") == ["session=; Max-Age=0"]
    assert first(fields, "WWW-Authenticate") == "Basic"
    status, fields, body = get(env, "session.test", extra="Cookie: session=good\r\n"
                               "X-Auth-User: mallory\r\n")
    assert status == 200
    doc = echoed(body)
    assert echo_values(doc, "X-Auth-User") == ["alice"]
    assert echo_values(doc, "Cookie") == ["session=good"]


def test_redirect_to_a_sign_in_page(env):
    # a relative Location from the auth server is made absolute against the auth address;
    # the auth server learnt the original URI from X-Forwarded-Uri
    status, fields, _ = get(env, "signin-page.test", "/private/page?x=1")
    assert status == 302
    assert first(fields, "Location") == env["auth"].url + "/login?rd=/private/page?x=1"


def test_gzip_answer_is_decompressed(env):
    # Go's transport asked for gzip itself, so it decompresses the answer
    status, fields, body = get(env, "gzip.test")
    assert status == 403
    assert body == b"denied, in gzip"
    assert first(fields, "Content-Encoding") is None
    assert first(fields, "Content-Length") == str(len(body))


def test_content_type_sniffed_when_missing(env):
    status, fields, body = get(env, "sniff.test")
    assert status == 403
    assert first(fields, "Content-Type") == "text/html; charset=utf-8"


def test_slow_auth_server_does_not_stall_the_worker(env):
    # one worker: while an auth request waits 2 s for its answer, other requests on the same
    # worker are served (they all finish before the slow one does)
    result = {}
    n = len(env["auth"].seen("/slow"))

    def slow():
        result["slow"] = get(env, "slow.test")
    th = threading.Thread(target=slow)
    th.start()
    end = time.monotonic() + 5
    while len(env["auth"].seen("/slow")) == n and time.monotonic() < end:
        time.sleep(0.01)
    assert len(env["auth"].seen("/slow")) > n
    for _ in range(5):
        status, _, _ = get(env, "free.test")
        assert status == 200
    assert "slow" not in result and th.is_alive()
    th.join(10)
    status, _, body = result["slow"]
    assert status == 200
    assert echo_values(echoed(body), "X-Auth-User") == ["slowpoke"]


def test_client_going_away_cancels_the_auth_request(env):
    # Traefik's auth request carries the client's context: a client that leaves cancels it
    auth = env["auth"]
    n = len(auth.closed_at)
    s = socket.create_connection(("127.0.0.1", env["port"]), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: hold.test\r\n\r\n")
    end = time.monotonic() + 5
    while not auth.seen("/hold") and time.monotonic() < end:
        time.sleep(0.02)
    assert auth.seen("/hold")
    left = time.monotonic()
    s.close()
    while len(auth.closed_at) == n and time.monotonic() < end:
        time.sleep(0.02)
    assert len(auth.closed_at) > n, "the auth request was not cancelled"
    assert auth.closed_at[-1] - left < 2.0


@pytest.mark.parametrize("host,status", [
    ("tls-ca.test", 200),           # the CA from a Secret (ca.crt)
    ("tls-mtls.test", 200),         # + a client certificate from a Secret (tls.crt/tls.key)
    ("tls-nocert.test", 500),       # the server wants a client certificate
    ("tls-wrongca.test", 500),      # signed by another CA: verification fails
    ("tls-skip.test", 200),         # insecureSkipVerify
    ("tls-system.test", 500),       # no tls section: the system roots, which don't know it
])
def test_https_auth_server(env, host, status):
    got, _, _ = get(env, host)
    assert got == status


@pytest.mark.parametrize("mode", ["spoof-true", "spoof-false", "spoof-unset"])
def test_untrusted_clients_x_forwarded_headers_never_reach_the_auth_server(env, mode):
    evil = ("X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\n"
            "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n"
            "X-Forwarded-Uri: /admin\r\nX-Forwarded-Method: DELETE\r\n"
            "X-Real-Ip: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.7\r\nX-Forwarded-Prefix: /evil\r\n"
            "X-Forwarded-Server: evil\r\n")
    status, _, _ = get(env, mode + ".test", "/real?a=b", evil, source=UNTRUSTED)
    assert status == 200
    seen = last_auth(env, "/allow")
    assert seen.values("X-Forwarded-For") == [UNTRUSTED]
    assert seen.values("X-Forwarded-Host") == [mode + ".test"]
    assert seen.values("X-Forwarded-Proto") == ["http"]
    assert seen.values("X-Forwarded-Uri") == ["/real?a=b"]
    assert seen.values("X-Forwarded-Method") == ["GET"]
    assert "evil" not in seen.raw.decode("latin-1") and "6.6.6" not in seen.raw.decode("latin-1")
    assert seen.values("X_Forwarded_For") == []


def test_trusted_proxys_x_forwarded_headers_are_kept_with_trust(env):
    status, _, _ = get(env, "spoof-true.test", "/x", "X-Forwarded-For: 203.0.113.9\r\n"
                       "X-Forwarded-Proto: https\r\n")
    assert status == 200
    seen = last_auth(env, "/allow")
    assert seen.values("X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert seen.values("X-Forwarded-Proto") == ["https"]
    assert seen.values("X-Forwarded-Port") == ["443"]


@pytest.mark.parametrize("host", ["identity.test", "identity-regex.test"])
def test_client_cannot_assert_an_identity_header(env, host):
    # the client's own X-Auth-User is removed even when the auth server sets none
    status, _, body = get(env, host, extra="X-Auth-User: admin\r\n")
    assert status == 200
    assert echo_values(echoed(body), "X-Auth-User") == []
    status, _, body = get(env, host, extra="X-Auth-User: admin\r\nAuthorization: Bearer good\r\n")
    assert echo_values(echoed(body), "X-Auth-User") == ["verified-user"]


def test_headers_middleware_before_it_reaches_the_auth_server(env):
    status, _, body = get(env, "chained.test", extra="X-Drop-Me: client\r\n")
    assert status == 200
    seen = last_auth(env, "/allow")
    assert seen.values("X-From-Chain") == ["chained"]
    assert seen.values("X-Drop-Me") == []
    doc = echoed(body)
    assert echo_values(doc, "X-From-Chain") == ["chained"]


def test_a_headers_middleware_after_it_has_the_last_word(env):
    # Traefik: the later handler's req.Header.Set overwrites what forwardAuth copied
    status, _, body = get(env, "later.test", extra="Authorization: Bearer good\r\n")
    assert status == 200
    assert echo_values(echoed(body), "X-Auth-User") == ["set-after"]


def test_an_address_that_is_not_a_url_answers_500(env):
    before = backend_count(env)
    status, _, body = get(env, "broken.test")
    assert status == 500 and body == b""
    assert backend_count(env) == before


def test_pipelined_requests_are_each_authenticated(env):
    # a request that arrives while the first one waits for its auth answer is checked too,
    # and neither request nor body reaches the backend
    before = backend_count(env)
    raw = (b"POST / HTTP/1.1\r\nHost: fail.test\r\nContent-Length: 4\r\n\r\nbody"
           b"GET / HTTP/1.1\r\nHost: fail.test\r\n\r\n")
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(raw)
        first_status, _, _ = read_full(s)
        assert first_status == 403
        try:
            second = read_full(s)[0]
        except ConnectionError:
            second = None           # closed after the first (its body was not read)
    assert second in (403, None)
    assert backend_count(env) == before


# ---- configuration: pyroute check ----------------------------------------------------------

def test_check_reports_traefiks_warnings_and_refusals(tmp_path):
    (tmp_path / "m.yaml").write_text(
        mw("legacy", '{address: "http://auth.example/"}')
        + mw("badregex", '{address: "http://auth.example/", trustForwardHeader: true,'
                         ' maxResponseBodySize: 10, authResponseHeadersRegex: "(["}')
        + mw("noaddress", '{trustForwardHeader: true}')
        + mw("badca", '{address: "https://auth.example/", tls: {caSecret: junk-ca}}')
        + secret("junk-ca", {"ca.crt": "not a certificate"}))
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", str(tmp_path)],
                         capture_output=True, text=True, cwd=str(REPO))
    text = out.stdout + out.stderr
    assert "trustForwardHeader is not configured" in text
    assert "maxResponseBodySize is not configured" in text
    assert "error compiling regular expression" in text
    assert "forward authentication requires an address" in text
    assert "failed to parse CA" in text


def test_explain_says_the_auth_server_decides(tmp_path):
    (tmp_path / "m.yaml").write_text(
        backend_service("echo", [9]) + mw("fa", '{address: "http://auth.example/check"}')
        + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: r, namespace: default}\nspec:\n  routes:\n"
          "    - match: Host(`a.test`)\n      kind: Rule\n      middlewares: [{name: fa}]\n"
          "      services: [{name: echo, port: 80}]\n")
    out = subprocess.run([sys.executable, "-m", "pyroute", "explain", str(tmp_path), "GET",
                          "http://a.test/"], capture_output=True, text=True, cwd=str(REPO))
    assert "asks the auth server at http://auth.example/check" in out.stdout + out.stderr
