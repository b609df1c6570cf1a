"""Request heads: every strict rule of the codec, with raw bytes (RFC 9112 / RFC 9110)."""
import pytest

from pyroute import http1
from pyroute.errors import HttpParseError


def parse(raw, **limits):
    return http1.RequestParser(**limits).parse(bytearray(raw), 0)


def refused(raw, **limits):
    with pytest.raises(HttpParseError) as e:
        r = parse(raw, **limits)
        pytest.fail("accepted: %r" % (r,))
    return e.value.status


H = b"Host: a.test\r\n"


# ---- accepted forms ---------------------------------------------------------------------------

def test_origin_form_splits_path_and_query_raw():
    r = parse(b"GET /a%2Fb/c?x=1&y=%20?z HTTP/1.1\r\n" + H + b"\r\n")
    assert (r.method, r.target, r.path, r.query) == (b"GET", b"/a%2Fb/c?x=1&y=%20?z", b"/a%2Fb/c", b"x=1&y=%20?z")
    assert (r.version, r.host, r.framing, r.content_length, r.keep_alive) == (11, b"a.test", http1.NONE, -1, True)
    assert r.headers == [(b"Host", b"a.test")]


def test_empty_query_is_not_none():
    r = parse(b"GET /?  HTTP/1.1\r\n".replace(b"  ", b" ") + H + b"\r\n")
    assert r.query == b"" and r.path == b"/"


def test_absolute_form_host_wins_over_host_header():
    # RFC 9112 §3.2.2: the target's authority is the host; Host is ignored (and replaced upstream)
    r = parse(b"GET http://b.test:81/x?q HTTP/1.1\r\nHost: evil.test\r\n\r\n")
    assert (r.host, r.path, r.query, r.absolute_form) == (b"b.test:81", b"/x", b"q", True)
    r = parse(b"GET HTTPS://b.test HTTP/1.1\r\nHost: evil.test\r\n\r\n")
    assert (r.host, r.path, r.query) == (b"b.test", b"/", None)


