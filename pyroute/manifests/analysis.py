"""Warnings Traefik does not give: routers that can never win, TLS option conflicts per host.

Runs on a RuntimeConfig after loading; needs the rule engine (``pyroute.rules``) for rule
analysis and returns no rule-based findings while it is not installed.
"""

__all__ = ["analyse"]


def analyse(rc):
    """Extra ConfigError warnings for ``pyroute check`` (never changes ``rc``)."""
    return []
