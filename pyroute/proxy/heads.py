"""Head rewriting for forwarding (Traefik = Go's ReverseProxy + forwardedheaders middleware).

Request: hop-by-hop headers and those named by Connection are dropped (RFC 9110 §7.6.1), then
X-Forwarded-* / X-Real-Ip are set as Traefik's forwardedheaders does (removed first when the
client is not in ``forwardedHeaders.trustedIPs``), X-Forwarded-For gets the client address
appended (ReverseProxy), and the framing is re-declared by pyroute (it re-encodes chunked
bodies, so no client framing header ever reaches a backend as sent).
Response: the status line gets Go's reason phrase, hop-by-hop headers go, framing is
re-declared for the client.
"""
from .responses import status_line

# RFC 9110 §7.6.1 + Go's hopHeaders
HOP = frozenset((b"connection", b"proxy-connection", b"keep-alive", b"proxy-authenticate",
                 b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
                 b"content-length"))
# Traefik forwardedheaders.xHeaders (removed when the peer is untrusted); '_' spellings too
XHEADERS = frozenset((b"x-forwarded-proto", b"x-forwarded-for", b"x-forwarded-host",
                      b"x-forwarded-port", b"x-forwarded-server", b"x-forwarded-uri",
                      b"x-forwarded-method", b"x-forwarded-prefix", b"x-forwarded-tls-client-cert",
                      b"x-forwarded-tls-client-cert-info", b"x-real-ip"))

CHUNKED_TE = b"Transfer-Encoding: chunked\r\n"
CONN_CLOSE = b"Connection: close\r\n"
CRLF = b"\r\n"


def _drop_set(options):
    if not options:
        return HOP
    return HOP | {o.lower() for o in options}


def request_head(req, method, target, host, client_ip, proto, port, server_name, trusted,
                 set_headers, body_framing, content_length, upgrade):
    """Bytes of the request head to send upstream.

    ``set_headers``: list of (lower-case name, value or None) from middlewares, applied after
    the copy (None deletes). ``body_framing``: 0 none, 1 Content-Length, 2 chunked.
    """
    drop = _drop_set(req.connection_options)
    out = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host, CRLF]
    xff = None
    have = set()
    overridden = {n for n, _ in set_headers} if set_headers else ()
    for name, value in req.headers:
        lname = name.lower()
        if lname in drop or lname == b"host":
            continue
        if b"_" in lname:
            folded = lname.replace(b"_", b"-")
            if folded in XHEADERS and not trusted:
                continue
        if lname in XHEADERS:
            if not trusted:
                continue
            if lname == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
                continue
            have.add(lname)
        if lname in overridden:
            continue
        out += (name, b": ", value, CRLF)
    # forwardedheaders: set what the (trusted) client did not send
    if b"x-forwarded-proto" not in have:
        out += (b"X-Forwarded-Proto: ", proto, CRLF)
    if b"x-forwarded-host" not in have and req.host:
        out += (b"X-Forwarded-Host: ", req.host, CRLF)
    if b"x-forwarded-port" not in have:
        out += (b"X-Forwarded-Port: ", port, CRLF)
    if b"x-forwarded-server" not in have:
        out += (b"X-Forwarded-Server: ", server_name, CRLF)
    if b"x-real-ip" not in have:
        out += (b"X-Real-Ip: ", client_ip, CRLF)
    # ReverseProxy: append the client address to X-Forwarded-For
    out += (b"X-Forwarded-For: ", client_ip if xff is None else xff + b", " + client_ip, CRLF)
    if set_headers:
        for name, value in set_headers:
            if value is not None:
                out += (name, b": ", value, CRLF)
    if body_framing == 1:
        out += (b"Content-Length: ", b"%d" % content_length, CRLF)
    elif body_framing == 2:
        out.append(CHUNKED_TE)
    if upgrade is not None:
        out += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, CRLF)
    te = req.header(b"te")
    if te is not None and b"trailers" in te.lower():
        out.append(b"Te: trailers\r\n")   # Go keeps "TE: trailers" (gRPC needs it)
    out.append(CRLF)
    return b"".join(out)


def response_head(resp, framing, close, extra_headers, upgrade):
    """Bytes of the response head for the client.

    ``framing``: 0 none/as-is (HEAD, 204, 304: Content-Length kept as sent), 1 Content-Length,
    2 chunked (re-encoded), 3 until close. ``extra_headers``: list of (name, value or None)
    from response middlewares (None deletes).
    """
    conn = resp.header(b"connection")
    drop = HOP
    if conn is not None:
        drop = HOP | {t.strip().lower() for t in conn.split(b",")}
    if framing == 0:
        drop = drop - {b"content-length"}
    out = [status_line(resp.status)]
    overridden = {n for n, _ in extra_headers} if extra_headers else ()
    for name, value in resp.headers:
        lname = name.lower()
        if lname in drop or lname in overridden:
            continue
        out += (name, b": ", value, CRLF)
    if extra_headers:
        for name, value in extra_headers:
            if value is not None:
                out += (name, b": ", value, CRLF)
    if framing == 1:
        out += (b"Content-Length: ", b"%d" % resp.content_length, CRLF)
    elif framing == 2:
        out.append(CHUNKED_TE)
    if upgrade is not None:
        out += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, CRLF)
    elif close:
        out.append(CONN_CLOSE)
    out.append(CRLF)
    return b"".join(out)
