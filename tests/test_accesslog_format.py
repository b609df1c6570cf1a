"""The access log line built in C (engine/accesslog.pyx) against the plain Python statement of
it (pyroute/observability/accesslog_ref.py), on random exchanges: every field value random
(unicode, control characters, bytes that are not UTF-8, HTML characters), every format, field
mode, header mode and filter. The exchanges are the engine's own Exchange with a Request the
real parser read; tests/test_e2e_accesslog.py checks the lines of real requests field by
field against Traefik's names."""
import json
import os
import types

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from pyroute._engine.accesslog import CORE_KEYS, Formatter
from pyroute._engine.errors import HttpParseError
from pyroute._engine.exchange import Exchange
from pyroute._engine.http1 import RequestParser
from pyroute.observability.accesslog_ref import ReferenceFormatter
from pyroute.proxy.snapshot import Route, Server
from pyroute.static import AccessLog

MODES = st.sampled_from(["keep", "drop", "redact"])
# what a Go string may hold: any byte, weighted towards the ones JSON escapes
NASTY = st.binary(max_size=12) | st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from(
        "<>&\"\\\n\r\t\b\f\x00\x1b\x7f\u2028\u2029\ufffd\u00e9\U0001f600"),
    max_size=12).map(lambda s: s.encode("utf-8"))
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from(
    "<>&\"\\\n\t\x01\u2028"), max_size=10)
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
                min_size=1, max_size=10)
HEADER_NAMES = st.sampled_from(["User-Agent", "Referer", "X-Test", "x-test", "X-FORWARDED-FOR",
                                "Content-Type", "Cookie"]) | TOKEN
# header values the parser takes: visible ASCII, obs-text, tabs inside
VALUE = st.binary(max_size=16).map(lambda b: bytes(
    c for c in b if c >= 0x20 and c != 0x7f or c == 9).strip(b" \t"))
PATH = st.text(alphabet="".join(chr(c) for c in range(0x21, 0x7f) if chr(c) not in "?#"),
               max_size=16)


def _head(lines, status=True):
    first = b"HTTP/1.1 200 OK" if status else b""
    return b"\r\n".join([first] + [n.encode() + b": " + v for n, v in lines]) + b"\r\n\r\n"


@st.composite
def configs(draw):
    fmt = draw(st.sampled_from(["json", "common", "genericCLF"]))
    names = draw(st.lists(st.tuples(st.sampled_from(CORE_KEYS).map(str.lower), MODES),
                          max_size=6))
    header_names = draw(st.lists(st.tuples(
        st.sampled_from(["User-Agent", "Referer", "X-Test", "Content-Type"]), MODES),
        max_size=3))
    codes = draw(st.lists(st.tuples(st.integers(100, 599), st.integers(0, 200)).map(
        lambda t: (t[0], t[0] + t[1])), max_size=2))
    return AccessLog(enabled=True, format=fmt,
                     default_mode=draw(st.sampled_from(["keep", "keep", "drop"])),
                     names=tuple(names),
                     headers_default_mode=draw(MODES), header_names=tuple(header_names),
                     keep_query=draw(st.booleans()), status_codes=tuple(codes),
                     retry_attempts=draw(st.booleans()) if codes else False,
                     min_duration=draw(st.sampled_from([0.0, 0.0, 0.001])))


