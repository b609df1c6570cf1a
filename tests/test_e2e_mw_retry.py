"""End to end: the retry middleware through ``pyroute run`` — network errors retried only
while nothing reached the backend, statuses retried for idempotent methods, the next attempt
on the next server, attempts and timeout bounding it, Traefik's backoff, config errors."""
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from e2e_backend import Backend
from e2e_support import REPO, Pyroute, backend_service, free_port, get, ingressroute, request


class Scripted:
    """A backend answering ``fail`` times with ``code``, then 200 (``fail`` < 0: always)."""

    def __init__(self, code=503, fail=-1, host="127.0.0.1"):
        outer = self
        self.code, self.fail, self.count, self.lock = code, fail, 0, threading.Lock()
        self.seen = []              # (path, headers, body) of every request
        self.sequence = None        # the status of each attempt, in order (else code/fail)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        body += self.rfile.read(size)
                        self.rfile.readline()
                        if not size:
                            break
                with outer.lock:
                    outer.seen.append((self.path, dict(self.headers), body))
                    outer.count += 1
                    bad = outer.fail < 0 or outer.count <= outer.fail
                    seq = outer.sequence
                code = outer.code if bad else 200
                if seq is not None:
                    code = seq[outer.count - 1] if outer.count <= len(seq) else 403
                body = b"attempt %d" % outer.count
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_GET = do_POST = do_HEAD = do_PUT = _answer

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self, code=503, fail=-1, sequence=None):
        with self.lock:
            self.code, self.fail, self.count = code, fail, 0
            self.seen = []
            self.sequence = sequence

    def close(self):
        self.server.shutdown()


def middleware(name, spec):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: default}\nspec:\n  retry: %s\n"
            % (name, json.dumps(spec)))


def uses(name):
    return "      middlewares: [{name: %s}]\n" % name


