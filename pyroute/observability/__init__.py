"""Observation of finished exchanges (access log) and pyroute's own log, in Traefik's shapes."""
