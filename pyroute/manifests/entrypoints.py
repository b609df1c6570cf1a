"""What the static configuration's entry points add to the routers (Traefik's internal
provider, ``pkg/provider/traefik/internal.go``, and ``pkg/server/aggregator.go`` applyModel).

- ``http.middlewares`` / ``http.tls`` (an entry point *model*): every root router on the entry
  point gets the model's middlewares before its own and, when it has none, the model's ``tls``
  section (so the Helm chart's ``--entryPoints.websecure.http.tls=true`` makes every router of
  websecure a TLS router); ``observability`` fills the switches a router does not set. A
  router on several entry points of which one has a model is split
  per entry point, named ``<entryPoint>-<router>`` (child routers' ``parentRefs`` follow).
- ``http.redirections.entryPoint``: a router ``<ep>-to-<to>@internal`` with rule
  ``HostRegexp(`^.+$`)``, the redirection's priority (default MaxInt-1, above any user router),
  middleware ``redirect-<ep>-to-<to>@internal`` (a redirectScheme to the scheme and port) and
  service ``noop@internal`` (Traefik answers 418 there, when the redirection does not apply).
- ``core.defaultRuleSyntax``: root routers without ``ruleSyntax`` get it, and every entry
  point has a model then (so routers on several entry points are split).
- ``serversTransport``: the ServersTransport ``default@internal``, used by every service that
  names none.
"""
import copy

from .names import SEPARATOR, normalize

INTERNAL = "internal"
NOOP_SERVICE = "noop@internal"


def _qualify(name, provider):
    return name if SEPARATOR in name else name + SEPARATOR + provider


def _provider_of(name):
    return name.rsplit(SEPARATOR, 1)[1] if SEPARATOR in name else ""


def _apply(router, ep, provider):
    if router.get("tls") is None and ep.tls is not None:
        router["tls"] = copy.deepcopy(ep.tls)
    if ep.middlewares:
        router["middlewares"] = [_qualify(m, provider) for m in ep.middlewares] + \
            list(router.get("middlewares") or ())
    if ep.observability is not None:
        # aggregator.go applyModel: the router's own switches win, the entry point's fill in
        obs = dict(router.get("observability") or {})
        for key, value in ep.observability.items():
            if obs.get(key) in (None, ""):
                obs[key] = value
        router["observability"] = obs


def apply_models(routers, static, sources=None):
    """Apply the entry point models to ``routers`` (qualified name -> router), in place.

    Routers without ``entryPoints`` get the default ones first (Traefik mergeConfiguration).
    ``sources`` (qualified name -> anything) follows the renames. Returns {old: [new names]}.
    """
    eps = static.entry_points
    if not any(ep.has_model for ep in eps.values()):
        return {}
    default_eps = static.default_entry_points()
    syntax = getattr(static, "default_rule_syntax", "")
    out = {}
    renamed = {}
    for name, router in routers.items():
        if router.get("parentRefs") is not None:
            out[name] = router
            continue
        # core.defaultRuleSyntax, for routers that name none (Traefik's internal routers say
        # "default", which keeps them on v3)
        if syntax and not router.get("ruleSyntax") and not name.endswith("@internal"):
            router["ruleSyntax"] = syntax
        names = list(router.get("entryPoints") or default_eps)
        provider = _provider_of(name)
        plain = []
        for ep_name in names:
            ep = eps.get(ep_name)
            if ep is None or not ep.has_model:
                plain.append(ep_name)
                continue
            cp = copy.deepcopy(router)
            cp["entryPoints"] = [ep_name]
            _apply(cp, ep, provider)
            new = name if len(names) == 1 else ep_name + "-" + name
            if new != name:
                renamed.setdefault(name, []).append(new)
                if sources is not None and name in sources:
                    sources[new] = sources[name]
            out[new] = cp
        if plain:
            router["entryPoints"] = plain
            out[name] = router
    for router in out.values():
        refs = router.get("parentRefs")
        if refs:
            new_refs = []
            for ref in refs:
                if ref in out:
                    new_refs.append(ref)
                new_refs.extend(renamed.get(ref, ()))
            router["parentRefs"] = new_refs
    routers.clear()
    routers.update(out)
    return renamed


def default_observability(routers):
    """Traefik's applyDefaultObservabilityModel (after the entry point models): what a
    router's observability leaves unset is on, traceVerbosity minimal."""
    for router in routers.values():
        obs = router.get("observability")
        if obs is None:
            continue
        for key in ("accessLogs", "metrics", "tracing"):
            if obs.get(key) is None:
                obs[key] = True
        if not obs.get("traceVerbosity"):
            obs["traceVerbosity"] = "minimal"


def redirections(static):
    """(routers, middlewares, services) of Traefik's internal provider for the entry points'
    ``http.redirections`` (qualified names, runtime status set)."""
    routers, middlewares = {}, {}
    for name, ep in static.entry_points.items():
        red = ep.redirections
        if red is None:
            continue
        rt_name = normalize(name + "-to-" + red["to"])
        md_name = "redirect-" + rt_name + SEPARATOR + INTERNAL
        routers[rt_name + SEPARATOR + INTERNAL] = {
            "entryPoints": [name],
            "middlewares": [md_name],
            "service": NOOP_SERVICE,
            "rule": "HostRegexp(`^.+$`)",
            "priority": red["priority"],
            "observability": {"accessLogs": True, "metrics": True, "tracing": True,
                              "traceVerbosity": "minimal"},
            "status": "enabled",
        }
        middlewares[md_name] = {
            "redirectScheme": {"scheme": red["scheme"], "port": red["port"],
                               "permanent": red["permanent"]},
            "status": "enabled",
        }
    services = {NOOP_SERVICE: {"status": "enabled"}} if routers else {}
    if routers:
        apply_models(routers, static)
    return routers, middlewares, services


def servers_transports(static):
    """Traefik's internal serverTransport(): the static ``serversTransport`` as the
    ``default@internal`` ServersTransport, which services naming none use."""
    st = getattr(static, "servers_transport", None)
    return {} if st is None else {DEFAULT_TRANSPORT: st}


DEFAULT_TRANSPORT = "default@internal"


__all__ = ["apply_models", "default_observability", "redirections", "servers_transports", "NOOP_SERVICE",
           "DEFAULT_TRANSPORT"]
