"""The deprecated v2 rule syntax (``syntax: v2``): Traefik's matcher_v2.go over gorilla/mux."""
import pytest

from pyroute import rules


def m(rule, **request):
    return rules.compile(rule, "v2").matches(**request)


def err(rule):
    with pytest.raises(rules.RuleSyntaxError) as info:
        rules.compile(rule, "v2")
    return info.value


def test_v2_spellings():
    sp = rules.matcher_spellings("v2")
    assert {"HostHeader", "hostheader", "HOSTHEADER", "Hostheader", "Headers",
            "HeadersRegexp", "headersregexp"} <= set(sp)
    assert "Header" not in sp and "PathRegexp" not in sp and "QueryRegexp" not in sp


def test_v3_only_matchers_are_refused_in_v2():
    assert "Header is a v3-syntax matcher" in err("Header(`X`, `1`)").message
    assert "unsupported matcher PathRegexp" in err("PathRegexp(`/x`)").message


def test_host_and_host_header_take_several_hosts_meaning_or():
    for name in ("Host", "HostHeader", "hostheader"):
        r = rules.compile("%s(`a.example`, `B.example`)" % name, "v2")
        assert r.matches(host="a.example:80") and r.matches(host="b.example")
        assert not r.matches(host="c.example")


def test_v2_host_has_no_wildcards():
    assert not m("Host(`*.example.com`)", host="a.example.com")
    assert m("Host(`a.example.`)", host="a.example")


def test_host_regexp_templates():
    r = rules.compile("HostRegexp(`{subdomain:[a-z]+}.traefik.com`)", "v2")
    assert r.matches(host="foo.traefik.com")
    assert r.matches(host="foo.traefik.com:8080")      # no ':' in the pattern: port ignored
    assert not r.matches(host="foo.bar.traefik.com")
    assert not r.matches(host="fooxtraefik.com")       # the literal part is quoted
    assert r.matches(host="FOO.traefik.com")           # Traefik's mux fork: (?i) on hosts
    # text outside {...} is literal (Traefik's matcher_v2_test: "This is weird.")
    assert not m("HostRegexp(`(example.com`)", host="example.com")
    assert m("HostRegexp(`(example.com`)", host="(example.com")
    assert m(r"HostRegexp(`{subdomain:(foo\.)?bar\.com}`)", host="bar.com")   # capture group
    assert m("HostRegexp(`{sub}.example.com`)", host="a-1.example.com")   # default [^.]+
    assert m("HostRegexp(`a.example`, `{x:b|c}.example`)", host="c.example")
    assert not m("HostRegexp(`a.example:80`)", host="a.example")   # ':' in pattern: port kept
    assert m("HostRegexp(`a.example:80`)", host="a.example:80")


def test_path_templates_are_anchored():
    r = rules.compile("Path(`/users/{id:[0-9]+}`)", "v2")
    assert r.matches(path="/users/42")
    assert not r.matches(path="/users/42/x") and not r.matches(path="/users/abc")
    assert m("Path(`/users/{id}`)", path="/users/abc")
    assert not m("Path(`/users/{id}`)", path="/users/a/b")          # default [^/]+
    assert m("Path(`/a`, `/b`)", path="/b")
    assert not m("Path(`/a`)", path="/a/")


def test_path_template_with_a_capture_group():
    # Traefik's matcher_v2_test: Path(`/css{path:(/.*)?}`)
    r = rules.compile("Path(`/css{path:(/.*)?}`)", "v2")
    assert r.matches(path="/css/main.css") and r.matches(path="/css/components/c.css")
    assert r.matches(path="/css")
    assert not r.matches(path="/css.css") and not r.matches(path="/js/main.js")


def test_path_prefix_templates():
    assert m("PathPrefix(`/static/{v:v[0-9]+}`)", path="/static/v1/app.js")
    assert not m("PathPrefix(`/static/{v:v[0-9]+}`)", path="/static/x/app.js")
    assert m("PathPrefix(`/api`, `/v2`)", path="/v2/x")
    assert m("PathPrefix(`/a b`)", path="/a%20b/c")                 # routing path


