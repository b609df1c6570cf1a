"""pyroute's per-request engine (Cython), installed as ``pyroute._engine``.

Nothing here imports ``pyroute``: the Python layer compiles configuration into the typed
structures these modules walk. The Python-visible faces are re-exported by ``pyroute.rules``,
``pyroute.http1`` and friends.
"""
