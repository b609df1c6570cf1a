"""End to end: stripPrefixRegex, replacePath, replacePathRegex, redirectRegex, chain and
ipWhiteList as Traefik v3.7 runs them, through a real ``pyroute run`` and a real backend.

The table-driven cases of Traefik's own tests are ported one for one, translated to requests
and answers: pkg/middlewares/stripprefixregex/strip_prefix_regex_test.go,
replacepath/replace_path_test.go, replacepathregex/replace_path_regex_test.go,
redirect/redirect_regex_test.go, and the chain cases of the CRD provider
(pkg/provider/kubernetes/crd/kubernetes_test.go TestCrossNamespace,
fixtures/with_middleware_cross_namespace.yml). What Traefik's handler tests read from
``r.URL`` / ``r.RequestURI`` is here the request target the backend receives (Traefik's proxy
sends RequestURI's path and query). Configuration errors are read from ``pyroute check``.

One pyroute process serves every case (allowCrossNamespace on); its entry point trusts
127.0.0.1, an untrusted client leaves from 127.0.0.3, and it allows the encoded characters
Traefik v3.7 allows by default (the cases carry %2F)."""
import json
import socket
import ssl
import subprocess
import sys

import pytest

from e2e_backend import Backend
from e2e_support import REPO, Pyroute, backend_service, read_response

TRUSTED, UNTRUSTED = "127.0.0.1", "127.0.0.3"


def mw(name, spec, ns="default"):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: %s}\nspec: %s\n" % (name, ns, spec))


