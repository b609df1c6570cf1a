"""engine/metrics.pyx (the metrics Recorder's C part) against the Python it replaced.

The oracle is the pre-C Recorder.observe, reduced to what it computed: the key (entry point,
routers, service, code, method, protocol, header values, tls) from pyroute.observability.
metrics' Python ``protocol`` / method table, and the accumulator [requests, duration sum,
request bytes, response bytes, buckets..., min, max]. Random exchanges of real parsed heads
(the engine's RequestParser) go through both; ``take()`` must give the same deltas.
"""
import random
import types
from bisect import bisect_left

import pytest

from pyroute._engine.exchange import Exchange
from pyroute._engine.http1 import RequestParser
from pyroute._engine.metrics import method_name, protocol_name
from pyroute.observability import metrics
from pyroute.static import Metrics, Otlp, Prometheus

_PY_METHODS = {m.encode(): m for m in ("HEAD", "GET", "POST", "PUT", "DELETE", "CONNECT",
                                       "OPTIONS", "TRACE", "PATCH", "PRI")}

HEADS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c, websocket \r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websockets\r\n\r\n",
    # Upgrade without Connection: upgrade is no upgrade (the parser's _upgrade span)
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
    b"GET /e HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
    b"GET /e HTTP/1.1\r\nHost: a\r\nACCEPT: text/html,  Text/Event-Stream \r\n\r\n",
    b"GET /e HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream;q=1\r\n\r\n",
    b"GET /e HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\nAccept: text/event-stream\r\n\r\n",
    b"POST /g HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"POST /g HTTP/1.1\r\nHost: a\r\ncontent-type: application/grpc+proto\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"POST /g HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc-web-text\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"POST /g HTTP/1.1\r\nHost: a\r\nContent-Type: Application/grpc\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"POST /g HTTP/1.1\r\nHost: a\r\nContent-Type: application/grp\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"DELETE / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"PATCH / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
]


def parse(head):
    return RequestParser().parse(bytearray(head))


@pytest.mark.parametrize("head", HEADS)
def test_protocol_and_method_match_python(head):
    req = parse(head)
    assert protocol_name(req) == metrics.protocol(req)
    assert method_name(req) == _PY_METHODS.get(req.method, "EXTENSION_METHOD")


def test_protocols_seen():
    # the heads above cover every answer (the comparison is not vacuous)
    assert {protocol_name(parse(h)) for h in HEADS} == {"http", "websocket", "sse", "grpc",
                                                         "grpc-web"}


class Reference:
    """The Python Recorder.observe before engine/metrics.pyx (its fast path: no TLS, no
    header labels)."""

    def __init__(self, conf):
        self.buckets, _, _ = metrics.recording(conf)
        self.n = len(self.buckets)
        self.minmax = conf.otlp is not None
        self.data = {}

    def observe(self, ex):
        if ex.route is None:
            if not ex.ep.metered:
                return
            obs = ()
        else:
            obs = ex.route.obs
            if obs is None:
                return
        req = ex.req
        service = ex.server.service_name if ex.server is not None else ""
        key = (ex.ep.name, obs, service, ex.status,
               _PY_METHODS.get(req.method, "EXTENSION_METHOD"), metrics.protocol(req), (), None)
        acc = self.data.get(key)
        if acc is None:
            acc = self.data[key] = metrics.new_acc(self.n)
        took = ex.ended - ex.started
        acc[0] += 1
        acc[1] += took
        acc[2] += ex.bytes_in
        acc[3] += ex.bytes_out
        i = bisect_left(self.buckets, took)
        if i < self.n:
            acc[4 + i] += 1
        if self.minmax:
            acc[4 + self.n] = min(acc[4 + self.n], took)
            acc[5 + self.n] = max(acc[5 + self.n], took)


def _world(rnd):
    eps = [types.SimpleNamespace(name=n, metered=m) for n, m in
           (("web", True), ("websecure", True), ("off", False))]
    routes = [None, types.SimpleNamespace(obs=None)]
    for i in range(6):
        parents = (("parent%d" % i, "parent%d-muxer" % i),) if i % 3 == 0 else ()
        routes.append(types.SimpleNamespace(
            obs=metrics.route_obs("r%d" % i, "s%d" % (i % 3), True, parents)))
    # two servers of one service with equal names in distinct string objects: one series
    servers = [None] + [types.SimpleNamespace(service_name="".join(["s", str(i % 3)]))
                        for i in range(5)]
    return eps, routes, servers


def _exchange(rnd, eps, routes, servers, heads):
    ex = Exchange.__new__(Exchange)
    ex.req = rnd.choice(heads)
    ex.ep = rnd.choice(eps)
    ex.route = rnd.choice(routes)
    ex.server = rnd.choice(servers)
    ex.status = rnd.choice((200, 200, 200, 404, 502, 499, 101))
    ex.tls = False
    ex.started = 100.0
    # durations on and around the bucket bounds (le: a duration equal to a bound is in it)
    ex.ended = 100.0 + rnd.choice((0.0, 0.1, 0.3, 1.2, 5.0, 0.05, 0.25, 7.0, 1.21))
    ex.bytes_in = rnd.randrange(0, 5000)
    ex.bytes_out = rnd.randrange(0, 100000)
    return ex


@pytest.mark.parametrize("otlp", [False, True])
def test_counts_match_reference(otlp):
    rnd = random.Random(1234 + otlp)
    conf = Metrics(prometheus=Prometheus(), otlp=Otlp() if otlp else None)
    rec, ref = metrics.Recorder(conf), Reference(conf)
    eps, routes, servers = _world(rnd)
    heads = [parse(h) for h in HEADS]
    for flush in range(3):
        # more keys than the table's first size: it grows, series keep their counts
        for _ in range(3000):
            ex = _exchange(rnd, eps, routes, servers, heads)
            rec.observe(ex)
            ref.observe(ex)
        got, want = rec.take(), ref.data
        ref.data = {}
        assert len(want) > 64
        assert set(got) == set(want)
        for key in want:
            g, w = got[key], want[key]
            assert g[0] == w[0] and g[2:4] == w[2:4] and g[4:-2] == w[4:-2], key
            assert g[1] == pytest.approx(w[1], rel=1e-12)
            assert g[-2:] == w[-2:]
    assert rec.take() == {}


def test_slow_path_header_labels():
    # headerLabels: the values are part of the key (observe_slow, Python)
    conf = Metrics(prometheus=Prometheus(header_labels=(("tenant", "X-Tenant"),)))
    rec = metrics.Recorder(conf)
    ex = Exchange.__new__(Exchange)
    ex.req = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Tenant: acme\r\n\r\n")
    ex.ep = types.SimpleNamespace(name="web", metered=True)
    ex.route = types.SimpleNamespace(obs=metrics.route_obs("r", "s", True))
    ex.server = types.SimpleNamespace(service_name="s")
    ex.status = 200
    ex.started, ex.ended = 1.0, 1.2
    ex.bytes_out = 10
    rec.observe(ex)
    rec.observe(ex)
    got = rec.take()
    key = ("web", (("r", "s"),), "s", 200, "GET", "http", ("acme",), None)
    assert list(got) == [key]
    assert got[key][0] == 2 and got[key][3] == 20
