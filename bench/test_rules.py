"""Route-table benchmarks: the indexed table side by side with a linear scan (same compiled rules).

Run: .venv/bin/python -m pytest bench/test_rules.py --benchmark-only
Targets (issue 2): 10,000 host routers, median t.match(...) <= 2 us and t(10,000)/t(10) <= 1.5;
compiling 10,000 rules <= 1 s.
"""
import pytest

from pyroute import rules


def host_routes(n):
    return [("r%d" % i, "Host(`h%d.example.com`) && PathPrefix(`/api`)" % i, 0)
            for i in range(n)]


def wildcard_routes(n):
    return [("w%d" % i, "Host(`*.h%d.example.com`) && PathPrefix(`/api`)" % i, 0)
            for i in range(n)]


def prefix_routes(n):
    return [("p%d" % i, "Host(`one.example`) && PathPrefix(`/p%d`)" % i, 0) for i in range(n)]


_TABLES = {}


def table(kind, n, index):
    key = (kind, n, index)
    if key not in _TABLES:
        routes = {"hosts": host_routes, "wildcards": wildcard_routes,
                  "prefix": prefix_routes}[kind](n)
        _TABLES[key] = rules.RouteTable(routes, index=index)
    return _TABLES[key]


@pytest.mark.parametrize("n", [10, 1000, 10000])
@pytest.mark.parametrize("mode", ["indexed", "linear"])
def test_match_hosts(benchmark, n, mode):
    benchmark.group = "match: %d host routers" % n
    t = table("hosts", n, mode == "indexed")
    host = "h%d.example.com" % (n // 2)
    assert t.match(method="GET", host=host, path="/api/x") == "r%d" % (n // 2)
    benchmark(t.match, method="GET", host=host, path="/api/x", query="", headers=[],
              remote_addr="10.0.0.1:1", tls=False)


@pytest.mark.parametrize("n", [10, 1000, 10000])
@pytest.mark.parametrize("mode", ["indexed", "linear"])
def test_route_fast_path_hosts(benchmark, n, mode):
    benchmark.group = "route (server fast path): %d host routers" % n
    t = table("hosts", n, mode == "indexed")
    host = ("h%d.example.com" % (n // 2)).encode()
    assert t.route(b"GET", host, b"/api/x", b"", None, b"10.0.0.1", False) >= 0
    benchmark(t.route, b"GET", host, b"/api/x", b"", None, b"10.0.0.1", False)


@pytest.mark.parametrize("mode", ["indexed", "linear"])
def test_match_wildcard_hosts(benchmark, mode):
    benchmark.group = "match: 10000 wildcard host routers (*.hN.example.com)"
    t = table("wildcards", 10000, mode == "indexed")
    assert t.match(host="x.h5000.example.com", path="/api/x") == "w5000"
    benchmark(t.match, method="GET", host="x.h5000.example.com", path="/api/x", query="",
              headers=[], remote_addr="10.0.0.1:1", tls=False)


@pytest.mark.parametrize("mode", ["indexed", "linear"])
def test_match_prefixes_under_one_host(benchmark, mode):
    benchmark.group = "match: 1000 PathPrefix routers under one host"
    t = table("prefix", 1000, mode == "indexed")
    assert t.match(host="one.example", path="/p500/x") == "p500"
    benchmark(t.match, method="GET", host="one.example", path="/p500/x", query="", headers=[],
              remote_addr="10.0.0.1:1", tls=False)


def test_compile_10000_rules(benchmark):
    benchmark.group = "compile"
    routes = host_routes(10000)
    t = benchmark.pedantic(rules.RouteTable, args=(routes,), rounds=5, iterations=1)
    assert len(t) == 10000

