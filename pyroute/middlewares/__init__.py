"""HTTP middlewares: the chain mechanism and the kinds pyroute implements.

A middleware is built once per config load from its dynamic-config spec
(``http.middlewares[name] = {kind: spec}``). Per request it sees the exchange
(``pyroute._engine.exchange.Exchange``: ``ex.req`` the parsed head, ``ex.path``/``ex.query``
(bytes, may be replaced), ``ex.remote_ip``, ``ex.trusted``, ``ex.tls``, ``ex.set_headers`` /
``ex.remove_headers`` (request header edits), ``ex.resp_extra``, ``ex.loop``, ``ex.env``).
A middleware object has any of:

- ``static = True`` + ``compile_edits(req_set, req_remove, resp_set, resp_remove)``: header
  edits fixed at load, compiled into the route's ``http1.Forwarder`` (nothing per request);
- ``on_request(ex)``: None (go on), the bytes of a complete response (answer), or ``WAIT``
  (it calls ``ex.resume()`` or ``ex.answer(bytes)`` later, on the loop: a sub-request through
  ``ex.env.subrequest``, a thread-pool job through ``ex.loop.call_soon_threadsafe``, a timer
  through ``ex.loop.call_later``);
- ``on_response(ex, head)``: the response phase, in reverse chain order, over every response
  that passes back through it (the backend's, later middlewares' answers, pyroute's own
  errors): ``head`` is a ``pyroute._engine.exchange.ResponseHead``;
- ``on_complete(ex)``: once when the exchange ends, whatever the outcome.

Routes whose chain has no ``on_response``/``on_complete`` keep every response edit compiled
(pyroute.proxy.snapshot.Route explains both modes).

A kind pyroute does not implement (yet) is an error on the Middleware (``check``: the
Middleware is disabled, ``pyroute check`` names its file, line and field) that disables the
routers using it. The Traefik Hub API Gateway middlewares (apiKey, jwt, oidc, ...) are
written ``plugin: {jwt: {...}}``; Traefik OSS knows no such plugin and refuses them with
"plugin: unknown plugin type: jwt", and so does pyroute (it runs no plugins at all).
"""
from ..errors import ConfigError
from . import forwardauth as _forwardauth
from . import headers as _headers
from .contenttype import DEPRECATED_AUTODETECT, ContentType
from .passtls import PassTLSClientCert
from .encoded import EncodedCharacters
from .auth import BasicAuth, DigestAuth
from .buffering import Buffering
from .compress import Compress
from .errors import Errors
from .forwardauth import ForwardAuth
from .grpcweb import GrpcWeb
from .headers import Headers, edit_answer  # noqa: F401
from .circuitbreaker import CircuitBreaker
from .ipallowlist import IPAllowList, IPWhiteList
from .path import AddPrefix, ReplacePath, ReplacePathRegex, StripPrefix, StripPrefixRegex
from .ratelimit import InFlightReq, RateLimit
from .retry import Retry
from .redirect import RedirectRegex, RedirectScheme


class Chain:
    """chain (Traefik pkg/middlewares/chain): its members, in order. Never run itself: the
    compiler flattens a chain into the chain of every router and service using it (Traefik
    nests the members' handlers in that order, so the request and response phases are the
    same), so it costs nothing per request; a chain that reaches itself is an error
    (``chain_cycles``; the compiler checks it too)."""
    __slots__ = ("members",)
    static = False

    def __init__(self, spec):
        members = spec.get("middlewares")
        if members is None:
            members = []
        if not isinstance(members, list) or not all(isinstance(m, str) and m
                                                    for m in members):
            raise ValueError("middlewares: expected a list of middleware names")
        self.members = list(members)


KINDS = {
    "stripPrefix": StripPrefix,
    "stripPrefixRegex": StripPrefixRegex,
    "addPrefix": AddPrefix,
    "replacePath": ReplacePath,
    "replacePathRegex": ReplacePathRegex,
    "headers": Headers,
    "redirectScheme": RedirectScheme,
    "redirectRegex": RedirectRegex,
    "ipAllowList": IPAllowList,
    "encodedCharacters": EncodedCharacters,
    "passTLSClientCert": PassTLSClientCert,
    "contentType": ContentType,
    "ipWhiteList": IPWhiteList,
    "chain": Chain,
    "basicAuth": BasicAuth,
    "digestAuth": DigestAuth,
    "forwardAuth": ForwardAuth,
    "rateLimit": RateLimit,
    "inFlightReq": InFlightReq,
    "circuitBreaker": CircuitBreaker,
    "retry": Retry,
    "compress": Compress,
    "errors": Errors,
    "buffering": Buffering,
    "grpcWeb": GrpcWeb,
}
# kinds whose state is kept per middleware name (Traefik keys a limiter's sources by it)
NAMED = {"rateLimit", "inFlightReq", "circuitBreaker"}

# Traefik Hub API Gateway middlewares (doc.traefik.io/traefik-hub): plugin name -> what it is.
# Traefik OSS has none of them (its plugin builder: "unknown plugin type").
HUB_PLUGINS = {
    "apiKey": "API Key Authentication",
    "coraza": "Coraza Web Application Firewall",
    "distributedRateLimit": "Distributed RateLimit",
    "hmac": "HMAC",
    "jwt": "JWT Authentication",
    "ldap": "LDAP Authentication",
    "oAuthClientCredentials": "OAuth 2.0 Client Credentials Authentication",
    "oAuthIntrospection": "OAuth 2.0 Token Introspection Authentication",
    "oidc": "OpenID Connect Authentication",
    "opa": "Open Policy Agent",
}


