"""Differential tests: generated valid messages must read the same in pyroute, h11 and httptools
(method, target, version, headers, framing), and exactly as the plain-Python rule oracle says."""
import os

import h11
import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyroute import http1

from http1_oracle import parse_request as oracle_request

# HTTP1_FUZZ_EXAMPLES raises the number of examples for long runs outside the suite
SETTINGS = settings(max_examples=int(os.environ.get("HTTP1_FUZZ_EXAMPLES", 300)), deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PCHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
SPECIAL = {b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"expect",
           b"te", b"keep-alive", b"trailer", b"proxy-connection"}

LLHTTP_METHODS = {b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"}
token = st.text(TOKEN_CHARS, min_size=1, max_size=12).map(str.encode)
method = st.one_of(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD"]),
                   st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10).map(str.encode))
segment = st.text(PCHARS, max_size=10).map(str.encode)
path = st.lists(segment, min_size=1, max_size=5).map(lambda s: b"/" + b"/".join(s))
query = st.one_of(st.none(), st.text(PCHARS + "/?", max_size=20).map(str.encode))
field_name = token.filter(lambda n: n.lower() not in SPECIAL)
# field values: visible ASCII with inner spaces/tabs (leading/trailing whitespace is OWS)
field_value = st.text("".join(chr(c) for c in range(0x21, 0x7f)) + " \t", max_size=30).map(
    lambda s: s.strip(" \t").encode())
host = st.one_of(st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z]{2,5}){0,2}(:[0-9]{1,5})?\Z"),
                 st.just("[::1]:8080")).map(str.encode)


@st.composite
def requests(draw, known_methods=False):
    # llhttp (httptools) only knows registered methods; h11 and pyroute take any token
    m = draw(method.filter(lambda m: m in LLHTTP_METHODS) if known_methods else method)
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    target = draw(path)
    q = draw(query)
    if q is not None:
        target += b"?" + q
    headers = draw(st.lists(st.tuples(field_name, field_value), max_size=12))
    pos = draw(st.integers(0, len(headers)))
    if version == b"HTTP/1.1" or draw(st.booleans()):
        headers.insert(pos, (draw(st.sampled_from([b"Host", b"host", b"HOST"])), draw(host)))
    framing = draw(st.sampled_from(["none", "length", "chunked"] if version == b"HTTP/1.1" else ["none", "length"]))
    body = b""
    if framing == "length":
        body = draw(st.binary(max_size=20))
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "chunked":
        payload = draw(st.binary(min_size=1, max_size=20))
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    if draw(st.booleans()):
        headers.append((b"Connection", draw(st.sampled_from([b"close", b"keep-alive"]))))
    raw = m + b" " + target + b" " + version + b"\r\n"
    raw += b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n"
    return raw, body, headers, framing


def framing_code(name):
    return {"none": http1.NONE, "length": http1.LENGTH, "chunked": http1.CHUNKED}[name]


@SETTINGS
@given(requests())
def test_same_as_h11(msg):
    raw, body, headers, framing = msg
    r = http1.RequestParser().parse(bytearray(raw + body), 0)
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw + body)
    ev = conn.next_event()
    assert isinstance(ev, h11.Request)
    assert (r.method, r.target) == (bytes(ev.method), bytes(ev.target))
    assert r.version == {b"1.1": 11, b"1.0": 10}[bytes(ev.http_version)]
    assert [(n.lower(), v) for n, v in r.headers] == [(bytes(n), bytes(v)) for n, v in ev.headers]
    assert r.framing == framing_code(framing)
    h11_framing = ("chunked" if any(n == b"transfer-encoding" for n, _ in ev.headers)
                   else "length" if any(n == b"content-length" for n, _ in ev.headers) else "none")
    assert h11_framing == framing
    assert r.head_length == len(raw)


class _Sink:
    def __init__(self):
        self.url = b""
        self.headers = []
        self.body = b""
        self.complete = False
        self.parser = None
        self.keep_alive = None

    def on_headers_complete(self):
        # llhttp resets its flags after the message: ask while the head is current
        self.keep_alive = self.parser.should_keep_alive()

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        self.complete = True


