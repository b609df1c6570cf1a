"""End to end: the middleware kinds pyroute runs, as Traefik v3.7 runs them — service-level
middlewares, ipAllowList's ipStrategy behind the entry point's forwarded-headers trust,
stripPrefix / addPrefix / redirectScheme / headers cases ported from Traefik's own tests
(pkg/middlewares/<kind>/*_test.go), through a real ``pyroute run`` and real backends.

The entry point trusts 127.0.0.1 (``forwardedHeaders.trustedIPs``); requests from an
untrusted client leave from 127.0.0.3. Its encodedCharacters are Traefik v3.7's defaults."""
import json
import socket
import time

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response

TRUSTED, UNTRUSTED = "127.0.0.1", "127.0.0.3"


def mw(name, spec):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: default}\nspec: %s\n" % (name, spec))


MIDDLEWARES = {
    "deny": "{ipAllowList: {sourceRange: [192.0.2.1/32]}}",
    "loopback": "{ipAllowList: {sourceRange: [127.0.0.1/32]}}",
    "svc-hdr": "{headers: {customRequestHeaders: {X-Svc: svc-value},"
               " customResponseHeaders: {X-Svc-Resp: resp-value}}}",
    "svc-strip": "{stripPrefix: {prefixes: [/svc]}}",
    "depth1": "{ipAllowList: {sourceRange: [203.0.113.7], ipStrategy: {depth: 1}}}",
    "depth2": "{ipAllowList: {sourceRange: [203.0.113.7], ipStrategy: {depth: 2}}}",
    "excl": "{ipAllowList: {sourceRange: [203.0.113.7],"
            " ipStrategy: {excludedIPs: [10.0.0.0/8, 127.0.0.1]}}}",
    "v6sub": "{ipAllowList: {sourceRange: [\"2001:db8::/128\"],"
             " ipStrategy: {depth: 1, ipv6Subnet: 64}}}",
    "v6nosub": "{ipAllowList: {sourceRange: [\"2001:db8::/128\"], ipStrategy: {depth: 1}}}",
    # pkg/ip/strategy_test.go: DepthStrategy and PoolStrategy cases
    "depth3": "{ipAllowList: {sourceRange: [10.0.0.3], ipStrategy: {depth: 3}}}",
    "depth2-10": "{ipAllowList: {sourceRange: [10.0.0.2], ipStrategy: {depth: 2}}}",
    "depth2-v4sub": "{ipAllowList: {sourceRange: [10.0.0.2],"
                    " ipStrategy: {depth: 2, ipv6Subnet: 80}}}",
    "depth2-v6sub": "{ipAllowList: {sourceRange: [\"::abcd:0:0:0\"],"
                    " ipStrategy: {depth: 2, ipv6Subnet: 80}}}",
    "depth1-v6": "{ipAllowList: {sourceRange: [\"::abcd:ffff:c0a8:1\"],"
                 " ipStrategy: {depth: 1}}}",
    "pool-all": "{ipAllowList: {sourceRange: [10.0.0.0/8, 127.0.0.1],"
                " ipStrategy: {excludedIPs: [10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4]}}}",
    "pool-some": "{ipAllowList: {sourceRange: [10.0.0.3], ipStrategy: {excludedIPs:"
                 " [10.0.0.1, 10.0.0.2]}}}",
    "pool-cidr": "{ipAllowList: {sourceRange: [127.0.0.1], ipStrategy: {excludedIPs:"
                 " [10.0.0.1/24]}}}",
    "pool-all-cidr": "{ipAllowList: {sourceRange: [10.0.0.0/8], ipStrategy: {excludedIPs:"
                     " [10.0.0.1/24]}}}",
    "teapot": "{ipAllowList: {sourceRange: [192.0.2.1], rejectStatusCode: 418}}",
    "strip-api": "{stripPrefix: {prefixes: [/api]}}",
    "strip-stat": "{stripPrefix: {prefixes: [/stat]}}",
    "strip-stat-slash": "{stripPrefix: {prefixes: [/stat/]}}",
    "strip-two": "{stripPrefix: {prefixes: [/stat, /stat/us]}}",
    "strip-later": "{stripPrefix: {prefixes: [/mismatch, /stat]}}",
    "strip-space": "{stripPrefix: {prefixes: [\" /a b \"]}}",
    "strip-force": "{stripPrefix: {prefixes: [/api], forceSlash: true}}",
    "add-pct": "{addPrefix: {prefix: \"/p%20x\"}}",
    "add-plain": "{addPrefix: {prefix: /pre}}",
    "host-hdr": "{headers: {customRequestHeaders: {Host: backend.internal}}}",
    "no-xff": "{headers: {customRequestHeaders: {X-Forwarded-For: \"\"}}}",
    "outer-hdr": "{headers: {customResponseHeaders: {X-Outer: outer-value, X-Drop: \"\"}}}",
    "deprecated": "{headers: {sslRedirect: true, featurePolicy: camera 'none',"
                  " customResponseHeaders: {X-Dep: dep-value}}}",
    "zero": "{headers: {frameDeny: false, contentTypeNosniff: false,"
            " customRequestHeaders: {X-Zero: zero-value}}}",
    "empty-headers": "{headers: {}}",
    # header_test.go TestNewHeader_customRequestHeader
    "hdr-add": "{headers: {customRequestHeaders: {X-Custom-Request-Header: test_request}}}",
    "hdr-delete": "{headers: {customRequestHeaders: {X-Forwarded-For: \"\","
                  " X-Custom-Request-Header: \"\", Foo: \"\"}}}",
    "hdr-override": "{headers: {customRequestHeaders: {Foo: test}}}",
    "hdr-xff-lower": "{headers: {customRequestHeaders: {x-forwarded-for: \"\"}}}",
    "frame-deny": "{headers: {frameDeny: true}}",
    "sts-zero": "{headers: {stsSeconds: 0}}",     # headers_test.go TestNew_withSTSSecondsZero
    "bad-status": "{ipAllowList: {sourceRange: [127.0.0.1], rejectStatusCode: 700}}",
    "bad-subnet": "{ipAllowList: {sourceRange: [127.0.0.1],"
                  " ipStrategy: {depth: 1, ipv6Subnet: 129}}}",
    "with-port": "{ipAllowList: {sourceRange: [\"127.0.0.1:80\"]}}",
    "add-empty": "{addPrefix: {}}",         # the CRD refuses "" (must start with '/')
    # redirectScheme configurations of Traefik's redirect_scheme_test.go
    "r-https": "{redirectScheme: {scheme: https}}",
    "r-https-8443": "{redirectScheme: {scheme: https, port: \"8443\"}}",
    "r-https-perm": "{redirectScheme: {scheme: https, port: \"8443\", permanent: true}}",
    "r-http-80": "{redirectScheme: {scheme: http, port: \"80\"}}",
    "r-https-443": "{redirectScheme: {scheme: https, port: \"443\"}}",
    "r-wss-9443": "{redirectScheme: {scheme: wss, port: \"9443\"}}",
    "r-wss": "{redirectScheme: {scheme: wss}}",
    "r-http-8181": "{redirectScheme: {scheme: http, port: \"8181\"}}",
    "r-perm": "{redirectScheme: {scheme: https, permanent: true}}",
}

