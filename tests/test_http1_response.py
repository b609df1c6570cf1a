"""Response heads from backends: status line, framing by RFC 9112 §6.3, refusals (-> 502)."""
import pytest

from pyroute import http1
from pyroute.errors import HttpParseError


def parse(raw, head_request=False):
    return http1.ResponseParser().parse(bytearray(raw), 0, head_request)


def refused(raw, head_request=False):
    with pytest.raises(HttpParseError) as e:
        r = parse(raw, head_request)
        pytest.fail("accepted: %r" % (r,))
    assert e.value.status == 502
    return e.value.reason


def test_status_line_and_headers():
    r = parse(b"HTTP/1.1 404 Not Found\r\nServer: x\r\nContent-Length: 9\r\n\r\n")
    assert (r.status, r.reason, r.version, r.framing, r.content_length, r.keep_alive) == (
        404, b"Not Found", 11, http1.LENGTH, 9, True)
    assert r.headers == [(b"Server", b"x"), (b"Content-Length", b"9")] and r.header(b"server") == b"x"


def test_empty_reason_with_and_without_space():
    assert parse(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").reason == b""
    assert parse(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").reason == b""


def test_framing_rules():
    assert parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").framing == http1.CHUNKED
    r = parse(b"HTTP/1.1 200 OK\r\n\r\n")
    assert (r.framing, r.keep_alive) == (http1.CLOSE, False)        # until close
    r = parse(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert (r.framing, r.keep_alive) == (http1.NONE, True)
    r = parse(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 500\r\n\r\n")
    assert (r.framing, r.content_length) == (http1.NONE, 500)       # metadata only
    r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", head_request=True)
    assert (r.framing, r.content_length, r.keep_alive) == (http1.NONE, 500, True)
    r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", head_request=True)
    assert r.framing == http1.NONE
    # identical repeated Content-Length is one length (RFC 9110 §8.6)
    assert parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").content_length == 5


def test_interim_and_switching_protocols():
    r = parse(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert r.interim and r.framing == http1.NONE
    assert parse(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n").interim
    r = parse(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert (r.interim, r.framing, r.upgrade, r.keep_alive) == (False, http1.TUNNEL, b"websocket", False)


def test_interim_then_final_in_one_buffer():
    buf = bytearray(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    p = http1.ResponseParser()
    first = p.parse(buf, 0)
    final = p.parse(buf, first.head_length)
    assert first.status == 100 and final.status == 200
    assert buf[first.head_length + final.head_length:] == b"ok"


def test_keep_alive_decision():
    assert parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive is False
    assert parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive is False
    assert parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keep_alive is True


def test_bare_lf_status_line_accepted():
    r = parse(b"HTTP/1.1 200 OK\nContent-Length: 2\n\n")
    assert (r.status, r.content_length, r.headers) == (200, 2, [(b"Content-Length", b"2")])


REFUSED = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    b"HTTP/2.0 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 099 OK\r\n\r\n",
    b"HTTP/1.1 600 OK\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1  200 OK\r\n\r\n",
    b"http/1.1 200 OK\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    b"Content-Length: 5\r\n\r\n",                    # no status line
    b"HTTP/1.1 200 O\x00K\r\n\r\n",
    b"HTTP/1.1 200 OK\rX: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A : a\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
]


@pytest.mark.parametrize("raw", REFUSED, ids=[repr(r[:50]) for r in REFUSED])
def test_refused_with_502(raw):
    refused(raw)


def test_huge_head_refused():
    with pytest.raises(HttpParseError) as e:
        http1.ResponseParser().parse(bytearray(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 40000))
    assert e.value.status == 502
    with pytest.raises(HttpParseError) as e:
        http1.ResponseParser().parse(b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 101 + b"\r\n")
    assert e.value.status == 502


def test_incremental_response():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    p = http1.ResponseParser()
    buf = bytearray()
    for k in range(len(raw) - 1):
        buf.append(raw[k])
        assert p.parse(buf, 0) is None
    buf.append(raw[-1])
    assert p.parse(buf, 0).content_length == 2
