"""Priorities, ties and the indexed route table."""
import pytest

from pyroute import rules


def table(*routes, syntax="v3"):
    return rules.RouteTable(list(routes), syntax=syntax)


# --- priorities ------------------------------------------------------------------------------

def test_default_priority_is_rule_length_in_bytes():
    assert rules.compile("Host(`a.example`)").priority == 17
    assert rules.compile("Path(`/é`)").priority == len("Path(`/é`)".encode()) == 11


def test_longer_rule_wins_by_default_as_in_traefik_docs():
    # rules-and-priority.md: the HostRegexp router (34) beats the Host router (26)
    t = table(("Router-1", r"HostRegexp(`[a-z]+\.traefik\.com`)", 0),
              ("Router-2", "Host(`foobar.traefik.com`)", 0))
    assert t.priorities == [34, 26]
    assert t.match(host="foobar.traefik.com") == "Router-1"


def test_explicit_priority_wins_and_zero_means_default():
    t = table(("Router-1", r"HostRegexp(`[a-z]+\.traefik\.com`)", 1),
              ("Router-2", "Host(`foobar.traefik.com`)", 2))
    assert t.match(host="foobar.traefik.com") == "Router-2"
    t = table(("long", "PathPrefix(`/api/v1`)", 0), ("short", "PathPrefix(`/`)", 0))
    assert t.priorities == [len("PathPrefix(`/api/v1`)"), len("PathPrefix(`/`)")]
    assert t.match(path="/api/v1/x") == "long"
    assert t.match(path="/api/v2") == "short"


def test_negative_priorities_rank_below_defaults():
    t = table(("neg", "PathPrefix(`/`)", -5), ("dflt", "PathPrefix(`/`)", 0))
    assert t.match(path="/x") == "dflt"
    assert t.match_all(path="/x") == ["dflt", "neg"]


def test_equal_priorities_are_broken_by_router_name():
    # Traefik leaves equal priorities in no fixed order (Go map + sort.Sort); pyroute is
    # deterministic: router name ascending, whatever the input order.
    routes = [("zeta", "Path(`/x`)", 0), ("alpha", "Path(`/x`)", 0), ("mid", "Path(`/x`)", 0)]
    for order in (routes, routes[::-1]):
        t = table(*order)
        assert t.match(path="/x") == "alpha"
        assert t.match_all(path="/x") == ["alpha", "mid", "zeta"]


def test_priority_limit():
    table(("max", "Path(`/`)", rules.MAX_USER_PRIORITY))
    with pytest.raises(ValueError, match="exceeds the max user-defined priority"):
        table(("over", "Path(`/`)", rules.MAX_USER_PRIORITY + 1))


# --- the index -------------------------------------------------------------------------------

def test_host_bucket_and_catch_all_are_merged_in_priority_order():
    t = table(("host", "Host(`a.example`)", 10),
              ("any-high", "PathPrefix(`/hi`)", 20),
              ("any-low", "PathPrefix(`/`)", 1))
    assert t.match(host="a.example", path="/hi/x") == "any-high"
    assert t.match(host="a.example", path="/x") == "host"
    assert t.match(host="b.example", path="/x") == "any-low"
    assert t.match_all(host="a.example", path="/hi") == ["any-high", "host", "any-low"]


def test_bucket_keys():
    assert rules.compile("Host(`A.example.`) && Path(`/`)").host_keys == {b"a.example"}
    assert rules.compile("Host(`a`) || Host(`b`)").host_keys == {b"a", b"b"}
    assert rules.compile("Host(`a`) && (Host(`a`) || Host(`b`))").host_keys == {b"a"}
    assert rules.compile("Host(`a`) || Path(`/`)").host_keys is None
    assert rules.compile("!Host(`a`)").host_keys is None
    r = rules.compile("Host(`*.a.example.`) || Host(`b`)")
    assert (r.host_keys, r.wildcard_keys) == ({b"b"}, {b"a.example"})
    for rule in ("Host(`*`)", "Host(`**.a`)", "Host(`*a.b`)", "Host(`*.`)"):
        assert rules.compile(rule).host_keys is None
    assert rules.compile("Host(`*.a`)", "v2").host_keys == {b"*.a"}      # literal in v2
    assert rules.compile("HostRegexp(`a`)").host_keys is None
    assert rules.compile("Host(`a`, `B`)", "v2").host_keys == {b"a", b"b"}


