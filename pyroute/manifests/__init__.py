"""Manifests -> one immutable runtime configuration, the way Traefik's CRD provider sees them.

``load(paths, static)`` reads every manifest under ``paths`` (and the static configuration's
``providers.kubernetesCRD.paths``), validates each object against its CRD schema, resolves
references exactly as Traefik's Kubernetes CRD provider does and returns a
:class:`RuntimeConfig`. Problems are collected per object in ``RuntimeConfig.errors``; a broken
router is carried with ``"status": "disabled"`` and its ``"error"`` list, the rest is served.

Names in ``RuntimeConfig.dynamic`` are Traefik's (what its API shows): map keys are qualified
(``default-whoami-80@kubernetescrd``, except the ``default`` TLS option and store); references
inside are written as Traefik writes them — a router's ``service`` and a weighted service's
children unqualified, router middlewares and ``serversTransport`` qualified. Look a reference up
with :func:`qualified` (Traefik's GetQualifiedName): ``services[qualified(router["service"])]``.
"""
import gc
from dataclasses import dataclass, field

from ..errors import ConfigError
from .names import qualified, router_name

__all__ = ["load", "RuntimeConfig", "qualified", "router_name", "ConfigError", "demo_path"]


def demo_path():
    """Folder of the bundled demo manifests (what ``pyroute run`` serves without arguments).

    Entry point ``web``; backends expected on 127.0.0.1:18081, 18082 and 18083.
    """
    import os
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo")


@dataclass(frozen=True)
class RuntimeConfig:
    """One load's result. Treat every field as read-only: workers share it."""

    static: object                       # pyroute.static.StaticConfig
    dynamic: dict                        # Traefik's dynamic configuration shape (JSON-able)
    errors: tuple = ()                   # ConfigError, severity "error" or "warning"
    sources: tuple = ()                  # files read (for the reload watcher)
    paths: tuple = ()                    # files/folders searched: a new file there counts too
    router_sources: dict = field(default_factory=dict, repr=False)  # router -> RouteSource
    # Routers Traefik's provider drops (an unresolvable reference): kept in ``dynamic``,
    # disabled, to report them, but absent from Traefik's runtime configuration, so no TLS
    # host -> option association comes from them (see ``tls_routers``).
    dropped_routers: frozenset = frozenset()
    # ``<ep>-conflicted-<router>`` copies (Traefik v3.7 resolveHTTPTLSOptions): their hosts
    # take the default TLS option whatever their ``tls.options`` says (see ``tls_routers``)
    conflicted_routers: frozenset = frozenset()

    @property
    def has_errors(self):
        return any(e.severity == "error" for e in self.errors)

    def tls_routers(self):
        """The routers Traefik's runtime configuration holds (every router the provider
        produced, disabled ones included): what the Host -> TLS option association reads."""
        routers = self.dynamic["http"]["routers"]
        if not self.dropped_routers and not self.conflicted_routers:
            return routers
        out = {n: r for n, r in routers.items() if n not in self.dropped_routers}
        for name in self.conflicted_routers:
            if name in out:
                # Traefik: TLS.ResolvedOptions = default (the written option stays in the dump)
                r = dict(out[name])
                r["tls"] = dict(r.get("tls") or {}, options="default")
                out[name] = r
        return out

    def routers(self, entry_point=None, enabled_only=True):
        """(name, router) pairs, optionally only those on ``entry_point``."""
        for name, r in self.dynamic["http"]["routers"].items():
            if enabled_only and r.get("status") != "enabled":
                continue
            if entry_point is not None and entry_point not in (r.get("entryPoints") or ()):
                continue
            yield name, r


def load(paths=(), static=None):
    """Read, validate and resolve the manifests under ``paths``; see the module docstring.

    ``static`` is a StaticConfig (None: ``load_static(None)``). Raises ConfigError only when the
    whole configuration is unusable (no manifest path at all).
    """
    from .. import compat
    from ..static import load_static
    from . import schema
    from .resolve import resolve
    from .source import read_paths

    if static is None:
        static = load_static(None)
    if isinstance(paths, str):
        paths = [paths]
    all_paths = list(static.providers_crd.paths) + [p for p in paths
                                                     if p not in static.providers_crd.paths]
    if not all_paths:
        raise ConfigError("no manifest path given (pass files or folders, or set "
                          "providers.kubernetesCRD.paths)", file=static.source or None)
    # A load allocates millions of small acyclic objects: CPython's cyclic collector would walk
    # them over and over (it made a 10,000-route load ~7x slower); pause it for the load.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        objects, errors, files = read_paths(all_paths, skip=(static.source,))
        valid = []
        for obj in objects:
            problems = schema.validate(obj)
            if problems:
                errors.extend(problems)
            else:
                valid.append(obj)
                # fields pyroute reads but does not apply (pyroute.compat): a warning each
                errors.extend(compat.object_warnings(obj))
        errors.extend(compat.static_warnings(static))
        dynamic, resolve_errors, resolver = resolve(valid, static)
        errors.extend(resolve_errors)
        _internal_routers(dynamic, static)
    finally:
        if gc_was_enabled:
            gc.enable()
    errors = _dedupe(errors)
    errors.sort(key=lambda e: (str(e.file or ""), e.line or 0))
    # the static configuration's warnings (keys pyroute ignores, ...) come first
    errors = list(getattr(static, "warnings", ())) + errors
    return RuntimeConfig(static=static, dynamic=dynamic, errors=tuple(errors),
                         sources=tuple(files), paths=tuple(all_paths),
                         router_sources=resolver.router_sources,
                         dropped_routers=frozenset(resolver.dropped_routers),
                         conflicted_routers=resolver.conflicted_routers)


