"""The exchange and the two-phase chain (engine/exchange.pyx, engine/conn.pyx), in process.

A worker's real loop, Env and client connections serve real sockets on 127.0.0.1 in a thread,
with routes compiled by pyroute.proxy.snapshot.Route around middlewares defined here: test
middlewares that wait (a timer, a thread-pool job, a sub-request), answer late, edit
responses and count completions — the mechanism the middleware kinds are built on, each
property checked with requests and answers. (The kinds themselves are tested end to end
through ``pyroute run`` in tests/test_e2e_mw_*.py.)"""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from e2e_backend import Backend
from pyroute._engine.conn import ClientConn, Env
from pyroute._engine.exchange import WAIT, ResponseHead
from pyroute._engine.rules import RouteTable
from pyroute.proxy.snapshot import (Chained, EntryPointRuntime, EntryRoutes, LoadBalancer,
                                    Pools, Route, Server)
from pyroute.middlewares import Headers
from pyroute.server.loop import EPOLLIN, Loop
from pyroute.static import EntryPoint

TRANSPORT = (10, 5.0, 0.0, 90.0)      # maxIdleConnsPerHost, dial, responseHeader, idle


class Mark:
    """Adds a request header and a response header naming itself; records the order."""
    static = False

    def __init__(self, name, log):
        self.name = name.encode()
        self.log = log

    def on_request(self, ex):
        self.log.append(("req", self.name))
        ex.set_headers = (ex.set_headers or []) + [(b"X-Mark", self.name)]
        return None

    def on_response(self, ex, head):
        self.log.append(("resp", self.name))
        head.add(b"X-Seen", self.name)
        head.set(b"X-Last", self.name)


class Later:
    """Waits ``delay`` on a loop timer, then resumes (or answers ``answer``)."""
    static = False

    def __init__(self, delay, answer=None):
        self.delay = delay
        self.answer = answer

    def on_request(self, ex):
        if self.answer is None:
            ex.loop.call_later(self.delay, ex.resume)
        else:
            ex.loop.call_later(self.delay, ex.answer, self.answer)
        return WAIT


class Threaded:
    """Sleeps in a thread-pool job (the loop goes on), resumes through call_soon_threadsafe."""
    static = False
    pool = ThreadPoolExecutor(2)

    def __init__(self, seconds):
        self.seconds = seconds

    def on_request(self, ex):
        loop = ex.loop

        def job():
            time.sleep(self.seconds)
            loop.call_soon_threadsafe(ex.resume)
        self.pool.submit(job)
        return WAIT


class Deny:
    static = False

    def on_request(self, ex):
        return b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied"


class Replace:
    """Response phase replacing the backend's response."""
    static = False

    def on_request(self, ex):
        return None

    def on_response(self, ex, head):
        if head.status == 200:
            head.replace(299, [(b"X-Replaced", b"1")], b"replaced")


class Upper:
    """Response phase wrapping the body: upper-cased, a trailer line at its end."""
    static = False

    def on_request(self, ex):
        return None

    def on_response(self, ex, head):
        ex.wrap_body(self)
        head.set(b"X-Transformed", b"1")

    def feed(self, data):
        return data.upper()

    def finish(self):
        return b"!END"


class Count:
    static = False

    def __init__(self):
        self.done = []

    def on_request(self, ex):
        return None

    def on_complete(self, ex):
        self.done.append((ex.status, ex.cancelled, bytes(ex.path)))


class AskAuth:
    """A sub-request to ``pool`` first; its status decides (2xx: go on with its X-User)."""
    static = False

    def __init__(self, pool, timeout=2.0):
        self.pool = pool
        self.timeout = timeout

    def on_request(self, ex):
        head = b"GET /auth%s HTTP/1.1\r\nHost: auth\r\n\r\n" % ex.path

        def done(status, rhead, body, error):
            if error:
                ex.answer(b"HTTP/1.1 %d x\r\nContent-Length: 0\r\n\r\n" % (
                    500 if error == 502 else error))
            elif 200 <= status < 300:
                ex.set_headers = (ex.set_headers or []) + [(b"X-Auth-Status", b"%d" % status)]
                ex.resume()
            else:
                ex.answer(b"HTTP/1.1 %d x\r\nContent-Length: %d\r\n\r\n%s" % (
                    status, len(body), body))
        ex.env.subrequest(self.pool, head, None, 1 << 20, self.timeout, done)
        return WAIT