def test_indexed_rules_match_trailing_periods_and_ports():
    t = table(("r", "Host(`a.example`)", 0), ("dot", "Host(`b.example.`)", 0))
    assert t.match(host="a.example.:80") == "r"
    assert t.match(host="B.EXAMPLE") == "dot"
    assert t.match(host="b.example.") == "dot"


def test_wildcard_bucket_is_merged_with_exact_and_catch_all():
    t = table(("wild", "Host(`*.example.com`)", 30),
              ("exact", "Host(`a.example.com`)", 20),
              ("both", "Host(`a.example.com`) || Host(`*.example.com`)", 25),
              ("any", "PathPrefix(`/`)", 10))
    assert t.match_all(host="a.example.com") == ["wild", "both", "exact", "any"]
    assert t.match_all(host="B.example.com.:80") == ["wild", "both", "any"]
    assert t.match_all(host="x.b.example.com") == ["any"]
    assert t.match_all(host=".example.com") == ["wild", "both", "any"]   # empty first label


def test_contradictory_hosts_never_match():
    t = table(("never", "Host(`a`) && Host(`b`)", 0))
    assert t.match(host="a") is None and t.match(host="b") is None


def test_negated_and_or_rules_stay_in_the_catch_all():
    t = table(("not-a", "!Host(`a`)", 0), ("a-or-x", "Host(`a`) || Path(`/x`)", 0))
    assert t.match(host="b", path="/x") == "a-or-x"
    assert t.match(host="b", path="/y") == "not-a"
    assert t.match(host="a", path="/y") == "a-or-x"


def test_many_hosts():
    routes = [("r%d" % i, "Host(`h%d.example`) && PathPrefix(`/p%d`)" % (i, i % 7), 0)
              for i in range(2000)]
    routes.append(("fallback", "PathPrefix(`/`)", 1))
    t = rules.RouteTable(routes)
    assert t.match(host="h1234.example", path="/p2/x") == "r1234"
    assert t.match(host="h1234.example", path="/p3/x") == "fallback"
    assert t.match(host="nope.example", path="/p2") == "fallback"


# --- the server's fast path ------------------------------------------------------------------

def test_route_returns_constructor_indices():
    t = table(("a", "Host(`a.example`) && Header(`X-K`, `1`)", 0),
              ("b", "Host(`a.example`) && Query(`q`, `x y`)", 0),
              ("c", "ClientIP(`10.0.0.0/8`)", 0),
              ("d", "PathPrefix(`/d`)", 0))
    hs = [(b"x-k", b"1")]
    assert t.route(b"GET", b"A.example:80", b"/", b"", hs, b"1.1.1.1", False) == 0
    assert t.route(b"GET", b"a.example", b"/", b"q=x+y", None, b"1.1.1.1", False) == 1
    assert t.route(b"GET", None, b"/", b"", None, b"::ffff:10.0.0.9", False) == 2
    assert t.route(b"GET", None, b"/d", b"", None, None, True) == 3
    assert t.route(b"GET", None, b"/e", b"", None, None, False) == -1
    assert t.route(b"GET", b"x", b"http://a.example/", b"q=x%20y", None, b"1.1.1.1",
                   False) == 1


def test_route_rejects_non_bytes_headers():
    t = table(("a", "Header(`X`, `1`)", 0))
    with pytest.raises(TypeError):
        t.route(b"GET", None, b"/", b"", [("X", "1")], None, False)
    with pytest.raises(TypeError):
        t.route(b"GET", None, b"/", b"", [[b"X", b"1"]], None, False)
    with pytest.raises(TypeError):
        t.route(b"GET", None, b"/", b"", [(b"X",)], None, False)


def test_needs_flags_say_what_to_build():
    t = table(("a", "Host(`a`) && PathPrefix(`/`)", 0))
    assert (t.needs_headers, t.needs_query, t.needs_client_ip) == (False, False, False)
    t = table(("a", "Host(`a`)", 0), ("b", "Query(`x`) || HeaderRegexp(`X`, `y`)", 0),
              ("c", "!ClientIP(`::1`)", 0))
    assert (t.needs_headers, t.needs_query, t.needs_client_ip) == (True, True, True)


