"""Entry point request normalisation before routing, as Traefik v3 does it.

- ``sanitizePath`` (default true): dot segments resolved and repeated slashes collapsed, a
  trailing slash kept (Traefik's cleanPath = Go's path.Clean + trailing slash).
- encoded characters (Traefik v3.6 ``encodedCharacters``, every ``allow*`` false by default):
  ``%2F``, ``%5C``, ``%3B``, ``%25``, ``%3F``, ``%23`` in the path are refused with 400, so the
  proxy and a backend can never read one path two ways.
- ``encodeQuerySemicolons``: ``;`` in the query is percent-encoded (else Go keeps it as is,
  since Go 1.17 it no longer splits on it).
Returns ``(path, query)`` (query None when the target had no ``?``) or an int status.
"""
import re

_ENCODED = re.compile(rb"%(2[fF]|5[cC]|3[bB]|25|3[fF]|23)")


def clean_path(path):
    """Go's path.Clean for an absolute path, keeping a trailing slash (Traefik cleanPath)."""
    out = []
    for seg in path.split(b"/"):
        if seg == b"" or seg == b".":
            continue
        if seg == b"..":
            if out:
                out.pop()
            continue
        out.append(seg)
    cleaned = b"/" + b"/".join(out)
    if path.endswith(b"/") and cleaned != b"/":
        cleaned += b"/"
    return cleaned


class Normalizer:
    __slots__ = ("sanitize", "semicolons")

    def __init__(self, sanitize=True, encode_query_semicolons=False):
        self.sanitize = sanitize
        self.semicolons = encode_query_semicolons

    def __call__(self, req):
        path = req.path
        if path is None:
            return 400          # authority-form or asterisk-form outside CONNECT/OPTIONS
        query = req.query if req.target.find(b"?") >= 0 else None
        if b"%" in path and _ENCODED.search(path):
            return 400
        if self.sanitize and (b"/." in path or b"//" in path):
            path = clean_path(path)
        if self.semicolons and query and b";" in query:
            query = query.replace(b";", b"%3B")
        return path, query