# host -> (route middlewares, services yaml)
ROUTES = {
    "svc-deny.test": ([], "[{name: svc-a, port: 80, middlewares: [{name: deny}]}]"),
    "svc-ok.test": ([], "[{name: svc-a, port: 80,"
                        " middlewares: [{name: loopback}, {name: svc-hdr}, {name: svc-strip}]}]"),
    "svc-outer.test": (["outer-hdr"], "[{name: svc-a, port: 80, middlewares: [{name: deny}]}]"),
    "weighted.test": ([], "[{name: svc-a, port: 80, middlewares: [{name: deny}]},"
                          " {name: svc-b, port: 80}]"),
    "ts-weighted.test": ([], "[{name: ts-wrr, kind: TraefikService}]"),
    "ts-hrw.test": ([], "[{name: ts-hrw, kind: TraefikService}]"),
    "ts-failover.test": ([], "[{name: ts-failover, kind: TraefikService}]"),
    "ts-mirror.test": ([], "[{name: ts-mirror, kind: TraefikService}]"),
    "ts-mirror-ok.test": ([], "[{name: ts-mirror-ok, kind: TraefikService}]"),
    "depth1.test": (["depth1"], None),
    "depth2.test": (["depth2"], None),
    "excl.test": (["excl"], None),
    "v6sub.test": (["v6sub"], None),
    "v6nosub.test": (["v6nosub"], None),
    "teapot.test": (["teapot"], None),
    "depth3.test": (["depth3"], None),
    "depth2-10.test": (["depth2-10"], None),
    "depth2-v4sub.test": (["depth2-v4sub"], None),
    "depth2-v6sub.test": (["depth2-v6sub"], None),
    "depth1-v6.test": (["depth1-v6"], None),
    "pool-all.test": (["pool-all"], None),
    "pool-some.test": (["pool-some"], None),
    "pool-cidr.test": (["pool-cidr"], None),
    "pool-all-cidr.test": (["pool-all-cidr"], None),
    "strip-api.test": (["strip-api"], None),
    "strip-stat.test": (["strip-stat"], None),
    "strip-stat-slash.test": (["strip-stat-slash"], None),
    "strip-two.test": (["strip-two"], None),
    "strip-later.test": (["strip-later"], None),
    "strip-space.test": (["strip-space"], None),
    "strip-force.test": (["strip-force"], None),
    "add-pct.test": (["add-pct"], None),
    "add-plain.test": (["add-plain"], None),
    "host-hdr.test": (["host-hdr"], None),
    "no-xff.test": (["no-xff"], None),
    "outer.test": (["outer-hdr", "deny"], None),
    "outer-redirect.test": (["outer-hdr", "r-https"], None),
    "deprecated.test": (["deprecated"], None),
    "zero.test": (["zero"], None),
    "empty-headers.test": (["empty-headers"], None),
    "hdr-add.test": (["hdr-add"], None),
    "hdr-delete.test": (["hdr-delete"], None),
    "hdr-override.test": (["hdr-override"], None),
    "hdr-xff-lower.test": (["hdr-xff-lower"], None),
    "sts-zero.test": (["sts-zero"], None),
    "frame-deny.test": (["frame-deny"], None),
    "host-hdr-nopass.test": (["host-hdr"], "[{name: svc-a, port: 80, passHostHeader: false}]"),
    "bad-status.test": (["bad-status"], None),
    "bad-subnet.test": (["bad-subnet"], None),
    "with-port.test": (["with-port"], None),
    "add-empty.test": (["add-empty"], None),
}
REDIRECTS = ["r-https", "r-https-8443", "r-https-perm", "r-http-80",
             "r-https-443", "r-wss-9443", "r-wss", "r-http-8181", "r-perm"]