MIDDLEWARES = {
    # strip_prefix_regex_test.go
    "spr-a": "{stripPrefixRegex: {regex: [/a/api/]}}",
    "spr-b": "{stripPrefixRegex: {regex: [\"/b/([a-z0-9]+)/\"]}}",
    "spr-c": "{stripPrefixRegex: {regex: [\"/c/[a-z0-9]+/[0-9]+/\"]}}",
    "spr-t": "{stripPrefixRegex: {regex: [\"/t /test\"]}}",
    "spr-api": "{stripPrefixRegex: {regex: [/api]}}",
    # the first expression that strips wins; an unanchored match must still be a prefix
    "spr-gen": "{stripPrefixRegex: {regex: [\"/[^/]+/\"]}}",
    "spr-two": "{stripPrefixRegex: {regex: [\"  /nomatch  \", \"[a-z]+/\", /a, /a/b]}}",
    # replace_path_test.go
    "rp-plain": "{replacePath: {path: /replacement-path}}",
    "rp-esc": "{replacePath: {path: \"/foo%2Fbar\"}}",
    "rp-bs": "{replacePath: {path: \"/path/%08bar\"}}",
    "rp-bad": "{replacePath: {path: \"/a%zz\"}}",
    "rp-space": "{replacePath: {path: \"/a b\"}}",
    # replace_path_regex_test.go
    "rpr-simple": "{replacePathRegex: {regex: \"^/whoami/(.*)\", replacement: \"/who-am-i/$1\"}}",
    "rpr-noregex": "{replacePathRegex: {regex: /whoami, replacement: /who-am-i}}",
    "rpr-empty": "{replacePathRegex: {regex: /whoami, replacement: \"\"}}",
    "rpr-trim": "{replacePathRegex: {regex: /whoami, replacement: \" \"}}",
    "rpr-nomatch": "{replacePathRegex: {regex: /no-match, replacement: /whoami}}",
    "rpr-multi": "{replacePathRegex: {regex: \"^(?i)/downloads/([^/]+)/([^/]+)$\","
                 " replacement: \"/downloads/$1-$2\"}}",
    "rpr-escchar": "{replacePathRegex: {regex: /aaa/bbb, replacement: \"/foo%2Fbar\"}}",
    "rpr-pathesc": "{replacePathRegex: {regex: \"/aaa%2Fbbb\", replacement: /foo/bar}}",
    "rpr-pathesc-nomatch": "{replacePathRegex: {regex: /aaa/bbb, replacement: /foo/bar}}",
    "rpr-bs": "{replacePathRegex: {regex: \"^/foo/(.*)\", replacement: \"/$1\"}}",
    "rpr-dots": "{replacePathRegex: {regex: \"^/foo(.*)\", replacement: \"/$1\"}}",
    # Go's template: ${name}, $$, $1x is the (absent) group "1x"
    "rpr-named": "{replacePathRegex: {regex: \"^/u/(?P<id>[0-9]+)(?P<rest>/.*)?$\","
                 " replacement: \"/users/${id}-$$-$1x${rest}\"}}",
    # a name on two groups: Expand takes the first that took part in the match
    "rpr-dup": "{replacePathRegex: {regex: \"^/dup/(?:(?P<v>a+)|(?P<v>b+))$\","
               " replacement: \"/v-${v}\"}}",
    "rpr-badesc": "{replacePathRegex: {regex: \"^/x(.*)\", replacement: \"/%zz$1\"}}",
    # redirect_regex_test.go
    "rr-simple": "{redirectRegex: {regex: \"^(?:http?:\\\\/\\\\/)(foo)(\\\\.com)(:\\\\d+)(.*)$\","
                 " replacement: \"https://${1}bar$2:443$4\"}}",
    "rr-invalid-url": "{redirectRegex: {regex: \"^(.*)$\","
                      " replacement: \"http://192.168.0.%31/\"}}",
    "rr-to-https-perm": "{redirectRegex: {regex: \"^http://\", replacement: \"https://$1\","
                        " permanent: true}}",
    "rr-to-http-perm": "{redirectRegex: {regex: \"https://foo\", replacement: \"http://foo\","
                       " permanent: true}}",
    "rr-80-443": "{redirectRegex: {regex: \"http://foo:80\", replacement: \"https://foo:443\"}}",
    "rr-443-80": "{redirectRegex: {regex: \"https://foo:443\", replacement: \"http://foo:80\"}}",
    "rr-80-88": "{redirectRegex: {regex: \"http://foo:80\", replacement: \"http://foo:88\"}}",
    "rr-to-https": "{redirectRegex: {regex: \"^http://\", replacement: \"https://$1\"}}",
    "rr-www": "{redirectRegex: {regex: \"(https?)://[^/:]+(:[0-9]+)?/(.*)\","
              " replacement: \"$1://example.com$2/$3\", permanent: true}}",
    # matches and rewrites to the same URL: the request goes on
    "rr-same": "{redirectRegex: {regex: \"^(.*)$\", replacement: \"$1\"}}",
    # chains
    "add-p": "{addPrefix: {prefix: /p}}",
    "strip-p": "{stripPrefix: {prefixes: [/p]}}",
    "hdr-a": "{headers: {customRequestHeaders: {X-A: a}, customResponseHeaders: {X-Ra: ra}}}",
    "hdr-b": "{headers: {customRequestHeaders: {X-B: b, X-A: overridden-by-b}}}",
    "deny": "{ipAllowList: {sourceRange: [192.0.2.1/32]}}",
    "to-https": "{redirectScheme: {scheme: https}}",
    "inner": "{chain: {middlewares: [{name: add-p}, {name: hdr-b}]}}",
    "outer": "{chain: {middlewares: [{name: hdr-a}, {name: inner}, {name: strip-p}]}}",
    "twice": "{chain: {middlewares: [{name: add-p}, {name: add-p}]}}",
    "c-deny": "{chain: {middlewares: [{name: hdr-a}, {name: deny}]}}",
    "c-redirect": "{chain: {middlewares: [{name: hdr-a}, {name: to-https}]}}",
    "c-empty": "{chain: {middlewares: []}}",
    "cyc-x": "{chain: {middlewares: [{name: cyc-y}]}}",
    "cyc-y": "{chain: {middlewares: [{name: hdr-a}, {name: cyc-x}]}}",
    "cyc-self": "{chain: {middlewares: [{name: cyc-self}]}}",
    "uses-cyc": "{chain: {middlewares: [{name: cyc-x}]}}",
    # middlewares_test.go TestBuilder_BuildChainWithContext, "Detects recursion": the error
    # names the first middleware reached again, with the path from the router's
    "r-m0": "{chain: {middlewares: [{name: r-m1}]}}",
    "r-m1": "{chain: {middlewares: [{name: r-m2}]}}",
    "r-m2": "{chain: {middlewares: [{name: r-m3}]}}",
    "r-m3": "{chain: {middlewares: [{name: r-m2}]}}",
    "ok": "{headers: {customRequestHeaders: {X-Ok: ok}}}",
    "s-m1": "{chain: {middlewares: [{name: s-m2}]}}",
    "s-m2": "{chain: {middlewares: [{name: ok}, {name: s-m3}]}}",
    "s-m3": "{chain: {middlewares: [{name: s-m1}]}}",
    "mw-chain-1": "{chain: {middlewares: [{name: ok}]}}",
    "rl": "{rateLimit: {average: 1, period: 1h, burst: 1}}",
    "c-rl": "{chain: {middlewares: [{name: rl}]}}",
    "c-missing": "{chain: {middlewares: [{name: nowhere}]}}",
    # the provider's fixture: a chain to another namespace, one to a missing middleware
    "test-chain": "{chain: {middlewares: [{name: stripprefix, namespace: cross-ns}]}}",
    "test-chain-cross-provider":
        "{chain: {middlewares: [{name: other-middleware@kubernetescrd}]}}",
    # ipWhiteList (deprecated ipAllowList)
    "wl-deny": "{ipWhiteList: {sourceRange: [192.0.2.1/32]}}",
    "wl-loopback": "{ipWhiteList: {sourceRange: [127.0.0.1/32]}}",
    "wl-depth": "{ipWhiteList: {sourceRange: [203.0.113.7], ipStrategy: {depth: 1}}}",
}

