"""Go's net/url, the parts Traefik's path and redirect middlewares lean on, on bytes.

``parse`` is ``url.Parse`` (what redirectRegex does with its rewritten URL: an error is its
502), ``URL.string`` is ``URL.String()`` (the Location it sends), ``URL.request_uri`` is
``URL.RequestURI()``, ``path_unescape`` is ``url.PathUnescape`` (replacePath and
replacePathRegex: an error is their 500). Run at load or only on the requests these
middlewares rewrite.
"""
import re
from urllib.parse import unquote_to_bytes

_HEX = b"0123456789abcdefABCDEF"
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

ENCODE_PATH, ENCODE_PATH_SEGMENT, ENCODE_HOST, ENCODE_ZONE, ENCODE_USER_PASSWORD, \
    ENCODE_QUERY_COMPONENT, ENCODE_FRAGMENT = range(1, 8)


class URLError(ValueError):
    """A net/url error; ``str()`` is Go's ``Error()`` text."""


def _escape_error(s):
    # EscapeError: "invalid URL escape " + strconv.Quote(s)
    return URLError("invalid URL escape " + _quote(s))


def _quote(s):
    """strconv.Quote of a byte string (ASCII printable kept, the rest escaped)."""
    out = ['"']
    for c in s:
        if c == 0x22 or c == 0x5C:
            out.append("\\" + chr(c))
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x09:
            out.append("\\t")
        else:
            out.append("\\x%02x" % c)
    out.append('"')
    return "".join(out)


def should_escape(c, mode):
    """net/url shouldEscape."""
    if c in _ALNUM:
        return False
    if mode == ENCODE_HOST or mode == ENCODE_ZONE:
        if c in b"!$&'()*+,;=:[]<>\"":
            return False
    if c in b"-_.~":
        return False
    if c in b"$&+,/:;=?@":
        if mode == ENCODE_PATH:
            return c == 0x3F
        if mode == ENCODE_PATH_SEGMENT:
            return c in b"/;,?"
        if mode == ENCODE_USER_PASSWORD:
            return c in b"@/?:"
        if mode == ENCODE_QUERY_COMPONENT:
            return True
        if mode == ENCODE_FRAGMENT:
            return False
    if mode == ENCODE_FRAGMENT and c in b"!()*":
        return False
    return True


_ESC = {m: frozenset(c for c in range(256) if should_escape(c, m)) for m in range(1, 8)}


def _class(chars):
    return re.compile(b"[" + b"".join(b"\\x%02x" % c for c in sorted(chars)) + b"]")


# per mode: a byte escape() would escape; a byte that makes validEncoded() false
_NEEDS_ESCAPE = {m: _class(_ESC[m]) for m in _ESC}
_NOT_ENCODED = {m: _class(_ESC[m] - frozenset(b"!$&'()*+,;=:@[]%")) for m in _ESC}
_BAD_PERCENT = re.compile(rb"%(?![0-9a-fA-F]{2})")


