"""stripPrefix and addPrefix (Traefik pkg/middlewares/stripprefix, addprefix).

``conn.path`` is the request path as it goes on the wire (escaped, after the entry point's
normalisation); Traefik works on Go's ``URL.Path`` (decoded) and ``URL.RawPath`` (the escaped
form, when it is not the default encoding) and sends ``URL.EscapedPath()``. The helpers below
are Go's net/url rules, so the path that reaches the backend is the one Traefik sends.
"""
from urllib.parse import unquote_to_bytes

from ..proxy.responses import error_response

# net/url shouldEscape(c, encodePath) is false for these bytes
_PATH_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                       b"-_.~$&+,/:;=@")
# validEncoded(s, encodePath) also lets these through as they are
_VALID_ENCODED = _PATH_SAFE | frozenset(b"!$&'()*+,;=:@[]%")


def go_escape_path(path):
    """net/url escape(s, encodePath)."""
    if all(c in _PATH_SAFE for c in path):
        return path
    return b"".join(bytes((c,)) if c in _PATH_SAFE else b"%%%02X" % c for c in path)


def _unescape(path):
    return unquote_to_bytes(path) if b"%" in path else path


def escaped_path(path, raw):
    """URL.EscapedPath(): ``raw`` when it is a valid encoding of ``path``, else escape(path)."""
    if raw is not None and raw and all(c in _VALID_ENCODED for c in raw) \
            and _unescape(raw) == path:
        return raw
    return go_escape_path(path)


def _clean(p):
    """Go's path.Clean for a rooted path."""
    out = []
    for seg in p.split(b"/"):
        if seg == b"" or seg == b".":
            continue
        if seg == b"..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return b"/" + b"/".join(out)


def _join_path(esc):
    """URL.JoinPath() with no elements, on an escaped rooted path: path.Join (Clean), keeping
    one trailing slash."""
    if b"/." not in esc and b"//" not in esc:
        return esc
    p = _clean(esc)
    if esc.endswith(b"/") and not p.endswith(b"/"):
        p += b"/"
    return p


def _leading_slash(p):
    return p if p == b"" or p.startswith(b"/") else b"/" + p


def _encoded_prefix_len(raw, decoded_prefix):
    """Traefik encodedPrefixLen: bytes of ``raw`` that decode to the prefix."""
    decoded = i = 0
    n, want = len(raw), len(decoded_prefix)
    while i < n and decoded < want:
        i += 3 if raw[i] == 0x25 and i + 2 < n else 1
        decoded += 1
    return i


BAD_REQUEST = error_response(400)      # Traefik: http.Error(rw, StatusText(400), 400)


class StripPrefix:
    """Removes the first matching prefix (on the decoded path; the raw path is stripped
    alike) and says so in X-Forwarded-Prefix; a result that path cleaning would change (a
    dot segment left behind: ``/api./foo`` minus ``/api``) is refused with 400, as Traefik."""
    __slots__ = ("prefixes", "force_slash")
    static = False

    def __init__(self, spec):
        prefixes = spec.get("prefixes") or []
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise ValueError("prefixes: expected a list of strings")
        # Traefik New(): prefixes are trimmed of surrounding spaces
        self.prefixes = [p.strip().encode("utf-8") for p in prefixes]
        force = spec.get("forceSlash")
        if force is not None and not isinstance(force, bool):
            raise ValueError("forceSlash: expected a boolean")
        self.force_slash = bool(force)      # deprecated; unset means false (Traefik v3)

    def _stripped(self, rest):
        if self.force_slash:
            return b"/" + (rest[1:] if rest.startswith(b"/") else rest)
        return _leading_slash(rest)

    def on_request(self, conn):
        raw = conn.path
        path = _unescape(raw)
        for prefix in self.prefixes:
            if not path.startswith(prefix):
                continue
            new_path = self._stripped(path[len(prefix):])
            if path is raw:
                esc = new_path
            else:
                esc = escaped_path(new_path, self._stripped(
                    raw[_encoded_prefix_len(raw, prefix):]))
            if new_path:
                cleaned = _join_path(esc)
                if cleaned is not esc and _unescape(cleaned) != new_path:
                    return BAD_REQUEST
            # Go's RequestURI for an empty path is "/"
            conn.path = esc or b"/"
            # Traefik adds the header after forwardedheaders ran, so it always reaches
            # the backend (Header.Add: a client's own X-Forwarded-Prefix stays before it)
            edits = conn.set_headers
            if edits is None:
                conn.set_headers = edits = []
            edits.append((b"X-Forwarded-Prefix", prefix))
            return None
        return None


class AddPrefix:
    """Prepends ``prefix`` to the path (Go: to URL.Path and to URL.RawPath when set), so a
    ``%`` in the prefix is a literal percent sign, sent escaped as ``%25``."""
    __slots__ = ("prefix", "plain")
    static = False

    def __init__(self, spec):
        prefix = spec.get("prefix")
        if prefix is None or prefix == "":
            raise ValueError("prefix: prefix cannot be empty")
        if not isinstance(prefix, str):
            raise ValueError("prefix: expected a string")
        self.prefix = prefix.encode("utf-8")
        # a prefix Go would not escape: the wire path is simply prefix + path
        self.plain = go_escape_path(self.prefix) == self.prefix

    def on_request(self, conn):
        raw = conn.path
        if self.plain:
            conn.path = _leading_slash(self.prefix + raw)
            return None
        path = _unescape(raw)
        new_path = _leading_slash(self.prefix + path)
        # Go's setPath: RawPath is kept only when it is not the default encoding
        new_raw = _leading_slash(self.prefix + raw) if go_escape_path(path) != raw else None
        conn.path = escaped_path(new_path, new_raw)
        return None
