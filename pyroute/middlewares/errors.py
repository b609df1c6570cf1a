"""errors (Traefik pkg/middlewares/customerrors/custom_errors.go): an error page in lieu of
responses whose status is in ``status``.

In the response phase (``on_response``), a response whose status is in the ranges — the
backend's, a later middleware's answer, pyroute's own 502/503/504 — is dropped and the
middleware returns WAIT: it asks its ``service`` for the page through a sub-request (the
same pools, dial and TLS settings as proxied requests) and answers the exchange with it
(``ex.answer``): the page's headers and body, with the original status, or the first
``statusRewrites`` entry that covers it. The page request is ``GET /<query>`` with
``{status}``, ``{originalStatus}`` and ``{url}`` (the escaped original URL) replaced, the
client's Host (or the server's, for ``passHostHeader: false``), and the client's request
headers (all of them, or only ``errorRequestHeaders``). When the page cannot be had, Traefik's
answer through its code-enforcing writer: the original (or rewritten) status with the
service's own error text ("Bad Gateway", "Gateway Timeout", "no available server").
"""
import re
from urllib.parse import quote_plus

from .._engine.exchange import WAIT

_CODE = re.compile(r"^[+-]?[0-9]+$")
# Go's Request.Write leaves these out of the header it copies (it writes its own), and the
# reverse proxy drops the hop-by-hop ones
_REQ_DROP = {b"host", b"content-length", b"transfer-encoding", b"trailer", b"connection",
             b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"proxy-authorization",
             b"proxy-authenticate"}
_RESP_DROP = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive",
              b"proxy-connection", b"te", b"trailer", b"upgrade"}
_TEXT = {502: b"Bad Gateway", 504: b"Gateway Timeout", 500: b"Internal Server Error"}


def parse_ranges(blocks, field, single=False):
    """types.NewHTTPCodeRanges: "500" or "500-599" per entry (inclusive)."""
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        raise ValueError("%s: expected a list of strings" % field)
    out = []
    for i, block in enumerate(blocks):
        if not isinstance(block, str):
            raise ValueError("%s[%d]: expected a string" % (field, i))
        codes = block.split("-")
        if len(codes) == 1:
            codes.append(codes[0])
        for c in codes[:2]:
            if not _CODE.match(c):
                raise ValueError('%s: strconv.Atoi: parsing "%s": invalid syntax'
                                 % (field if single else "%s[%d]" % (field, i), c))
        out.append((int(codes[0]), int(codes[1])))
    return out


def _contains(ranges, code):
    for low, high in ranges:
        if low <= code <= high:
            return True
    return False


