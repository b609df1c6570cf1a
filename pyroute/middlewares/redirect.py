"""redirectScheme and redirectRegex (Traefik pkg/middlewares/redirect/redirect_scheme.go,
redirect_regex.go, redirect.go).

The request's URL is rebuilt as Traefik's ``clientRequestURL`` does (scheme from the
connection, or from X-Forwarded-Proto as the entry point's forwarded-headers handler left it;
host and port from Host; the request URI as the middlewares before left it), rewritten with
Traefik's ``uriPattern`` into ``scheme://host[:port]uri``, and the client is redirected when
the two differ — so a port change redirects too, and a request that already arrived on the
wanted scheme and port (directly or behind a TLS-terminating proxy that is trusted) passes.

redirectRegex starts from Traefik's ``rawURL`` instead (no X-Forwarded-Proto, Host with its
port) and rewrites it with the user's regexp (Go's ReplaceAllString). Both parse the new URL
as Go's url.Parse (an error: 502) and send its String() as Location (``_moved``).
"""
import re

from ..proxy.responses import REASONS, status_line
from . import gourl
from .goregexp import Regexp

# Traefik: uriPattern (the rewrite) and uriRegexp (absolute-form request URIs)
_URI_PATTERN = re.compile(rb"^(https?://)?(\[[\w:.]+\]|[\w._-]+)?(:\d+)?(.*)$", re.ASCII)
_URI_REGEXP = re.compile(rb"^(https?)://(\[[\w:.]+\]|[\w._-]+)?(:\d+)?(.*)$", re.ASCII)


def _split_host_port(host):
    """net.SplitHostPort(req.Host): (host, ":port") or (host, "") when it has no port."""
    if host.startswith(b"["):
        end = host.find(b"]")
        if end > 0 and host[end + 1:end + 2] == b":" and b"]" not in host[end + 1:] \
                and host.count(b":", end + 1) == 1:
            return host[1:end], b":" + host[end + 2:]
        return host, b""
    if host.count(b":") == 1:
        h, p = host.split(b":", 1)
        return h, b":" + p
    return host, b""


def _forwarded_proto(conn):
    """X-Forwarded-Proto as Traefik's middlewares see it: the client's first value from a
    trusted peer, else what the forwarded-headers handler set (http/https, ws/wss)."""
    if conn.trusted:
        v = conn.req.header(b"x-forwarded-proto")
        if v:
            return v.strip(b" \t")
    tls = conn.ep.tls
    if conn.req.upgrade is not None and b"websocket" in conn.req.upgrade.lower():
        return b"wss" if tls else b"ws"
    return b"https" if tls else b"http"


class RedirectScheme:
    __slots__ = ("scheme", "port", "permanent", "force_permanent")
    static = False

    def __init__(self, spec):
        scheme = spec.get("scheme")
        if scheme is None or scheme == "":
            raise ValueError("scheme: you must provide a target scheme")
        if not isinstance(scheme, str):
            raise ValueError("scheme: expected a string")
        port = spec.get("port")
        port = "" if port is None else str(port)
        self.scheme = scheme.encode("latin-1")
        # Traefik: no ":port" for http:80 / https:443
        if port and not ((scheme == "http" and port == "80") or
                         (scheme == "https" and port == "443")):
            self.port = b":" + port.encode("latin-1")
        else:
            self.port = b""
        self.permanent = bool(spec.get("permanent", False))
        self.force_permanent = bool(spec.get("forcePermanentRedirect", False))

    def request_url(self, conn):
        """Traefik's clientRequestURL."""
        req = conn.req
        host, port = _split_host_port(req.host or b"")
        scheme, host, port, uri = _request_uri(conn, host, port)
        proto = _forwarded_proto(conn).lower()
        if proto in (b"http", b"ws"):
            scheme = b"http"
        elif proto in (b"https", b"wss"):
            scheme = b"https"
        if (scheme == b"http" and port == b":80") or (scheme == b"https" and port == b":443"):
            port = b""
        return scheme + b"://" + host + port + uri

    def on_request(self, conn):
        old = self.request_url(conn)
        m = _URI_PATTERN.match(old)
        if m is None:
            return None
        new = self.scheme + b"://" + (m.group(2) or b"") + self.port + (m.group(4) or b"")
        if new == old:
            return None
        # redirect.go: url.Parse (an error: 502), Location is its String()
        try:
            url = gourl.parse(new)
        except gourl.URLError:
            return _BAD_GATEWAY
        return _moved(conn.req.method, url.string(), self.permanent,
                      308 if self.force_permanent else None)


