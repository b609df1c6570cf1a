#!/usr/bin/env python3
"""Long fuzz campaign for the HTTP/1.1 codec (atheris / libFuzzer), outside the test suite.

Each input is routed by its first byte to one check:
  0 request head vs the plain-Python rule oracle (tests/http1_oracle.py), default limits
  1 the same with small limits taken from the input
  2 request fed in pieces (split points from the input) == fed whole
  3 chunked body vs the oracle, fed in pieces, small caps
  4 response head vs the oracle (same verdict and fields), forwarded head re-parses
  5 accepted request -> forwarded head -> must re-parse to the same method/target/headers
Findings abort with the input saved by libFuzzer (crash-*). Coverage feedback comes from the
oracle's Python code (atheris instruments it); the Cython side is checked, not instrumented.

Usage: .venv/bin/python scripts/fuzz_http1.py -max_total_time=600 -rss_limit_mb=2048 [corpus_dir]
"""
import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

with atheris.instrument_imports():
    import http1_oracle as oracle

from pyroute import http1  # noqa: E402
from pyroute.errors import HttpParseError  # noqa: E402

FWD = http1.Forwarder(server_name=b"fuzz")
SEEDS = [
    b"\x00GET /a?b=c HTTP/1.1\r\nHost: a.test\r\nUser-Agent: x\r\n\r\n",
    b"\x00POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"\x00GET http://a.test/x HTTP/1.1\r\nHost: b\r\nConnection: upgrade, x-a\r\nUpgrade: ws\r\n\r\n",
    b"\x01\x20\x40\x03CONNECT a.test:443 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    b"\x02\x05\x11GET / HTTP/1.0\nHost: a\n\n",
    b"\x03\x04\x10\x105;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"\x04HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close, x\r\n\r\n",
    b"\x04HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"\x05OPTIONS * HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
]


def pyroute_request(raw, **limits):
    try:
        r = http1.RequestParser(**limits).parse(bytearray(raw), 0)
    except HttpParseError as e:
        return "error", e.status
    return oracle.NEED if r is None else ("ok", r)


def check_request(raw, **limits):
    kind, got = pyroute_request(raw, **limits)
    okind, want = oracle.parse_request(raw, **limits)
    if kind != okind or (kind == "error" and got != want):
        raise AssertionError("request verdict differs: pyroute %r oracle %r for %r" % (got, want, raw))
    if kind == "ok":
        mine = (got.method, got.target, got.version, got.path, got.query, got.host, got.headers,
                got.framing, got.content_length, got.keep_alive, got.expect_100_continue,
                got.upgrade, got.head_length)
        theirs = tuple(want[k] for k in ("method", "target", "version", "path", "query", "host",
                                         "headers", "framing", "content_length", "keep_alive",
                                         "expect_100_continue", "upgrade", "head_length"))
        if mine != theirs:
            raise AssertionError("request fields differ: %r vs %r for %r" % (mine, theirs, raw))
    return got if kind == "ok" else None


def check_split(cuts, raw):
    whole = pyroute_request(raw)
    p = http1.RequestParser()
    buf = bytearray()
    last = 0
    got = oracle.NEED
    points = sorted({c % (len(raw) + 1) for c in cuts}) + [len(raw)]
    for point in points:
        buf += raw[last:point]
        last = point
        try:
            r = p.parse(buf, 0)
        except HttpParseError as e:
            got = ("error", e.status)
            break
        if r is not None:
            got = ("ok", r)
            break
    if whole[0] != got[0]:
        raise AssertionError("split verdict differs: %r vs %r for %r" % (whole, got, raw))
    if got[0] == "ok" and (got[1].raw, got[1].headers) != (whole[1].raw, whole[1].headers):
        raise AssertionError("split result differs for %r" % raw)
    # an incomplete head may be refused earlier in pieces only for limits it already broke
    if got[0] == "error" and got[1] != whole[1]:
        raise AssertionError("split status differs: %r vs %r for %r" % (whole, got, raw))


def check_chunked(step, max_line, max_trailer, data):
    want = oracle.decode_chunked(data, max_line=max_line, max_trailer=max_trailer)
    d = http1.ChunkedDecoder(max_line=max_line, max_trailer=max_trailer)
    buf = bytearray()
    payload = bytearray()
    pos = 0
    got = None
    try:
        for k in range(0, max(len(data), 1), step):
            buf += data[k:k + step]
            while not d.done and pos < len(buf):
                pos = d.feed(buf, pos)
                payload += buf[d.data_start:d.data_stop]
            if d.done:
                got = ("ok", (bytes(payload), pos))
                break
        if got is None:
            got = ("need", bytes(payload))
    except HttpParseError as e:
        got = ("error", e.status)
    if got != want:
        raise AssertionError("chunked differs: pyroute %r oracle %r for %r" % (got, want, data))


def check_response(head_request, raw):
    want = oracle.parse_response(raw, 0, head_request)
    try:
        r = http1.ResponseParser().parse(bytearray(raw), 0, head_request)
    except HttpParseError as e:
        if want != ("error", e.status) or e.status != 502:
            raise AssertionError("response verdict differs: %r vs %r for %r" % (e.status, want, raw))
        return
    if r is None:
        if want != oracle.NEED:
            raise AssertionError("response verdict differs: need vs %r for %r" % (want, raw))
        return
    mine = (r.status, r.reason, r.version, r.headers, r.content_length, r.framing, r.keep_alive,
            r.upgrade, r.head_length)
    if want[0] != "ok" or mine != tuple(want[1][k] for k in (
            "status", "reason", "version", "headers", "content_length", "framing", "keep_alive",
            "upgrade", "head_length")):
        raise AssertionError("response differs: %r vs %r for %r" % (mine, want, raw))
    out = FWD.response_head(r)
    again = http1.ResponseParser().parse(bytearray(out), 0, head_request)
    if again is None or again.status != r.status:
        raise AssertionError("forwarded response head does not re-parse: %r" % out)


def check_forward(raw):
    r = check_request(raw)
    if r is None:
        return
    out = FWD.request_head(r, b"10.0.0.1", bool(len(raw) & 1))
    again = http1.RequestParser().parse(bytearray(out), 0)
    if again is None or (again.method, again.framing, again.content_length) != (r.method, r.framing, r.content_length):
        raise AssertionError("forwarded head does not re-parse the same: %r -> %r" % (raw, out))
    if r.path is not None and r.method_id != 6 and again.path != r.path:
        raise AssertionError("forwarded path differs: %r -> %r" % (raw, out))


def one_input(data):
    if not data:
        return
    mode, rest = data[0] % 6, data[1:]
    if mode == 0:
        check_request(rest)
    elif mode == 1 and len(rest) > 3:
        check_request(rest[3:], max_line=16 + rest[0], max_head=16 + rest[1] * 2, max_fields=1 + rest[2] % 8)
    elif mode == 2 and len(rest) > 2:
        check_split(rest[:2], rest[2:])
    elif mode == 3 and len(rest) > 3:
        check_chunked(1 + rest[0] % 9, 3 + rest[1] % 60, 2 + rest[2] % 60, rest[3:])
    elif mode == 4:
        check_response(bool(len(rest) & 1), rest)
    elif mode == 5:
        check_forward(rest)


def main():
    args = sys.argv
    corpus = [a for a in args[1:] if not a.startswith("-")]
    if corpus:
        os.makedirs(corpus[0], exist_ok=True)
        for k, seed in enumerate(SEEDS):
            path = os.path.join(corpus[0], "seed-%02d" % k)
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(seed)
    else:
        for seed in SEEDS:
            one_input(seed)
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