def manifests(a, b):
    m = backend_service("svc-a", [a.port]) + "---\n" + backend_service("svc-b", [b.port])
    # TraefikService children are named after their Service and port only (Traefik's
    # fullServiceName): children with different middlewares need Services of their own
    for suffix in ("w", "hrw", "fo", "m", "m2"):
        m += "---\n" + backend_service("svc-a-" + suffix, [a.port])
        m += "---\n" + backend_service("svc-b-" + suffix, [b.port])
    m += "".join(mw(name, spec) for name, spec in MIDDLEWARES.items())
    m += """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: ts-wrr, namespace: default}
spec:
  weighted:
    services:
      - {name: svc-a-w, port: 80, weight: 1, middlewares: [{name: deny}]}
      - {name: svc-b-w, port: 80, weight: 1, middlewares: [{name: svc-hdr}]}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: ts-hrw, namespace: default}
spec:
  highestRandomWeight:
    services:
      - {name: svc-a-hrw, port: 80, middlewares: [{name: deny}]}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: ts-failover, namespace: default}
spec:
  failover:
    service: {name: svc-a-fo, port: 80, middlewares: [{name: deny}]}
    fallback: {name: svc-b-fo, port: 80}
    errors: {}          # the v3.7 CRD requires it (empty: fail over on health only)
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: ts-mirror, namespace: default}
spec:
  mirroring:
    name: svc-a-m
    port: 80
    middlewares: [{name: svc-hdr}]
    mirrors:
      - {name: svc-b-m, port: 80, percent: 100, middlewares: [{name: deny}]}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: ts-mirror-ok, namespace: default}
spec:
  mirroring:
    name: svc-a-m2
    port: 80
    mirrors:
      - {name: svc-b-m2, port: 80, percent: 100, middlewares: [{name: loopback}]}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: mw, namespace: default}
spec:
  entryPoints: [web]
  routes:
"""
    for host, (mws, services) in ROUTES.items():
        m += "    - match: Host(`%s`)\n      kind: Rule\n" % host
        if mws:
            m += "      middlewares: [%s]\n" % ", ".join("{name: %s}" % n for n in mws)
        m += "      services: %s\n" % (services or "[{name: svc-a, port: 80}]")
    for name in REDIRECTS:
        # any host: Traefik's test URLs carry their own (foo, [::1])
        m += ("    - match: PathPrefix(`/%s/`)\n      kind: Rule\n      middlewares: [{name: %s}]\n"
              "      services: [{name: svc-a, port: 80}]\n" % (name, name))
    return m


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("middlewares")
    a, b = Backend("a"), Backend("b")
    # encodedCharacters as Traefik v3.7 has them by default (pyroute refuses %2F & co. unless
    # told otherwise): Traefik's stripPrefix/addPrefix cases carry encoded slashes
    allow = ", ".join("allowEncoded%s: true" % k for k in (
        "Slash", "BackSlash", "NullCharacter", "Semicolon", "Percent", "QuestionMark", "Hash"))
    proxy = Pyroute(tmp, manifests(a, b), workers=1, trusted=(TRUSTED,),
                    http="{encodedCharacters: {%s}}" % allow)
    proxy.start()
    yield {"port": proxy.port, "a": a, "b": b, "proxy": proxy}
    proxy.stop()
    a.close()
    b.close()


