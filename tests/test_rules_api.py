"""The public face promised by issue 2 and the README's "Rules API" section."""
import pyroute.errors
from pyroute import rules


def test_issue_example_compile_and_matches():
    r = rules.compile("Host(`a.example`) && PathPrefix(`/api`)")
    assert r.priority == len("Host(`a.example`) && PathPrefix(`/api`)")
    assert r.matches(method="GET", host="a.example:8443", path="/api/x%20y", query="a=1&b=2",
                     headers=[("X-Foo", "bar")], remote_addr="10.0.0.1:51000", tls=False)
    assert not r.matches(method="GET", host="b.example", path="/api")
    assert r.syntax == "v3" and r.rule.startswith("Host(")
    assert r.domains == ["a.example"]


def test_issue_example_route_table():
    t = rules.RouteTable([("r1", "Host(`a.example`)", 0), ("r2", "PathPrefix(`/`)", 5)])
    assert t.match(method="GET", host="a.example", path="/x", query="", headers=[],
                   remote_addr="10.0.0.1:1", tls=False) == "r1"
    assert t.match(host="b.example", path="/x") == "r2"
    assert t.match_all(host="a.example", path="/x") == ["r1", "r2"]
    assert rules.RouteTable([("r1", "Host(`a.example`)", 0)]).match(host="b") is None


def test_v2_syntax_keyword():
    assert rules.compile("Host(`a`, `b`)", syntax="v2").matches(host="b")
    t = rules.RouteTable([("r", "Headers(`X`, `1`)", 0)], syntax="v2")
    assert t.match(headers=[("x", "1")]) == "r"


def test_bytes_are_accepted_as_well_as_str():
    r = rules.compile("Host(`a`) && Header(`X`, `é`)")
    assert r.matches(host=b"a", path=b"/", headers=[(b"X", "é".encode())])
    assert r.matches(host="a", headers=[("X", "é")])


def test_missing_host_means_no_host_header():
    assert not rules.compile("Host(`a`)").matches(host=None)
    assert rules.compile("!Host(`a`)").matches(host=None)


def test_errors_are_the_package_hierarchy():
    assert rules.RuleSyntaxError is pyroute.errors.RuleSyntaxError
    assert issubclass(rules.RuleSyntaxError, pyroute.errors.EngineError)
    assert issubclass(rules.RuleSyntaxError, ValueError)
