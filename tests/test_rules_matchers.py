"""What each v3 matcher sees of a request, as Traefik's pkg/muxer/http and Go's net/http give it."""
import pytest

from pyroute import rules


def m(rule, **request):
    return rules.compile(rule).matches(**request)


# --- Host ------------------------------------------------------------------------------------

@pytest.mark.parametrize("host,expected", [
    ("a.example", True),
    ("A.Example", True),               # canonical host is lower-cased
    ("a.example:8443", True),          # port stripped
    ("a.example:", True),              # empty port: net.SplitHostPort still splits
    ("a.example.", True),              # trailing period on the request
    ("b.example", False),
    ("a.example.org", False),
    ("xa.example", False),
    ("", False),
    (None, False),                     # no Host header
])
def test_host_exact(host, expected):
    assert m("Host(`a.example`)", host=host) is expected


def test_host_rule_is_lower_cased_and_trailing_period_on_the_rule_side():
    assert m("Host(`A.EXAMPLE`)", host="a.example")
    assert m("Host(`a.example.`)", host="a.example")
    assert m("Host(`a.example.`)", host="A.example.:80")


@pytest.mark.parametrize("host,rule", [
    ("[::1]:8080", "Host(`::1`)"),
    ("[::1]", "Host(`::1`)"),          # brackets of a bare IPv6 literal dropped
    ("[FE80::1]:80", "Host(`fe80::1`)"),
    ("10.0.0.1:80", "Host(`10.0.0.1`)"),
])
def test_host_ip_literals(host, rule):
    assert m(rule, host=host)


def test_host_with_two_colons_and_no_brackets_is_kept_whole():
    # net.SplitHostPort fails ("too many colons"): Traefik keeps the value as is
    assert m("Host(`::1`)", host="::1")
    assert not m("Host(`a`)", host="a:1:2")
    assert m("Host(`a:1:2`)", host="a:1:2")


def test_absolute_form_target_wins_over_host_header():
    # RFC 9112 §3.2.2; Go's readRequest sets req.Host from the absolute URL
    assert m("Host(`b.example`) && Path(`/x`)", host="a.example", path="http://b.example/x")
    assert not m("Host(`a.example`)", host="a.example", path="http://b.example/x")
    assert m("Host(`b.example`)", host=None, path="https://user@B.example:8443/")
    # an absolute URL without authority keeps the Host header
    assert m("Host(`a.example`)", host="a.example", path="http:///x")


@pytest.mark.parametrize("host,expected", [
    ("foo.example.com", True),
    ("FOO.example.com:443", True),
    ("foo.example.com.", True),
    ("foo.bar.example.com", False),    # exactly one label
    ("example.com", False),            # not the apex
    ("fooexample.com", False),
    ("foo.example.org", False),
])
def test_host_single_label_wildcard(host, expected):
    assert m("Host(`*.example.com`)", host=host) is expected


def test_host_bare_star_matches_every_request_even_without_host():
    r = rules.compile("Host(`*`)")
    assert r.matches(host="anything.example")
    assert r.matches(host=None)
    assert r.matches(host="")


def test_host_double_wildcard_covers_all_subdomains_and_not_apex():
    r = rules.compile("Host(`**.example.com`)")
    assert r.matches(host="a.example.com") and r.matches(host="a.b.example.com")
    assert not r.matches(host="example.com") and not r.matches(host="aexample.com")
    # its stars do not count in the default priority (Traefik GetRulePriority)
    assert r.priority == len("Host(`**.example.com`)") - 2


def test_star_elsewhere_is_literal():
    assert not m("Host(`a.*.com`)", host="a.b.com")
    assert not m("Host(`*foo.example.com`)", host="xfoo.example.com")


# --- HostRegexp ------------------------------------------------------------------------------

