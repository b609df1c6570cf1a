"""forwardAuth (Traefik v3.7 pkg/middlewares/auth/forward.go): every request is first sent to
an authentication server; a 2xx answer lets it go on (with ``authResponseHeaders`` and
``authResponseHeadersRegex`` copied from the answer), any other answer is the client's.

The auth request is what Traefik's ``http.Client`` writes for the request Traefik builds:

- ``GET`` (the client's method with ``preserveRequestMethod``) of the address's path and
  query, ``Host`` = the address's host, no body unless ``forwardBody``;
- the request's headers as Traefik's middlewares see them, i.e. after the entry point's
  forwarded-headers handler (pkg/middlewares/forwardedheaders): an untrusted peer's
  X-Forwarded-* (and underscore variants) removed, X-Real-Ip, X-Forwarded-Proto, -Port, -Host,
  -Server filled in, X-Forwarded-For joined, the headers ``Connection`` names dropped; then
  what the middlewares before this one changed (``ex.set_headers``, ``ex.remove_headers``);
- minus the hop-by-hop headers (oxy's list: Connection, Keep-Alive, Te, Trailers,
  Transfer-Encoding, Upgrade) and those ``Connection`` names;
- ``trustForwardHeader`` true: the X-Forwarded-* above are kept and only the missing ones
  added (X-Forwarded-For gets the peer appended); false: all of them removed and set afresh
  from the connection; unset (Traefik's "legacy" mode, with its start-up warning):
  X-Forwarded-For/-Proto/-Method/-Host/-Uri replaced, the others (X-Forwarded-Prefix,
  X-Forwarded-Port, X-Real-Ip, X-Forwarded-Server) passed as they are;
- ``authRequestHeaders`` filters the client's headers (the X-Forwarded-* are set after the
  filter, and with ``trustForwardHeader: true`` Traefik's own X-headers pass it too);
- as Go writes it: canonical header names, sorted, ``User-Agent: Go-http-client/1.1`` when
  the filtered headers have none (empty when the client sent none and the headers are not
  filtered without it), ``Accept-Encoding: gzip`` when none is there (and a gzip answer is
  decompressed, as Go's transport does), ``Content-Length: 0`` for methods other than GET and
  HEAD without a body.

The answer: a network error or timeout (Traefik's client: 30 s) -> 500; a body over
``maxResponseBodySize`` -> 401; 401 with ``authSigninURL`` -> 302 to it (http.Redirect);
another non-2xx -> its status, headers (hop-by-hop removed; Location resolved against the
address unless ``preserveLocationHeader``) and body; 2xx -> the request goes on, the headers
named by ``authResponseHeaders`` / matching ``authResponseHeadersRegex`` replaced by the auth
server's, and when the answer sets cookies the response phase (``on_response``) rebuilds the
response's Set-Cookie lines as Traefik's modifier does: the backend's cookies whose name is in
``addAuthCookiesToResponse`` dropped, the auth server's cookies of those names added.

Everything fixed by the configuration (URL, pool, TLS context, header name sets, the regex)
is computed once at load; per request the work is the header list of one auth request.
"""
import os
import random
import re
import socket
import ssl
import tempfile
import zlib
from urllib.parse import quote, urlsplit, urljoin

from ..proxy.responses import status_line
from . import cookies as _cookies
from .sniff import detect_content_type

from .._engine.exchange import WAIT

# Traefik's http.Client for forwardAuth: Timeout 30 s, over Go's DefaultTransport (dial 30 s,
# MaxIdleConnsPerHost 2 (DefaultMaxIdleConnsPerHost), IdleConnTimeout 90 s, no response
# header timeout)
CLIENT_TIMEOUT = 30.0
TRANSPORT = (2, 30.0, 0.0, 90.0)
GO_USER_AGENT = b"Go-http-client/1.1"

# oxy forward.* hop-by-hop names forward.go removes (forward.Trailers is "Trailers")
_HOP = frozenset((b"Connection", b"Keep-Alive", b"Te", b"Trailers", b"Transfer-Encoding",
                  b"Upgrade"))