class Harness:
    """One worker loop in a thread, serving ``routes`` (rule -> Route) on a port."""

    def __init__(self, backend):
        self.loop = Loop()
        self.pools = Pools()
        self.env = Env(self.loop, self.pools)
        self.backend = backend
        self.ep = EntryPointRuntime(EntryPoint("web"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.pool = self.pools.get("127.0.0.1", backend.port, TRANSPORT)
        self.server = Server("http://127.0.0.1:%d" % backend.port, self.pool,
                             b"127.0.0.1:%d" % backend.port, True)
        self.thread = None

    def service(self):
        return LoadBalancer([self.server], [1], "wrr", None, ())

    def serve(self, routes):
        names = ["r%d" % i for i in range(len(routes))]
        table = RouteTable([(n, rule, 0) for n, (rule, _) in zip(names, routes)])
        self.env.snapshot = _Snap({"web": EntryRoutes(table, [r for _, r in routes])})
        self.loop.register(self.sock.fileno(), EPOLLIN, self)
        self.thread = threading.Thread(target=self.loop.run, args=(self.env,), daemon=True)
        self.thread.start()

    def on_event(self, ev):
        while True:
            try:
                s, addr = self.sock.accept()
            except BlockingIOError:
                return
            s.setblocking(False)
            self.env.clients.add(ClientConn(self.env, self.ep, s, addr[0].encode()))

    def abort(self):
        pass

    def route(self, name, chain, service=None):
        return Route(name, chain, service or self.service(), b"pyroute")

    def get(self, path, host="a.test", extra=b""):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(),
                                                                 extra))
            return read_response(s)

    def stop(self):
        self.loop.running = False
        self.loop.call_soon_threadsafe(lambda: None)
        self.thread.join(5)


class _Snap:
    def __init__(self, entries):
        self.entries = entries
        self.entries_tls = {}
        self.tls = {}


@pytest.fixture(scope="module")
def h():
    backend = Backend("be")
    auth = Backend("auth")
    h = Harness(backend)
    h.log = []
    h.count = Count()
    auth_pool = h.pools.get("127.0.0.1", auth.port, TRANSPORT)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    dead_pool = h.pools.get("127.0.0.1", dead_port, TRANSPORT)
    h.auth = auth
    dead_server = Server("http://127.0.0.1:%d" % dead_port, dead_pool,
                         b"127.0.0.1:%d" % dead_port, True)
    dead_service = LoadBalancer([dead_server], [1], "wrr", None, ())
    custom = Headers({"customResponseHeaders": {"X-Custom": "yes", "Server": ""}})
    h.serve([
        ("PathPrefix(`/err-static`)", h.route("es", [custom], dead_service)),
        ("PathPrefix(`/err-phased`)", h.route("ep", [custom, Mark("m", h.log)], dead_service)),
        ("PathPrefix(`/order`)", h.route("order", [Mark("outer", h.log), Mark("inner", h.log)])),
        ("PathPrefix(`/deny`)", h.route("deny", [Mark("outer", h.log), Deny()])),
        ("PathPrefix(`/later`)", h.route("later", [Later(0.05), Mark("m", h.log)])),
        ("PathPrefix(`/answer-late`)", h.route("al", [Mark("outer", h.log),
                                                      Later(0.05, Deny().on_request(None))])),
        ("PathPrefix(`/thread`)", h.route("thread", [Threaded(0.3)])),
        ("PathPrefix(`/replace`)", h.route("replace", [Replace()])),
        ("Host(`upper.test`)", h.route("upper", [Upper()])),
        ("PathPrefix(`/count`)", h.route("count", [h.count, Later(0.3)])),
        ("PathPrefix(`/auth`)", h.route("auth", [AskAuth(auth_pool)])),
        ("PathPrefix(`/authdead`)", h.route("authdead", [AskAuth(dead_pool)])),
        ("PathPrefix(`/svc`)", h.route("svc", [Mark("router", h.log)],
                                       Chained(h.service(), [Later(0.05), Mark("svc", h.log)]))),
        ("PathPrefix(`/`)", h.route("plain", [])),
    ])
    yield h
    h.stop()
    backend.close()
    auth.close()