def test_host_regexp_is_unanchored_on_the_canonical_host():
    assert m(r"HostRegexp(`^[a-z]+\.example\.com$`)", host="Foo.Example.com:8080")
    assert m(r"HostRegexp(`example`)", host="www.example.org")
    assert not m(r"HostRegexp(`^example$`)", host="www.example.org")
    assert m(r"HostRegexp(`^::1$`)", host="[::1]:80")


def test_host_regexp_that_matches_empty_matches_every_request():
    # Traefik also tries the regexp on the (empty) CNAME-flattened host
    assert m("HostRegexp(`.*`)", host=None)
    assert m("HostRegexp(`^(foo)?$`)", host="bar.example")
    assert not m("HostRegexp(`^foo$`)", host="bar.example")


# --- Path, PathPrefix, PathRegexp and the routing path ---------------------------------------

def test_path_is_exact_and_prefix_is_a_plain_prefix():
    assert m("Path(`/products`)", path="/products")
    assert not m("Path(`/products`)", path="/products/")
    assert not m("Path(`/products`)", path="/products/shoes")
    for p in ("/products", "/products/", "/products/shoes", "/products-for-sale"):
        assert m("PathPrefix(`/products`)", path=p)
    assert not m("PathPrefix(`/products`)", path="/product")


@pytest.mark.parametrize("raw,routing", [
    ("/foo%20bar", "/foo bar"),        # unreserved escapes are decoded
    ("/%7Euser", "/~user"),
    ("/a%2Fb", "/a%2Fb"),              # reserved escapes stay encoded
    ("/a%3Fb%23c", "/a%3Fb%23c"),
    ("/100%25", "/100%25"),            # so does %25
    ("/a%2fb", "/a/b"),                # only the upper-case spelling is "reserved"
    ("/caf%C3%A9", "/café"),
    ("/a%20%2F%41", "/a %2FA"),
])
def test_routing_path_partial_decoding(raw, routing):
    assert m("Path(`%s`)" % routing, path=raw)


def test_path_with_bytes_go_escapes_is_reencoded_before_decoding():
    # Go's EscapedPath: a raw path that is not validly encoded is re-encoded from the decoded
    # path, so '!' becomes %21 (reserved, kept) and %2F collapses to '/'.
    assert m("Path(`/a%21b|`)", path="/a!b|")
    assert m("Path(`/a!b`)", path="/a!b")          # valid encoding: kept as sent
    assert m("Path(`/x/y{`)", path="/x%2Fy{")


def test_bad_percent_encoding_never_matches():
    # Go's url.Parse refuses it: Traefik answers 400 before any router
    assert not m("PathPrefix(`/`)", path="/a%zz")
    assert not m("PathPrefix(`/`)", path="/a%2")
    t = rules.RouteTable([("all", "PathPrefix(`/`)", 0)])
    assert t.route(b"GET", b"h", b"/a%G0", b"", None, b"1.2.3.4", False) == -2
    assert t.route(b"GET", b"h", b"/a%20", b"", None, b"1.2.3.4", False) == 0


def test_path_regexp_sees_the_routing_path():
    assert m(r"PathRegexp(`^/products/(shoes|socks)/[0-9]+$`)", path="/products/shoes/31")
    assert m(r"PathRegexp(`\.(jpeg|jpg|png)$`)", path="/img/a.png")
    assert m(r"PathRegexp(`(?i)^/products`)", path="/PRODUCTS/x")
    assert m(r"PathRegexp(`^/a b$`)", path="/a%20b")
    assert m(r"PathRegexp(`^/a%2Fb$`)", path="/a%2Fb")
    assert m(r"PathRegexp(`products`)", path="/x/products")    # unanchored


def test_regexps_have_go_re2_semantics_not_pythons():
    # '$' is end of text (Python's re also matches before a final newline)
    assert not m(r"PathRegexp(`^/a$`)", path="/a%0A")
    assert m(r"PathRegexp(`(?m)^/a$`)", path="/a%0A")
    # no catastrophic backtracking: this returns at once with RE2
    assert not m(r"PathRegexp(`^(a+)+$`)", path="/" + "a" * 5000 + "!")
    # \z, classes and flags as in Go
    assert m(r"PathRegexp(`^/\pL+\z`)", path="/caf%C3%A9")
    assert m(r"PathRegexp(`^/[[:alpha:]]+$`)", path="/abc")


