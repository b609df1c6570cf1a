"""Backend names dialed as Go's dialer does (pyroute.proxy.dns + engine UpstreamConn): every
address of the name in order, the answer refreshed in the background (the loop never waits
for DNS after the first answer), a change of addresses followed without a reload.

The pool-level resolver hook (``Pools(lookup=...)``) stands in for DNS: it returns the
addresses a name would resolve to, here real loopback sockets (127.0.0.2 refuses, 127.0.0.1
serves)."""
import socket
import threading
import time

from pyroute._engine.conn import Env, UpstreamConn
from pyroute.proxy import dns
from pyroute.proxy.snapshot import DEFAULT_DIAL_TIMEOUT, Pools
from pyroute.server.loop import Loop

TRANSPORT = (10, DEFAULT_DIAL_TIMEOUT, 0.0, 90.0)


def _listener(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    s.listen(16)
    return s


def _free_port_refusing(host="127.0.0.2"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()       # nothing listens: connect is refused
    return port


def _dial(env, pool, timeout=5.0):
    """One new backend connection, the loop run until it connected or failed."""
    env.loop.now = time.monotonic()
    up = UpstreamConn(env, pool)
    end = time.monotonic() + timeout
    while up.connecting and not up.closed and time.monotonic() < end:
        for fd, ev in env.loop.ep.poll(0.05):
            handler = env.loop.handlers.get(fd)
            if handler is not None:
                handler.on_event(ev)
        env.loop.now = time.monotonic()
        env.loop.sweep(env.loop.now)      # the deadlines, as the worker's loop checks them
    return up


def test_each_address_is_tried_in_order_until_one_connects():
    srv = _listener()
    port = srv.getsockname()[1]
    calls = []

    def lookup(host, p):
        calls.append(host)
        # 127.0.0.2 refuses on this port (nothing listens there), 127.0.0.1 serves
        return [(socket.AF_INET, ("127.0.0.2", p)), (socket.AF_INET, ("127.0.0.1", p))]
    loop = Loop()
    pools = Pools(prefetch=True, lookup=lookup)
    env = Env(loop, pools)
    pool = pools.get("backend.test", port, TRANSPORT)
    up = _dial(env, pool)
    try:
        assert not up.closed and not up.connecting
        assert up.sock.getpeername() == ("127.0.0.1", port)
        assert calls == ["backend.test"]
    finally:
        up.close()
        srv.close()


def test_a_name_without_addresses_fails_the_dial():
    loop = Loop()
    pools = Pools(prefetch=True, lookup=lambda h, p: [])
    env = Env(loop, pools)
    up = _dial(env, pools.get("gone.test", 80, TRANSPORT))
    assert up.closed


def test_ip_literals_need_no_resolver():
    pools = Pools(prefetch=False, lookup=lambda h, p: 1 / 0)   # never called
    assert pools.get("127.0.0.1", 80, TRANSPORT).resolver is None
    assert pools.get("::1", 80, TRANSPORT).resolver is None
    assert pools.get("name.test", 80, TRANSPORT).resolver is not None


def test_changed_addresses_are_followed_and_the_loop_never_waits(monkeypatch):
    a, b = _listener(), _listener()
    answer = {"port": a.getsockname()[1]}
    slow = threading.Event()

    def lookup(host, p):
        if slow.is_set():
            time.sleep(0.5)             # a slow DNS server
        return [(socket.AF_INET, ("127.0.0.1", answer["port"]))]
    monkeypatch.setattr(dns, "TTL", 0.2)
    loop = Loop()
    pools = Pools(prefetch=True, lookup=lookup)
    env = Env(loop, pools)
    pool = pools.get("moving.test", 80, TRANSPORT)
    assert pool.resolver.ttl == 0.2
    up = _dial(env, pool)
    assert up.sock.getpeername()[1] == a.getsockname()[1]
    up.close()
    # the name now points elsewhere: after the TTL, a refresh in the background; the
    # connection made meanwhile gets the previous answer at once (no wait on DNS)
    answer["port"] = b.getsockname()[1]
    slow.set()
    time.sleep(0.25)
    t0 = time.monotonic()
    up = _dial(env, pool)
    assert time.monotonic() - t0 < 0.3
    assert up.sock.getpeername()[1] == a.getsockname()[1]
    up.close()
    time.sleep(0.7)
    up = _dial(env, pool)
    assert up.sock.getpeername()[1] == b.getsockname()[1]      # followed, no reload
    up.close()
    a.close()
    b.close()


def test_failed_lookup_leaves_no_address_then_recovers(monkeypatch):
    monkeypatch.setattr(dns, "FAILED_TTL", 0.1)
    state = {"fail": True}

    def lookup(host, p):
        if state["fail"]:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, ("127.0.0.1", p))]
    r = dns.Resolver("x.test", 80, lookup, ttl=5.0, prefetch=True)
    assert r.addresses() == []
    state["fail"] = False
    time.sleep(0.15)
    r.addresses()                     # stale (failed): refresh started
    time.sleep(0.1)
    assert r.addresses() == [(socket.AF_INET, ("127.0.0.1", 80))]