BODY = b"test request body"
# Traefik pkg/middlewares/retry TestRetryHTTPStatusCodes: (desc, config, the backend's
# statuses, method, body, expected status, expected backend calls)
TRAEFIK_TABLE = [
    ("retry on single 503 status code",
     {"attempts": 3, "status": ["503"], "maxRequestBodyBytes": 1024},
     [503, 200], "GET", BODY, 200, 2),
    ("retry on range of 5xx status codes",
     {"attempts": 4, "status": ["500-599"], "maxRequestBodyBytes": 1024},
     [500, 502, 503, 200], "GET", BODY, 200, 4),
    ("retry on multiple specific status codes",
     {"attempts": 3, "status": ["502", "503", "504"], "maxRequestBodyBytes": 1024},
     [502, 200], "GET", BODY, 200, 2),
    ("no retry on non-matching status code",
     {"attempts": 3, "status": ["503"], "maxRequestBodyBytes": 1024},
     [500], "GET", b"", 500, 1),
    ("exhaust all attempts with matching status codes",
     {"attempts": 3, "status": ["503"]}, [503, 503, 503], "GET", b"", 503, 3),
    ("retry with body lower than maxRequestBodyBytes",
     {"attempts": 3, "status": ["502"], "maxRequestBodyBytes": 1024},
     [502, 200], "GET", BODY, 200, 2),
    ("retry with body greater than maxRequestBodyBytes",
     {"attempts": 3, "status": ["502"], "maxRequestBodyBytes": 8},
     [502, 200], "GET", BODY, 502, 1),
    ("retry failure on 503 status code with method POST",
     {"attempts": 3, "status": ["503"], "maxRequestBodyBytes": 1024},
     [503, 200], "POST", BODY, 503, 1),
    ("retry success on 503 status code with method POST",
     {"attempts": 3, "status": ["503"], "retryNonIdempotentMethod": True,
      "maxRequestBodyBytes": 1024}, [503, 200], "POST", BODY, 200, 2),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retry")
    live = Backend("live")
    flaky = Scripted()
    dead = free_port()                                   # nothing listens there
    # round robin over a server nothing listens on and a live one (one server per IP)
    m = backend_service("mixed", [("127.0.0.2", dead), live.port])
    m += "---\n" + backend_service("flaky", [flaky.port])
    m += "---\n" + backend_service("deadonly", [dead])
    m += middleware("net", {"attempts": 2})
    # over maxRequestBodyBytes: Traefik drops the status retries, keeps the network ones
    m += middleware("net-small", {"attempts": 2, "status": ["503"], "maxRequestBodyBytes": 10})
    m += middleware("net-small-off", {"attempts": 2, "maxRequestBodyBytes": 10,
                                      "status": ["503"], "disableRetryOnNetworkError": True})
    m += middleware("status3", {"attempts": 3, "status": ["500-599"]})
    m += middleware("post", {"attempts": 3, "status": ["503"], "retryNonIdempotentMethod": True})
    m += middleware("timeout", {"attempts": 10, "status": ["503"], "timeout": "300ms",
                                "initialInterval": "100ms"})
    m += middleware("backoff", {"attempts": 3, "status": ["503"], "initialInterval": "200ms"})
    m += middleware("nonet", {"attempts": 3, "status": ["503"],
                              "disableRetryOnNetworkError": True})
    m += middleware("bad-attempts", {"attempts": 0})
    m += middleware("bad-status", {"attempts": 2, "status": ["5xx"]})
    m += middleware("bad-none", {"attempts": 2, "disableRetryOnNetworkError": True})
    failing = Scripted(503, -1, host="127.0.0.3")      # always 503
    m += "---\n" + backend_service("failing-live", [("127.0.0.3", failing.port), live.port])
    m += middleware("post-body", {"attempts": 3, "status": ["503"],
                                  "retryNonIdempotentMethod": True})
    m += middleware("small-body", {"attempts": 3, "status": ["503"],
                                   "retryNonIdempotentMethod": True, "maxRequestBodyBytes": 10})
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: strip, namespace: default}\nspec:\n  stripPrefix: "
          "{prefixes: [/api]}\n")
    # retry among a service's own middlewares (Traefik wraps that service's handler)
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: svc-level, namespace: default}\nspec:\n  entryPoints: [web]\n"
          "  routes:\n    - match: Host(`svc.test`)\n      kind: Rule\n"
          "      services: [{name: flaky, port: 80, middlewares: [{name: strip}, "
          "{name: status3}]}]\n")
    for i, (_, config, *_rest) in enumerate(TRAEFIK_TABLE):
        m += middleware("table%d" % i, config)
    m += ingressroute("table", [("Host(`table%d.test`)" % i, "flaky", uses("table%d" % i))
                               for i in range(len(TRAEFIK_TABLE))])
    # retry in a TraefikService child's middlewares (weighted: the child it wraps)
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: TraefikService\n"
          "metadata: {name: weighted, namespace: default}\nspec:\n  weighted:\n"
          "    services: [{name: flaky, port: 80, weight: 1, middlewares: [{name: status3}]}]\n")
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: ts-level, namespace: default}\nspec:\n  entryPoints: [web]\n"
          "  routes:\n    - match: Host(`ts.test`)\n      kind: Rule\n"
          "      services: [{name: weighted, kind: TraefikService}]\n")
    m += ingressroute("main", [
        ("Host(`postbody.test`)", "flaky", uses("post-body")),
        ("Host(`rr.test`)", "failing-live", uses("post-body")),
        ("Host(`small.test`)", "flaky", uses("small-body")),
        ("Host(`netbody.test`)", "mixed", uses("net")),
        ("Host(`netbig.test`)", "mixed", uses("net-small")),
        ("Host(`netbigdead.test`)", "deadonly", uses("net-small")),
        ("Host(`netbigoff.test`)", "mixed", uses("net-small-off")),
        ("Host(`smallnet.test`)", "flaky", uses("net-small")),
        ("Host(`net.test`)", "mixed", uses("net")),
        ("Host(`plain.test`)", "mixed", ""),
        ("Host(`status.test`)", "flaky", uses("status3")),
        ("Host(`post.test`)", "flaky", uses("post")),
        ("Host(`timeout.test`)", "flaky", uses("timeout")),
        ("Host(`backoff.test`)", "flaky", uses("backoff")),
        ("Host(`nonet.test`)", "deadonly", uses("nonet")),
        ("Host(`bad1.test`)", "flaky", uses("bad-attempts")),
        ("Host(`bad2.test`)", "flaky", uses("bad-status")),
        ("Host(`bad3.test`)", "flaky", uses("bad-none")),
    ])
    proxy = Pyroute(tmp, m, workers=1)
    proxy.start()
    yield {"port": proxy.port, "flaky": flaky, "live": live, "tmp": tmp, "failing": failing}
    proxy.stop()
    live.close()
    flaky.close()
    failing.close()


def test_a_server_that_cannot_be_reached_is_retried_on_the_next_one(env):
    assert [get(env["port"], "/", "net.test")[0] for _ in range(8)] == [200] * 8
    # without the middleware, the round robin's dead server answers 502 half the time
    assert 502 in [get(env["port"], "/", "plain.test")[0] for _ in range(4)]