class Errors:
    compat_note = ("the page through a sub-request to the service's servers; an error "
                   "service with service-level middlewares is refused; X-Forwarded-* not "
                   "added to the page request")
    __slots__ = ("ranges", "rewrites", "query", "headers", "service_name", "service")
    static = False

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("expected an object")
        self.ranges = parse_ranges(spec.get("status"), "status")
        self.rewrites = []
        rewrites = spec.get("statusRewrites") or {}
        if not isinstance(rewrites, dict):
            raise ValueError("statusRewrites: expected a map of status ranges to codes")
        for k, v in rewrites.items():
            ranges = parse_ranges([str(k)], "statusRewrites.%s" % k, True)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError("statusRewrites.%s: expected an integer status code" % k)
            if not 100 <= v <= 999:
                # Go's WriteHeader panics on a code outside 100-999
                raise ValueError("statusRewrites.%s: invalid status code %d" % (k, v))
            self.rewrites.append((ranges, v))
        query = spec.get("query") or ""
        if not isinstance(query, str):
            raise ValueError("query: expected a string")
        self.query = query
        headers = spec.get("errorRequestHeaders")
        if headers is not None and (not isinstance(headers, list) or
                                    not all(isinstance(h, str) for h in headers)):
            raise ValueError("errorRequestHeaders: expected a list of strings")
        self.headers = (None if headers is None
                        else [h.encode("latin-1").lower() for h in headers])
        name = spec.get("service")
        if not name or not isinstance(name, str):
            raise ValueError("service: the service serving the error pages is required")
        self.service_name = name
        self.service = None

    def bind_service(self, compiler):
        """At load: the compiled service the pages come from (pyroute.proxy.snapshot)."""
        from ..proxy.snapshot import Chained
        svc = compiler.service(self.service_name)
        if isinstance(svc, Chained):
            raise ValueError("service: an error-page service with middlewares is not "
                             "supported by pyroute")
        self.service = svc

    def on_response(self, ex, head):
        code = head.status
        if code < 200 or not _contains(self.ranges, code):
            return None
        original = code
        for ranges, to in self.rewrites:
            if _contains(ranges, code):
                code = to
                break
        req = ex.req
        host = req.host or b""
        uri = b""
        if self.query:
            q = "/" + (self.query[1:] if self.query.startswith("/") else self.query)
            q = q.replace("{status}", str(code)).replace("{originalStatus}", str(original))
            if "{url}" in q:
                orig = b"%s://%s%s" % (b"https" if ex.tls else b"http", host, ex.path)
                if ex.query:
                    orig += b"?" + ex.query
                q = q.replace("{url}", quote_plus(orig.decode("latin-1"), safe=""))
            uri = q.encode("latin-1")
        if not uri.startswith(b"/"):
            uri = b"/" + uri
        saved = (ex.service, ex.server_index, ex.resp_extra)
        try:
            server = self.service.pick(ex) if self.service is not None else None
        finally:
            ex.service, ex.server_index, ex.resp_extra = saved
        if server is None or getattr(server, "pool", None) is None:
            # Traefik's load balancer without a server: 503 "no available server", through
            # the writer that enforces the code
            return self._answer_text(ex, head, code, b"no available server\n", True)
        lines = [b"GET ", uri, b" HTTP/1.1\r\nHost: ",
                 host if server.pass_host or not server.host_header else server.host_header,
                 b"\r\n"]
        wanted = self.headers
        for n, v in req.headers:
            low = n.lower()
            if low in _REQ_DROP:
                continue
            if wanted is not None and low not in wanted:
                continue
            lines += [n, b": ", v, b"\r\n"]
        if wanted is None or b"user-agent" not in wanted:
            if req.header(b"user-agent") is None:
                lines.append(b"User-Agent: Go-http-client/1.1\r\n")
        lines.append(b"\r\n")

        def done(status, phead, body, error):
            if error:
                ex.answer(_text_response(code, _TEXT.get(error, b"Bad Gateway"), False))
                return
            out = [b"HTTP/1.1 %d X\r\n" % code]
            for n, v in phead.headers:
                if n.lower() not in _RESP_DROP:
                    out += [n, b": ", v, b"\r\n"]
            out.append(b"Content-Length: %d\r\n\r\n" % len(body))
            out.append(body)
            ex.answer(_fix_reason(b"".join(out), code))
        ex.env.subrequest(server.pool, b"".join(lines), None, -1, 0.0, done)
        return WAIT

    def _answer_text(self, ex, head, code, text, nosniff):
        head.replace(code, [(b"Content-Type", b"text/plain; charset=utf-8"),
                            (b"X-Content-Type-Options", b"nosniff")], text)
        return None


def _fix_reason(data, code):
    from ..proxy.responses import REASONS
    reason = REASONS.get(code)
    reason = reason.encode("latin-1") if reason else b"status code %d" % code
    return data.replace(b" X\r\n", b" " + reason + b"\r\n", 1)


def _text_response(code, text, nosniff):
    # Traefik's proxy error handler: the status text, its type sniffed by Go
    return _fix_reason(b"HTTP/1.1 %d X\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (code, len(text), text), code)
