"""Tracing one request through a RuntimeConfig: what ``pyroute explain`` reports.

``Explainer(rc).explain(method, url, headers, client_ip, entrypoint, sni)`` returns a dict:
``status`` (None when the request is forwarded to a service, else the status pyroute answers:
400, 404, 421, 503, or a middleware's 30x/401/403; 0 when the connection is closed without an
answer: no such entry point, or a refused TLS handshake), ``entrypoint``, ``router``, ``rule``,
``priority``, ``middlewares`` (the chain, chains expanded), ``service`` (the tree
``{"name", "type", "servers": [{"url", "weight"}], "children": [...]}``), ``tls`` (server
name, option, certificate), ``matched`` (every router that matched, winner first) and
``notes`` (why). Route tables are built once per (entry point, TLS) and reused, so
``--requests`` answers many requests in one process.
"""


class Explainer:
    """Answers requests against one RuntimeConfig; tables are built once and reused."""

    def __init__(self, rc, compiled=False):
        # Answer what `pyroute run` serves: the routers its compilation disables are disabled
        # here too (pyroute.verdict), never simulated. ``compiled``: rc comes from verdict().
        if not compiled:
            from ..verdict import verdict
            rc = verdict(rc)[0]
        self.rc = rc
        self._tables = {}
        self._tls = None
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

    def tls_config(self, entry_point):
        """The entry point's pyroute.tls.TLSConfig, built as the server builds it."""
        if self._tls is None:
            from .. import tls
            self._tls = tls.TLSConfig.from_runtime(self.rc)
        return self._tls[entry_point]

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
        # The Host header is the request's host, as on the wire (what curl -H 'Host: ...'
        # sends); the URL's authority is where the request was sent (entry point port, SNI)
        # and the Host only when none is given.
        given = _header(headers, "host")
        host = given if given is not None else authority
        ep = self._entry_point(entrypoint, authority, tls)
        out = {"status": None, "entrypoint": ep.name if ep else entrypoint, "router": None,
               "rule": None, "priority": None, "middlewares": [], "service": None,
               "tls": None, "matched": [], "disabled": [], "notes": [], "host": host}
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
            # The server's own decisions (pyroute.tls.TLSConfig): the option and certificate
            # the handshake gets from the SNI, then the 421 check on the Host header.
            from ..tls import canonical_domain
            # curl's SNI is the URL's host, whatever Host header it sends
            server_name = canonical_domain(sni if sni is not None else
                                           _hostname(authority or host or ""))
            cfg = self.tls_config(ep.name)
            option, cert, refused = cfg.handshake_outcome(server_name)
            out["tls"] = {"sni": server_name, "option": option,
                          "certificate": _certificate_description(cfg, cert),
                          "certificate_names": list(cert.names) if cert is not None else []}
            if refused is not None:
                out["status"] = 0
                out["notes"].append("the TLS handshake is refused: " + refused)
                return out
            if cfg.misdirected_request(server_name, host or ""):
                # Traefik: the Host header's TLS option must be the connection's (domain
                # fronting) -> 421 Misdirected Request.
                out["status"] = 421
                out["notes"].append("Host %r uses TLS option %r but the connection was made "
                                    "with %r (SNI %r)" % (_hostname(host or ""),
                                                          cfg.host_option(host or ""), option,
                                                          server_name))
                return out
        query = t.query or ""
        path = t.path
        from ..normalize import denied_escape
        esc = denied_escape(t.path, ep.denied_encoded_characters)
        routers = self.rc.dynamic["http"]["routers"]
        matched = []
        chain = []
        parent = None
        winner = None
        while True:
            table = self.table(ep.name, tls, parent)
            names = table.match_all(method=method, host=host, path=path, query=query,
                                    headers=headers, remote_addr=client_ip, tls=tls)
            prio = dict(zip(table.names, table.priorities))
            if not names:
                break
            from .routing import children_of
            first = names[0]
            has_children = bool(children_of(self.rc, first))
            for n in names:
                r = routers[n]
                if n != first:
                    why = ("lower priority (%d < %d)" % (prio[n], prio[first])
                           if prio[n] < prio[first] else
                           "same priority %d: Traefik leaves the order open, pyroute takes "
                           "the router names in order" % prio[n])
                elif has_children:
                    why = "parent: its child routers are matched next"
                else:
                    why = "winner"
                matched.append({"router": n, "rule": r["rule"], "priority": prio[n],
                                "parent": parent, "why": why})
            if not has_children:
                winner = first
                break
            if parent is None and esc is not None:
                winner = first      # refused by the root router itself (below)
                break
            # Traefik (multi-layer routing): a parent's middlewares run before its children
            # are matched, and the children see the request as they leave it
            start = len(chain)
            for m in routers[first].get("middlewares") or ():
                self._expand_middleware(m, chain, set())
            for m in chain[start:]:
                ctx = {"method": method, "tls": tls, "host": host or "",
                       "uri": path + ("?" + t.query if t.query is not None else ""),
                       "headers": headers, "client_ip": client_ip,
                       "trusted": self.forwarded(ep).trusted(client_ip)}
                answer = _middleware_answer(m, ctx)
                if answer is not None:
                    out["matched"] = matched
                    out["router"] = first
                    out["rule"] = routers[first]["rule"]
                    out["priority"] = prio[first]
                    out["middlewares"] = chain
                    out["status"], note = answer
                    out["notes"].append("middleware %s answers: %s" % (m["name"], note))
                    return out
                _middleware_note(m, out)
                path, headers = _request_edits(m, path, headers, ctx)
            parent = first
        out["matched"] = matched
        if parent is None:
            # routers that match but are disabled (by the manifests or by the compilation
            # `pyroute run` does) are not in the tables: say so, whatever answers instead
            self._disabled_matches(out, ep, tls, method, host, t, query, headers, client_ip)
        if winner is None:
            out["status"] = 404
            out["notes"].append("no router matches" if parent is None else
                                "router %s matched but none of its children does" % parent)
            return out
        r = routers[winner]
        out["router"] = winner
        out["rule"] = r["rule"]
        out["priority"] = next(m["priority"] for m in matched if m["router"] == winner)
        if esc is not None:
            # Traefik: the root router's denyEncodedPathCharacters handler, before middlewares
            out["status"] = 400
            out["notes"].append("encoded character %s is denied on entry point %s "
                                "(http.encodedCharacters)" % (esc, ep.name))
            return out
        leaf_start = len(chain)     # the parents' middlewares were checked on the way down
        for m in r.get("middlewares") or ():
            self._expand_middleware(m, chain, set())
        out["middlewares"] = chain
        ctx = {"method": method, "tls": tls, "host": host or "",
               "uri": path + ("?" + t.query if t.query is not None else "")
               if parent is not None else t.request_uri,
               "headers": headers, "client_ip": client_ip,
               "trusted": self.forwarded(ep).trusted(client_ip)}
        for m in chain[leaf_start:]:
            answer = _middleware_answer(m, ctx)
            if answer is not None:
                out["status"], note = answer
                out["notes"].append("middleware %s answers: %s" % (m["name"], note))
                return out
            _middleware_note(m, out)
            if m.get("type") in _PATH_KINDS:
                # the middlewares after it see the path it leaves
                uri, hdrs = _request_edits(m, ctx["uri"], ctx["headers"], ctx)
                ctx = dict(ctx, uri=uri, headers=hdrs)
        svc = r.get("service")
        if svc is not None:
            out["service"] = self._tree(qualified(svc), None, set())
            if not _has_servers(out["service"]):
                out["status"] = 503
                out["notes"].append("the service has no server to send the request to")
        return out

    def _entry_point(self, name, authority, tls=False):
        eps = self.rc.static.entry_points
        if name:
            return eps.get(name)
        # The entry point listening on the URL's port (80/443 when the URL names none)...
        port = "443" if tls else "80"
        if authority and ":" in authority.rsplit("]", 1)[-1]:
            port = authority.rsplit(":", 1)[1]
        for ep in eps.values():
            if str(ep.port) == port:
                return ep
        # ... else the first default entry point.
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
        if name in ("api@internal", "dashboard@internal", "ping@internal",
                    "prometheus@internal"):
            # Traefik's internal services: the workers forward them to pyroute's master
            # (pyroute.api)
            node["type"] = "internal"
            node["servers"] = [{"url": "the master's %s (unix socket)" % {
                "api@internal": "API", "dashboard@internal": "dashboard",
                "ping@internal": "ping", "prometheus@internal": "metrics"}[name],
                "weight": 1}]
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
        for kind in ("loadBalancer", "weighted", "highestRandomWeight", "mirroring",
                     "failover"):
            if kind in svc and svc[kind].get("healthCheck") is not None:
                # active checks (load balancer) or status propagation ({}: TraefikServices)
                node["healthCheck"] = svc[kind]["healthCheck"]
        if svc.get("middlewares"):
            node["middlewares"] = list(svc["middlewares"])
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
                out.setdefault("disabled", []).append(
                    {"router": name, "rule": r["rule"], "error": list(r.get("error", []))})
                out["notes"].append("router %s would match but is disabled: %s"
                                    % (name, "; ".join(r.get("error", []))))


