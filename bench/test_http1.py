"""HTTP/1.1 codec: pyroute vs httptools (llhttp) vs h11, parsing a typical browser GET and a
typical response head into a usable result (method/status, target, headers reachable, framing
decided), and building the forwarded head.

Run: .venv/bin/python -m pytest bench/test_http1.py --benchmark-only
Groups: ``request`` and ``response`` (names end in _pyroute, _httptools, _h11), ``forward``.
"""
import h11
import httptools
import pytest

from pyroute import http1

# A Chrome-like navigation GET: 12 header lines, ~500 bytes.
REQUEST = (
    b"GET /articles/2024/11/http-smuggling-explained?ref=home&utm_source=feed HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/130.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Referer: https://www.example.com/\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: session=7f3c2a91b4e8d6f0; theme=dark\r\n"
    b"\r\n"
)

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Thu, 26 Nov 2026 22:10:31 GMT\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Length: 14823\r\n"
    b"Connection: keep-alive\r\n"
    b"Cache-Control: private, max-age=0\r\n"
    b"ETag: \"5f3a9c2e-39e7\"\r\n"
    b"Last-Modified: Wed, 25 Nov 2026 18:02:11 GMT\r\n"
    b"Vary: Accept-Encoding\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"\r\n"
)


def test_fixture_shapes():
    assert 450 <= len(REQUEST) <= 560 and REQUEST.count(b"\r\n") == 14


# ---- requests ---------------------------------------------------------------------------------

@pytest.mark.benchmark(group="request")
def test_request_pyroute(benchmark):
    parser = http1.RequestParser()
    buf = bytearray(REQUEST)

    def run():
        r = parser.parse(buf, 0)
        # the usable result: method and target as objects, framing decided, headers reachable
        return r.method, r.target, r.framing, r.keep_alive, r

    method, target, framing, keep_alive, r = benchmark(run)
    assert (method, framing, keep_alive, len(r.headers)) == (b"GET", http1.NONE, True, 12)


@pytest.mark.benchmark(group="request")
def test_request_headers_as_objects_pyroute(benchmark):
    # same, plus every header materialised as (name, value) bytes, as httptools' callbacks do
    parser = http1.RequestParser()
    buf = bytearray(REQUEST)

    def run():
        r = parser.parse(buf, 0)
        return r.method, r.target, r.framing, r.keep_alive, r.headers

    method, target, framing, keep_alive, headers = benchmark(run)
    assert len(headers) == 12


class _Collect:
    __slots__ = ("url", "headers", "done")

    def __init__(self):
        self.headers = []
        self.url = None
        self.done = False

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_headers_complete(self):
        self.done = True


@pytest.mark.benchmark(group="request")
def test_request_httptools(benchmark):
    sink = _Collect()
    parser = httptools.HttpRequestParser(sink)

    def run():
        sink.headers = []
        parser.feed_data(REQUEST)
        return parser.get_method(), sink.url, parser.should_keep_alive(), sink.headers

    method, url, keep_alive, headers = benchmark(run)
    assert (method, keep_alive, len(headers)) == (b"GET", True, 12)


@pytest.mark.benchmark(group="request")
def test_request_h11(benchmark):
    def run():
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(REQUEST)
        ev = conn.next_event()
        return ev.method, ev.target, ev.headers

    method, target, headers = benchmark(run)
    assert method == b"GET" and len(headers) == 12


# ---- responses --------------------------------------------------------------------------------
# A Content-Length response leaves llhttp waiting for the body, so every contender gets a fresh
# parser per response head (what a new upstream exchange costs), pyroute included.

@pytest.mark.benchmark(group="response")
def test_response_pyroute(benchmark):
    def run():
        r = http1.ResponseParser().parse(RESPONSE, 0)
        return r.status, r.framing, r.content_length, r.keep_alive, r

    status, framing, length, keep_alive, r = benchmark(run)
    assert (status, framing, length, keep_alive, len(r.headers)) == (200, http1.LENGTH, 14823, True, 10)


@pytest.mark.benchmark(group="response")
def test_response_reused_parser_pyroute(benchmark):
    parser = http1.ResponseParser()

    def run():
        r = parser.parse(RESPONSE, 0)
        return r.status, r.framing, r.content_length, r.keep_alive, r

    assert benchmark(run)[0] == 200


@pytest.mark.benchmark(group="response")
def test_response_headers_as_objects_pyroute(benchmark):
    def run():
        r = http1.ResponseParser().parse(RESPONSE, 0)
        return r.status, r.framing, r.content_length, r.keep_alive, r.headers

    assert len(benchmark(run)[4]) == 10


class _CollectResponse(_Collect):
    __slots__ = ()

    def on_status(self, status):
        pass


@pytest.mark.benchmark(group="response")
def test_response_httptools(benchmark):
    def run():
        sink = _CollectResponse()
        parser = httptools.HttpResponseParser(sink)
        parser.feed_data(RESPONSE)
        return parser.get_status_code(), parser.should_keep_alive(), sink.headers

    status, keep_alive, headers = benchmark(run)
    assert (status, keep_alive, len(headers)) == (200, True, 10)


@pytest.mark.benchmark(group="response")
def test_response_h11(benchmark):
    def run():
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
        conn.receive_data(RESPONSE)
        ev = conn.next_event()
        return ev.status_code, ev.headers

    status, headers = benchmark(run)
    assert status == 200 and len(headers) == 10


# ---- forwarding -------------------------------------------------------------------------------

@pytest.mark.benchmark(group="forward")
def test_forward_request_head_pyroute(benchmark):
    req = http1.RequestParser().parse(bytearray(REQUEST), 0)
    fwd = http1.Forwarder(server_name=b"edge-1")
    head = benchmark(fwd.request_head, req, b"10.1.2.3", False)
    assert head.startswith(b"GET /articles/") and b"X-Forwarded-For: 10.1.2.3\r\n" in head
    assert b"Connection" not in head


@pytest.mark.benchmark(group="forward")
def test_forward_response_head_pyroute(benchmark):
    resp = http1.ResponseParser().parse(RESPONSE, 0)
    fwd = http1.Forwarder(server_name=b"edge-1")
    head = benchmark(fwd.response_head, resp, True)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 14823\r\n" in head