def test_connect_authority_form():
    r = parse(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n")
    assert (r.method_id, r.host, r.path) == (6, b"a.test:443", None)


def test_options_asterisk():
    r = parse(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n")
    assert (r.method, r.path, r.target) == (b"OPTIONS", b"*", b"*")


def test_unknown_method_token_is_kept():
    r = parse(b"PROPFIND /d HTTP/1.1\r\n" + H + b"\r\n")
    assert (r.method, r.method_id) == (b"PROPFIND", 0)


def test_http10_without_host_defaults_to_close():
    r = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert (r.version, r.host, r.keep_alive) == (10, b"", False)
    assert parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive is True


def test_connection_close_and_options():
    r = parse(b"GET / HTTP/1.1\r\n" + H + b"Connection: close, X-Foo ,,\tX-Bar\r\n\r\n")
    assert r.keep_alive is False and r.connection_options == [b"X-Foo", b"X-Bar"]


def test_ows_trimmed_and_obs_text_allowed():
    r = parse(b"GET / HTTP/1.1\r\n" + H + b"X-A: \t caf\xe9 \t\r\nX-Empty:\r\n\r\n")
    assert r.headers[1:] == [(b"X-A", b"caf\xe9"), (b"X-Empty", b"")]
    assert r.header(b"x-a") == b"caf\xe9" and r.header(b"X-None") is None


def test_bare_lf_line_endings_accepted():
    # decision (as nginx): LF ends a line in heads; the head is re-serialised with CRLF
    r = parse(b"GET / HTTP/1.1\nHost: a.test\nX-A: 1\n\n")
    assert r.headers == [(b"Host", b"a.test"), (b"X-A", b"1")] and r.head_length == 36


def test_leading_empty_lines_are_skipped():
    buf = b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n"
    r = parse(buf)
    assert r.head_length == len(buf) and r.raw.startswith(b"GET ")


def test_upgrade_only_with_connection_upgrade():
    r = parse(b"GET /ws HTTP/1.1\r\n" + H + b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert r.upgrade == b"websocket"
    assert parse(b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\n\r\n").upgrade is None
    assert parse(b"GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade is None


def test_expect_100_continue():
    r = parse(b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
    assert r.expect_100_continue and r.framing == http1.LENGTH and r.content_length == 3
    assert refused(b"GET / HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\n\r\n") == 417
    assert parse(b"GET / HTTP/1.0\r\nExpect: 200-ok\r\n\r\n").expect_100_continue is False


def test_framing():
    r = parse(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
    assert (r.framing, r.content_length) == (http1.CHUNKED, -1)
    for te in (b"Chunked", b"\tchunked", b", chunked", b"chunked ,"):
        assert parse(b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:" + te + b"\r\n\r\n").framing == http1.CHUNKED
    r = parse(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 000012\r\n\r\n")
    assert (r.framing, r.content_length) == (http1.LENGTH, 12)
    r = parse(b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n")
    assert (r.framing, r.content_length) == (http1.LENGTH, 0)


def test_te_trailers_flag():
    assert parse(b"GET / HTTP/1.1\r\n" + H + b"TE: trailers, deflate\r\n\r\n").te_trailers is True
    assert parse(b"GET / HTTP/1.1\r\n" + H + b"TE: deflate\r\n\r\n").te_trailers is False


# ---- refused: status and rule -----------------------------------------------------------------

REFUSED = [
    # request line
    (b"GET /\r\n\r\n", 400),                                  # HTTP/0.9
    (b"GET / http/1.1\r\n" + H + b"\r\n", 400),               # version is case-sensitive
    (b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
    (b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    (b"GET / HTTP/0.9\r\n" + H + b"\r\n", 505),
    (b"GET / HTTP/1\r\n" + H + b"\r\n", 400),
    (b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),            # space in target
    (b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),              # double SP
    (b" GET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),               # method not a token
    (b"GET /a\x00 HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET /a\x7f HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET /caf\xe9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET /a#f HTTP/1.1\r\n" + H + b"\r\n", 400),            # fragment
    (b"GET /x\\..\\y HTTP/1.1\r\n" + H + b"\r\n", 400),       # backslash
    (b"GET /%zz HTTP/1.1\r\n" + H + b"\r\n", 400),            # bad percent-encoding
    (b"GET /%4 HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET a.test:80 HTTP/1.1\r\n" + H + b"\r\n", 400),       # authority-form outside CONNECT
    (b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"CONNECT a.test HTTP/1.1\r\n" + H + b"\r\n", 400),      # port required
    (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),               # asterisk outside OPTIONS
    (b"GET ftp://a.test/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET http://u@a.test/ HTTP/1.1\r\n" + H + b"\r\n", 400),  # userinfo
    (b"GET http:///x HTTP/1.1\r\n" + H + b"\r\n", 400),       # empty authority
    (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),                # bare CR in request line
    # field syntax
    (b"GET / HTTP/1.1\r\n" + H + b"X-Foo : bar\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X-Foo\t: bar\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b": empty-name\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X\xe9: 1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),      # obs-fold
    (b"GET / HTTP/1.1\r\n Transfer-Encoding: chunked\r\n" + H + b"\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rX-B: c\r\n\r\n", 400),    # bare CR
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),        # NUL
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x0bb\r\n\r\n", 400),        # VT
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x0cb\r\n\r\n", 400),        # FF
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400),        # DEL
    (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x1bb\r\n\r\n", 400),        # ESC
    # Content-Length
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1_0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5 0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1234567890123456789\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \xd9\xa5\r\n\r\n", 400),    # non-ASCII digit
    # Transfer-Encoding
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \x0bchunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \"chunked\"\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunkedx\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: br\r\n\r\n", 501),
    # Host
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n", 400),
    (b"GET / HTTP/1.0\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a.test/../evil\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a.test@evil\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a.test:80a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a test\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    (b"GET http://a.test/ HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    # Connection / Upgrade
    (b"GET / HTTP/1.1\r\n" + H + b"Connection: close;x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"Upgrade: a\r\nUpgrade: b\r\n\r\n", 400),
]


@pytest.mark.parametrize("raw,status", REFUSED, ids=[repr(r[:60]) for r, _ in REFUSED])
def test_refused(raw, status):
    assert refused(raw) == status


def test_valid_hosts():
    for host in (b"a.test", b"a.test:8080", b"127.0.0.1:1", b"[::1]:8443", b"[2001:db8::1]",
                 b"xn--bcher-kva.example", b"a_b.test", b"a%20b", b""):
        assert parse(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").host == host


# ---- limits -----------------------------------------------------------------------------------

def test_request_line_limit_is_414_even_incomplete():
    p = http1.RequestParser(max_line=64)
    with pytest.raises(HttpParseError) as e:
        p.parse(bytearray(b"GET /" + b"a" * 80))
    assert e.value.status == 414
    assert refused(b"GET /" + b"a" * 60 + b" HTTP/1.1\r\n" + H + b"\r\n", max_line=64) == 414
    assert parse(b"GET /" + b"a" * 50 + b" HTTP/1.1\r\n" + H + b"\r\n", max_line=64).path == b"/" + b"a" * 50


def test_default_limits():
    assert refused(b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n" + H + b"\r\n") == 414
    assert parse(b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"A" * 9000 + b"\r\n\r\n").header(b"x-big") == b"A" * 9000
    assert refused(b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"A" * 33000 + b"\r\n\r\n") == 431
    assert len(parse(b"GET / HTTP/1.1\r\n" + H + b"X-H: v\r\n" * 99 + b"\r\n").headers) == 100
    assert refused(b"GET / HTTP/1.1\r\n" + H + b"X-H: v\r\n" * 100 + b"\r\n") == 431


def test_header_section_limit_is_431_before_the_end_arrives():
    p = http1.RequestParser(max_head=1024)
    with pytest.raises(HttpParseError) as e:
        p.parse(bytearray(b"GET / HTTP/1.1\r\n" + b"X-A: " + b"b" * 2000))
    assert e.value.status == 431
    p = http1.RequestParser(max_fields=3)
    with pytest.raises(HttpParseError) as e:
        p.parse(bytearray(b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 4))   # no end yet
    assert e.value.status == 431


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        http1.RequestParser(max_line=1)
    with pytest.raises(ValueError):
        http1.RequestParser(max_fields=0)


# ---- incremental use and pipelining -------------------------------------------------------------

def test_incremental_byte_by_byte_gives_the_same_result():
    raw = (b"POST /up?x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello")
    whole = parse(raw)
    p = http1.RequestParser()
    buf = bytearray()
    got = None
    for k, byte in enumerate(raw):
        buf.append(byte)
        got = p.parse(buf, 0)
        if got is not None:
            break
    assert k == whole.head_length - 1
    assert (got.raw, got.headers, got.head_length) == (whole.raw, whole.headers, whole.head_length)


def test_split_crlf_across_reads():
    p = http1.RequestParser()
    buf = bytearray(b"GET / HTTP/1.1\r\nHost: a\r")
    assert p.parse(buf, 0) is None
    buf += b"\n\r"
    assert p.parse(buf, 0) is None
    buf += b"\n"
    assert p.parse(buf, 0).head_length == len(buf)


def test_pipelined_requests_one_after_another():
    reqs = [b"GET /p%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % k for k in range(5)]
    body = b"POST /b HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc"
    buf = bytearray(b"".join(reqs[:2]) + body + b"".join(reqs[2:]))
    p = http1.RequestParser()
    pos, paths = 0, []
    while pos < len(buf):
        r = p.parse(buf, pos)
        paths.append(r.path)
        pos += r.head_length + max(r.content_length, 0)
    assert paths == [b"/p0", b"/p1", b"/b", b"/p2", b"/p3", b"/p4"]


def test_buffer_growing_after_partial_head_and_compaction():
    p = http1.RequestParser()
    buf = bytearray(b"GET /a HTTP/1.1\r\nHost: a.test\r\n\r\nGET /b HTTP/1.1\r\nHo")
    first = p.parse(buf, 0)
    assert p.parse(buf, first.head_length) is None
    del buf[:first.head_length]          # the server compacts: a new start restarts the search
    buf += b"st: a.test\r\n\r\n"
    assert p.parse(buf, 0).path == b"/b"


def test_result_survives_buffer_mutation():
    buf = bytearray(b"GET /keep HTTP/1.1\r\nHost: a.test\r\n\r\n")
    r = http1.RequestParser().parse(buf, 0)
    buf[:] = b"X" * len(buf)
    assert (r.path, r.host) == (b"/keep", b"a.test")


def test_bytes_buffers_are_accepted_and_others_refused():
    assert http1.RequestParser().parse(b"GET / HTTP/1.1\r\n" + H + b"\r\n").path == b"/"
    with pytest.raises(TypeError):
        http1.RequestParser().parse(memoryview(b"GET / HTTP/1.1\r\n\r\n"))
    with pytest.raises(ValueError):
        http1.RequestParser().parse(bytearray(b"abc"), 10)


def test_many_headers_beyond_inline_storage():
    hdrs = b"".join(b"X-H%d: v%d\r\n" % (k, k) for k in range(90))
    r = parse(b"GET / HTTP/1.1\r\n" + H + hdrs + b"\r\n")
    assert len(r.headers) == 91 and r.headers[90] == (b"X-H89", b"v89")


def test_known_headers_any_case_and_underscore_only_for_x_headers():
    r = parse(b"POST / HTTP/1.1\r\nhOsT: a.test\r\ncOnTeNt-LeNgTh: 3\r\n\r\n")
    assert (r.host, r.content_length) == (b"a.test", 3)
    # Content_Length is another header, not Content-Length (no framing from it)
    r = parse(b"POST / HTTP/1.1\r\n" + H + b"Content_Length: 3\r\n\r\n")
    assert (r.framing, r.content_length) == (http1.NONE, -1)
