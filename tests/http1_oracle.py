"""A slow, plain-Python statement of the codec's strict request and chunked rules (test oracle).

Written from the rules (RFC 9112/9110 plus the decisions documented in README.md), not from the
Cython code, so that fuzzing can check that pyroute accepts exactly what the rules accept and
refuses with the same status. Only used by tests/ and scripts/fuzz_http1.py.
"""
import re

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
NEED = ("need", None)

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([\t\x20-\x7e\x80-\xff]*)")
_TARGET = re.compile(rb"(?:[\x21-\x22\x24\x26-\x5b\x5d-\x7e]|%[0-9A-Fa-f]{2})+")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(?::[0-9]{0,5})?")
_CODINGS = {b"gzip", b"deflate", b"compress", b"x-gzip", b"x-compress", b"identity"}
_MANAGED_X = {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
              b"x-forwarded-server", b"x-forwarded-uri", b"x-forwarded-method", b"x-forwarded-prefix",
              b"x-forwarded-scheme", b"x-forwarded-tls-client-cert",
              b"x-forwarded-tls-client-cert-info", b"x-scheme", b"x-real-ip"}


class Refused(Exception):
    def __init__(self, status):
        self.status = status


def _host_ok(value, need_port=False):
    if value == b"":
        return not need_port
    if not _HOST.fullmatch(value):
        return False
    if need_port:
        return re.search(rb":[0-9]+$", value) is not None
    return True


def _tokens(value):
    """RFC 9110 §5.6.1 list of tokens (empty elements allowed); None if not such a list."""
    out = []
    for part in value.split(b","):
        part = part.strip(b" \t")
        if part == b"":
            continue
        if not set(part) <= TCHAR:
            return None
        out.append(part)
    return out


def find_head(data, max_line, max_head, max_fields, line_status=414, head_status=431, request=True):
    """-> (msg_start, end) | NEED; raises Refused for limits."""
    pos = 0
    msg_start = None
    nfields = 0
    while True:
        lf = data.find(b"\n", pos)
        if lf < 0:
            if msg_start is None and len(data) - pos > max_line + 1:
                raise Refused(line_status)
            if len(data) > max_head:
                raise Refused(head_status)
            return NEED
        ln = lf - pos - (1 if lf > pos and data[lf - 1] == 13 else 0)
        if lf + 1 > max_head:
            if msg_start is None and ln > max_line:
                raise Refused(line_status)
            raise Refused(head_status)
        if msg_start is None:
            if ln == 0 and request:
                pos = lf + 1
                continue
            if ln > max_line:
                raise Refused(line_status)
            msg_start = pos
        elif ln == 0:
            return msg_start, lf + 1
        else:
            nfields += 1
            if nfields > max_fields:
                raise Refused(head_status)
        pos = lf + 1


def _lines(head):
    lines = head.split(b"\n")[:-2]   # drop the empty line and what follows its LF
    out = []
    for line in lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        out.append(line)
    return out


def parse_request(buf, start=0, max_line=8192, max_head=32768, max_fields=100):
    """-> ("need", None) | ("error", status) | ("ok", dict)."""
    try:
        found = find_head(bytes(buf[start:]), max_line, max_head, max_fields)
        if found == NEED:
            return NEED
        msg_start, end = found
        return "ok", _request(bytes(buf[start + msg_start:start + end]), end)
    except Refused as e:
        return "error", e.status


