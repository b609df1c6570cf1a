"""Traefik's API (``api`` in the static configuration), served by the master.

``start(config)`` returns the :class:`~pyroute.api.handler.Api` state and its listening
:class:`~pyroute.api.server.ApiServer` (on the ``traefik`` entry point, with
``api.insecure``), or ``(None, None)`` without ``api``. The master then keeps the state
current: ``api.reloaded(config, trigger)`` / ``api.refused(trigger, error)`` on reloads, and
gives it its health checker and worker slots to read.
"""
from .handler import Api
from .model import Model

__all__ = ["Api", "Model", "start"]


def start(config):
    """Raises OSError when the ``traefik`` entry point cannot be bound."""
    from .._version import __version__
    settings = getattr(config.static, "api", None)
    if settings is None:
        return None, None
    api = Api(config, settings, __version__)
    server = None
    if settings.insecure:
        from .server import ApiServer
        server = ApiServer(api, settings.entry_point).start()
    return api, server
