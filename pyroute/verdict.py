"""One verdict for ``pyroute check``, ``pyroute explain`` and ``pyroute run``.

``run`` (the master, pyroute.server.run.load_config) compiles every loaded configuration with
``pyroute.proxy.snapshot.compile_config``, the very compiler the workers serve with; a router
that compilation cannot build (a middleware kind or option pyroute cannot run, a service kind,
strategy or backend scheme it lacks, a ServersTransport setting it refuses) is left out of the
route tables: it is disabled. ``verdict(rc)`` runs that compilation and writes its outcome back
into the configuration, so that every command sees the same thing:

- each router the compiler leaves out gets ``"status": "disabled"`` and the compiler's reason
  in its ``"error"`` list (as Traefik's API shows a router whose handler failed to build);
- each reason becomes a ConfigError that names the IngressRoute's file and line, the object
  and the route's field (``spec.routes[i].middlewares``, ``...services``, ``...match``), with
  the compiler's message (which names the router and the middleware or service at fault);
- the compile's other problems (TLS options, certificates) are added as they are.

``check`` prints those errors; ``explain`` answers from the returned configuration, so a router
``run`` disables is shown disabled with that reason and is never simulated; ``run`` serves it.
"""
import dataclasses

__all__ = ["verdict"]

# compiler field -> the route's field in the IngressRoute it came from
_ROUTE_FIELD = {"middlewares": ("middlewares",), "service": ("services",),
                "rule": ("match",), "parentRefs": ()}


def verdict(rc, pools=None):
    """``(rc2, snapshot)``: ``rc`` with what compilation disables marked disabled and its
    errors added; ``snapshot`` is the compiled configuration (serve it or throw it away)."""
    from .errors import ConfigError
    from .proxy.snapshot import Pools, compile_config

    snap = compile_config(rc, pools if pools is not None else Pools())
    routers = rc.dynamic.get("http", {}).get("routers", {})
    new_routers = None
    added = []
    for e in snap.errors:
        # the compiler's "router disabled: ..." errors left the router out of its tables;
        # its other router errors (the TLS side: certResolver, option conflicts) do not
        if e.kind == "Router" and e.name in routers and \
                e.message.startswith("router disabled: "):
            if new_routers is None:
                new_routers = dict(routers)
            r = dict(new_routers[e.name])
            reason = e.message[len("router disabled: "):]
            r["status"] = "disabled"
            r["error"] = list(r.get("error") or ()) + [reason]
            new_routers[e.name] = r
            added.append(_located(rc, e, reason, ConfigError))
        else:
            added.append(e)
    dynamic = rc.dynamic
    if new_routers is not None:
        dynamic = dict(dynamic)
        dynamic["http"] = dict(dynamic["http"])
        dynamic["http"]["routers"] = new_routers
    known = {_key(e) for e in rc.errors}
    extra = tuple(e for e in added if _key(e) not in known)
    return dataclasses.replace(rc, dynamic=dynamic, errors=tuple(rc.errors) + extra), snap


def _key(e):
    return (e.file, e.line, e.kind, e.namespace, e.name, e.field, e.message, e.severity)


def _located(rc, e, reason, ConfigError):
    """The compiler's router error, pointed at the IngressRoute route that made the router."""
    src = (rc.router_sources or {}).get(e.name)
    message = "router %s disabled: %s" % (e.name, reason)
    if src is None:
        return ConfigError(message, kind="Router", name=e.name, field=e.field)
    if e.field == "parentRefs":
        path = ("spec", "parentRefs")
    else:
        path = src.path + _ROUTE_FIELD.get(e.field, ())
    return src.obj.error(message, path)