@st.composite
def exchanges(draw):
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PURGE", "M-SEARCH"]))
    path = draw(PATH)
    query = draw(st.none() | PATH)
    version = draw(st.sampled_from(["1.1", "1.0"]))
    host = draw(st.sampled_from(["", "example.com", "example.com:8080", "[::1]:443", "[::1]",
                                 "a:b:c", "host:", "[x]]:1"]) | TOKEN)
    headers = draw(st.lists(st.tuples(HEADER_NAMES, VALUE), max_size=6))
    target = ("/" + path) + ("?" + query if query is not None else "")
    lines = ["%s %s HTTP/%s" % (method, target, version)]
    raw = "\r\n".join(lines).encode() + b"\r\n"
    if host or version == "1.1":
        raw += b"Host: " + host.encode() + b"\r\n"
    for n, v in headers:
        raw += n.encode() + b": " + v + b"\r\n"
    raw += b"\r\n"
    try:
        req = RequestParser().parse(bytearray(raw))
    except HttpParseError:
        req = None
    assume(req is not None)
    ex = Exchange.__new__(Exchange)
    ex.req = req
    ex.conn = types.SimpleNamespace(remote_port=draw(st.sampled_from([0, 1, 54321])),
                                    http2=draw(st.booleans()))
    ex.ep = types.SimpleNamespace(name=draw(TEXT), access_logged=draw(st.booleans()))
    ex.remote_ip = draw(st.sampled_from([b"127.0.0.1", b"::1", b"", b"fe80::1%eth0"]) | NASTY)
    ex.trusted = draw(st.booleans())
    ex.tls = draw(st.booleans())
    if draw(st.booleans()):
        route = Route(draw(TEXT), [], None, None)
        route.log_name = draw(TEXT)
        route.access_log = draw(st.booleans()) or draw(st.booleans())
        ex.route = route
    ex.status = draw(st.sampled_from([200, 404, 499, 502, 0]) | st.integers(0, 999))
    ex.attempts = draw(st.integers(0, 4))
    ex.started = 1000.0
    if draw(st.booleans()):
        ex.server = Server(draw(TEXT), None, b"", True, draw(st.none() | TEXT), draw(TEXT))
        ex.origin_started = draw(st.sampled_from([0.0, 1000.0005, 1000.25]))
        ex.origin_status = draw(st.sampled_from([0, 200, 503]))
    ex.bytes_out = draw(st.integers(0, 1 << 40))
    ex.bytes_in = draw(st.integers(0, 1 << 20))
    if draw(st.booleans()):
        ex.vars = {"ClientUsername": draw(NASTY | TEXT)}
    if draw(st.booleans()):
        ex.origin_head = _head(draw(st.lists(st.tuples(HEADER_NAMES, VALUE), max_size=4)))
    if draw(st.booleans()):
        ex.resp_head = _head(draw(st.lists(st.tuples(HEADER_NAMES, VALUE), max_size=4)))
    return ex


def _tls_fields(ex):
    # what accesslog.tls_fields reads off a pyOpenSSL connection, random here
    return getattr(ex, "_tls_for_test", ("1.3", "TLS_AES_128_GCM_SHA256", "CN=a<b>,O=\u00e9"))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.filter_too_much])
@given(configs(), exchanges(), st.floats(0, 5), st.integers(0, 2 ** 62))
def test_c_formatter_matches_the_reference(cfg, ex, duration, real_ns):
    mono = ex.started + duration
    c = Formatter(cfg, _tls_fields)
    py = ReferenceFormatter(cfg, _tls_fields)
    for _ in range(2):       # RequestCount counts on
        got = c.line(ex, mono, real_ns)
        want = py.line(ex, mono, real_ns)
        assert got == want
    if got is not None and cfg.format == "json":
        fields = json.loads(got)
        assert list(fields) == sorted(fields, key=lambda k: k.encode())   # Go's map order
        assert got.endswith(b"}\n") and b"<" not in got and b">" not in got and b"&" not in got


def _exchange(path=b"/", headers=b"", **kw):
    req = RequestParser().parse(bytearray(b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n" +
                                          headers + b"\r\n"))
    ex = Exchange.__new__(Exchange)
    ex.req = req
    ex.conn = types.SimpleNamespace(remote_port=1234)
    ex.ep = types.SimpleNamespace(name="web", access_logged=True)
    ex.remote_ip = b"10.0.0.1"
    ex.status = 200
    ex.attempts = 1
    ex.started = 10.0
    for k, v in kw.items():
        setattr(ex, k, v)
    return ex


