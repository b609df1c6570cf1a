"""ipAllowList (Traefik pkg/middlewares/ipallowlist, pkg/ip): answers ``rejectStatusCode``
(403) unless the client IP is in ``sourceRange``.

The client IP comes from Traefik's ``ipStrategy`` (dynamic.IPStrategy.Get):
- ``depth`` > 0: the depth-th entry from the right of X-Forwarded-For (none: "", rejected);
- else ``excludedIPs``: the first entry from the right that is not excluded;
- else the connection's peer address.
``ipv6Subnet`` (depth and peer strategies only, as Traefik) replaces an IPv6 client address
by the first address of its /ipv6Subnet network before the check.

X-Forwarded-For is what Traefik's middlewares see after the entry point's forwarded-headers
handler: for a peer outside ``forwardedHeaders.trustedIPs`` (and not ``insecure``) it was
removed, so a client can never pick its own IP by sending the header; for a trusted peer its
lines are joined with ", " (forwarded_header.go) and read as one value (Header.Get).
"""
import ipaddress

from ..proxy.responses import REASONS, status_line


def _go_ip(text):
    """netip.ParseAddr, as an ipaddress object with IPv4-mapped IPv6 folded to IPv4 (Go's
    net.IP comparisons treat them alike); None when it is not an IP."""
    if not text or text != text.strip():
        return None
    zone = text.find("%")
    if zone > 0 and ":" in text:
        text = text[:zone]          # netip keeps the zone; As16 (used by Traefik) drops it
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


def _nets(values, field):
    """ip.NewChecker: each entry an IP (net.ParseIP) or a CIDR (net.ParseCIDR), else an error
    (an entry with a port, "1.2.3.4:80", is neither: Traefik refuses it too)."""
    if values is not None and not isinstance(values, list):
        raise ValueError("%s: expected a list of IPs or CIDRs" % field)
    nets = []
    for v in values or []:
        net = None
        if isinstance(v, str) and v.strip() == v and v:
            try:
                if "/" in v:
                    addr, _, bits = v.partition("/")
                    if not bits.isdigit() or _go_ip(addr) is None:
                        raise ValueError
                    net = ipaddress.ip_network(v, strict=False)
                else:
                    ip = _go_ip(v)
                    if ip is None:
                        raise ValueError
                    net = ipaddress.ip_network(ip)
            except ValueError:
                net = None
        if net is None:
            raise ValueError("%s: %r is neither an IP nor a CIDR (Traefik: cannot parse CIDRs)"
                             % (field, v))
        if net.version == 6 and net.prefixlen >= 96 and \
                net.network_address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d/n: Go's IPNet holds it as the IPv4 network a.b.c.d/(n-96)
            net = ipaddress.ip_network("%s/%d" % (net.network_address.ipv4_mapped,
                                                  net.prefixlen - 96), strict=False)
        nets.append(net)
    return nets


def _contains(nets, ip):
    return ip is not None and any(ip.version == n.version and ip in n for n in nets)


def _split_host_port(addr):
    """net.SplitHostPort's host, or ``addr`` itself when it has no port (Checker.IsAuthorized)."""
    if addr.startswith("["):
        end = addr.find("]")
        if end > 0 and addr[end + 1:end + 2] == ":" and "]" not in addr[end + 1:]:
            return addr[1:end]
        return addr
    if addr.count(":") == 1:
        return addr.split(":", 1)[0]
    return addr


def _subnet(text, bits):
    """ip.getIPv6SubnetIP: an IPv6 address -> the first address of its /bits network."""
    zone = text.find("%")
    try:
        # netip keeps a zone (fe80::1%eth0); Prefix() drops it
        ip = ipaddress.ip_address(text[:zone] if zone > 0 else text)
    except ValueError:
        return text
    if ip.version != 6:
        return text
    return str(ipaddress.ip_network("%s/%d" % (ip, bits), strict=False).network_address)