# Kinds whose answer (or path edit) explain takes from the very middleware objects the
# server runs (pyroute.middlewares), so explain and run reach one verdict on them.
_RUN_KINDS = ("ipAllowList", "ipWhiteList", "redirectScheme", "redirectRegex", "stripPrefix",
              "stripPrefixRegex", "addPrefix", "replacePath", "replacePathRegex", "headers",
              "encodedCharacters")
# Kinds that rewrite the path (and add a header) as the server's objects do
_PATH_KINDS = ("stripPrefix", "stripPrefixRegex", "addPrefix", "replacePath",
               "replacePathRegex", "redirectRegex")


class _Probe:
    """The request as pyroute's middlewares see a client connection: the parsed head
    (``req``), the path and query they may rewrite, the peer, whether the entry point trusts
    its forwarded headers, the request-header edits they add, the entry point's TLS — the
    attributes of an exchange (engine/exchange.pyx) that a request phase reads offline."""
    __slots__ = ("req", "path", "query", "remote_ip", "trusted", "set_headers", "ep",
                 "remove_headers", "resp_extra", "tls", "vars", "route", "conn")

    def __init__(self, ctx):
        from .. import http1
        uri = ctx["uri"]
        path, q, query = uri.partition("?")
        lines = ["%s %s HTTP/1.1" % (ctx["method"], uri or "/")]
        if ctx["host"] and _header(ctx["headers"], "host") is None:
            lines.append("Host: " + ctx["host"])
        lines += ["%s: %s" % (k, v) for k, v in ctx["headers"]]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.req = http1.RequestParser(max_line=1 << 30, max_head=1 << 30,
                                       max_fields=1 << 30).parse(bytearray(raw), 0)
        self.path = (path or "/").encode("latin-1")
        self.query = query.encode("latin-1") if q else None
        self.remote_ip = ctx["client_ip"].encode("latin-1")
        self.trusted = ctx.get("trusted", False)
        self.set_headers = None
        self.remove_headers = None
        self.resp_extra = None
        self.tls = bool(ctx["tls"])
        self.vars = None
        self.route = None
        self.conn = None
        self.ep = _EntryPointTLS(ctx["tls"])

    def get_vars(self):
        if self.vars is None:
            self.vars = {}
        return self.vars