# what Go's Request.write never takes from the header map (it writes its own)
_NOT_WRITTEN = frozenset((b"Host", b"User-Agent", b"Content-Length", b"Transfer-Encoding",
                          b"Trailer"))

XFP, XFF, XFH, XFPORT = b"X-Forwarded-Proto", b"X-Forwarded-For", b"X-Forwarded-Host", \
    b"X-Forwarded-Port"
XFURI, XFMETHOD, XFSERVER, XREALIP = b"X-Forwarded-Uri", b"X-Forwarded-Method", \
    b"X-Forwarded-Server", b"X-Real-Ip"
# forwardedheaders.XHeadersSet
XHEADERS = frozenset((XFP, XFF, XFH, XFPORT, XFSERVER, XFURI, XFMETHOD, b"X-Forwarded-Prefix",
                      b"X-Forwarded-Tls-Client-Cert", b"X-Forwarded-Tls-Client-Cert-Info",
                      XREALIP))

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   b"abcdefghijklmnopqrstuvwxyz")
_canon_cache = {}


def canonical(name):
    """Go's textproto.CanonicalMIMEHeaderKey (bytes): "x-auth-user" -> "X-Auth-User"; a name
    with a byte that is not a token character is left as it is."""
    out = _canon_cache.get(name)
    if out is not None:
        return out
    if any(c not in _TOKEN for c in name):
        out = name
    else:
        b = bytearray(name)
        upper = True
        for i, c in enumerate(b):
            if upper and 97 <= c <= 122:
                b[i] = c - 32
            elif not upper and 65 <= c <= 90:
                b[i] = c + 32
            upper = c == 45
        out = bytes(b)
    if len(_canon_cache) < 8192:
        _canon_cache[name] = out
    return out


def _managed(key):
    """forwardedheaders.isManagedXHeader: one of Traefik's X-headers, '_' read as '-'."""
    if not key or key[0] != 88:         # 'X'
        return False
    if key in XHEADERS:
        return True
    return b"_" in key and canonical(key.replace(b"_", b"-")) in XHEADERS


def _first(h, key):
    v = h.get(key)
    return v[0] if v else b""


def _split_port(host):
    """net.SplitHostPort(host)'s port, b"" when it has none (or is not host:port)."""
    if host.startswith(b"["):
        end = host.find(b"]")
        if end > 0 and host[end + 1:end + 2] == b":":
            return host[end + 2:]
        return b""
    if host.count(b":") == 1:
        return host.split(b":", 1)[1]
    return b""


def _forwarded_port(host, proto, tls):
    port = _split_port(host)
    if port:
        return port
    if proto in (b"https", b"wss") or tls:
        return b"443"
    return b"80"


def _has_token(values, token):
    for v in values or ():
        for part in v.split(b","):
            if part.strip(b" \t").lower() == token:
                return True
    return False


def _html_escape(s):
    return (s.replace(b"&", b"&amp;").replace(b"<", b"&lt;").replace(b">", b"&gt;")
            .replace(b'"', b"&#34;").replace(b"'", b"&#39;"))


def _hex_escape_non_ascii(s):
    return b"".join(b"%%%02X" % c if c >= 0x80 else bytes((c,)) for c in s) \
        if any(c >= 0x80 for c in s) else s


def _plain_answer(status):
    # rw.WriteHeader(status) with nothing written: Go's server sends Content-Length: 0
    return status_line(status) + b"Content-Length: 0\r\n\r\n"


ANSWER_500 = _plain_answer(500)
ANSWER_401 = _plain_answer(401)


def _load_pem(value):
    """Traefik's ClientTLS: a path when such a file exists, else the PEM itself."""
    if os.path.isfile(value):
        with open(value, "rb") as f:
            return f.read().decode("latin-1")
    return value


