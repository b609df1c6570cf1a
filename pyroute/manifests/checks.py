"""The checks Traefik's runtime makes when it wires the configuration.

A router whose entry points, service, middlewares, TLS option or rule do not hold is disabled
with the reason (Traefik's router manager); services and chains referring to missing or disabled
parts are disabled too, and reference cycles are refused.
"""
from .names import qualified
from .rulecheck import check_priority, check_rule
from .tlsconfig import DEFAULT_TLS

# Traefik's internal services: the workers forward api@internal, dashboard@internal,
# ping@internal and prometheus@internal to the master (pyroute.api); the others are refused
_INTERNAL_SERVICE = ("the service %r is one of Traefik's internal services, which pyroute "
                     "does not route to yet (of those it serves api@internal, "
                     "dashboard@internal, ping@internal and prometheus@internal, with the "
                     "static api, ping and metrics.prometheus sections)")

__all__ = ["ChecksMixin"]


class ChecksMixin:
    """Resolver part: status and errors after everything is built."""

    def check_services(self):
        services = self.http["services"]
        self._check_status_updaters(services)
        # A service's own parts first (Traefik's service manager builds a load balancer with
        # its transport and middlewares), so that a parent of a broken child is disabled too.
        for name, svc in services.items():
            st = (svc.get("loadBalancer") or {}).get("serversTransport")
            if st and st not in self.http["serversTransports"] and svc.get("status") == "enabled":
                # Traefik's service manager: the transport must exist for the service to build
                self.disable(svc, "servers transport %r not found" % st)
                src = self.service_sources.get(name)
                if src is not None:
                    self.err(src[0], "service %s: servers transport %r not found" % (name, st),
                             src[1] + ("serversTransport",))
            transport = self.http["serversTransports"].get(st) if st else None
            unverified = [k for k in _UNVERIFIED if (transport or {}).get(k)]
            if unverified and svc.get("status") == "enabled":
                # a verification the user asked for is never skipped: not served instead
                problem = ("servers transport %r sets %s, which pyroute does not verify yet; "
                           "the service is not served rather than served unverified"
                           % (st, ", ".join(unverified)))
                self.disable(svc, problem)
                src = self.service_sources.get(name)
                if src is not None:
                    self.err(src[0], "service %s: %s" % (name, problem),
                             src[1] + ("serversTransport",))
            for mw in svc.get("middlewares") or ():
                target = self.http["middlewares"].get(mw)
                if svc.get("status") != "enabled":
                    break
                if target is None:
                    problem = "middleware %r does not exist" % mw
                elif target.get("status") == "disabled":
                    # Traefik's service manager: the chain does not build, nor the service
                    problem = "middleware %r is disabled: %s" % (
                        mw, "; ".join(target.get("error") or ()))
                else:
                    continue
                self.disable(svc, problem)
                src = self.service_sources.get(name)
                if src is not None:
                    self.err(src[0], "service %s: %s" % (name, problem),
                             src[1] + ("middlewares",))
        self._propagate_disabled(services)
        # cycles: a service must not reach itself
        cycles = False
        for name in list(services):
            if services[name].get("status") == "enabled" and _reaches(services, name, name):
                self.disable(services[name], "the service %r is part of a cycle" % name)
                cycles = True
                src = self.service_sources.get(name)
                if src is not None:
                    self.err(src[0], "service %s is part of a reference cycle" % name, src[1])
        if cycles:
            self._propagate_disabled(services)
        for name, svc in services.items():
            lb = svc.get("loadBalancer")
            if svc.get("status") == "enabled" and lb is not None and not lb["servers"]:
                src = self.service_sources.get(name)
                if src is not None:
                    self.err(src[0], "service %s has no servers: every request to it gets 503"
                             % name, src[1], "warning")

    def _propagate_disabled(self, services):
        """A weighted/mirroring/failover service whose child is missing or disabled is
        disabled (Traefik's service manager fails to build it)."""
        changed = True
        while changed:
            changed = False
            for name, svc in services.items():
                if svc.get("status") != "enabled":
                    continue
                for child in _children(svc):
                    q = qualified(child)
                    target = services.get(q)
                    problem = None
                    if target is None:
                        problem = "the service %r does not exist" % q
                    elif target.get("status") != "enabled":
                        problem = "the service %r is disabled" % q
                    if problem:
                        self.disable(svc, problem)
                        src = self.service_sources.get(name)
                        if src is not None:
                            self.err(src[0], "service %s: %s" % (name, problem), src[1])
                        changed = True
                        break

    def _check_status_updaters(self, services):
        # Traefik's service manager: a weighted/highestRandomWeight service with healthCheck
        # needs every child to report its status (RegisterStatusUpdater), and so does a
        # failover with healthCheck for its fallback; a child reports only when it enables
        # health checks itself. Otherwise the service is not built.
        for name, svc in services.items():
            if svc.get("status") != "enabled":
                continue
            kind = next((k for k in ("weighted", "highestRandomWeight", "failover")
                         if k in svc), None)
            if kind == "failover" and svc[kind].get("healthCheck") is None:
                main = services.get(qualified(svc[kind].get("service") or ""))
                src = self.service_sources.get(name)
                if main is not None and not _reports_status(main) and src is not None:
                    self.err(src[0], "service %s: its main service %s has no health check: "
                             "Traefik refuses such a failover (the main must report its "
                             "status); pyroute fails over when the main has no available "
                             "server" % (name, qualified(svc[kind]["service"])),
                             src[1] + ("spec", "failover", "service"), "warning")
                continue
            if kind is None or svc[kind].get("healthCheck") is None:
                continue
            if kind == "failover":
                children = [svc[kind].get("service"), svc[kind].get("fallback")]
            else:
                children = [c["name"] for c in svc[kind].get("services") or ()]
            for child in children:
                target = services.get(qualified(child or ""))
                if target is None or _reports_status(target):
                    continue
                problem = ("cannot register %s as updater for %s: healthCheck not enabled in "
                           "config for it" % (qualified(child), name))
                self.disable(svc, problem)
                src = self.service_sources.get(name)
                if src is not None:
                    self.err(src[0], "service %s: %s" % (name, problem),
                             src[1] + ("spec", kind, "healthCheck"))
                break

    def check_middlewares(self):
        mws = self.http["middlewares"]
        for name, mw in mws.items():
            if mw.get("status") != "enabled":
                continue
            chain = (mw.get("chain") or {}).get("middlewares") or ()
            for child in chain:
                q = qualified(child)
                if q not in mws:
                    msg = "middleware %r does not exist" % q
                    self.disable(mw, msg)
                    obj = self.middleware_sources[name]
                    self.err(obj, msg, ("spec", "chain", "middlewares"))
            es = mw.get("errors")
            if es and es.get("service") and qualified(es["service"]) not in self.http["services"]:
                self.disable(mw, "the service %r does not exist" % qualified(es["service"]))
        # a chain that reaches itself: Traefik's recursion error when a router builds it;
        # reported here on each chain of the cycle, and the compiler refuses every router
        # that reaches it with Traefik's message for that router's path
        from ..middlewares import chain_cycles
        for name, msg in chain_cycles(mws).items():
            obj = self.middleware_sources.get(name)
            if obj is not None:
                self.err(obj, msg, ("spec", "chain", "middlewares"))

    def check_routers(self):
        api = getattr(self.static, "api", None)
        eps_known = self.static.entry_points
        default_eps = self.static.default_entry_points()
        for name, router in self.http["routers"].items():
            src = self.router_sources[name]
            obj, rpath = src.obj, src.path
            problems = []
            if "parentRefs" not in router:
                if not router.get("entryPoints"):
                    router["entryPoints"] = list(default_eps)
                missing = [ep for ep in router["entryPoints"] if ep not in eps_known]
                for ep in missing:
                    self.err(obj, "entryPoint %r doesn't exist (known: %s)"
                             % (ep, ", ".join(eps_known)), ("spec", "entryPoints"))
                if missing and len(missing) == len(router["entryPoints"]):
                    self.disable(router, "no valid entryPoint for this router")
            svc = router.get("service")
            if svc is not None and router.get("status") == "enabled":
                q = qualified(svc)
                target = self.http["services"].get(q)
                if target is None and api is not None and (
                        q == "api@internal" or (q == "dashboard@internal" and api.dashboard)):
                    # Traefik's internal provider has api@internal whenever ``api`` is set,
                    # dashboard@internal with ``api.dashboard``: the workers forward them to
                    # the master (pyroute.api)
                    self.http["services"][q] = {"status": "enabled"}
                elif target is None and (
                        (q == "ping@internal" and getattr(self.static, "ping", None)
                         is not None) or
                        (q == "prometheus@internal" and getattr(getattr(
                            self.static, "metrics", None), "prometheus", None) is not None)):
                    # served by the master (pyroute.api), forwarded there by the workers
                    self.http["services"][q] = {"status": "enabled"}
                elif target is None and q.endswith("@internal") and q not in (
                        "api@internal", "dashboard@internal", "ping@internal",
                        "prometheus@internal"):
                    problems.append((_INTERNAL_SERVICE % q, ("services",)))
                elif target is None and q in ("ping@internal", "prometheus@internal"):
                    problems.append(("the service %r needs the static %s section" % (
                        q, "ping" if q == "ping@internal" else "metrics.prometheus"),
                        ("services",)))
                elif target is None:
                    problems.append(("the service %r does not exist" % q, ("services",)))
                elif target.get("status") != "enabled":
                    problems.append(("the service %r is disabled: %s" % (
                        q, "; ".join(target.get("error", []))), ("services",)))
            elif not self._has_children(name) and router.get("status") == "enabled":
                problems.append(("the router has no service", ()))
            for k, mw in enumerate(router.get("middlewares") or ()):
                target = self.http["middlewares"].get(mw)
                if target is None:
                    problems.append(("middleware %r does not exist" % mw, ("middlewares", k)))
                elif target.get("status") != "enabled":
                    problems.append(("middleware %r is disabled: %s" % (
                        mw, "; ".join(target.get("error", []))), ("middlewares", k)))
            tls = router.get("tls")
            if tls is not None and tls.get("options"):
                opt = tls["options"]
                qopt = opt if opt == DEFAULT_TLS else qualified(opt)
                if qopt not in self.tls["options"]:
                    problems.append(("unknown TLS options: %s" % qopt, None))
            rule_error = check_rule(router["rule"], router.get("ruleSyntax", ""))
            if rule_error is not None:
                problems.append((rule_error, ("match",)))
            prio_error = check_priority(router.get("priority", 0))
            if prio_error is not None:
                problems.append((prio_error, ("priority",)))
            for message, path in problems:
                if message in router.get("error", ()):
                    continue
                self.disable(router, message)
                fpath = ("spec", "tls", "options") if path is None else rpath + tuple(path)
                self.err(obj, message, fpath)

    def _has_children(self, qname):
        for r in self.http["routers"].values():
            if qname in (r.get("parentRefs") or ()):
                return True
        return False