# --- Method ----------------------------------------------------------------------------------

def test_method_is_upper_cased_in_the_rule_but_exact_on_the_request():
    assert m("Method(`get`)", method="GET")
    assert m("Method(`OPTIONS`)", method="OPTIONS")
    assert not m("Method(`GET`)", method="get")
    assert not m("Method(`GET`)", method="HEAD")


# --- Header, HeaderRegexp --------------------------------------------------------------------

def test_header_names_are_canonicalised():
    for name in ("Content-Type", "content-type", "CONTENT-TYPE"):
        assert m("Header(`content-TYPE`, `application/yaml`)",
                 headers=[(name, "application/yaml")])


def test_header_values_match_per_line():
    hs = [("Accept", "text/html"), ("Accept", "application/json")]
    assert m("Header(`Accept`, `application/json`)", headers=hs)
    assert not m("Header(`Accept`, `application/json`)",
                 headers=[("Accept", "text/html, application/json")])
    assert m("HeaderRegexp(`Accept`, `^application/(json|yaml)$`)", headers=hs)
    assert not m("HeaderRegexp(`Accept`, `^application/json$`)",
                 headers=[("Accept", "text/html, application/json")])


def test_header_value_is_exact_and_trimmed_like_go():
    assert m("Header(`X-A`, `v`)", headers=[("X-A", "  v\t")])
    assert not m("Header(`X-A`, `v`)", headers=[("X-A", "V")])
    assert not m("Header(`X-A`, `v`)", headers=[("X-B", "v")])
    assert not m("Header(`X-A`, `v`)", headers=[])
    assert not m("Header(`X-A`, `v`)", headers=None)


def test_header_regexp_is_unanchored_with_flags():
    assert m("HeaderRegexp(`Content-Type`, `(?i)^application/(json|yaml)$`)",
             headers=[("Content-Type", "Application/JSON")])
    assert m("HeaderRegexp(`User-Agent`, `curl`)", headers=[("User-Agent", "x curl/8")])


def test_headers_go_takes_out_of_the_map_never_match():
    # net/http moves Host to req.Host and drops Transfer-Encoding from req.Header
    assert not m("Header(`Host`, `a.example`)", host="a.example",
                 headers=[("Host", "a.example")])
    assert not m("HeaderRegexp(`Transfer-Encoding`, `chunked`)",
                 headers=[("Transfer-Encoding", "chunked")])
    # a name that is not a token can never be in the map either
    assert not m("Header(`X A`, `v`)", headers=[("X A", "v")])


# --- Query, QueryRegexp ----------------------------------------------------------------------

@pytest.mark.parametrize("query,expected", [
    ("mobile=true", True),
    ("a=1&mobile=true", True),
    ("mobile=false&mobile=true", True),     # any of the values
    ("mobile=tru%65", True),                # form-decoded
    ("mobile=false", False),
    ("Mobile=true", False),                 # keys are case-sensitive
    ("", False),
    ("mobile=true;a=1", False),             # a piece holding ';' is dropped (Go >= 1.17)
    ("a=1;b=2&mobile=true", True),
    ("mobile=tr%zze&mobile=true", True),    # a bad escape drops only its piece
    ("mobile=tr%zze", False),
])
def test_query_values(query, expected):
    assert m("Query(`mobile`, `true`)", query=query) is expected


def test_query_form_decoding_of_plus_and_keys():
    assert m("Query(`q`, `a b`)", query="q=a+b")
    assert m("Query(`q`, `a+b`)", query="q=a%2Bb")
    assert m("Query(`my key`, `v`)", query="my+key=v")