# host -> router middlewares (one router per host, service svc-a)
HOST_ROUTES = {name + ".test": [name] for name in MIDDLEWARES
               if name.split("-")[0] in ("spr", "rp", "rpr", "wl")}
HOST_ROUTES.update({
    "chain-outer.test": ["outer"],
    "chain-twice.test": ["twice", "strip-p"],
    "chain-deny.test": ["c-deny"],
    "chain-redirect.test": ["c-redirect"],
    "chain-empty.test": ["c-empty"],
    "chain-cycle.test": ["cyc-x"],
    "chain-self.test": ["cyc-self"],
    "chain-uses-cycle.test": ["uses-cyc"],
    "chain-m0.test": ["r-m0"],
    "chain-m1.test": ["s-m1"],
    "chain-ok-m0.test": ["ok", "cyc-self"],
    "chain-ref.test": ["mw-chain-1"],
    "chain-rl-a.test": ["c-rl"],
    "chain-rl-b.test": ["c-rl"],
    "chain-missing.test": ["c-missing"],
    "chain-cross.test": ["test-chain"],
    "chain-both.test": ["test-chain", "test-chain-cross-provider"],
    "chain-then-replace.test": ["outer", "rp-plain"],
})
# redirectRegex cases are routed on X-Case (their requests carry Traefik's hosts)
CASE_ROUTES = [name for name in MIDDLEWARES if name.startswith("rr-")]


def manifests(a):
    m = backend_service("svc-a", [a.port])
    m += "".join(mw(name, spec) for name, spec in MIDDLEWARES.items())
    m += mw("stripprefix", "{stripPrefix: {prefixes: [/stripit]}}", ns="cross-ns")
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: paths, namespace: default}\nspec:\n  entryPoints: [web]\n"
          "  routes:\n")
    for host, mws in HOST_ROUTES.items():
        m += ("    - match: Host(`%s`)\n      kind: Rule\n      middlewares: [%s]\n"
              "      services: [{name: svc-a, port: 80}]\n"
              % (host, ", ".join("{name: %s}" % n for n in mws)))
    # a service-level chain
    m += ("    - match: Host(`svc-chain.test`)\n      kind: Rule\n"
          "      services: [{name: svc-a, port: 80, middlewares: [{name: outer}]}]\n")
    for name in CASE_ROUTES:
        m += ("    - match: Header(`X-Case`, `%s`)\n      kind: Rule\n"
              "      middlewares: [{name: %s}]\n      services: [{name: svc-a, port: 80}]\n"
              % (name, name))
    # the same on TLS connections (Traefik's "secured" cases)
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: paths-tls, namespace: default}\nspec:\n  entryPoints: [web]\n"
          "  tls: {}\n  routes:\n")
    for name in CASE_ROUTES:
        m += ("    - match: Header(`X-Case`, `%s`)\n      kind: Rule\n"
              "      middlewares: [{name: %s}]\n      services: [{name: svc-a, port: 80}]\n"
              % (name, name))
    return m


ALLOW = ", ".join("allowEncoded%s: true" % k for k in (
    "Slash", "BackSlash", "NullCharacter", "Semicolon", "Percent", "QuestionMark", "Hash"))
CROSS_NS = "providers:\n  kubernetesCRD:\n    allowCrossNamespace: true\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mw-paths")
    a = Backend("a")
    proxy = Pyroute(tmp, manifests(a), workers=1, trusted=(TRUSTED,),
                    http="{encodedCharacters: {%s}}" % ALLOW)
    proxy.static.write_text(proxy.static.read_text() + CROSS_NS)
    proxy.start()
    yield {"port": proxy.port, "a": a, "proxy": proxy, "tmp": tmp}
    proxy.stop()
    a.close()