def _internal_routers(dynamic, static):
    """Traefik's internal provider (pkg/provider/traefik/internal.go pingConfiguration,
    prometheusConfiguration, apiConfiguration): without ``manualRouting``, a router
    ``ping@internal`` / ``prometheus@internal`` on the configured entry point, rule
    PathPrefix(`/ping`) / PathPrefix(`/metrics`), priority MaxInt; with ``api.insecure`` the
    API's routers on the entry point ``traefik`` (``api_internal``). The workers route them
    to the master (pyroute.api), on ``traefik`` as on any entry point."""
    from ..static import MAX_INT
    http = dynamic.setdefault("http", {})
    routers = http.setdefault("routers", {})
    services = http.setdefault("services", {})
    middlewares = http.setdefault("middlewares", {})
    prom = getattr(getattr(static, "metrics", None), "prometheus", None)
    for name, section, rule in (("ping", getattr(static, "ping", None), "PathPrefix(`/ping`)"),
                                ("prometheus", prom, "PathPrefix(`/metrics`)")):
        if section is None:
            continue
        services[name + "@internal"] = {"status": "enabled"}
        ep = section.entry_point
        if section.manual_routing or ep not in static.entry_points:
            continue
        routers[name + "@internal"] = {
            "entryPoints": [ep], "service": name + "@internal", "rule": rule,
            "priority": MAX_INT, "status": "enabled",
            "observability": {"accessLogs": True, "metrics": True, "tracing": True,
                              "traceVerbosity": "minimal"}}
    api = getattr(static, "api", None)
    if api is not None:
        r, s, m = api_internal(api)
        routers.update(r)
        services.update(s)
        middlewares.update(m)


def api_internal(api):
    """(routers, services, middlewares) Traefik's internal provider adds for the static
    ``api`` (apiConfiguration): routers only with ``insecure``, on the entry point
    ``traefik`` — ``api@internal`` PathPrefix(`/api`) at MaxInt-1 and, with the dashboard,
    ``dashboard@internal`` PathPrefix(`/`) at MaxInt-2 behind ``dashboard_redirect@internal``
    (``/`` -> ``/dashboard/``, 301) and ``dashboard_stripprefix@internal``; a router of a
    manifest on ``traefik`` with a higher priority wins over them, as in Traefik. The
    workers forward the services to the master (pyroute.api)."""
    from ..static import INTERNAL_ENTRY_POINT, MAX_INT
    routers, services, middlewares = {}, {}, {}
    ep = INTERNAL_ENTRY_POINT
    if api.insecure:
        routers["api@internal"] = {"entryPoints": [ep], "service": "api@internal",
                                   "rule": "PathPrefix(`/api`)", "ruleSyntax": "default",
                                   "priority": MAX_INT - 1}
        if api.dashboard:
            routers["dashboard@internal"] = {
                "entryPoints": [ep],
                "middlewares": ["dashboard_redirect@internal", "dashboard_stripprefix@internal"],
                "service": "dashboard@internal", "rule": "PathPrefix(`/`)",
                "ruleSyntax": "default", "priority": MAX_INT - 2}
            middlewares["dashboard_redirect@internal"] = {"redirectRegex": {
                "regex": "^(http:\\/\\/(\\[[\\w:.]+\\]|[\\w\\._-]+)(:\\d+)?)\\/$",
                "replacement": "${1}/dashboard/", "permanent": True}}
            middlewares["dashboard_stripprefix@internal"] = {"stripPrefix": {
                "prefixes": ["/dashboard/", "/dashboard"]}}
        if api.debug:
            routers["debug@internal"] = {"entryPoints": [ep], "service": "api@internal",
                                         "rule": "PathPrefix(`/debug`)",
                                         "ruleSyntax": "default", "priority": MAX_INT - 1}
    services["api@internal"] = {}
    if api.dashboard:
        services["dashboard@internal"] = {}
    services["noop@internal"] = {}
    for d in (routers, services, middlewares):
        for v in d.values():
            v["status"] = "enabled"
    return routers, services, middlewares


def _dedupe(errors):
    # One IngressRoute yields several routers: a problem shared by all (an unknown entry point,
    # a missing TLS option) is reported once.
    seen = set()
    out = []
    for e in errors:
        key = (e.file, e.line, e.kind, e.namespace, e.name, e.field, e.message, e.severity)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