def _upstream(body, name):
    """The values of request header ``name`` the backend received."""
    return [v for k, v in json.loads(body)["headers"] if k.lower() == name]


class Answer:
    def __init__(self, status, lines, body):
        self.status, self.lines, self.body = status, lines, body

    def get_all(self, name):
        return [v for k, v in self.lines if k.lower() == name]

    def __getitem__(self, name):
        return self.get_all(name)[0]


class Reader:
    """Responses off one socket, in order (Content-Length framing: what these routes send)."""

    def __init__(self, sock):
        self.sock = sock
        self.data = b""

    def _more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.data += chunk

    def read(self):
        while b"\r\n\r\n" not in self.data:
            self._more()
        head, self.data = self.data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = [(k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in lines[1:])]
        named = dict((k.lower(), v) for k, v in fields)
        if named.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.data:
                    self._more()
                size, self.data = self.data.split(b"\r\n", 1)
                n = int(size, 16)
                while len(self.data) < n + 2:
                    self._more()
                body += self.data[:n]
                self.data = self.data[n + 2:]
                if n == 0:
                    return Answer(status, fields, body)
        if "content-length" not in named and status >= 200:
            try:
                while True:
                    self._more()
            except ConnectionError:
                body, self.data = self.data, b""
                return Answer(status, fields, body)
        n = int(named.get("content-length", "0"))
        while len(self.data) < n:
            self._more()
        body, self.data = self.data[:n], self.data[n:]
        return Answer(status, fields, body)


def read_response(sock):
    a = Reader(sock).read()
    return a.status, a, a.body, b""


def test_request_phase_in_order_response_phase_in_reverse(h):
    h.log.clear()
    status, headers, body, _ = h.get("/order")
    assert status == 200
    assert h.log == [("req", b"outer"), ("req", b"inner"), ("resp", b"inner"),
                     ("resp", b"outer")]
    assert headers.get_all("x-seen") == ["inner", "outer"]      # innermost first
    assert headers["x-last"] == "outer"                          # outermost last wins
    assert _upstream(body, "x-mark") == ["outer", "inner"]


def test_an_answer_passes_back_through_the_middlewares_before_it(h):
    h.log.clear()
    status, headers, body, _ = h.get("/deny")
    assert status == 403 and body == b"denied"
    assert headers["x-seen"] == "outer"
    assert ("req", b"outer") in h.log and ("resp", b"outer") in h.log


def test_a_middleware_waits_on_a_timer_then_the_chain_goes_on(h):
    h.log.clear()
    t0 = time.monotonic()
    status, headers, body, _ = h.get("/later")
    assert status == 200 and time.monotonic() - t0 >= 0.045
    assert _upstream(body, "x-mark") == ["m"]
    assert h.log == [("req", b"m"), ("resp", b"m")]


def test_a_middleware_answers_after_waiting(h):
    status, headers, body, _ = h.get("/answer-late")
    assert status == 403 and body == b"denied" and headers["x-seen"] == "outer"


def test_a_waiting_exchange_does_not_hold_up_other_requests_on_the_worker(h):
    # one worker thread: while /thread waits 0.3 s in a thread-pool job, a plain request
    # is served at once
    result = {}

    def slow():
        t0 = time.monotonic()
        result["slow"] = h.get("/thread")[0], time.monotonic() - t0
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    status = h.get("/plain")[0]
    fast = time.monotonic() - t0
    t.join()
    assert status == 200 and fast < 0.2, fast
    assert result["slow"][0] == 200 and result["slow"][1] >= 0.29


def test_keep_alive_and_pipelining_across_a_wait(h):
    with socket.create_connection(("127.0.0.1", h.port), timeout=10) as s:
        s.sendall(b"GET /later/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /plain/2 HTTP/1.1\r\nHost: a"
                  b"\r\n\r\n")
        r = Reader(s)
        first = r.read()
        second = r.read()
    assert first.status == 200 and json.loads(first.body)["target"] == "/later/1"
    assert second.status == 200 and json.loads(second.body)["target"] == "/plain/2"


