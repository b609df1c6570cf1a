"""The proxied exchange: client connections, upstream connections and pools, canned answers.

Per-config objects (routes, services, servers, middleware chains) are compiled by
``pyroute.proxy.snapshot``; the per-connection state machines live in ``client`` and
``upstream`` and are driven by ``pyroute.server.loop``.
"""
