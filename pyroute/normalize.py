"""What an entry point does to a request before routing — exactly as Traefik's entry point does.

Traefik v3 (``pkg/server/server_entrypoint_tcp.go``, createHTTPServer) wraps its router in, from
the outside in: ``denyFragment`` -> ``normalizePath`` -> ``sanitizePath`` (when
``http.sanitizePath``, the default) -> ``routingPath`` -> ``encodeQuerySemicolons`` (when
``http.encodeQuerySemicolons``) or Go's ``http.AllowQuerySemicolons`` -> ``forwardedheaders``.
:func:`normalize_target` applies the path and query steps to a request-target; the forwarded
headers step is :class:`ForwardedHeaders`. ``pyroute explain`` and the server both use them, so
what explain shows is what the server does.

API (all pure functions of their arguments, built once per entry point where noted)::

    t = normalize_target("/a/../b%2fc/?x=1;y=2", sanitize=True, encode_semicolons=False)
    t.status        # 0, or the HTTP status to answer (400) without routing
    t.path          # escaped path forwarded upstream ("/b%2Fc/")
    t.routing_path  # path the rules see: percent-decoded except reserved chars ("/b%2Fc/")
    t.query         # raw query forwarded upstream ("x=1&y=2"), None when there is no "?"
    t.request_uri   # path + ("?" + query)

    denied_escape(t.path, ep.denied_encoded_characters)   # after routing, for root routers:
                                    # the escape to refuse with 400, or None

    fh = ForwardedHeaders(trusted_ips=("10.0.0.0/8",), insecure=False)   # once per entry point
    fh.trusted(client_ip)                  # whether X-Forwarded-* from this peer are kept
    headers = fh.strip(headers, client_ip) # [(name, value)] without X-Forwarded-* if untrusted
"""
import ipaddress

__all__ = ["Target", "normalize_target", "clean_path", "ForwardedHeaders", "X_HEADERS",
           "split_target", "denied_escape", "encoded_characters_notice"]

# RFC 3986 §2.3 unreserved characters: %XX of these is equivalent to the character itself
# (Traefik normalizePath decodes them in the raw path and upper-cases every other %xx).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 3986 §2.2 reserved characters plus "%": routingPath keeps them encoded, so that a rule
# sees "/a%2Fb" as one segment (Traefik reservedCharacters).
_RESERVED = frozenset(b":/?#[]@!$&'()*+,;=%")
_HEX = frozenset(b"0123456789abcdefABCDEF")

# Traefik forwardedheaders xHeaders: removed from requests of untrusted peers.
X_HEADERS = ("X-Forwarded-Proto", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port",
             "X-Forwarded-Server", "X-Forwarded-Uri", "X-Forwarded-Method",
             "X-Forwarded-Tls-Client-Cert", "X-Forwarded-Tls-Client-Cert-Info", "X-Real-Ip")
_X_HEADERS_LOWER = frozenset(h.lower() for h in X_HEADERS)


class Target:
    """A normalised request-target (see the module docstring)."""

    __slots__ = ("status", "reason", "path", "routing_path", "query")

    def __init__(self, status=0, reason="", path="", routing_path="", query=None):
        self.status = status
        self.reason = reason
        self.path = path
        self.routing_path = routing_path
        self.query = query

    @property
    def request_uri(self):
        return self.path if self.query is None else self.path + "?" + self.query

    def __repr__(self):
        if self.status:
            return "Target(status=%d, reason=%r)" % (self.status, self.reason)
        return "Target(path=%r, routing_path=%r, query=%r)" % (self.path, self.routing_path,
                                                               self.query)


def split_target(target):
    """(path, query or None) of an origin-form request-target; absolute-form is reduced."""
    if target.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        qmark = rest.find("?")
        if slash < 0 or (0 <= qmark < slash):
            target = "/" + (rest[qmark:] if qmark >= 0 else "")
        else:
            target = rest[slash:]
    path, sep, query = target.partition("?")
    return path, (query if sep else None)


def clean_path(path):
    """Go's ``URL.JoinPath()`` on an escaped path: path.Clean, keeping one trailing slash.

    ``"/a/./b/../c//"`` -> ``"/a/c/"``; ``"/.."`` -> ``"/"`` (RFC 3986 §6.2.2.3 dot segments).
    """
    rooted = path.startswith("/")
    out = []
    for seg in path.split("/"):
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    cleaned = "/".join(out)
    if rooted:
        cleaned = "/" + cleaned
    elif not cleaned:
        cleaned = "."
    if path.endswith("/") and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def _check_percent(b):
    i = 0
    n = len(b)
    while i < n:
        if b[i] == 0x25:  # '%'
            if i + 2 >= n:
                return False
            if b[i + 1] not in _HEX or b[i + 2] not in _HEX:
                return False
            i += 3
        else:
            i += 1
    return True


