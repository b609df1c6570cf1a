"""redirectScheme (Traefik pkg/middlewares/redirect/redirect_scheme.go)."""
from ..proxy.responses import status_line, REASONS


class RedirectScheme:
    __slots__ = ("scheme", "port", "permanent")
    static = False

    def __init__(self, spec):
        scheme = spec.get("scheme") or "https"
        if not isinstance(scheme, str):
            raise ValueError("scheme: expected a string")
        port = spec.get("port") or ""
        self.scheme = scheme.encode()
        self.port = str(port).encode()
        self.permanent = bool(spec.get("permanent", False))

    def on_request(self, conn):
        ep_scheme = b"https" if conn.ep.tls else b"http"
        if ep_scheme == self.scheme:
            return None        # already on the wanted scheme: nothing to do
        host = conn.req.host
        if host.startswith(b"["):
            end = host.find(b"]")
            hostname = host[:end + 1] if end >= 0 else host
        else:
            hostname = host.split(b":", 1)[0]
        port = self.port
        if (port == b"443" and self.scheme == b"https") or (port == b"80" and self.scheme == b"http"):
            port = b""
        location = self.scheme + b"://" + hostname + (b":" + port if port else b"")
        location += conn.path + (b"?" + conn.query if conn.query is not None else b"")
        method = conn.req.method
        if self.permanent:
            status = 301 if method in (b"GET", b"HEAD") else 308
        else:
            status = 302 if method in (b"GET", b"HEAD") else 307
        body = REASONS[status].encode()
        return (status_line(status) + b"Location: " + location + b"\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + (b"" if method == b"HEAD" else body))