# ServersTransport checks of the backend's certificate that pyroute's upstream TLS lacks
# (peerCertURI is verified: pyroute.proxy.snapshot._client_tls, as Traefik's transport)
_UNVERIFIED = ("peerCertSANs", "spiffe")


def _children(svc):
    for key in ("weighted", "highestRandomWeight"):
        if key in svc:
            for s in svc[key].get("services") or ():
                yield s["name"]
    if "mirroring" in svc:
        yield svc["mirroring"]["service"]
        for m in svc["mirroring"].get("mirrors") or ():
            yield m["name"]
    if "failover" in svc:
        yield svc["failover"]["service"]
        yield svc["failover"]["fallback"]


def _reaches(services, start, target, seen=None):
    seen = set() if seen is None else seen
    for child in _children(services[start]):
        q = qualified(child)
        if q == target:
            return True
        if q in services and q not in seen:
            seen.add(q)
            if _reaches(services, q, target, seen):
                return True
    return False


def _reports_status(svc):
    """Whether a service reports health-check status to its parents (Traefik: it enables
    health checks itself; a mirroring service from the CRD never does)."""
    for kind in ("loadBalancer", "weighted", "highestRandomWeight", "failover"):
        if kind in svc:
            return svc[kind].get("healthCheck") is not None
    return False
