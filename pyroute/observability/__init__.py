"""Observation of finished exchanges (access log, metrics) and pyroute's own log, in
Traefik's shapes (see docs/observability.md)."""
