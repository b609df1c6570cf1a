"""HTTP middlewares: the chain mechanism and the kinds pyroute implements.

A middleware is built once per config load from its dynamic-config spec
(``http.middlewares[name] = {kind: spec}``). Per request the router's chain runs in
declaration order: ``on_request(conn)`` returns None to continue or the bytes of a complete
response to answer directly. Middlewares whose effect is fixed at load (``static = True``, e.g.
custom request/response headers) instead contribute header edits to the route's
``http1.Forwarder`` (``compile_edits``), so they cost nothing per request; response-phase
edits apply in reverse declaration order, as Traefik's nested handlers do. ``conn`` is the client connection: ``conn.req`` (the parsed head),
``conn.path``/``conn.query`` (bytes, may be replaced), ``conn.remote_ip``,
``conn.set_headers`` (request header edits, a list or None), ``conn.ep.tls``.

A kind pyroute does not implement (yet) is an error that disables the routers using it.
"""
from ..errors import ConfigError
from .headers import Headers
from .ipallowlist import IPAllowList
from .path import AddPrefix, StripPrefix
from .redirect import RedirectScheme

KINDS = {
    "stripPrefix": StripPrefix,
    "addPrefix": AddPrefix,
    "headers": Headers,
    "redirectScheme": RedirectScheme,
    "ipAllowList": IPAllowList,
}


def build(name, config):
    """The middleware object for ``http.middlewares[name]``; ConfigError when unsupported."""
    kinds = [k for k in config if k not in ("status", "error", "errors")]
    if len(kinds) != 1:
        raise ConfigError("a middleware needs exactly one kind, found %s" % (kinds or "none"),
                          kind="Middleware", name=name)
    kind = kinds[0]
    factory = KINDS.get(kind)
    if factory is None:
        raise ConfigError("middleware kind %r is not supported by pyroute yet" % kind,
                          kind="Middleware", name=name, field=kind)
    try:
        return factory(config[kind] or {})
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(str(e), kind="Middleware", name=name, field=kind) from None
