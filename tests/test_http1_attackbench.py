"""The codec's verdict on every public attackbench case it decides by itself (framing, chunked,
header syntax, request line, host, header limits) is one the case allows.

attackbench is an optional outside corpus (../shared/tools/attackbench, or $PYROUTE_ATTACKBENCH):
without it this module is skipped. pyroute's own cases for the same rules, end to end, are
tests/test_e2e_attacks.py; the codec's rules have their unit tests in tests/test_http1_*.py.
"""
import json
import re

import pytest

from e2e_support import require_attackbench
from pyroute import http1
from pyroute.errors import HttpParseError

CASES = require_attackbench("cases-public.json") / "cases-public.json"
DECIDED_BY_CODEC = {"framing", "chunked", "header-syntax", "request-line", "host"}
HEADER_LIMIT_CASES = {"limit-header-9k", "limit-many-headers"}


def load_cases():
    data = json.loads(CASES.read_text())
    cases = data if isinstance(data, list) else data["cases"]
    return [c for c in cases if c["category"] in DECIDED_BY_CODEC or c["id"] in HEADER_LIMIT_CASES]


def expand(raw):
    raw = re.sub(r"\{\{(.*?)\*(\d+)\}\}", lambda m: m.group(1) * int(m.group(2)), raw, flags=re.S)
    return raw.encode("latin-1")


def verdict(raw):
    """'accept' (head and body read cleanly), 'incomplete', or the refusal status."""
    buf = bytearray(raw)
    try:
        req = http1.RequestParser().parse(buf, 0)
        if req is None:
            return "incomplete"
        pos = req.head_length
        if req.framing == http1.CHUNKED:
            dec = http1.ChunkedDecoder()
            while not dec.done and pos < len(buf):
                pos = dec.feed(buf, pos)
            if not dec.done:
                return "incomplete"
        return "accept"
    except HttpParseError as e:
        return e.status


def allowed(expect, v):
    for alt in expect.split("|"):
        if v == "accept" and alt in ("accept-normalised", "2xx", "403"):   # 403: the router's answer
            return True
        if v == "incomplete" and alt in ("close", "408", "5xx", "truncated"):
            return True
        if isinstance(v, int) and (alt == str(v) or (alt.endswith("xx") and alt[0] == str(v)[0])):
            return True
    return False


@pytest.mark.parametrize("case", load_cases(), ids=lambda c: c["id"])
def test_codec_verdict_is_allowed(case):
    v = verdict(expand(case["raw"]))
    assert allowed(case["expect"], v), (case["id"], case["expect"], v)


def test_cases_found():
    assert len(load_cases()) >= 30