def client_tls(spec, host):
    """(pool key, SSLContext, server name) for an https address: Traefik's
    ClientTLS.CreateTLSConfig (ca: the roots, the system's without; cert + key: the client
    certificate; insecureSkipVerify), or Go's defaults without ``tls``. ValueError as Traefik
    refuses the middleware ("unable to create client TLS configuration")."""
    spec = spec or {}
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca = spec.get("ca") or ""
    if ca:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(cadata=_load_pem(ca))
        except (ssl.SSLError, ValueError, OSError):
            raise ValueError("tls.ca: unable to create client TLS configuration: failed to "
                             "parse CA") from None
    ctx.set_alpn_protocols(["http/1.1"])
    cert, key = spec.get("cert") or "", spec.get("key") or ""
    if bool(cert) != bool(key):
        raise ValueError("tls: unable to create client TLS configuration: both TLS cert and "
                         "key must be defined")
    if cert:
        cert_pem, key_pem = _load_pem(cert), _load_pem(key)
        # ssl reads client certificates from files only: a private temporary file, removed
        # as soon as it is read
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
            f.write(cert_pem.rstrip() + "\n" + key_pem.rstrip() + "\n")
            f.flush()
            try:
                ctx.load_cert_chain(f.name)
            except (ssl.SSLError, ValueError, OSError) as e:
                raise ValueError("tls.cert: unable to create client TLS configuration: %s"
                                 % (getattr(e, "reason", None) or e)) from None
    if spec.get("insecureSkipVerify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    key = ("forwardAuth", repr(sorted((k, v) for k, v in spec.items() if k != "caOptional")))
    return (key, ctx, host)


def _int_option(spec, field, default):
    value = spec.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("%s: expected an integer" % field)
    return value


def _list_option(spec, field):
    value = spec.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("%s: expected a list of strings" % field)
    return value


class ForwardAuth:
    __slots__ = ("address", "trust", "resp_headers", "request_headers", "regex", "auth_cookies",
                 "header_field", "forward_body", "max_body", "max_response",
                 "preserve_location", "preserve_method", "signin", "broken", "pool", "tls",
                 "host", "port", "host_header", "target", "userinfo", "_hostname",
                 "_prior")
    static = False

    def __init__(self, spec):
        address = spec.get("address")
        if not isinstance(address, str) or not address:
            # the CRD provider refuses it ("forward authentication requires an address")
            raise ValueError("address: forward authentication requires an address")
        self.address = address
        self.trust = spec.get("trustForwardHeader")          # None: Traefik's legacy mode
        if self.trust is not None and not isinstance(self.trust, bool):
            raise ValueError("trustForwardHeader: expected a boolean")
        self.resp_headers = [canonical(h.encode("latin-1"))
                             for h in _list_option(spec, "authResponseHeaders")]
        request_headers = [canonical(h.encode("latin-1"))
                           for h in _list_option(spec, "authRequestHeaders")]
        if self.trust and request_headers:
            request_headers += sorted(XHEADERS)
        self.request_headers = frozenset(request_headers) if request_headers else None
        regex = spec.get("authResponseHeadersRegex") or ""
        self.regex = None
        if regex:
            try:
                self.regex = re.compile(regex.encode("latin-1"))
            except re.error as e:
                raise ValueError("authResponseHeadersRegex: error compiling regular "
                                 "expression %s: %s" % (regex, e)) from None
        self.auth_cookies = frozenset(c.encode("latin-1")
                                      for c in _list_option(spec, "addAuthCookiesToResponse"))
        self.header_field = canonical((spec.get("headerField") or "").encode("latin-1"))
        self.forward_body = bool(spec.get("forwardBody"))
        self.max_body = _int_option(spec, "maxBodySize", -1)
        self.max_response = _int_option(spec, "maxResponseBodySize", -1)
        self.preserve_location = bool(spec.get("preserveLocationHeader"))
        self.preserve_method = bool(spec.get("preserveRequestMethod"))
        self.signin = (spec.get("authSigninURL") or "").encode("latin-1")
        # the address, parsed once. Go fails such a request per request (NewRequest or the
        # client's "unsupported protocol scheme"): every request is answered 500
        self.broken = None
        self.pool = None
        self.tls = None
        try:
            parts = urlsplit(address)
            port = parts.port
        except ValueError as e:
            parts, port = None, None
            self.broken = "address %r: %s" % (address, e)
        if parts is not None and (parts.scheme not in ("http", "https") or not parts.hostname):
            self.broken = "address %r: unsupported protocol scheme or no host" % address
        self.host = None
        if self.broken is None:
            self.host = parts.hostname
            self.port = port or (443 if parts.scheme == "https" else 80)
            netloc = parts.netloc.rpartition("@")[2]
            self.host_header = netloc.encode("idna") if not netloc.isascii() else \
                netloc.encode("latin-1")
            target = parts.path or "/"
            if parts.query or address.endswith("?"):
                target += "?" + parts.query
            # what Go's URL.RequestURI() writes: non-ASCII bytes percent-encoded
            self.target = quote(target, safe="/?&=%:@!$'()*+,;~-._[]").encode("ascii")
            self.userinfo = None
            if parts.username is not None:
                # Go's client: the URL's user info becomes Basic credentials when the
                # request has no Authorization of its own
                import base64
                from urllib.parse import unquote
                cred = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
                self.userinfo = b"Basic " + base64.b64encode(cred.encode("utf-8"))
            if parts.scheme == "https":
                self.tls = client_tls(spec.get("tls"), self.host)
        if spec.get("tls") and self.tls is None:
            client_tls(spec.get("tls"), "")       # Traefik builds (and checks) it anyway
        self._hostname = None
        self._prior = {}

    # ---- load --------------------------------------------------------------------------

    def bind(self, pools):
        """The worker's Pools: the auth server's connection pool (Traefik's own client, not a
        ServersTransport: Go's DefaultTransport settings)."""
        if self.broken is None:
            self.pool = pools.get(self.host, self.port, TRANSPORT, self.tls)

    # ---- the auth request ----------------------------------------------------------------

    def _server_name(self, ex):
        name = getattr(getattr(ex, "route", None), "server_name", None)
        if name:
            return name
        if self._hostname is None:
            self._hostname = socket.gethostname().encode("ascii", "replace")
        return self._hostname

    def request_view(self, ex):
        """The request's header map as Traefik's middlewares see it (canonical name -> values):
        after the entry point's forwarded-headers handler and the middlewares before."""
        req = ex.req
        h = {}
        for n, v in req.headers:
            k = canonical(n)
            if k == b"Host" or k == b"Transfer-Encoding":
                continue            # Go's server keeps them out of req.Header
            lst = h.get(k)
            if lst is None:
                h[k] = [v]
            else:
                lst.append(v)
        if not ex.trusted:
            for k in [k for k in h if _managed(k)]:
                del h[k]
        ip = ex.remote_ip
        if b"%" in ip:
            ip = ip.split(b"%", 1)[0]
        if not _first(h, XREALIP):
            h[XREALIP] = [ip]
        if not _first(h, XFP):
            tls = ex.tls
            if _has_token(h.get(b"Connection"), b"upgrade") and \
                    _has_token(h.get(b"Upgrade"), b"websocket"):
                h[XFP] = [b"wss" if tls else b"ws"]
            else:
                h[XFP] = [b"https" if tls else b"http"]
        host = req.host or b""
        if not _first(h, XFPORT):
            h[XFPORT] = [_forwarded_port(host, _first(h, XFP), ex.tls)]
        if not _first(h, XFH) and host:
            h[XFH] = [host]
        xff = h.get(XFF)
        if xff and len(xff) > 1:
            h[XFF] = [b", ".join(xff)]
        h[XFSERVER] = [self._server_name(ex)]
        conn = h.pop(b"Connection", None)
        if conn:
            for v in conn:
                for tok in v.split(b","):
                    tok = tok.strip(b" \t")
                    if tok:
                        k = canonical(tok)
                        if not _managed(k):
                            h.pop(k, None)
        prior = self._prior_edits(ex)
        if prior is not None:
            # the request edits of the static middlewares before this one in the chain
            # (headers' customRequestHeaders): compiled into the Forwarder for the backend,
            # applied here for the auth server, as Traefik's chain has them on req.Header
            sets, removes, _, _ = prior
            for name in removes:
                h.pop(name, None)
            for k, v in sets:
                h[k] = [v]
        removed = getattr(ex, "remove_headers", None)
        if removed:
            for name in removed:
                h.pop(canonical(name), None)
        extra = ex.set_headers
        if extra:
            seen = set()
            for n, v in extra:
                k = canonical(n)
                if k in seen:
                    h[k].append(v)
                else:
                    seen.add(k)
                    h[k] = [v]
        return h

    def _prior_edits(self, ex):
        """(sets, removes, host, later) for this middleware's place in the route's chain:
        the request edits of the static middlewares before it (canonical names), and the
        lower-case names the static ones after it set or remove (theirs win over what this
        one copies, as Traefik's later handlers overwrite req.Header). None when all are
        empty. Computed once per route."""
        route = getattr(ex, "route", None)
        if route is None:
            return None
        cache = self._prior
        hit = cache.get(route, False)
        if hit is not False:
            return hit
        sets, removes, host, later = [], [], None, set()
        seen_self = False
        for m in getattr(route, "chain", None) or ():
            if m is self:
                seen_self = True
                continue
            if not getattr(m, "static", False):
                continue
            req_set, req_remove = [], []
            m.compile_edits(req_set, req_remove, [], [])
            if seen_self:
                later.update(n.lower() for n in req_remove)
                later.update(n.lower() for n, _ in req_set)
                continue
            removes.extend(canonical(n) for n in req_remove)
            sets.extend((canonical(n), v) for n, v in req_set)
            if getattr(m, "omit_xff", False):
                removes.append(XFF)
            if getattr(m, "host", None) is not None:
                host = m.host
        if not seen_self:
            sets, removes, host, later = [], [], None, set()   # not in this chain
        hit = (sets, removes, host, frozenset(later)) \
            if (sets or removes or host is not None or later) else None
        if len(cache) < 4096:
            cache[route] = hit
        return hit

    def auth_headers(self, ex):
        """The header map of the auth request (before Go's client writes it)."""
        h = self.request_view(ex)
        had_ua = b"User-Agent" in h
        h.pop(b"Upgrade", None)
        for k in _HOP:
            h.pop(k, None)
        trust = self.trust
        if trust is False:
            for k in [k for k in h if _managed(k)]:
                del h[k]
        if trust is not None and not had_ua:
            h[b"User-Agent"] = [b""]
        allowed = self.request_headers
        if allowed is not None:
            h = {k: v for k, v in h.items() if k in allowed}
        req = ex.req
        ip = ex.remote_ip
        host = req.host or b""
        prior = self._prior_edits(ex)
        if prior is not None and prior[2] is not None:
            host = prior[2]                 # a headers middleware's Host sets req.Host
        uri = ex.path + (b"?" + ex.query if ex.query is not None else b"")
        tls = ex.tls
        if trust is None:
            h[XFF] = [ip]
            h[XFP] = [b"https" if tls else b"http"]
            h[XFMETHOD] = [req.method]
            h[XFH] = [host]
            h[XFURI] = [uri]
        else:
            prior = h.get(XFF)
            h[XFF] = [b", ".join(prior) + b", " + ip] if prior is not None else [ip]
            if XFMETHOD not in h:
                h[XFMETHOD] = [req.method]
            if XFP not in h:
                h[XFP] = [b"https" if tls else b"http"]
            if XFPORT not in h:
                h[XFPORT] = [_forwarded_port(host, _first(h, XFP), tls)]
            if XFH not in h:
                h[XFH] = [host]
            if XFURI not in h:
                h[XFURI] = [uri]
        return h

    def auth_head(self, ex, body, traceparent=None):
        """The auth request's head bytes, as Go's client writes them (``traceparent``: the
        AuthRequest span's context, injected as Traefik's tracing.InjectContextIntoCarrier
        does)."""
        h = self.auth_headers(ex)
        if traceparent is not None:
            h.pop(b"Tracestate", None)
            h[b"Traceparent"] = [traceparent]
        method = ex.req.method if self.preserve_method else b"GET"
        out = [method, b" ", self.target, b" HTTP/1.1\r\nHost: ", self.host_header, b"\r\n"]
        ua = h.get(b"User-Agent")
        ua = (ua[0] if ua else b"") if ua is not None else GO_USER_AGENT
        if ua:
            out += (b"User-Agent: ", ua, b"\r\n")
        if body is not None:
            if ex.req.content_length < 0:
                out.append(b"Transfer-Encoding: chunked\r\n")
            else:
                out.append(b"Content-Length: %d\r\n" % len(body))
        elif method != b"GET" and method != b"HEAD":
            out.append(b"Content-Length: 0\r\n")
        if self.userinfo is not None and not _first(h, b"Authorization"):
            h[b"Authorization"] = [self.userinfo]
        for k in sorted(h):
            if k in _NOT_WRITTEN:
                continue
            for v in h[k]:
                out += (k, b": ", v, b"\r\n")
        gzip = (not _first(h, b"Accept-Encoding") and not _first(h, b"Range")
                and method != b"HEAD")
        if gzip:
            out.append(b"Accept-Encoding: gzip\r\n")
        out.append(b"\r\n")
        return b"".join(out), gzip

    @staticmethod
    def chunked(body):
        """Go's chunked writer for a body written in one piece."""
        if not body:
            return b"0\r\n\r\n"
        return b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"

    # ---- the chain -------------------------------------------------------------------------

    def on_request(self, ex):
        if self.broken is not None or self.pool is None:
            return ANSWER_500
        if self.forward_body and not (ex.req.method == b"CONNECT"
                                      and ex.req.content_length < 0):
            # Traefik reads the body first (a CONNECT's unknown-length body is tunnel data)
            ready = ex.conn.read_body(ex, self.max_body, self._with_body)
            if ready is None:
                return WAIT                 # _with_body runs once it is read
            body, too_large = ready
            if too_large is None:
                return ANSWER_500
            if too_large:
                return ANSWER_401
            return self._send(ex, body)
        return self._send(ex, None)

    def _with_body(self, ex, body, too_large):
        """The body was read (``body``: bytes, None when the request has none), went over
        maxBodySize (Traefik answers 401) or could not be read (500)."""
        if too_large is None:
            ex.answer(ANSWER_500)
        elif too_large:
            ex.answer(ANSWER_401)
        else:
            self._send(ex, body)

    def _send(self, ex, body):
        # a traced request: the auth request is its AuthRequest CLIENT span, whose context
        # the auth server gets (flags 00 when not sampled, as Traefik's non-recording span);
        # pyroute.observability.tracing writes a sampled one from what is noted here
        v = ex.vars
        trace = v.get("trace") if v is not None else None
        tp = None
        if trace is not None:
            span_id = random.getrandbits(64) or 1
            tp = b"00-%032x-%016x-%s" % (trace.trace_id, span_id,
                                         b"01" if trace.sampled else b"00")
            started = ex.env.now
            if not trace.sampled:
                trace = None
        head, gzip = self.auth_head(ex, body, tp)
        if body is not None and ex.req.content_length < 0:
            body = self.chunked(body)
        limit = self.max_response

        def done(status, rhead, rbody, error):
            if trace is not None:
                code = 0 if error else (302 if self.signin and status == 401 else status)
                if trace.auth is None:
                    trace.auth = []
                trace.auth.append((span_id, started, ex.env.now, code, self.address))
            self._answered(ex, status, rhead, rbody, error, gzip)
        sub = ex.env.subrequest(self.pool, head, body, limit if limit >= 0 else -1,
                                CLIENT_TIMEOUT, done)
        # the client going away cancels the auth request, as the request context cancels
        # Traefik's (a completion hook: the exchange ends while it waits)
        hooks = ex.completers
        if hooks is None:
            ex.completers = [sub.cancel]
        else:
            hooks.append(sub.cancel)
        return WAIT

    def _answered(self, ex, status, head, body, error, gzip):
        if ex.cancelled:
            return
        if error:
            # Traefik: any client error (refused, reset, timeout, bad answer: the sub-request's
            # 502/504) -> 500; a body over maxResponseBodySize (its 500) -> 401
            ex.answer(ANSWER_401 if error == 500 else ANSWER_500)
            return
        auth = {}
        for n, v in head.headers:
            k = canonical(n)
            lst = auth.get(k)
            if lst is None:
                auth[k] = [v]
            else:
                lst.append(v)
        auth.pop(b"Transfer-Encoding", None)        # Go's client keeps it out of the map
        if gzip and _first(auth, b"Content-Encoding").lower() == b"gzip":
            # Go's transport asked for gzip itself: it decompresses, and drops the headers
            try:
                body = zlib.decompress(body or b"", 47)
            except zlib.error:
                ex.answer(ANSWER_500)
                return
            auth.pop(b"Content-Encoding", None)
            auth.pop(b"Content-Length", None)
        if self.max_response >= 0 and body is not None and len(body) > self.max_response:
            ex.answer(ANSWER_401)
            return
        if self.header_field:
            user = auth.get(self.header_field)
            if user:
                # the access log's ClientUsername (forward.go: the header's first value)
                ex.get_vars()["ClientUsername"] = user[0]
        if self.signin and status == 401:
            ex.answer(self._signin_answer(ex))
            return
        if status < 200 or status >= 300:
            answer = self._error_answer(ex, status, auth, body or b"")
            ex.answer(answer)
            return
        self._allow(ex, auth)
        ex.resume()

    def _allow(self, ex, auth):
        remove = set()
        add = []
        for k in self.resp_headers:
            remove.add(k.lower())
            for v in auth.get(k) or ():
                add.append((k, v))
        regex = self.regex
        if regex is not None:
            for n, _ in ex.req.headers:
                k = canonical(n)
                if regex.search(k):
                    remove.add(k.lower())
            for n, _ in ex.set_headers or ():
                k = canonical(n)
                if regex.search(k):
                    remove.add(k.lower())
            for k, values in auth.items():
                if regex.search(k):
                    remove.add(k.lower())
                    add.extend((k, v) for v in values)
        edits = self._prior_edits(ex)
        if edits is not None and edits[3]:
            # a static middleware after this one sets (or removes) these: it has the last word
            later = edits[3]
            remove = {n for n in remove if n not in later}
            add = [(k, v) for k, v in add if k.lower() not in later]
        if remove:
            prior = getattr(ex, "remove_headers", None)
            ex.remove_headers = list(prior or ()) + sorted(remove)
            if ex.set_headers:
                ex.set_headers = [(n, v) for n, v in ex.set_headers
                                  if n.lower() not in remove]
        if add:
            ex.set_headers = list(ex.set_headers or ()) + add
        cookies = auth.get(b"Set-Cookie")
        if cookies:
            parsed = _cookies.read_set_cookies(cookies)
            if parsed:
                ex.get_vars()[self] = parsed

    def _error_answer(self, ex, status, auth, body):
        for k in _HOP:
            auth.pop(k, None)
        loc = auth.get(b"Location")
        if loc:
            try:
                new = self._location(loc[0])
            except ValueError:
                return ANSWER_500
            if new:
                auth[b"Location"] = [new]
        no_body = status in (204, 304) or 100 <= status < 200
        if no_body:
            body = b""
        elif body and b"Content-Type" not in auth:
            auth[b"Content-Type"] = [detect_content_type(body)]
        if b"Content-Length" not in auth and not no_body:
            auth[b"Content-Length"] = [b"%d" % len(body)]
        if status == 204:
            auth.pop(b"Content-Length", None)
        lines = [status_line(status)]
        for k in sorted(auth):
            for v in auth[k]:
                lines += (k, b": ", v, b"\r\n")
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    def _location(self, value):
        """Response.Location (resolved against the auth request's URL), or url.Parse of the
        value as it is with preserveLocationHeader; ValueError where Go's parse fails."""
        text = value.decode("latin-1")
        urlsplit(text)                      # Go's url.Parse errors: 500
        if not self.preserve_location:
            text = urljoin(self.address, text)
        return _url_string(text)

    def _signin_answer(self, ex):
        # http.Redirect(rw, req, authSigninURL, 302) (an absolute URL; a relative one is
        # resolved against the request's path as Go does)
        url = self.signin
        if not _absolute(url.decode("latin-1")) and not url.startswith(b"//"):
            import posixpath
            old = ex.path or b"/"
            if not url.startswith(b"/"):
                url = old.rsplit(b"/", 1)[0] + b"/" + url
            url, q, query = url.partition(b"?")
            trailing = url.endswith(b"/")
            url = posixpath.normpath(url.decode("latin-1")).encode("latin-1")
            if url.startswith(b"//"):
                url = url[1:]
            if trailing and not url.endswith(b"/"):
                url += b"/"
            url += q + query
        head = status_line(302) + b"Location: " + _hex_escape_non_ascii(url) + b"\r\n"
        method = ex.req.method
        if method == b"GET" or method == b"HEAD":
            body = b'<a href="' + _html_escape(url) + b'">Found</a>.\n\n' \
                if method == b"GET" else b""
            return (head + b"Content-Type: text/html; charset=utf-8\r\n"
                    + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return head + b"Content-Length: 0\r\n\r\n"

    def on_response(self, ex, head):
        vars_ = ex.vars
        auth = vars_.get(self) if vars_ is not None else None
        if auth is None:
            return
        backend = _cookies.read_set_cookies(head.get_all(b"set-cookie"))
        head.remove(b"set-cookie")
        keep = self.auth_cookies
        for c in backend:
            if c.name not in keep:
                line = c.string()
                if line:
                    head.add(b"Set-Cookie", line)
        for c in auth:
            if c.name in keep:
                line = c.string()
                if line:
                    head.add(b"Set-Cookie", line)


def _absolute(text):
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text))


