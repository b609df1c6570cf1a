"""The HTTP/1.1 codec (strict, incremental, zero-copy), implemented in ``pyroute._engine.http1``.

See the "HTTP/1.1 codec API" section of README.md and ``engine/http1.pyi``.
"""
from ._engine.errors import HttpParseError
from ._engine.http1 import *  # noqa: F401,F403
from ._engine.http1 import __all__ as _engine_all

__all__ = ["HttpParseError", *_engine_all]
