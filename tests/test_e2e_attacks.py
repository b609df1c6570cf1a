"""pyroute's own attack regression cases, end to end: raw requests (and backend faults) against
one ``pyroute run`` process, judged by what the client got back **and by what reached the
backend**.

Setup: every host and path goes to one backend (tests/e2e_backend.py, which logs every byte it
receives and parses leniently, as an application server would); a higher-priority router for
``PathPrefix(`/__blocked`)`` has an ipAllowList that matches nothing, so pyroute answers 403
itself. That router is the smuggling oracle: whatever the trick (framing, pipelining, a tunnel,
path or host games), a request for ``/__blocked`` must never reach the backend. Short timeouts
keep the waiting cases quick: readTimeout 1.5 s, writeTimeout 2 s, upstream
responseHeaderTimeout 1 s; the entry point refuses ``%2F`` explicitly
(``encodedCharacters.allowEncodedSlash: false``).

Each case (table ``CASES``) is raw request bytes, the statuses expected in order, whether pyroute
must close the connection, how many requests the backend may see and what must hold of them.
After every case, whatever it was:
- the invariants over what the backend received (``check_forwarded``): no ``/__blocked`` path
  (percent-decoded twice, dot segments and backslashes resolved, as a lax backend would), at most
  one Content-Length, never Content-Length with Transfer-Encoding, header lines that are
  ``token: value`` without NUL/CR/LF/other controls, CRLF line ends only, chunked framing the
  backend can read, an ``HTTP/1.1`` request line;
- the bytes the backend received carry no ``/__blocked`` at all (not even tunnelled);
- a probe on a fresh connection gets its own answer (no response left behind in a pooled
  backend connection, no poisoned pool).

The rules come from RFC 9110/9112 and Traefik's behaviour (Go's net/http server and
ReverseProxy); where pyroute is stricter than Traefik the case says so. The codec's rules are
unit-tested byte by byte in tests/test_http1_*.py; these cases are about the whole server.
"""
import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import unquote

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, worker_pids

READ_TIMEOUT = 1.5      # entry point readTimeout (s)
WRITE_TIMEOUT = 2.0     # entry point writeTimeout (s)
HEADER_TIMEOUT = 1.0    # upstream responseHeaderTimeout (s)
SLACK = 2.5             # what a loaded 2-core machine may add to a deadline

HOST = b"shop.test"
# The request a smuggling attempt hides: if it ever reaches the backend, routing was bypassed.
SMUGGLED = b"GET /__blocked/admin HTTP/1.1\r\nHost: shop.test\r\n\r\n"


def manifests(port):
    return backend_service("attack-be", [port]) + """---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: attack-transport, namespace: default}
spec:
  forwardingTimeouts: {responseHeaderTimeout: 1s}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: nobody, namespace: default}
spec:
  ipAllowList: {sourceRange: ["198.51.100.7/32"]}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: attacks, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: PathPrefix(`/__blocked`)
      kind: Rule
      priority: 500
      middlewares: [{name: nobody}]
      services: [{name: attack-be, port: 80, serversTransport: attack-transport}]
    - match: PathPrefix(`/`)
      kind: Rule
      priority: 2
      services: [{name: attack-be, port: 80, serversTransport: attack-transport}]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    backend = Backend("attack-be")
    proxy = Pyroute(tmp, manifests(backend.port), workers=1, read="1500ms", write="2s",
                    http="{encodedCharacters: {allowEncodedSlash: false}}")
    proxy.start()
    try:
        yield proxy, backend
    finally:
        proxy.stop()
        backend.close()


# --- the client side: raw exchanges -------------------------------------------------------

@dataclass
class Response:
    status: int
    head: bytes             # status line to blank line, raw
    fields: list            # [(name lower-case, value)] bytes
    body: bytes
    complete: bool          # False: the connection ended before the body did

    def values(self, name):
        return [v for n, v in self.fields if n == name]


def parse_response(buf, eof):
    """One response from the start of ``buf``: (Response, bytes used), or None for more."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if eof and buf:
            return Response(0, bytes(buf), [], b"", False), len(buf)
        return None
    head = bytes(buf[:end + 4])
    lines = head[:-4].split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        return Response(0, head, [], b"", False), len(buf)
    status = int(m.group(1))
    fields = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        fields.append((name.lower(), value.strip(b" \t")))
    names = [n for n, _ in fields]
    pos = end + 4
    if status < 200 or status in (204, 304):
        return Response(status, head, fields, b"", True), pos
    if b"transfer-encoding" in names:
        body = b""
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(buf[pos:eol].split(b";")[0], 16)
            if size == 0:
                stop = buf.find(b"\r\n\r\n", eol)
                if stop < 0 and buf[eol:eol + 4] != b"\r\n\r\n":
                    break
                return Response(status, head, fields, body, True), (stop if stop >= 0 else eol) + 4
            if len(buf) < eol + 2 + size + 2:
                break
            body += bytes(buf[eol + 2:eol + 2 + size])
            pos = eol + 2 + size + 2
        if eof:
            return Response(status, head, fields, body, False), len(buf)
        return None
    if b"content-length" in names:
        n = int(dict(fields)[b"content-length"])
        if len(buf) >= pos + n:
            return Response(status, head, fields, bytes(buf[pos:pos + n]), True), pos + n
        if eof:
            return Response(status, head, fields, bytes(buf[pos:]), False), len(buf)
        return None
    if eof:                                     # delimited by close
        return Response(status, head, fields, bytes(buf[pos:]), True), len(buf)
    return None


