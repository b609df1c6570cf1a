"""headers: every option of Traefik v3.7's Headers middleware (pkg/middlewares/headers).

Traefik builds ``Header (custom + CORS) -> secure (unrolled/secure v1.0.9) -> next``; pyroute
does the same in one object, and compiles at load whatever does not depend on the request:

- request: customRequestHeaders (a value sets, "" removes, ``Host`` sets the request's Host,
  ``X-Forwarded-For: ""`` in that exact spelling suppresses the header as Go's ReverseProxy
  then adds none) — compiled into the route's Forwarder;
- CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method`` and ``Origin``, CORS options
  set): answered here, 200 with the Access-Control-* headers and ``Content-Length: 0``,
  nothing forwarded; this middleware's own response edits do not apply to it (Traefik writes
  it to the outer ResponseWriter), the outer middlewares' do;
- allowedHosts (+ hostsProxyHeaders) unless isDevelopment: a host not in the list (compared
  without case, port included, as ``r.Host``) is answered ``500 Bad Host`` (Go's http.Error),
  nothing forwarded; the answer gets this middleware's custom/CORS response edits (Traefik
  writes it through the Header part's ResponseModifier), not its security headers;
- response, innermost first as Traefik's nested ResponseModifiers: the security headers
  (set, replacing the backend's), then customResponseHeaders (set / "" deletes), then the CORS
  response headers (Access-Control-Allow-Origin for a matching Origin, -Allow-Credentials,
  -Expose-Headers, ``Vary: Origin`` appended). Fixed ones are compiled; per request only
  Strict-Transport-Security / Public-Key-Pins (they need HTTPS: the connection's TLS, or an
  sslProxyHeaders match), a ``$NONCE`` CSP, Access-Control-Allow-Origin and Vary;
- the request headers the middleware reads (Origin, hostsProxyHeaders, sslProxyHeaders) are
  those Traefik's middleware sees: after the entry point's forwarded-headers step (an
  untrusted peer's X-Forwarded-* are gone and replaced by Traefik's own values, headers named
  by Connection are gone) and after this middleware's own customRequestHeaders;
- ``headers: {}`` (or only empty / zero values) is refused: "headers configuration not
  valid"; ``sslRedirect``, ``sslTemporaryRedirect``, ``sslHost``, ``sslForceHost``,
  ``featurePolicy`` are deprecated options Traefik v3 accepts and ignores (a warning).
"""
import base64
import os

import re2

from .._engine.http1 import METHOD_OPTIONS
from .._engine.responses import status_line

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
# every option pyroute runs as Traefik does (pyroute.compat reads this)
SUPPORTED = CUSTOM + CORS + SECURE

_BOOLS = ("accessControlAllowCredentials", "addVaryHeader", "stsIncludeSubdomains",
          "stsPreload", "forceSTSHeader", "frameDeny", "contentTypeNosniff",
          "browserXssFilter", "isDevelopment")
_LISTS = ("accessControlAllowHeaders", "accessControlAllowMethods",
          "accessControlAllowOriginList", "accessControlAllowOriginListRegex",
          "accessControlExposeHeaders", "allowedHosts", "hostsProxyHeaders")
_STRINGS = ("customFrameOptionsValue", "customBrowserXSSValue", "contentSecurityPolicy",
            "contentSecurityPolicyReportOnly", "publicKey", "referrerPolicy",
            "permissionsPolicy")
_INTS = ("stsSeconds", "accessControlMaxAge")

# Traefik's forwardedheaders.XHeadersSet: deleted for an untrusted peer before routing
_MANAGED_X = frozenset((
    b"x-forwarded-proto", b"x-forwarded-scheme", b"x-forwarded-for", b"x-forwarded-host",
    b"x-forwarded-port", b"x-forwarded-server", b"x-forwarded-uri", b"x-forwarded-method",
    b"x-forwarded-prefix", b"x-forwarded-tls-client-cert",
    b"x-forwarded-tls-client-cert-info", b"x-scheme", b"x-real-ip"))

ACAO = b"Access-Control-Allow-Origin"
VARY = b"Vary"
STS = b"Strict-Transport-Security"
HPKP = b"Public-Key-Pins"
CSP = b"Content-Security-Policy"
CSPRO = b"Content-Security-Policy-Report-Only"


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


