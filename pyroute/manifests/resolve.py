"""Objects -> Traefik's dynamic configuration, as Traefik's Kubernetes CRD provider builds it.

Mirrors traefik/traefik ``pkg/provider/kubernetes/crd/kubernetes.go`` and
``kubernetes_http.go``, then the checks Traefik's runtime does when it wires routers. The
Resolver is assembled from one part per concern:

- this module: the object store and IngressRoute -> routers (loadIngressRouteConfiguration,
  makeMiddlewareKeys, multi-layer parentRefs);
- ``services``: Service/EndpointSlice -> servers, TraefikService trees, ServersTransports;
- ``middlewares``: Middleware objects; ``tlsconfig``: TLSOption/TLSStore/certificates;
- ``secrets``: Secret and ConfigMap data; ``checks``: status and errors after the build.

Where Traefik logs an error and skips a route, pyroute keeps the router in the output with
``"status": "disabled"`` and its ``"error"`` list (Traefik's runtime API shape), and records a
ConfigError pointing at the field; everything else is still served.
"""
from .checks import ChecksMixin
from .common import RefError, is_cross_provider_namespace_allowed, is_namespace_allowed
from .labels import matches, parse_selector
from .middlewares import MiddlewaresMixin
from .entrypoints import (apply_models, default_observability, redirections,
                          servers_transports)
from .rulecheck import domains
from .tlsresolve import resolve_tls_options, resolved_option
from .names import PROVIDER, SEPARATOR, make_id, make_service_key, normalize, qualified
from .secrets import SecretsMixin
from .services import ServicesMixin
from .tlsconfig import TLSMixin

__all__ = ["resolve", "RouteSource", "RefError"]


class RouteSource:
    """Where a router came from: the IngressRoute and the index of its route."""

    __slots__ = ("obj", "index")

    def __init__(self, obj, index):
        self.obj = obj
        self.index = index

    @property
    def path(self):
        return ("spec", "routes", self.index)


class Store:
    """The objects of one load, indexed as Traefik's Kubernetes client serves them."""

    def __init__(self, objects, crd):
        self.by_kind = {}
        self.slices = {}              # (namespace, service name) -> [EndpointSlice]
        selector = parse_selector(crd.label_selector)
        namespaces = set(crd.namespaces)
        self.duplicates = []
        for obj in objects:
            if obj.kind == "Node":
                # cluster-scoped: no namespace filter; not watched at all when
                # disableClusterScopeResources is set
                if crd.disable_cluster_scope_resources:
                    continue
                self.by_kind.setdefault("Node", {})[("", obj.name)] = obj
                continue
            if namespaces and obj.namespace not in namespaces:
                continue
            if selector and obj.api_version.startswith("traefik.") and not matches(
                    selector, obj.metadata.get("labels")):
                continue
            table = self.by_kind.setdefault(obj.kind, {})
            key = (obj.namespace, obj.name)
            if key in table:
                prev = table[key]
                self.duplicates.append(obj.error(
                    "%s %s is defined again (first at %s:%s); the later definition is used, "
                    "as kubectl apply would" % (obj.kind, obj.ref, prev.file, prev.line),
                    severity="warning"))
            table[key] = obj
        for obj in self.by_kind.get("EndpointSlice", {}).values():
            svc = (obj.metadata.get("labels") or {}).get("kubernetes.io/service-name")
            if svc:
                self.slices.setdefault((obj.namespace, svc), []).append(obj)

    def get(self, kind, namespace, name):
        return self.by_kind.get(kind, {}).get((namespace, name))

    def all(self, kind):
        return list(self.by_kind.get(kind, {}).values())