class _EntryPointTLS:
    __slots__ = ("tls",)

    def __init__(self, tls):
        self.tls = tls


def _runtime(m):
    """The server's middleware object for ``m`` (a chain entry), or None."""
    from .. import middlewares
    try:
        return middlewares.build(m.get("name", ""), {m.get("type"): m.get("config") or {}})
    except Exception:       # a middleware run refuses disables its router: not reached here
        return None


def _middleware_answer(m, ctx):
    """(status, why) when a middleware answers the request itself, else None.

    ipAllowList, redirectScheme, stripPrefix (its 400) and encodedCharacters are decided by
    the server's own middleware objects; basicAuth/digestAuth without credentials is a 401.
    """
    kind, cfg = m.get("type"), m.get("config") or {}
    if kind in _RUN_KINDS:
        mw = _runtime(m)
        if mw is None:
            return None
        try:
            probe = _Probe(ctx)
        except Exception:
            return None
        if getattr(mw, "on_request", None) is None:
            return None         # a headers middleware with nothing to decide per request
        answer = mw.on_request(probe)
        if answer is None:
            return None
        status = int(answer[9:12])
        if kind == "headers":
            if status == 200:
                return status, "CORS preflight (OPTIONS with Origin and " \
                               "Access-Control-Request-Method): answered, nothing forwarded"
            return status, "host %s is not in allowedHosts %s: Bad Host" % (
                mw._host(probe).decode("latin-1") or "(none)",
                ", ".join(cfg.get("allowedHosts") or ()))
        if kind in ("ipAllowList", "ipWhiteList"):
            return status, "client IP %s is not in %s" % (
                mw.client_ip(probe) or "(none)", ", ".join(cfg.get("sourceRange") or ()))
        if kind == "encodedCharacters":
            return status, "the path holds an encoded character the middleware refuses"
        loc = [ln for ln in answer.split(b"\r\n") if ln.lower().startswith(b"location:")]
        if loc:
            return status, "redirect to " + loc[0][9:].strip().decode("latin-1")
        if status == 400:
            return status, "the path left after rewriting needs cleaning (dot segments): refused"
        if status == 502:
            return status, "the rewritten URL does not parse (Go's url.Parse)"
        body = answer.split(b"\r\n\r\n", 1)[1].strip().decode("utf-8", "replace")
        return status, "the new path does not unescape: " + body
    if kind == "basicAuth":
        # the server's own object checks the credentials (bcrypt too: explain may wait)
        mw = _runtime(m)
        if mw is None:
            return None
        try:
            probe = _Probe(ctx)
        except Exception:
            return None
        user, why = mw.verify(probe)
        if user is None:
            return 401, "%s (realm %s)" % (why, mw.realm)
        return None
    if kind == "digestAuth":
        value = _header(ctx["headers"], "authorization")
        if value is None or not value.startswith("Digest "):
            return 401, "no Digest credentials in Authorization: the challenge"
        return 401, ("a digest answer holds a nonce the running server issued; explain "
                     "cannot check it (the server answers it)")
    return None


