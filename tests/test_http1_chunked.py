"""Chunked bodies (RFC 9112 §7.1): streaming decoder over buffer slices, encoder, length counting."""
import pytest

from pyroute import http1
from pyroute.errors import HttpParseError


def decode(raw, step=None, **kw):
    """Feed raw (in pieces of `step` bytes when given); return payload, end offset."""
    d = http1.ChunkedDecoder(**kw)
    buf = bytearray()
    data = bytearray()
    pos = 0
    pieces = [raw] if step is None else [raw[k:k + step] for k in range(0, len(raw), step)]
    for piece in pieces:
        buf += piece
        while not d.done:
            new = d.feed(buf, pos)
            data += buf[d.data_start:d.data_stop]
            assert d.data_stop <= new
            if new == pos and d.data_start == d.data_stop:
                break
            pos = new
            if pos == len(buf):
                break
        if d.done:
            break
    return bytes(data), pos, d


BODY = b"5\r\nhello\r\n1;ext=1;q=\"a b\"\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n"


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7])
def test_decodes_in_any_pieces(step):
    data, end, d = decode(BODY + b"NEXT", step)
    assert data == b"hello 0123456789abcdef" and d.done and d.total == 22
    assert end == len(BODY)


def test_feed_stops_after_one_payload_range_and_raw_range_is_validated():
    d = http1.ChunkedDecoder()
    buf = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    end = d.feed(buf, 0)
    assert (end, buf[d.data_start:d.data_stop]) == (6, b"abc")
    end = d.feed(buf, end)
    assert buf[d.data_start:d.data_stop] == b"de" and not d.done
    end = d.feed(buf, end)
    assert d.done and end == len(buf) and d.data_start == d.data_stop


def test_end_argument_limits_the_view():
    d = http1.ChunkedDecoder()
    buf = b"5\r\nhello\r\n0\r\n\r\n"
    assert d.feed(buf, 0, 5) == 5 and buf[d.data_start:d.data_stop] == b"he"
    assert d.feed(buf, 5) == 8 and buf[d.data_start:d.data_stop] == b"llo"


def test_uppercase_hex_and_leading_zeros():
    assert decode(b"00A\r\n0123456789\r\n000\r\n\r\n")[0] == b"0123456789"


def test_whitespace_before_extension_allowed():
    assert decode(b"3 ;a=b\r\nabc\r\n0\r\n\r\n")[0] == b"abc"


BAD = [
    (b"-5\r\nhello\r\n0\r\n\r\n", 400),
    (b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n", 400),
    (b"+5\r\nhello\r\n0\r\n\r\n", 400),
    (b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    (b" 5\r\nhello\r\n0\r\n\r\n", 400),
    (b"5 \r\nhello\r\n0\r\n\r\n", 400),
    (b"\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    (b"5\nhello\r\n0\r\n\r\n", 400),                  # bare LF after size
    (b"5\rhello\r\n0\r\n\r\n", 400),                  # bare CR after size
    (b"5;a\nb\r\nhello\r\n0\r\n\r\n", 400),           # bare LF in extension
    (b"5;a\rb\r\nhello\r\n0\r\n\r\n", 400),           # bare CR in extension
    (b"5;a\x00\r\nhello\r\n0\r\n\r\n", 400),
    (b"5\r\nhelloXX0\r\n\r\n", 400),                  # bad data terminator
    (b"5\r\nhello\n0\r\n\r\n", 400),
    (b"5\r\nhello\r0\r\n\r\n", 400),
    (b"1000000000000000\r\n", 400),                   # 16 hex digits: overlong size
    (b"0\r\nX-T: 1\n\r\n", 400),                      # bare LF in trailer
    (b"0\r\nX-T: a\x00\r\n\r\n", 400),
    (b"0\r\nX T: 1\r\n\r\n", 400),
    (b"0\r\n X-T: 1\r\n\r\n", 400),
    (b"0\r\n\n", 400),
    (b"0\r\n\rX", 400),
]


@pytest.mark.parametrize("raw,status", BAD, ids=[repr(r[:30]) for r, _ in BAD])
def test_refused(raw, status):
    with pytest.raises(HttpParseError) as e:
        decode(raw)
    assert e.value.status == status


def test_chunk_line_and_trailer_caps():
    with pytest.raises(HttpParseError) as e:
        decode(b"5;" + b"x" * 100 + b"\r\nhello\r\n0\r\n\r\n", max_line=64)
    assert e.value.status == 400
    with pytest.raises(HttpParseError) as e:
        decode(b"0\r\n" + b"X-T: 1\r\n" * 20 + b"\r\n", max_trailer=64)
    assert e.value.status == 431
    assert decode(b"0\r\n" + b"X-T: 1\r\n" * 5 + b"\r\n", max_trailer=64)[2].done


def test_incomplete_body_is_not_done():
    data, end, d = decode(b"5\r\nhello\r\n")
    assert data == b"hello" and not d.done


def test_after_done_nothing_more_is_consumed():
    d = http1.ChunkedDecoder()
    buf = b"0\r\n\r\nGET / HTTP/1.1\r\n"
    end = d.feed(buf, 0)
    assert d.done and end == 5 and d.feed(buf, end) == end


def test_reset_starts_a_new_body():
    d = http1.ChunkedDecoder()
    d.feed(b"0\r\n\r\n", 0)
    assert d.done
    d.reset()
    assert not d.done and d.feed(b"1\r\nx", 0) == 4 and (d.data_start, d.data_stop) == (3, 4)


def test_encoder_roundtrip():
    payloads = [b"a", b"hello world", b"z" * 4096]
    enc = b"".join(http1.chunk_header(len(p)) + p + http1.CHUNK_END for p in payloads) + http1.LAST_CHUNK
    assert http1.chunk_header(4096) == b"1000\r\n"
    assert decode(enc)[0] == b"".join(payloads)
    with pytest.raises(ValueError):
        http1.chunk_header(0)


def test_body_length_counting():
    b = http1.BodyLength(10)
    assert (b.take(4), b.remaining, b.done) == (4, 6, False)
    assert (b.take(100), b.remaining, b.done) == (6, 0, True)
    assert b.take(5) == 0
    assert http1.BodyLength(0).done
    with pytest.raises(ValueError):
        http1.BodyLength(-1)