def _url_string(text):
    """What Go's URL.String() gives back for a URL it parsed: the same text here, with the
    bytes Go escapes (space, non-ASCII) percent-encoded."""
    raw = text.encode("latin-1", "replace")
    if any(c == 0x20 or c >= 0x80 for c in raw):
        raw = b"".join(b"%%%02X" % c if (c == 0x20 or c >= 0x80) else bytes((c,)) for c in raw)
    return raw


def warnings(spec):
    """What Traefik logs when it builds the middleware (accepted, but worth a look)."""
    out = []
    if not isinstance(spec, dict):
        return out
    if spec.get("trustForwardHeader") is None:
        out.append(("trustForwardHeader", "trustForwardHeader is not configured: this creates "
                    "an inconsistent security behavior where some X-Forwarded headers (e.g. "
                    "X-Forwarded-For, X-Forwarded-Proto) are removed but others (e.g. "
                    "X-Forwarded-Prefix) are forwarded untouched. Please set it to false to "
                    "remove all X-Forwarded headers, or true to trust them all."))
    if spec.get("maxResponseBodySize") is None:
        out.append(("maxResponseBodySize", "maxResponseBodySize is not configured, allowing "
                    "unlimited response body size which can lead to DoS attacks and memory "
                    "exhaustion. Please set an appropriate limit."))
    if spec.get("forwardBody") and spec.get("maxBodySize") is None:
        out.append(("maxBodySize", "maxBodySize is not configured with 'forwardBody: true', "
                    "allowing unlimited request body size which can lead to DoS attacks and "
                    "memory exhaustion. Please set an appropriate limit."))
    if (spec.get("tls") or {}).get("caOptional") is not None:
        out.append(("tls.caOptional", "tls.CAOptional option is deprecated, TLS client "
                    "authentication is a server side option, please remove any usage of this "
                    "option."))
    try:
        parts = urlsplit(spec.get("address") or "")
        ok = parts.scheme in ("http", "https") and parts.hostname
    except ValueError:
        ok = False
    if spec.get("address") and not ok:
        out.append(("address", "%r is not an http(s) URL with a host: Traefik answers every "
                    "request through this middleware with 500, and so does pyroute"
                    % spec.get("address")))
    return out
