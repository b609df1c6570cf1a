"""Go's ``mime.ParseMediaType`` (what Traefik's compress compares Content-Types with):
``parse(text) -> (media_type, params)``, the type lower-cased, parameter names lower-cased;
ValueError where Go returns an error."""

_TSPECIAL = set('()<>@,;:\\"/[]?=')


def _is_token(s):
    return bool(s) and all(33 <= ord(c) < 127 and c not in _TSPECIAL for c in s)


def parse(text):
    base, _, rest = text.partition(";")
    media = base.strip(" \t").lower()
    typ, slash, sub = media.partition("/")
    if not _is_token(typ) or (slash and not _is_token(sub)):
        raise ValueError("mime: expected token after slash" if slash and _is_token(typ)
                         else "mime: no media type")
    params = {}
    s = rest
    while s.strip(" \t"):
        s = s.lstrip(" \t")
        if s.startswith(";"):          # Go: consecutive semicolons are tolerated
            s = s[1:]
            continue
        key, eq, s = s.partition("=")
        key = key.strip(" \t").lower()
        if not eq or not _is_token(key):
            raise ValueError("mime: invalid media parameter")
        s = s.lstrip(" \t")
        if s.startswith('"'):
            i, buf = 1, []
            while i < len(s) and s[i] != '"':
                if s[i] == "\\" and i + 1 < len(s):
                    i += 1
                buf.append(s[i])
                i += 1
            if i >= len(s):
                raise ValueError("mime: invalid media parameter")
            value, s = "".join(buf), s[i + 1:]
        else:
            j = 0
            while j < len(s) and s[j] not in "; \t":
                j += 1
            value, s = s[:j], s[j:]
            if not _is_token(value):
                raise ValueError("mime: invalid media parameter")
        if key in params:
            raise ValueError("mime: duplicate parameter name")
        params[key] = value
        s = s.lstrip(" \t")
        if s and not s.startswith(";"):
            raise ValueError("mime: invalid media parameter")
    return media, params
