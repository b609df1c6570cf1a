"""ipAllowList (Traefik pkg/middlewares/ipallowlist): 403 unless the client IP is listed.

``ipStrategy.depth`` takes the depth-th address from the right of X-Forwarded-For;
``ipStrategy.excludedIPs`` takes the first address from the right that is not excluded;
otherwise the connection's peer address is checked.
"""
import ipaddress

from ..proxy.responses import status_line


def _nets(values, field):
    nets = []
    for v in values or []:
        try:
            nets.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError("%s: %r is neither an IP nor a CIDR" % (field, v)) from None
    return nets


def _contains(nets, text):
    try:
        ip = ipaddress.ip_address(text.decode("latin-1").strip())
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in n for n in nets)


FORBIDDEN = (status_line(403) + b"Content-Type: text/plain; charset=utf-8\r\n"
             + b"Content-Length: 9\r\n\r\nForbidden")


class IPAllowList:
    __slots__ = ("nets", "depth", "excluded", "status_code", "_cache")
    static = False

    def __init__(self, spec):
        self.nets = _nets(spec.get("sourceRange"), "sourceRange")
        strategy = spec.get("ipStrategy") or {}
        self.depth = int(strategy.get("depth") or 0)
        self.excluded = _nets(strategy.get("excludedIPs"), "ipStrategy.excludedIPs")
        self.status_code = spec.get("rejectStatusCode")
        self._cache = {}

    def _client(self, conn):
        if self.depth or self.excluded:
            xff = conn.req.header(b"x-forwarded-for") or b""
            parts = [p.strip() for p in xff.split(b",") if p.strip()]
            if self.depth:
                return parts[-self.depth] if len(parts) >= self.depth else b""
            for p in reversed(parts):
                if not _contains(self.excluded, p):
                    return p
            return b""
        return conn.remote_ip

    def on_request(self, conn):
        ip = self._client(conn)
        ok = self._cache.get(ip)
        if ok is None:
            ok = _contains(self.nets, ip) if ip else False
            if len(self._cache) < 4096:
                self._cache[ip] = ok
        if ok:
            return None
        if self.status_code:
            code = int(self.status_code)
            from ..proxy.responses import REASONS
            body = REASONS.get(code, "Forbidden").encode()
            return (status_line(code) + b"Content-Type: text/plain; charset=utf-8\r\n"
                    + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return FORBIDDEN
