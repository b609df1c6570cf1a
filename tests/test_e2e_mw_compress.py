"""End to end: the compress middleware as Traefik v3.7 runs it (pkg/middlewares/compress:
compress_test.go, acceptencoding_test.go, compression_handler_test.go; gzip through
klauspost gzhttp), through a real ``pyroute run`` and a real backend whose answers the test
shapes (length, framing, Content-Type, Content-Encoding, status, Range headers). Bodies are
decoded with the real libraries (zlib, brotli, zstandard)."""
import gzip
import json
import socket
import threading
import time
import zlib
from urllib.parse import parse_qs, urlsplit

import brotli
import pytest
import zstandard

from e2e_support import Pyroute, backend_service, read_response

TEXT = (b"The quick brown fox jumps over the lazy dog. " * 200)     # 9000 bytes


class Shaped:
    """A backend answering ``/r?n=N&mode=length|chunked|close&ct=..&ce=..&status=..
    &hdr=Name:Value&pieces=K&gap=MS``: N bytes of text in K writes MS ms apart."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                headers = []
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, v = h.decode("latin-1").split(":", 1)
                    headers.append((k.strip(), v.strip()))
                method, target = line.split()[:2]
                self.seen.append((method, target, headers))
                if not self._answer(c, method, target.decode()):
                    return
        except OSError:
            return
        finally:
            c.close()

    def _answer(self, c, method, target):
        q = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
        n = int(q.get("n", "0"))
        lead = q.get("lead", "").encode("latin-1")     # what a sniff of the body sees first
        body = (lead + TEXT * (n // len(TEXT) + 1))[:n]
        mode = q.get("mode", "length")
        status = int(q.get("status", "200"))
        lines = ["HTTP/1.1 %d X" % status]
        if q.get("ct") is not None:
            lines.append("Content-Type: %s" % q["ct"])
        if q.get("ce"):
            lines.append("Content-Encoding: %s" % q["ce"])
        for h in q.get("hdr", "").split("|") if q.get("hdr") else []:
            lines.append(h)
        no_body = status in (204, 304) or method == b"HEAD"
        if mode == "length":
            lines.append("Content-Length: %d" % n)
        elif mode == "chunked" and status not in (204, 304):
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append("Connection: close")
        c.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if no_body:
            return mode != "close"
        pieces = int(q.get("pieces", "1"))
        gap = int(q.get("gap", "0")) / 1000.0
        size = max(1, -(-n // pieces)) if n else 0
        for i in range(0, n, size or 1):
            part = body[i:i + size]
            c.sendall(b"%x\r\n%s\r\n" % (len(part), part) if mode == "chunked" else part)
            if gap:
                time.sleep(gap)
        if mode == "chunked":
            c.sendall(b"0\r\n\r\n")
        return mode == "length" or mode == "chunked"

    def close(self):
        self.sock.close()


MIDDLEWARES = {
    "c-default": "{compress: {}}",
    "c-min1": "{compress: {minResponseBodyBytes: 1}}",
    "c-min100": "{compress: {minResponseBodyBytes: 100}}",
    "c-excl-sse": "{compress: {excludedContentTypes: [text/event-stream]}}",
    "c-excl-json": "{compress: {excludedContentTypes: [application/json]}}",
    "c-incl-plain": "{compress: {includedContentTypes: [text/plain]}}",
    "c-incl-html": "{compress: {includedContentTypes: [text/html]}}",
    "c-incl-json": "{compress: {includedContentTypes: [application/json]}}",
    "c-incl-param": "{compress: {includedContentTypes: [\"text/plain; charset=utf-8\"]}}",
    "c-def-br": "{compress: {defaultEncoding: br}}",
    "c-def-gzip": "{compress: {defaultEncoding: gzip}}",
    "c-zstd-first": "{compress: {encodings: [zstd, br, gzip]}}",
    "c-br-only": "{compress: {encodings: [br]}}",
    "c-excl-plain": "{compress: {excludedContentTypes: [text/plain]}}",
    "ct": "{contentType: {}}",
    "buf": "{buffering: {}}",
    # bad options: config errors naming the middleware and the field
    "c-both": "{compress: {excludedContentTypes: [a/b], includedContentTypes: [c/d]}}",
    "c-bad-enc": "{compress: {encodings: [deflate]}}",
    "c-bad-default": "{compress: {encodings: [gzip], defaultEncoding: br}}",
    "c-bad-type": "{compress: {excludedContentTypes: [\"text/\"]}}",
}


def manifests(be):
    m = backend_service("be", [be.port])
    for name, spec in MIDDLEWARES.items():
        m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
              "metadata: {name: %s, namespace: default}\nspec: %s\n" % (name, spec))
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: r, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n")
    for name in MIDDLEWARES:
        m += ("    - match: Host(`%s.test`)\n      kind: Rule\n"
              "      middlewares: [{name: %s}]\n      services: [{name: be, port: 80}]\n"
              % (name, name))
    m += ("    - match: Host(`plain.test`)\n      kind: Rule\n"
          "      services: [{name: be, port: 80}]\n")
    for host, chain in CHAINS.items():
        m += ("    - match: Host(`%s.test`)\n      kind: Rule\n"
              "      middlewares: [%s]\n      services: [{name: be, port: 80}]\n"
              % (host, ", ".join("{name: %s}" % n for n in chain)))
    return m


# routes through several middlewares (host -> chain, outermost first)
CHAINS = {
    "ct-outer": ["ct", "c-incl-plain"],
    "ct-inner": ["c-incl-plain", "ct"],
    "ct-default": ["ct", "c-default"],
    "buf-inner": ["c-incl-plain", "buf"],
    "buf-inner-html": ["c-incl-html", "buf"],
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compress")
    be = Shaped()
    proxy = Pyroute(tmp, manifests(be), workers=2)
    proxy.start()
    yield {"port": proxy.port, "be": be, "proxy": proxy}
    proxy.stop()
    be.close()


def fetch(env, host, query="n=9000", ae="gzip", method="GET", extra="", version="1.1"):
    """(status, headers (lower-case -> list), raw body) of one request."""
    req = "%s /r?%s HTTP/%s\r\nHost: %s.test\r\n" % (method, query, version, host)
    if ae is not None:
        req += "Accept-Encoding: %s\r\n" % ae
    req += extra + "\r\n"
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(req.encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head = data.split(b"\r\n\r\n", 1)[0]
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        s2 = _Replay(data, s)
        status, _, body, _ = read_response(s2, head_request=method == "HEAD")
    return status, headers, body


class _Replay:
    """A socket whose first bytes were read already (read_response reads them again)."""

    def __init__(self, data, sock):
        self.data, self.sock = data, sock

    def settimeout(self, t):
        self.sock.settimeout(t)

    def recv(self, n):
        if self.data:
            d, self.data = self.data, b""
            return d
        return self.sock.recv(n)


def decode(enc, body):
    if enc == "gzip":
        return gzip.decompress(body)
    if enc == "br":
        return brotli.decompress(body)
    if enc == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    raise AssertionError(enc)


def one(headers, name):
    v = headers.get(name)
    return v[0] if v else None


# -- negotiation: compress_test.go TestNegotiation (minResponseBodyBytes 1, 10 bytes body) --

NEGOTIATION = [
    ("no accept header", None, None),
    ("unsupported accept header", "notreal", None),
    # gzip is the first encoding, and gzhttp does not take "*" as accepting gzip
    ("accept any header", "*", None),
    ("gzip accept header", "gzip", "gzip"),
    ("br accept header", "br", "br"),
    ("multi accept header, prefer br", "br;q=0.8, gzip;q=0.6", "br"),
    ("multi accept header, prefer gzip", "gzip;q=1.0, br;q=0.8", "gzip"),
    ("multi accept header list, prefer br", "gzip, br", "gzip"),
    ("zstd accept header", "zstd", "zstd"),
    ("multi accept header, prefer zstd", "zstd;q=0.9, br;q=0.8, gzip;q=0.6", "zstd"),
    ("multi accept header, prefer brotli", "gzip;q=0.8, br;q=1.0, zstd;q=0.7", "br"),
    ("multi accept header, prefer gzip 2", "gzip;q=1.0, br;q=0.8, zstd;q=0.7", "gzip"),
    ("multi accept header list, prefer best", "gzip, br, zstd", "gzip"),
    # acceptencoding_test.go Test_getCompressionEncoding
    ("q=0 refuses", "gzip;q=0, br", "br"),
    ("identity only", "identity", None),
    ("identity preferred", "gzip;q=0.5, identity", None),
    ("empty", "", None),
]


@pytest.mark.parametrize("desc,ae,expected", NEGOTIATION, ids=[c[0] for c in NEGOTIATION])
def test_negotiation(env, desc, ae, expected):
    status, headers, body = fetch(env, "c-min1", "n=10", ae)
    assert status == 200
    assert one(headers, "content-encoding") == expected
    got = decode(expected, body) if expected else body
    assert got == TEXT[:10]


def test_wildcard_takes_the_first_encoding_when_it_is_not_gzip(env):
    # "*" -> encodings[0] (zstd here): Traefik's own handler compresses it
    status, headers, body = fetch(env, "c-zstd-first", "n=9000", "*")
    assert one(headers, "content-encoding") == "zstd"
    assert decode("zstd", body) == TEXT


def test_encodings_order_breaks_ties(env):
    status, headers, body = fetch(env, "c-zstd-first", "n=9000", "gzip, br, zstd")
    assert one(headers, "content-encoding") == "zstd"
    assert decode("zstd", body) == TEXT


def test_an_encoding_not_configured_is_not_used(env):
    status, headers, body = fetch(env, "c-br-only", "n=9000", "gzip, zstd")
    assert one(headers, "content-encoding") is None and body == TEXT
    status, headers, body = fetch(env, "c-br-only", "n=9000", "gzip, br;q=0.1")
    assert one(headers, "content-encoding") == "br" and decode("br", body) == TEXT


def test_default_encoding_without_accept_encoding(env):
    # RFC 9110: no Accept-Encoding means any coding is acceptable
    status, headers, body = fetch(env, "c-def-br", "n=9000", None)
    assert one(headers, "content-encoding") == "br" and decode("br", body) == TEXT
    assert "Accept-Encoding" in headers.get("vary", [])
    # ... and for "*"
    status, headers, body = fetch(env, "c-def-br", "n=9000", "*")
    assert one(headers, "content-encoding") == "br"
    # gzip as the default: gzhttp still needs gzip in Accept-Encoding itself
    status, headers, body = fetch(env, "c-def-gzip", "n=9000", None)
    assert one(headers, "content-encoding") is None and body == TEXT


# -- compress_test.go: the Should(Not)Compress cases --------------------------------------

@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
def test_compresses_and_sets_vary(env, enc):
    status, headers, body = fetch(env, "c-default", "n=9000&ct=text/plain", enc)
    assert status == 200
    assert one(headers, "content-encoding") == enc
    assert "Accept-Encoding" in headers["vary"]
    assert "content-length" not in headers
    assert len(body) < 9000 and decode(enc, body) == TEXT


def test_no_accept_encoding_no_compression_no_vary(env):
    status, headers, body = fetch(env, "c-default", "n=9000", None)
    assert one(headers, "content-encoding") is None and "vary" not in headers
    assert body == TEXT and one(headers, "content-length") == "9000"


def test_identity_and_empty_accept_encoding_no_vary(env):
    for ae in ("identity", ""):
        status, headers, body = fetch(env, "c-default", "n=9000", ae)
        assert one(headers, "content-encoding") is None and "vary" not in headers
        assert body == TEXT
    # and the backend got the client's Accept-Encoding untouched
    assert ("Accept-Encoding", "identity") in env["be"].seen[-2][2]


@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
def test_already_encoded_response_is_left_alone(env, enc):
    # TestShouldNotCompressWhenContentEncodingHeader, TestIntegrationShouldNotCompress
    status, headers, body = fetch(env, "c-default", "n=9000&ce=br&status=201", enc)
    assert status == 201
    assert headers["content-encoding"] == ["br"] and body == TEXT
    assert one(headers, "content-length") == "9000"


@pytest.mark.parametrize("enc", ["gzip", "br"])
def test_status_created_is_compressed(env, enc):
    status, headers, body = fetch(env, "c-default", "n=9000&status=201", enc)
    assert status == 201 and one(headers, "content-encoding") == enc
    assert decode(enc, body) == TEXT


def test_head_request_is_not_compressed(env):
    status, headers, body = fetch(env, "c-default", "n=9000", "gzip", method="HEAD")
    assert status == 200 and one(headers, "content-encoding") is None
    assert "vary" not in headers and one(headers, "content-length") == "9000"


@pytest.mark.parametrize("st", [204, 304])
def test_no_body_statuses_are_untouched(env, st):
    status, headers, body = fetch(env, "c-default", "n=0&status=%d" % st, "gzip")
    assert status == st and one(headers, "content-encoding") is None and body == b""


CONTENT_TYPES = [
    # TestShouldNotCompressWhenSpecificContentType
    ("Exclude Request Content-Type", "c-excl-sse", "text/event-stream", None, False),
    ("Exclude Response Content-Type", "c-excl-sse", None, "text/event-stream", False),
    ("Include Response Content-Type", "c-incl-plain", None, "text/html", False),
    ("Ignoring application/grpc with exclude option", "c-excl-json", "application/grpc",
     None, False),
    ("Ignoring application/grpc with include option", "c-incl-json", "application/grpc",
     None, False),
    ("Ignoring application/grpc with no option", "c-default", "application/grpc", None, False),
    # TestShouldCompressWhenSpecificContentType
    ("Include Response Content-Type (compress)", "c-incl-html", None, "text/html", True),
    # case and white space do not matter; parameters do only where the option has them
    ("Exclude case-insensitive", "c-excl-sse", None, "Text/Event-Stream; charset=utf-8",
     False),
    ("Include with parameters matching", "c-incl-param", None, "text/plain;charset=utf-8",
     True),
    ("Include with parameters differing", "c-incl-param", None, "text/plain; charset=latin1",
     False),
    ("Include without Content-Type (gzhttp sniffs text/plain)", "c-incl-plain", None, None,
     None),
    ("Unparsable Content-Type is never compressed", "c-default", None, "text/", False),
]


@pytest.mark.parametrize("desc,mw,req_ct,resp_ct,compressed", CONTENT_TYPES,
                         ids=[c[0] for c in CONTENT_TYPES])
def test_content_types(env, desc, mw, req_ct, resp_ct, compressed):
    q = "n=9000" + ("&ct=%s" % resp_ct.replace(" ", "%20").replace(";", "%3B")
                    if resp_ct is not None else "")
    extra = "Content-Type: %s\r\n" % req_ct if req_ct else ""
    if compressed is None:
        # no Content-Type with includedContentTypes: brotli/zstd (Traefik's own handler)
        # compresses without looking; gzip (gzhttp) sniffs text/plain from the body, which
        # the list includes; the type is not set (the entry point's nil entry stays)
        for enc in ("br", "gzip"):
            status, headers, body = fetch(env, mw, q, enc, extra=extra)
            assert one(headers, "content-encoding") == enc and decode(enc, body) == TEXT
            assert "content-type" not in headers
        return
    for enc in ("gzip", "br"):
        status, headers, body = fetch(env, mw, q, enc, extra=extra)
        assert status == 200
        if compressed:
            assert one(headers, "content-encoding") == enc
            assert decode(enc, body) == TEXT
        else:
            assert one(headers, "content-encoding") is None and body == TEXT


# -- gzhttp's sniff of a response without Content-Type -----------------------------------

HTML_LEAD = "%3C!DOCTYPE%20html%3E%3Chtml%3E"           # "<!DOCTYPE html><html>"
SNIFFED = [
    # (middleware, lead of the body, framing, gzipped): gzhttp filters
    # DetectContentType(first bytes); brotli/zstd never sniff (always compressed)
    ("c-incl-plain", "", "length", True),
    ("c-incl-plain", "", "chunked", True),
    ("c-incl-plain", "", "close", True),
    ("c-incl-plain", HTML_LEAD, "length", False),       # sniffed text/html: not included
    ("c-incl-plain", HTML_LEAD, "chunked", False),
    ("c-incl-html", HTML_LEAD, "length", True),
    ("c-incl-html", HTML_LEAD, "close", True),
    ("c-incl-html", "", "chunked", False),
    ("c-excl-plain", "", "length", False),              # sniffed text/plain: excluded
    ("c-excl-plain", "", "chunked", False),
    ("c-excl-plain", HTML_LEAD, "length", True),
    ("c-excl-plain", HTML_LEAD, "chunked", True),
    ("c-incl-param", "", "length", True),               # text/plain; charset=utf-8
]


@pytest.mark.parametrize("mw,lead,mode,gzipped", SNIFFED)
def test_gzip_filters_the_sniffed_type_of_a_response_without_one(env, mw, lead, mode,
                                                                    gzipped):
    n = 9000
    q = "n=%d&mode=%s&pieces=3&lead=%s" % (n, mode, lead)
    want = (lead.replace("%3C", "<").replace("%3E", ">").replace("%20", " ").encode()
            + TEXT * 2)[:n]
    status, headers, body = fetch(env, mw, q, "gzip")
    assert status == 200
    if gzipped:
        assert one(headers, "content-encoding") == "gzip" and decode("gzip", body) == want
    else:
        assert one(headers, "content-encoding") is None and body == want
        if mode == "length":
            assert one(headers, "content-length") == str(n)   # left as it came
    assert "content-type" not in headers       # sniffed to decide, not set (nil entry)
    status, headers, body = fetch(env, mw, q, "br")
    assert one(headers, "content-encoding") == "br" and decode("br", body) == want


def test_a_small_response_without_type_is_not_sniffed_nor_gzipped(env):
    status, headers, body = fetch(env, "c-incl-plain", "n=1000", "gzip")
    assert one(headers, "content-encoding") is None and body == TEXT[:1000]
    assert one(headers, "content-length") == "1000"


@pytest.mark.parametrize("host", ["ct-outer", "ct-inner", "ct-default"])
def test_with_content_type_gzhttp_sets_the_type_it_sniffed(env, host):
    # a contentType middleware anywhere in the chain deletes the entry point's nil
    # Content-Type: gzhttp then sets the type it sniffed from the uncompressed bytes
    # (Go's own sniff would not look at an encoded body)
    status, headers, body = fetch(env, host, "n=9000&mode=chunked&pieces=2", "gzip")
    assert one(headers, "content-encoding") == "gzip" and decode("gzip", body) == TEXT
    assert one(headers, "content-type") == "text/plain; charset=utf-8"
    if host != "ct-default":
        q = "n=9000&lead=%s" % HTML_LEAD
        status, headers, body = fetch(env, host, q, "gzip")
        assert one(headers, "content-encoding") is None
        assert one(headers, "content-type") == "text/html; charset=utf-8"
    # brotli: Traefik's handler does not sniff; Go's server does not sniff an encoded body
    status, headers, body = fetch(env, host, "n=9000", "br")
    assert one(headers, "content-encoding") == "br" and "content-type" not in headers


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_a_buffered_response_without_type_is_sniffed_whole(env, mode):
    # buffering inside compress: the response is held whole, then gzhttp decides on it
    status, headers, body = fetch(env, "buf-inner", "n=200000&mode=%s" % mode, "gzip")
    assert one(headers, "content-encoding") == "gzip"
    assert decode("gzip", body) == (TEXT * 23)[:200000]
    assert one(headers, "content-length") == str(len(body))
    status, headers, body = fetch(env, "buf-inner-html", "n=200000&mode=%s" % mode, "gzip")
    assert one(headers, "content-encoding") is None and len(body) == 200000


# -- TestMinResponseBodyBytes --------------------------------------------------------------

@pytest.mark.parametrize("n,compressed", [(1024, True), (1023, False), (100000, True)])
def test_min_response_body_bytes_default(env, n, compressed):
    for enc in ("gzip", "br", "zstd"):
        status, headers, body = fetch(env, "c-default", "n=%d" % n, enc)
        if compressed:
            assert one(headers, "content-encoding") == enc and decode(enc, body) == TEXT[:0] + \
                (TEXT * (n // len(TEXT) + 1))[:n]
        else:
            assert one(headers, "content-encoding") is None and len(body) == n
            assert one(headers, "content-length") == str(n)
            # the handler ran: Vary is there all the same
            assert "Accept-Encoding" in headers["vary"]


def test_min_response_body_bytes_option(env):
    status, headers, body = fetch(env, "c-min100", "n=100", "gzip")
    assert one(headers, "content-encoding") == "gzip" and decode("gzip", body) == TEXT[:100]
    status, headers, body = fetch(env, "c-min100", "n=99", "gzip")
    assert one(headers, "content-encoding") is None and body == TEXT[:99]


# -- streamed bodies -----------------------------------------------------------------------

@pytest.mark.parametrize("enc", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("mode", ["chunked", "close"])
def test_streamed_body_without_length_is_compressed(env, enc, mode):
    n = 300000
    status, headers, body = fetch(env, "c-default", "n=%d&mode=%s&pieces=7" % (n, mode), enc)
    assert one(headers, "content-encoding") == enc
    assert decode(enc, body) == (TEXT * 40)[:n]


def test_small_chunked_body_is_compressed_as_traefik_flushes(env):
    # no Content-Length: Go's reverse proxy flushes every write, and a flush starts the
    # compression whatever minResponseBodyBytes says
    status, headers, body = fetch(env, "c-default", "n=50&mode=chunked", "gzip")
    assert one(headers, "content-encoding") == "gzip" and decode("gzip", body) == TEXT[:50]


def test_a_slow_stream_reaches_the_client_as_it_flows(env):
    # 5 pieces 400 ms apart: the first compressed bytes arrive long before the end
    req = ("GET /r?n=50000&mode=chunked&pieces=5&gap=400 HTTP/1.1\r\nHost: c-default.test\r\n"
           "Accept-Encoding: gzip\r\n\r\n")
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(req.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        rest = data.split(b"\r\n\r\n", 1)[1]
        while b"\r\n" not in rest:
            rest += s.recv(65536)
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        while len(rest) < size:
            rest += s.recv(65536)
        first = time.monotonic() - t0
        d = zlib.decompressobj(31)
        assert d.decompress(rest[:size]).startswith(TEXT[:1000])
    assert first < 1.0, first


def test_http10_client_gets_the_compressed_body_until_close(env):
    status, headers, body = fetch(env, "c-default", "n=9000&mode=chunked", "gzip",
                                  version="1.0")
    assert one(headers, "content-encoding") == "gzip" and decode("gzip", body) == TEXT


# -- Range ---------------------------------------------------------------------------------

def test_accept_ranges_dropped_by_gzip_kept_by_brotli(env):
    q = "n=9000&hdr=Accept-Ranges:%20bytes"
    status, headers, body = fetch(env, "c-default", q, "gzip")
    assert one(headers, "content-encoding") == "gzip" and "accept-ranges" not in headers
    status, headers, body = fetch(env, "c-default", q, "br")
    assert one(headers, "content-encoding") == "br" and headers["accept-ranges"] == ["bytes"]


def test_partial_content_not_gzipped(env):
    q = "n=9000&status=206&hdr=Content-Range:%20bytes%200-8999/20000"
    status, headers, body = fetch(env, "c-default", q, "gzip", extra="Range: bytes=0-8999\r\n")
    assert status == 206 and one(headers, "content-encoding") is None and body == TEXT


def test_keep_alive_after_a_compressed_response(env):
    req = ("GET /r?n=9000 HTTP/1.1\r\nHost: c-default.test\r\nAccept-Encoding: gzip\r\n\r\n"
           "GET /r?n=9000&mode=chunked HTTP/1.1\r\nHost: c-default.test\r\n"
           "Accept-Encoding: br\r\n\r\n")
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=10) as s:
        s.sendall(req.encode())
        st1, h1, b1, rest = read_response(s)
        s2 = _Replay(rest, s)
        st2, h2, b2, _ = read_response(s2)
    assert h1["content-encoding"] == "gzip" and gzip.decompress(b1) == TEXT
    assert h2["content-encoding"] == "br" and brotli.decompress(b2) == TEXT


def test_route_without_middleware_is_untouched(env):
    status, headers, body = fetch(env, "plain", "n=9000", "gzip, br")
    assert one(headers, "content-encoding") is None and "vary" not in headers and body == TEXT


# -- bad options ---------------------------------------------------------------------------

BAD = [
    ("c-both", "excludedContentTypes", "mutually exclusive"),
    ("c-bad-enc", "encodings", "unsupported encoding: deflate"),
    ("c-bad-default", "defaultEncoding", "unsupported default encoding: br"),
    ("c-bad-type", "excludedContentTypes", "parsing"),
]


@pytest.mark.parametrize("name,field,text", BAD, ids=[b[0] for b in BAD])
def test_bad_options_disable_the_router_and_name_the_field(env, name, field, text):
    status, headers, body = fetch(env, name, "n=10", "gzip")
    assert status == 404
    out = env["proxy"].output()
    line = [ln for ln in out.splitlines() if name in ln and text in ln]
    assert line, out[-3000:]
    assert field in line[0]