def test_statuses_are_retried_until_one_is_not(env):
    env["flaky"].reset(503, fail=2)
    status, _, body = get(env["port"], "/", "status.test")
    assert (status, body) == (200, b"attempt 3") and env["flaky"].count == 3


def test_the_last_attempt_is_the_client_s_answer(env):
    env["flaky"].reset(502, fail=-1)
    status, _, body = get(env["port"], "/", "status.test")
    assert (status, body) == (502, b"attempt 3") and env["flaky"].count == 3


def test_non_idempotent_methods_are_not_retried_on_status_unless_asked(env):
    env["flaky"].reset(503, fail=1)
    raw = b"POST / HTTP/1.1\r\nHost: status.test\r\nContent-Length: 0\r\n\r\n"
    assert request(env["port"], raw)[0] == 503 and env["flaky"].count == 1
    env["flaky"].reset(503, fail=1)
    raw = b"POST / HTTP/1.1\r\nHost: post.test\r\nContent-Length: 0\r\n\r\n"
    assert request(env["port"], raw)[0] == 200 and env["flaky"].count == 2


def test_timeout_ends_the_retries(env):
    env["flaky"].reset(503, fail=-1)
    t0 = time.monotonic()
    assert get(env["port"], "/", "timeout.test")[0] == 503
    elapsed = time.monotonic() - t0
    # 100 ms (±50%) between attempts, no new attempt once 300 ms passed
    assert 2 <= env["flaky"].count <= 7 and elapsed < 1.5, (env["flaky"].count, elapsed)


def test_backoff_between_attempts(env):
    env["flaky"].reset(503, fail=-1)
    t0 = time.monotonic()
    assert get(env["port"], "/", "backoff.test")[0] == 503
    elapsed = time.monotonic() - t0
    # two waits: 200 ms ±50%, then 200*sqrt(2) ms ±50% — at least 0.24 s, at most ~0.8 s
    assert env["flaky"].count == 3 and 0.24 <= elapsed <= 1.2, elapsed


def test_disable_retry_on_network_error(env):
    assert get(env["port"], "/", "nonet.test")[0] == 502


def test_bad_options_are_traefik_s_errors(env):
    for host in ("bad1.test", "bad2.test", "bad3.test"):
        assert get(env["port"], "/", host)[0] == 404
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c",
                          str(env["tmp"] / "static.yaml"), str(env["tmp"] / "manifests")],
                         capture_output=True, text=True, cwd=str(REPO))
    text = out.stdout + out.stderr
    assert "incorrect (or empty) value for attempt (0)" in text
    assert "'5xx' does not match" in text          # the CRD's pattern refuses it first
    assert "requires at least HTTP status codes or retry on TCP" in text


