"""Traefik's API (``api`` in the static configuration), served by the master.

``start(config)`` returns the :class:`~pyroute.api.handler.Api` state and its listening
servers: unix sockets in a private folder (mode 0700) that the workers forward
``api@internal`` and ``dashboard@internal`` to — the services of Traefik's internal routers
on the entry point ``traefik`` with ``api.insecure`` (the workers serve that entry point,
beside the routers of manifests on it), and the service Traefik users route to from an
IngressRoute, usually behind a middleware; only this user's processes can reach that socket,
so a middleware in front of ``api@internal`` is never bypassed over the network. ``prepare()`` picks the socket's path before the
configuration is loaded (workers compile ``api@internal`` against it, see
pyroute.proxy.snapshot); without it (``pyroute check``) the service compiles to a pool that
answers 502. The master then keeps the state current: ``api.reloaded(config, trigger)`` /
``api.refused(trigger, error)``, and gives it its health checker and worker slots to read.
"""
from .handler import Api
from .model import Model

__all__ = ["Api", "Model", "start", "prepare", "internal_socket", "INTERNAL_SERVICES"]

# Traefik's internal services pyroute routes to (to the master's API)
INTERNAL_SERVICES = ("api@internal",)

_socket_path = None


def prepare():
    """Choose the path of the master's internal API socket (once per ``pyroute run``)."""
    global _socket_path
    if _socket_path is None:
        import os
        import tempfile
        folder = tempfile.mkdtemp(prefix="pyroute-api-")     # 0700: this user only
        _socket_path = os.path.join(folder, "api.sock")
    return _socket_path


def internal_socket(kind="api"):
    """The internal socket's path for ``kind`` (``api``, ``dashboard``, ``ping``,
    ``prometheus``: one socket each, so what a request reaches is decided by the service it
    was routed to, never by a header the client sent), or None when no ``pyroute run``
    prepared one."""
    if _socket_path is None:
        return None
    if kind == "api":
        return _socket_path
    import os
    return os.path.join(os.path.dirname(_socket_path), kind + ".sock")


_KINDS = ("api", "dashboard", "ping", "prometheus")


def cleanup():
    import os
    if _socket_path is not None:
        for f in [(lambda k=k: os.unlink(internal_socket(k))) for k in _KINDS] + [
                lambda: os.rmdir(os.path.dirname(_socket_path))]:
            try:
                f()
            except OSError:
                pass


def needed(static):
    """Whether the master serves anything of its own: ``api``, ``ping`` or
    ``metrics.prometheus`` (pyroute.observability.endpoints)."""
    return (getattr(static, "api", None) is not None or getattr(static, "ping", None)
            is not None or getattr(getattr(static, "metrics", None), "prometheus", None)
            is not None)


def start(config, store=None):
    """``(api, endpoints, servers)``; ``store``: the master's metrics
    (pyroute.observability.metrics.Store) when ``metrics.prometheus`` is set (the API then
    reports rates from it). ``servers``: what to ``stop()`` when pyroute stops. Raises OSError
    when a unix socket cannot be bound."""
    from .._version import __version__
    from ..observability.endpoints import Endpoints
    from .server import ApiServer
    settings = getattr(config.static, "api", None)
    if store is not None and store.settings is None:
        store = None            # metrics.otlp only: nothing to scrape
    if not needed(config.static):
        return None, None, []
    api = Api(config, settings, __version__) if settings is not None else None
    endpoints = Endpoints(config.static, api, store)
    servers = []
    if api is not None and store is not None:
        # /api/pyroute/rates: the sampler is stopped with the servers
        from ..observability.rates import Rates
        api.rates = Rates(store).start()
        servers.append(api.rates)
    if _socket_path is not None:
        for kind, on in (("api", api is not None),
                         ("dashboard", api is not None and settings.dashboard),
                         ("ping", getattr(config.static, "ping", None) is not None),
                         ("prometheus", store is not None)):
            if on:
                servers.append(ApiServer(endpoints, None, unix_path=internal_socket(kind),
                                         internal=kind).start())
    return api, endpoints, servers