def _request_uri(conn, host, port):
    """(scheme, host, port, uri) of the request as Traefik's redirect URL builders start:
    http; Go keeps an absolute-form target in RequestURI, whose scheme, host, port and rest
    win; https on a TLS connection. ``uri``: else the path and query as the entry point and
    the middlewares before left them."""
    req = conn.req
    path, query = conn.path, conn.query
    uri = path + (b"?" + query if query is not None else b"")
    scheme = b"http"
    # RequestURI stays the absolute-form target until something rewrites the path or query
    # (the entry point's path normalisation, a middleware: they set the origin form)
    if req.absolute_form and path == req.path and query == req.query:
        m = _URI_REGEXP.match(req.target)
        if m is not None:
            scheme = m.group(1)
            if m.group(2):
                host = m.group(2)
            if m.group(3):
                port = m.group(3)
            uri = m.group(4)
    if conn.ep.tls:
        scheme = b"https"
    return scheme, host, port, uri


def _moved(method, location, permanent, status=None):
    """Traefik's moveHandler: Location, 302/307 (301/308 permanent) by method, the status
    text as body (Go sniffs text/plain)."""
    if status is None:
        if permanent:
            status = 301 if method == b"GET" else 308
        else:
            status = 302 if method == b"GET" else 307
    body = REASONS[status].encode()
    return (status_line(status) + b"Location: " + location + b"\r\n"
            + b"Content-Type: text/plain; charset=utf-8\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


# oxy's utils.DefaultHandler for the *url.Error of an unparsable rewritten URL (a net.Error
# that is no timeout): 502 and its status text
_BAD_GATEWAY = (status_line(502) + b"Content-Type: text/plain; charset=utf-8\r\n"
                + b"Content-Length: 11\r\n\r\nBad Gateway")


class RedirectRegex:
    """Traefik redirectRegex: the request URL as its rawURL builds it (scheme http, https on
    TLS or from an absolute-form target; Host as the client sent it, port included; the
    request URI), matched by ``regex`` (unanchored); every match is replaced (Go's
    ReplaceAllString, ``$1`` / ``${name}``), the result parsed as Go's url.Parse does (an
    error: 502); a different URL is a redirect to it (url.String()), the same one goes on."""
    __slots__ = ("rx", "parts", "permanent")
    static = False

    def __init__(self, spec):
        regex = spec.get("regex")
        if regex is None:
            regex = ""
        if not isinstance(regex, str):
            raise ValueError("regex: expected a string")
        try:
            # Traefik: regexp.Compile(conf.Regex), not trimmed
            self.rx = Regexp(regex)
        except ValueError as e:
            raise ValueError("regex: %s" % e) from None
        replacement = spec.get("replacement")
        if replacement is None:
            replacement = ""
        if not isinstance(replacement, str):
            raise ValueError("replacement: expected a string")
        self.parts = self.rx.template(replacement)
        permanent = spec.get("permanent", False)
        if permanent is not None and not isinstance(permanent, bool):
            raise ValueError("permanent: expected a boolean")
        self.permanent = bool(permanent)

    def request_url(self, conn):
        """Traefik's rawURL."""
        scheme, host, port, uri = _request_uri(conn, conn.req.host or b"", b"")
        return scheme + b"://" + host + port + uri

    def on_request(self, conn):
        old = self.request_url(conn)
        if self.rx.search(old) is None:
            return None
        new = self.rx.replace_all(old, self.parts)
        try:
            url = gourl.parse(new)
        except gourl.URLError:
            return _BAD_GATEWAY
        if new != old:
            return _moved(conn.req.method, url.string(), self.permanent)
        # the same URL: the request goes on with req.URL = the parsed URL
        conn.path, conn.query = url.request_uri()
        return None
