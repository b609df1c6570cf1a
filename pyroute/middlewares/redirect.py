"""redirectScheme (Traefik pkg/middlewares/redirect/redirect_scheme.go, redirect.go).

The request's URL is rebuilt as Traefik's ``clientRequestURL`` does (scheme from the
connection, or from X-Forwarded-Proto as the entry point's forwarded-headers handler left it;
host and port from Host; the request URI as the middlewares before left it), rewritten with
Traefik's ``uriPattern`` into ``scheme://host[:port]uri``, and the client is redirected when
the two differ — so a port change redirects too, and a request that already arrived on the
wanted scheme and port (directly or behind a TLS-terminating proxy that is trusted) passes.
"""
import re

from ..proxy.responses import REASONS, status_line

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
        uri = conn.path + (b"?" + conn.query if conn.query is not None else b"")
        scheme = b"http"
        if req.absolute_form:
            # Go keeps the absolute-form target in RequestURI: its scheme, host and port
            m = _URI_REGEXP.match(req.target)
            if m is not None:
                scheme = m.group(1)
                if m.group(2):
                    host = m.group(2)
                if m.group(3):
                    port = m.group(3)
        if conn.ep.tls:
            scheme = b"https"
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
        method = conn.req.method
        if self.force_permanent:
            status = 308
        elif self.permanent:
            status = 301 if method == b"GET" else 308
        else:
            status = 302 if method == b"GET" else 307
        body = REASONS[status].encode()
        return (status_line(status) + b"Location: " + new + b"\r\n"
                + b"Content-Type: text/plain; charset=utf-8\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body) + body)
