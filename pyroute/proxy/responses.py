"""Responses pyroute writes itself (defined in the engine, which the connections use)."""
from .._engine.responses import (CONTINUE_100, REASONS, STATUS_LINES,  # noqa: F401
                                 bad_request_response, error_response, status_line)