@SETTINGS
@given(requests(known_methods=True))
def test_same_as_httptools(msg):
    raw, body, headers, framing = msg
    r = http1.RequestParser().parse(bytearray(raw + body), 0)
    sink = _Sink()
    p = sink.parser = httptools.HttpRequestParser(sink)
    p.feed_data(raw + body)
    assert sink.complete
    assert (r.method, r.target) == (p.get_method(), sink.url)
    assert r.version == {"1.1": 11, "1.0": 10}[p.get_http_version()]
    assert r.headers == sink.headers
    assert r.keep_alive == sink.keep_alive
    # the framing pyroute decided delimits the same body llhttp delivered
    if r.framing == http1.LENGTH:
        assert body[:r.content_length] == sink.body
    elif r.framing == http1.CHUNKED:
        d = http1.ChunkedDecoder()
        pos, data = 0, b""
        while not d.done:
            pos = d.feed(body, pos)
            data += body[d.data_start:d.data_stop]
        assert data == sink.body and pos == len(body)
    else:
        assert sink.body == b""


@SETTINGS
@given(requests())
def test_same_as_oracle_on_valid_messages(msg):
    raw, body, headers, framing = msg
    r = http1.RequestParser().parse(bytearray(raw), 0)
    kind, want = oracle_request(raw)
    assert kind == "ok"
    assert (r.method, r.target, r.version, r.path, r.query, r.host, r.headers, r.framing,
            r.content_length, r.keep_alive) == (
        want["method"], want["target"], want["version"], want["path"], want["query"], want["host"],
        want["headers"], want["framing"], want["content_length"], want["keep_alive"])


@SETTINGS
@given(requests(), st.lists(st.integers(0, 10_000), max_size=6))
def test_split_anywhere_gives_the_same_head(msg, cuts):
    raw, body, _, _ = msg
    whole = http1.RequestParser().parse(bytearray(raw), 0)
    p = http1.RequestParser()
    buf = bytearray()
    points = sorted({c % (len(raw) + 1) for c in cuts}) + [len(raw)]
    got, last = None, 0
    for point in points:
        buf += raw[last:point]
        last = point
        got = p.parse(buf, 0)
        if got is not None:
            break
    assert got is not None and last == len(raw)
    assert (got.raw, got.headers, got.framing, got.head_length) == (whole.raw, whole.headers, whole.framing, whole.head_length)


@SETTINGS
@given(st.lists(requests(), min_size=1, max_size=4))
def test_pipelined_generated_requests(msgs):
    buf = bytearray(b"".join(raw + body for raw, body, _, _ in msgs))
    p = http1.RequestParser()
    pos = 0
    for raw, body, _, framing in msgs:
        r = p.parse(buf, pos)
        assert r.raw == raw
        pos += r.head_length
        if r.framing == http1.LENGTH:
            pos += r.content_length
        elif r.framing == http1.CHUNKED:
            d = http1.ChunkedDecoder()
            while not d.done:
                pos = d.feed(buf, pos)
    assert pos == len(buf)


# ---- responses ---------------------------------------------------------------------------------

@st.composite
def responses(draw):
    status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 500, 503]))
    reason = draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ", max_size=15)).strip().encode()
    headers = draw(st.lists(st.tuples(field_name, field_value), max_size=10))
    framing = "none" if status in (204, 304) else draw(st.sampled_from(["length", "chunked"]))
    if framing == "length":
        headers.append((b"Content-Length", str(draw(st.integers(0, 10**9))).encode()))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
    raw = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    raw += b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n"
    return raw, status, reason, headers, framing


@SETTINGS
@given(responses())
def test_responses_same_as_h11_and_httptools(msg):
    raw, status, reason, headers, framing = msg
    r = http1.ResponseParser().parse(bytearray(raw), 0)
    assert (r.status, r.reason, r.headers) == (status, reason, headers)
    assert r.framing == framing_code(framing)
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    conn.receive_data(raw)
    ev = conn.next_event()
    assert (ev.status_code, bytes(ev.reason)) == (r.status, r.reason)
    assert [(bytes(n), bytes(v)) for n, v in ev.headers] == [(n.lower(), v) for n, v in r.headers]
    sink = _Sink()
    hp = sink.parser = httptools.HttpResponseParser(sink)
    hp.feed_data(raw)
    assert (hp.get_status_code(), sink.headers) == (r.status, r.headers)
    assert sink.keep_alive == r.keep_alive
