"""Process log lines (pyroute.observability.log: Traefik's ``log`` formats)."""
from ..observability.log import configure, enabled, log, reopen, set_level  # noqa: F401
