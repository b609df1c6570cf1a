"""``pyroute explain``: where a request would go, and why.

    pyroute explain [-c STATIC] PATH... [METHOD] URL [-H 'Name: value']... [--client-ip IP]
                    [--entrypoint NAME] [--sni NAME] [--json]
    pyroute explain [-c STATIC] PATH... --requests FILE      (JSON lines in, JSON lines out)

The request goes through the entry point's normalisation first (pyroute.normalize: fragment
refused, percent-encodings normalised, path sanitised, ';' in queries, X-Forwarded-* dropped
from untrusted peers), then the route table of its entry point (TLS routers for https URLs,
the others for http), exactly as the server builds them (pyroute.manifests.routing).
"""
import json
import sys

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


def add_arguments(parser):
    parser.add_argument("args", nargs="*", metavar="PATH... [METHOD] URL",
                        help="manifest files or folders, then an optional method and the URL "
                             "(http://host/path, https://host/path or /path with -H Host:)")
    parser.add_argument("-c", "--config", metavar="STATIC", help="static configuration (YAML)")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'",
                        help="request header (repeatable)")
    parser.add_argument("--client-ip", default="127.0.0.1", help="peer address (default "
                        "127.0.0.1)")
    parser.add_argument("--entrypoint", help="entry point the request arrives on (default: the "
                        "one whose port the URL names, else the first default entry point)")
    parser.add_argument("--sni", help="TLS server name (default: the URL's host)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--requests", metavar="FILE",
                        help="JSON lines {method, url, headers, client_ip, entrypoint, sni}; "
                             "one JSON line out per request")


