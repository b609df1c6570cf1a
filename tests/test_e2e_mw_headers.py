"""End to end: every option of Traefik v3.7's ``headers`` middleware through a real
``pyroute run`` — CORS preflights and actual requests, the security headers (unrolled/secure),
allowedHosts, HSTS over HTTP and over HTTPS, the nesting order — with the table-driven cases
of Traefik's pkg/middlewares/headers/{headers,header,secure}_test.go translated to requests
and answers.

One pyroute process: entry point ``web`` (plain HTTP and TLS on one port) trusts 127.0.0.1
(``forwardedHeaders.trustedIPs``); untrusted clients leave from 127.0.0.3. Backends: the echo
backend (tests/e2e_backend.py) and ``SetBackend`` here, which answers with the response
headers its query string names (``/set?Vary=Testing``)."""
import base64
import json
import re
import socket
import ssl
import threading
from urllib.parse import parse_qsl, urlsplit

import pytest
import trustme

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, free_port

TRUSTED, UNTRUSTED = "127.0.0.1", "127.0.0.3"

METHODS = "accessControlAllowMethods: [GET, OPTIONS, PUT]"
MIDDLEWARES = {
    # header_test.go TestNewHeader_CORSPreflights / TestNewHeader_CORSResponses
    "cors-simple": "{%s, accessControlAllowOriginList: ['https://foo.bar.org'],"
                   " accessControlMaxAge: 600}" % METHODS,
    "cors-star": "{%s, accessControlAllowOriginList: ['*'], accessControlMaxAge: 600}"
                 % METHODS,
    "cors-cred": "{%s, accessControlAllowOriginList: ['*'], accessControlAllowCredentials: true,"
                 " accessControlMaxAge: 600}" % METHODS,
    "cors-allow-headers": "{%s, accessControlAllowOriginList: ['*'], accessControlMaxAge: 600,"
                          " accessControlAllowHeaders: [origin, X-Forwarded-For]}" % METHODS,
    "cors-nil-max-age": "{%s, accessControlAllowOriginList: ['*']}" % METHODS,
    "cors-echo": "{accessControlAllowHeaders: ['*'], accessControlAllowMethods: ['*'],"
                 " accessControlAllowCredentials: true, accessControlMaxAge: 0,"
                 " accessControlAllowOriginList: ['https://a.example'],"
                 " accessControlExposeHeaders: ['*']}",
    "cors-star-nocred": "{accessControlAllowHeaders: ['*'], accessControlAllowMethods: ['*'],"
                        " accessControlAllowOriginList: ['*'],"
                        " accessControlExposeHeaders: ['*', X-A]}",
    "cors-origin": "{accessControlAllowOriginList: ['https://foo.bar.org']}",
    "cors-origin-star": "{accessControlAllowOriginList: ['*']}",
    "cors-regex": "{accessControlAllowOriginListRegex: ['^https?://([a-z]+)\\.bar\\.org$']}",
    "cors-regex-partial": "{accessControlAllowOriginListRegex: ['([a-z]+)\\.bar']}",
    "cors-regex-nomatch": "{accessControlAllowOriginListRegex: ['([a-z]+)\\.bar\\.org']}",
    "cors-regex-bad": "{accessControlAllowOriginListRegex: ['a(b']}",
    "cors-origin-cred": "{accessControlAllowOriginList: ['*'],"
                        " accessControlAllowCredentials: true}",
    "cors-expose": "{accessControlAllowOriginList: ['*'],"
                   " accessControlExposeHeaders: [origin, X-Forwarded-For]}",
    "cors-vary": "{accessControlAllowOriginList: ['https://foo.bar.org'], addVaryHeader: true}",
    "cors-vary-custom": "{addVaryHeader: true, customResponseHeaders: {Vary: Accept}}",
    "cors-custom-acao": "{accessControlAllowOriginList: ['https://foo.bar.org'],"
                        " customResponseHeaders: {Access-Control-Allow-Origin: fixed,"
                        " Access-Control-Allow-Credentials: 'no'},"
                        " accessControlAllowCredentials: true}",
    "custom-req-only": "{customRequestHeaders: {foo: bar}}",
    "custom-origin": "{accessControlAllowOriginList: ['https://rewritten.example'],"
                     " customRequestHeaders: {Origin: 'https://rewritten.example'}}",
    # header_test.go TestNewHeader_customResponseHeaders (the backend sets Foo: bar)
    "resp-simple": "{customResponseHeaders: {Testing: foo, Testing2: bar}}",
    "resp-empty": "{customResponseHeaders: {Testing: foo, Testing2: ''}}",
    "resp-delete": "{customResponseHeaders: {Testing: foo, Foo: ''}}",
    # secure_test.go Test_newSecure_modifyResponse
    "sec-permissions": "{permissionsPolicy: 'microphone=(),'}",
    "sec-sts": "{stsSeconds: 1, forceSTSHeader: true}",
    "sec-sts-preload": "{stsSeconds: 1, forceSTSHeader: true, stsPreload: true}",
    "sec-frame-custom": "{customFrameOptionsValue: foo}",
    "sec-frame-deny": "{frameDeny: true}",
    "sec-nosniff": "{contentTypeNosniff: true}",
    # the other security options
    "sec-all": "{browserXssFilter: true, contentSecurityPolicy: \"default-src 'self'\","
               " contentSecurityPolicyReportOnly: 'script-src https:',"
               " referrerPolicy: same-origin, frameDeny: true,"
               " customFrameOptionsValue: SAMEORIGIN}",
    "sec-xss-custom": "{browserXssFilter: true, customBrowserXSSValue: '0'}",
    "sec-custom-wins": "{frameDeny: true, contentTypeNosniff: true,"
                       " customResponseHeaders: {X-Frame-Options: ALLOW,"
                       " X-Content-Type-Options: ''}}",
    "hsts": "{stsSeconds: 31536000, stsIncludeSubdomains: true, stsPreload: true,"
            " publicKey: 'pin-sha256=\"abc\"; max-age=60'}",
    "hsts-proxy": "{stsSeconds: 60, sslProxyHeaders: {X-Forwarded-Proto: https}}",
    "hsts-custom-proxy": "{stsSeconds: 60, sslProxyHeaders: {X-Is-Https: 'on'}}",
    "hsts-dev": "{stsSeconds: 60, forceSTSHeader: true, isDevelopment: true,"
                " publicKey: 'pin-sha256=\"abc\"'}",
    "csp-nonce": "{contentSecurityPolicy: 'script-src $NONCE',"
                 " contentSecurityPolicyReportOnly: 'style-src $NONCE'}",
    # headers_test.go TestNew_allowedHosts
    "hosts": "{allowedHosts: [foo.com, bar.com]}",
    "hosts-proxy": "{allowedHosts: [foo.com], hostsProxyHeaders: [X-Forwarded-Host]}",
    "hosts-custom-proxy": "{allowedHosts: [foo.com], hostsProxyHeaders: [X-Original-Host]}",
    "hosts-dev": "{allowedHosts: [foo.com], isDevelopment: true}",
    "hosts-custom-host": "{allowedHosts: [internal.example],"
                         " customRequestHeaders: {Host: internal.example}}",
    "hosts-edits": "{allowedHosts: [foo.com], frameDeny: true,"
                   " customResponseHeaders: {X-Custom: c, X-Content-Type-Options: ''},"
                   " accessControlAllowOriginList: ['*']}",
    "strip-original": "{customRequestHeaders: {X-Original-Host: '', X-Is-Https: ''}}",
    # nesting
    "outer": "{contentTypeNosniff: true, customResponseHeaders: {X-Outer: o, X-Order: outer,"
             " X-Inner-Only: ''}, customRequestHeaders: {X-Req-Order: outer, X-Req-Gone: o}}",
    "inner": "{frameDeny: true, accessControlAllowOriginList: ['*'], %s,"
             " customResponseHeaders: {X-Inner: i, X-Order: inner, X-Inner-Only: set},"
             " customRequestHeaders: {X-Req-Order: inner, X-Req-Gone: ''}}" % METHODS,
    "deny": "{ipAllowList: {sourceRange: [192.0.2.1/32]}}",
    "err-headers": "{frameDeny: true, stsSeconds: 5, forceSTSHeader: true,"
                   " accessControlAllowOriginList: ['*'], addVaryHeader: true}",
}
# host -> (middlewares, service)
ROUTES = {name + ".test": ([name], "echo") for name in MIDDLEWARES if name != "deny"}
ROUTES.update({
    "set-vary.test": (["cors-vary"], "set"),
    "set-acao.test": (["cors-origin-star"], "set"),
    "set-resp-simple.test": (["resp-simple"], "set"),
    "set-resp-empty.test": (["resp-empty"], "set"),
    "set-resp-delete.test": (["resp-delete"], "set"),
    "set-frame.test": (["sec-frame-deny"], "set"),
    "set-early.test": (["resp-simple", "err-headers"], "set"),
    "ws.test": (["resp-simple", "err-headers"], "echo"),
    "nested.test": (["outer", "inner"], "echo"),
    "answer-later.test": (["err-headers", "deny"], "echo"),
    "down.test": (["err-headers"], "down"),
    "down-hsts.test": (["hsts-proxy"], "down"),
})
# routers chosen by X-Route, so that the allowedHosts middlewares see any Host
ROUTES.update({"Header(`X-Route`, `%s`)" % n: ([n], "echo") for n in (
    "hosts", "hosts-proxy", "hosts-custom-proxy", "hosts-dev", "hosts-custom-host",
    "hosts-edits")})
