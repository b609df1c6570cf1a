"""Observation of finished exchanges (metrics; see docs/observability.md)."""