class Resolver(SecretsMixin, ServicesMixin, MiddlewaresMixin, TLSMixin, ChecksMixin):
    """One load: objects in, Traefik's dynamic configuration and ConfigErrors out."""

    def __init__(self, objects, static):
        self.static = static
        self.crd = static.providers_crd
        self.store = Store(objects, self.crd)
        self.errors = list(self.store.duplicates)
        self.http = {"routers": {}, "services": {}, "middlewares": {}, "serversTransports": {}}
        self.tls = {"options": {}, "stores": {}, "certificates": []}
        self.tls_configs = {}         # "ns/secret" -> certificate dict
        self.router_sources = {}      # qualified router name -> RouteSource
        self.service_sources = {}     # qualified service name -> (obj, path)
        self.middleware_sources = {}  # qualified middleware name -> obj
        self.ingress_routers = {}     # (ns, name) of IngressRoute -> [qualified router names]
        # routers Traefik's provider drops (kept here, disabled, to report them): they are
        # not in Traefik's runtime configuration, so no TLS host association comes from them
        self.dropped_routers = set()
        self.conflicted_routers = frozenset()
        self._servers_cache = {}
        self._current = None

    def err(self, obj, message, path=(), severity="error"):
        e = obj.error(message, tuple(path), severity=severity)
        self.errors.append(e)
        return e

    def should_process(self, obj):
        # Traefik getIngressClassName: spec.ingressClassName when set (even empty), else the
        # deprecated kubernetes.io/ingress.class annotation when not empty; then
        # shouldProcessIngress
        wanted = self.crd.ingress_class
        if "ingressClassName" in obj.spec and obj.spec["ingressClassName"] is not None:
            cls = obj.spec["ingressClassName"]
        else:
            cls = (obj.metadata.get("annotations") or {}).get("kubernetes.io/ingress.class") or ""
        return wanted == cls or (not wanted and cls == "traefik")

    def ingress_routes(self):
        for obj in sorted(self.store.all("IngressRoute"), key=lambda o: (o.namespace, o.name)):
            if obj.spec.get("ingressClassName") is None and (
                    obj.metadata.get("annotations") or {}).get("kubernetes.io/ingress.class"):
                self.err(obj, "'kubernetes.io/ingress.class' is a deprecated annotation, please "
                         "use spec.ingressClassName instead.",
                         ("metadata", "annotations", "kubernetes.io/ingress.class"), "warning")
            if not self.should_process(obj):
                continue
            self.ingress_route(obj)

    def ingress_route(self, obj):
        self._current = obj
        spec = obj.spec
        ns = obj.namespace
        tls = spec.get("tls")
        if tls is not None and tls.get("secretName"):
            key = ns + "/" + tls["secretName"]
            if key not in self.tls_configs:
                try:
                    cert, priv = self.certificate_blocks(ns, tls["secretName"])
                    self.tls_configs[key] = {"certFile": cert, "keyFile": priv}
                except RefError as e:
                    self.err(obj, "Error configuring TLS: " + e.message,
                             ("spec", "tls", "secretName"))
        names = self.ingress_routers.setdefault((ns, obj.name), [])
        # Traefik resolveParentRouterNames: a parent problem skips the whole IngressRoute
        # (pyroute keeps its routers, disabled, and builds none of their services).
        parents, parent_error = self.parent_router_names(obj)
        for i, route in enumerate(spec.get("routes") or ()):
            rpath = ("spec", "routes", i)
            match = route.get("match") or ""
            if route.get("kind") not in (None, "", "Rule"):
                self.err(obj, "Unsupported match kind: %s. Only \"Rule\" is supported for now."
                         % route.get("kind"), rpath + ("kind",))
                continue
            if not match:
                self.err(obj, "Empty match rule", rpath + ("match",))
                continue
            rname = normalize(make_id(ns, make_service_key(match, obj.name)))
            qname = qualified(rname)
            errors = []
            router = {}
            eps = list(spec.get("entryPoints") or ())
            router["entryPoints"] = eps
            mds = []
            dropped = parent_error is not None
            if dropped:
                errors.append(parent_error)
            try:
                mds = self.middleware_keys(ns, route.get("middlewares") or (), rpath)
            except RefError as e:
                errors.append(("Failed to create middleware keys: " + e.message, e.path))
                dropped = True
            if mds:
                router["middlewares"] = [qualified(m) for m in mds]
            service_name = rname
            services = route.get("services") or []
            try:
                if dropped:
                    service_name = None     # Traefik builds nothing for a dropped route
                elif len(services) > 1:
                    self.add_service(service_name, self.build_services_lb(
                        ns, services, None, service_name, rpath + ("services",)),
                        (obj, rpath + ("services",)))
                elif len(services) == 1:
                    full, lb = self.name_and_service(ns, services[0], rpath + ("services", 0))
                    if lb is not None:
                        self.add_service(service_name, lb, (obj, rpath + ("services", 0)))
                    else:
                        service_name = full
                else:
                    service_name = None
            except RefError as e:
                errors.append((e.message, e.path))
                service_name = None
            if service_name is not None:
                router["service"] = service_name
            router["rule"] = match
            if route.get("priority"):
                router["priority"] = route["priority"]
            if route.get("syntax"):
                router["ruleSyntax"] = route["syntax"]
            if obj.spec.get("parentRefs"):
                router["parentRefs"] = [qualified(p) for p in parents]
                if not eps:
                    del router["entryPoints"]      # a child inherits its parents' entry points
            if tls is not None:
                rtls = {}
                if tls.get("certResolver"):
                    rtls["certResolver"] = tls["certResolver"]
                if tls.get("domains"):
                    rtls["domains"] = tls["domains"]
                opts = tls.get("options") or {}
                if opts.get("name"):
                    try:
                        rtls["options"] = self.resolve_reference(
                            ns, opts.get("namespace") or "", opts["name"],
                            ("spec", "tls", "options"))
                    except RefError as e:
                        errors.append(("Invalid reference to TLSOption %s: %s"
                                       % (opts["name"], e.message), e.path))
                router["tls"] = rtls
            # what the route sets; the entry point's model, then Traefik's defaults fill in
            # the rest (default_observability, after apply_models)
            obs = route.get("observability")
            router["observability"] = dict(obs or {})
            if isinstance(obs, dict) and not obs.get("traceVerbosity"):
                # the CRD's schema default (``default: minimal``): the API server writes it
                # into every route that has an observability section, so such a route's
                # verbosity is minimal whatever its entry point says
                router["observability"]["traceVerbosity"] = "minimal"
            self.router_sources[qname] = RouteSource(obj, i)
            names.append(qname)
            self.set_router(qname, router, obj, errors)

    def parent_router_names(self, obj):
        """Traefik resolveParentRouterNames: (router names of the parents, error or None)."""
        refs = obj.spec.get("parentRefs")
        if not refs:
            return [], None
        names = []
        for k, ref in enumerate(refs):
            pns = ref.get("namespace") or obj.namespace
            path = ("spec", "parentRefs", k)
            if not is_namespace_allowed(self.crd.allow_cross_namespace, obj.namespace, pns):
                return [], ("Error resolving parent routers: cross-namespace reference to parent "
                            "IngressRoute %s/%s not allowed (set allowCrossNamespace to allow it)"
                            % (pns, ref.get("name")), path + ("namespace",))
            parent = self.store.get("IngressRoute", pns, ref.get("name"))
            if parent is None:
                return [], ("Error resolving parent routers: parent IngressRoute %s/%s does not "
                            "exist" % (pns, ref.get("name")), path + ("name",))
            for route in parent.spec.get("routes") or ():
                names.append(normalize(make_id(pns, make_service_key(route.get("match") or "",
                                                                     parent.name))))
        return names, None

    def resolve_reference(self, parent_ns, ns, name, path):
        """Traefik resolveReference: a middleware or TLS option name as a router names it."""
        if SEPARATOR in name:
            if not self.crd.allow_cross_namespace and name.endswith(SEPARATOR + PROVIDER):
                raise RefError("when allowCrossNamespace is disabled, @kubernetescrd references "
                               "are disallowed", path + ("name",))
            if not is_cross_provider_namespace_allowed(self.crd.cross_provider_namespaces,
                                                       parent_ns):
                raise RefError("namespace %r is not in crossProviderNamespaces" % parent_ns,
                               path + ("name",))
            if ns and self._current is not None:
                self.err(self._current, "Namespace %r is ignored in cross-provider context" % ns,
                         path + ("namespace",), "warning")
            return name
        ns = ns or parent_ns
        if not is_namespace_allowed(self.crd.allow_cross_namespace, parent_ns, ns):
            raise RefError("allowCrossNamespace is disabled, cross-namespace are disallowed "
                           "(%s/%s from namespace %s)" % (ns, name, parent_ns),
                           path + ("namespace",))
        return normalize(ns + "-" + name)

    def set_router(self, qname, router, obj, errors):
        router["status"] = "enabled"
        if qname in self.http["routers"]:
            self.err(obj, "router %s is produced twice (same IngressRoute name and rule); the "
                     "later one replaces the earlier, as in Traefik" % qname,
                     self.router_sources[qname].path + ("match",), "warning")
        self.http["routers"][qname] = router
        if errors:
            self.dropped_routers.add(qname)
        else:
            self.dropped_routers.discard(qname)
        for message, path in errors:
            self.disable(router, message)
            src = self.router_sources[qname]
            self.err(obj, message, src.path + tuple(path) if path and path[0] != "spec"
                     else tuple(path) or src.path)

    @staticmethod
    def disable(entry, message):
        entry["status"] = "disabled"
        entry.setdefault("error", [])
        if message not in entry["error"]:
            entry["error"].append(message)

    def middleware_keys(self, ns, middlewares, rpath):
        """Traefik makeMiddlewareKeys."""
        mds = []
        for k, mi in enumerate(middlewares):
            mpath = rpath + ("middlewares", k)
            try:
                mds.append(self.resolve_reference(ns, mi.get("namespace") or "",
                                                  mi.get("name", ""), mpath))
            except RefError as e:
                raise RefError("invalid reference to middleware %s: %s"
                               % (mi.get("name", ""), e.message), e.path) from None
        return mds

    def parent_refs(self):
        """Multi-layer routing: a child IngressRoute inherits its parents' entry points."""
        for obj in self.store.all("IngressRoute"):
            if obj.spec.get("parentRefs") and obj.spec.get("entryPoints") and \
                    self.should_process(obj):
                self.err(obj, "a child IngressRoute (with parentRefs) must not set entryPoints: "
                         "it inherits its parents'", ("spec", "entryPoints"), "warning")

    def tls_conflicts(self):
        """Traefik v3.7 resolveHTTPTLSOptions: routers serving a host with different TLS
        options become ``<ep>-conflicted-<router>`` copies with the default option
        (tlsresolve)."""
        copies, logs = resolve_tls_options(self.http["routers"],
                                           self.static.default_entry_points(),
                                           self.dropped_routers, self.router_sources)
        self.conflicted_routers = copies
        for ep, host, names in logs:
            src = self.router_sources.get(names[0])
            if src is None:
                continue
            # Traefik logs it as an error; the configuration still serves (a warning here, so
            # that `pyroute check` passes a configuration Traefik runs)
            self.err(src.obj, 'On EntryPoint "%s", Host "%s" is served by multiple routers '
                     "with different TLS options, default TLSOptions will be applied for the "
                     "following routers: [%s]" % (ep, host, " ".join(names)),
                     src.path + ("match",), "warning")
        for name in sorted(copies):
            router = self.http["routers"][name]
            src = self.router_sources.get(name)
            if src is None:
                continue
            if domains(router.get("rule") or "", router.get("ruleSyntax") or ""):
                message = ("router's TLSOptions configuration is conflicting with other routers "
                           "on the same entrypoint and host, default TLS options will be used "
                           "instead")
            else:
                message = ("no domain found in rule %s, the TLS option %s cannot be applied"
                           % (router.get("rule"), resolved_option(name, router)))
            self.err(src.obj, "router %s: %s" % (name, message), src.path + ("tls", "options"),
                     "warning")

    def run(self):
        self._current = None
        self.tls_stores()
        self.tls_options()
        self.middlewares()
        self.ingress_routes()
        self.parent_refs()
        self.traefik_services()
        self.servers_transports()
        self.certificates()
        # entry point models (http.middlewares, http.tls) apply before the checks, so a
        # missing middleware or TLS option is reported as for the router's own
        apply_models(self.http["routers"], self.static, self.router_sources)
        self.tls_conflicts()
        # after the conflicted copies exist: they get the defaults too
        default_observability(self.http["routers"])
        self.check_services()
        self.check_middlewares()
        self.check_routers()
        # Traefik's internal provider: http.redirections routers (reach no check: they are
        # built from the static configuration, which was checked already)
        routers, middlewares, services = redirections(self.static)
        self.http["routers"].update(routers)
        self.http["middlewares"].update(middlewares)
        self.http["services"].update(services)
        self.http["serversTransports"].update(servers_transports(self.static))
        return {"http": self.http, "tls": self.tls}


def resolve(objects, static):
    """(dynamic, errors, resolver) for already-validated objects."""
    r = Resolver(objects, static)
    dynamic = r.run()
    return dynamic, r.errors, r
