"""pyroute: a reverse proxy that routes HTTP(S) exactly as Traefik v3 does for IngressRoute."""
from ._version import __version__

__all__ = ["__version__"]