def _decode_escapes(b, decoded, upper_kept):
    # Decode the %XX whose byte is in `decoded`; keep the others, upper-cased if `upper_kept`.
    out = bytearray()
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c != 0x25:
            out.append(c)
            i += 1
            continue
        code = int(b[i + 1:i + 3], 16)
        if code in decoded:
            out.append(code)
        else:
            out += b"%" + b[i + 1:i + 3].upper() if upper_kept else b[i:i + 3]
        i += 3
    return bytes(out)


_NOT_RESERVED = frozenset(range(256)) - _RESERVED


def _normalize_raw(b):
    # Traefik normalizePath: decode unreserved %XX, upper-case the other escapes.
    return _decode_escapes(b, _UNRESERVED, True)


def _routing(b):
    # Traefik routingPath: decode every %XX except the reserved characters.
    return _decode_escapes(b, _NOT_RESERVED, False)


def normalize_target(target, sanitize=True, encode_semicolons=False):
    """Apply an entry point's path/query normalisation to a request-target (str).

    Returns a :class:`Target`; ``status`` 400 means Traefik answers 400 before routing (a '#' in
    the path, a malformed percent-encoding).
    """
    path, query = split_target(target)
    raw = path.encode("utf-8", "surrogateescape")
    if b"#" in raw:
        # Traefik denyFragment: Go keeps a '#' of the request-target in the path; refused.
        return Target(400, "fragment ('#') in the request path")
    if not _check_percent(raw):
        # Go's url.ParseRequestURI refuses invalid escapes: net/http answers 400.
        return Target(400, "invalid percent-encoding in the request path")
    if not raw.startswith(b"/"):
        if raw == b"*":
            return Target(0, "", "*", "*", query)
        return Target(400, "request path must start with '/'")
    raw = _normalize_raw(raw)
    if sanitize:
        raw = clean_path(raw.decode("latin-1")).encode("latin-1")
    routing = _routing(raw)
    if query is not None and ";" in query:
        # encodeQuerySemicolons keeps ';' as data; Go's AllowQuerySemicolons (the default)
        # turns it into a separator '&'.
        query = query.replace(";", "%3B" if encode_semicolons else "&")
    return Target(0, "", raw.decode("latin-1"),
                  routing.decode("utf-8", "surrogateescape"), query)


def denied_escape(path, denied):
    """The first ``%XX`` of ``path`` in ``denied`` (Traefik denyEncodedPathCharacters), or None.

    Traefik runs this check in each root router's handler, i.e. after routing: a request that no
    router matches is a 404 whatever its path holds.
    """
    if not denied or "%" not in path:
        return None
    i = path.find("%")
    while i >= 0:
        esc = path[i:i + 3]
        if esc in denied:
            return esc
        i = path.find("%", i + 1)
    return None


class ForwardedHeaders:
    """Traefik's forwardedheaders trust decision for one entry point (build once)."""

    __slots__ = ("insecure", "_networks")

    def __init__(self, trusted_ips=(), insecure=False):
        self.insecure = insecure
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in trusted_ips)

    @classmethod
    def for_entry_point(cls, ep):
        """From a pyroute.static.EntryPoint."""
        return cls(ep.trusted_ips, ep.forwarded_insecure)

    def trusted(self, client_ip):
        """Whether X-Forwarded-* headers from ``client_ip`` are kept."""
        if self.insecure:
            return True
        if not self._networks or not client_ip:
            return False
        try:
            ip = ipaddress.ip_address(client_ip.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in n for n in self._networks)

    def strip(self, headers, client_ip):
        """``headers`` ([(name, value)]) without the X-Forwarded-* set unless trusted."""
        if self.trusted(client_ip):
            return list(headers)
        return [(k, v) for k, v in headers if k.lower() not in _X_HEADERS_LOWER]


def encoded_characters_notice(static):
    """The one line ``pyroute check`` prints (to stderr, as information) about the entry
    points' ``http.encodedCharacters``: those that allow every encoded character in request
    paths (Traefik v3.7's default) and how to refuse them; None when every entry point
    refuses some (docs/security.md)."""
    open_ = [n for n, ep in static.entry_points.items() if not ep.denied_encoded_characters]
    if not open_:
        return None
    who = "entry point%s %s" % ("s" if len(open_) > 1 else "", ", ".join(open_))
    return ("info: %s allow%s every encoded character in request paths (%%2F %%5C %%00 "
            "%%3B %%25 %%3F %%23 reach routers and backends, as in Traefik >= v3.6.7); to "
            "refuse them with 400, set http.encodedCharacters.allowEncodedSlash, "
            "allowEncodedBackSlash, allowEncodedNullCharacter, allowEncodedSemicolon, "
            "allowEncodedPercent, allowEncodedQuestionMark, allowEncodedHash to false "
            "(see docs/security.md)" % (who, "" if len(open_) > 1 else "s"))