def unescape(s, mode):
    """net/url unescape; raises URLError."""
    if mode != ENCODE_HOST and mode != ENCODE_ZONE:
        # no byte but a bad %-escape is an error here: the fast way, same result
        if mode == ENCODE_QUERY_COMPONENT and b"+" in s:
            s0 = s
        else:
            s0 = None
        if b"%" not in s:
            return s.replace(b"+", b" ") if s0 is not None else s
        m = _BAD_PERCENT.search(s)
        if m is not None:
            raise _escape_error(s[m.start():m.start() + 3])
        return unquote_to_bytes(s.replace(b"+", b" ") if s0 is not None else s)
    n = len(s)
    i = 0
    pct = False
    esc = _ESC.get(mode)
    while i < n:
        c = s[i]
        if c == 0x25:
            if i + 2 >= n or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                raise _escape_error(s[i:i + 3])
            pct = True
            v = int(s[i + 1:i + 3], 16)
            if mode == ENCODE_HOST and v < 0x80 and s[i + 1] < 0x38 and s[i:i + 3] != b"%25":
                # (Go: unhex(s[i+1]) < 8, i.e. an escaped ASCII byte)
                raise _escape_error(s[i:i + 3])
            if mode == ENCODE_ZONE and s[i:i + 3] != b"%25" and v != 0x20 and \
                    should_escape(v, ENCODE_HOST):
                raise _escape_error(s[i:i + 3])
            i += 3
            continue
        if (mode == ENCODE_HOST or mode == ENCODE_ZONE) and c < 0x80 and c in esc:
            raise URLError("invalid character " + _quote(s[i:i + 1]) + " in host name")
        i += 1
    if mode == ENCODE_QUERY_COMPONENT:
        s = s.replace(b"+", b" ") if b"+" in s else s
    if not pct:
        return s
    out = bytearray()
    i = 0
    while i < n:
        c = s[i]
        if c == 0x25:
            out.append(int(s[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)


def escape(s, mode):
    """net/url escape."""
    esc = _ESC[mode]
    if _NEEDS_ESCAPE[mode].search(s) is None:
        return s
    out = bytearray()
    for c in s:
        if c == 0x20 and mode == ENCODE_QUERY_COMPONENT:
            out.append(0x2B)
        elif c in esc:
            out += b"%%%02X" % c
        else:
            out.append(c)
    return bytes(out)


def path_unescape(s):
    """url.PathUnescape; raises URLError."""
    return unescape(s, ENCODE_PATH_SEGMENT)


def valid_encoded(s, mode):
    """net/url validEncoded."""
    return _NOT_ENCODED[mode].search(s) is None


def escaped_path(path, raw):
    """URL.EscapedPath() of Path ``path`` and RawPath ``raw`` (b"" for none)."""
    if raw and valid_encoded(raw, ENCODE_PATH):
        try:
            if unescape(raw, ENCODE_PATH) == path:
                return raw
        except URLError:
            pass
    if path == b"*":
        return path
    return escape(path, ENCODE_PATH)


def _valid_userinfo(s):
    return all(c in _ALNUM or c in b"-._:~!$&'()*+,;=%@" for c in s)


def _valid_optional_port(port):
    if port == b"":
        return True
    return port[:1] == b":" and all(0x30 <= c <= 0x39 for c in port[1:])


def _parse_host(host):
    if host.startswith(b"["):
        i = host.rfind(b"]")
        if i < 0:
            raise URLError("missing ']' in host")
        colon_port = host[i + 1:]
        if not _valid_optional_port(colon_port):
            raise URLError("invalid port %s after host" % _quote(colon_port))
        zone = host[:i].find(b"%25")
        if zone >= 0:
            return (unescape(host[:zone], ENCODE_HOST) + unescape(host[zone:i], ENCODE_ZONE)
                    + unescape(host[i:], ENCODE_HOST))
    else:
        i = host.rfind(b":")
        if i != -1 and not _valid_optional_port(host[i:]):
            raise URLError("invalid port %s after host" % _quote(host[i:]))
    return unescape(host, ENCODE_HOST)


class URL:
    """net/url.URL (the fields String and RequestURI read)."""
    __slots__ = ("scheme", "opaque", "user", "host", "path", "raw_path", "omit_host",
                 "force_query", "raw_query", "fragment", "raw_fragment")

    def __init__(self):
        self.scheme = self.opaque = self.host = self.path = self.raw_path = b""
        self.raw_query = self.fragment = self.raw_fragment = b""
        self.user = None            # (username, password or None)
        self.omit_host = self.force_query = False

    def set_path(self, p):
        path = unescape(p, ENCODE_PATH)
        self.path = path
        self.raw_path = b"" if escape(path, ENCODE_PATH) == p else p

    def escaped_path(self):
        return escaped_path(self.path, self.raw_path)

    def escaped_fragment(self):
        raw = self.raw_fragment
        if raw and valid_encoded(raw, ENCODE_FRAGMENT):
            try:
                if unescape(raw, ENCODE_FRAGMENT) == self.fragment:
                    return raw
            except URLError:
                pass
        return escape(self.fragment, ENCODE_FRAGMENT)

    def string(self):
        """URL.String()."""
        out = []
        if self.scheme:
            out.append(self.scheme + b":")
        if self.opaque:
            out.append(self.opaque)
        else:
            if self.scheme or self.host or self.user is not None:
                if not (self.omit_host and not self.host and self.user is None):
                    if self.host or self.path or self.user is not None:
                        out.append(b"//")
                    if self.user is not None:
                        name, password = self.user
                        out.append(escape(name, ENCODE_USER_PASSWORD))
                        if password is not None:
                            out.append(b":" + escape(password, ENCODE_USER_PASSWORD))
                        out.append(b"@")
                    if self.host:
                        out.append(escape(self.host, ENCODE_HOST))
            path = self.escaped_path()
            if path and path[:1] != b"/" and self.host:
                out.append(b"/")
            if not out and b":" in path.partition(b"/")[0]:
                out.append(b"./")
            out.append(path)
        if self.force_query or self.raw_query:
            out.append(b"?" + self.raw_query)
        if self.fragment:
            out.append(b"#" + self.escaped_fragment())
        return b"".join(out)

    def request_uri(self):
        """URL.RequestURI(): (path or opaque, query or None)."""
        result = self.opaque
        if not result:
            result = self.escaped_path() or b"/"
        elif result.startswith(b"//"):
            result = self.scheme + b":" + result
        return result, (self.raw_query if self.force_query or self.raw_query else None)


def _get_scheme(raw):
    for i, c in enumerate(raw):
        if 0x61 <= c <= 0x7A or 0x41 <= c <= 0x5A:
            continue
        if 0x30 <= c <= 0x39 or c in b"+-.":
            if i == 0:
                return b"", raw
            continue
        if c == 0x3A:
            if i == 0:
                raise URLError("missing protocol scheme")
            return raw[:i], raw[i + 1:]
        return b"", raw
    return b"", raw


def parse(raw):
    """url.Parse; raises URLError (its text is Go's ``*url.Error``: ``parse "...": ...``)."""
    u, sep, frag = raw.partition(b"#")
    try:
        url = _parse(u)
    except URLError as e:
        raise URLError("parse %s: %s" % (_quote(u), e)) from None
    if not sep or not frag:
        return url
    try:
        f = unescape(frag, ENCODE_FRAGMENT)
    except URLError as e:
        raise URLError("parse %s: %s" % (_quote(raw), e)) from None
    url.fragment = f
    url.raw_fragment = b"" if escape(f, ENCODE_FRAGMENT) == frag else frag
    return url


def _parse(raw):
    if any(c < 0x20 or c == 0x7F for c in raw):
        raise URLError("net/url: invalid control character in URL")
    url = URL()
    if raw == b"*":
        url.path = b"*"
        return url
    scheme, rest = _get_scheme(raw)
    url.scheme = scheme.lower()
    if rest.endswith(b"?") and rest.count(b"?") == 1:
        url.force_query = True
        rest = rest[:-1]
    else:
        rest, _, url.raw_query = rest.partition(b"?")
    if not rest.startswith(b"/"):
        if url.scheme:
            url.opaque = rest
            return url
        if b":" in rest.partition(b"/")[0]:
            raise URLError("first path segment in URL cannot contain colon")
    if (url.scheme or not rest.startswith(b"///")) and rest.startswith(b"//"):
        authority, rest = rest[2:], b""
        i = authority.find(b"/")
        if i >= 0:
            authority, rest = authority[:i], authority[i:]
        at = authority.rfind(b"@")
        url.host = _parse_host(authority[at + 1:] if at >= 0 else authority)
        if at >= 0:
            userinfo = authority[:at]
            if not _valid_userinfo(userinfo):
                raise URLError("net/url: invalid userinfo")
            if b":" not in userinfo:
                url.user = (unescape(userinfo, ENCODE_USER_PASSWORD), None)
            else:
                name, _, password = userinfo.partition(b":")
                url.user = (unescape(name, ENCODE_USER_PASSWORD),
                            unescape(password, ENCODE_USER_PASSWORD))
    elif url.scheme and rest.startswith(b"/"):
        url.omit_host = True
    url.set_path(rest)
    return url
