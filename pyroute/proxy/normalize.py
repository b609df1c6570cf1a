"""Entry point request normalisation before routing, as Traefik v3 does it.

The rules live in ``pyroute.normalize`` (shared with ``pyroute explain``): '#' refused,
percent-encoding validated and normalised, ``sanitizePath`` (dot segments, repeated slashes),
';' in queries turned into '&' (Go's AllowQuerySemicolons) or encoded
(``encodeQuerySemicolons``), and the escapes ``http.encodedCharacters`` denies (answered 400
once a router matched, as Traefik's root routers do). The connection calls this only when the
path holds '%', "/." or "//", or the query a ';' — otherwise there is nothing to change.

Returns ``(path, query, denied)`` as bytes (query None without '?'; ``denied`` True when the
path holds a denied escape) or an int status to answer without routing.
"""
from ..normalize import denied_escape, normalize_target


class Normalizer:
    __slots__ = ("sanitize", "semicolons", "denied")

    def __init__(self, sanitize=True, encode_query_semicolons=False, denied=frozenset()):
        self.sanitize = sanitize
        self.semicolons = encode_query_semicolons
        self.denied = denied

    def __call__(self, req):
        if req.path is None:
            return 400          # authority-form outside CONNECT
        t = normalize_target(req.target.decode("latin-1"), self.sanitize, self.semicolons)
        if t.status:
            return t.status
        path = t.path.encode("latin-1")
        query = t.query.encode("latin-1") if t.query is not None else None
        return path, query, denied_escape(t.path, self.denied) is not None