class Explainer:
    """Answers requests against one RuntimeConfig; tables are built once and reused."""

    def __init__(self, rc):
        self.rc = rc
        self._tables = {}
        self._tls = {}
        self._fh = {}

    # -- tables -------------------------------------------------------------------------------
    def table(self, entry_point, tls, parent=None):
        key = (entry_point, tls, parent)
        t = self._tables.get(key)
        if t is None:
            from .. import rules
            from .routing import route_entries
            t = self._tables[key] = rules.RouteTable(
                route_entries(self.rc, entry_point, tls, parent))
        return t

    def tls_hosts(self, entry_point):
        t = self._tls.get(entry_point)
        if t is None:
            from .routing import TLSHosts
            t = self._tls[entry_point] = TLSHosts(self.rc, entry_point)
        return t

    def forwarded(self, ep):
        fh = self._fh.get(ep.name)
        if fh is None:
            from ..normalize import ForwardedHeaders
            fh = self._fh[ep.name] = ForwardedHeaders.for_entry_point(ep)
        return fh

    # -- one request --------------------------------------------------------------------------
    def explain(self, method="GET", url="/", headers=(), client_ip="127.0.0.1", entrypoint=None,
                sni=None):
        from ..normalize import normalize_target
        from .names import qualified

        static = self.rc.static
        scheme, authority, target = _split_url(url)
        headers = list(headers)
        tls = scheme == "https"
        host = authority or _header(headers, "host")
        ep = self._entry_point(entrypoint, authority)
        out = {"status": None, "entrypoint": ep.name if ep else entrypoint, "router": None,
               "rule": None, "priority": None, "middlewares": [], "service": None,
               "tls": None, "matched": [], "notes": []}
        if ep is None:
            out["status"] = 0
            out["notes"].append("no entry point %r (known: %s)" % (
                entrypoint, ", ".join(static.entry_points)))
            return out
        t = normalize_target(target, ep.sanitize_path, ep.encode_query_semicolons)
        if t.status:
            out["status"] = t.status
            out["notes"].append("refused before routing: " + t.reason)
            return out
        out["path"] = t.path
        out["query"] = t.query
        headers = self.forwarded(ep).strip(headers, client_ip)
        if tls:
            server_name = (sni if sni is not None else _hostname(host or "")).lower()
            hosts = self.tls_hosts(ep.name)
            option = hosts.option_for(server_name)
            cert, sans = hosts.certificate_for(server_name)
            out["tls"] = {"sni": server_name, "option": option, "certificate": cert,
                          "certificate_names": sans}
            host_option = hosts.option_for(_hostname(host or ""))
            if host and host_option != option:
                # Traefik: the Host header's TLS option must be the connection's (domain
                # fronting) -> 421 Misdirected Request.
                out["status"] = 421
                out["notes"].append("Host %r uses TLS option %r but the connection was made "
                                    "with %r (SNI %r)" % (_hostname(host), host_option, option,
                                                          server_name))
                return out
        query = t.query or ""
        matched = []
        parent = None
        winner = None
        while True:
            table = self.table(ep.name, tls, parent)
            names = table.match_all(method=method, host=host, path=t.path, query=query,
                                    headers=headers, remote_addr=client_ip, tls=tls)
            prio = dict(zip(table.names, table.priorities))
            for n in names:
                r = self.rc.dynamic["http"]["routers"][n]
                matched.append({"router": n, "rule": r["rule"], "priority": prio[n],
                                "parent": parent})
            if not names:
                break
            winner = names[0]
            from .routing import children_of
            if not children_of(self.rc, winner):
                break
            parent = winner
            winner = None
        out["matched"] = matched
        if winner is None:
            out["status"] = 404
            out["notes"].append("no router matches" if parent is None else
                                "router %s matched but none of its children does" % parent)
            self._disabled_matches(out, ep, tls, method, host, t, query, headers, client_ip)
            return out
        r = self.rc.dynamic["http"]["routers"][winner]
        out["router"] = winner
        out["rule"] = r["rule"]
        out["priority"] = next(m["priority"] for m in matched if m["router"] == winner)
        chain = []
        if parent is not None:
            for m in self.rc.dynamic["http"]["routers"][parent].get("middlewares") or ():
                self._expand_middleware(m, chain, set())
        for m in r.get("middlewares") or ():
            self._expand_middleware(m, chain, set())
        out["middlewares"] = chain
        svc = r.get("service")
        if svc is not None:
            out["service"] = self._tree(qualified(svc), None, set())
            if not _has_servers(out["service"]):
                out["status"] = 503
                out["notes"].append("the service has no server to send the request to")
        return out

    def _entry_point(self, name, authority):
        eps = self.rc.static.entry_points
        if name:
            return eps.get(name)
        if authority and ":" in authority.rsplit("]", 1)[-1]:
            port = authority.rsplit(":", 1)[1]
            for ep in eps.values():
                if str(ep.port) == port:
                    return ep
        defaults = self.rc.static.default_entry_points()
        return eps[defaults[0]] if defaults else None

    def _expand_middleware(self, name, chain, seen):
        mw = self.rc.dynamic["http"]["middlewares"].get(name)
        if mw is None or name in seen:
            chain.append({"name": name, "type": None, "status": "missing"})
            return
        seen.add(name)
        kind = next((k for k in mw if k not in ("status", "error")), None)
        if kind == "chain":
            chain.append({"name": name, "type": "chain"})
            for child in mw["chain"]["middlewares"]:
                self._expand_middleware(child, chain, seen)
            return
        chain.append({"name": name, "type": kind, "config": mw.get(kind)})

    def _tree(self, name, weight, seen):
        from .names import qualified
        svc = self.rc.dynamic["http"]["services"].get(name)
        node = {"name": name, "type": None, "servers": [], "children": []}
        if weight is not None:
            node["weight"] = weight
        if svc is None or name in seen:
            node["type"] = "missing" if svc is None else "cycle"
            return node
        seen = seen | {name}
        if "loadBalancer" in svc:
            node["type"] = "loadBalancer"
            node["servers"] = [{"url": s["url"], "weight": s.get("weight", 1)}
                               for s in svc["loadBalancer"]["servers"]]
        for kind in ("weighted", "highestRandomWeight"):
            if kind in svc:
                node["type"] = kind
                node["children"] = [self._tree(qualified(c["name"]), c.get("weight", 1), seen)
                                    for c in svc[kind]["services"]]
        if "mirroring" in svc:
            node["type"] = "mirroring"
            main = self._tree(qualified(svc["mirroring"]["service"]), None, seen)
            main["role"] = "main"
            node["children"] = [main]
            for m in svc["mirroring"].get("mirrors") or ():
                child = self._tree(qualified(m["name"]), None, seen)
                child["role"] = "mirror %d%%" % m.get("percent", 0)
                node["children"].append(child)
        if "failover" in svc:
            node["type"] = "failover"
            node["children"] = []
            for role in ("service", "fallback"):
                child = self._tree(qualified(svc["failover"][role]), None, seen)
                child["role"] = "main" if role == "service" else "fallback"
                node["children"].append(child)
        if svc.get("status") != "enabled":
            node["status"] = "disabled"
        return node

    def _disabled_matches(self, out, ep, tls, method, host, t, query, headers, client_ip):
        from .. import rules
        for name, r in self.rc.dynamic["http"]["routers"].items():
            if r.get("status") == "enabled" or ep.name not in (r.get("entryPoints") or ()):
                continue
            if ("tls" in r) != tls:
                continue
            try:
                rule = rules.compile(r["rule"], r.get("ruleSyntax") or "v3")
            except rules.RuleSyntaxError:
                continue
            if rule.matches(method=method, host=host, path=t.path, query=query,
                            headers=headers, remote_addr=client_ip):
                out["notes"].append("router %s would match but is disabled: %s"
                                    % (name, "; ".join(r.get("error", []))))


def _has_servers(node):
    if node.get("status") == "disabled" or node["type"] in ("missing", "cycle"):
        return False
    if node["type"] == "loadBalancer":
        return bool(node["servers"])
    kids = node["children"]
    if node["type"] == "mirroring":
        kids = kids[:1]
    return any(_has_servers(k) for k in kids)


