"""encodedCharacters (Traefik v3.6+ pkg/middlewares/encodedcharacters).

Refuses, with 400, a request whose escaped path (``ex.path``: as the entry point's
normalisation and the middlewares before left it, Go's ``URL.EscapedPath()``) holds one of the
escapes its options do not allow. Every option defaults to false, so ``encodedCharacters: {}``
refuses all of %2F %5C %00 %3B %25 %3F %23 (either case of the hex digits): the entry point's
``http.encodedCharacters`` does the same check for every root router with Traefik v3.7's
defaults (everything allowed; pyroute.static), this middleware for the routers that use it.
"""
from ..proxy.responses import status_line
from ..static import _ENCODED_CHARACTERS

# Go: rw.WriteHeader(http.StatusBadRequest) and nothing written (the entry point's
# DisableAutoDetection leaves no Content-Type to sniff)
BAD_REQUEST = status_line(400) + b"Content-Length: 0\r\n\r\n"


def denied_escapes(spec):
    """Traefik mapDeniedCharacters: the escapes (bytes) that the options leave refused."""
    if not isinstance(spec, dict):
        raise ValueError("encodedCharacters: expected a mapping")
    out = set()
    for key, escapes in _ENCODED_CHARACTERS.items():
        value = spec.get(key)
        if value is not None and not isinstance(value, bool):
            raise ValueError("%s: expected true or false" % key)
        if not value:
            out.update(e.encode("ascii") for e in escapes)
    return frozenset(out)


class EncodedCharacters:
    __slots__ = ("denied",)
    static = False

    def __init__(self, spec):
        self.denied = denied_escapes(spec)

    def on_request(self, ex):
        denied = self.denied
        if not denied:
            return None
        path = ex.path
        i = path.find(b"%")
        n = len(path)
        while i >= 0:
            # Traefik: a '%' without two bytes after it is refused too (Go's parser already
            # refused malformed escapes); a checked escape is skipped whole
            if i + 2 >= n:
                return BAD_REQUEST
            if path[i:i + 3] in denied:
                return BAD_REQUEST
            i = path.find(b"%", i + 3)
        return None
