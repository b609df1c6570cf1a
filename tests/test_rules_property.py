"""Property: the indexed RouteTable answers exactly as a linear scan in priority order."""
from hypothesis import given, settings
from hypothesis import strategies as st

from pyroute import rules
from rules_oracle import LinearTable

HOSTS = ["a.example", "b.example", "c.example", "A.example.", "x.a.example"]
ATOMS = (
    ["Host(`%s`)" % h for h in HOSTS]
    + ["Host(`*.example`)", "Host(`*.A.example.`)", "Host(`*`)", "Host(`**.example`)",
       "HostRegexp(`^b`)", "PathPrefix(`/`)",
       "PathPrefix(`/x`)", "Path(`/x`)", "Path(`/x/y`)", "Method(`GET`)", "Method(`POST`)",
       "Header(`X-A`, `1`)", "Query(`q`, `1`)", "ClientIP(`10.0.0.0/8`)"]
)

rule_text = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" && ", " || "]), inner).map(lambda t: "".join(t)),
        inner.map(lambda r: "!(%s)" % r),
        inner.map(lambda r: "(%s)" % r),
    ),
    max_leaves=5,
)

route_sets = st.lists(
    st.tuples(rule_text, st.sampled_from([0, 0, 0, -1, 1, 20, 40])),
    min_size=1, max_size=12,
).flatmap(lambda rs: st.permutations(range(len(rs))).map(
    lambda perm: [("r%02d" % perm[i], text, prio) for i, (text, prio) in enumerate(rs)]))

requests = st.fixed_dictionaries({
    "method": st.sampled_from(["GET", "POST"]),
    "host": st.sampled_from(HOSTS + ["b.example:80", "X.A.example", "z.example", "a.example.",
                                     "[::1]:80", "y.x.a.example", ".a.example", None]),
    "path": st.sampled_from(["/", "/x", "/x/y", "/z", "http://c.example/x"]),
    "query": st.sampled_from(["", "q=1", "q=2&q=1"]),
    "headers": st.sampled_from([[], [("x-a", "1")], [("X-A", "2")]]),
    "remote_addr": st.sampled_from(["10.1.2.3:5", "192.168.0.1:5", "[::ffff:10.0.0.1]:5"]),
})


@settings(max_examples=400, deadline=None)
@given(route_sets, st.lists(requests, min_size=1, max_size=8))
def test_indexed_table_equals_linear_scan(routes, reqs):
    table = rules.RouteTable(routes)
    oracle = LinearTable(routes)
    for req in reqs:
        expected = oracle.match_all(**req)
        assert table.match_all(**req) == expected
        assert table.match(**req) == (expected[0] if expected else None)


@settings(max_examples=100, deadline=None)
@given(route_sets, requests)
def test_route_fast_path_agrees_with_match(routes, req):
    table = rules.RouteTable(routes)
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    host, _, _ = req["remote_addr"].rpartition(":")
    ip = host.strip("[]").encode()
    idx = table.route(req["method"].encode(), enc(req["host"]), req["path"].encode(),
                      req["query"].encode(), [(k.encode(), v.encode()) for k, v in req["headers"]],
                      ip, False)
    name = table.match(**req)
    assert (table.names[idx] if idx >= 0 else None) == name


V2_ATOMS = ["Host(`a.example`, `B.example`)", "HostHeader(`c.example.`)", "Host(`x.a.example`)",
            "HostRegexp(`{s:[a-z]+}.example`)", "Path(`/x`, `/x/y`)", "PathPrefix(`/{v}`)",
            "Method(`GET`, `post`)", "Query(`q=1`)", "Headers(`X-A`, `1`)", "ClientIP(`10.1.2.3`)"]
v2_rule_text = st.recursive(
    st.sampled_from(V2_ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" && ", " || "]), inner).map(lambda t: "".join(t)),
        inner.map(lambda r: "!(%s)" % r),
    ),
    max_leaves=4,
)
v2_route_sets = st.lists(st.tuples(v2_rule_text, st.sampled_from([0, 0, 5, 50])),
                         min_size=1, max_size=10).map(
    lambda rs: [("r%02d" % i, text, prio) for i, (text, prio) in enumerate(rs)])


@settings(max_examples=150, deadline=None)
@given(v2_route_sets, st.lists(requests, min_size=1, max_size=6))
def test_indexed_table_equals_linear_scan_v2(routes, reqs):
    table = rules.RouteTable(routes, syntax="v2")
    oracle = LinearTable(routes, syntax="v2")
    for req in reqs:
        assert table.match_all(**req) == oracle.match_all(**req)
