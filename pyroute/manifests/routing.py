"""Which routers a connection can reach.

Shared by ``pyroute explain`` and the server so that both see the same tables (the TLS side,
option and certificate for a server name and the 421 decision, is ``pyroute.tls.TLSConfig``'s,
which both use too):

``route_entries(rc, entry_point, tls, parent=None)``
    ``[(router name, rule, priority, ruleSyntax)]`` for ``RouteTable``: the enabled routers on
    ``entry_point`` that serve TLS connections (``tls=True``: routers with a ``tls`` section) or
    plain ones (``tls=False``), top-level routers when ``parent`` is None, else the children
    (``parentRefs``) of router ``parent`` (children carry no ``tls`` section: they serve the
    connections their parent serves).
"""
__all__ = ["route_entries", "children_of"]


def route_entries(rc, entry_point, tls, parent=None):
    out = []
    for name, r in rc.dynamic["http"]["routers"].items():
        if r.get("status") != "enabled":
            continue
        parents = r.get("parentRefs")
        if parent is None:
            if ("tls" in r) != bool(tls):
                continue
            if parents is not None or entry_point not in (r.get("entryPoints") or ()):
                continue
        elif parent not in (parents or ()):
            continue
        out.append((name, r["rule"], r.get("priority", 0), r.get("ruleSyntax", "")))
    return out


def children_of(rc, name):
    return [n for n, r in rc.dynamic["http"]["routers"].items()
            if name in (r.get("parentRefs") or ()) and r.get("status") == "enabled"]