def _request(head, head_length):
    lines = _lines(head)
    line = lines[0]
    if b"\r" in line:
        raise Refused(400)
    m = re.match(_TOKEN, line)
    if not m or line[m.end():m.end() + 1] != b" ":
        raise Refused(400)
    method = m.group(0)
    rest = line[m.end() + 1:]
    t = _TARGET.match(rest)
    if not t or rest[t.end():t.end() + 1] != b" ":
        raise Refused(400)
    target = t.group(0)
    version = rest[t.end() + 1:]
    if not _VERSION.fullmatch(version):
        raise Refused(400)
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise Refused(505)
    v11 = version == b"HTTP/1.1"
    r = dict(method=method, target=target, version=11 if v11 else 10, path=None, query=None,
             host=b"", absolute=False, headers=[], framing=0, content_length=-1,
             expect_100_continue=False, upgrade=None, head_length=head_length)
    # request-target forms (RFC 9112 §3.2)
    if method == b"CONNECT":
        if target.startswith(b"/") or not _host_ok(target, True):
            raise Refused(400)
        r["host"] = target
        r["absolute"] = True
    elif target.startswith(b"/"):
        path, q, query = target.partition(b"?")
        r["path"], r["query"] = path, (query if q else None)
    elif target == b"*":
        if method != b"OPTIONS":
            raise Refused(400)
        r["path"] = b"*"
    else:
        low = target.lower()
        if low.startswith(b"http://"):
            rest = target[7:]
        elif low.startswith(b"https://"):
            rest = target[8:]
        else:
            raise Refused(400)
        am = re.match(rb"[^/?]*", rest)
        authority = am.group(0)
        if b"@" in authority:
            raise Refused(400)
        if authority == b"" or not _host_ok(authority):
            raise Refused(400)
        after = rest[len(authority):]
        path, q, query = after.partition(b"?")
        r["host"], r["absolute"] = authority, True
        r["path"], r["query"] = (path or b"/"), (query if q else None)
    hosts = 0
    seen = set()
    close = keep = upgrade_token = False
    upgrade = None
    for line in lines[1:]:
        if b"\r" in line:
            raise Refused(400)
        fm = _FIELD.fullmatch(line)
        if not fm:
            raise Refused(400)
        name, value = fm.group(1), fm.group(2).rstrip(b" \t")
        r["headers"].append((name, value))
        lname = name.lower()
        if lname == b"host":
            hosts += 1
            if not _host_ok(value):
                raise Refused(400)
            if not r["absolute"]:
                r["host"] = value
        elif lname == b"content-length":
            if lname in seen or not re.fullmatch(rb"[0-9]{1,18}", value):
                raise Refused(400)
            r["content_length"] = int(value)
        elif lname == b"transfer-encoding":
            if lname in seen:
                raise Refused(400)
            codings = _tokens(value)
            if codings is None:
                raise Refused(400)
            codings = [c.lower() for c in codings]
            if any(c != b"chunked" and c not in _CODINGS for c in codings):
                raise Refused(501)
            if codings.count(b"chunked") != 1 or codings[-1] != b"chunked":
                raise Refused(400)
            if len(codings) > 1:
                raise Refused(501)
        elif lname == b"connection":
            toks = _tokens(value)
            if toks is None:
                raise Refused(400)
            for tok in toks:
                low = tok.lower()
                close |= low == b"close"
                keep |= low == b"keep-alive"
                upgrade_token |= low == b"upgrade"
        elif lname == b"upgrade":
            if upgrade is not None:
                raise Refused(400)
            upgrade = value
        elif lname == b"expect" and v11:
            if value.lower() != b"100-continue":
                raise Refused(417)
            r["expect_100_continue"] = True
        seen.add(lname)
    if hosts > 1 or (hosts == 0 and v11):
        raise Refused(400)
    if b"transfer-encoding" in seen:
        if b"content-length" in seen or not v11:
            raise Refused(400)
        r["framing"] = 2
    elif b"content-length" in seen:
        r["framing"] = 1
    r["keep_alive"] = (not close) if v11 else (keep and not close)
    if v11 and upgrade_token and upgrade is not None:
        r["upgrade"] = upgrade
    return r


_VAL = rb"[\t\x20-\x7e\x80-\xff]"
_NAME = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SIZE_FULL = re.compile(rb"([0-9A-Fa-f]+)(?:[ \t]*;" + _VAL + rb"*)?")
_SIZE_PARTIAL = re.compile(rb"(?:([0-9A-Fa-f]+)(?:[ \t]*(?:;" + _VAL + rb"*\r?)?|\r))?")
_TRAILER_FULL = re.compile(_NAME + rb":" + _VAL + rb"*")
_TRAILER_PARTIAL = re.compile(rb"(?:" + _NAME + rb"(?::" + _VAL + rb"*\r?)?|\r)?")


def _significant(digits):
    return len(digits.lstrip(b"0")) if digits else 0


def _trailer_prefix(region):
    p = 0
    while True:
        if region[p:p + 2] == b"\r\n":
            return "done", p + 2
        lf = region.find(b"\r\n", p)
        if lf < 0:
            return ("partial", None) if _TRAILER_PARTIAL.fullmatch(region[p:]) else ("bad", None)
        if not _TRAILER_FULL.fullmatch(region[p:lf]):
            return "bad", None
        p = lf + 2


