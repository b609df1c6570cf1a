"""Traefik v3.7's TLS option arbitration between routers (``pkg/server/aggregator.go``
resolveHTTPTLSOptions / findConflictingRouters, run by the configuration watcher after
applyModel).

Per entry point, a TLS router conflicts when a host (SNI) of its rule is also served by a
router whose resolved TLS option differs, or when its rule names no host and its option is not
the default one (an option is chosen by the SNI, so it cannot apply). A conflicting router
leaves that entry point; in its place comes a copy on that entry point only, named
``<ep>-conflicted-<router>``, whose resolved option is the default one (its ``tls.options``
stays as written; only the association Host -> option uses the default). Traefik logs one
error per host: "On EntryPoint ..., Host ... is served by multiple routers with different TLS
options, default TLSOptions will be applied for the following routers: [...]".
"""
import copy

from .names import SEPARATOR
from .rulecheck import check_rule, domains, rules_available

DEFAULT_OPTION = "default"

__all__ = ["resolve_tls_options", "resolved_option"]


def resolved_option(name, router):
    """Traefik's ``router.TLS.ResolvedOptions`` before arbitration: "default", or the
    option qualified with the router's provider (provider.GetQualifiedName)."""
    ref = (router.get("tls") or {}).get("options") or ""
    if not ref or ref == DEFAULT_OPTION:
        return DEFAULT_OPTION
    if SEPARATOR in ref:
        return ref
    provider = name.rsplit(SEPARATOR, 1)[1] if SEPARATOR in name else ""
    return ref + SEPARATOR + provider if provider else ref


def _conflicting(ep, routers):
    # findConflictingRouters: (router names, [(host, [routers in conflict])])
    conflicting = []
    by_host = {}
    for name, router in routers.items():
        rule, syntax = router.get("rule") or "", router.get("ruleSyntax") or ""
        if check_rule(rule, syntax) is not None:
            continue            # an invalid rule: Traefik skips it here (the router errs later)
        hosts = domains(rule, syntax)
        option = resolved_option(name, router)
        if not hosts and option != DEFAULT_OPTION:
            conflicting.append(name)
            continue
        for host in hosts:
            by_host.setdefault(host, {}).setdefault(option, []).append(name)
    logs = []
    for host, by_option in sorted(by_host.items()):
        if len(by_option) == 1:
            continue
        names = [n for option in by_option for n in by_option[option]]
        conflicting.extend(names)
        logs.append((host, names))
    return conflicting, logs


def resolve_tls_options(routers, default_entry_points, skip=frozenset(), sources=None):
    """Arbitrate ``routers`` (qualified name -> router; their ``entryPoints`` empty: the
    default ones) in place, as Traefik. ``skip``: routers Traefik's runtime does not hold
    (dropped by the provider). ``sources`` follows the new names. Returns
    (conflicted copies' names, [(entry point, host, [router names])] to log)."""
    if not rules_available():
        return frozenset(), []
    per_ep = {}
    for name, router in routers.items():
        if router.get("tls") is None or name in skip or router.get("parentRefs") is not None:
            continue
        for ep in router.get("entryPoints") or default_entry_points or ():
            per_ep.setdefault(ep, {})[name] = router
    conflicting = {}
    logs = []
    for ep, ep_routers in sorted(per_ep.items()):
        names, ep_logs = _conflicting(ep, ep_routers)
        conflicting[ep] = set(names)
        logs.extend((ep, host, hosts) for host, hosts in ep_logs)
    if not any(conflicting.values()):
        return frozenset(), logs
    out = {}
    copies = set()
    for name, router in routers.items():
        if router.get("tls") is None or name in skip or router.get("parentRefs") is not None:
            out[name] = router
            continue
        eps = list(router.get("entryPoints") or default_entry_points or ())
        kept = []
        for ep in eps:
            if name not in conflicting.get(ep, ()):
                kept.append(ep)
                continue
            cp = copy.deepcopy(router)
            cp["entryPoints"] = [ep]
            new = ep + "-conflicted-" + name
            out[new] = cp
            copies.add(new)
            if sources is not None and name in sources:
                sources[new] = sources[name]
        if kept:
            if len(kept) != len(eps):
                router["entryPoints"] = kept
            out[name] = router
    routers.clear()
    routers.update(out)
    return frozenset(copies), logs