def _typed(spec):
    for key in _BOOLS:
        if spec.get(key) is not None and not isinstance(spec[key], bool):
            raise ValueError("%s: expected a boolean" % key)
    for key in _LISTS:
        v = spec.get(key)
        if v is not None and (not isinstance(v, list)
                              or not all(isinstance(x, str) for x in v)):
            raise ValueError("%s: expected a list of strings" % key)
    for key in _STRINGS:
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ValueError("%s: expected a string" % key)
    for key in _INTS:
        v = spec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError("%s: expected an integer" % key)
    m = spec.get("sslProxyHeaders")
    if m is not None and (not isinstance(m, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in m.items())):
        raise ValueError("sslProxyHeaders: expected a mapping of header names to strings")


def validate(spec):
    """Traefik's own refusal (the middleware is not built), as a ValueError."""
    if not isinstance(spec, dict):
        raise ValueError("headers: expected a mapping")
    for key in CUSTOM:
        m = spec.get(key)
        if m is not None and not isinstance(m, dict):
            raise ValueError("%s: expected a mapping of header names to strings" % key)
    _typed(spec)
    secure = any(_set(spec, k) for k in SECURE) or any(
        _set(spec, k) for k in ("sslRedirect", "sslTemporaryRedirect", "sslForceHost",
                                "sslHost", "featurePolicy"))
    custom = any(spec.get(k) for k in CUSTOM)
    cors = any(_set(spec, k) for k in CORS)
    if not (secure or custom or cors):
        raise ValueError("headers configuration not valid")
    # NewHeader: regexp.Compile of each accessControlAllowOriginListRegex
    for i, rx in enumerate(spec.get("accessControlAllowOriginListRegex") or ()):
        _compile_origin_regex(i, rx)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.never_capture = True    # only "does it match" is asked


def _compile_origin_regex(i, pattern):
    # Go's regexp is RE2: the same syntax and semantics (MatchString: unanchored search)
    try:
        return re2.compile(pattern.encode("utf-8", "surrogateescape"), _RE2_OPTIONS)
    except re2.error as e:
        msg = e.args[0] if e.args else ""
        msg = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
        raise ValueError("accessControlAllowOriginListRegex[%d]: error occurred during origin "
                         "parsing: %s" % (i, msg)) from None


def _canonical(name):
    """Go's http.CanonicalHeaderKey (the names Traefik's responses carry)."""
    b = name.encode("latin-1") if isinstance(name, str) else name
    if not b or any(c in b" \t\r\n:" for c in b):
        return b
    out, upper = bytearray(), True
    for c in b:
        if upper and 97 <= c <= 122:
            c -= 32
        elif not upper and 65 <= c <= 90:
            c += 32
        out.append(c)
        upper = c == 45
    return bytes(out)


def _latin(value, what):
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("%s: the value must be Latin-1 text" % what) from None


class _Answer:
    """A response pyroute answers itself, as a head the response edits work on (the subset
    of ResponseHead's methods the edits use)."""
    __slots__ = ("lines",)

    def __init__(self, lines):
        self.lines = lines

    def get(self, name):
        n = name.lower()
        for k, v in self.lines:
            if k.lower() == n:
                return v
        return None

    def set(self, name, value):
        self.remove(name)
        self.lines.append((name, value))

    def remove(self, name):
        n = name.lower()
        self.lines = [(k, v) for k, v in self.lines if k.lower() != n]