# a headers middleware in front strips the client's copy of the proxy headers
ROUTES["Header(`X-Route`, `stripped`)"] = (["strip-original", "hosts-custom-proxy"], "echo")
ROUTES["stripped-hsts.test"] = (["strip-original", "hsts-custom-proxy"], "echo")
TLS_ROUTES = {"hsts-tls.test": ["hsts"], "csp-tls.test": ["csp-nonce"],
              "sts-zero-tls.test": ["hsts-dev"]}


class SetBackend:
    """Answers every request with 200, "ok", and the response header lines its query names
    (``?Name=value&Name=value``, repeated names give repeated lines)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, data = data.split(b"\r\n\r\n", 1)
                self.hits += 1
                target = head.split(b"\r\n")[0].split(b" ")[1].decode()
                lines = "".join("%s: %s\r\n" % kv for kv in parse_qsl(urlsplit(target).query))
                if target.startswith("/early"):
                    # headers_test.go Test1xxResponses: interim answers, then the final one
                    conn.sendall(b"HTTP/1.1 103 Early Hints\r\n"
                                 b"Link: </style.css>; rel=preload; as=style\r\n\r\n")
                conn.sendall(("HTTP/1.1 200 OK\r\n%sContent-Length: 2\r\n\r\nok" % lines)
                             .encode("latin-1"))

    def close(self):
        self.sock.close()


def mw(name, spec):
    kind = "ipAllowList" if name == "deny" else "headers"
    if kind == "headers":
        spec = "{headers: %s}" % spec
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: default}\nspec: %s\n" % (name, spec))


def secret(name, leaf):
    crt = b"".join(b.bytes() for b in leaf.cert_chain_pems)
    key = leaf.private_key_pem.bytes()
    return ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: default}\n"
            "type: kubernetes.io/tls\ndata:\n  tls.crt: %s\n  tls.key: %s\n"
            % (name, base64.b64encode(crt).decode(), base64.b64encode(key).decode()))


def ingressroute(name, routes, tls=None):
    out = ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
           "metadata: {name: %s, namespace: default}\nspec:\n  entryPoints: [web]\n"
           "  routes:\n" % name)
    for rule, (mws, svc) in routes.items():
        if "(" not in rule:
            rule = "Host(`%s`)" % rule
        out += "    - match: %s\n      kind: Rule\n" % rule
        if mws:
            out += "      middlewares: [%s]\n" % ", ".join("{name: %s}" % n for n in mws)
        out += "      services: [{name: %s, port: 80}]\n" % svc
    if tls:
        out += "  tls: %s\n" % tls
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mw-headers")
    echo_be, set_be = Backend("echo"), SetBackend()
    ca = trustme.CA()
    leaf = ca.issue_cert(*TLS_ROUTES)
    down = free_port()        # nothing listens there: 502
    m = (backend_service("echo", [echo_be.port]) + "---\n" + backend_service("set", [set_be.port])
         + "---\n" + backend_service("down", [down]) + secret("cert", leaf)
         + "".join(mw(n, s) for n, s in MIDDLEWARES.items())
         + ingressroute("plain", ROUTES)
         + ingressroute("secure", {h: (mws, "echo") for h, mws in TLS_ROUTES.items()},
                        tls="{secretName: cert}"))
    proxy = Pyroute(tmp, m, workers=1, trusted=(TRUSTED,))
    proxy.start()
    yield {"port": proxy.port, "echo": echo_be, "set": set_be, "proxy": proxy, "ca": ca}
    proxy.stop()
    echo_be.close()
    set_be.close()


class Answer:
    """A response: status, every header line (name, value) as sent, body."""

    def __init__(self, status, lines, body):
        self.status, self.lines, self.body = status, lines, body

    def all(self, name):
        return [v for k, v in self.lines if k.lower() == name.lower()]

    def get(self, name):
        values = self.all(name)
        assert len(values) <= 1, "%s sent %d times: %r" % (name, len(values), self.lines)
        return values[0] if values else None

    def names(self):
        return {k.lower() for k, _ in self.lines}

    def doc(self):
        return json.loads(self.body)

    def seen(self, name):
        """The values of request header ``name`` the echo backend received."""
        return [v for k, v in self.doc()["headers"] if k.lower() == name.lower()]


def _read(sock, pending=None):
    """One response from ``sock``; ``pending``: a bytearray holding what was read past the
    previous response on this connection (kept for the next call)."""
    sock.settimeout(10)
    data = bytes(pending or b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a full head: %r" % data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = [(k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in lines[1:])]
    n = int(next((v for k, v in fields if k.lower() == "content-length"), "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    if pending is not None:
        pending[:] = rest[n:]
    return Answer(status, fields, rest[:n])


def send(env, host, path="/", headers=(), method="GET", source=TRUSTED, tls=False,
         version="1.1"):
    raw = "%s %s HTTP/%s\r\n" % (method, path, version)
    if host is not None:
        raw += "Host: %s\r\n" % host
    raw += "".join("%s: %s\r\n" % h for h in headers) + "\r\n"
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10,
                                  source_address=(source, 0)) as s:
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            env["ca"].configure_trust(ctx)
            with ctx.wrap_socket(s, server_hostname=host) as t:
                t.sendall(raw.encode("latin-1"))
                return _read(t)
        s.sendall(raw.encode("latin-1"))
        return _read(s)


PREFLIGHT = (("Access-Control-Request-Headers", "origin"),
             ("Access-Control-Request-Method", "GET"),
             ("Access-Control-Request-Method", "OPTIONS"),
             ("Origin", "https://foo.bar.org"))
NO_ACRH = PREFLIGHT[1:]
CORS_NAMES = {"access-control-allow-origin", "access-control-allow-credentials",
              "access-control-allow-headers", "access-control-allow-methods",
              "access-control-max-age", "access-control-expose-headers", "vary"}


def cors_of(answer):
    return {k: v for k, v in answer.lines if k.lower() in CORS_NAMES}


# -- CORS preflights: header_test.go TestNewHeader_CORSPreflights ---------------------------

@pytest.mark.parametrize("mw_name,request_headers,expected", [
    ("cors-simple", PREFLIGHT, {"Access-Control-Allow-Origin": "https://foo.bar.org",
                                "Access-Control-Max-Age": "600",
                                "Access-Control-Allow-Methods": "GET,OPTIONS,PUT"}),
    ("cors-star", PREFLIGHT, {"Access-Control-Allow-Origin": "*",
                              "Access-Control-Max-Age": "600",
                              "Access-Control-Allow-Methods": "GET,OPTIONS,PUT"}),
    ("cors-cred", PREFLIGHT, {"Access-Control-Allow-Origin": "https://foo.bar.org",
                              "Access-Control-Max-Age": "600",
                              "Access-Control-Allow-Methods": "GET,OPTIONS,PUT",
                              "Access-Control-Allow-Credentials": "true"}),
    ("cors-allow-headers", PREFLIGHT, {"Access-Control-Allow-Origin": "*",
                                       "Access-Control-Max-Age": "600",
                                       "Access-Control-Allow-Methods": "GET,OPTIONS,PUT",
                                       "Access-Control-Allow-Headers": "origin,X-Forwarded-For"}),
    ("cors-allow-headers", NO_ACRH, {"Access-Control-Allow-Origin": "*",
                                     "Access-Control-Max-Age": "600",
                                     "Access-Control-Allow-Methods": "GET,OPTIONS,PUT",
                                     "Access-Control-Allow-Headers": "origin,X-Forwarded-For"}),
    ("cors-nil-max-age", NO_ACRH, {"Access-Control-Allow-Origin": "*",
                                   "Access-Control-Allow-Methods": "GET,OPTIONS,PUT"}),
    # "*" with credentials: the request's own method and headers are echoed, the origin too
    ("cors-echo", (("Access-Control-Request-Method", "PATCH"),
                   ("Access-Control-Request-Headers", "X-A, X-B"),
                   ("Origin", "https://a.example")),
     {"Access-Control-Allow-Origin": "https://a.example", "Access-Control-Max-Age": "0",
      "Access-Control-Allow-Methods": "PATCH", "Access-Control-Allow-Headers": "X-A, X-B",
      "Access-Control-Allow-Credentials": "true"}),
    # "*" without credentials is sent as "*"; Expose-Headers on the preflight too
    ("cors-star-nocred", (("Access-Control-Request-Method", "PATCH"),
                          ("Access-Control-Request-Headers", "X-A"), ("Origin", "https://z")),
     {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "*",
      "Access-Control-Allow-Headers": "*", "Access-Control-Expose-Headers": "*,X-A"}),
    # an origin not in the list: still answered, without Allow-Origin
    ("cors-simple", (("Access-Control-Request-Method", "GET"), ("Origin", "https://evil.org")),
     {"Access-Control-Max-Age": "600", "Access-Control-Allow-Methods": "GET,OPTIONS,PUT"}),
])
def test_cors_preflight_is_answered_by_pyroute(env, mw_name, request_headers, expected):
    hits = len(env["echo"].requests)
    got = send(env, mw_name + ".test", "/foo", request_headers, method="OPTIONS")
    assert got.status == 200 and got.body == b""
    assert got.get("Content-Length") == "0"
    assert cors_of(got) == expected
    assert "x-backend" not in got.names()
    assert len(env["echo"].requests) == hits          # nothing forwarded


@pytest.mark.parametrize("request_headers", [
    (("Origin", "https://foo.bar.org"),),                                    # no ACRM
    (("Access-Control-Request-Method", "GET"),),                             # no Origin
    (("Access-Control-Request-Method", ""), ("Origin", "https://foo.bar.org")),  # empty ACRM
])
def test_an_options_request_that_is_not_a_preflight_is_forwarded(env, request_headers):
    got = send(env, "cors-simple.test", "/foo", request_headers, method="OPTIONS")
    assert got.status == 200 and got.doc()["method"] == "OPTIONS"


def test_a_preflight_without_cors_options_is_forwarded(env):
    # "Test Simple CustomRequestHeaders Not Hijacked by CORS"
    got = send(env, "custom-req-only.test", "/foo", PREFLIGHT, method="OPTIONS")
    assert got.status == 200 and got.doc()["method"] == "OPTIONS"
    assert got.seen("foo") == ["bar"]
    assert cors_of(got) == {}


def test_a_get_with_preflight_headers_is_an_actual_request(env):
    got = send(env, "cors-simple.test", "/foo", PREFLIGHT)
    assert got.doc()["method"] == "GET"
    assert cors_of(got) == {"Access-Control-Allow-Origin": "https://foo.bar.org"}


# -- CORS actual requests: header_test.go TestNewHeader_CORSResponses -----------------------

@pytest.mark.parametrize("mw_name,request_headers,expected", [
    ("cors-origin", (("Origin", "https://foo.bar.org"),),
     {"Access-Control-Allow-Origin": "https://foo.bar.org"}),
    ("cors-origin-star", (("Origin", "https://foo.bar.org"),),
     {"Access-Control-Allow-Origin": "*"}),
    ("cors-regex", (("Origin", "https://foo.bar.org"),),
     {"Access-Control-Allow-Origin": "https://foo.bar.org"}),
    ("cors-regex-partial", (("Origin", "https://foo.bar.org"),),
     {"Access-Control-Allow-Origin": "https://foo.bar.org"}),
    ("cors-regex-nomatch", (("Origin", "https://bar.org"),), {}),
    ("cors-origin", (), {}),                                                 # empty origin
    ("cors-origin", (("Origin", "https://evil.org"),), {}),                  # disallowed
    ("cors-origin", (("Origin", "https://FOO.bar.org"),), {}),               # exact compare
    ("cors-origin-cred", (("Origin", "https://foo.bar.org"),),
     {"Access-Control-Allow-Origin": "https://foo.bar.org",
      "Access-Control-Allow-Credentials": "true"}),
    ("cors-expose", (("Origin", "https://foo.bar.org"),),
     {"Access-Control-Allow-Origin": "*",
      "Access-Control-Expose-Headers": "origin,X-Forwarded-For"}),
    ("cors-vary", (("Origin", "https://foo.bar.org"),),
     {"Access-Control-Allow-Origin": "https://foo.bar.org", "Vary": "Origin"}),
    # "*" matches even without an Origin (matchOrigin("") meets "*" first)
    ("cors-origin-star", (), {"Access-Control-Allow-Origin": "*"}),
    # "*" with credentials and no Origin: the (empty) origin is sent back
    ("cors-origin-cred", (), {"Access-Control-Allow-Origin": "",
                              "Access-Control-Allow-Credentials": "true"}),
    # Expose "*" with credentials is not sent, on actual requests either
    ("cors-echo", (("Origin", "https://a.example"),),
     {"Access-Control-Allow-Origin": "https://a.example",
      "Access-Control-Allow-Credentials": "true"}),
    # Vary with a custom Vary response header: custom first, then ",Origin"
    ("cors-vary-custom", (), {"Vary": "Accept,Origin"}),
    # CORS is applied after the custom response headers: it overrides them where it sets
    ("cors-custom-acao", (("Origin", "https://foo.bar.org"),),
     {"Access-Control-Allow-Origin": "https://foo.bar.org",
      "Access-Control-Allow-Credentials": "true"}),
    ("cors-custom-acao", (("Origin", "https://other.org"),),
     {"Access-Control-Allow-Origin": "fixed", "Access-Control-Allow-Credentials": "true"}),
    # the Origin read for the response is the one customRequestHeaders set
    ("custom-origin", (("Origin", "https://client.example"),),
     {"Access-Control-Allow-Origin": "https://rewritten.example"}),
])
def test_cors_actual_request_response_headers(env, mw_name, request_headers, expected):
    got = send(env, mw_name + ".test", "/foo", request_headers)
    assert got.status == 200 and got.doc()["method"] == "GET"
    assert cors_of(got) == expected


@pytest.mark.parametrize("query,expected_vary", [
    ("", "Origin"),
    ("?Vary=Testing", "Testing,Origin"),                # non-empty response
    ("?Vary=Origin", "Origin"),                         # existing vary:origin response
    ("?Vary=Accept&Vary=Cookie", "Accept,Origin"),      # Header.Get (first) then Set (one)
])
def test_vary_origin_is_added_to_the_backends_vary(env, query, expected_vary):
    got = send(env, "set-vary.test", "/set" + query, (("Origin", "https://foo.bar.org"),))
    assert got.status == 200 and got.body == b"ok"
    assert got.all("Vary") == [expected_vary]
    assert got.all("Access-Control-Allow-Origin") == ["https://foo.bar.org"]


@pytest.mark.parametrize("query", [
    "?Access-Control-Allow-Origin=http://foo.bar.org",                       # set ACAO
    "?Access-Control-Allow-Origin=http://foo.bar.org&Access-Control-Allow-Origin=x",  # add
])
def test_the_backends_allow_origin_is_replaced(env, query):
    got = send(env, "set-acao.test", "/set" + query, (("Origin", "https://foo.bar.org"),))
    assert got.all("Access-Control-Allow-Origin") == ["*"]


def test_an_origin_regexp_go_cannot_compile_disables_the_router(env):
    # "Regexp Malformed Origin Request": NewHeader fails, so the middleware and its router
    assert send(env, "cors-regex-bad.test").status == 404
    assert "error occurred during origin parsing" in env["proxy"].output()


# -- custom response headers: header_test.go TestNewHeader_customResponseHeaders ------------

@pytest.mark.parametrize("host,expected", [
    ("set-resp-simple.test", {"foo": ["bar"], "testing": ["foo"], "testing2": ["bar"]}),
    ("set-resp-empty.test", {"foo": ["bar"], "testing": ["foo"], "testing2": []}),
    ("set-resp-delete.test", {"foo": [], "testing": ["foo"], "testing2": ["backend"]}),
])
def test_custom_response_headers(env, host, expected):
    got = send(env, host, "/set?Foo=bar&Testing2=backend")
    assert {name: got.all(name) for name in expected} == expected


# -- security headers: secure_test.go Test_newSecure_modifyResponse and the rest ------------

SECURE_NAMES = {"strict-transport-security", "x-frame-options", "x-content-type-options",
                "x-xss-protection", "content-security-policy",
                "content-security-policy-report-only", "referrer-policy",
                "permissions-policy", "public-key-pins"}


def secure_of(answer):
    return {k: v for k, v in answer.lines if k.lower() in SECURE_NAMES}


@pytest.mark.parametrize("mw_name,expected", [
    ("sec-permissions", {"Permissions-Policy": "microphone=(),"}),
    ("sec-sts", {"Strict-Transport-Security": "max-age=1"}),
    ("sec-sts-preload", {"Strict-Transport-Security": "max-age=1; preload"}),
    ("sec-frame-custom", {"X-Frame-Options": "foo"}),
    ("sec-frame-deny", {"X-Frame-Options": "DENY"}),
    ("sec-nosniff", {"X-Content-Type-Options": "nosniff"}),
    # customFrameOptionsValue overrides frameDeny; customBrowserXSSValue browserXssFilter
    ("sec-all", {"X-Frame-Options": "SAMEORIGIN", "X-XSS-Protection": "1; mode=block",
                 "Content-Security-Policy": "default-src 'self'",
                 "Content-Security-Policy-Report-Only": "script-src https:",
                 "Referrer-Policy": "same-origin"}),
    ("sec-xss-custom", {"X-XSS-Protection": "0"}),
    # customResponseHeaders run after the security headers: they win, "" deletes
    ("sec-custom-wins", {"X-Frame-Options": "ALLOW"}),
    # isDevelopment: no HSTS even forced, no Public-Key-Pins
    ("hsts-dev", {}),
    # not HTTPS, not forced: neither Strict-Transport-Security nor Public-Key-Pins
    ("hsts", {}),
])
def test_security_headers(env, mw_name, expected):
    got = send(env, mw_name + ".test", "/foo")
    assert got.status == 200 and got.doc()["method"] == "GET"
    assert secure_of(got) == expected


def test_security_headers_replace_the_backends(env):
    got = send(env, "set-frame.test", "/set?X-Frame-Options=ALLOWALL&X-Frame-Options=x")
    assert got.all("X-Frame-Options") == ["DENY"]


def test_hsts_and_public_key_pins_over_https(env):
    got = send(env, "hsts-tls.test", "/", tls=True)
    assert got.status == 200
    assert secure_of(got) == {
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
        "Public-Key-Pins": 'pin-sha256="abc"; max-age=60'}
    # isDevelopment over HTTPS: still nothing
    assert secure_of(send(env, "sts-zero-tls.test", "/", tls=True)) == {}


def test_hsts_from_a_trusted_ssl_proxy_header_only(env):
    proto = (("X-Forwarded-Proto", "https"),)
    # the trusted proxy says the client spoke HTTPS
    got = send(env, "hsts-proxy.test", "/", proto, source=TRUSTED)
    assert got.get("Strict-Transport-Security") == "max-age=60"
    # an untrusted client saying so is not believed: Traefik replaced its X-Forwarded-Proto
    got = send(env, "hsts-proxy.test", "/", proto, source=UNTRUSTED)
    assert got.get("Strict-Transport-Security") is None
    assert got.seen("X-Forwarded-Proto") == ["http"]
    # the X_Forwarded_Proto spelling is Traefik's managed header too
    got = send(env, "hsts-proxy.test", "/", (("X_Forwarded_Proto", "https"),), source=UNTRUSTED)
    assert got.get("Strict-Transport-Security") is None
    assert send(env, "hsts-proxy.test", "/").get("Strict-Transport-Security") is None
    # the value is compared exactly (Header.Get(k) == v)
    got = send(env, "hsts-proxy.test", "/", (("X-Forwarded-Proto", "HTTPS"),))
    assert got.get("Strict-Transport-Security") is None


def test_a_custom_ssl_proxy_header_is_read_as_traefik_reads_it(env):
    # a header outside Traefik's X-Forwarded-* family is nobody's to strip: Traefik reads
    # it from any client (the documented trust is the operator's)
    got = send(env, "hsts-custom-proxy.test", "/", (("X-Is-Https", "on"),), source=UNTRUSTED)
    assert got.get("Strict-Transport-Security") == "max-age=60"
    # ... unless the client named it in Connection: it is gone before the middlewares
    got = send(env, "hsts-custom-proxy.test", "/", (("X-Is-Https", "on"),
                                                    ("Connection", "X-Is-Https")))
    assert got.get("Strict-Transport-Security") is None


def test_csp_nonce_is_fresh_per_request(env):
    seen = set()
    for _ in range(3):
        got = send(env, "csp-tls.test", "/", tls=True)
        csp = got.get("Content-Security-Policy")
        m = re.fullmatch(r"script-src 'nonce-([A-Za-z0-9+/]{22})'", csp)
        assert m, csp
        # the same nonce in both headers of one response
        assert got.get("Content-Security-Policy-Report-Only") == "style-src 'nonce-%s'" % m[1]
        seen.add(m[1])
    assert len(seen) == 3


# -- allowedHosts: headers_test.go TestNew_allowedHosts -----------------------------------

def bad_host(got):
    assert got.status == 500 and got.body == b"Bad Host\n"
    assert got.get("Content-Type") == "text/plain; charset=utf-8"


def test_allowed_hosts(env):
    hits = len(env["echo"].requests)
    # the router matches on Host: route by the path-independent Host rule and let the
    # middleware judge the same Host
    assert send(env, "hosts.test", "/foo").status == 500      # hosts.test is not listed
    assert len(env["echo"].requests) == hits                  # nothing forwarded


@pytest.mark.parametrize("host,ok", [
    ("foo.com", True), ("FOO.com", True), ("bar.com", True),
    ("boo.com", False),            # "no matching host"
    ("foo.com:80", False),         # r.Host carries the port: compared as is
])
def test_allowed_hosts_cases(env, host, ok):
    # the router is chosen by a rule on another header so the middleware sees any Host
    got = send(env, host, "/foo", (("X-Route", "hosts"),))
    if ok:
        assert got.status == 200 and got.doc()["method"] == "GET"
    else:
        bad_host(got)


def test_allowed_hosts_refuses_a_request_without_host(env):
    # "Should refuse the request when no host is given": HTTP/1.0 without Host
    bad_host(send(env, None, "/foo", (("X-Route", "hosts"),), version="1.0"))


def test_allowed_hosts_with_a_trusted_proxy_header(env):
    xfh = (("X-Route", "hosts-proxy"), ("X-Forwarded-Host", "foo.com"))
    assert send(env, "boo.com", "/", xfh, source=TRUSTED).status == 200
    # an untrusted client's X-Forwarded-Host is gone: Traefik put the Host there
    bad_host(send(env, "boo.com", "/", xfh, source=UNTRUSTED))
    assert send(env, "foo.com", "/", xfh, source=UNTRUSTED).status == 200


def test_allowed_hosts_with_a_custom_proxy_header(env):
    # hostsProxyHeaders outside the X-Forwarded-* family: Traefik reads them from anyone
    hdrs = (("X-Route", "hosts-custom-proxy"), ("X-Original-Host", "foo.com"))
    assert send(env, "boo.com", "/", hdrs, source=UNTRUSTED).status == 200
    # an empty value is skipped: r.Host decides
    hdrs = (("X-Route", "hosts-custom-proxy"), ("X-Original-Host", ""))
    bad_host(send(env, "boo.com", "/", hdrs))


def test_proxy_headers_an_earlier_middleware_removed_are_not_read(env):
    # Traefik's middlewares share one request: what a headers middleware before this one
    # removed is gone for this one too (the way to make such a header safe to trust)
    hdrs = (("X-Route", "stripped"), ("X-Original-Host", "foo.com"))
    bad_host(send(env, "boo.com", "/", hdrs, source=UNTRUSTED))
    got = send(env, "stripped-hsts.test", "/", (("X-Is-Https", "on"),), source=UNTRUSTED)
    assert got.status == 200 and got.get("Strict-Transport-Security") is None


def test_allowed_hosts_in_development_lets_every_host_through(env):
    assert send(env, "boo.com", "/", (("X-Route", "hosts-dev"),)).status == 200


def test_allowed_hosts_sees_the_host_custom_request_headers_set(env):
    got = send(env, "boo.com", "/", (("X-Route", "hosts-custom-host"),))
    assert got.status == 200 and got.seen("Host") == ["internal.example"]


def test_the_bad_host_answer_carries_the_custom_and_cors_headers_only(env):
    got = send(env, "boo.com", "/", (("X-Route", "hosts-edits"), ("Origin", "https://o")))
    bad_host(got)
    assert got.get("X-Custom") == "c"
    assert got.get("X-Content-Type-Options") is None        # customResponseHeaders deleted it
    assert got.get("Access-Control-Allow-Origin") == "*"
    assert got.get("X-Frame-Options") is None               # security headers: not on it
    ok = send(env, "foo.com", "/", (("X-Route", "hosts-edits"),))
    assert ok.status == 200 and ok.get("X-Frame-Options") == "DENY"


# -- order: nested middlewares, answers further down the chain, pyroute's own errors ------

def test_nested_headers_middlewares_apply_innermost_first(env):
    got = send(env, "nested.test", "/")
    assert got.status == 200
    assert got.get("X-Order") == "outer"                    # the outer one wins
    assert got.get("X-Inner-Only") is None                  # outer deletes what inner set
    assert got.get("X-Inner") == "i" and got.get("X-Outer") == "o"
    assert got.get("X-Frame-Options") == "DENY"
    assert got.get("X-Content-Type-Options") == "nosniff"
    # request edits in chain order: the inner (later) one sets last, and removes
    assert got.seen("X-Req-Order") == ["inner"] and got.seen("X-Req-Gone") == []


def test_a_preflight_gets_the_outer_middlewares_edits_not_its_own(env):
    got = send(env, "nested.test", "/", PREFLIGHT, method="OPTIONS")
    assert got.status == 200 and got.body == b""
    assert got.get("Access-Control-Allow-Methods") == "GET,OPTIONS,PUT"
    assert got.get("X-Outer") == "o" and got.get("X-Order") == "outer"
    assert got.get("X-Content-Type-Options") == "nosniff"   # the outer's security header
    assert got.get("X-Inner") is None and got.get("X-Frame-Options") is None


def test_an_answer_further_down_the_chain_gets_the_headers(env):
    got = send(env, "answer-later.test", "/", (("Origin", "https://o"),))
    assert got.status == 403
    assert got.get("X-Frame-Options") == "DENY"
    assert got.get("Strict-Transport-Security") == "max-age=5"
    assert got.get("Access-Control-Allow-Origin") == "*" and got.get("Vary") == "Origin"


def test_pyroutes_own_errors_get_the_headers(env):
    got = send(env, "down.test", "/", (("Origin", "https://o"),))
    assert got.status == 502
    assert got.get("X-Frame-Options") == "DENY"
    assert got.get("Strict-Transport-Security") == "max-age=5"
    assert got.get("Access-Control-Allow-Origin") == "*" and got.get("Vary") == "Origin"
    got = send(env, "down-hsts.test", "/", (("X-Forwarded-Proto", "https"),))
    assert got.status == 502 and got.get("Strict-Transport-Security") == "max-age=60"


def test_interim_and_switching_protocols_answers_are_not_edited(env):
    # Traefik's ResponseModifier passes 1xx heads through as they are; the 101 of an upgrade
    # is written by the proxy after hijacking the connection: only final answers get edits
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(b"GET /early?Link=%3C/foo.js%3E HTTP/1.1\r\nHost: set-early.test\r\n\r\n")
        pending = bytearray()
        interim = _read(s, pending)
        assert interim.status == 103
        assert interim.all("Link") == ["</style.css>; rel=preload; as=style"]
        assert interim.get("Testing") is None and interim.get("X-Frame-Options") is None
        final = _read(s, pending)
        assert final.status == 200 and final.body == b"ok"
        assert final.get("Testing") == "foo" and final.get("X-Frame-Options") == "DENY"
        assert final.all("Link") == ["</foo.js>"]
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\n"
                  b"Upgrade: websocket\r\n\r\n")
        s.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        head = head.split(b"\r\n\r\n")[0].decode("latin-1")
        assert head.startswith("HTTP/1.1 101 ")
        names = {ln.split(":")[0].lower() for ln in head.split("\r\n")[1:]}
        assert not names & {"testing", "x-frame-options", "strict-transport-security", "vary"}
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"


# -- configuration ------------------------------------------------------------------------

def test_every_headers_option_is_accepted_without_warning(env):
    out = env["proxy"].output()
    assert "not supported by pyroute yet" not in out