def _split_url(url):
    """(scheme, authority, origin-form target) of http(s)://authority/target or /target."""
    for scheme in ("http", "https"):
        prefix = scheme + "://"
        if url.lower().startswith(prefix):
            rest = url[len(prefix):]
            cut = len(rest)
            for c in "/?":
                i = rest.find(c)
                if 0 <= i < cut:
                    cut = i
            target = rest[cut:] or "/"
            if target.startswith("?"):
                target = "/" + target
            return scheme, rest[:cut], target
    return "http", "", url


def _hostname(host):
    if host.startswith("["):
        return host[1:host.find("]")].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _header(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _parse_header(text):
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError("header %r is not 'Name: value'" % text)
    return name.strip(), value.strip()


def render_text(res):
    lines = []
    add = lines.append
    add("entry point  %s" % res["entrypoint"])
    if res.get("path") is not None:
        q = res.get("query")
        add("request      %s%s" % (res["path"], "" if q is None else "?" + q))
    if res["tls"]:
        t = res["tls"]
        add("tls          sni %r -> option %s; certificate: %s" % (
            t["sni"], t["option"], t["certificate"]))
    if res["router"]:
        add("router       %s" % res["router"])
        add("  rule       %s" % res["rule"])
        add("  priority   %s" % res["priority"])
        for m in res["matched"][1:]:
            if m["parent"] == res["matched"][0]["parent"] or m["router"] != res["router"]:
                add("  also matched, lost: %s (priority %s: %s)" % (
                    m["router"], m["priority"], m["rule"]))
        if res["middlewares"]:
            add("middlewares")
            for i, m in enumerate(res["middlewares"], 1):
                cfg = m.get("config")
                add("  %d. %s  %s%s" % (i, m["name"], m["type"] or m.get("status"),
                                        " " + json.dumps(cfg, sort_keys=True) if cfg else ""))
        if res["service"]:
            add("service")
            _render_tree(res["service"], "  ", add)
    for note in res.get("notes", ()):
        add("note         %s" % note)
    add("status       %s" % (res["status"] if res["status"] is not None else
                             "forwarded to the service (the backend answers)"))
    return "\n".join(lines)


def _render_tree(node, indent, add):
    label = node["name"]
    extra = []
    if "weight" in node:
        extra.append("weight %s" % node["weight"])
    if "role" in node:
        extra.append(node["role"])
    if node.get("status"):
        extra.append(node["status"])
    add("%s%s  %s%s" % (indent, label, node["type"], ("  (" + ", ".join(extra) + ")")
                        if extra else ""))
    for s in node["servers"]:
        add("%s  %s  weight %s" % (indent, s["url"], s["weight"]))
    if node["type"] == "loadBalancer" and not node["servers"]:
        add("%s  (no servers)" % indent)
    for child in node["children"]:
        _render_tree(child, indent + "  ", add)


def _public(res):
    return {k: res[k] for k in ("status", "entrypoint", "router", "rule", "priority",
                                "middlewares", "service", "tls", "matched", "notes")}


def main(args):
    from ..errors import ConfigError
    from ..static import load_static
    from . import load

    positional = list(args.args)
    method, url = "GET", None
    if not args.requests:
        if not positional:
            print("pyroute explain: give manifest paths and a URL", file=sys.stderr)
            return 2
        url = positional.pop()
        if positional and positional[-1].upper() in METHODS:
            method = positional.pop().upper()
    try:
        headers = [_parse_header(h) for h in args.header]
    except ValueError as e:
        print("pyroute explain: %s" % e, file=sys.stderr)
        return 2
    try:
        rc = load(positional, load_static(args.config))
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return 1
    n_err = sum(1 for e in rc.errors if e.severity == "error")
    if n_err:
        print("pyroute explain: the configuration has %d error(s) (see pyroute check); "
              "explaining with the rest" % n_err, file=sys.stderr)
    ex = Explainer(rc)
    if args.requests:
        src = sys.stdin if args.requests == "-" else open(args.requests)
        with src:
            for line in src:
                if not line.strip():
                    continue
                req = json.loads(line)
                hdrs = req.get("headers") or []
                if isinstance(hdrs, dict):
                    hdrs = list(hdrs.items())
                res = ex.explain(req.get("method", "GET"), req["url"], [tuple(h) for h in hdrs],
                                 req.get("client_ip", "127.0.0.1"), req.get("entrypoint"),
                                 req.get("sni"))
                sys.stdout.write(json.dumps(_public(res)) + "\n")
        return 0
    res = ex.explain(method, url, headers, args.client_ip, args.entrypoint, args.sni)
    if args.json:
        print(json.dumps(_public(res), indent=2))
    else:
        print(render_text(res))
    return 0
