"""First checks of the HTTP/1.1 codec's public face (the rule-by-rule tests are in test_http1_*)."""
import pytest

from pyroute import http1
from pyroute.errors import HttpParseError


def test_pipelined_requests_parse_one_after_another():
    buf = bytearray(b"POST /a?x=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello"
                    b"GET http://b.test/p HTTP/1.1\r\nHost: evil.test\r\n\r\n")
    parser = http1.RequestParser()
    first = parser.parse(buf, 0)
    assert (first.method, first.path, first.query, first.host) == (b"POST", b"/a", b"x=1", b"a.test")
    assert first.framing == http1.LENGTH and first.content_length == 5
    second = parser.parse(buf, first.head_length + 5)
    assert (second.method, second.path, second.query, second.host) == (b"GET", b"/p", None, b"b.test")
    assert second.framing == http1.NONE


def test_response_head_framing():
    resp = http1.ResponseParser().parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert (resp.status, resp.reason, resp.framing, resp.keep_alive) == (200, b"OK", http1.CHUNKED, True)


def test_refusal_carries_status():
    with pytest.raises(HttpParseError) as e:
        http1.RequestParser().parse(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n")
    assert e.value.status == 400