def unsupported(kind, spec):
    """``(field, message)`` when pyroute cannot run a middleware of ``kind`` (None when it
    can): the ``field`` (below ``spec.<kind>``, or None) and the message, Traefik's own for
    a plugin it does not know."""
    if kind in KINDS:
        return None
    if kind == "plugin":
        # Traefik findPluginConfig, then plugins.Builder.Build
        if not isinstance(spec, dict) or len(spec) != 1:
            return None, ("plugin: invalid configuration: no configuration or too many plugin "
                          "definition")
        name = next(iter(spec))
        if not name:
            return None, "plugin: missing plugin type"
        message = "plugin: unknown plugin type: %s" % name
        if name in HUB_PLUGINS:
            message += (" (%s is Traefik Hub's %s middleware, which Traefik OSS does not have)"
                        % (name, HUB_PLUGINS[name]))
        else:
            message += " (pyroute runs no plugins)"
        return name, message
    return None, "middleware kind %r is not supported by pyroute yet" % kind
# kinds Traefik still runs but logs as deprecated when it builds them
DEPRECATED_KINDS = {
    "ipWhiteList": "Middleware of type IPWhiteList is deprecated, please use IPAllowList "
                   "instead.",
}


def recursion_error(stack, name):
    """Traefik's recursion.CheckRecursion message for ``name`` reached again via ``stack``
    (the middleware names from the router's down)."""
    return ("could not instantiate middleware %s: recursion detected in %s"
            % (name, "->".join("middleware:" + n for n in tuple(stack) + (name,))))


def chain_cycles(middlewares):
    """``{name: message}`` for every chain middleware (in ``http.middlewares``, qualified
    names) that reaches itself through chains, with Traefik's recursion message."""
    out = {}

    def members(name):
        conf = middlewares.get(name) or {}
        chain = conf.get("chain") if isinstance(conf, dict) else None
        if not isinstance(chain, dict):
            return ()
        # (a chain the provider dropped keeps its spec's references: no names)
        return [m for m in chain.get("middlewares") or () if isinstance(m, str)]

    for start in middlewares:
        # depth-first from start; the first path back to start is the one reported
        todo = [(start, (start,))]
        seen = set()
        while todo:
            name, path = todo.pop()
            for child in members(name):
                if child == start:
                    out[start] = recursion_error(path, start)
                    todo = []
                    break
                if child not in seen:
                    seen.add(child)
                    todo.append((child, path + (child,)))
    return out


def build(name, config, router=None):
    """The middleware object for ``http.middlewares[name]``; ConfigError when unsupported."""
    # "status"/"error": the runtime shape's state; "errors" is the error-page kind (an object)
    kinds = [k for k in config if k not in ("status", "error")
             and not (k == "errors" and not isinstance(config[k], dict))]
    if len(kinds) != 1:
        raise ConfigError("a middleware needs exactly one kind, found %s" % (kinds or "none"),
                          kind="Middleware", name=name)
    kind = kinds[0]
    factory = KINDS.get(kind)
    if factory is None:
        field, message = unsupported(kind, config[kind])
        raise ConfigError(message, kind="Middleware", name=name,
                          field=kind + ("." + field if field else ""))
    try:
        if kind in NAMED:
            # the parameters are part of the name: a reload that changes them starts afresh
            # (Traefik rebuilds the limiter), one that keeps them keeps the counts
            import json
            return factory(config[kind] or {},
                           name="%s#%s#%s" % (name, router or "",
                                              json.dumps(config[kind], sort_keys=True,
                                                         default=str)))
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
    ignores or deprecates. A kind pyroute does not run is an error too (the Middleware and
    its routers are disabled, as the compiler would, so ``check --dump`` shows it disabled);
    options of the kinds it runs that it cannot run yet are reported when the configuration
    is compiled (``build``)."""
    factory = KINDS.get(kind)
    if factory is None:
        field, message = unsupported(kind, spec)
        return [("error", field, message)]
    spec = spec if spec is not None else {}
    out = []
    built = None
    try:
        if kind == "headers":
            _headers.validate(spec)
        else:
            built = factory(spec)
    except (ValueError, TypeError, AttributeError) as e:
        field, message = _split_field(str(e))
        out.append(("error", field, message))
    if built is not None and hasattr(built, "warnings"):
        # what Traefik accepts silently but a user should know (basicAuth: a user twice)
        out += [("warning", f, m) for f, m in built.warnings()]
    if kind == "headers" and isinstance(spec, dict):
        out += [("warning", f, m) for f, m in _headers.warnings(spec)]
    if kind in DEPRECATED_KINDS:
        out.append(("warning", None, DEPRECATED_KINDS[kind]))
    if kind == "replacePath" and isinstance(spec, dict) and not out:
        mw = ReplacePath(spec)
        if mw.answer is not None:
            # Traefik builds it and answers every request with 500 (its error text)
            out.append(("warning", "path", "%s: every request through this middleware is "
                        "answered 500, as Traefik answers it" % (
                            mw.answer.rsplit(b"\r\n\r\n", 1)[1].strip().decode(
                                "utf-8", "replace"))))
    if kind == "forwardAuth":
        out += [("warning", f, m) for f, m in _forwardauth.warnings(spec)]
    if kind == "stripPrefix" and isinstance(spec, dict) and spec.get("forceSlash") is not None:
        # Traefik New(): logs this and honours the value
        out.append(("warning", "forceSlash", "`ForceSlash` option is deprecated, please "
                    "remove any usage of this option."))
    if kind == "contentType" and isinstance(spec, dict) and spec.get("autoDetect") is not None:
        # Traefik contenttype.New() logs this (autoDetect false: the middleware does nothing)
        out.append(("warning", "autoDetect", DEPRECATED_AUTODETECT))
    return out