def _status(value):
    if value is None or value == 0:
        return 403                  # Traefik: 0 / unset is Forbidden
    if isinstance(value, bool) or not isinstance(value, int) or value not in REASONS:
        # Traefik: http.StatusText(code) == "" -> "invalid HTTP status code"
        raise ValueError("rejectStatusCode: invalid HTTP status code %r" % (value,))
    return value


def _ipv6_subnet(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 128:
        raise ValueError("ipStrategy.ipv6Subnet: invalid IPv6 subnet %r value, should be "
                         "greater to 0 and lower or equal to 128" % (value,))
    return value


class IPAllowList:
    __slots__ = ("nets", "depth", "excluded", "subnet", "status_code", "answer", "_cache")
    static = False

    def __init__(self, spec):
        if not spec.get("sourceRange"):
            raise ValueError("sourceRange is empty, IPAllowLister not created")
        self.nets = _nets(spec.get("sourceRange"), "sourceRange")
        self.status_code = _status(spec.get("rejectStatusCode"))
        strategy = spec.get("ipStrategy") or {}
        depth = strategy.get("depth") or 0
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise ValueError("ipStrategy.depth: expected an integer")
        self.depth = depth if depth > 0 else 0
        self.excluded = None
        self.subnet = None
        if self.depth:
            self.subnet = _ipv6_subnet(strategy.get("ipv6Subnet"))
        elif strategy.get("excludedIPs"):
            # PoolStrategy: ipv6Subnet is not read (nor checked) there, as in Traefik
            self.excluded = _nets(strategy.get("excludedIPs"), "ipStrategy.excludedIPs")
        else:
            self.subnet = _ipv6_subnet(strategy.get("ipv6Subnet"))
        # Traefik's reject(): WriteHeader(code) + StatusText(code); Go sniffs text/plain
        body = REASONS[self.status_code].encode()
        self.answer = (status_line(self.status_code)
                       + b"Content-Type: text/plain; charset=utf-8\r\n"
                       + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self._cache = {}

    def _forwarded_for(self, conn):
        if not conn.trusted:
            return ""           # removed by the entry point's forwarded-headers handler
        values = [v for n, v in conn.req.headers if n.lower() == b"x-forwarded-for"]
        return ", ".join(v.decode("latin-1") for v in values)

    def client_ip(self, conn):
        """The address Traefik's strategy picks for this request (text, "" for none)."""
        if self.depth:
            xffs = self._forwarded_for(conn).split(",")
            if len(xffs) < self.depth:
                return ""
            ip = xffs[len(xffs) - self.depth].strip()
        elif self.excluded is not None:
            for v in reversed(self._forwarded_for(conn).split(",")):
                v = v.strip()
                if v and not _contains(self.excluded, _go_ip(v)):
                    return v
            return ""
        else:
            ip = conn.remote_ip.decode("latin-1")
        if self.subnet is not None:
            ip = _subnet(ip, self.subnet)
        return ip

    def on_request(self, conn):
        ip = conn.remote_ip if (self.depth == 0 and self.excluded is None
                                and self.subnet is None) else self.client_ip(conn)
        ok = self._cache.get(ip)
        if ok is None:
            text = ip.decode("latin-1") if isinstance(ip, bytes) else ip
            ok = _contains(self.nets, _go_ip(_split_host_port(text)))
            if len(self._cache) < 4096:
                self._cache[ip] = ok
        return None if ok else self.answer


class IPWhiteList(IPAllowList):
    """ipWhiteList (Traefik pkg/middlewares/ipwhitelist, deprecated): ipAllowList's check and
    ipStrategy, always 403 (it has no rejectStatusCode), its own error texts; Traefik logs
    the deprecation when it builds it (pyroute: a warning from check and at start)."""
    __slots__ = ()

    def __init__(self, spec):
        if not spec.get("sourceRange"):
            raise ValueError("sourceRange is empty, IPWhiteLister not created")
        spec = {k: v for k, v in spec.items() if k != "rejectStatusCode"}
        try:
            super().__init__(spec)
        except ValueError as e:
            raise ValueError(str(e).replace("cannot parse CIDRs",
                                            "cannot parse CIDR whitelist")) from None
