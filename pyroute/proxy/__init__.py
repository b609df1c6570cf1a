"""The proxied exchange, per config: ``snapshot`` compiles a RuntimeConfig into route tables,
middleware chains, service trees and connection pools; ``normalize`` is the entry point's
request normalisation. The per-connection state machines (client side, upstream side, pools)
are Cython: ``pyroute._engine.conn``.
"""
