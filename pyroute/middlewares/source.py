"""Traefik's ``sourceCriterion`` (pkg/middlewares/extractor.go GetSourceExtractor): what a
rateLimit or inFlightReq counts a request against.

- ``ipStrategy`` (dynamic.IPStrategy.Get): ``depth`` > 0: the depth-th X-Forwarded-For entry
  from the right; else ``excludedIPs``: the first entry from the right not excluded; else the
  peer's address; ``ipv6Subnet`` groups IPv6 clients (depth and peer strategies). As for
  ipAllowList, an untrusted peer's X-Forwarded-* headers were removed before any middleware
  runs (the entry point's forwarded-headers handler), so a client never picks its own bucket;
- ``requestHeaderName``: the header's first value (oxy's "request.header.<name>"), "" when
  absent — an untrusted peer's X-Forwarded-* / X-Real-Ip count as absent, as they were removed;
- ``requestHost``: the request's Host.
Two at once: Traefik's "mutually exclusive" error. None: the default of the middleware
(rateLimit: the peer's IP; inFlightReq: the request host).
"""
from .ipallowlist import _contains, _go_ip, _ipv6_subnet, _nets, _subnet

# forwardedheaders.go: the X-headers Traefik removes from untrusted peers (names lower-case,
# "_" spelled "-" as isManagedXHeader compares them)
_MANAGED = frozenset(n.lower() for n in (
    "X-Forwarded-Proto", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port",
    "X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Prefix",
    "X-Forwarded-Tls-Client-Cert", "X-Forwarded-Tls-Client-Cert-Info", "X-Real-Ip",
    "X-Forwarded-Server", "X-Forwarded-Scheme", "X-Scheme"))


class IPStrategy:
    __slots__ = ("depth", "excluded", "subnet")

    def __init__(self, spec, field="sourceCriterion.ipStrategy"):
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ValueError("%s: expected a mapping" % field)
        depth = spec.get("depth") or 0
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise ValueError("%s.depth: expected an integer" % field)
        self.depth = depth if depth > 0 else 0
        self.excluded = None
        self.subnet = None
        try:
            if self.depth:
                self.subnet = _ipv6_subnet(spec.get("ipv6Subnet"))
            elif spec.get("excludedIPs"):
                self.excluded = _nets(spec.get("excludedIPs"), "excludedIPs")
            else:
                self.subnet = _ipv6_subnet(spec.get("ipv6Subnet"))
        except ValueError as e:
            raise ValueError("%s.%s" % (field, str(e).replace("ipStrategy.", ""))) from None

    @staticmethod
    def _forwarded_for(ex):
        if not ex.trusted:
            return ""
        return ", ".join(v.decode("latin-1") for n, v in ex.req.headers
                         if n.lower() == b"x-forwarded-for")

    def get(self, ex):
        if self.depth:
            xffs = self._forwarded_for(ex).split(",")
            if len(xffs) < self.depth:
                return b""
            ip = xffs[len(xffs) - self.depth].strip()
        elif self.excluded is not None:
            for v in reversed(self._forwarded_for(ex).split(",")):
                v = v.strip()
                if v and not _contains(self.excluded, _go_ip(v)):
                    return v.encode("latin-1")
            return b""
        else:
            if self.subnet is None:
                return ex.remote_ip
            ip = ex.remote_ip.decode("latin-1")
        if self.subnet is not None:
            ip = _subnet(ip, self.subnet)
        return ip.encode("latin-1")


class SourceCriterion:
    """``get(ex)`` -> the source (bytes) a request counts against."""
    __slots__ = ("kind", "strategy", "header")

    def __init__(self, spec, default):
        if spec is not None and not isinstance(spec, dict):
            raise ValueError("sourceCriterion: expected a mapping")
        spec = spec or {}
        ips = spec.get("ipStrategy")
        header = spec.get("requestHeaderName") or ""
        host = bool(spec.get("requestHost"))
        if ips is not None and header:
            raise ValueError("sourceCriterion: getting source extractor: iPStrategy and "
                             "RequestHeaderName are mutually exclusive")
        if ips is not None and host:
            raise ValueError("sourceCriterion: getting source extractor: iPStrategy and "
                             "RequestHost are mutually exclusive")
        if header and host:
            raise ValueError("sourceCriterion: getting source extractor: requestHost and "
                             "RequestHeaderName are mutually exclusive")
        self.strategy = None
        self.header = None
        if ips is None and not header and not host:
            kind = default
        else:
            kind = "ip" if ips is not None else ("header" if header else "host")
        self.kind = kind
        if kind == "ip":
            self.strategy = IPStrategy(ips)
        elif kind == "header":
            if not isinstance(header, str):
                raise ValueError("sourceCriterion.requestHeaderName: expected a header name")
            self.header = header.lower().encode("latin-1")

    def get(self, ex):
        if self.kind == "ip":
            return self.strategy.get(ex)
        if self.kind == "host":
            return ex.req.host or b""
        name = self.header
        if not ex.trusted and name.replace(b"_", b"-").decode("latin-1") in _MANAGED:
            return b""
        value = ex.req.header(name)
        return value if value is not None else b""
