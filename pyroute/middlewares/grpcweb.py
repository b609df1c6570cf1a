"""grpcWeb (Traefik pkg/middlewares/grpcweb: traefik/grpc-web's ``WrapHandler`` with
``WithCorsForRegisteredEndpointsOnly(false)`` and an origin function over ``allowOrigins``;
its CORS is rs/cors v1.7.0, the version Traefik's go.mod resolves).

Per request, in the request phase:

- ``OPTIONS`` whose ``Access-Control-Request-Headers`` names ``x-grpc-web``, or a ``POST``
  whose Content-Type starts with ``application/grpc-web``, is the wrapper's; anything else
  goes on untouched (no CORS headers either);
- a preflight (that OPTIONS with ``Access-Control-Request-Method``) is answered 200 here, with
  rs/cors's headers when the origin is allowed (``*`` or listed) and the method is GET, POST,
  HEAD or OPTIONS; every header asked for is allowed (the wrapper allows ``*``); credentials
  on; ``Access-Control-Max-Age: 600``;
- otherwise the exchange is marked (``ex.grpcweb``: 1 grpc-web, 2 grpc-web-text) and the
  conversion itself is done by the HTTP/2 upstream stream (engine/h2up.pyx), which owns the
  request body and the response trailers: Content-Type to ``application/grpc``, the
  Content-Length dropped, a -text body base64-decoded as it flows; on the way back the
  Content-Type back to grpc-web, the header names in Go's canonical case, each DATA piece
  base64-encoded for -text, and the trailers as a final 0x80 frame in the body.

In the response phase (``on_response``) the marked exchange gets rs/cors's actual-request
headers (``Vary: Origin``; an allowed origin: ``Access-Control-Allow-Origin`` and
``-Allow-Credentials``) and the wrapper's ``Access-Control-Expose-Headers``: every header name
of the response plus ``grpc-status, grpc-message`` (Go lists its map's keys in random order;
pyroute in the head's order).
"""
from ..proxy.responses import status_line

GRPC_WEB = b"application/grpc-web"
GRPC_WEB_TEXT = b"application/grpc-web-text"
# rs/cors: the default allowed methods (OPTIONS always passes)
ALLOWED_METHODS = frozenset((b"GET", b"POST", b"HEAD", b"OPTIONS"))
MAX_AGE = 600       # the wrapper's corsMaxAge default (10 minutes)
_VARY = (b"Vary: Origin\r\nVary: Access-Control-Request-Method\r\n"
         b"Vary: Access-Control-Request-Headers\r\n")
_NOT_EXPOSED = frozenset((b"transfer-encoding", b"content-length", b"connection"))


class GrpcWeb:
    compat_note = ("the conversion runs on h2c/h2 backends (the HTTP/2 upstream stream); "
                   "a grpc-web request routed to an HTTP/1.1 backend goes unconverted. "
                   "Access-Control-Expose-Headers in the head's order (Go: random)")
    __slots__ = ("origins", "any_origin")
    static = False

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("expected an object")
        origins = spec.get("allowOrigins")
        if origins is None:
            origins = []
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise ValueError("allowOrigins: expected a list of strings")
        self.origins = frozenset(o.encode("latin-1") for o in origins)
        self.any_origin = "*" in origins

    def allowed(self, origin):
        """Traefik's origin function: "*" or an exact entry."""
        return self.any_origin or origin in self.origins

    def on_request(self, ex):
        req = ex.req
        method = req.method
        if method == b"OPTIONS":
            acrh = req.header(b"access-control-request-headers") or b""
            if b"x-grpc-web" not in acrh.lower():
                return None
            if req.header(b"access-control-request-method"):
                return self._preflight(req, acrh)
        elif method == b"POST":
            ct = req.header(b"content-type") or b""
            if not ct.startswith(GRPC_WEB):
                return None
        else:
            return None
        ct = req.header(b"content-type") or b""
        ex.grpcweb = 2 if ct.startswith(GRPC_WEB_TEXT) else 1
        return None

    def _preflight(self, req, acrh):
        # rs/cors handlePreflight, then its WriteHeader(200)
        out = [status_line(200), _VARY]
        origin = req.header(b"origin") or b""
        method = (req.header(b"access-control-request-method") or b"").upper()
        if origin and self.allowed(origin) and method in ALLOWED_METHODS:
            out.append(b"Access-Control-Allow-Origin: " + origin + b"\r\n")
            out.append(b"Access-Control-Allow-Methods: " + method + b"\r\n")
            names = parse_header_list(acrh)
            if names:
                out.append(b"Access-Control-Allow-Headers: " + b", ".join(names) + b"\r\n")
            out.append(b"Access-Control-Allow-Credentials: true\r\n")
            out.append(b"Access-Control-Max-Age: %d\r\n" % MAX_AGE)
        out.append(b"Content-Length: 0\r\n\r\n")
        return b"".join(out)

    def on_response(self, ex, head):
        if not ex.grpcweb:
            return
        # rs/cors handleActualRequest (before the wrapped handler writes its head)
        head.add(b"Vary", b"Origin")
        origin = ex.req.header(b"origin") or b""
        if origin and self.allowed(origin) and ex.req.method in ALLOWED_METHODS:
            head.set(b"Access-Control-Allow-Origin", origin)
            head.set(b"Access-Control-Allow-Credentials", b"true")
        # grpcWebResponse.prepareHeaders: the response's header names, then the two trailers
        names, seen = [], set()
        for name, _ in head.lines:
            low = name.lower()
            if low in seen or low in _NOT_EXPOSED:
                continue
            seen.add(low)
            names.append(name)
        names += [b"grpc-status", b"grpc-message"]
        head.set(b"Access-Control-Expose-Headers", b", ".join(names))


def parse_header_list(value):
    """rs/cors v1.7 parseHeaderList: the names of a comma/space separated list in Go's
    canonical case (letters after "-" upper, others lower; characters other than letters,
    digits, "-", "_" and "." dropped)."""
    out, h, upper = [], bytearray(), True
    n = len(value)
    for i in range(n):
        b = value[i]
        if 97 <= b <= 122:
            h.append(b - 32 if upper else b)
        elif 65 <= b <= 90:
            h.append(b if upper else b + 32)
        elif b in b"-_." or 48 <= b <= 57:
            h.append(b)
        if b in b" ," or i == n - 1:
            if h:
                out.append(bytes(h))
                h = bytearray()
                upper = True
        else:
            upper = b == 45
    return out
