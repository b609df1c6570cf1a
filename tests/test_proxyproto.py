"""The PROXY protocol header parser (engine/proxyproto.pyx), cases ported from
pires/go-proxyproto v0.8 (v1_test.go, v2_test.go: valid and invalid headers)."""
import pytest

from pyroute._engine import proxyproto
from pyroute._engine.proxyproto import parse, v1_header, v2_header

SIGV2 = b"\r\n\r\n\x00\r\nQUIT\n"
V4_ADDRS = bytes([127, 0, 0, 1, 127, 0, 0, 1]) + (1000).to_bytes(2, "big") + (2000).to_bytes(2, "big")


@pytest.mark.parametrize("line,rest,ip", [
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", b"GET / HTTP/1.1\r\n",
     b"192.168.0.1"),
    (b"PROXY TCP6 ffff::ffff 2001:db8::2 56324 443\r\n", b"", b"ffff::ffff"),
    (b"PROXY TCP6 ::ffff:10.1.2.3 ::1 1 2\r\n", b"", b"10.1.2.3"),     # Is4In6
    (b"PROXY UNKNOWN\r\n", b"\x16\x03", None),                        # LOCAL
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", b"", None),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 extra\r\n", b"", b"1.2.3.4"),    # Go ignores extras
])
def test_v1_valid(line, rest, ip):
    assert parse(line + rest) == (len(line), ip)


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",        # ErrLineMustEndWithCrlf
    b"PROXY \r\n",                                             # family missing
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",                     # unknown family
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",                       # too few tokens
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",                 # ErrInvalidPortNumber
    b"PROXY TCP4 1.2.3.4 5.6.7.8 x 2\r\n",
    b"PROXY TCP4 ffff::1 5.6.7.8 1 2\r\n",                     # v6 address under TCP4
    b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",                         # v4 address under TCP6
    b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",                     # netip: no leading zeros
    b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",                     # single spaces only
    b"PROXY " + b"A" * 101 + b"\r\n",                           # ErrVersion1HeaderTooLong
    b"PROXY " + b"1" * 120,                                     # no LF within 107 bytes
])
def test_v1_invalid(data):
    with pytest.raises(ValueError):
        parse(data)


@pytest.mark.parametrize("data,expected", [
    (SIGV2 + b"\x21\x11\x00\x0c" + V4_ADDRS, (28, b"127.0.0.1")),
    (SIGV2 + b"\x21\x11\x00\x10" + V4_ADDRS + b"\x01\x00\x01x", (32, b"127.0.0.1")),  # TLV
    (SIGV2 + b"\x20\x00\x00\x00", (16, None)),                 # LOCAL
    (SIGV2 + b"\x20\x11\x00\x0c" + V4_ADDRS, (28, None)),      # LOCAL with addresses
    (v2_header("2001:db8::1", "2001:db8::2", 5, 6), (52, b"2001:db8::1")),
    (v2_header("::ffff:10.0.0.9", "::1", 5, 6), (52, b"10.0.0.9")),
    (SIGV2 + b"\x21\x31\x00\xd8" + b"\x00" * 216, (232, None)),  # AF_UNIX: own address
])
def test_v2_valid(data, expected):
    assert parse(data) == expected


@pytest.mark.parametrize("data", [
    SIGV2 + b"\x11\x11\x00\x0c" + V4_ADDRS,      # version 1 in a v2 header
    SIGV2 + b"\x22\x11\x00\x0c" + V4_ADDRS,      # unknown command
    SIGV2 + b"\x21\x00\x00\x00",                 # PROXY with UNSPEC
    SIGV2 + b"\x21\x11\x00\x0b" + V4_ADDRS[:11],  # length below the v4 addresses
    SIGV2 + b"\x21\x21\x00\x0c" + V4_ADDRS,      # length below the v6 addresses
    SIGV2 + b"\x21\x41\x00\x0c" + V4_ADDRS,      # unknown family
    SIGV2 + b"\x21\x11\x10\x00" + V4_ADDRS,      # 16 + 4096 bytes: beyond Go's bufio buffer
])
def test_v2_invalid(data):
    with pytest.raises(ValueError):
        parse(data)


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00", b"POST / HTTP/1.1\r\n", b"PUT /",
    b"\r\n\r\nGET", b"PRI * HTTP/2.0",
])
def test_no_header(data):
    assert parse(data) == (0, None)


def test_incremental_needs_more():
    full = v1_header("203.0.113.7", "127.0.0.1", 5000, 80)
    for i in range(1, len(full)):
        assert parse(full[:i]) is None, full[:i]
    assert parse(full) == (len(full), b"203.0.113.7")
    full = v2_header("203.0.113.7", "127.0.0.1", 5000, 80)
    for i in range(1, len(full)):
        assert parse(full[:i]) is None, full[:i]
    assert parse(full) == (len(full), b"203.0.113.7")
    assert parse(b"") is None
    assert proxyproto.MAX_HEADER == 4096


# ---- static configuration: entryPoints.<name>.proxyProtocol ------------------------------

def _ep(raw):
    from pyroute.static import static_from_mapping
    return static_from_mapping({"entryPoints": {"web": dict(address=":8000", **raw)}},
                               "static.yaml").entry_points["web"]


def test_static_proxy_protocol_is_parsed():
    assert _ep({}).proxy_protocol is None
    ep = _ep({"proxyProtocol": {"trustedIPs": ["10.0.0.0/8", "192.0.2.1"]}})
    assert ep.proxy_protocol == {"trusted_ips": ["10.0.0.0/8", "192.0.2.1"], "insecure": False}
    assert _ep({"proxyProtocol": {"insecure": True}}).proxy_protocol["insecure"] is True


@pytest.mark.parametrize("raw,field,message", [
    ({}, "entryPoints.web.proxyProtocol.trustedIPs", "no trusted IPs provided"),
    ({"trustedIPs": ["10.0.0.0/33"]}, "entryPoints.web.proxyProtocol.trustedIPs[0]",
     "invalid IP or CIDR"),
    ({"trustedIPs": ["10.0.0.0/8"], "depth": 1}, "entryPoints.web.proxyProtocol.depth",
     "unknown key"),
    ({"insecure": "yes"}, "entryPoints.web.proxyProtocol.insecure", "expected true or false"),
])
def test_static_proxy_protocol_errors(raw, field, message):
    from pyroute.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        _ep({"proxyProtocol": raw})
    assert e.value.field == field and message in str(e.value) and e.value.file == "static.yaml"