def decode_chunked(data, max_line=4096, max_trailer=8192):
    """Chunked body rules (RFC 9112 §7.1, CRLF only, extensions of visible chars, at most 15
    significant hex digits, capped size line and trailer section) over a complete or partial
    body. -> ("need", payload so far) | ("error", status) | ("ok", (payload, end offset))."""
    pos = 0
    payload = bytearray()
    while True:
        lf = data.find(b"\r\n", pos)
        if lf < 0:
            line = data[pos:]
            m = _SIZE_PARTIAL.fullmatch(line[:max_line])
            if not m or _significant(m.group(1)) > 15 or len(line) > max_line:
                return "error", 400
            return "need", bytes(payload)
        line = data[pos:lf]
        m = _SIZE_FULL.fullmatch(line)
        if not m or _significant(m.group(1)) > 15 or len(line) + 2 > max_line:
            return "error", 400
        size = int(m.group(1), 16)
        pos = lf + 2
        if size == 0:
            break
        chunk = data[pos:pos + size]
        payload += chunk
        if len(chunk) < size:
            return "need", bytes(payload)
        pos += size
        term = data[pos:pos + 2]
        if term != b"\r\n"[:len(term)]:
            return "error", 400
        if len(term) < 2:
            return "need", bytes(payload)
        pos += 2
    state, length = _trailer_prefix(data[pos:pos + max_trailer])
    if state == "bad":
        return "error", 400
    if state == "done":
        return "ok", (bytes(payload), pos + length)
    if len(data) - pos > max_trailer:
        return "error", 431
    return "need", bytes(payload)


_STATUS = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: (" + _VAL + rb"*))?")


def parse_response(buf, start=0, head_request=False, max_line=8192, max_head=32768, max_fields=100):
    """Response heads from backends (every refusal is 502).
    -> ("need", None) | ("error", 502) | ("ok", dict)."""
    try:
        found = find_head(bytes(buf[start:]), max_line, max_head, max_fields, 502, 502, request=False)
        if found == NEED:
            return NEED
        msg_start, end = found
        return "ok", _response(bytes(buf[start + msg_start:start + end]), end, head_request)
    except Refused as e:
        return "error", e.status


def _response(head, head_length, head_request):
    lines = _lines(head)
    line = lines[0]
    m = _STATUS.fullmatch(line)
    if b"\r" in line or not m or (m.group(1), m.group(2)) not in ((b"1", b"1"), (b"1", b"0")):
        raise Refused(502)
    status = int(m.group(3))
    if not 100 <= status <= 599:
        raise Refused(502)
    v11 = m.group(2) == b"1"
    r = dict(status=status, reason=m.group(4) or b"", version=11 if v11 else 10, headers=[],
             content_length=-1, framing=0, upgrade=None, head_length=head_length)
    seen = set()
    close = keep = upgrade_token = False
    upgrade = None
    for line in lines[1:]:
        fm = _FIELD.fullmatch(line)
        if b"\r" in line or not fm:
            raise Refused(502)
        name, value = fm.group(1), fm.group(2).rstrip(b" \t")
        r["headers"].append((name, value))
        lname = name.lower()
        if lname == b"content-length":
            if not re.fullmatch(rb"[0-9]{1,18}", value):
                raise Refused(502)
            if lname in seen and int(value) != r["content_length"]:
                raise Refused(502)
            r["content_length"] = int(value)
        elif lname == b"transfer-encoding":
            codings = _tokens(value)
            if lname in seen or codings is None or [c.lower() for c in codings] != [b"chunked"]:
                raise Refused(502)
        elif lname == b"connection":
            toks = _tokens(value)
            if toks is None:
                raise Refused(502)
            low = [t.lower() for t in toks]
            close |= b"close" in low
            keep |= b"keep-alive" in low
            upgrade_token |= b"upgrade" in low
        elif lname == b"upgrade":
            upgrade = value
        seen.add(lname)
    has_cl, has_te = b"content-length" in seen, b"transfer-encoding" in seen
    if (has_cl and has_te) or (has_te and not v11):
        raise Refused(502)
    if status < 200:
        if has_cl or has_te:
            raise Refused(502)
        if status == 101:
            if not (upgrade_token and upgrade is not None):
                raise Refused(502)
            r["upgrade"], r["framing"] = upgrade, 4
        r["keep_alive"] = status != 101
        return r
    if status == 204 and ((has_cl and r["content_length"] != 0) or has_te):
        raise Refused(502)
    if status == 304 and has_te:
        raise Refused(502)
    if status not in (204, 304) and not head_request:
        r["framing"] = 2 if has_te else 1 if has_cl else 3
    r["keep_alive"] = ((not close) if v11 else (keep and not close)) and r["framing"] != 3
    return r