# --- construction ----------------------------------------------------------------------------

def test_syntax_per_table_and_per_route():
    t = rules.RouteTable([("v2", "Host(`a`, `b`)", 0)], syntax="v2")
    assert t.match(host="b") == "v2"
    t = rules.RouteTable([("old", "Headers(`X`, `1`)", 0, "v2"), ("new", "Header(`X`, `2`)", 0)])
    assert t.match(headers=[("X", "1")]) == "old"
    assert t.match(headers=[("X", "2")]) == "new"
    assert t.rule(0).syntax == "v2" and t.rule(1).syntax == "v3"


def test_bad_rule_names_its_router():
    with pytest.raises(rules.RuleSyntaxError) as info:
        table(("good", "Path(`/`)", 0), ("broken", "Path(`/`", 0))
    assert info.value.router == "broken"


def test_table_cannot_be_rebuilt_in_place():
    t = table(("a", "Path(`/`)", 0))
    with pytest.raises(TypeError):
        t.__init__([("b", "Path(`/b`)", 0)])
    assert t.match(path="/") == "a"


def test_table_introspection():
    t = table(("b", "Path(`/`)", 0), ("a", "PathPrefix(`/x`)", 0))
    assert len(t) == 2
    assert t.names == ["b", "a"]
    assert t.order() == [1, 0]
    assert t.rule(1).rule == "PathPrefix(`/x`)"
    assert rules.RouteTable([]).match(path="/") is None


# --- parse_domains ---------------------------------------------------------------------------

def test_parse_domains_like_traefik():
    assert rules.parse_domains("Host(`A.example`) && Path(`/`)") == ["a.example"]
    assert rules.parse_domains("Host(`a`) || !Host(`b`) || !(!Host(`C`))") == ["a", "c"]
    assert rules.parse_domains("!(Host(`a`) && !Host(`b`))") == ["b"]
    assert rules.parse_domains("HostRegexp(`a`) || Host(`*.w.example`)") == ["*.w.example"]
    assert rules.parse_domains("Host(`a`, `B`) || HostHeader(`c`)", syntax="v2") == ["a", "b"]
    assert rules.parse_domains("PathPrefix(`/`)") == []
    with pytest.raises(rules.RuleSyntaxError):
        rules.parse_domains("Host(`a`")


def test_a_table_built_in_stages_from_precompiled_rules_is_the_same_table():
    # a reload builds its tables this way, a slice of routes per loop turn
    # (pyroute.proxy.snapshot._staged_tables)
    routes = [("r%d" % i, "Host(`h%d.example`) && PathPrefix(`/p%d`)" % (i, i % 7), 0)
              for i in range(500)]
    routes += [("fallback", "PathPrefix(`/`)", 1), ("wild", "HostRegexp(`^.+\\.w\\.example$`)", 0),
               ("old", "Headers(`X`, `1`)", 0, "v2"), ("b-tie", "Path(`/tie`)", 7),
               ("a-tie", "Path(`/tie`)", 7)]
    whole = rules.RouteTable(routes)
    staged = rules.RouteTable((), finish=False)
    for i in range(0, len(routes), 97):
        part = [(r[0], rules.compile(r[1], r[3] if len(r) == 4 else "v3")) + tuple(r[2:])
                for r in routes[i:i + 97]]
        staged.add(part)
    staged.finish()
    assert staged.names == whole.names and staged.priorities == whole.priorities
    for host, path, headers in [("h123.example", "/p4/x", None), ("h123.example", "/p5", None),
                                ("x.w.example", "/", None), (None, "/tie", None),
                                ("nope", "/", [("X", "1")]), ("h499.example", "/p2", None)]:
        assert staged.match(host=host, path=path, headers=headers) == \
            whole.match(host=host, path=path, headers=headers)
    assert staged.match(host=None, path="/tie") == "a-tie"
    with pytest.raises(TypeError):
        staged.add([("late", "Path(`/late`)", 0)])
    with pytest.raises(TypeError):
        staged.finish()