def _blackhole(host="127.0.0.3"):
    """A loopback address:port whose SYNs go unanswered (a full accept queue): a connect
    there neither succeeds nor fails until it times out."""
    lst = socket.socket()
    lst.bind((host, 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex((host, port))
        fillers.append(c)
        time.sleep(0.02)
    return lst, fillers, port


def test_an_address_that_never_answers_gets_its_share_of_the_dial_timeout():
    srv = _listener()
    port = srv.getsockname()[1]
    lst, fillers, hole = _blackhole()

    def lookup(host, p):
        return [(socket.AF_INET, ("127.0.0.3", hole)), (socket.AF_INET, ("127.0.0.1", port))]
    loop = Loop()
    pools = Pools(prefetch=True, lookup=lookup)
    env = Env(loop, pools)
    # Go's partialDeadline: 4 s for two addresses -> 2 s each
    pool = pools.get("slow.test", port, (10, 4.0, 0.0, 90.0))
    t0 = time.monotonic()
    up = _dial(env, pool, timeout=6.0)
    elapsed = time.monotonic() - t0
    try:
        assert not up.closed and not up.connecting
        assert up.sock.getpeername() == ("127.0.0.1", port)
        assert 1.5 < elapsed < 3.5, elapsed
    finally:
        up.close()
        srv.close()
        lst.close()
        for c in fillers:
            c.close()


def _probe_once(checks, timeout=5.0):
    """Start every target's probe now and drive the selector until they have ended."""
    import selectors as _sel
    start = time.monotonic()
    for t in checks.targets.values():
        t.next_at = start
    checks.run_due(start)
    end = start + timeout
    while any(t.probe is not None for t in checks.targets.values()) and time.monotonic() < end:
        for key, mask in checks.sel.select(0.05):
            key.data.on_event(mask)
        checks.run_due(time.monotonic())
    assert not any(t.probe is not None for t in checks.targets.values())
    return {t.url: t.up for t in checks.targets.values()}


def _health_config(urls):
    from types import SimpleNamespace
    servers = [{"url": u} for u in urls]
    return SimpleNamespace(dynamic={"http": {
        "services": {"svc@file": {"loadBalancer": {"servers": servers,
                                                   "healthCheck": {"path": "/health"}}}},
        "routers": {"r@file": {"rule": "Host(`a.test`)", "service": "svc@file",
                               "status": "enabled"}}}})


def test_master_health_probes_resolve_names_as_the_workers_do():
    # the master's probes use the workers' resolver (pyroute.proxy.dns, the same hook) and
    # dial every address of the name in order, as Go's dialer: the first refuses, the
    # second answers, so the server is UP
    import selectors as _sel
    from e2e_backend import Backend
    from pyroute.server.health import HealthChecks
    be = Backend("health")
    port = be.port
    calls = []

    def lookup(host, p):
        calls.append((host, p))
        if host == "gone.test":
            return [(socket.AF_INET, ("127.0.0.2", p))]
        return [(socket.AF_INET, ("127.0.0.2", p)), (socket.AF_INET, ("127.0.0.1", p))]
    checks = HealthChecks(_sel.DefaultSelector(), lookup=lookup)
    try:
        checks.configure(_health_config(["http://backend.test:%d" % port,
                                         "http://gone.test:%d" % port]))
        status = _probe_once(checks)
        assert status == {"http://backend.test:%d" % port: True,
                          "http://gone.test:%d" % port: False}
        assert [r[1] for r in be.requests] == ["/health"]
        # looked up in the resolver's thread, once per name (cached as the workers' are)
        assert sorted(calls) == [("backend.test", port), ("gone.test", port)]
        assert checks.changes == [("svc@file", "http://gone.test:%d" % port, False)]
    finally:
        be.close()