@pytest.mark.parametrize("value, escaped", [
    (b"<a&b>", b'"\\u003ca\\u0026b\\u003e"'),                  # HTML characters
    (b"a\xffb", b'"a\\ufffdb"'),                               # not UTF-8: one \ufffd a byte
    (b"\xe2\x82", b'"\\ufffd\\ufffd"'),                        # a cut sequence
    (b"\xed\xa0\x80", b'"\\ufffd\\ufffd\\ufffd"'),             # a UTF-8 surrogate
    (b"\xe2\x80\xa8|\xe2\x80\xa9", b'"\\u2028|\\u2029"'),       # JSONP-unsafe separators
    (b"\xc3\xa9\xf0\x9f\x98\x80", b'"\xc3\xa9\xf0\x9f\x98\x80"'),  # valid UTF-8 as it is
    (b"\"\\\n\r\t\b\f\x01\x7f", b'"\\"\\\\\\n\\r\\t\\b\\f\\u0001\x7f"'),
])
def test_go_string_escaping(value, escaped):
    # Go's encoding/json (HTMLEscape on, as logrus' JSONFormatter) on a Go string
    ex = _exchange(vars={"ClientUsername": value})
    line = Formatter(AccessLog(enabled=True, format="json"), None).line(ex, 10.5, 10 ** 18)
    assert b'"ClientUsername":' + escaped + b"," in line


def test_buffer_taken_whole_and_bounded():
    f = Formatter(AccessLog(enabled=True, format="common", buffering_size=3), None)
    assert f.take() is None
    for _ in range(5):
        f.observe(_exchange())
    assert f.lines == 3 and f.dropped == 2 and f.count == 5
    data = f.take()
    assert data.count(b"\n") == 3 and data.startswith(b"10.0.0.1 - - [")
    assert f.take() is None and f.lines == 0
    f.observe(_exchange(path=b"/x?y=1"))
    assert b'"GET /x?y=1 HTTP/1.1" 200 0 "-" "-" 6 "-" "-" ' in f.take()


def test_half_full_buffer_wakes_the_writer_once_per_take():
    f = Formatter(AccessLog(enabled=True, format="json", buffering_size=4), None)
    woken = []
    f.wake = lambda: woken.append(f.lines)
    for _ in range(4):
        f.observe(_exchange())
    assert woken == [2]                  # at half the bound, not again before a take
    assert f.take().count(b"\n") == 4
    for _ in range(2):
        f.observe(_exchange())
    assert woken == [2, 2]


def test_writer_writes_whole_lines_in_chunks(tmp_path):
    # at most WRITE_CHUNK bytes per write(2), each ending with a line's end (workers share the
    # file: O_APPEND keeps one write whole, not a line cut in two). A SOCK_SEQPACKET socket
    # keeps each write(2) one message, so the reader sees the writes' boundaries.
    import socket
    import threading
    from pyroute._engine.accesslog import write_lines
    from pyroute.observability import accesslog
    data = b"".join(b"%d %s\n" % (i, b"x" * (i % 700)) for i in range(2000))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    got = []

    def read():
        while True:
            m = b.recv(1 << 20)
            if not m:
                return
            got.append(m)
    t = threading.Thread(target=read)
    t.start()
    assert write_lines(a.fileno(), data, accesslog.WRITE_CHUNK) == (0, 0)
    a.close()
    t.join(5)
    b.close()
    assert b"".join(got) == data
    assert len(got) > 5 and all(len(m) <= accesslog.WRITE_CHUNK and m.endswith(b"\n")
                                for m in got)
    # a failed write: the lines it left unwritten are counted, with its errno
    import errno
    r, w = os.pipe()
    os.close(r)
    import signal
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        assert write_lines(w, data, accesslog.WRITE_CHUNK) == (2000, errno.EPIPE)
    finally:
        signal.signal(signal.SIGPIPE, old)
        os.close(w)


def test_logger_writes_the_buffer_to_the_file(tmp_path):
    # the writer thread's path: the formatter's buffer, swapped and written in C (write_to)
    from pyroute.observability import accesslog
    path = tmp_path / "a.log"
    logger = accesslog.AccessLogger(AccessLog(enabled=True, format="common",
                                              file_path=str(path)))
    data = b"".join(b"%d %s\n" % (i, b"x" * (i % 700)) for i in range(2000))
    logger.writer._write(data)
    logger.close()
    assert path.read_bytes() == data
