"""Fuzzing with hypothesis: arbitrary and mutated bytes never crash the codec, and the codec
accepts exactly what the plain-Python rule oracle accepts (same status when it refuses, same
fields when it accepts). The long campaign is scripts/fuzz_http1.py."""
import os

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyroute import http1
from pyroute.errors import HttpParseError

import http1_oracle as oracle
from test_http1_differential import requests

# HTTP1_FUZZ_EXAMPLES raises the number of examples for long runs outside the suite
SETTINGS = settings(max_examples=int(os.environ.get("HTTP1_FUZZ_EXAMPLES", 400)), deadline=None, suppress_health_check=[HealthCheck.too_slow])

# bytes that matter to HTTP/1.1 framing, plus a few whole snippets that steer into the rules
ATOMS = [b"\r", b"\n", b"\r\n", b" ", b"\t", b"\x00", b"\x0b", b"\x7f", b"\xff", b":", b",", b";",
         b"-", b"_", b"/", b"?", b"%", b"#", b"\\", b"@", b"[", b"]", b"0", b"5", b"a", b"+",
         b"Host: a.test\r\n", b"Content-Length: 5\r\n", b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n",
         b"Transfer-Encoding: identity\r\n", b"Connection: close, upgrade\r\n", b"Upgrade: websocket\r\n",
         b"Expect: 100-continue\r\n", b"Expect: x\r\n", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0",
         b"http://a.test", b"CONNECT ", b"OPTIONS ", b" * ", b"\r\n\r\n"]

atoms = st.sampled_from(ATOMS) | st.binary(min_size=1, max_size=3)


@st.composite
def mutated(draw, base):
    raw = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "replace", "delete"]))
        at = draw(st.integers(0, len(raw)))
        if op == "insert":
            raw[at:at] = draw(atoms)
        elif op == "replace" and at < len(raw):
            raw[at:at + draw(st.integers(1, 3))] = draw(atoms)
        elif at < len(raw):
            del raw[at:at + draw(st.integers(1, 3))]
    return bytes(raw)


def pyroute_request(raw, **limits):
    try:
        r = http1.RequestParser(**limits).parse(bytearray(raw), 0)
    except HttpParseError as e:
        return "error", e.status
    if r is None:
        return oracle.NEED
    return "ok", r


def assert_same_as_oracle(raw, **limits):
    kind, got = pyroute_request(raw, **limits)
    okind, want = oracle.parse_request(raw, **limits)
    assert kind == okind, (raw, got, want)
    if kind == "error":
        assert got == want, raw
    elif kind == "ok":
        assert (got.method, got.target, got.version, got.path, got.query, got.host, got.headers,
                got.framing, got.content_length, got.keep_alive, got.expect_100_continue,
                got.upgrade, got.head_length) == (
            want["method"], want["target"], want["version"], want["path"], want["query"],
            want["host"], want["headers"], want["framing"], want["content_length"],
            want["keep_alive"], want["expect_100_continue"], want["upgrade"], want["head_length"]), raw


valid_head = requests().map(lambda m: m[0])


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_request(raw):
    assert_same_as_oracle(raw)


@SETTINGS
@given(mutated(valid_head))
def test_mutated_requests_match_the_rules(raw):
    assert_same_as_oracle(raw)


@SETTINGS
@given(mutated(valid_head), st.integers(16, 80), st.integers(16, 200), st.integers(1, 6))
def test_mutated_requests_with_small_limits(raw, max_line, max_head, max_fields):
    assert_same_as_oracle(raw, max_line=max_line, max_head=max_head, max_fields=max_fields)


# ---- chunked ----------------------------------------------------------------------------------

@st.composite
def chunked_bodies(draw):
    out = b""
    for payload in draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4)):
        ext = draw(st.sampled_from([b"", b";a=b", b' ;q="x y"', b";x"]))
        out += b"%x%s\r\n%s\r\n" % (len(payload), ext, payload)
    out += b"0\r\n"
    out += b"".join(b"X-T%d: v\r\n" % k for k in range(draw(st.integers(0, 2))))
    return out + b"\r\n" + draw(st.binary(max_size=5))


def pyroute_chunked(data, step, **caps):
    d = http1.ChunkedDecoder(**caps)
    buf = bytearray()
    payload = bytearray()
    pos = 0
    try:
        for k in range(0, max(len(data), 1), step):
            buf += data[k:k + step]
            while not d.done and pos < len(buf):
                pos = d.feed(buf, pos)
                payload += buf[d.data_start:d.data_stop]
            if d.done:
                return "ok", (bytes(payload), pos)
    except HttpParseError as e:
        return "error", e.status
    return "need", bytes(payload)


@SETTINGS
@given(st.one_of(mutated(chunked_bodies()), st.binary(max_size=60)), st.integers(1, 8),
       st.integers(3, 40), st.integers(2, 40))
def test_chunked_matches_the_rules(data, step, max_line, max_trailer):
    want = oracle.decode_chunked(data, max_line=max_line, max_trailer=max_trailer)
    assert pyroute_chunked(data, step, max_line=max_line, max_trailer=max_trailer) == want, data