class Headers:
    """The headers middleware. ``static``: the fixed header edits (``compile_edits``); the
    instance gets ``on_request`` / ``on_response`` only when its options need them (its
    class is one of the variants below), so a headers middleware with only fixed options
    costs nothing per request."""
    __slots__ = ("request", "response", "host", "omit_xff", "req_view",
                 "cors", "credentials", "allow_headers", "allow_headers_echo",
                 "allow_methods", "allow_methods_echo", "origins",
                 "origin_regexes", "max_age", "expose", "vary", "vary_static",
                 "acao_custom", "acao_dynamic", "header_static",
                 "allowed_hosts", "hosts_proxy", "ssl_proxy",
                 "sts", "hpkp", "csp_nonce", "secure_dynamic", "views")

    static = True

    def __init__(self, spec):
        validate(spec)
        g = spec.get
        # -- customRequestHeaders (compiled into the Forwarder) ------------------------------
        self.host = None
        self.omit_xff = False
        self.request = []
        # what the middleware itself then reads from the request (Origin, the proxy headers):
        # lower-case name -> value, None for a removed header
        self.req_view = {}
        for name, value in (g("customRequestHeaders") or {}).items():
            value = self._value(name, value)
            lname = name.encode("latin-1").lower()
            if value is None and name == "X-Forwarded-For":
                self.omit_xff = True        # req.Header[XForwardedFor] = nil
                self.req_view[lname] = None
            elif value is not None and name.lower() == "host":
                self.host = value           # req.Host = value
                self.req_view[b":host"] = value
            else:
                # req.Header.Set / Del: Go sends the canonical name upstream
                self.request.append((_canonical(name), value))
                self.req_view[lname] = value

        # -- CORS (Header.processCorsHeaders / PostRequestModifyResponseHeaders) -------------
        self.cors = any(_set(spec, k) for k in CORS)
        self.credentials = bool(g("accessControlAllowCredentials"))
        allow_headers = g("accessControlAllowHeaders") or []
        self.allow_headers_echo = "*" in allow_headers and self.credentials
        self.allow_headers = _latin(",".join(allow_headers), "accessControlAllowHeaders")
        allow_methods = g("accessControlAllowMethods") or []
        self.allow_methods_echo = "*" in allow_methods and self.credentials
        self.allow_methods = _latin(",".join(allow_methods), "accessControlAllowMethods")
        self.origins = [_latin(o, "accessControlAllowOriginList")
                        for o in g("accessControlAllowOriginList") or ()]
        self.origin_regexes = [_compile_origin_regex(i, rx) for i, rx in
                               enumerate(g("accessControlAllowOriginListRegex") or ())]
        self.max_age = (b"%d" % g("accessControlMaxAge")
                        if g("accessControlMaxAge") is not None else None)
        expose = g("accessControlExposeHeaders") or []
        self.expose = None
        if expose and not ("*" in expose and self.credentials):
            self.expose = _latin(",".join(expose), "accessControlExposeHeaders")
        self.vary = bool(g("addVaryHeader"))

        custom_resp = []
        for name, value in (g("customResponseHeaders") or {}).items():
            custom_resp.append((_canonical(name), self._value(name, value)))
        custom_names = {n.lower(): v for n, v in custom_resp}

        # -- security headers (secure.processRequest), fixed ones first ----------------------
        dev = bool(g("isDevelopment"))
        secure_static = []
        if g("customFrameOptionsValue"):
            secure_static.append((b"X-Frame-Options", _latin(g("customFrameOptionsValue"),
                                                             "customFrameOptionsValue")))
        elif g("frameDeny"):
            secure_static.append((b"X-Frame-Options", b"DENY"))
        if g("contentTypeNosniff"):
            secure_static.append((b"X-Content-Type-Options", b"nosniff"))
        if g("customBrowserXSSValue"):
            secure_static.append((b"X-XSS-Protection", _latin(g("customBrowserXSSValue"),
                                                              "customBrowserXSSValue")))
        elif g("browserXssFilter"):
            secure_static.append((b"X-XSS-Protection", b"1; mode=block"))
        # secure.New: "$NONCE" -> a fresh nonce per request ('nonce-<22 base64 chars>')
        csp = (g("contentSecurityPolicy") or "").replace("$NONCE", "'nonce-%[1]s'")
        cspro = (g("contentSecurityPolicyReportOnly") or "").replace("$NONCE", "'nonce-%[1]s'")
        nonce = "%[1]s" in csp or "%[1]s" in cspro
        self.csp_nonce = []
        for hname, value, field in ((CSP, csp, "contentSecurityPolicy"),
                                    (CSPRO, cspro, "contentSecurityPolicyReportOnly")):
            if not value:
                continue
            if nonce:
                if hname.lower() not in custom_names:
                    # fmt.Sprintf(value, nonce): "%[1]s" is the nonce, "%%" a percent sign
                    self.csp_nonce.append((hname, [p.replace(b"%%", b"%") for p in
                                                   _latin(value, field).split(b"%[1]s")]))
            else:
                secure_static.append((hname, _latin(value, field)))
        if g("referrerPolicy"):
            secure_static.append((b"Referrer-Policy", _latin(g("referrerPolicy"),
                                                             "referrerPolicy")))
        if g("permissionsPolicy"):
            secure_static.append((b"Permissions-Policy", _latin(g("permissionsPolicy"),
                                                                "permissionsPolicy")))
        # Strict-Transport-Security: STSSeconds != 0, over HTTPS or forced, not in development
        self.sts = None
        sts_seconds = g("stsSeconds") or 0
        if sts_seconds != 0 and not dev and STS.lower() not in custom_names:
            value = b"max-age=%d" % sts_seconds
            if g("stsIncludeSubdomains"):
                value += b"; includeSubDomains"
            if g("stsPreload"):
                value += b"; preload"
            if g("forceSTSHeader"):
                secure_static.append((STS, value))
            else:
                self.sts = value
        # v1.0.9: Public-Key-Pins only over HTTPS, not in development
        self.hpkp = None
        if g("publicKey") and not dev and HPKP.lower() not in custom_names:
            self.hpkp = _latin(g("publicKey"), "publicKey")

        self.allowed_hosts = None
        if g("allowedHosts") and not dev:
            self.allowed_hosts = frozenset(_latin(h, "allowedHosts").lower()
                                           for h in g("allowedHosts"))
        self.hosts_proxy = [_latin(h, "hostsProxyHeaders").lower()
                            for h in g("hostsProxyHeaders") or ()]
        self.ssl_proxy = [(_latin(k, "sslProxyHeaders").lower(), _latin(v, "sslProxyHeaders"))
                          for k, v in (g("sslProxyHeaders") or {}).items()]
        self.secure_dynamic = bool(self.sts or self.hpkp or self.csp_nonce)
        self.views = {}             # route -> (before, at): see _views

        # -- the fixed response edits, in Traefik's order: secure, custom, CORS ---------------
        final = {}
        for name, value in secure_static:
            final[name.lower()] = (name, value)
        for name, value in custom_resp:
            final[name.lower()] = (name, value)
        if self.credentials:
            final[b"access-control-allow-credentials"] = (
                b"Access-Control-Allow-Credentials", b"true")
        if self.expose is not None:
            final[b"access-control-expose-headers"] = (b"Access-Control-Expose-Headers",
                                                       self.expose)
        # Access-Control-Allow-Origin: per request once an origin list / regex can match
        self.acao_dynamic = bool(self.origins or self.origin_regexes)
        self.acao_custom = final.pop(ACAO.lower(), None) if self.acao_dynamic else None
        # Vary: custom's value (fixed) or the backend's (per request), then ",Origin"
        self.vary_static = False
        if self.vary and VARY.lower() in final:
            v = final[VARY.lower()][1] or b""
            final[VARY.lower()] = (VARY, v if v == b"Origin" else
                                   (v + b"," if v else b"") + b"Origin")
            self.vary_static = True
        self.response = list(final.values())
        # the Header part's edits, for the Bad Host answer (written through its modifier)
        self.header_static = [(n, v) for n, v in final.values()
                              if n.lower() in custom_names or n.lower() in (
                                  b"access-control-allow-credentials",
                                  b"access-control-expose-headers", VARY.lower())]

        want_request = self.cors or self.allowed_hosts is not None
        want_response = (self.secure_dynamic or self.acao_dynamic
                         or (self.vary and not self.vary_static))
        self.__class__ = _VARIANTS[want_request, want_response]

    @staticmethod
    def _value(name, value):
        if not isinstance(name, str) or not name:
            raise ValueError("header %r: expected a header name" % (name,))
        if not isinstance(value, str):
            raise ValueError("header %s: expected a string value" % name)
        return _latin(value, "header %s" % name) if value != "" else None

    # Static edits: compiled into the route's http1.Forwarder at config load
    # (``compile_edits``), so nothing runs per request for them.
    def compile_edits(self, req_set, req_remove, resp_set, resp_remove):
        for name, value in self.request:
            (req_remove.append(name) if value is None else req_set.append((name, value)))
        for name, value in self.response:
            (resp_remove.append(name) if value is None else resp_set.append((name, value)))

    # -- the request as Traefik's middleware sees it -----------------------------------------

    def _views(self, ex):
        """(before, at) for the exchange's route: the request header edits of the
        middlewares before this one in the chain (their customRequestHeaders; lower-case
        name -> value or None, ``:host`` for Host), without and with this middleware's own.
        Worked out once per route (the middleware object is built per config load)."""
        route = ex.route
        views = self.views.get(route)
        if views is None:
            before = {}
            for m in getattr(route, "chain", None) or ():
                if m is self:
                    break
                edits = getattr(m, "req_view", None)
                if edits:
                    before.update(edits)
            at = dict(before)
            at.update(self.req_view)
            views = self.views[route] = (before, at)
        return views

    def _header(self, ex, lname, own=True):
        """``req.Header.Get(name)`` in Traefik at this middleware (``own``: after its own
        customRequestHeaders): bytes or None."""
        sets = ex.set_headers
        if sets:
            for name, value in reversed(sets):
                if name.lower() == lname:
                    return value
        removed = ex.remove_headers
        if removed and lname in removed:
            return None
        view = self._views(ex)[1 if own else 0]
        if lname in view:
            return view[lname]
        return forwarded_view(ex, lname)

    def _host(self, ex):
        # r.Host, or the first non-empty hostsProxyHeaders value
        for lname in self.hosts_proxy:
            v = self._header(ex, lname)
            if v:
                return v
        v = self._views(ex)[1].get(b":host")
        return v if v is not None else ex.req.host

    def _ssl(self, ex):
        # secure.isSSL: r.TLS != nil, or an sslProxyHeaders header equal to its value
        if ex.tls:
            return True
        for lname, value in self.ssl_proxy:
            if (self._header(ex, lname) or b"") == value:
                return True
        return False

    def _match_origin(self, origin):
        # Header.matchOrigin: the list first ("*": "*", or the origin with credentials), then
        # the regexps (unanchored, as Go's MatchString)
        for item in self.origins:
            if item == origin:
                return item
            if item == b"*":
                return origin if self.credentials else item
        for rx in self.origin_regexes:
            if rx.search(origin) is not None:
                return origin
        return None

    def _preflight(self, ex, method, origin):
        out = [status_line(200)]
        if self.credentials:
            out.append(b"Access-Control-Allow-Credentials: true\r\n")
        if self.allow_headers_echo:
            acrh = self._header(ex, b"access-control-request-headers", False)
            if acrh:
                out.append(b"Access-Control-Allow-Headers: " + acrh + b"\r\n")
        elif self.allow_headers:
            out.append(b"Access-Control-Allow-Headers: " + self.allow_headers + b"\r\n")
        if self.allow_methods_echo:
            out.append(b"Access-Control-Allow-Methods: " + method + b"\r\n")
        elif self.allow_methods:
            out.append(b"Access-Control-Allow-Methods: " + self.allow_methods + b"\r\n")
        match = self._match_origin(origin)
        if match is not None:
            out.append(b"Access-Control-Allow-Origin: " + match + b"\r\n")
        if self.max_age is not None:
            out.append(b"Access-Control-Max-Age: " + self.max_age + b"\r\n")
        if self.expose is not None:
            out.append(b"Access-Control-Expose-Headers: " + self.expose + b"\r\n")
        out.append(b"Content-Length: 0\r\n\r\n")
        return b"".join(out)

    def _bad_host(self, ex):
        # secure's defaultBadHostHandler: http.Error(w, "Bad Host", 500), written through the
        # Header part's ResponseModifier (custom response headers, CORS response headers)
        head = _Answer([(b"Content-Type", b"text/plain; charset=utf-8"),
                        (b"X-Content-Type-Options", b"nosniff")])
        for name, value in self.header_static:
            (head.remove(name) if value is None else head.set(name, value))
        self._cors_response(ex, head)
        body = b"Bad Host\n"
        return (status_line(500) + b"".join(n + b": " + v + b"\r\n" for n, v in head.lines)
                + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def _cors_response(self, ex, head):
        if self.acao_dynamic:
            if self.acao_custom is not None:
                name, value = self.acao_custom
                (head.remove(name) if value is None else head.set(name, value))
            match = self._match_origin(self._header(ex, b"origin") or b"")
            if match is not None:
                head.set(ACAO, match)
        if self.vary and not self.vary_static:
            v = head.get(VARY)
            if v != b"Origin":
                head.set(VARY, (v + b"," if v else b"") + b"Origin")

    def _secure_response(self, ex, head):
        if self.sts is not None or self.hpkp is not None:
            if self._ssl(ex):
                if self.sts is not None:
                    head.set(STS, self.sts)
                if self.hpkp is not None:
                    head.set(HPKP, self.hpkp)
        if self.csp_nonce:
            nonce = base64.b64encode(os.urandom(16)).rstrip(b"=")   # RawStdEncoding
            for name, parts in self.csp_nonce:
                head.set(name, nonce.join(parts))


def _on_request(self, ex):
    req = ex.req
    # processCorsHeaders runs before the custom request headers are applied
    if self.cors and req.method_id == METHOD_OPTIONS:
        method = self._header(ex, b"access-control-request-method", False)
        origin = self._header(ex, b"origin", False)
        if method and origin:
            return self._preflight(ex, method, origin)
    if self.allowed_hosts is not None:
        if self._host(ex).lower() not in self.allowed_hosts:
            return self._bad_host(ex)
    return None


def _on_response(self, ex, head):
    if head.status < 200:
        return              # 1xx / 101: Traefik's ResponseModifier does not edit them
    if self.secure_dynamic:
        self._secure_response(ex, head)
    self._cors_response(ex, head)


class _HeadersRequest(Headers):
    __slots__ = ()
    on_request = _on_request


class _HeadersResponse(Headers):
    __slots__ = ()
    on_response = _on_response


class _HeadersBoth(Headers):
    __slots__ = ()
    on_request = _on_request
    on_response = _on_response


_VARIANTS = {(False, False): Headers, (True, False): _HeadersRequest,
             (False, True): _HeadersResponse, (True, True): _HeadersBoth}


def forwarded_view(ex, lname):
    """A request header's first value as Traefik's middlewares see it, after the entry
    point's forwarded-headers step (forwardedheaders.XForwarded): for a peer outside
    ``forwardedHeaders.trustedIPs`` the X-Forwarded-* family (and X_Forwarded_* spellings)
    is deleted, then X-Forwarded-Proto/-Port/-Host, X-Real-Ip and X-Forwarded-Server are
    filled in where empty; X-Forwarded-For is the values joined with ", "; headers named by
    the Connection header are gone (except the X-Forwarded-* family)."""
    req = ex.req
    key = lname.replace(b"_", b"-")
    managed = key in _MANAGED_X
    if managed and not ex.trusted:
        v = None
    elif key == b"x-forwarded-for" and lname == key:
        values = [val for n, val in req.headers if n.lower() == lname]
        v = b", ".join(values) if values else None
    else:
        v = req.header(lname)
        if v is not None and not managed and req.connection_options and \
                lname in {t.lower() for t in req.connection_options}:
            v = None
    if v or not managed or lname != key:
        return v
    # rewrite(): Traefik's own values where the header is empty
    if lname == b"x-forwarded-proto":
        ws = req.upgrade is not None and b"websocket" in req.upgrade.lower()
        return (b"wss" if ex.tls else b"ws") if ws else (b"https" if ex.tls else b"http")
    if lname == b"x-forwarded-host":
        return req.host or None
    if lname == b"x-real-ip":
        return ex.remote_ip or None
    if lname == b"x-forwarded-port":
        host = req.host
        i = host.rfind(b":")
        if i >= 0 and host[i + 1:].isdigit() and b"]" not in host[i:]:
            return host[i + 1:]
        proto = forwarded_view(ex, b"x-forwarded-proto")
        return b"443" if ex.tls or proto in (b"https", b"wss") else b"80"
    if lname == b"x-forwarded-server":
        route = getattr(ex, "route", None)
        return getattr(route, "server_name", None) or None
    return v


# a response pyroute answers itself with fixed response edits: the engine's (one copy)
from .._engine.exchange import apply_edits as edit_answer  # noqa: E402,F401
