"""The objects Traefik's API shows, built from a RuntimeConfig (the one ``check --dump`` prints).

``Model(config)`` is built once per configuration (at start and on every successful reload)
in the master. It takes ``config.dynamic`` as it is and adds only what Traefik's runtime adds
around the dynamic configuration (pkg/config/runtime, pkg/api): a router's ``using`` (the
entry points it is really attached to) and its default entry points, ``usedBy`` of services
and middlewares (the routers naming them: runtime.PopulateUsedBy), the representations'
``name``, ``provider``, ``type`` and ``priorityStr``, TLS options defaulting to ``default``,
and the ``@internal`` objects Traefik's internal provider adds for ``api``
(pkg/provider/traefik/internal.go). ``serverStatus`` is live: it comes from the master's
health checker on each request (``server_status``).
"""
import copy

INTERNAL = "internal"
# Traefik: the type is the (lower-cased) name of the one field set
SERVICE_TYPES = ("loadBalancer", "weighted", "mirroring", "failover", "highestRandomWeight")
_NOT_MIDDLEWARE = {"status", "error", "usedBy"}


def provider_of(name):
    return name.split("@", 1)[1] if "@" in name else ""


def go_duration(seconds):
    """Go's time.Duration.String() for ``seconds`` (how Traefik's API writes durations)."""
    ns = int(round(seconds * 1e9))
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1000:
        return "%s%dns" % (sign, ns)
    if ns < 1000000:
        return sign + _frac(ns, 1000) + "\u00b5s"
    if ns < 1000000000:
        return sign + _frac(ns, 1000000) + "ms"
    h, rest = divmod(ns, 3600 * 10 ** 9)
    m, rest = divmod(rest, 60 * 10 ** 9)
    out = sign
    if h:
        out += "%dh" % h
    if h or m:
        out += "%dm" % m
    return out + _frac(rest, 10 ** 9) + "s"


def _frac(value, unit):
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return ("%d.%0*d" % (whole, digits, frac)).rstrip("0")


def _address(ep):
    host = "[%s]" % ep.host if ":" in ep.host else ep.host
    return "%s:%d" % (host, ep.port)


def entry_point_json(ep):
    """static.EntryPoint as Traefik's API writes it (omitempty: zero values left out)."""
    from ..static import _ENCODED_CHARACTERS
    lc = {}
    if ep.request_accept_grace_timeout:
        lc["requestAcceptGraceTimeout"] = go_duration(ep.request_accept_grace_timeout)
    if ep.grace_timeout:
        lc["graceTimeOut"] = go_duration(ep.grace_timeout)
    rt = {}
    for key, value in (("readTimeout", ep.read_timeout), ("writeTimeout", ep.write_timeout),
                       ("idleTimeout", ep.idle_timeout)):
        if value:
            rt[key] = go_duration(value)
    transport = {}
    if lc:
        transport["lifeCycle"] = lc
    if rt:
        transport["respondingTimeouts"] = rt
    if ep.keep_alive_max_time:
        transport["keepAliveMaxTime"] = go_duration(ep.keep_alive_max_time)
    if ep.keep_alive_max_requests:
        transport["keepAliveMaxRequests"] = ep.keep_alive_max_requests
    fh = {}
    if ep.forwarded_insecure:
        fh["insecure"] = True
    if ep.trusted_ips:
        fh["trustedIPs"] = list(ep.trusted_ips)
    http = {}
    redir = getattr(ep, "redirections", None)
    if redir:
        http["redirections"] = {"entryPoint": {k: redir[k] for k in
                                               ("to", "scheme", "permanent", "priority")
                                               if redir.get(k) not in (None, "")}}
    if getattr(ep, "middlewares", ()):
        http["middlewares"] = list(ep.middlewares)
    if getattr(ep, "tls", None) is not None:
        http["tls"] = dict(ep.tls)
    http["maxHeaderBytes"] = ep.max_header_bytes
    http["sanitizePath"] = ep.sanitize_path
    if ep.encode_query_semicolons:
        http["encodeQuerySemicolons"] = True
    allowed = {key: True for key, escapes in _ENCODED_CHARACTERS.items()
               if not set(escapes) & set(ep.denied_encoded_characters)}
    if allowed:
        http["encodedCharacters"] = allowed
    out = {"address": _address(ep)}
    if ep.as_default:
        out["asDefault"] = True
    if transport:
        out["transport"] = transport
    pp = getattr(ep, "proxy_protocol", None)
    if pp is not None:
        out["proxyProtocol"] = {k: v for k, v in (("insecure", bool(pp.get("insecure"))),
                                                  ("trustedIPs", list(pp.get("trusted_ips")
                                                                      or ()))) if v}
    out["forwardedHeaders"] = fh
    out["http"] = http
    out["name"] = ep.name
    return out


def _full(name, provider):
    return name if "@" in name else "%s@%s" % (name, provider)


def _built(routers, services):
    """The services enabled routers reach (what Traefik builds), as health._used_services,
    a reference qualified with the provider of the object naming it (GetQualifiedName)."""
    todo = [_full(r["service"], provider_of(n)) for n, r in routers.items()
            if r.get("status", "enabled") == "enabled" and r.get("service")]
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in services:
            continue
        seen.add(name)
        spec, p = services[name], provider_of(name)
        for kind in ("weighted", "highestRandomWeight"):
            todo += [_full(c["name"], p) for c in (spec.get(kind) or {}).get("services") or ()]
        m = spec.get("mirroring") or {}
        todo += ([_full(m["service"], p)] if m.get("service") else []) + \
            [_full(x["name"], p) for x in m.get("mirrors") or ()]
        f = spec.get("failover") or {}
        todo += [_full(f[k], p) for k in ("service", "fallback") if f.get(k)]
    return seen


