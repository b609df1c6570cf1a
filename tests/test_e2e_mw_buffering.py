"""End to end: the buffering middleware through ``pyroute run`` — request limits (413 by
Content-Length and by a chunked body, the backend never sees the request), the body forwarded
with a Content-Length, a body over memRequestBodyBytes spooled to a temporary file and arriving
byte-exact, the response held whole (Content-Length, maxResponseBodyBytes: 500), a spooled
response, retryExpression; oxy's buffer_test.go and Traefik's buffering_test.go cases."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from e2e_backend import Backend
from e2e_support import (REPO, Pyroute, backend_service, free_port, get, ingressroute,
                         read_response, request, worker_pids)

MiB = 1024 * 1024


class Hashing:
    """A backend that reads the body (Content-Length) slowly if asked (``delay`` seconds
    before reading) and answers its length and sha256; ``fail`` first answers get ``code``."""

    def __init__(self):
        outer = self
        self.delay, self.fail, self.code, self.count = 0.0, 0, 503, 0
        self.heads = []
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self):
                with outer.lock:
                    outer.count += 1
                    n_attempt = outer.count
                    outer.heads.append(dict(self.headers))
                if outer.delay:
                    time.sleep(outer.delay)
                n = int(self.headers.get("Content-Length") or 0)
                h = hashlib.sha256()
                left = n
                while left:
                    data = self.rfile.read(min(left, 65536))
                    if not data:
                        break
                    h.update(data)
                    left -= len(data)
                code = outer.code if n_attempt <= outer.fail else 200
                body = json.dumps({"len": n - left, "sha": h.hexdigest(),
                                   "attempt": n_attempt}).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_GET = do_POST = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self, delay=0.0, fail=0, code=503):
        with self.lock:
            self.delay, self.fail, self.code, self.count = delay, fail, code, 0
            self.heads = []

    def close(self):
        self.server.shutdown()


class Trailing:
    """A backend answering ``/t?n=N&declare=A,B&tr=A:1|C:2`` chunked: N bytes of "t" in
    pieces of 7000, then the trailer fields ``tr``; ``declare``: its Trailer header."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        from urllib.parse import parse_qs, urlsplit
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                f = c.makefile("rb")
                target = f.readline().split()[1].decode()
                while f.readline() not in (b"\r\n", b""):
                    pass
                q = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
                n = int(q.get("n", "0"))
                head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                if q.get("declare"):
                    head += "Trailer: %s\r\n" % q["declare"]
                out = [head.encode() + b"\r\n"]
                for i in range(0, n, 7000):
                    part = b"t" * min(7000, n - i)
                    out.append(b"%x\r\n%s\r\n" % (len(part), part))
                out.append(b"0\r\n")
                for field in q.get("tr", "").split("|") if q.get("tr") else []:
                    out.append(field.encode() + b"\r\n")
                out.append(b"\r\n")
                for piece in out:
                    c.sendall(piece)         # separate writes: pieces split the trailers
                    time.sleep(0.002)

    def close(self):
        self.sock.close()