def _post(port, host, body, chunked=False):
    if chunked:
        framed = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in body) + b"0\r\n\r\n"
        return request(port, ("POST / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked"
                              "\r\n\r\n" % host).encode() + framed)
    return request(port, ("POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                          % (host, len(body))).encode() + body)


def test_a_retried_post_sends_its_body_again(env):
    # Traefik keeps the body (up to maxRequestBodyBytes) and every attempt sends it
    flaky = env["flaky"]
    flaky.reset(503, fail=2)
    payload = bytes(range(256)) * 40
    status, _, body = _post(env["port"], "postbody.test", payload)
    assert (status, body) == (200, b"attempt 3")
    assert [b for _, _, b in flaky.seen] == [payload] * 3
    assert all(h["Content-Length"] == str(len(payload)) for _, h, _ in flaky.seen)


def test_a_retried_chunked_body_goes_with_a_content_length(env):
    flaky = env["flaky"]
    flaky.reset(503, fail=1)
    status, _, body = _post(env["port"], "postbody.test", [b"hello ", b"world"], chunked=True)
    assert (status, body) == (200, b"attempt 2")
    assert [b for _, _, b in flaky.seen] == [b"hello world"] * 2
    assert all("Transfer-Encoding" not in h and h["Content-Length"] == "11"
               for _, h, _ in flaky.seen)


def test_the_body_arrives_intact_on_the_next_server(env):
    # round robin over an always-503 server and a live one: whichever comes first, the
    # live one answers with the body the client sent
    payload = b"x=1&y=" + b"z" * 5000
    for _ in range(4):
        env["failing"].reset(503, fail=-1)
        status, _, body = _post(env["port"], "rr.test", payload)
        assert status == 200
        assert json.loads(body)["body"] == payload.decode()
        assert all(b == payload for _, _, b in env["failing"].seen)


def test_a_body_over_max_request_body_bytes_gets_one_attempt(env):
    flaky = env["flaky"]
    flaky.reset(503, fail=1)
    status, _, _ = _post(env["port"], "small.test", b"0123456789abc")
    assert status == 503 and [b for _, _, b in flaky.seen] == [b"0123456789abc"]
    flaky.reset(503, fail=1)
    status, _, _ = _post(env["port"], "small.test", [b"0123456789", b"abc"], chunked=True)
    assert status == 503 and [b for _, _, b in flaky.seen] == [b"0123456789abc"]
    # within it: retried
    flaky.reset(503, fail=1)
    status, _, body = _post(env["port"], "small.test", b"0123456789")
    assert (status, body) == (200, b"attempt 2")


@pytest.mark.parametrize("size", [5000, 300000])
@pytest.mark.parametrize("chunked", [False, True])
def test_over_max_request_body_bytes_network_errors_are_still_retried(env, size, chunked):
    # Traefik (retry.go): over the limit the body is peeked, statusCodes dropped, and an
    # attempt whose dial failed (WroteHeaders not called) goes again with the whole body;
    # round robin over a refused server and a live one: every request reaches the live one
    payload = bytes(range(256)) * (size // 256)
    for i in range(4):
        body = b"%d:" % i + payload
        parts = [body[:size // 2], body[size // 2:]] if chunked else body
        status, _, answer = _post(env["port"], "netbig.test", parts, chunked=chunked)
        assert status == 200, (i, status, answer[:200])
        assert json.loads(answer)["body"] == body.decode("latin-1")


def test_over_max_request_body_bytes_statuses_are_not_retried_network_errors_are(env):
    flaky = env["flaky"]
    flaky.reset(503, fail=1)
    status, _, _ = _post(env["port"], "smallnet.test", b"0123456789abc")
    assert status == 503 and [b for _, _, b in flaky.seen] == [b"0123456789abc"]
    # disableRetryOnNetworkError: over the limit nothing is retried, the dead server's 502
    # reaches the client in turn
    codes = [_post(env["port"], "netbigoff.test", b"x" * 100)[0] for _ in range(4)]
    assert 502 in codes and 200 in codes


def test_a_held_body_whose_dials_all_fail_closes_the_connection(env):
    # the last attempt's 502 is the client's; the body was never read, so the connection is
    # not reused (its bytes are never taken for a next request)
    import socket
    from e2e_support import read_response
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: net.test\r\n\r\n"
    raw = (b"POST / HTTP/1.1\r\nHost: netbigdead.test\r\nContent-Length: %d\r\n\r\n"
           % len(smuggled)) + smuggled
    with socket.create_connection(("127.0.0.1", env["port"]), timeout=5) as s:
        s.sendall(raw)
        status, headers, _, _ = read_response(s)
        assert status == 502 and headers.get("connection") == "close"
        s.settimeout(2)
        assert s.recv(65536) == b""


def test_network_errors_are_retried_with_the_body(env):
    for i in range(6):
        status, _, body = _post(env["port"], "netbody.test", b"payload %d" % i)
        assert status == 200 and json.loads(body)["body"] == "payload %d" % i


def test_retry_in_a_service_level_chain(env):
    flaky = env["flaky"]
    flaky.reset(503, fail=2)
    status, _, body = get(env["port"], "/api/thing", "svc.test")
    assert (status, body) == (200, b"attempt 3")
    # each attempt went through the service's chain from its start: stripped once
    assert [p for p, _, _ in flaky.seen] == ["/thing"] * 3


@pytest.mark.parametrize("case", range(len(TRAEFIK_TABLE)),
                         ids=[c[0] for c in TRAEFIK_TABLE])
def test_traefik_status_code_table(env, case):
    _, _, statuses, method, body, want_status, want_calls = TRAEFIK_TABLE[case]
    flaky = env["flaky"]
    flaky.reset(sequence=statuses)
    raw = ("%s /ok HTTP/1.1\r\nHost: table%d.test\r\nContent-Length: %d\r\n\r\n"
           % (method, case, len(body))).encode() + body
    status, _, _ = request(env["port"], raw)
    assert (status, flaky.count) == (want_status, want_calls)
    # the body is readable on each attempt
    assert [b for _, _, b in flaky.seen] == [body] * want_calls


def test_retry_in_a_traefik_service_child_s_middlewares(env):
    flaky = env["flaky"]
    flaky.reset(503, fail=2)
    payload = b"weighted body"
    status, _, body = request(env["port"], b"PUT /w HTTP/1.1\r\nHost: ts.test\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
    assert (status, body) == (200, b"attempt 3")
    assert [(p, b) for p, _, b in flaky.seen] == [("/w", payload)] * 3
