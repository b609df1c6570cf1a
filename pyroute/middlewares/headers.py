"""headers: customRequestHeaders / customResponseHeaders (Traefik pkg/middlewares/headers).

As Traefik's Header middleware:
- request: a value sets the header (replacing the client's), "" removes it; ``Host`` sets the
  request's Host (one Host line upstream); ``X-Forwarded-For: ""`` (that exact spelling, as
  Traefik compares it) suppresses the header entirely — Go's ReverseProxy then adds no
  X-Forwarded-For at all — while another spelling only deletes the client's values;
- response: a value sets, "" removes, on every response that passes through the middleware:
  the backend's and the answers of the middlewares after it in the chain (Traefik wraps the
  ResponseWriter of everything it calls);
- ``headers: {}`` (or only empty maps / zero values) is refused: "headers configuration not
  valid";
- ``sslRedirect``, ``sslTemporaryRedirect``, ``sslHost``, ``sslForceHost``, ``featurePolicy``
  are deprecated options Traefik v3 accepts and ignores: accepted with a warning
  (``warnings``);
- the security-header and CORS options are not implemented by pyroute yet: setting one to
  a non-zero value is an error that disables the routers using the middleware.
"""

CUSTOM = ("customRequestHeaders", "customResponseHeaders")
# Traefik v3.7 dynamic.Headers: deprecated, read by nothing (no-ops)
DEPRECATED = {
    "sslRedirect": "use EntryPoint redirection or RedirectScheme instead",
    "sslTemporaryRedirect": "use EntryPoint redirection or RedirectScheme instead",
    "sslHost": "use RedirectRegex instead",
    "sslForceHost": "use RedirectRegex instead",
    "featurePolicy": "use PermissionsPolicy instead",
}
# HasCorsHeadersDefined / HasSecureHeadersDefined (the rest of dynamic.Headers)
CORS = ("accessControlAllowCredentials", "accessControlAllowHeaders",
        "accessControlAllowMethods", "accessControlAllowOriginList",
        "accessControlAllowOriginListRegex", "accessControlExposeHeaders",
        "accessControlMaxAge", "addVaryHeader")
SECURE = ("allowedHosts", "hostsProxyHeaders", "sslProxyHeaders", "stsSeconds",
          "stsIncludeSubdomains", "stsPreload", "forceSTSHeader", "frameDeny",
          "customFrameOptionsValue", "contentTypeNosniff", "browserXssFilter",
          "customBrowserXSSValue", "contentSecurityPolicy", "contentSecurityPolicyReportOnly",
          "publicKey", "referrerPolicy", "permissionsPolicy", "isDevelopment")


def _set(spec, key):
    """Whether Traefik's Has*Defined counts ``key`` as set: non-zero, non-empty; pointers
    (stsSeconds, accessControlMaxAge) count as soon as they are given."""
    v = spec.get(key)
    if key in ("stsSeconds", "accessControlMaxAge"):
        return v is not None
    return v not in (None, False, "", [], {}, 0)


def warnings(spec):
    """(field, message) for the deprecated options ``spec`` uses (Traefik ignores them)."""
    return [(k, "headers option %s is deprecated and ignored by Traefik v3: %s"
             % (k, DEPRECATED[k])) for k in DEPRECATED if spec.get(k) is not None]


def validate(spec):
    """Traefik's own refusal (the middleware is not built), as a ValueError."""
    if not isinstance(spec, dict):
        raise ValueError("headers: expected a mapping")
    for key in CUSTOM:
        m = spec.get(key)
        if m is not None and not isinstance(m, dict):
            raise ValueError("%s: expected a mapping of header names to strings" % key)
    secure = any(_set(spec, k) for k in SECURE) or any(
        _set(spec, k) for k in ("sslRedirect", "sslTemporaryRedirect", "sslForceHost",
                                "sslHost", "featurePolicy"))
    custom = any(spec.get(k) for k in CUSTOM)
    cors = any(_set(spec, k) for k in CORS)
    if not (secure or custom or cors):
        raise ValueError("headers configuration not valid")


class Headers:
    __slots__ = ("request", "response", "host", "omit_xff")

    def __init__(self, spec):
        validate(spec)
        # stsSeconds: 0 counts as "set" for Traefik's validity check but adds nothing (the
        # Strict-Transport-Security header needs > 0): a zero value is accepted as a no-op
        unsupported = sorted(k for k in SECURE + CORS if _set(spec, k)
                             and not (k == "stsSeconds" and spec.get(k) == 0))
        if unsupported:
            raise ValueError("headers option %s is not supported by pyroute yet"
                             % ", ".join(unsupported))
        self.host = None
        self.omit_xff = False
        self.request = []
        for name, value in (spec.get("customRequestHeaders") or {}).items():
            value = self._value(name, value)
            if value is None and name == "X-Forwarded-For":
                self.omit_xff = True        # req.Header[XForwardedFor] = nil
            elif value is not None and name.lower() == "host":
                self.host = value           # req.Host = value
            else:
                self.request.append((name.encode("latin-1"), value))
        self.response = [(name.encode("latin-1"), self._value(name, value))
                         for name, value in (spec.get("customResponseHeaders") or {}).items()]

    @staticmethod
    def _value(name, value):
        if not isinstance(name, str) or not name:
            raise ValueError("header %r: expected a header name" % (name,))
        if not isinstance(value, str):
            raise ValueError("header %s: expected a string value" % name)
        return value.encode("latin-1") if value != "" else None

    # Static edits: compiled into the route's http1.Forwarder at config load
    # (``compile_edits``), so nothing runs per request.
    static = True

    def compile_edits(self, req_set, req_remove, resp_set, resp_remove):
        for name, value in self.request:
            (req_remove.append(name) if value is None else req_set.append((name, value)))
        for name, value in self.response:
            (resp_remove.append(name) if value is None else resp_set.append((name, value)))


def edit_answer(answer, sets, removes):
    """A response pyroute answers itself (``answer``: head + body bytes) with response edits
    applied: ``removes`` names dropped, ``sets`` (name, value) replacing any same-named line."""
    end = answer.find(b"\r\n\r\n")
    lines = answer[:end].split(b"\r\n")
    drop = {n.lower() for n in removes} | {n.lower() for n, _ in sets}
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower()
                         not in drop]
    kept += [n + b": " + v for n, v in sets]
    return b"\r\n".join(kept) + answer[end:]
