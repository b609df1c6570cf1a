"""Traefik v3's router rule language, for users' unit tests and for pyroute's own layers.

    from pyroute import rules
    r = rules.compile("Host(`a.example`) && PathPrefix(`/api`)")   # syntax="v2" too
    r.priority                      # Traefik's default priority: len(rule) in bytes
    r.matches(method="GET", host="a.example:8443", path="/api/x%20y", query="a=1",
              headers=[("X-Foo", "bar")], remote_addr="10.0.0.1:51000", tls=False)
    t = rules.RouteTable([("r1", "Host(`a.example`)", 0), ("r2", "PathPrefix(`/`)", 5)])
    t.match(method="GET", host="a.example", path="/x")          # -> "r1", "r2" or None
    t.match_all(...)                                            # every match, winner first
    t.route(b"GET", b"a.example", b"/x", b"", None, b"10.0.0.1", False)   # server fast path
    rules.parse_domains("Host(`A.example`) || !Host(`b.example`)")         # ["a.example"]

The engine (pyroute._engine.rules, Cython) does the work; this module only names it.
"""
from ._engine.errors import RuleSyntaxError
from ._engine.rules import MAX_USER_PRIORITY, Rule, RouteTable, matcher_spellings, parse_domains
from ._engine.rules import compile_rule as _compile_rule

__all__ = ["compile", "parse_domains", "matcher_spellings", "Rule", "RouteTable",
           "RuleSyntaxError", "MAX_USER_PRIORITY"]


def compile(rule, syntax="v3"):  # noqa: A001 - the name the API promises
    """Compile a rule (``syntax`` "v3", the default, or "v2"); raises RuleSyntaxError."""
    return _compile_rule(rule, syntax)