def raw_chunked(port, host, query, version="1.1"):
    """(head lines lower-cased -> values, body, trailer fields) of one response, read to EOF
    and de-chunked here (so the trailer section is seen as sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("GET /t?%s HTTP/%s\r\nHost: %s\r\nConnection: close\r\n\r\n"
                   % (query, version, host)).encode())
        data = b""
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode().partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    if "chunked" not in headers.get("transfer-encoding", [""])[0]:
        return headers, rest, None
    body, trailers = b"", []
    while True:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            break
        body, rest = body + rest[:size], rest[size + 2:]
    section, _, after = rest.partition(b"\r\n\r\n")
    assert after == b""
    for line in section.split(b"\r\n") if section else []:
        k, _, v = line.decode().partition(":")
        trailers.append((k.strip().lower(), v.strip()))
    return headers, body, trailers


def middleware(name, spec):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: default}\nspec:\n  buffering: %s\n"
            % (name, json.dumps(spec)))


def uses(*names):
    return "      middlewares: [%s]\n" % ", ".join("{name: %s}" % n for n in names)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("buffering")
    spool_dir = tmp / "spool"
    spool_dir.mkdir()
    be = Backend("be")
    hashing = Hashing()
    trailing = Trailing()
    dead = free_port()
    m = backend_service("be", [be.port])
    m += "---\n" + backend_service("trailing", [trailing.port])
    m += "---\n" + backend_service("hashing", [hashing.port])
    m += "---\n" + backend_service("dead", [dead])
    m += middleware("plain", {})
    m += middleware("max4", {"maxRequestBodyBytes": 4})
    m += middleware("max8mem4", {"maxRequestBodyBytes": 8, "memRequestBodyBytes": 4})
    m += middleware("max10", {"maxRequestBodyBytes": 10})
    m += middleware("spool", {"memRequestBodyBytes": 65536, "memResponseBodyBytes": 65536})
    m += middleware("resp4", {"maxResponseBodyBytes": 4})
    m += middleware("resp2000", {"maxResponseBodyBytes": 2000})
    m += middleware("one", {"maxRequestBodyBytes": 1})
    m += middleware("respone", {"maxResponseBodyBytes": 1})
    m += middleware("retry-net", {"retryExpression": "IsNetworkError() && Attempts() < 3"})
    m += middleware("retry-code", {"retryExpression": "ResponseCode() == 503 && Attempts() <= 2"})
    m += middleware("retry-post", {"retryExpression":
                                   "RequestMethod() == \"POST\" && ResponseCode() >= 500"})
    m += middleware("retry-always", {"retryExpression": "ResponseCode() == 503"})
    m += middleware("bad-expr", {"retryExpression": "Attempts() <= 2 &&& IsNetworkError()"})
    m += middleware("bad-fn", {"retryExpression": "Foo() == 1"})
    m += middleware("bad-type", {"retryExpression": "ResponseCode() == \"x\""})
    m += middleware("bad-size", {"maxRequestBodyBytes": -1})
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: retry2, namespace: default}\nspec:\n  retry: {attempts: 2, "
          "status: [\"503\"], retryNonIdempotentMethod: true}\n")
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: gzip, namespace: default}\nspec:\n  compress: {}\n")
    m += ingressroute("main", [
        ("Host(`gzip.test`)", "be", uses("plain", "gzip")),
        ("Host(`retrymax.test`)", "be", uses("retry2", "max4")),
        ("Host(`nested.test`)", "hashing", uses("retry-code", "retry2")),
        ("Host(`plain.test`)", "be", uses("plain")),
        ("Host(`trailers.test`)", "trailing", uses("plain")),
        ("Host(`trailers-spool.test`)", "trailing", uses("spool")),
        ("Host(`trailers-raw.test`)", "trailing", ""),
        ("Host(`max4.test`)", "be", uses("max4")),
        ("Host(`max8.test`)", "be", uses("max8mem4")),
        ("Host(`max10.test`)", "be", uses("max10")),
        ("Host(`spool.test`)", "hashing", uses("spool")),
        ("Host(`spoolbe.test`)", "be", uses("spool")),
        ("Host(`resp4.test`)", "be", uses("resp4")),
        ("Host(`resp2000.test`)", "be", uses("resp2000")),
        ("Host(`one.test`)", "be", uses("one")),
        ("Host(`respone.test`)", "be", uses("respone")),
        ("Host(`retrynet.test`)", "dead", uses("retry-net")),
        ("Host(`retrycode.test`)", "hashing", uses("retry-code")),
        ("Host(`retrypost.test`)", "hashing", uses("retry-post")),
        ("Host(`retryalways.test`)", "hashing", uses("retry-always")),
        ("Host(`bad1.test`)", "be", uses("bad-expr")),
        ("Host(`bad2.test`)", "be", uses("bad-fn")),
        ("Host(`bad3.test`)", "be", uses("bad-type")),
        ("Host(`bad4.test`)", "be", uses("bad-size")),
    ])
    proxy = Pyroute(tmp, m, workers=1)
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(spool_dir)      # where the worker's temporary files go
    try:
        proxy.start()
    finally:
        if old is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = old
    yield {"port": proxy.port, "be": be, "hashing": hashing, "tmp": tmp, "proxy": proxy,
           "spool": str(spool_dir)}
    proxy.stop()
    be.close()
    trailing.close()
    hashing.close()


def post(port, host, body, path="/", chunked=False, extra=""):
    if chunked:
        framed = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in body) + b"0\r\n\r\n"
        head = ("POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n%s\r\n"
                % (path, host, extra))
        return request(port, head.encode() + framed)
    head = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (path, host, len(body), extra))
    return request(port, head.encode() + body)


def backend_saw(be, since):
    return be.received[since:]


# ---- requests ---------------------------------------------------------------------------

def test_simple(env):
    # oxy TestBuffer_simple
    status, headers, body = get(env["port"], "/", "plain.test")
    assert status == 200 and json.loads(body)["method"] == "GET"
    assert headers["content-length"] == str(len(body))


def test_chunked_request_is_forwarded_with_a_content_length(env):
    # oxy TestBuffer_chunkedEncodingSuccess: "testtest1test2", Content-Length 14, no chunks
    n = len(env["be"].received)
    status, _, body = post(env["port"], "plain.test", [b"test", b"test1", b"test2"],
                           chunked=True)
    assert status == 200
    rec = env["be"].received[n]
    assert rec.body == b"testtest1test2"
    fields = {k.strip().lower(): v.strip() for k, v in rec.fields if k}
    assert fields[b"content-length"] == b"14" and b"transfer-encoding" not in fields


def test_chunked_body_over_the_limit_is_413_and_never_forwarded(env):
    # oxy TestBuffer_chunkedEncodingLimitReached (mem 4, max 8)
    n = len(env["be"].received)
    status, _, body = post(env["port"], "max8.test", [b"test", b"test1", b"test2"],
                           chunked=True)
    assert (status, body) == (413, b"Request Entity Too Large")
    assert len(env["be"].received) == n


def test_content_length_over_the_limit_is_413_before_the_body_is_read(env):
    # oxy TestBuffer_requestLimitReached; the body is not even waited for
    n = len(env["be"].received)
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: max4.test\r\nContent-Length: 100000\r\n\r\nhello")
        status, headers, body, _ = read_response(s)
    assert (status, body) == (413, b"Request Entity Too Large")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert len(env["be"].received) == n


def test_body_within_the_limit_passes(env):
    # oxy TestBuffer_notNilBody (max 10): twice, the connection reused
    for _ in range(2):
        status, _, body = post(env["port"], "max10.test", b"hello")
        assert status == 200 and json.loads(body)["body"] == "hello"


def test_traefik_table(env):
    # Traefik pkg/middlewares/buffering TestBuffering: 127 random bytes
    payload = os.urandom(127)
    assert post(env["port"], "plain.test", payload)[0] == 200
    assert post(env["port"], "one.test", payload)[0] == 413
    assert post(env["port"], "respone.test", payload)[0] == 500


def test_keep_alive_after_a_buffered_request(env):
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=5) as s:
        for i in range(3):
            s.sendall(b"POST / HTTP/1.1\r\nHost: max10.test\r\nContent-Length: 3\r\n\r\nab%d" % i)
            status, _, body, rest = read_response(s)
            assert status == 200 and json.loads(body)["body"] == "ab%d" % i and not rest


def _spool_files(env):
    """Temporary files the workers hold open under the test's TMPDIR (unlinked: seen
    through /proc/PID/fd as '... (deleted)')."""
    out = []
    for pid in worker_pids(env["proxy"].proc.pid):
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith(env["spool"]):
                out.append(target)
    return out


def test_a_body_over_mem_is_spooled_to_a_file_and_arrives_byte_exact(env):
    hashing = env["hashing"]
    hashing.reset(delay=1.0)          # the backend waits before it reads: the body is held
    payload = os.urandom(3 * MiB + 17)
    seen = []
    result = {}

    def send():
        result["r"] = post(env["port"], "spool.test", payload)
    t = threading.Thread(target=send)
    t.start()
    end = time.time() + 5
    while time.time() < end and t.is_alive():
        seen += _spool_files(env)
        if seen:
            break
        time.sleep(0.02)
    t.join(20)
    status, _, body = result["r"]
    got = json.loads(body)
    assert status == 200
    assert got == {"len": len(payload), "sha": hashlib.sha256(payload).hexdigest(),
                   "attempt": 1}
    assert seen and all(s.endswith("(deleted)") for s in seen), seen
    assert hashing.heads[-1]["Content-Length"] == str(len(payload))
    # the file is gone once the exchange ended
    time.sleep(0.2)
    assert _spool_files(env) == []


def test_a_chunked_body_over_mem_is_spooled_and_arrives_byte_exact(env):
    env["hashing"].reset()
    parts = [os.urandom(50000) for _ in range(30)]
    status, _, body = post(env["port"], "spool.test", parts, chunked=True)
    payload = b"".join(parts)
    assert status == 200
    assert json.loads(body)["sha"] == hashlib.sha256(payload).hexdigest()
    assert env["hashing"].heads[-1]["Content-Length"] == str(len(payload))


def test_expect_100_continue_is_answered_before_the_body_is_buffered(env):
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        status, _, body, _ = read_response(s)
    assert status == 200 and json.loads(body)["body"] == "hello"


# ---- responses --------------------------------------------------------------------------

def test_a_chunked_response_leaves_with_a_content_length(env):
    # oxy TestBuffer_chunkedResponse
    status, headers, body = get(env["port"], "/chunked/2500", "plain.test")
    assert status == 200 and body == b"c" * 2500
    assert headers["content-length"] == "2500" and "transfer-encoding" not in headers


def test_an_until_close_response_leaves_with_a_content_length(env):
    status, headers, body = get(env["port"], "/close/3000", "plain.test")
    assert status == 200 and body == b"z" * 3000 and headers["content-length"] == "3000"


def test_response_over_the_limit_is_500(env):
    # oxy TestBuffer_responseLimitReached (its table: bodies around 32768 and 65536 bytes)
    for host, n in (("resp4.test", 33), ("resp4.test", 32769), ("resp2000.test", 32769),
                    ("resp2000.test", 32769 + 1999), ("resp2000.test", 32769 + 2000),
                    ("resp2000.test", 65537 + 1999), ("resp2000.test", 65537 + 2000)):
        status, headers, body = get(env["port"], "/big/%d" % n, host)
        assert (status, body) == (500, b"Internal Server Error"), (host, n, status)
        assert headers["content-type"] == "text/plain; charset=utf-8"
    # under the limit it passes
    assert get(env["port"], "/big/2000", "resp2000.test")[2] == b"x" * 2000


def test_a_spooled_response_arrives_whole(env):
    # oxy TestBuffer_fileStreamingResponse: a response over memResponseBodyBytes
    status, headers, body = get(env["port"], "/big/%d" % (2 * MiB + 5), "spoolbe.test")
    assert status == 200 and len(body) == 2 * MiB + 5 and body == b"x" * (2 * MiB + 5)
    assert headers["content-length"] == str(2 * MiB + 5)


def test_no_body_answers(env):
    # oxy TestBuffer_notModified / TestBuffer_noBody / HEAD
    assert get(env["port"], "/status/304", "plain.test")[0] == 304
    assert get(env["port"], "/status/204", "plain.test")[0] == 204
    status, headers, body = request(env["port"], b"HEAD /big/10 HTTP/1.1\r\nHost: plain.test"
                                    b"\r\n\r\n", head_request=True)
    assert status == 200 and headers["content-length"] == "10"


# ---- retryExpression --------------------------------------------------------------------

def test_retry_expression_on_network_errors(env):
    t0 = time.monotonic()
    status, _, _ = get(env["port"], "/", "retrynet.test")
    assert status == 502 and time.monotonic() - t0 < 5


def test_retry_expression_on_a_status_resends_the_body(env):
    hashing = env["hashing"]
    hashing.reset(fail=1, code=503)
    payload = os.urandom(5000)
    status, _, body = post(env["port"], "retrycode.test", payload)
    got = json.loads(body)
    assert status == 200 and got["attempt"] == 2
    assert got["sha"] == hashlib.sha256(payload).hexdigest()
    # Attempts() <= 2: a third try, not a fourth
    hashing.reset(fail=10, code=503)
    status, _, body = get(env["port"], "/", "retrycode.test")
    assert status == 503 and hashing.count == 3


def test_retry_expression_request_method(env):
    hashing = env["hashing"]
    hashing.reset(fail=1, code=500)
    assert get(env["port"], "/", "retrypost.test")[0] == 500 and hashing.count == 1
    hashing.reset(fail=1, code=500)
    status, _, body = post(env["port"], "retrypost.test", b"abc")
    assert status == 200 and hashing.count == 2


def test_retries_stop_after_ten_more_attempts(env):
    # oxy DefaultMaxRetryAttempts: the expression alone would retry for ever
    hashing = env["hashing"]
    hashing.reset(fail=100, code=503)
    assert get(env["port"], "/", "retryalways.test")[0] == 503
    assert hashing.count == 11


def test_bad_options_are_config_errors(env):
    for host in ("bad1.test", "bad2.test", "bad3.test", "bad4.test"):
        assert get(env["port"], "/", host)[0] == 404
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c",
                          str(env["tmp"] / "static.yaml"), str(env["tmp"] / "manifests")],
                         capture_output=True, text=True, cwd=str(REPO))
    text = out.stdout + out.stderr
    assert "Attempts() <= 2 &&& IsNetworkError()\n" in text and "^" in text
    assert "unsupported function Foo" in text
    assert "expected int, got string" in text
    assert "bad-size" in text


def test_a_body_kept_by_retry_still_meets_the_buffering_limit(env):
    n = len(env["be"].received)
    status, _, body = post(env["port"], "retrymax.test", b"0123456789")
    assert (status, body) == (413, b"Request Entity Too Large")
    assert len(env["be"].received) == n
    status, _, body = post(env["port"], "retrymax.test", b"0123")
    assert status == 200 and json.loads(body)["body"] == "0123"


def test_a_retry_expression_around_a_retry_middleware(env):
    # the retry inside tries twice; then the expression around it (Attempts() <= 2) runs
    # the chain again, and the retry inside starts afresh
    hashing = env["hashing"]
    hashing.reset(fail=3, code=503)
    payload = b"nested body"
    status, _, body = post(env["port"], "nested.test", payload)
    got = json.loads(body)
    assert status == 200 and got["attempt"] == 4 and hashing.count == 4
    assert got["sha"] == hashlib.sha256(payload).hexdigest()


def test_a_response_over_mem_is_held_in_a_file_while_the_client_reads(env):
    n = 8 * MiB
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", env["port"]))
        s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: spoolbe.test\r\n\r\n" % n)
        seen = []
        end = time.time() + 5
        while time.time() < end and not seen:
            seen = _spool_files(env)       # the client reads nothing meanwhile
            time.sleep(0.02)
        status, headers, body, _ = read_response(s, timeout=20)
    assert seen and all(p.endswith("(deleted)") for p in seen)
    assert status == 200 and headers["content-length"] == str(n) and body == b"x" * n
    time.sleep(0.2)
    assert _spool_files(env) == []


def test_a_request_smuggled_behind_a_buffered_body_stays_a_request_of_its_own(env):
    # the body is taken out of the connection's buffer exactly: bytes after its last chunk
    # (or its Content-Length) are the next request, never part of the body, and a request
    # hidden inside a chunk is body data the backend gets with the body's Content-Length
    be = env["be"]
    n = len(be.received)
    inner = b"GET /inner HTTP/1.1\r\nHost: plain.test\r\n\r\n"
    chunked = (b"POST /first HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n")
    by_length = (b"POST /second HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 5\r\n\r\n"
                 b"hello")
    last = b"GET /third HTTP/1.1\r\nHost: plain.test\r\n\r\n"
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=5) as s:
        s.sendall(chunked + by_length + last)
        answers = []
        rest = b""
        for _ in range(3):
            status, _, body, rest = read_response(s) if not rest else _from(s, rest)
            answers.append((status, json.loads(body)))
    assert [a[1]["target"] for a in answers] == ["/first", "/second", "/third"]
    assert answers[0][1]["body"] == inner.decode() and answers[1][1]["body"] == "hello"
    got = be.received[n:]
    assert [r.line for r in got] == [b"POST /first HTTP/1.1", b"POST /second HTTP/1.1",
                                     b"GET /third HTTP/1.1"]


def _from(sock, rest):
    """The next response when part of it was already read with the previous one."""
    class Prefixed:
        def __init__(self):
            self.first = rest

        def settimeout(self, t):
            sock.settimeout(t)

        def recv(self, n):
            if self.first:
                data, self.first = self.first, b""
                return data
            return sock.recv(n)
    return read_response(Prefixed())


def test_a_compressed_response_is_held_whole_with_its_length(env):
    import gzip
    status, headers, body = get(env["port"], "/big/20000", "gzip.test",
                                "Accept-Encoding: gzip\r\n")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["content-length"] == str(len(body)) and "transfer-encoding" not in headers
    assert gzip.decompress(body) == b"x" * 20000


@pytest.mark.parametrize("host,n", [("trailers.test", 20), ("trailers.test", 30000),
                                    ("trailers-spool.test", 200000)])
def test_a_held_response_s_declared_trailers_go_as_traefik_s(env, host, n):
    # every trailer received was declared: Go's ReverseProxy copies them into the header
    # map after the body — oxy's, copied whole before its WriteHeader — so they show in the
    # head as well as after the last chunk (Go's server chunks a response with trailers)
    headers, body, trailers = raw_chunked(env["port"], host,
                                          "n=%d&declare=X-Sum&tr=X-Sum:%d" % (n, n))
    assert body == b"t" * n
    assert "content-length" not in headers
    assert headers["trailer"] == ["X-Sum"] and headers["x-sum"] == [str(n)]
    assert trailers == [("x-sum", str(n))]


@pytest.mark.parametrize("host,n", [("trailers.test", 5000), ("trailers-spool.test", 150000)])
def test_a_held_response_s_undeclared_trailers_stay_trailers(env, host, n):
    # not all declared (or none): Go's ReverseProxy adds them as "Trailer:"-prefixed keys,
    # which Go's server sends after the last chunk only
    headers, body, trailers = raw_chunked(env["port"], host, "n=%d&tr=X-Late:1|X-More:b" % n)
    assert body == b"t" * n and "x-late" not in headers and "content-length" not in headers
    assert trailers == [("x-late", "1"), ("x-more", "b")]
    headers, body, trailers = raw_chunked(env["port"], host,
                                          "n=%d&declare=X-A&tr=X-A:1|X-B:2" % n)
    assert headers["trailer"] == ["X-A"] and "x-a" not in headers and "x-b" not in headers
    assert trailers == [("x-a", "1"), ("x-b", "2")]


def test_held_trailers_to_an_http10_client_and_without_buffering(env):
    # HTTP/1.0: no chunking, so no trailer section; the declared ones are in the head
    headers, body, trailers = raw_chunked(env["port"], "trailers.test",
                                          "n=3000&declare=X-Sum&tr=X-Sum:9", version="1.0")
    assert trailers is None and body == b"t" * 3000 and headers["x-sum"] == ["9"]
    assert headers["content-length"] == ["3000"]
    # no trailers: still a Content-Length
    headers, body, trailers = raw_chunked(env["port"], "trailers.test", "n=3000")
    assert trailers is None and headers["content-length"] == ["3000"]
    # without buffering the chunks and trailers stream through as they came
    headers, body, trailers = raw_chunked(env["port"], "trailers-raw.test",
                                          "n=3000&declare=X-Sum&tr=X-Sum:9")
    assert "x-sum" not in headers and trailers == [("x-sum", "9")]


def test_an_http10_client_gets_the_held_response_with_a_content_length(env):
    status, headers, body = request(env["port"], b"GET /chunked/1500 HTTP/1.0\r\n"
                                    b"Host: plain.test\r\n\r\n")
    assert status == 200 and body == b"c" * 1500 and headers["content-length"] == "1500"
    assert "transfer-encoding" not in headers