def send(env, raw, source=TRUSTED, head_request=False):
    """One exchange from ``source``: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10,
                                  source_address=(source, 0)) as s:
        s.sendall(raw if isinstance(raw, bytes) else raw.encode("latin-1"))
        status, headers, body, _ = read_response(s, head_request)
        return status, headers, body


def get(env, host, path="/", extra="", source=TRUSTED, method="GET"):
    return send(env, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (method, path, host, extra),
                source, head_request=method == "HEAD")


def echo(body):
    return json.loads(body)


def header_lines(doc, name):
    return [v for k, v in doc["headers"] if k.lower() == name.lower()]


# -- 1. service-level middlewares -----------------------------------------------------------

def test_service_level_ip_allow_list_is_enforced(env):
    status, hdrs, body = get(env, "svc-deny.test")
    assert status == 403 and body == b"Forbidden"
    assert not env["a"].requests or all(r[2].get("host") != "svc-deny.test"
                                        for r in env["a"].requests)


def test_service_level_headers_and_strip_prefix_reach_the_backend(env):
    status, hdrs, body = get(env, "svc-ok.test", "/svc/inner?q=1")
    assert status == 200
    doc = echo(body)
    assert doc["target"] == "/inner?q=1"
    assert header_lines(doc, "X-Svc") == ["svc-value"]
    assert header_lines(doc, "X-Forwarded-Prefix") == ["/svc"]
    assert hdrs["x-svc-resp"] == "resp-value"


def test_service_level_answer_carries_the_router_chain_response_headers(env):
    status, hdrs, _ = get(env, "svc-outer.test", extra="Connection: keep-alive\r\n")
    assert status == 403 and hdrs["x-outer"] == "outer-value"


def test_weighted_child_middlewares_run_when_that_child_is_picked(env):
    # two services on a route: a weighted round robin; the child with the ipAllowList
    # refuses, the other serves
    got = sorted(get(env, "weighted.test")[0] for _ in range(4))
    assert got == [200, 200, 403, 403]
    answers = [get(env, "ts-weighted.test") for _ in range(4)]
    assert sorted(s for s, _, _ in answers) == [200, 200, 403, 403]
    for status, hdrs, body in answers:
        if status == 200:
            doc = echo(body)
            assert doc["backend"] == "b" and header_lines(doc, "X-Svc") == ["svc-value"]
            assert hdrs["x-svc-resp"] == "resp-value"


def test_traefik_service_children_middlewares(env):
    # highestRandomWeight child and failover main: their ipAllowList refuses
    assert get(env, "ts-hrw.test")[0] == 403
    assert get(env, "ts-failover.test")[0] == 403
    # mirroring: the main service's chain runs on the main request; a mirror whose chain
    # refuses gets no copy, one whose chain accepts gets it
    status, hdrs, body = get(env, "ts-mirror.test", "/m1")
    assert status == 200 and header_lines(echo(body), "X-Svc") == ["svc-value"]
    assert get(env, "ts-mirror-ok.test", "/m2")[0] == 200
    deadline = time.time() + 5
    while time.time() < deadline and not any(r[1] == "/m2" for r in env["b"].requests):
        time.sleep(0.05)
    assert any(r[1] == "/m2" for r in env["b"].requests)
    assert not any(r[1] == "/m1" for r in env["b"].requests)


# -- 2. ipStrategy and the forwarded-headers trust --------------------------------------------

def test_depth_strategy_ignores_an_untrusted_clients_x_forwarded_for(env):
    spoof = "X-Forwarded-For: 203.0.113.7\r\n"
    assert get(env, "depth1.test", extra=spoof, source=UNTRUSTED)[0] == 403
    assert get(env, "excl.test", extra=spoof, source=UNTRUSTED)[0] == 403
    assert get(env, "depth1.test", source=UNTRUSTED)[0] == 403
    # a trusted peer's X-Forwarded-For is what the strategy reads
    assert get(env, "depth1.test", extra=spoof)[0] == 200
    assert get(env, "excl.test", extra=spoof)[0] == 200


def test_depth_and_excluded_ips_pick_as_traefik(env):
    # depth counts from the right; all lines joined with ", " first (forwarded_header.go)
    xff = "X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n"
    assert get(env, "depth2.test", extra=xff)[0] == 200
    assert get(env, "depth1.test", extra=xff)[0] == 403
    lines = "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 10.0.0.1\r\n"
    assert get(env, "depth2.test", extra=lines)[0] == 200
    assert get(env, "depth2.test", extra="X-Forwarded-For: 203.0.113.7\r\n")[0] == 403
    # excludedIPs: the first address from the right that is not excluded
    assert get(env, "excl.test", extra="X-Forwarded-For: 203.0.113.7, 10.1.1.1, 127.0.0.1\r\n"
               )[0] == 200
    assert get(env, "excl.test", extra="X-Forwarded-For: 203.0.113.7, 198.51.100.1\r\n"
               )[0] == 403
    # an address with a port is checked without it (Checker.IsAuthorized)
    assert get(env, "depth1.test", extra="X-Forwarded-For: 203.0.113.7:4711\r\n")[0] == 200


def test_ipv6_subnet_groups_addresses(env):
    xff = "X-Forwarded-For: 2001:db8::1234\r\n"
    assert get(env, "v6sub.test", extra=xff)[0] == 200      # 2001:db8::/64 -> 2001:db8::
    assert get(env, "v6nosub.test", extra=xff)[0] == 403
    assert get(env, "v6sub.test", extra="X-Forwarded-For: 2001:db8:0:1::1\r\n")[0] == 403
    assert get(env, "v6sub.test", extra=xff, source=UNTRUSTED)[0] == 403


# (middleware, X-Forwarded-For from a trusted peer, status): the strategy's choice is the one
# address of sourceRange, so 200 says it picked what Traefik's test expects
STRATEGY_CASES = [
    ("depth3", "10.0.0.4,10.0.0.3,10.0.0.2,10.0.0.1", 200),             # use depth
    ("depth2-10", None, 403),                                           # nonexistent depth
    ("depth2-10", "10.0.0.2,10.0.0.1", 200),                            # the first IP
    ("depth2-v4sub", "10.0.0.3,10.0.0.2,10.0.0.1", 200),                # IPv4: no subnet
    ("depth2-v6sub", "10.0.0.3,::abcd:ffff:c0a8:1,10.0.0.1", 200),      # IPv6 /80
    ("depth2-v6sub", "10.0.0.3,::abcd:ffff:c0a8:1%1,10.0.0.1", 200),    # zone dropped
    ("depth1-v6", "::abcd:ffff:c0a8:1%1", 200),                         # zone ignored
    ("pool-all", "10.0.0.4,10.0.0.3,10.0.0.2,10.0.0.1", 403),           # trust all: ""
    ("pool-some", "10.0.0.4,10.0.0.3,10.0.0.2,10.0.0.1", 200),          # -> 10.0.0.3
    ("pool-cidr", "127.0.0.1,10.0.0.4,10.0.0.3,10.0.0.2,10.0.0.1", 200),  # -> 127.0.0.1
    ("pool-all-cidr", "10.0.0.4,10.0.0.3,10.0.0.2,10.0.0.1", 403),      # trust all: ""
]


@pytest.mark.parametrize("name,xff,status", STRATEGY_CASES)
def test_ip_strategy_cases(env, name, xff, status):
    extra = "X-Forwarded-For: %s\r\n" % xff if xff else ""
    assert get(env, name + ".test", extra=extra)[0] == status
    # the same header from a client the entry point does not trust is never read
    assert get(env, name + ".test", extra=extra, source=UNTRUSTED)[0] == 403


def test_reject_status_code(env):
    status, hdrs, body = get(env, "teapot.test")
    assert status == 418 and body == b"I'm a teapot"
    assert hdrs["content-type"] == "text/plain; charset=utf-8"


# -- 3. stripPrefix (strip_prefix_test.go) ----------------------------------------------------

@pytest.mark.parametrize("host,path,target,prefix", [
    ("strip-stat.test", "/stat", "/", "/stat"),                  # prefix and path matching
    ("strip-stat-slash.test", "/stat/", "/", "/stat/"),          # exactly matching path
    ("strip-stat-slash.test", "/stat/us", "/us", "/stat/"),      # matching longer path
    # (Traefik's /status: the test backend answers /status/N itself)
    ("strip-stat-slash.test", "/statusx", "/statusx", None),     # mismatching path
    ("strip-stat.test", "/stat/", "/", "/stat"),                 # general prefix
    ("strip-two.test", "/stat/us", "/us", "/stat"),              # earlier prefix matching
    ("strip-later.test", "/stat", "/", "/stat"),                 # later prefix matching
    ("strip-stat.test", "/statusx", "/usx", "/stat"),            # within slash boundaries
    ("strip-stat.test", "/stat/a%2Fb", "/a%2Fb", "/stat"),       # raw path stripped too
    ("strip-space.test", "/a%20b/c", "/c", "/a b"),              # decoded match, trimmed
    ("strip-api.test", "/api/x?q=%2F", "/x?q=%2F", "/api"),
    ("strip-force.test", "/api", "/", "/api"),                   # forceSlash (deprecated)
    ("strip-force.test", "/api/x", "/x", "/api"),
])
def test_strip_prefix_cases(env, host, path, target, prefix):
    status, _, body = get(env, host, path)
    assert status == 200
    doc = echo(body)
    assert doc["target"] == target
    assert header_lines(doc, "X-Forwarded-Prefix") == ([prefix] if prefix else [])


@pytest.mark.parametrize("host,path", [
    ("strip-api.test", "/api./foo"),        # dot in the path not stripped by the prefix
    ("strip-api.test", "/api../foo"),       # multiple dots
    ("strip-force.test", "/api../foo"),     # multiple dots with forceSlash
])
def test_strip_prefix_refuses_dot_segments_left_behind(env, host, path):
    status, hdrs, body = get(env, host, path)
    assert status == 400 and body == b"Bad Request\n"


# -- 3. addPrefix (add_prefix_test.go) --------------------------------------------------------

def test_add_prefix(env):
    assert echo(get(env, "add-plain.test", "/x/y")[2])["target"] == "/pre/x/y"
    assert echo(get(env, "add-plain.test", "/x%2Fy?z=1")[2])["target"] == "/pre/x%2Fy?z=1"
    # '%' in the prefix is a literal percent sign in Go's URL.Path: sent as %25
    assert echo(get(env, "add-pct.test", "/x")[2])["target"] == "/p%2520x/x"


# -- 3. redirectScheme (redirect_scheme_test.go) ----------------------------------------------

# (middleware, Traefik's test URL, X-Forwarded-Proto, expected status, expected Location)
REDIRECT_CASES = [
    ("r-https", "http://foo", None, 302, "https://foo"),
    ("r-https", "http://foo", "http", 302, "https://foo"),
    ("r-https", "http://foo", "https", 200, None),
    ("r-https", "http://foo", "HTTPS", 200, None),
    ("r-https", "http://foo", "bar", 302, "https://foo"),
    ("r-https", "http://foo", "ws", 302, "https://foo"),
    ("r-https", "http://foo", "wss", 200, None),
    ("r-https", "http://foo:8080", None, 302, "https://foo"),
    ("r-https-8443", "http://foo", None, 302, "https://foo:8443"),
    ("r-https-8443", "http://foo:8000", None, 302, "https://foo:8443"),
    ("r-https-8443", "https://foo:8000", "https", 302, "https://foo:8443"),
    ("r-https", "https://foo:8000", "https", 302, "https://foo"),
    ("r-https", "https://foo:8000/theother", "https", 302, "https://foo"),   # + the path
    ("r-https-perm", "http://foo", None, 301, "https://foo:8443"),
    ("r-http-80", "http://foo:80", None, 200, None),
    ("r-https-443", "https://foo:443", "https", 200, None),
    ("r-wss-9443", "http://foo", None, 302, "wss://foo:9443"),
    ("r-wss", "http://foo", None, 302, "wss://foo"),
    ("r-wss", "http://foo:5678", None, 302, "wss://foo"),
    ("r-https", "http://foo:443", None, 302, "https://foo"),
    ("r-http-8181", "http://foo:8080", None, 302, "http://foo:8181"),
    ("r-https", "https://foo:80", "https", 302, "https://foo"),
    ("r-https", "http://[::1]", None, 302, "https://[::1]"),
    ("r-https-8443", "http://[::1]", None, 302, "https://[::1]:8443"),
    ("r-https", "http://[::1]:80", None, 302, "https://[::1]"),
    ("r-https-8443", "http://[::1]:80", None, 302, "https://[::1]:8443"),
]


@pytest.mark.parametrize("name,url,proto,status,location", REDIRECT_CASES)
def test_redirect_scheme_cases(env, name, url, proto, status, location):
    # Traefik's tests send absolute-form URLs; the path routes to the middleware's router
    target = url.rstrip("/") + "/" + name + "/"
    if url.count("/") > 2:          # a URL with a path of its own
        target = url.split("/", 3)
        target = "/".join(target[:3]) + "/" + name + "/" + target[3]
    host = url.split("/")[2]
    extra = "X-Forwarded-Proto: %s\r\n" % proto if proto else ""
    got, hdrs, body = send(env, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (target, host, extra))
    assert got == status
    if location is None:
        assert "location" not in hdrs
    else:
        tail = target.split(host, 1)[1]
        assert hdrs["location"] == location + tail
        assert hdrs["content-type"] == "text/plain; charset=utf-8"


def test_redirect_scheme_methods_and_trust(env):
    # only GET gets 302/301; HEAD and other methods 307/308
    assert get(env, "x", "/r-https/", method="HEAD")[0] == 307
    assert get(env, "x", "/r-https/", method="DELETE")[0] == 307
    assert get(env, "x", "/r-perm/", method="HEAD")[0] == 308
    assert get(env, "x", "/r-perm/")[0] == 301
    # X-Forwarded-Proto counts from a trusted proxy only (no redirect loop behind a
    # TLS-terminating load balancer; a client cannot claim https for itself)
    assert get(env, "x", "/r-https/", extra="X-Forwarded-Proto: https\r\n")[0] == 200
    status, hdrs, _ = get(env, "x", "/r-https/", extra="X-Forwarded-Proto: https\r\n",
                          source=UNTRUSTED)
    assert status == 302 and hdrs["location"] == "https://x/r-https/"


# -- 3. headers ---------------------------------------------------------------------------

def test_custom_host_header_replaces_the_host(env):
    doc = echo(get(env, "host-hdr.test", "/h")[2])
    assert header_lines(doc, "Host") == ["backend.internal"]
    # forwardedheaders ran before the middleware: X-Forwarded-Host is the client's
    assert header_lines(doc, "X-Forwarded-Host") == ["host-hdr.test"]


def test_pass_host_header_false_wins_over_a_custom_host(env):
    # Traefik's director sets outReq.Host to the server's after the middleware set req.Host
    doc = echo(get(env, "host-hdr-nopass.test", "/h")[2])
    assert header_lines(doc, "Host") == ["127.0.0.1:%d" % env["a"].port]


def test_headers_security_options_run(env):
    # every headers option is run (tests/test_e2e_mw_headers.py has them all)
    status, hdrs, _ = get(env, "frame-deny.test")
    assert status == 200 and hdrs["x-frame-options"] == "DENY"
    assert "headers option frameDeny" not in env["proxy"].output()


def test_empty_x_forwarded_for_suppresses_the_header(env):
    doc = echo(get(env, "no-xff.test", extra="X-Forwarded-For: 10.9.9.9\r\n")[2])
    assert header_lines(doc, "X-Forwarded-For") == []
    doc = echo(get(env, "no-xff.test", source=UNTRUSTED)[2])
    assert header_lines(doc, "X-Forwarded-For") == []


def test_custom_request_header_cases(env):
    foo = "Foo: bar\r\nX-Custom-Request-Header: client\r\nX-Forwarded-For: 10.1.1.1\r\n"
    doc = echo(get(env, "hdr-add.test", extra="Foo: bar\r\n")[2])        # adds a header
    assert header_lines(doc, "Foo") == ["bar"]
    assert header_lines(doc, "X-Custom-Request-Header") == ["test_request"]
    doc = echo(get(env, "hdr-delete.test", extra=foo)[2])                 # delete a header
    assert header_lines(doc, "Foo") == [] and header_lines(doc, "X-Custom-Request-Header") == []
    assert header_lines(doc, "X-Forwarded-For") == []
    doc = echo(get(env, "hdr-override.test", extra="Foo: bar\r\nFoo: baz\r\n")[2])  # override
    assert header_lines(doc, "Foo") == ["test"]
    # another spelling of X-Forwarded-For only deletes (Header.Del): the proxy adds the peer
    doc = echo(get(env, "hdr-xff-lower.test", extra="X-Forwarded-For: 10.1.1.1\r\n")[2])
    assert header_lines(doc, "X-Forwarded-For") == [TRUSTED]
    # stsSeconds: 0 makes a valid middleware that adds nothing
    status, hdrs, _ = get(env, "sts-zero.test")
    assert status == 200 and "strict-transport-security" not in hdrs


def test_response_headers_reach_answers_further_down_the_chain(env):
    status, hdrs, _ = get(env, "outer.test")
    assert status == 403 and hdrs["x-outer"] == "outer-value"
    status, hdrs, _ = get(env, "outer-redirect.test", "/p")
    assert status == 302 and hdrs["x-outer"] == "outer-value"
    assert hdrs["location"] == "https://outer-redirect.test/p"


def test_deprecated_and_zero_valued_options_are_accepted(env):
    status, hdrs, _ = get(env, "deprecated.test")
    assert status == 200 and hdrs["x-dep"] == "dep-value"
    status, _, body = get(env, "zero.test")
    assert status == 200 and header_lines(echo(body), "X-Zero") == ["zero-value"]
    out = env["proxy"].output()
    assert "sslRedirect is deprecated" in out and "featurePolicy is deprecated" in out


@pytest.mark.parametrize("host,message", [
    ("empty-headers.test", "headers configuration not valid"),
    ("bad-status.test", "invalid HTTP status code 700"),
    ("bad-subnet.test", "invalid IPv6 subnet 129"),
    ("with-port.test", "is neither an IP nor a CIDR"),
    ("add-empty.test", "prefix cannot be empty"),
])
def test_configurations_traefik_refuses_disable_their_routers(env, host, message):
    assert get(env, host)[0] == 404
    assert message in env["proxy"].output()
