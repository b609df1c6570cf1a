"""Responses pyroute writes itself, byte for byte as Traefik (Go net/http) writes them.

Plain Python (engine/ may hold .py modules): built once per status and cached."""

# RFC 9110 reason phrases, as Go's http.StatusText: the status line is rewritten with these
# (Go never forwards a backend's own reason phrase).
REASONS = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content", 207: "Multi-Status",
    208: "Already Reported", 226: "IM Used",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    411: "Length Required", 412: "Precondition Failed", 413: "Request Entity Too Large",
    414: "Request URI Too Long", 415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable", 417: "Expectation Failed", 418: "I'm a teapot",
    421: "Misdirected Request", 422: "Unprocessable Entity", 423: "Locked",
    424: "Failed Dependency", 425: "Too Early", 426: "Upgrade Required",
    428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates", 507: "Insufficient Storage", 508: "Loop Detected",
    510: "Not Extended", 511: "Network Authentication Required",
}

# Status lines, built once: b"HTTP/1.1 200 OK\r\n"
STATUS_LINES = {code: ("HTTP/1.1 %d %s\r\n" % (code, text)).encode("latin-1")
                for code, text in REASONS.items()}


def status_line(code):
    line = STATUS_LINES.get(code)
    if line is None:
        line = ("HTTP/1.1 %03d status code %d\r\n" % (code, code)).encode("latin-1")
    return line


def _plain(code, body, close):
    # Go's http.Error: text/plain, nosniff, the body and a newline.
    head = (status_line(code)
            + b"Content-Type: text/plain; charset=utf-8\r\n"
            + b"X-Content-Type-Options: nosniff\r\n"
            + b"Content-Length: %d\r\n" % len(body))
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def error_response(code, close=False, head_only=False):
    """The answer Traefik gives for ``code`` when pyroute itself fails the request."""
    key = (code, close, head_only)
    cached = _CACHE.get(key)
    if cached is None:
        if code == 404:
            body = b"404 page not found\n"          # Go's http.NotFound
        elif code == 503:
            body = b"no available server\n"         # Traefik's wrr: errNoAvailableServer
        else:
            body = REASONS.get(code, "Error").encode() + b"\n"
        resp = _plain(code, body, close)
        if head_only:
            resp = resp[:resp.index(b"\r\n\r\n") + 4]
        _CACHE[key] = cached = resp
    return cached


def bad_request_response(code):
    """Go's net/http answer to a request it cannot parse: "400 Bad Request", then close."""
    cached = _CACHE.get(("codec", code))
    if cached is None:
        text = ("%d %s" % (code, REASONS.get(code, "Bad Request"))).encode()
        cached = (status_line(code) + b"Content-Type: text/plain; charset=utf-8\r\n"
                  + b"Connection: close\r\n\r\n" + text)
        _CACHE[("codec", code)] = cached
    return cached


_CACHE = {}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