@SETTINGS
@given(chunked_bodies(), st.integers(1, 8))
def test_valid_chunked_bodies_decode(data, step):
    kind, (payload, end) = pyroute_chunked(data, step)
    assert kind == "ok" and oracle.decode_chunked(data) == ("ok", (payload, end))


# ---- responses: never crash, never accept what the rules refuse ------------------------------------

valid_response = st.sampled_from([
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: keep-alive, x\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200\r\nServer: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"HTTP/1.0 304 Not Modified\r\nETag: x\r\n\r\n",
    b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"])


def pyroute_response(raw, head_request, **limits):
    try:
        r = http1.ResponseParser(**limits).parse(bytearray(raw), 0, head_request)
    except HttpParseError as e:
        return "error", e.status
    return oracle.NEED if r is None else ("ok", r)


def assert_response_same_as_oracle(raw, head_request, **limits):
    kind, got = pyroute_response(raw, head_request, **limits)
    okind, want = oracle.parse_response(raw, 0, head_request, **limits)
    assert kind == okind, (raw, got, want)
    if kind == "error":
        assert got == want == 502
    elif kind == "ok":
        assert (got.status, got.reason, got.version, got.headers, got.content_length, got.framing,
                got.keep_alive, got.upgrade, got.head_length) == tuple(
            want[k] for k in ("status", "reason", "version", "headers", "content_length", "framing",
                              "keep_alive", "upgrade", "head_length")), raw


@SETTINGS
@given(st.one_of(mutated(valid_response), st.binary(max_size=200)), st.booleans())
def test_responses_match_the_rules(raw, head_request):
    assert_response_same_as_oracle(raw, head_request)


@SETTINGS
@given(mutated(valid_response), st.booleans(), st.integers(16, 80), st.integers(16, 200), st.integers(1, 6))
def test_responses_with_small_limits(raw, head_request, max_line, max_head, max_fields):
    assert_response_same_as_oracle(raw, head_request, max_line=max_line, max_head=max_head, max_fields=max_fields)


@SETTINGS
@given(st.one_of(mutated(valid_response), st.binary(max_size=200)), st.booleans())
def test_responses_never_crash_and_accepted_ones_are_clean(raw, head_request):
    try:
        r = http1.ResponseParser().parse(bytearray(raw), 0, head_request)
    except HttpParseError as e:
        assert e.status == 502
        return
    if r is None:
        return
    head = r.raw
    # what it accepted holds no byte a peer could read differently
    body_lines = head.replace(b"\r\n", b"\n").split(b"\n")
    assert all(b"\r" not in line and b"\x00" not in line for line in body_lines)
    names = [n.lower() for n, _ in r.headers]
    assert not (b"content-length" in names and b"transfer-encoding" in names)
    assert names.count(b"transfer-encoding") <= 1
    assert len({v for n, v in r.headers if n.lower() == b"content-length"}) <= 1
    assert 100 <= r.status <= 599
    if r.framing == http1.CHUNKED:
        assert [v.lower() for n, v in r.headers if n.lower() == b"transfer-encoding"][0].strip(b" ,\t") == b"chunked"
    # and the head pyroute would forward reads the same in h11 (an independent parser)
    out = http1.Forwarder(server_name=b"s").response_head(r)
    assert out.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in out[:-4]


# ---- forwarded heads of whatever was accepted -------------------------------------------------------

HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
       b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"expect"}


@SETTINGS
@given(mutated(valid_head), st.booleans(), st.booleans())
def test_forwarded_head_of_any_accepted_request_is_clean(raw, trusted, tls):
    try:
        r = http1.RequestParser().parse(bytearray(raw), 0)
    except HttpParseError:
        return
    if r is None:
        return
    out = http1.Forwarder(server_name=b"s", tls=tls).request_head(r, b"10.0.0.1", trusted)
    again = http1.RequestParser().parse(bytearray(out), 0)       # pyroute reads it back ...
    conn = h11.Connection(h11.SERVER)                            # ... and so does h11
    conn.receive_data(out)
    ev = conn.next_event()
    assert bytes(ev.method) == r.method and again.method == r.method
    names = [n.lower() for n, _ in again.headers]
    assert names.count(b"host") == 1 and again.host == r.host
    assert (again.framing, again.content_length) == (r.framing, r.content_length)
    # Connection cannot remove Traefik's managed X-headers (any '_' spelling, isManagedXHeader)
    named = {o.lower() for o in r.connection_options if o.lower().replace(b"_", b"-") not in oracle._MANAGED_X}
    for n in names:
        assert n not in named, (raw, out)
        assert n not in HOP or (n == b"te" and r.te_trailers) or (
            n == b"transfer-encoding" and r.framing == http1.CHUNKED) or (
            n in (b"connection", b"upgrade") and r.upgrade is not None), (raw, out)
    if not trusted:
        assert names.count(b"x-forwarded-for") == 1 and again.header(b"x-forwarded-for") == b"10.0.0.1"
    assert out.count(b"\n") == out.count(b"\r\n")
