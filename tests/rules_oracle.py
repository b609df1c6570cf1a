"""Linear-scan oracle for the route table (STYLE.md: reference implementations are test oracles).

It evaluates every compiled rule in Traefik's priority order (priority descending; pyroute breaks
ties by router name, then position), with no index: the answer the indexed RouteTable must give.
"""
from pyroute import rules


class LinearTable:
    def __init__(self, routes, syntax="v3"):
        compiled = []
        for i, (name, rule, priority) in enumerate(routes):
            r = rules.compile(rule, syntax)
            compiled.append((-(priority or r.priority), name, i, r))
        compiled.sort(key=lambda e: e[:3])
        self.ordered = [(name, r) for _, name, _, r in compiled]

    def match_all(self, **request):
        return [name for name, r in self.ordered if r.matches(**request)]

    def match(self, **request):
        for name, r in self.ordered:
            if r.matches(**request):
                return name
        return None
