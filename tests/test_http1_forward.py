"""Forwarded heads: hop-by-hop removal, X-Forwarded-* as Traefik sets them, Host/path rewriting,
headers middleware lists, framing re-expressed upstream; response heads back to the client."""
import h11
import pytest

from pyroute import http1


def req(raw):
    return http1.RequestParser().parse(bytearray(raw), 0)


def resp(raw, head_request=False):
    return http1.ResponseParser().parse(bytearray(raw), 0, head_request)


def fields(head):
    """Parse a forwarded request head with h11 (an independent parser): [(lower name, value)]."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    ev = conn.next_event()
    assert isinstance(ev, h11.Request), ev
    return ev, [(bytes(n), bytes(v)) for n, v in ev.headers]


def values(hs, name):
    return [v for n, v in hs if n == name]


FWD = http1.Forwarder(server_name=b"edge-1")


def test_basic_untrusted_forwarding():
    head = FWD.request_head(req(b"GET /p?q=1 HTTP/1.1\r\nHost: a.test\r\nUser-Agent: t\r\n\r\n"), b"10.0.0.7")
    ev, hs = fields(head)
    assert (ev.method, ev.target, ev.http_version) == (b"GET", b"/p?q=1", b"1.1")
    assert head.startswith(b"GET /p?q=1 HTTP/1.1\r\nHost: a.test\r\n") and head.endswith(b"\r\n\r\n")
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert values(hs, b"user-agent") == [b"t"]
    assert values(hs, b"x-real-ip") == [b"10.0.0.7"]
    assert values(hs, b"x-forwarded-for") == [b"10.0.0.7"]
    assert values(hs, b"x-forwarded-proto") == [b"http"]
    assert values(hs, b"x-forwarded-host") == [b"a.test"]
    assert values(hs, b"x-forwarded-port") == [b"80"]
    assert values(hs, b"x-forwarded-server") == [b"edge-1"]


def test_bare_lf_request_is_reserialised_with_crlf():
    head = FWD.request_head(req(b"GET / HTTP/1.0\nHost: a.test\nX-A:  v \n\n"), b"1.2.3.4")
    assert head.count(b"\n") == head.count(b"\r\n") and b"X-A: v\r\n" in head
    assert head.startswith(b"GET / HTTP/1.1\r\n")


def test_untrusted_peer_x_headers_dropped_including_underscore_spellings():
    raw = (b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-Ip: 6.6.6.6\r\n"
           b"X-Forwarded-Prefix: //evil.test/\r\nX_Forwarded_Proto: https\r\nX-Forwarded-Host: evil\r\n"
           b"X-Forwarded-Uri: /x\r\nX-Forwarded-Tls-Client-Cert: zz\r\nX-Scheme: https\r\n\r\n")
    head = FWD.request_head(req(raw), b"127.0.0.1")
    assert b"6.6.6.6" not in head and b"evil" not in head and b"X_Forwarded" not in head
    _, hs = fields(head)
    for name in (b"x-forwarded-prefix", b"x-forwarded-uri", b"x-forwarded-tls-client-cert", b"x-scheme"):
        assert values(hs, name) == []
    assert values(hs, b"x-forwarded-for") == [b"127.0.0.1"]
    assert values(hs, b"x-forwarded-proto") == [b"http"]


def test_trusted_peer_values_kept_and_xff_appended():
    raw = (b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n"
           b"X-Forwarded-Proto: https\r\nX-Real-Ip: 1.1.1.1\r\nX-Forwarded-Host: orig.test\r\n"
           b"X-Forwarded-Server: spoof\r\n\r\n")
    _, hs = fields(FWD.request_head(req(raw), b"10.0.0.1", True))
    assert values(hs, b"x-forwarded-for") == [b"1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1"]
    assert values(hs, b"x-forwarded-proto") == [b"https"]
    assert values(hs, b"x-forwarded-port") == [b"443"]     # from the trusted proto
    assert values(hs, b"x-real-ip") == [b"1.1.1.1"]
    assert values(hs, b"x-forwarded-host") == [b"orig.test"]
    assert values(hs, b"x-forwarded-server") == [b"edge-1"]  # always Traefik's own


def test_tls_entry_point_and_ports():
    fwd = http1.Forwarder(server_name=b"s", tls=True)
    _, hs = fields(fwd.request_head(req(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"), b"1.2.3.4"))
    assert values(hs, b"x-forwarded-proto") == [b"https"] and values(hs, b"x-forwarded-port") == [b"443"]
    _, hs = fields(fwd.request_head(req(b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"), b"1.2.3.4"))
    assert values(hs, b"x-forwarded-port") == [b"8443"]
    _, hs = fields(FWD.request_head(req(b"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n"), b"1.2.3.4"))
    assert values(hs, b"x-forwarded-port") == [b"80"]


def test_websocket_proto_and_upgrade_kept():
    raw = (b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Key: k\r\n\r\n")
    head = http1.Forwarder(server_name=b"s", tls=True).request_head(req(raw), b"1.2.3.4")
    assert b"X-Forwarded-Proto: wss\r\n" in head
    assert b"Connection: Upgrade\r\nUpgrade: websocket\r\n" in head and b"keep-alive" not in head
    assert b"Sec-WebSocket-Key: k\r\n" in head


def test_hop_by_hop_removed_and_connection_named_headers_cve_2024_45410():
    raw = (b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Secret, x-forwarded-for, X-Real-Ip\r\n"
           b"Keep-Alive: 5\r\nProxy-Connection: keep-alive\r\nTE: trailers, deflate\r\nTrailer: X-T\r\n"
           b"Upgrade: h2c\r\nProxy-Authorization: Basic eA==\r\nX-Secret: s\r\nx-secret: s2\r\nX-Keep: k\r\n\r\n")
    head = FWD.request_head(req(raw), b"127.0.0.1")
    _, hs = fields(head)
    names = [n for n, _ in hs]
    for gone in (b"connection", b"keep-alive", b"proxy-connection", b"trailer", b"upgrade",
                 b"proxy-authorization", b"x-secret"):
        assert gone not in names, gone
    assert values(hs, b"te") == [b"trailers"]                  # only "TE: trailers" survives, as Go
    assert values(hs, b"x-keep") == [b"k"]
    # Connection cannot remove Traefik's managed headers
    assert values(hs, b"x-forwarded-for") == [b"127.0.0.1"] and values(hs, b"x-real-ip") == [b"127.0.0.1"]


def test_framing_reexpressed_upstream():
    head = FWD.request_head(req(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0005\r\n\r\n"), b"1.1.1.1")
    assert b"Content-Length: 5\r\n" in head
    head = FWD.request_head(req(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\tChunked\r\n\r\n"), b"1.1.1.1")
    assert b"Transfer-Encoding: chunked\r\n" in head and b"Chunked" not in head
    head = FWD.request_head(req(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"), b"1.1.1.1")
    assert b"Expect" not in head
    head = FWD.request_head(req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), b"1.1.1.1")
    assert b"Content-Length" not in head and b"Transfer-Encoding" not in head


def test_absolute_form_goes_upstream_in_origin_form_with_its_host():
    head = FWD.request_head(req(b"GET http://a.test/x?y HTTP/1.1\r\nHost: evil.test\r\n\r\n"), b"1.1.1.1")
    assert head.startswith(b"GET /x?y HTTP/1.1\r\nHost: a.test\r\n") and b"evil" not in head
    head = FWD.request_head(req(b"GET http://a.test HTTP/1.1\r\nHost: evil.test\r\n\r\n"), b"1.1.1.1")
    assert head.startswith(b"GET / HTTP/1.1\r\nHost: a.test\r\n")


def test_pass_host_header_false_and_path_replaced():
    r = req(b"GET /api/v1/x?q=2 HTTP/1.0\r\nHost: a.test:8080\r\n\r\n")
    head = FWD.request_head(r, b"1.1.1.1", False, b"10.0.0.9:3000", b"/x")
    assert head.startswith(b"GET /x?q=2 HTTP/1.1\r\nHost: 10.0.0.9:3000\r\n")
    _, hs = fields(head)
    assert values(hs, b"x-forwarded-host") == [b"a.test:8080"] and values(hs, b"x-forwarded-port") == [b"8080"]
    with pytest.raises(ValueError):
        FWD.request_head(r, b"1.1.1.1", False, None, b"no-slash")
    with pytest.raises(ValueError):
        FWD.request_head(r, b"1.1.1.1", False, b"bad\r\nhost")


def test_headers_middleware_set_and_remove():
    fwd = http1.Forwarder(server_name=b"s", request_set=[(b"X-Env", b"prod"), (b"X-Forwarded-Proto", b"https")],
                          request_remove=[b"User-Agent", b"X-Env"],
                          response_set=[(b"X-Frame-Options", b"DENY")], response_remove=[b"server"])
    r = req(b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: u\r\nuser-agent: u2\r\nX-Env: dev\r\n\r\n")
    _, hs = fields(fwd.request_head(r, b"1.1.1.1"))
    assert values(hs, b"user-agent") == [] and values(hs, b"x-env") == [b"prod"]
    assert values(hs, b"x-forwarded-proto") == [b"https"]       # the middleware wins
    rh = fwd.response_head(resp(b"HTTP/1.1 200 OK\r\nServer: be\r\nX-Frame-Options: SAMEORIGIN\r\nContent-Length: 0\r\n\r\n"))
    assert b"Server" not in rh and b"X-Frame-Options: DENY\r\n" in rh and b"SAMEORIGIN" not in rh
    with pytest.raises(ValueError):
        http1.Forwarder(request_set=[(b"Bad Name", b"v")])
    with pytest.raises(ValueError):
        http1.Forwarder(request_set=[(b"X-A", b"v\r\nInjected: 1")])


def test_forwarded_disabled():
    fwd = http1.Forwarder(server_name=b"s", forwarded=False)
    head = fwd.request_head(req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), b"1.1.1.1")
    assert b"X-Forwarded" not in head and b"X-Real-Ip" not in head


def test_long_heads_use_the_heap_path():
    big = b"".join(b"X-H%d: %s\r\n" % (k, b"v" * 300) for k in range(60))
    r = req(b"GET / HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n")
    head = FWD.request_head(r, b"1.1.1.1")
    _, hs = fields(head)
    assert len([n for n, _ in hs if n.startswith(b"x-h")]) == 60
    rs = resp(b"HTTP/1.1 200 OK\r\n" + big + b"Content-Length: 0\r\n\r\n")
    assert FWD.response_head(rs).count(b"v" * 300) == 60


# ---- responses --------------------------------------------------------------------------------

def test_response_hop_by_hop_and_framing_mirrored():
    rs = resp(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
              b"Transfer-Encoding: chunked\r\nTrailer: X-T\r\nServer: be\r\n\r\n")
    head = FWD.response_head(rs)
    assert head == b"HTTP/1.1 200 OK\r\nTrailer: X-T\r\nServer: be\r\nTransfer-Encoding: chunked\r\n\r\n"
    # HTTP/1.0 client: no chunked, body until close; trailers cannot travel
    head = FWD.response_head(rs, False, False)
    assert head == b"HTTP/1.1 200 OK\r\nServer: be\r\nConnection: close\r\n\r\n"


def test_response_content_length_and_close_rechunked():
    rs = resp(b"HTTP/1.0 200 OK\r\nContent-Length: 0012\r\n\r\n")
    assert FWD.response_head(rs, True, None, True) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n")
    rs = resp(b"HTTP/1.1 200 OK\r\nServer: be\r\n\r\n")           # until close
    assert FWD.response_head(rs, True, True) == b"HTTP/1.1 200 OK\r\nServer: be\r\nTransfer-Encoding: chunked\r\n\r\n"
    rs = resp(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"x\"\r\n\r\n")
    assert FWD.response_head(rs) == b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 50\r\n\r\n"


def test_response_101_and_interim():
    rs = resp(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
              b"Sec-WebSocket-Accept: a\r\n\r\n")
    assert FWD.response_head(rs) == (b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\n"
                                     b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert FWD.response_head(resp(b"HTTP/1.1 100 Continue\r\n\r\n"), False) == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_response_nul_never_reaches_output():
    # the parser refuses it first; the builder only ever sees validated fields
    with pytest.raises(http1.HttpParseError):
        resp(b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n")


def test_wrong_arguments_are_type_errors_not_crashes():
    r = req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(TypeError):
        FWD.request_head(None, b"1.1.1.1")
    with pytest.raises(TypeError):
        FWD.request_head(r, None)
    with pytest.raises(TypeError):
        FWD.response_head(None)
    with pytest.raises(TypeError):
        http1.Request()
    with pytest.raises(TypeError):
        http1.Response()


def test_per_call_extra_headers():
    r = req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head = FWD.request_head(r, b"1.1.1.1", extra=[(b"X-Auth-User", b"alice")])
    assert b"\r\nX-Auth-User: alice\r\n" in head
    rs = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    head = FWD.response_head(rs, extra=[(b"Set-Cookie", b"_srv=abc; Path=/")])
    assert head == b"HTTP/1.1 200 OK\r\nSet-Cookie: _srv=abc; Path=/\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(ValueError):
        FWD.response_head(rs, extra=[(b"Set-Cookie", b"a\r\nX: injected")])
    with pytest.raises(ValueError):
        FWD.request_head(r, b"1.1.1.1", extra=[(b"Bad:Name", b"v")])


def test_method_ids():
    assert req(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").method_id == http1.METHOD_HEAD
    assert req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").method_id == http1.METHOD_GET
    assert req(b"get / HTTP/1.1\r\nHost: a\r\n\r\n").method_id == http1.METHOD_OTHER  # case-sensitive


def test_headers_middleware_removing_x_forwarded_headers():
    # Traefik: forwardedheaders first, then customRequestHeaders deletes; Go's ReverseProxy then
    # appends the peer to X-Forwarded-For again (only a nil value omits it)
    fwd = http1.Forwarder(server_name=b"s", request_remove=[b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Real-Ip"])
    r = req(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: https\r\n\r\n")
    _, hs = fields(fwd.request_head(r, b"1.1.1.1", True))
    assert values(hs, b"x-forwarded-for") == [b"1.1.1.1"]
    assert values(hs, b"x-forwarded-proto") == [] and values(hs, b"x-real-ip") == []
    assert values(hs, b"x-forwarded-port") == [b"443"]     # computed from the trusted proto
    fwd = http1.Forwarder(server_name=b"s", request_set=[(b"X-Forwarded-For", b"7.7.7.7")])
    _, hs = fields(fwd.request_head(r, b"1.1.1.1", True))
    assert values(hs, b"x-forwarded-for") == [b"7.7.7.7, 1.1.1.1"]
