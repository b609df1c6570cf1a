"""End to end: the entry point's ``respondingTimeouts.writeTimeout`` as Go's http.Server
WriteTimeout — the deadline is set when the request head has been read and covers reading the
body, waiting for the backend and writing the whole response; each request on a keep-alive
connection gets its own. (The loop checks deadlines every 0.5 s: the bounds below allow it.)"""
import json
import socket
import time

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, ingressroute, read_response

WRITE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("write-timeout")
    a = Backend("a")
    m = backend_service("svc-a", [a.port]) + ingressroute(
        "main", [("Host(`a.test`)", "svc-a", "")])
    proxy = Pyroute(tmp, m, workers=1, write="%ds" % WRITE_TIMEOUT)
    proxy.start()
    yield {"port": proxy.port, "a": a}
    proxy.stop()
    a.close()


def _eof_or_reset(s):
    try:
        return s.recv(65536)
    except ConnectionResetError:
        return b""


def test_a_response_within_the_timeout_is_delivered_and_each_request_gets_its_own(env):
    # two requests of 1.2 s each on one connection: 2.4 s in all, more than writeTimeout
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        for i in range(2):
            s.sendall(b"GET /slow/1200?n=%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i)
            status, _, body, _ = read_response(s)
            assert status == 200 and json.loads(body)["target"] == "/slow/1200?n=%d" % i


def test_a_backend_slower_than_the_timeout_gets_the_connection_closed(env):
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        s.settimeout(10)
        t0 = time.monotonic()
        s.sendall(b"GET /slow/4000 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        assert _eof_or_reset(s) == b""                   # no response at all
        elapsed = time.monotonic() - t0
        assert WRITE_TIMEOUT - 0.1 <= elapsed <= WRITE_TIMEOUT + 0.9, elapsed


def test_the_deadline_covers_writing_the_whole_response(env):
    # 10 chunks 400 ms apart (4 s): the response is cut once writeTimeout has passed
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        s.settimeout(10)
        t0 = time.monotonic()
        s.sendall(b"GET /drip/10/400 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        data = b""
        while True:
            chunk = _eof_or_reset(s)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - t0
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"drip00" in data
        assert b"drip09" not in data and not data.endswith(b"0\r\n\r\n")   # cut short
        assert WRITE_TIMEOUT - 0.1 <= elapsed <= WRITE_TIMEOUT + 0.9, elapsed


def test_the_deadline_starts_when_the_head_is_read_not_when_the_body_ends(env):
    # head at 0 s, body at 1.5 s, the backend answers 1.5 s later (3 s): counted from the
    # head (Go), the 2 s deadline passes before the answer; counted from the end of the
    # forwarded body (3.5 s) it would not
    a = env["a"]
    before = len(a.requests)
    with socket.create_connection(("127.0.0.1", env["port"])) as s:
        s.settimeout(10)
        t0 = time.monotonic()
        s.sendall(b"POST /slow/1500 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\n")
        time.sleep(1.5)
        s.sendall(b"body")
        assert _eof_or_reset(s) == b""
        elapsed = time.monotonic() - t0
        assert elapsed <= WRITE_TIMEOUT + 0.9, elapsed
    # the body reached the backend before the deadline: the request was forwarded whole
    end = time.time() + 3
    while len(a.requests) == before and time.time() < end:
        time.sleep(0.05)
    assert a.requests[-1][:2] == ("POST", "/slow/1500") and a.requests[-1][3] == b"body"