class Model:
    """What the API serves for one configuration (built in the master, then read-only)."""

    def __init__(self, config, generation=1):
        self.config = config
        self.generation = generation
        static = config.static
        api = getattr(static, "api", None)
        http = config.dynamic.get("http", {})
        routers = copy.deepcopy(http.get("routers", {}))
        services = copy.deepcopy(http.get("services", {}))
        middlewares = copy.deepcopy(http.get("middlewares", {}))
        self.entry_points = dict(static.entry_points)
        if api is not None:
            if api.entry_point is not None:
                self.entry_points[api.entry_point.name] = api.entry_point
            # the configuration has them (pyroute.manifests api_internal, one source); a
            # configuration pickled by an older pyroute may not
            from ..manifests import api_internal
            for have, extra in zip((routers, services, middlewares), api_internal(api)):
                for k, v in extra.items():
                    have.setdefault(k, v)
        defaults = static.default_entry_points()
        for name, rt in routers.items():
            rt.setdefault("status", "enabled")
            if not rt.get("entryPoints"):
                rt["entryPoints"] = list(defaults)     # Traefik's aggregator fills these in
            # runtime.GetRoutersByEntryPoints: the entry points that exist
            rt["using"] = [e for e in rt["entryPoints"] if e in self.entry_points]
            if not rt["using"]:
                del rt["using"]
            tls = rt.get("tls")
            if tls is not None and not tls.get("options"):
                rt["tls"] = dict(tls, options="default")
        # runtime.PopulateUsedBy
        for name in sorted(routers):
            rt = routers[name]
            provider = provider_of(name)
            for mw in rt.get("middlewares") or ():
                full = mw if "@" in mw else "%s@%s" % (mw, provider)
                if full in middlewares:
                    middlewares[full].setdefault("usedBy", []).append(name)
            svc = rt.get("service")
            if svc:
                full = svc if "@" in svc else "%s@%s" % (svc, provider)
                if full in services:
                    services[full].setdefault("usedBy", []).append(name)
        for d in (services, middlewares):
            for v in d.values():
                v.setdefault("status", "enabled")
                if "usedBy" in v:
                    v["usedBy"].sort()
        self.routers = routers
        self.services = services
        self.middlewares = middlewares
        # Traefik sets every server of a service it builds UP, then the health checker
        # changes it; services no enabled router reaches are not built (no serverStatus)
        self.built = _built(routers, services)

    # -- representations ----------------------------------------------------------------
    def router(self, name):
        rt = self.routers[name]
        out = dict(rt)
        out["name"] = name
        out["provider"] = provider_of(name)
        out["priorityStr"] = str(rt.get("priority") or 0)
        return out

    def server_status(self, name, down):
        lb = self.services[name].get("loadBalancer")
        if name not in self.built or not lb or self.services[name].get("status") == "disabled":
            return None
        status = {s["url"]: ("DOWN" if (name, s["url"]) in down else "UP")
                  for s in lb.get("servers") or () if s.get("url")}
        return status or None

    def service(self, name, down):
        si = self.services[name]
        out = dict(si)
        out["name"] = name
        out["provider"] = provider_of(name)
        kind = next((k for k in SERVICE_TYPES if k in si), "")
        if kind:
            out["type"] = kind.lower()
        status = self.server_status(name, down)
        if status:
            out["serverStatus"] = status
        return out

    def middleware(self, name):
        mi = self.middlewares[name]
        out = dict(mi)
        out["name"] = name
        out["provider"] = provider_of(name)
        kinds = [k for k in mi if k not in _NOT_MIDDLEWARE]
        if len(kinds) == 1:
            out["type"] = kinds[0].lower()
        return out

    def entry_point(self, name):
        return entry_point_json(self.entry_points[name])

    def rawdata(self, down):
        out = {}
        if self.routers:
            out["routers"] = self.routers
        if self.middlewares:
            out["middlewares"] = self.middlewares
        if self.services:
            svcs = {}
            for name, si in self.services.items():
                status = self.server_status(name, down)
                svcs[name] = dict(si, serverStatus=status) if status else si
            out["services"] = svcs
        return out

    def overview(self):
        def section(items):
            errors = sum(1 for v in items.values() if v.get("status") == "disabled")
            warnings = sum(1 for v in items.values() if v.get("status") == "warning")
            return {"total": len(items), "warnings": warnings, "errors": errors}
        zero = {"total": 0, "warnings": 0, "errors": 0}
        static = self.config.static
        return {
            "http": {"routers": section(self.routers), "services": section(self.services),
                     "middlewares": section(self.middlewares)},
            "tcp": {"routers": dict(zero), "services": dict(zero), "middlewares": dict(zero)},
            "udp": {"routers": dict(zero), "services": dict(zero)},
            "features": {"tracing": "", "metrics": "",
                         "accessLog": bool(static.access_log.enabled)},
            "providers": ["KubernetesCRD"],
        }