def _middleware_note(m, out):
    """What explain cannot decide alone: forwardAuth asks its auth server per request."""
    if m.get("type") == "forwardAuth":
        out["notes"].append("middleware %s asks the auth server at %s (explain does not): a "
                            "2xx lets the request go on, any other answer is the client's"
                            % (m["name"], (m.get("config") or {}).get("address") or "?"))


def _request_edits(m, path, headers, ctx=None):
    """(path, headers) after a middleware's request edits, as the server applies them: the
    path kinds (stripPrefix, stripPrefixRegex, addPrefix, replacePath, replacePathRegex,
    redirectRegex going on) and the headers they add by the server's own objects (``path``
    with its query when it has one), headers' customRequestHeaders."""
    kind, cfg = m.get("type"), m.get("config") or {}
    if kind in _PATH_KINDS and ctx is not None:
        mw = _runtime(m)
        if mw is None:
            return path, headers
        probe = _Probe(dict(ctx, uri=path))
        mw.on_request(probe)
        with_query = "?" in path
        path = probe.path.decode("latin-1")
        if with_query and probe.query is not None:
            path += "?" + probe.query.decode("latin-1")
        # appended as the server appends them (a client's own value, from a trusted peer,
        # stays before)
        headers = headers + [(n.decode("latin-1"), v.decode("latin-1"))
                             for n, v in probe.set_headers or ()]
    elif kind == "headers":
        for name, value in (cfg.get("customRequestHeaders") or {}).items():
            headers = [(k, v) for k, v in headers if k.lower() != name.lower()]
            if value != "":
                headers = headers + [(name, value)]
    return path, headers


def _has_servers(node):
    if node.get("status") == "disabled" or node["type"] in ("missing", "cycle"):
        return False
    if node["type"] in ("loadBalancer", "internal"):
        return bool(node["servers"])
    kids = node["children"]
    if node["type"] == "mirroring":
        kids = kids[:1]
    return any(_has_servers(k) for k in kids)


def _certificate_description(cfg, cert):
    if cert is None:
        return "none"
    if cert is cfg.store.default:
        if cert.label == "TLSStore default certificate":
            return "the default TLSStore's defaultCertificate"
        return "pyroute's generated self-signed default certificate"
    return "%s (%s)" % (cert.label, ", ".join(cert.names) or "no names")


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