def test_query_without_value_matches_empty_values():
    assert m("Query(`mobile`)", query="mobile")
    assert m("Query(`mobile`)", query="mobile=")
    assert m("Query(`mobile`)", query="mobile=1&mobile")
    assert not m("Query(`mobile`)", query="mobile=1")
    assert m("QueryRegexp(`mobile`)", query="mobile=")


def test_query_regexp():
    assert m("QueryRegexp(`mobile`, `^(true|yes)$`)", query="mobile=yes")
    assert not m("QueryRegexp(`mobile`, `^(true|yes)$`)", query="mobile=no")
    assert m("QueryRegexp(`mobile`, `^.*$`)", query="mobile=")
    assert m("QueryRegexp(`mobile`, `(?i)^(true|yes)$`)", query="mobile=YES")
    assert not m("QueryRegexp(`mobile`, `^.*$`)", query="other=1")


# --- ClientIP --------------------------------------------------------------------------------

@pytest.mark.parametrize("rule,remote,expected", [
    ("ClientIP(`10.76.105.11`)", "10.76.105.11:51000", True),
    ("ClientIP(`10.76.105.11`)", "10.76.105.12:51000", False),
    ("ClientIP(`192.168.1.0/24`)", "192.168.1.77:1", True),
    ("ClientIP(`192.168.1.0/24`)", "192.168.2.77:1", False),
    ("ClientIP(`192.168.1.7/24`)", "192.168.1.200:1", True),          # host bits masked
    ("ClientIP(`::1`)", "[::1]:1", True),
    ("ClientIP(`fe80::/10`)", "[fe80::1234]:1", True),
    ("ClientIP(`fe80::/10`)", "[fec0::1]:1", False),
    ("ClientIP(`fe80::/10`)", "[fe80::1%eth0]:1", True),              # zone ignored
    # IPv4-mapped IPv6 peers are inside IPv4 networks and equal to IPv4 addresses
    ("ClientIP(`10.0.0.0/8`)", "[::ffff:10.1.2.3]:1", True),
    ("ClientIP(`10.1.2.3`)", "[::ffff:10.1.2.3]:1", True),
    ("ClientIP(`::ffff:10.1.2.3`)", "10.1.2.3:1", True),
    ("ClientIP(`::ffff:10.0.0.0/104`)", "10.9.9.9:1", True),          # acts as 10.0.0.0/8
    # an IPv6 network never holds IPv4 peers, and the other way round
    ("ClientIP(`::/0`)", "10.0.0.1:1", False),
    ("ClientIP(`::/0`)", "[2001:db8::1]:1", True),
    ("ClientIP(`0.0.0.0/0`)", "[2001:db8::1]:1", False),
    ("ClientIP(`0.0.0.0/0`)", "[::ffff:1.2.3.4]:1", True),
    # the address without a port, and unparsable peers
    ("ClientIP(`10.0.0.1`)", "10.0.0.1", True),
    ("ClientIP(`10.0.0.1`)", "010.0.0.1:1", False),
    ("ClientIP(`10.0.0.1`)", "bogus:1", False),
    ("ClientIP(`10.0.0.1`)", None, False),
])
def test_client_ip(rule, remote, expected):
    assert m(rule, remote_addr=remote) is expected


def test_client_ip_ignores_forwarded_headers():
    r = rules.compile("ClientIP(`1.2.3.4`)")
    assert not r.matches(remote_addr="10.0.0.1:1", headers=[("X-Forwarded-For", "1.2.3.4"),
                                                            ("X-Real-Ip", "1.2.3.4")])


# --- what a rule reads -----------------------------------------------------------------------

def test_rule_reports_what_it_reads_from_the_request():
    r = rules.compile("Host(`a`) && (Header(`X`, `1`) || Query(`q`))")
    assert r.uses_headers and r.uses_query and not r.uses_client_ip
    assert rules.compile("ClientIP(`::1`)").uses_client_ip