def test_method_list():
    assert m("Method(`GET`, `post`)", method="POST")
    assert not m("Method(`GET`, `POST`)", method="PUT")


def test_headers_pairs_all_must_match():
    hs = [("X-A", "1"), ("x-b", "2")]
    assert m("Headers(`X-A`, `1`, `X-B`, `2`)", headers=hs)
    assert not m("Headers(`X-A`, `1`, `X-B`, `3`)", headers=hs)
    assert m("HeadersRegexp(`Content-Type`, `application/(json|yaml)`)",
             headers=[("Content-Type", "application/json; charset=utf-8")])
    assert not m("HeadersRegexp(`Content-Type`, `^application/json$`)",
                 headers=[("Content-Type", "text/plain")])


def test_query_uses_the_first_occurrence_and_both_separators():
    assert m("Query(`a=1`)", query="a=1")
    assert not m("Query(`a=1`)", query="a=2&a=1")       # mux looks at the first "a" only
    assert m("Query(`a=1`)", query="x=0;a=1")           # ';' separates too
    assert m("Query(`a=x y`)", query="a=x+y")
    assert m("Query(`a=1`, `b=2`)", query="b=2&a=1")
    assert not m("Query(`a=1`, `b=2`)", query="a=1")


def test_query_with_empty_value_means_any_value():
    assert m("Query(`a=`)", query="a=anything")
    assert m("Query(`a=`)", query="a")
    assert not m("Query(`a=`)", query="b=1")
    assert not m("Query(`a=`)", query="a=x%0Ay")        # `^a=.*$`: '.' stops at a newline


def test_query_templates():
    r = rules.compile("Query(`id={id:[0-9]+}`)", "v2")
    assert r.matches(query="id=42")
    assert not r.matches(query="id=x")
    assert not r.matches(query="")


def test_query_arguments_are_split_and_paired():
    # Traefik v2 splits each argument on its first '=' and pairs all pieces up
    assert m("Query(`a`, `b`)", query="a=b")
    assert "multiple of 2" in err("Query(`a`)").message


def test_client_ip_list():
    r = rules.compile("ClientIP(`10.0.0.1`, `192.168.0.0/16`)", "v2")
    assert r.matches(remote_addr="192.168.3.4:1") and r.matches(remote_addr="10.0.0.1:1")
    assert not r.matches(remote_addr="10.0.0.2:1")


@pytest.mark.parametrize("rule,what", [
    ("Headers(`X-A`)", "multiple of 2"),
    ("HeadersRegexp(`X-A`, `(`)", "invalid regexp"),
    ("Path(`/users/{id`)", "unbalanced braces"),
    ("Path(`/users/id}`)", "unbalanced braces"),
    ("Path(`/users/{:[0-9]+}`)", "missing name or pattern"),
    ("Path(`users`)", "must start with a slash"),
    ("HostRegexp(`{x:(}.example`)", "invalid regexp"),
    ("Query(`a={x}`, `b={x}`)", "duplicated route variable"),
    ("Host(`é.example`)", "non-ASCII"),
    ("Host()", "no args"),
])
def test_v2_errors(rule, what):
    e = err(rule)
    assert what in e.message, e.message
    assert e.matcher is not None


def test_v2_default_priority_is_rule_length_too():
    rule = "Host(`a.example`, `b.example`)"
    assert rules.compile(rule, "v2").priority == len(rule)


def test_v2_operators_work_as_in_v3():
    r = rules.compile("Host(`a`) && !Path(`/admin`) || Method(`DELETE`)", "v2")
    assert r.matches(host="a", path="/x")
    assert not r.matches(host="a", path="/admin")
    assert r.matches(host="b", path="/admin", method="DELETE")