def send(env, raw, source=TRUSTED, tls=False):
    """One exchange on a new connection from ``source``: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10,
                                  source_address=(source, 0)) as s:
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="foo")
        s.sendall(raw if isinstance(raw, bytes) else raw.encode("latin-1"))
        status, headers, body, _ = read_response(s)
        return status, headers, body


def get(env, host, path="/", extra="", source=TRUSTED, method="GET"):
    return send(env, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (method, path, host, extra),
                source)


def header_lines(doc, name):
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


def upstream(env, host, path, extra=""):
    """(target, X-Forwarded-Prefix lines, X-Replaced-Path lines) the backend received."""
    status, _, body = get(env, host, path, extra)
    assert status == 200, (status, body)
    doc = json.loads(body)
    return (doc["target"], header_lines(doc, "X-Forwarded-Prefix"),
            header_lines(doc, "X-Replaced-Path"))


# -- stripPrefixRegex (strip_prefix_regex_test.go) ------------------------------------------

@pytest.mark.parametrize("host,path,target,prefix", [
    ("spr-a", "/a/test", "/a/test", None),
    ("spr-a", "/a/test/", "/a/test/", None),
    ("spr-a", "/a/api/", "/", "/a/api/"),          # empty path: RequestURI "/"
    ("spr-a", "/a/api/test", "/test", "/a/api/"),
    ("spr-a", "/a/api/test/", "/test/", "/a/api/"),
    ("spr-b", "/b/api/", "/", "/b/api/"),
    ("spr-b", "/b/api", "/b/api", None),
    ("spr-b", "/b/api/test1", "/test1", "/b/api/"),
    ("spr-b", "/b/api2/test2", "/test2", "/b/api2/"),
    ("spr-c", "/c/api/123/", "/", "/c/api/123/"),
    ("spr-c", "/c/api/123", "/c/api/123", None),
    ("spr-c", "/c/api/123/test3", "/test3", "/c/api/123/"),
    ("spr-c", "/c/api/abc/test4", "/c/api/abc/test4", None),
    ("spr-a", "/a/api/a%2Fb", "/a%2Fb", "/a/api/"),            # raw path stripped alike
    ("spr-b", "/b/ap%69/test", "/test", "/b/api/"),            # matched on the decoded path
    ("spr-b", "/b/ap%69/a%2Fb", "/a%2Fb", "/b/api/"),
    ("spr-t", "/t%2F/test/foo", "/t%2F/test/foo", None),       # "/t//test/foo": no match
    # ("/t /test/a%2Fb": a raw space cannot be sent; its encoded form is the next case)
    ("spr-t", "/t%20/test/a%2Fb", "/a%2Fb", "/t /test"),
    # beyond Traefik's table: expressions trimmed, tried in order, the first that strips wins;
    # "[a-z]+/" matches "x/" inside "/x/y", which is no prefix of the path
    ("spr-two", "/x/y", "/x/y", None),
    ("spr-two", "/a/b/c", "/b/c", "/a"),
    ("spr-a", "/a/api/x?q=%2F&r", "/x?q=%2F&r", "/a/api/"),    # the query untouched
])
def test_strip_prefix_regex_cases(env, host, path, target, prefix):
    got, prefixes, _ = upstream(env, host + ".test", path)
    assert got == target
    assert prefixes == ([prefix] if prefix else [])


@pytest.mark.parametrize("path", ["/api./foo", "/api../foo"])
def test_strip_prefix_regex_refuses_a_dot_segment_left_behind(env, path):
    status, hdrs, body = get(env, "spr-api.test", path)
    assert status == 400 and body == b"Bad Request\n"
    assert hdrs["x-content-type-options"] == "nosniff"


def test_strip_prefix_regex_header_follows_the_clients_own(env):
    # Header.Add after the forwarded headers: the client's line stays, Traefik's comes last
    _, prefixes, _ = upstream(env, "spr-a.test", "/a/api/x", "X-Forwarded-Prefix: /evil\r\n")
    assert prefixes == ["/evil", "/a/api/"]


# -- replacePath (replace_path_test.go) ------------------------------------------------------

@pytest.mark.parametrize("host,path,target,replaced", [
    ("rp-plain", "/example", "/replacement-path", "/example"),
    ("rp-plain", "/some/really/long/path", "/replacement-path", "/some/really/long/path"),
    ("rp-plain", "/foo%2Fbar", "/replacement-path", "/foo%2Fbar"),     # header keeps escapes
    ("rp-esc", "/path", "/foo%2Fbar", "/path"),                         # RawPath is the path
    ("rp-bs", "/path/%08bar", "/path/%08bar", "/path/%08bar"),
    ("rp-plain", "/example?a=1&b", "/replacement-path?a=1&b", "/example"),
    ("rp-space", "/x", "/a%20b", "/x"),             # not a valid RawPath: EscapedPath
])
def test_replace_path_cases(env, host, path, target, replaced):
    got, _, header = upstream(env, host + ".test", path)
    assert got == target and header == [replaced]


def test_replace_path_that_does_not_unescape_answers_500(env):
    # Traefik: url.PathUnescape fails for every request -> http.Error(err.Error(), 500)
    status, hdrs, body = get(env, "rp-bad.test", "/x")
    assert status == 500 and body == b'invalid URL escape "%zz"\n'
    assert hdrs["content-type"] == "text/plain; charset=utf-8"


# -- replacePathRegex (replace_path_regex_test.go) ------------------------------------------

@pytest.mark.parametrize("host,path,target,replaced", [
    ("rpr-simple", "/whoami/and/whoami", "/who-am-i/and/whoami", "/whoami/and/whoami"),
    ("rpr-noregex", "/whoami/and/whoami", "/who-am-i/and/who-am-i", "/whoami/and/whoami"),
    ("rpr-empty", "/whoami/and/whoami", "/and", "/whoami/and/whoami"),
    ("rpr-trim", "/whoami/and/whoami", "/and", "/whoami/and/whoami"),
    ("rpr-nomatch", "/whoami/and/whoami", "/whoami/and/whoami", None),
    ("rpr-multi", "/downloads/src/source.go", "/downloads/src-source.go",
     "/downloads/src/source.go"),
    ("rpr-multi", "/DOWNLOADS/src/source.go", "/downloads/src-source.go",
     "/DOWNLOADS/src/source.go"),
    ("rpr-escchar", "/aaa/bbb", "/foo%2Fbar", "/aaa/bbb"),
    ("rpr-pathesc", "/aaa%2Fbbb", "/foo/bar", "/aaa%2Fbbb"),     # matched on the escaped path
    ("rpr-pathesc-nomatch", "/aaa%2Fbbb", "/aaa%2Fbbb", None),
    ("rpr-bs", "/foo/%08bar", "/%08bar", "/foo/%08bar"),
    ("rpr-named", "/u/42/x", "/users/42-$-/x", "/u/42/x"),
    ("rpr-dup", "/dup/aa", "/v-aa", "/dup/aa"),
    ("rpr-dup", "/dup/bb", "/v-bb", "/dup/bb"),
    ("rpr-simple", "/whoami/a?x=%2F", "/who-am-i/a?x=%2F", "/whoami/a"),
])
def test_replace_path_regex_cases(env, host, path, target, replaced):
    got, _, header = upstream(env, host + ".test", path)
    assert got == target
    assert header == ([replaced] if replaced else [])


def test_replace_path_regex_refusals(env):
    # "path with ..": the result would be changed by path cleaning -> 400
    status, _, body = get(env, "rpr-dots.test", "/foo../bar")
    assert status == 400 and body == b"Bad Request\n"
    # a rewritten path that does not unescape: url.PathUnescape's error, 500
    status, _, body = get(env, "rpr-badesc.test", "/x/y")
    assert status == 500 and body == b'invalid URL escape "%zz"\n'
    assert not any(r[1].startswith("/%zz") for r in env["a"].requests)


# -- redirectRegex (redirect_regex_test.go) --------------------------------------------------

def redirect(env, case, target, host, method="GET", tls=False, extra=""):
    return send(env, "%s %s HTTP/1.1\r\nHost: %s\r\nX-Case: %s\r\nX-Foo: bar\r\n%s\r\n"
                % (method, target, host, case, extra), tls=tls)


# (case, request target, Host, method, tls, status, Location); Traefik's test URLs are
# absolute-form request targets (httptest.NewRequest keeps them in RequestURI)
REDIRECT_CASES = [
    ("rr-simple", "http://foo.com:80", "foo.com:80", "GET", False, 302, "https://foobar.com:443"),
    ("rr-simple", "http://bar.com:80", "bar.com:80", "GET", False, 200, None),     # no match
    ("rr-invalid-url", "http://foo.com:80", "foo.com:80", "GET", False, 502, None),
    ("rr-to-https-perm", "http://foo", "foo", "GET", False, 301, "https://foo"),
    ("rr-to-http-perm", "https://foo", "foo", "GET", True, 301, "http://foo"),
    ("rr-80-443", "http://foo:80", "foo:80", "GET", False, 302, "https://foo:443"),
    ("rr-443-80", "https://foo:443", "foo:443", "GET", True, 302, "http://foo:80"),
    ("rr-80-88", "http://foo:80", "foo:80", "GET", False, 302, "http://foo:88"),
    ("rr-to-https", "http://foo", "foo", "POST", False, 307, "https://foo"),
    ("rr-www", "http://www.example.com/path", "www.example.com", "GET", False, 301,
     "http://example.com/path"),
    ("rr-www", "http://www.example.com:8080/path", "www.example.com:8080", "GET", False, 301,
     "http://example.com:8080/path"),
    ("rr-www", "http://www.example.com/", "www.example.com", "GET", False, 301,
     "http://example.com/"),
    ("rr-www", "https://www.example.com/path", "www.example.com", "GET", True, 301,
     "https://example.com/path"),
    ("rr-to-https-perm", "http://foo", "foo", "POST", False, 308, "https://foo"),
]


@pytest.mark.parametrize("case,target,host,method,tls,status,location", REDIRECT_CASES)
def test_redirect_regex_cases(env, case, target, host, method, tls, status, location):
    got, hdrs, body = redirect(env, case, target, host, method, tls)
    assert got == status, body
    if location is None:
        assert "location" not in hdrs
    else:
        assert hdrs["location"] == location
        assert hdrs["content-type"] == "text/plain; charset=utf-8"
        assert body == {301: b"Moved Permanently", 302: b"Found", 307: b"Temporary Redirect",
                        308: b"Permanent Redirect"}[status]
    if status == 502:
        assert body == b"Bad Gateway"


def test_redirect_regex_on_origin_form_requests(env):
    # the URL is scheme://Host (its port as sent) + the request URI
    status, hdrs, _ = redirect(env, "rr-simple", "/x?y=1", "foo.com:8000")
    assert status == 302 and hdrs["location"] == "https://foobar.com:443/x?y=1"
    # the X-Forwarded-Proto "https" case: redirectRegex does not read the header (nor
    # from a trusted peer): the URL stays http://foo:80
    status, hdrs, _ = redirect(env, "rr-80-443", "/", "foo:80",
                               extra="X-Forwarded-Proto: https\r\n")
    assert status == 302 and hdrs["location"] == "https://foo:443/"
    # on TLS the scheme is https, so http://foo:80 does not match: it goes on
    assert redirect(env, "rr-80-443", "/", "foo:80", tls=True)[0] == 200


def test_redirect_regex_to_the_same_url_goes_on(env):
    status, _, body = redirect(env, "rr-same", "/same/p?q=1", "foo")
    assert status == 200 and json.loads(body)["target"] == "/same/p?q=1"


def test_redirect_regex_location_cannot_carry_injected_lines(env):
    # encoded CR LF stays encoded: the Location is url.Parse(...).String() of the raw URI
    status, hdrs, body = redirect(env, "rr-to-https", "/a%0d%0aSet-Cookie:%20x=1", "foo")
    assert status == 302
    # (the entry point normalises escapes to upper case, as Traefik's normalizePath)
    assert hdrs["location"] == "https://foo/a%0D%0ASet-Cookie:%20x=1"
    assert "set-cookie" not in hdrs


# -- chain (flattened at load) ---------------------------------------------------------------

def test_chain_members_run_in_order_nested(env):
    # outer = [hdr-a, inner = [add-p, hdr-b], strip-p]: /x -> /p/x -> /x, X-A set by hdr-a
    # then replaced by hdr-b (inner runs after)
    status, hdrs, body = get(env, "chain-outer.test", "/x")
    assert status == 200
    doc = json.loads(body)
    assert doc["target"] == "/x"
    assert header_lines(doc, "X-Forwarded-Prefix") == ["/p"]
    assert header_lines(doc, "X-A") == ["overridden-by-b"]
    assert header_lines(doc, "X-B") == ["b"]
    assert hdrs["x-ra"] == "ra"
    # a chain listing one middleware twice runs it twice; the router's own runs after it
    got, prefixes, _ = upstream(env, "chain-twice.test", "/x")
    assert got == "/p/x" and prefixes == ["/p"]
    # then a middleware after the chain
    got, _, replaced = upstream(env, "chain-then-replace.test", "/x")
    assert got == "/replacement-path" and replaced == ["/x"]


def test_chain_answers_pass_through_the_members_before(env):
    status, hdrs, body = get(env, "chain-deny.test")
    assert status == 403 and body == b"Forbidden" and hdrs["x-ra"] == "ra"
    status, hdrs, _ = get(env, "chain-redirect.test", "/r")
    assert status == 302 and hdrs["location"] == "https://chain-redirect.test/r"
    assert hdrs["x-ra"] == "ra"


def test_empty_chain_and_service_level_chain(env):
    assert upstream(env, "chain-empty.test", "/e")[0] == "/e"
    status, hdrs, body = get(env, "svc-chain.test", "/s")
    doc = json.loads(body)
    assert status == 200 and doc["target"] == "/s"
    assert header_lines(doc, "X-B") == ["b"] and hdrs["x-ra"] == "ra"


def test_chain_cycles_disable_the_routers_and_name_the_middleware(env):
    for host in ("chain-cycle.test", "chain-self.test", "chain-uses-cycle.test"):
        assert get(env, host)[0] == 404
    out = env["proxy"].output()
    assert ("could not instantiate middleware default-cyc-x@kubernetescrd: recursion detected "
            "in middleware:default-cyc-x@kubernetescrd->middleware:default-cyc-y@kubernetescrd"
            "->middleware:default-cyc-x@kubernetescrd") in out
    assert ("recursion detected in middleware:default-cyc-self@kubernetescrd"
            "->middleware:default-cyc-self@kubernetescrd") in out


def q(name):
    return "default-%s@kubernetescrd" % name


@pytest.mark.parametrize("host,message", [
    ("chain-m1.test", "could not instantiate middleware %s: recursion detected in "
     "middleware:%s->middleware:%s->middleware:%s->middleware:%s"
     % (q("s-m1"), q("s-m1"), q("s-m2"), q("s-m3"), q("s-m1"))),
    ("chain-ok-m0.test", "could not instantiate middleware %s: recursion detected in "
     "middleware:%s->middleware:%s" % (q("cyc-self"), q("cyc-self"), q("cyc-self"))),
    ("chain-m0.test", "could not instantiate middleware %s: recursion detected in "
     "middleware:%s->middleware:%s->middleware:%s->middleware:%s->middleware:%s"
     % (q("r-m2"), q("r-m0"), q("r-m1"), q("r-m2"), q("r-m3"), q("r-m2"))),
])
def test_chain_recursion_cases(env, host, message):
    # TestBuilder_BuildChainWithContext's recursion cases: the router is not served, and its
    # error is Traefik's, naming the middleware reached again and the path to it
    assert get(env, host)[0] == 404
    assert message in env["proxy"].output()


def test_middleware_that_references_a_chain(env):
    status, _, body = get(env, "chain-ref.test")
    assert status == 200 and header_lines(json.loads(body), "X-Ok") == ["ok"]


def test_chain_members_are_built_per_router(env):
    # Traefik builds each router's chain, a chain's members included: a rateLimit in a chain
    # that two routers use limits each router on its own
    assert get(env, "chain-rl-a.test")[0] == 200
    assert get(env, "chain-rl-a.test")[0] == 429
    assert get(env, "chain-rl-b.test")[0] == 200


def test_chain_provider_cases(env):
    # TestCrossNamespace "HTTP middleware cross namespace allowed": test-chain reaches
    # cross-ns/stripprefix; test-chain-cross-provider names a middleware that does not exist
    # (the provider keeps it; building the router fails: the router is not served)
    got, prefixes, _ = upstream(env, "chain-cross.test", "/stripit/x")
    assert got == "/x" and prefixes == ["/stripit"]
    assert get(env, "chain-both.test", "/stripit/x")[0] == 404
    assert get(env, "chain-missing.test")[0] == 404
    assert "other-middleware@kubernetescrd" in env["proxy"].output()


# -- ipWhiteList ------------------------------------------------------------------------------

def test_ip_white_list_runs_as_ip_allow_list(env):
    status, hdrs, body = get(env, "wl-deny.test")
    assert status == 403 and body == b"Forbidden"
    assert get(env, "wl-loopback.test")[0] == 200
    # depth strategy: an untrusted client's X-Forwarded-For is never read
    spoof = "X-Forwarded-For: 203.0.113.7\r\n"
    assert get(env, "wl-depth.test", extra=spoof, source=UNTRUSTED)[0] == 403
    assert get(env, "wl-depth.test", extra=spoof)[0] == 200
    assert "of type IPWhiteList is deprecated, please use IPAllowList instead" in \
        env["proxy"].output()


# -- configuration errors (pyroute check) ---------------------------------------------------

BAD = {
    "bad-spr": "{stripPrefixRegex: {regex: [/ok, \"^(.*\"]}}",
    "bad-rpr": "{replacePathRegex: {regex: \"^(?err)/invalid/regexp/([^/]+)$\","
               " replacement: \"/valid/regexp/$1\"}}",
    "bad-rr": "{redirectRegex: {regex: \"^(.*\", replacement: \"$1\"}}",
    "bad-wl": "{ipWhiteList: {sourceRange: []}}",
    "bad-wl-cidr": "{ipWhiteList: {sourceRange: [\"10.0.0.1:80\"]}}",
    "wl": "{ipWhiteList: {sourceRange: [10.0.0.0/8]}}",
    "rp-bad": "{replacePath: {path: \"/a%zz\"}}",
    "cyc-x": "{chain: {middlewares: [{name: cyc-y}]}}",
    "cyc-y": "{chain: {middlewares: [{name: cyc-x}]}}",
    "test-chain": "{chain: {middlewares: [{name: stripprefix, namespace: cross-ns}]}}",
}


def test_pyroute_check_names_the_middleware_and_the_field(tmp_path):
    (tmp_path / "m").mkdir()
    text = "".join(mw(n, s) for n, s in BAD.items()).lstrip("-\n")
    text += mw("stripprefix", "{stripPrefix: {prefixes: [/stripit]}}", ns="cross-ns")
    (tmp_path / "m" / "mw.yaml").write_text(text)
    static = tmp_path / "static.yaml"
    static.write_text("entryPoints:\n  web:\n    address: \"127.0.0.1:1\"\n")
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c", str(static),
                          str(tmp_path / "m")], capture_output=True, text=True, cwd=str(REPO))
    text = out.stdout + out.stderr
    assert out.returncode != 0

    def line(name):
        return [ln for ln in text.splitlines() if "Middleware default/%s:" % name in ln]

    # Go's texts: regexp.Compile's error as it is (replacePathRegex wraps it)
    assert any("mw.yaml:" in ln and "spec.stripPrefixRegex.regex[1]: error parsing regexp: "
               "missing closing ): `^(.*`" in ln for ln in line("bad-spr"))
    assert any("spec.replacePathRegex.regex: error compiling regular expression "
               "^(?err)/invalid/regexp/([^/]+)$: error parsing regexp: invalid or unsupported "
               "Perl syntax: `(?e`" in ln for ln in line("bad-rpr"))
    assert any("spec.redirectRegex.regex: error parsing regexp: missing closing ): `^(.*`"
               in ln for ln in line("bad-rr"))
    assert any("spec.ipWhiteList:" in ln and "sourceRange is empty, IPWhiteLister not created"
               in ln for ln in line("bad-wl"))
    assert any("cannot parse CIDR whitelist" in ln for ln in line("bad-wl-cidr"))
    assert any("warning" in ln.lower() and "IPWhiteList is deprecated" in ln
               for ln in line("wl"))
    assert any("spec.replacePath.path:" in ln and 'invalid URL escape "%zz"' in ln
               and "500" in ln for ln in line("rp-bad"))
    assert any("spec.chain.middlewares:" in ln and "recursion detected in "
               "middleware:default-cyc-x@kubernetescrd->middleware:default-cyc-y@kubernetescrd"
               "->middleware:default-cyc-x@kubernetescrd" in ln for ln in line("cyc-x"))
    assert any("recursion detected" in ln for ln in line("cyc-y"))
    # TestCrossNamespace "HTTP middleware cross namespace disallowed": the chain is dropped
    assert any("spec.chain.middlewares[0].namespace" in ln and
               "allowCrossNamespace is disabled" in ln for ln in line("test-chain"))


# -- pyroute explain: the server's own middleware objects decide --------------------------

EXPLAIN_CASES = [
    ("http://spr-api.test/api./foo", [], 400, "dot segments"),
    ("http://rp-bad.test/x", [], 500, 'invalid URL escape "%zz"'),
    ("http://rpr-dots.test/foo../bar", [], 400, "dot segments"),
    ("http://foo.com:80/x", [("X-Case", "rr-simple")], 302,
     "redirect to https://foobar.com:443/x"),
    ("http://foo.com/x", [("X-Case", "rr-invalid-url")], 502, "does not parse"),
    ("http://chain-deny.test/", [], 403, "not in 192.0.2.1/32"),
    ("http://wl-deny.test/", [], 403, "not in 192.0.2.1/32"),
    ("http://chain-redirect.test/r", [], 302, "redirect to https://chain-redirect.test/r"),
]


def test_explain_reaches_the_verdict_of_run(env):
    tmp = env["tmp"]
    lines = "".join(json.dumps({"url": u, "headers": h}) + "\n" for u, h, _, _ in EXPLAIN_CASES)
    out = subprocess.run([sys.executable, "-m", "pyroute", "explain", "-c",
                          str(tmp / "static.yaml"), str(tmp / "manifests"), "--requests", "-"],
                         input=lines, capture_output=True, text=True, cwd=str(REPO)).stdout
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == len(EXPLAIN_CASES)
    for (url, headers, status, note), res in zip(EXPLAIN_CASES, results):
        assert res["status"] == status and any(note in n for n in res["notes"]), (url, res)
        host, _, path = url[len("http://"):].partition("/")
        extra = "".join("%s: %s\r\n" % h for h in headers)
        assert get(env, host, "/" + path, extra)[0] == status


# -- attacks -----------------------------------------------------------------------------

def test_a_decoded_line_break_in_the_stripped_prefix_never_reaches_the_backend(env):
    # stripPrefixRegex puts the decoded matched text in X-Forwarded-Prefix: an encoded CR LF
    # would start a header line of the client's choosing. Go's Transport refuses a header
    # value with a control byte, so Traefik answers 500 and sends nothing.
    before = len(env["a"].requests)
    for path in ("/a%0d%0aX-Evil:%20yes/rest", "/a%0aX-Evil:%20yes/rest", "/a%00b/rest"):
        status, _, body = get(env, "spr-gen.test", path)
        assert status == 500 and body == b"Internal Server Error"
    assert len(env["a"].requests) == before
    assert not any("x-evil" in r[2] for r in env["a"].requests)
    # a tab and bytes above 0x7F are valid in a header value (Go sends them as they are)
    got, prefixes, _ = upstream(env, "spr-gen.test", "/a%09b/rest")
    assert got == "/rest" and prefixes == ["/a\tb/"]
    got, prefixes, _ = upstream(env, "spr-gen.test", "/a%FFb/rest")
    assert got == "/rest" and prefixes == ["/a\xffb/"]


def test_bytes_that_are_not_utf8_match_as_go_reads_them(env):
    # Go's regexp reads a byte that is not UTF-8 as U+FFFD: [^/]+ matches it
    got, prefixes, _ = upstream(env, "spr-gen.test", "/%FF%FE/x")
    assert got == "/x" and prefixes == ["/\xff\xfe/"]
    # and [a-z0-9] does not
    assert upstream(env, "spr-b.test", "/b/%FF/x")[:2] == ("/b/%FF/x", [])


def test_client_sent_replaced_path_stays_before_traefiks(env):
    # Header.Add, as Traefik: a backend must read the last X-Replaced-Path line (or not trust
    # the header from clients); the client's line is not removed
    _, _, replaced = upstream(env, "rp-plain.test", "/orig", "X-Replaced-Path: /forged\r\n")
    assert replaced == ["/forged", "/orig"]
