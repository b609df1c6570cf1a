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
from . import forwardauth as _forwardauth
from . import headers as _headers
from .forwardauth import ForwardAuth
from .headers import Headers, edit_answer  # noqa: F401
from .ipallowlist import IPAllowList
from .path import AddPrefix, StripPrefix
from .redirect import RedirectScheme

KINDS = {
    "stripPrefix": StripPrefix,
    "addPrefix": AddPrefix,
    "headers": Headers,
    "redirectScheme": RedirectScheme,
    "ipAllowList": IPAllowList,
    "forwardAuth": ForwardAuth,
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


def _split_field(message):
    # messages are "field.path: text" when they concern one field
    head, sep, rest = message.partition(": ")
    if sep and head and " " not in head:
        return head, rest
    return None, message


def check(kind, spec):
    """Problems with a middleware spec as Traefik sees them, for the manifests layer:
    ``[(severity, field, message)]`` — "error" where Traefik refuses to build the middleware
    (the middleware and its routers are disabled), "warning" for what Traefik accepts but
    ignores or deprecates. Kinds pyroute does not run, and options of these kinds it cannot
    run yet, are reported when the configuration is compiled (``build``)."""
    factory = KINDS.get(kind)
    if factory is None:
        return []
    spec = spec if spec is not None else {}
    out = []
    try:
        if kind == "headers":
            _headers.validate(spec)
        else:
            factory(spec)
    except (ValueError, TypeError, AttributeError) as e:
        field, message = _split_field(str(e))
        out.append(("error", field, message))
    if kind == "headers" and isinstance(spec, dict):
        out += [("warning", f, m) for f, m in _headers.warnings(spec)]
    if kind == "forwardAuth":
        out += [("warning", f, m) for f, m in _forwardauth.warnings(spec)]
    if kind == "stripPrefix" and isinstance(spec, dict) and spec.get("forceSlash") is not None:
        # Traefik New(): logs this and honours the value
        out.append(("warning", "forceSlash", "`ForceSlash` option is deprecated, please "
                    "remove any usage of this option."))
    return out