class Exchange:
    """What a client saw on one connection: responses in order, whether and when it ended."""

    def __init__(self, port, parts, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.start = time.monotonic()
        self.buf = bytearray()
        self.responses = []
        self.eof = False
        self.closed_after = None                # seconds from the first byte sent to the end
        for data, pause in parts:
            try:
                self.sock.sendall(data)
            except OSError:
                break
            if pause:
                time.sleep(pause)

    def _pump(self, until):
        left = until - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:                         # reset: an end too
            data = b""
        if not data:
            self.eof = True
            self.closed_after = time.monotonic() - self.start
        self.buf += data
        while self.buf:
            got = parse_response(self.buf, self.eof)
            if got is None:
                break
            self.responses.append(got[0])
            del self.buf[:got[1]]
        return True

    def read(self, n, timeout):
        """Until ``n`` responses, the end of the connection or ``timeout`` seconds."""
        until = time.monotonic() + timeout
        while len(self.responses) < n and not self.eof and self._pump(until):
            pass

    def wait_close(self, timeout):
        until = time.monotonic() + timeout
        while not self.eof and self._pump(until):
            pass

    def finish(self, timeout=3.0):
        """Half-close (the client is done) and read what else comes until pyroute closes."""
        if not self.eof:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.wait_close(timeout)
        self.sock.close()

    @property
    def statuses(self):
        return [r.status for r in self.responses]


# --- the backend side: what reached it ----------------------------------------------------

TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")          # HTAB allowed in values
REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [!-~]+ HTTP/1\.1\Z")


def lax_path(target):
    """The path a lax backend acts on: percent-decoded twice, backslashes as slashes, repeated
    slashes merged, dot segments resolved, lower-cased."""
    t = target.decode("latin-1")
    if "://" in t:
        t = "/" + t.split("://", 1)[1].partition("/")[2]
    t = unquote(unquote(t.split("?", 1)[0].split("#", 1)[0])).replace("\\", "/")
    out = []
    for seg in t.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg not in (".", ""):
            out.append(seg)
    return ("/" + "/".join(out)).lower()


def check_forwarded(rec):
    """The invariants every request the backend receives must meet, whatever was sent."""
    what = repr(rec)
    assert not lax_path(rec.target).startswith("/__blocked"), "smuggled: " + what
    assert REQUEST_LINE.match(rec.line), "request line: " + what
    assert not re.search(rb"(?<!\r)\n|\r(?!\n)", rec.head), "bare CR or LF: " + what
    names = []
    for name, value in rec.fields:
        assert name is not None, "a line without a colon: " + what
        assert TOKEN.match(name), "field name %r: %s" % (name, what)
        assert not CTL.search(value), "control byte in %r: %s" % (name, what)
        names.append(name.lower())
    assert names.count(b"content-length") <= 1, "several Content-Length: " + what
    assert names.count(b"transfer-encoding") <= 1, "several Transfer-Encoding: " + what
    assert not (b"content-length" in names and b"transfer-encoding" in names), \
        "Content-Length and Transfer-Encoding: " + what
    if b"transfer-encoding" in names:
        assert rec.values(b"transfer-encoding") == [b"chunked"], what
    assert rec.bad != "bad-chunk", "chunked framing the backend cannot read: " + what


# --- the cases ------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    raw: bytes
    answers: object = ()                # statuses in order (a set: any of those); a list:
    #                                     alternatives, each a tuple of statuses
    closes: Optional[bool] = None       # True: pyroute ends the connection by itself;
    #                                     False: it stays open after the answers
    forwarded: object = 0               # requests reaching the backend: n or (min, max)
    check: Optional[Callable] = None    # check(received, exchange): case-specific assertions
    wait: float = 3.0                   # seconds to wait for the answers (and the close)
    parts: Optional[list] = None        # [(bytes, pause s)] instead of raw at once
    raw_may_carry_blocked: bool = False  # the raw /__blocked bytes are a body, legitimately
    upstream_closed: bool = False       # the backend connection it used must be closed
    closed_after: Optional[tuple] = None  # (min, max) seconds until pyroute closes


def req(method=b"GET", target=b"/", fields=(), body=b"", version=b"HTTP/1.1", host=HOST):
    head = method + b" " + target + b" " + version + b"\r\n"
    if host is not None:
        head += b"Host: " + host + b"\r\n"
    return head + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def body_is(expected):
    def check(recs, ex):
        assert [r.body for r in recs] == [expected], recs
        assert ex.responses[0].status == 200
        echo = json.loads(ex.responses[0].body)
        assert echo["body"] == expected.decode("latin-1")
    return check


def chunked_body_is(expected):
    def check(recs, ex):
        body_is(expected)(recs, ex)
        assert recs[0].values(b"transfer-encoding") == [b"chunked"], recs
        assert recs[0].bad is None, recs
    return check


def targets_are(*targets):
    def check(recs, ex):
        assert [r.target for r in recs] == list(targets), recs
    return check


def field_is(name, *values):
    def check(recs, ex):
        assert [r.values(name) for r in recs] == [list(values)], recs
    return check


def all_of(*checks):
    def check(recs, ex):
        for c in checks:
            c(recs, ex)
    return check


def absent(*needles):
    def check(recs, ex):
        for r in recs:
            for n in needles:
                assert n not in r.head, (n, r)
    return check


def response_clean(*needles):
    """The client's answers: CRLF line ends only, no control bytes, none of ``needles``."""
    def check(recs, ex):
        for r in ex.responses:
            assert not re.search(rb"(?<!\r)\n|\r(?!\n)", r.head), r.head
            assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", r.head), r.head
            for n in needles:
                assert n not in r.head + r.body, (n, r.head)
    return check


def refused_or_cut(recs, ex):
    """A 502, or (the head already sent) a 200 whose body is cut short by a close."""
    r = ex.responses[0]
    assert r.status == 502 or (r.status == 200 and not r.complete), ex.responses


def truncated(recs, ex):
    assert ex.responses and ex.responses[0].status == 200 and not ex.responses[0].complete, \
        ex.responses


CL_BAD = [(b"plus", b"+4"), (b"inner-space", b"1 2"), (b"underscore", b"1_2"),
          (b"hex", b"0x4"), (b"negative", b"-4"), (b"list", b"4, 4"), (b"trailing-junk", b"4a")]
TE_REFUSED = [  # Transfer-Encoding values pyroute must not read as chunked
    (b"unknown", b"chunkedx", 501), (b"other-coding", b"gzip, chunked", 501),
    (b"identity", b"identity", {400, 501}), (b"vtab", b"\x0bchunked", {400, 501}),
    (b"chunked-twice", b"chunked, chunked", 400),
    (b"chunked-not-last", b"chunked, gzip", {400, 501})]

CASES = [
    # ---- framing: Content-Length and Transfer-Encoding (RFC 9112 6) -------------------------
    # Both: the classic smuggling signal. pyroute refuses (RFC 9112 6.1 allows it; Go's server,
    # so Traefik, lets Transfer-Encoding win instead and reads the rest as the next request).
    Case("cl-then-te", req(b"POST", b"/cart", [b"Content-Length: 4",
                                               b"Transfer-Encoding: chunked"],
                           b"0\r\n\r\n" + SMUGGLED), (400,), closes=True),
    Case("te-then-cl", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked",
                                               b"Content-Length: 60"],
                           b"0\r\n\r\n" + SMUGGLED), (400,), closes=True),
    # Repeated Content-Length: Go collapses identical repeats, pyroute refuses every repeat
    # (RFC 9110 8.6 allows both); differing repeats are refused by both.
    Case("cl-repeated-same", req(b"POST", b"/cart", [b"Content-Length: 4", b"Content-Length: 4"],
                                 b"abcd" + SMUGGLED), (400,), closes=True),
    Case("cl-repeated-differ", req(b"POST", b"/cart", [b"Content-Length: 4",
                                                       b"Content-Length: 60"],
                                   b"abcd" + SMUGGLED), (400,), closes=True),
] + [
    # Content-Length = 1*DIGIT: whatever a lax parser (Python's int(), strtol) reads out of it.
    Case("cl-" + name.decode(),
         req(b"POST", b"/cart", [b"Content-Length: " + value], b"abcd" + SMUGGLED),
         (400,), closes=True) for name, value in CL_BAD
] + [
    Case("te-" + name.decode(), req(b"POST", b"/cart", [b"Transfer-Encoding: " + value],
                                    b"4\r\nabcd\r\n0\r\n\r\n" + SMUGGLED),
         (status,), closes=True) for name, value, status in TE_REFUSED
] + [
    Case("te-in-http10", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                             b"4\r\nabcd\r\n0\r\n\r\n" + SMUGGLED, version=b"HTTP/1.0"),
         (400,), closes=True),
    # A GET body framed by Content-Length is the body (forwarded as such), never a request.
    Case("get-with-body", req(b"GET", b"/search", [b"Content-Length: %d" % len(SMUGGLED)],
                              SMUGGLED), (200,), closes=False, forwarded=1,
         check=body_is(SMUGGLED), raw_may_carry_blocked=True),
    # Empty list elements and HTAB OWS are valid syntax (RFC 9110 5.6.1, 5.6.3): chunked.
    # (Go's server answers 501 to ", chunked": pyroute follows the RFC there.)
    Case("te-empty-elements", req(b"POST", b"/cart", [b"Transfer-Encoding: , chunked"],
                                  b"4\r\nabcd\r\n0\r\n\r\n"), (200,), closes=False, forwarded=1,
         check=chunked_body_is(b"abcd")),
    Case("te-htab-ows", req(b"POST", b"/cart", [b"Transfer-Encoding:\tchunked\t"],
                            b"4\r\nabcd\r\n0\r\n\r\n"), (200,), closes=False, forwarded=1,
         check=chunked_body_is(b"abcd")),
    # A line starting with whitespace right after the request line (RFC 9112 2.2).
    Case("ws-led-first-line", b"POST /cart HTTP/1.1\r\n Transfer-Encoding: chunked\r\n"
                              b"Host: shop.test\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
         (400,), closes=True),
    # A bare CR hiding a Transfer-Encoding line behind another field (llhttp, aiohttp bugs).
    Case("bare-cr-hides-te", req(b"POST", b"/cart", [b"X-Note: x\rTransfer-Encoding: chunked",
                                                     b"Content-Length: 4"], b"abcd"),
         (400,), closes=True),

    # ---- chunked bodies (RFC 9112 7.1) --------------------------------------------------------
    Case("chunk-extension", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                                b"4;lang=en;q=\"a b\"\r\nabcd\r\n0;end\r\n\r\n"),
         (200,), closes=False, forwarded=1, check=chunked_body_is(b"abcd")),
    Case("chunk-size-negative", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                                    b"-4\r\nabcd\r\n0\r\n\r\n"), (400,), closes=True,
         forwarded=(0, 1)),
    Case("chunk-size-underscore", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                                      b"1_0\r\n" + b"q" * 16 + b"\r\n0\r\n\r\n"),
         (400,), closes=True, forwarded=(0, 1)),
    Case("chunk-size-0x", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                              b"0x4\r\nabcd\r\n0\r\n\r\n"), (400,), closes=True,
         forwarded=(0, 1)),
    Case("chunk-size-too-long", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                                    b"10000000000000004\r\nabcd\r\n0\r\n\r\n"), (400,),
         closes=True, forwarded=(0, 1)),
    Case("chunk-data-not-crlf", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                                    b"4\r\nabcdZZ0\r\n\r\n"), (400,), closes=True,
         forwarded=(0, 1)),
    Case("chunk-data-bare-lf", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                                   b"4\r\nabcd\n0\r\n\r\n"), (400,), closes=True,
         forwarded=(0, 1)),
    # Bytes after the last chunk (and its trailer) are the next request, routed on its own.
    Case("after-last-chunk", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                                 b"4\r\nabcd\r\n0\r\nX-Checksum: 9\r\n\r\n" + SMUGGLED),
         (200, 403), closes=False, forwarded=1, check=chunked_body_is(b"abcd")),
    # The same, arriving in pieces: the next request comes in a later packet than the body's
    # end and is still routed on its own.
    Case("after-last-chunk-split", b"", (200, 403), closes=False, forwarded=1,
         check=chunked_body_is(b"abcd"),
         parts=[(req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"], b"4\r\nab"), 0.05),
                (b"cd\r\n0\r", 0.05), (b"\n\r\n", 0.05), (SMUGGLED[:9], 0.05),
                (SMUGGLED[9:], 0)]),
    # The last chunk never comes: the read timeout ends it, and the backend connection that
    # carried half a body is closed, never reused.
    Case("chunk-missing-last", req(b"POST", b"/cart", [b"Transfer-Encoding: chunked"],
                                   b"4\r\nabcd\r\n"), [(), ({400, 408, 502, 504},)],
         closes=True, forwarded=(0, 1), wait=READ_TIMEOUT + SLACK, upstream_closed=True,
         closed_after=(READ_TIMEOUT - 0.2, READ_TIMEOUT + SLACK)),

    # ---- header syntax (RFC 9112 5) -------------------------------------------------------
    Case("space-before-colon", req(fields=[b"X-Trace : 1"]), (400,), closes=True),
    Case("tab-before-colon", req(fields=[b"Content-Length\t: 0"]), (400,), closes=True),
    Case("no-colon", req(fields=[b"JustSomeWords"]), (400,), closes=True),
    Case("bare-cr-in-value", req(fields=[b"X-A: 1\rX-B: 2"]), (400,), closes=True),
    Case("obs-fold", req(fields=[b"X-Long: part one", b"  part two"]), (400,), closes=True),
    Case("nul-in-value", req(fields=[b"X-A: a\x00b"]), (400,), closes=True),
    Case("del-in-value", req(fields=[b"X-A: a\x7fb"]), (400,), closes=True),
    # obs-text (0x80-0xFF) is allowed in values and goes through byte for byte.
    Case("obs-text", req(fields=[b"X-Name: Gr\xfc\xdfe \xe2\x82\xac"]), (200,), closes=False,
         forwarded=1, check=field_is(b"x-name", b"Gr\xfc\xdfe \xe2\x82\xac")),
    # Bare LF line ends are accepted (as nginx); the backend only ever sees CRLF.
    Case("bare-lf-head", b"GET /lf HTTP/1.1\nHost: shop.test\nX-A: 1\n\n", (200,),
         closes=False, forwarded=1, check=field_is(b"x-a", b"1")),

    # A CRLF split between packets is a CRLF, not a bare CR.
    Case("crlf-split-across-packets", b"", (200,), closes=False, forwarded=1,
         check=field_is(b"x-a", b"1"),
         parts=[(b"GET /split HTTP/1.1\r", 0.05), (b"\nHost: shop.test\r\nX-A: 1\r", 0.05),
                (b"\n\r", 0.05), (b"\n", 0)]),

    # ---- request line (RFC 9112 3) --------------------------------------------------------
    Case("http09", b"GET /cart\r\n\r\n", ({400},), closes=True),
    Case("version-lower-case", req(version=b"http/1.1"), (400,), closes=True),
    Case("version-unknown", req(version=b"HTTP/2.0"), (505,), closes=True),
    Case("space-in-target", req(target=b"/my cart"), (400,), closes=True),
    Case("tab-in-target", req(target=b"/my\tcart"), (400,), closes=True),
    Case("method-not-token", req(method=b"PO@ST"), (400,), closes=True),
    Case("double-space", b"GET  /cart HTTP/1.1\r\nHost: shop.test\r\n\r\n", (400,), closes=True),
    # Absolute-form: the target's authority is the host; the Host field is replaced.
    Case("absolute-form-host-mismatch", req(target=b"http://shop.test/cart", host=b"evil.test"),
         (200,), closes=False, forwarded=1,
         check=all_of(targets_are(b"/cart"), field_is(b"host", b"shop.test"), absent(b"evil"))),
    Case("absolute-form-blocked", req(target=b"http://shop.test/__blocked", host=b"other.test"),
         (403,), closes=False),
    Case("authority-form-get", req(target=b"shop.test:80"), (400,), closes=True),
    Case("asterisk-get", req(target=b"*"), (400,), closes=True),

    # ---- paths (Traefik's sanitizePath, encodedCharacters) --------------------------------
    Case("dot-dot", req(target=b"/static/../__blocked"), (403,), closes=False),
    Case("dot-dot-encoded", req(target=b"/static/%2e%2E/__blocked"), (403,), closes=False),
    Case("dot-segment", req(target=b"/./__blocked/x"), (403,), closes=False),
    Case("double-slash", req(target=b"//__blocked"), (403,), closes=False),
    Case("encoded-unreserved", req(target=b"/%5F%5fblocked"), (403,), closes=False),
    # allowEncodedSlash: false (set on the entry point): %2F / %2f anywhere in the path is 400.
    # (Traefik keeps the connection after that 400; pyroute closes it.)
    Case("encoded-slash-blocked", req(target=b"/%2F__blocked"), ({400, 403},)),
    Case("encoded-slash", req(target=b"/files/a%2fb"), (400,)),
    Case("backslash", req(target=b"/static\\..\\__blocked"), (400,), closes=True),

    # ---- Host (RFC 9112 3.2) --------------------------------------------------------------
    Case("host-missing-11", req(host=None), (400,), closes=True),
    Case("host-repeated", req(fields=[b"Host: other.test"]), (400,), closes=True),
    Case("host-with-path", req(host=b"shop.test/../admin"), (400,), closes=True),
    Case("host-with-userinfo", req(host=b"me@shop.test"), (400,), closes=True),
    Case("host-missing-10", req(target=b"/old", version=b"HTTP/1.0", host=None), (200,),
         closes=True, forwarded=1, check=targets_are(b"/old")),

    # ---- connection handling ------------------------------------------------------------------
    # HTTP/1.0 without keep-alive: one answer, then close; the second request is never read.
    Case("http10-closes", req(target=b"/first", version=b"HTTP/1.0")
         + req(target=b"/second", version=b"HTTP/1.0"), (200,), closes=True, forwarded=1,
         check=targets_are(b"/first")),
    # Each pipelined request is routed (and filtered) on its own.
    Case("pipelined-blocked-middle", req(target=b"/one") + SMUGGLED + req(target=b"/three"),
         (200, 403, 200), closes=False, forwarded=2, check=targets_are(b"/one", b"/three")),
    # An expectation other than 100-continue: 417 (as Go's server).
    Case("expect-unknown", req(fields=[b"Expect: 201-created"]), (417,)),
    # The backend refuses the WebSocket upgrade (426): no tunnel, the next request is routed.
    Case("ws-refused-then-request",
         req(target=b"/fault/ws-426", fields=[b"Connection: Upgrade", b"Upgrade: websocket",
                                               b"Sec-WebSocket-Version: 99",
                                               b"Sec-WebSocket-Key: cHlyb3V0ZS1hdHRhY2tzIQ=="])
         + SMUGGLED, (426, 403), closes=False, forwarded=1,
         check=targets_are(b"/fault/ws-426")),
    # A 101 to a request that asked for no upgrade: 502, and nothing is tunnelled.
    Case("unasked-101-then-request", req(target=b"/fault/unasked-101") + SMUGGLED,
         (502, 403), forwarded=1, upstream_closed=True,
         check=targets_are(b"/fault/unasked-101")),

    # ---- forwarded headers (Traefik's forwardedHeaders, untrusted peer) -------------------
    # Connection naming the X-Forwarded-* fields must not strip what pyroute sets
    # (CVE-2024-45410).
    Case("connection-names-xff", req(fields=[
        b"Connection: keep-alive, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, "
        b"X-Forwarded-Port, X-Real-Ip, X-Forwarded-Server"]), (200,), closes=False, forwarded=1,
         check=all_of(field_is(b"x-forwarded-for", b"127.0.0.1"),
                      field_is(b"x-real-ip", b"127.0.0.1"),
                      field_is(b"x-forwarded-host", b"shop.test"),
                      field_is(b"x-forwarded-proto", b"http"))),
    Case("xff-spoof", req(fields=[b"X-Forwarded-For: 203.0.113.50", b"X-Real-Ip: 203.0.113.50",
                                  b"X-Forwarded-Host: evil.test", b"X-Forwarded-Proto: https",
                                  b"X-Forwarded-Port: 9", b"X-Forwarded-Server: evil"]),
         (200,), closes=False, forwarded=1,
         check=all_of(field_is(b"x-forwarded-for", b"127.0.0.1"),
                      field_is(b"x-real-ip", b"127.0.0.1"),
                      field_is(b"x-forwarded-host", b"shop.test"),
                      field_is(b"x-forwarded-proto", b"http"),
                      absent(b"203.0.113.50", b"evil"))),
    Case("xff-spoof-underscores", req(fields=[b"X_Forwarded_For: 203.0.113.50",
                                              b"X_Real_Ip: 203.0.113.50"]),
         (200,), closes=False, forwarded=1,
         check=all_of(field_is(b"x-forwarded-for", b"127.0.0.1"), absent(b"203.0.113.50"))),
    # X-Forwarded-Prefix from a client is dropped (CVE-2024-52003: open redirects).
    Case("x-forwarded-prefix-spoof", req(fields=[b"X-Forwarded-Prefix: //evil.test/"]),
         (200,), closes=False, forwarded=1,
         check=all_of(field_is(b"x-forwarded-prefix"), absent(b"evil"))),

    # ---- limits --------------------------------------------------------------------------------
    # A 9 KB header line fits (Traefik's maxHeaderBytes is 1 MiB) and goes through whole.
    Case("header-9k", req(fields=[b"X-Pad: " + b"p" * 9216]), (200,), closes=False, forwarded=1,
         check=field_is(b"x-pad", b"p" * 9216)),
    # 150 header lines: Go has no count limit; pyroute refuses more than 100 fields (431).
    Case("headers-150", req(fields=[b"X-Line-%d: v" % i for i in range(150)]), (431,),
         closes=True),
    # 10 GiB declared, 5 bytes sent: no body limit is configured, so the read timeout ends it.
    Case("body-10gib", req(b"POST", b"/upload", [b"Content-Length: 10737418240"], b"hello"),
         [(), ({400, 408, 413, 502, 504},)], closes=True, forwarded=(0, 1),
         wait=READ_TIMEOUT + SLACK, upstream_closed=True,
         closed_after=(READ_TIMEOUT - 0.2, READ_TIMEOUT + SLACK)),

    # ---- upstream faults: a broken answer is 502 and its connection is never reused --------
    # (the backend keeps each such connection open: pyroute has to close it itself)
    Case("up-bare-lf-head", req(target=b"/fault/lf-head"), (200,), forwarded=1,
         check=all_of(response_clean(), lambda recs, ex: ex.responses[0].body == b"abc")),
    Case("up-no-status-line", req(target=b"/fault/no-status"), (502,), forwarded=1,
         upstream_closed=True, check=response_clean(b"sorry")),
    Case("up-nul-in-header", req(target=b"/fault/nul-header"), (502,), forwarded=1,
         upstream_closed=True, check=response_clean(b"\x00", b"fore")),
    Case("up-cr-in-header", req(target=b"/fault/cr-header"), (502,), forwarded=1,
         upstream_closed=True, check=response_clean(b"stolen")),
    Case("up-lf-in-value", req(target=b"/fault/lf-in-value"), ({200, 502},), forwarded=1,
         check=response_clean()),
    # Content-Length with Transfer-Encoding from the backend: Go lets TE win, pyroute answers
    # 502; either way the client never gets both, nor the declared 77 bytes.
    Case("up-cl-and-te", req(target=b"/fault/cl-te"), ({200, 502},), forwarded=1,
         upstream_closed=True, check=response_clean(b"Content-Length: 77")),
    Case("up-cl-differ", req(target=b"/fault/cl-differ"), (502,), forwarded=1,
         upstream_closed=True),
    Case("up-bad-chunk", req(target=b"/fault/bad-chunk"), ({200, 502},), forwarded=1,
         upstream_closed=True, check=refused_or_cut),
    Case("up-extra-response", req(target=b"/fault/extra-response"), (200,), closes=False,
         forwarded=1, upstream_closed=True,
         check=all_of(response_clean(b"poison"),
                      lambda recs, ex: ex.responses[0].body == b"abc")),
    Case("up-204-with-body", req(target=b"/fault/204-body"), (502,), forwarded=1,
         upstream_closed=True, check=response_clean(b"poison")),
    Case("up-huge-header", req(target=b"/fault/huge-header"), (502,), forwarded=1,
         upstream_closed=True, check=response_clean(b"hhhh")),
    Case("up-close-before-response", req(target=b"/fault/close-before-response"), (502,),
         forwarded=(1, 2)),
    Case("up-hang", req(target=b"/fault/hang"), (504,), forwarded=1, upstream_closed=True,
         wait=HEADER_TIMEOUT + SLACK),
    # Stalls mid-body: the writeTimeout ends the exchange, the client sees a cut body and a close.
    Case("up-hang-mid-body", req(target=b"/fault/hang-mid-body"), (200,), closes=True,
         forwarded=1, upstream_closed=True, wait=WRITE_TIMEOUT + SLACK, check=truncated,
         closed_after=(WRITE_TIMEOUT - 0.2, WRITE_TIMEOUT + SLACK)),
]

CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "duplicate case id"


def probe(proxy, backend, case_id):
    """A fresh connection gets its own answer: nothing was left in a pooled connection."""
    target = b"/__probe/" + case_id.encode()
    ex = Exchange(proxy.port, [(req(target=target, fields=[b"Connection: close"]), 0)])
    ex.read(1, 5.0)
    ex.finish()
    assert ex.statuses == [200], ("probe after", case_id, ex.responses)
    r = ex.responses[0]
    assert r.values(b"x-poisoned") == [] and r.values(b"x-backend") == [b"attack-be"], r.head
    assert json.loads(r.body)["target"] == target.decode(), ("probe answered", r.body)


def settle(backend, start, timeout=3.0):
    """The backend's records of this case, once their bodies are read (or ended)."""
    end = time.monotonic() + timeout
    while True:
        with backend.lock:
            recs = [r for r in backend.received[start:]]
        if all(r.done for r in recs) or time.monotonic() > end:
            return recs
        time.sleep(0.02)


def run_case(proxy, backend, case):
    with backend.lock:
        start = len(backend.received)
        raw_start = [len(r) for r in backend.raw]
    alternatives = case.answers if isinstance(case.answers, list) else [case.answers]
    ex = Exchange(proxy.port, case.parts or [(case.raw, 0)])
    ex.read(max(len(a) for a in alternatives), case.wait)
    if case.closes:
        ex.wait_close(case.wait)
        closed = ex.eof
        ex.finish()
    else:
        was_open = not ex.eof
        ex.finish()
    recs = settle(backend, start)
    ctx = (case.id, ex.statuses, ex.responses[:4], recs[:4])
    # what the client saw
    assert any(len(ex.statuses) == len(a)
               and all(got in want if isinstance(want, set) else got == want
                       for got, want in zip(ex.statuses, a)) for a in alternatives), ctx
    if case.closes:
        assert closed, ("pyroute left the connection open",) + ctx
    if case.closed_after:
        lo, hi = case.closed_after
        assert lo <= ex.closed_after <= hi, ("closed after %.2f s" % ex.closed_after,) + ctx
    elif case.closes is False:
        assert was_open, ("pyroute closed the connection",) + ctx
    # what the backend saw
    n = len(recs)
    lo, hi = case.forwarded if isinstance(case.forwarded, tuple) else (case.forwarded,) * 2
    assert lo <= n <= hi, ("forwarded", n) + ctx
    for rec in recs:
        check_forwarded(rec)
    if not case.raw_may_carry_blocked:
        with backend.lock:
            got = [bytes(r[raw_start[i] if i < len(raw_start) else 0:])
                   for i, r in enumerate(backend.raw)]
        assert not any(b"/__blocked" in g for g in got), ("raw bytes carry /__blocked",) + ctx
    if case.check:
        case.check(recs, ex)
    if case.upstream_closed:
        end = time.monotonic() + 3.0
        conns = {r.conn for r in recs}
        while not conns <= backend.closed and time.monotonic() < end:
            time.sleep(0.02)
        assert conns <= backend.closed, ("backend connection left open (pooled?)",) + ctx
    probe(proxy, backend, case.id)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_attack(env, case):
    run_case(*env, case)


def test_slow_reader_of_a_huge_response_is_cut_off(env):
    """A client that stops reading a 300 MB answer: the writeTimeout closes the connection,
    and pyroute holds back a bounded amount meanwhile (it reads from the backend only as fast
    as the client takes)."""
    proxy, backend = env
    worker = worker_pids(proxy.proc.pid)[0]

    def rss_kib():
        with open("/proc/%d/status" % worker) as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    before = rss_kib()
    ex = Exchange(proxy.port, [(req(target=b"/big/300000000"), 0)], rcvbuf=65536)
    time.sleep(WRITE_TIMEOUT + 0.5)             # reads nothing while the deadline passes
    grown = rss_kib() - before
    got = 0
    ex.sock.settimeout(5.0)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5.0:
        try:
            data = ex.sock.recv(1 << 20)
        except OSError:
            break
        if not data:
            break
        got += len(data)
    else:
        pytest.fail("connection still open %.1f s after the writeTimeout" % (5.0 + WRITE_TIMEOUT))
    ex.sock.close()
    assert got < 64 << 20, got                  # cut off long before 300 MB
    assert grown < 64 << 10, "worker RSS grew by %d KiB" % grown
    probe(proxy, backend, "slow-reader")
