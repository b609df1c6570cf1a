"""Set-Cookie lines read and written as Go's net/http does (cookie.go: readSetCookies,
Cookie.String), for the middlewares that rebuild a response's cookies (forwardAuth's
``addAuthCookiesToResponse``). A line Go cannot read is dropped; what it writes back is
normalised (attribute names, order, quoting), byte for byte as Traefik sends it."""
import calendar
import time

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   b"abcdefghijklmnopqrstuvwxyz")
_WS = b" \t\r\n"
_SAMESITE = {b"lax": b"Lax", b"strict": b"Strict", b"none": b"None"}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _valid_name(name):
    return bool(name) and all(c in _TOKEN for c in name)


def _value_byte(c):
    return 0x20 <= c < 0x7f and c not in (0x22, 0x3b, 0x5c)    # '"', ';', '\\'


def _parse_value(raw, allow_quote):
    quoted = False
    if allow_quote and len(raw) > 1 and raw[:1] == b'"' and raw[-1:] == b'"':
        raw = raw[1:-1]
        quoted = True
    if all(_value_byte(c) for c in raw):
        return raw, quoted, True
    return b"", quoted, False


def _parse_expires(val):
    """time.Parse(time.RFC1123) or "Mon, 02-Jan-2006 15:04:05 MST"; seconds since the epoch
    (UTC: Go reads an unknown zone abbreviation as offset 0), None when neither fits."""
    text = val.decode("latin-1")
    for sep in (" ", "-"):
        try:
            day, rest = text.split(", ", 1)
            if day not in _DAYS:
                continue
            date, clock, zone = rest.rsplit(" ", 2) if sep == " " else \
                (rest.split(" ", 1)[0],) + tuple(rest.split(" ", 1)[1].split(" ", 1))
            d, m, y = date.split(sep) if sep == "-" else date.split(" ")
        except ValueError:
            continue
        if len(d) != 2 or len(y) != 4 or m not in _MONTHS or not d.isdigit() \
                or not y.isdigit() or not zone.isalpha() or not 3 <= len(zone) <= 5:
            continue
        try:
            hh, mm, ss = clock.split(":")
            if not (len(hh) == 2 and len(mm) == 2 and len(ss) == 2):
                continue
            tm = (int(y), _MONTHS.index(m) + 1, int(d), int(hh), int(mm), int(ss))
            if not (1 <= tm[2] <= 31 and tm[3] < 24 and tm[4] < 60 and tm[5] < 60):
                continue
            return calendar.timegm(tm + (0, 0, 0)), tm[0]
        except ValueError:
            continue
    return None


def _valid_domain(d):
    """validCookieDomain: a domain name (isCookieDomainName) or an IPv4 address."""
    if _is_domain_name(d):
        return True
    parts = d.split(b".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) < 256
                                   for p in parts)


def _is_domain_name(s):
    if not s or len(s) > 255:
        return False
    if s[:1] == b".":
        s = s[1:]
    last, ok, partlen = 0x2e, False, 0
    for c in s:
        if 97 <= c <= 122 or 65 <= c <= 90:
            ok = True
            partlen += 1
        elif 48 <= c <= 57:
            partlen += 1
        elif c == 0x2d:
            if last == 0x2e:
                return False
            partlen += 1
        elif c == 0x2e:
            if last in (0x2e, 0x2d) or partlen > 63 or partlen == 0:
                return False
            partlen = 0
        else:
            return False
        last = c
    return last != 0x2d and partlen <= 63 and ok


class Cookie:
    __slots__ = ("name", "value", "quoted", "path", "domain", "expires", "max_age",
                 "http_only", "secure", "same_site", "partitioned")

    def __init__(self, name, value, quoted):
        self.name, self.value, self.quoted = name, value, quoted
        self.path = self.domain = b""
        self.expires = None         # (epoch seconds, year)
        self.max_age = 0
        self.http_only = self.secure = self.partitioned = False
        self.same_site = None

    def string(self):
        """Cookie.String(): the Set-Cookie value Go writes."""
        if not _valid_name(self.name):
            return b""
        value = bytes(c for c in self.value if _value_byte(c))
        if value and (b" " in value or b"," in value or self.quoted):
            value = b'"' + value + b'"'
        out = [self.name, b"=", value]
        if self.path:
            out += (b"; Path=", bytes(c for c in self.path if 0x20 <= c < 0x7f and c != 0x3b))
        if self.domain and _valid_domain(self.domain):
            out += (b"; Domain=", self.domain[1:] if self.domain[:1] == b"." else self.domain)
        if self.expires is not None and self.expires[1] >= 1601:
            out += (b"; Expires=", time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                 time.gmtime(self.expires[0])).encode())
        if self.max_age > 0:
            out += (b"; Max-Age=", b"%d" % self.max_age)
        elif self.max_age < 0:
            out.append(b"; Max-Age=0")
        if self.http_only:
            out.append(b"; HttpOnly")
        if self.secure:
            out.append(b"; Secure")
        if self.same_site is not None:
            out += (b"; SameSite=", self.same_site)
        if self.partitioned:
            out.append(b"; Partitioned")
        return b"".join(out)


def read_set_cookies(lines):
    """readSetCookies over Set-Cookie values (bytes): the cookies Go reads, in order."""
    out = []
    for line in lines or ():
        parts = line.strip(_WS).split(b";")
        if len(parts) == 1 and parts[0] == b"":
            continue
        name, eq, value = parts[0].strip(_WS).partition(b"=")
        if not eq:
            continue
        name = name.strip(_WS)
        if not _valid_name(name):
            continue
        value, quoted, ok = _parse_value(value, True)
        if not ok:
            continue
        c = Cookie(name, value, quoted)
        for part in parts[1:]:
            part = part.strip(_WS)
            if not part:
                continue
            attr, _, val = part.partition(b"=")
            if not attr.isascii():
                continue
            attr = attr.lower()
            val, _, ok = _parse_value(val, False)
            if not ok:
                continue
            if attr == b"samesite":
                c.same_site = _SAMESITE.get(val.lower())
            elif attr == b"secure":
                c.secure = True
            elif attr == b"httponly":
                c.http_only = True
            elif attr == b"domain":
                c.domain = val
            elif attr == b"max-age":
                try:
                    secs = int(val)          # strconv.Atoi: an optional sign, digits
                    if not val.lstrip(b"+-").isdigit() or (secs != 0 and val[:1] == b"0"):
                        raise ValueError
                except ValueError:
                    continue
                c.max_age = secs if secs > 0 else -1
            elif attr == b"expires":
                c.expires = _parse_expires(val)
            elif attr == b"path":
                c.path = val
            elif attr == b"partitioned":
                c.partitioned = True
        out.append(c)
    return out