def test_the_response_phase_can_replace_the_response(h):
    status, headers, body, _ = h.get("/replace")
    assert (status, body, headers["x-replaced"]) == (299, b"replaced", "1")
    # the connection's framing stayed right: the next request on it works
    with socket.create_connection(("127.0.0.1", h.port), timeout=10) as s:
        r = Reader(s)
        for _ in range(2):
            s.sendall(b"GET /replace HTTP/1.1\r\nHost: a\r\n\r\n")
            assert r.read().body == b"replaced"


def test_a_body_transform_reframes_the_response(h):
    with socket.create_connection(("127.0.0.1", h.port), timeout=10) as s:
        r = Reader(s)
        # Content-Length from the backend, then a chunked one, on one keep-alive connection
        s.sendall(b"GET /x HTTP/1.1\r\nHost: upper.test\r\n\r\n")
        a = r.read()
        assert a.get_all("transfer-encoding") == ["chunked"] and not a.get_all("content-length")
        assert a.body.endswith(b"!END") and b'"TARGET": "/X"' in a.body
        assert a["x-transformed"] == "1"
        s.sendall(b"GET /chunked/3000 HTTP/1.1\r\nHost: upper.test\r\n\r\n")
        a = r.read()
        assert a.body == b"C" * 3000 + b"!END"
    # an HTTP/1.0 client: the transformed body until close
    with socket.create_connection(("127.0.0.1", h.port), timeout=10) as s:
        s.sendall(b"GET /big/5000 HTTP/1.0\r\nHost: upper.test\r\n\r\n")
        a = Reader(s).read()
        assert a.body == b"X" * 5000 + b"!END" and a["connection"].lower() == "close"


def test_completion_hook_runs_once_with_the_outcome_also_when_the_client_goes_away(h):
    h.count.done.clear()
    assert h.get("/count/ok")[0] == 200
    s = socket.create_connection(("127.0.0.1", h.port))
    s.sendall(b"GET /count/gone HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(0.05)
    s.close()                                 # gone while the chain waits
    deadline = time.monotonic() + 3
    while len(h.count.done) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(h.count.done, key=lambda d: d[2]) == [
        (499, True, b"/count/gone"), (200, False, b"/count/ok")]


def test_a_sub_request_through_the_pools_decides(h):
    status, _, body, _ = h.get("/auth/x")
    assert status == 200
    assert _upstream(body, "x-auth-status") == ["200"]
    assert any(r[1] == "/auth/auth/x" for r in h.auth.requests)
    # keep-alive to the auth server: a second sub-request reuses the connection
    before = h.auth.connections
    assert h.get("/auth/y")[0] == 200
    assert h.auth.connections == before


def test_a_sub_request_to_a_server_that_is_down_fails_cleanly(h):
    status, _, _, _ = h.get("/authdead")
    assert status == 500                      # AskAuth maps the sub-request's 502 to 500


def test_a_service_level_middleware_can_wait(h):
    h.log.clear()
    status, _, body, _ = h.get("/svc")
    assert status == 200
    assert _upstream(body, "x-mark") == ["router", "svc"]
    assert [e for e in h.log if e[0] == "resp"] == [("resp", b"svc"), ("resp", b"router")]


def test_pyroute_s_own_errors_pass_back_through_the_route_s_middlewares(h):
    # Traefik: the proxy's 502 is written through the headers middleware's wrapped writer
    status, headers, _, _ = h.get("/err-static")
    assert status == 502 and headers["x-custom"] == "yes"
    status, headers, _, _ = h.get("/err-phased")
    assert status == 502 and headers["x-custom"] == "yes" and headers["x-seen"] == "m"


def test_response_head_editing():
    head = ResponseHead.parse(b"HTTP/1.1 200 OK\r\nA: 1\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n"
                              b"\r\n")
    assert head.get(b"set-cookie") == b"a" and head.get_all(b"SET-COOKIE") == [b"a", b"b"]
    head.set(b"Set-Cookie", b"c")
    head.add(b"B", b"2")
    head.remove(b"a")
    head.status = 404
    assert head.serialize() == b"HTTP/1.1 404 Not Found\r\nSet-Cookie: c\r\nB: 2\r\n\r\n"
