"""stripPrefix and addPrefix (Traefik pkg/middlewares/stripprefix, addprefix).

``conn.path`` is the request path as it goes on the wire (escaped, after the entry point's
normalisation); Traefik works on Go's ``URL.Path`` (decoded) and ``URL.RawPath`` (the escaped
form, when it is not the default encoding) and sends ``URL.EscapedPath()``. The helpers below
are Go's net/url rules, so the path that reaches the backend is the one Traefik sends.
"""
import re
from urllib.parse import unquote_to_bytes

from ..proxy.responses import error_response, status_line
from . import gourl
from .goregexp import Regexp

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
            if path.startswith(prefix):
                return _strip(conn, raw, path, prefix, self._stripped)
        return None


def _add_header(conn, name, value):
    # Header.Add after the forwarded-headers handler ran: it always reaches the backend,
    # after the client's own lines of that name (kept, as Traefik keeps them)
    edits = conn.set_headers
    if edits is None:
        conn.set_headers = edits = []
    edits.append((name, value))


# httpguts.ValidHeaderFieldValue: no control byte but HTAB
_HEADER_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# Traefik's proxy ErrorHandler for an error that is no net.Error (here Go's Transport refusing
# "invalid header field value"): 500 and its status text, Go sniffs text/plain
INTERNAL_ERROR = (status_line(500) + b"Content-Type: text/plain; charset=utf-8\r\n"
                  + b"Content-Length: 21\r\n\r\nInternal Server Error")


def _strip(conn, raw, path, prefix, stripped):
    """Traefik's stripPrefix / stripPrefixRegex once ``prefix`` (decoded) is found at the
    start of ``path`` (the decoded ``raw``): strip it from the path and, alike, from the raw
    path; X-Forwarded-Prefix; 400 when URL.JoinPath() would change the result."""
    new_path = stripped(path[len(prefix):])
    if path is raw:
        esc = new_path
    else:
        esc = escaped_path(new_path, stripped(raw[_encoded_prefix_len(raw, prefix):]))
    if new_path:
        cleaned = _join_path(esc)
        if cleaned is not esc and _unescape(cleaned) != new_path:
            return BAD_REQUEST
    if _HEADER_CTL.search(prefix) is not None:
        # a decoded CR, LF, NUL... in X-Forwarded-Prefix: Go's Transport refuses to send
        # the request (500), so no header line can ever be smuggled to the backend
        return INTERNAL_ERROR
    # Go's RequestURI for an empty path is "/"
    conn.path = esc or b"/"
    _add_header(conn, b"X-Forwarded-Prefix", prefix)
    return None


def _regexps(value, field, many):
    """regexp.Compile(strings.TrimSpace(expr)) of each expression (load time)."""
    if many:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("%s: expected a list of strings" % field)
        values = value
    else:
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError("%s: expected a string" % field)
        values = [value]
    out = []
    for i, v in enumerate(values):
        try:
            out.append(Regexp(v.strip()))
        except ValueError as e:
            # stripPrefixRegex returns regexp.Compile's error as it is, replacePathRegex
            # wraps it: "error compiling regular expression <regex>: <error>"
            raise ValueError("%s[%d]: %s" % (field, i, e) if many else
                             "%s: error compiling regular expression %s: %s" % (field, v, e)
                             ) from None
    return out


class StripPrefixRegex:
    """Traefik stripprefixregex: the first expression whose leftmost match in the decoded
    path is non-empty and a prefix of it strips that text, as stripPrefix strips a prefix
    (raw path alike, X-Forwarded-Prefix with the matched text, 400 on a dot segment left
    behind); the others are not tried."""
    __slots__ = ("exprs",)
    static = False

    def __init__(self, spec):
        self.exprs = _regexps(spec.get("regex"), "regex", True)

    def on_request(self, conn):
        raw = conn.path
        path = _unescape(raw)
        for rx in self.exprs:
            spans = rx.search(path)
            if spans is None:
                continue
            s0, s1 = spans[0]
            if s1 == s0:
                continue
            prefix = path[s0:s1]
            if not path.startswith(prefix):
                continue
            return _strip(conn, raw, path, prefix, _leading_slash)
        return None


def go_http_error(code, text):
    """Go's http.Error(rw, text, code): text/plain, nosniff, the text and a newline."""
    body = text.encode("utf-8", "surrogateescape") + b"\n"
    return (status_line(code) + b"Content-Type: text/plain; charset=utf-8\r\n"
            + b"X-Content-Type-Options: nosniff\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


X_REPLACED_PATH = b"X-Replaced-Path"


class ReplacePath:
    """Traefik replacepath: the path becomes ``path`` (taken as an escaped path: Path its
    PathUnescape, RawPath itself), the escaped path before goes in X-Replaced-Path; a
    ``path`` that does not unescape answers 500 with Go's error text, as Traefik."""
    __slots__ = ("new_path", "answer")
    static = False

    def __init__(self, spec):
        path = spec.get("path")
        if path is None:
            path = ""
        if not isinstance(path, str):
            raise ValueError("path: expected a string")
        raw = path.encode("utf-8", "surrogateescape")
        self.new_path = None
        self.answer = None
        try:
            decoded = gourl.path_unescape(raw)
        except gourl.URLError as e:
            # Traefik: logged, http.Error(rw, err.Error(), 500) for every request
            self.answer = go_http_error(500, str(e))
            return
        # RequestURI(): EscapedPath() ("/" when empty)
        self.new_path = gourl.escaped_path(decoded, raw) or b"/"

    def on_request(self, conn):
        _add_header(conn, X_REPLACED_PATH, conn.path)
        if self.answer is not None:
            return self.answer
        conn.path = self.new_path
        return None


def _request_uri_path(raw_path):
    """(Path, EscapedPath) of ``URL.RawPath = raw_path; Path = PathUnescape(raw_path)``;
    raises gourl.URLError."""
    decoded = gourl.path_unescape(raw_path)
    return decoded, gourl.escaped_path(decoded, raw_path)


class ReplacePathRegex:
    """Traefik replacepathregex: when ``regex`` matches the escaped path, every match is
    replaced (Go's ReplaceAllString, ``$1`` / ``${name}``) and the result is the new raw path
    (500 when it does not unescape, 400 when path cleaning would change it); the escaped path
    before goes in X-Replaced-Path."""
    __slots__ = ("rx", "parts")
    static = False

    def __init__(self, spec):
        self.rx = _regexps(spec.get("regex"), "regex", False)[0]
        replacement = spec.get("replacement")
        if replacement is None:
            replacement = ""
        if not isinstance(replacement, str):
            raise ValueError("replacement: expected a string")
        self.parts = self.rx.template(replacement.strip())

    def on_request(self, conn):
        current = conn.path
        if self.rx.search(current) is None:
            return None
        _add_header(conn, X_REPLACED_PATH, current)
        new_raw = self.rx.replace_all(current, self.parts)
        try:
            decoded, esc = _request_uri_path(new_raw)
        except gourl.URLError as e:
            return go_http_error(500, str(e))
        # RequestURI is set before the JoinPath check (Go's: EscapedPath, "/" when empty)
        if decoded:
            cleaned = _join_path(esc)
            if cleaned is not esc and _unescape(cleaned) != decoded:
                return BAD_REQUEST
        conn.path = esc or b"/"
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
