"""Backend names dialed as Go's dialer does (pyroute.proxy.dns + engine UpstreamConn): the name
looked up for every new connection (off the loop, overlapping lookups coalesced), its addresses
tried in order with Go's share of the dial timeout, and the other address family raced after
300 ms (dialParallel, RFC 6555).

The pool-level resolver hook (``Pools(lookup=...)``) stands in for DNS only: it returns the
addresses a name would resolve to; the real engine dials them, here real loopback sockets
(127.0.0.2 refuses, 127.0.0.1 serves, ::1 where both families are needed, and listeners with
a full accept queue where an address must swallow SYNs)."""
import errno
import socket
import threading
import time

import pytest

from pyroute._engine.conn import Env, SubRequest, UpstreamConn
from pyroute.proxy import dns
from pyroute.proxy.snapshot import DEFAULT_DIAL_TIMEOUT, Pools
from pyroute.server.loop import Loop

TRANSPORT = (10, DEFAULT_DIAL_TIMEOUT, 0.0, 90.0)
V4, V6 = socket.AF_INET, socket.AF_INET6


def _listener(host="127.0.0.1", port=0, family=V4):
    s = socket.socket(family)
    if family == V6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    s.listen(16)
    return s


def _free_port_refusing(host="127.0.0.2"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()       # nothing listens: connect is refused
    return port


def _turn(env, wait=0.05):
    loop = env.loop
    for fd, ev in loop.ep.poll(wait):
        handler = loop.handlers.get(fd)
        if handler is not None:
            handler.on_event(ev)
    loop.now = env.now = time.monotonic()
    if loop.timers and loop.timers[0].when <= loop.now:
        loop.run_timers(loop.now)
    loop.sweep(loop.now)      # the deadlines, as the worker's loop checks them


def _env(lookup):
    loop = Loop()
    loop.now = time.monotonic()
    pools = Pools(lookup=lookup)
    return Env(loop, pools), pools


def _dial(env, pool, timeout=5.0):
    """One new backend connection, the loop run until it connected or failed."""
    env.loop.now = env.now = time.monotonic()
    up = UpstreamConn(env, pool)
    end = time.monotonic() + timeout
    while up.connecting and not up.closed and time.monotonic() < end:
        _turn(env)
    return up


def _subrequest_error(env, pool, timeout=5.0):
    """The status a request through ``pool`` fails with (the engine's own 502/504)."""
    got = []
    env.loop.now = env.now = time.monotonic()
    SubRequest(env, pool, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"", 1 << 20, 0.0,
               lambda status, head, body, error: got.append(error))
    end = time.monotonic() + timeout
    while not got and time.monotonic() < end:
        _turn(env)
    assert got, "no answer"
    return got[0]


def _peer(up):
    return up.sock.getpeername()[:2]


def test_each_address_is_tried_in_order_until_one_connects():
    srv = _listener()
    port = srv.getsockname()[1]
    calls = []

    def lookup(host, p):
        calls.append(host)
        # 127.0.0.2 refuses on this port (nothing listens there), 127.0.0.1 serves
        return [(V4, ("127.0.0.2", p)), (V4, ("127.0.0.1", p))]
    env, pools = _env(lookup)
    up = _dial(env, pools.get("backend.test", port, TRANSPORT))
    try:
        assert not up.closed and not up.connecting
        assert _peer(up) == ("127.0.0.1", port)
        assert calls == ["backend.test"]
    finally:
        up.close()
        srv.close()


def test_a_name_without_addresses_or_whose_lookup_fails_is_a_502():
    # Go's dial fails with a DNSError ("no such host"), not a timeout: Traefik answers 502
    env, pools = _env(lambda h, p: [])
    assert _subrequest_error(env, pools.get("gone.test", 80, TRANSPORT)) == 502

    def failing(host, p):
        raise socket.gaierror(-2, "Name or service not known")
    env, pools = _env(failing)
    up = _dial(env, pools.get("gone.test", 80, TRANSPORT))
    assert up.closed
    assert _subrequest_error(env, pools.get("gone.test", 80, TRANSPORT)) == 502


def test_ip_literals_need_no_resolver_and_dial_at_once():
    pools = Pools(lookup=lambda h, p: 1 / 0)   # never called
    assert pools.get("127.0.0.1", 80, TRANSPORT).resolver is None
    assert pools.get("::1", 80, TRANSPORT).resolver is None
    assert pools.get("name.test", 80, TRANSPORT).resolver is not None
    srv = _listener()
    env = Env(Loop(), pools)
    up = UpstreamConn(env, pools.get("127.0.0.1", srv.getsockname()[1], TRANSPORT))
    try:
        # no lookup, no thread: the socket is connecting before the constructor returns
        assert not up.resolving and up.sock is not None
    finally:
        up.close()
        srv.close()


def test_every_new_connection_looks_the_name_up_and_follows_a_changed_answer():
    a, b = _listener(), _listener()
    answer = {"port": a.getsockname()[1]}
    calls = []

    def lookup(host, p):
        calls.append(host)
        return [(V4, ("127.0.0.1", answer["port"]))]
    env, pools = _env(lookup)
    pool = pools.get("moving.test", 80, TRANSPORT)
    up = _dial(env, pool)
    assert _peer(up)[1] == a.getsockname()[1]
    up.close()
    # the name now points elsewhere: the very next new connection goes there (Go keeps no
    # cache; nothing to wait for, no reload)
    answer["port"] = b.getsockname()[1]
    up = _dial(env, pool)
    assert _peer(up)[1] == b.getsockname()[1]
    up.close()
    assert calls == ["moving.test", "moving.test"]
    a.close()
    b.close()


def test_the_loop_never_waits_for_a_slow_lookup():
    srv = _listener()
    port = srv.getsockname()[1]
    lookup_threads = []

    def lookup(host, p):
        lookup_threads.append(threading.current_thread())
        time.sleep(0.4)             # a slow DNS server
        return [(V4, ("127.0.0.1", port))]
    env, pools = _env(lookup)
    t0 = time.monotonic()
    up = UpstreamConn(env, pools.get("slow.test", port, TRANSPORT))
    assert time.monotonic() - t0 < 0.1
    assert up.resolving and up.connecting and up.sock is None
    # a request written meanwhile waits with the connection
    end = time.monotonic() + 3
    while up.connecting and time.monotonic() < end:
        _turn(env)
    try:
        assert not up.resolving and not up.connecting and _peer(up) == ("127.0.0.1", port)
        assert lookup_threads and lookup_threads[0] is not threading.main_thread()
        assert time.monotonic() - t0 >= 0.4
    finally:
        up.close()
        srv.close()


def test_overlapping_lookups_of_a_name_are_one():
    # Go's resolver: concurrent lookups of one name share one (singleflight lookupGroup)
    srv = _listener()
    port = srv.getsockname()[1]
    release = threading.Event()
    calls = []

    def lookup(host, p):
        calls.append(host)
        release.wait(5)
        return [(V4, ("127.0.0.1", port))]
    env, pools = _env(lookup)
    pool = pools.get("busy.test", port, TRANSPORT)
    ups = [UpstreamConn(env, pool) for _ in range(5)]
    time.sleep(0.1)
    release.set()
    end = time.monotonic() + 3
    while any(u.connecting for u in ups) and time.monotonic() < end:
        _turn(env)
    try:
        assert calls == ["busy.test"]
        assert all(_peer(u) == ("127.0.0.1", port) for u in ups)
        # a lookup that starts after the last one ended is a lookup of its own
        up = _dial(env, pool)
        ups.append(up)
        assert calls == ["busy.test", "busy.test"]
    finally:
        for u in ups:
            u.close()
        srv.close()


def test_a_lookup_slower_than_the_dial_timeout_is_a_dial_timeout():
    # Go's lookup runs under the dial's deadline: past it, a timeout error (504)
    def lookup(host, p):
        time.sleep(1.0)
        return [(V4, ("127.0.0.1", p))]
    env, pools = _env(lookup)
    t0 = time.monotonic()
    assert _subrequest_error(env, pools.get("late.test", 80, (10, 0.3, 0.0, 90.0))) == 504
    assert time.monotonic() - t0 < 0.9


def _blackhole(host="127.0.0.3", port=0, family=V4):
    """A loopback address:port whose SYNs go unanswered (a full accept queue): a connect
    there neither succeeds nor fails until it times out."""
    lst = socket.socket(family)
    if family == V6:
        lst.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    lst.bind((host, port))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket(family)
        c.setblocking(False)
        c.connect_ex((host, port))
        fillers.append(c)
        time.sleep(0.02)
    return lst, fillers, port


def _close_all(*socks):
    for s in socks:
        if isinstance(s, list):
            _close_all(*s)
        elif s is not None:
            s.close()


def test_an_address_that_never_answers_gets_its_share_of_the_dial_timeout():
    srv = _listener()
    port = srv.getsockname()[1]
    lst, fillers, hole = _blackhole()

    def lookup(host, p):
        return [(V4, ("127.0.0.3", hole)), (V4, ("127.0.0.1", port))]
    env, pools = _env(lookup)
    # Go's partialDeadline: 4 s for two addresses -> 2 s each
    pool = pools.get("slow.test", port, (10, 4.0, 0.0, 90.0))
    t0 = time.monotonic()
    up = _dial(env, pool, timeout=6.0)
    elapsed = time.monotonic() - t0
    try:
        assert not up.closed and not up.connecting
        assert _peer(up) == ("127.0.0.1", port)
        assert 1.5 < elapsed < 3.5, elapsed
    finally:
        up.close()
        _close_all(srv, lst, fillers)


# ---- dual stack: Go's dialParallel ------------------------------------------------------

def _both_families(v6_hole=False, v4_hole=False):
    """A port P open on ::1 and on 127.0.0.1: each side serving, or swallowing SYNs."""
    for _ in range(50):
        probe = socket.socket(V6)
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
        probe.close()
        made = []
        try:
            for family, host, hole in ((V6, "::1", v6_hole), (V4, "127.0.0.1", v4_hole)):
                if hole:
                    lst, fillers, _ = _blackhole(host, port, family)
                    made.append((lst, fillers))
                else:
                    made.append((_listener(host, port, family), []))
            return port, made
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            _close_all(*[m for pair in made for m in pair])
    raise AssertionError("no port free on both families")


def _dual(port, first):
    v6 = (V6, ("::1", port, 0, 0))
    v4 = (V4, ("127.0.0.1", port))
    return [v6, v4] if first == V6 else [v4, v6]


def _fds(env):
    return {fd for fd, h in env.loop.handlers.items() if isinstance(h, UpstreamConn)
            or type(h).__name__ == "FallbackDial"}


@pytest.mark.parametrize("first", [V6, V4], ids=["v6-first", "v4-first"])
def test_the_other_family_races_after_300ms_when_the_primary_swallows_syns(first):
    port, made = _both_families(v6_hole=first == V6, v4_hole=first == V4)
    env, pools = _env(lambda h, p: _dual(p, first))
    pool = pools.get("dual.test", port, TRANSPORT)
    t0 = time.monotonic()
    up = _dial(env, pool)
    elapsed = time.monotonic() - t0
    try:
        assert not up.closed and not up.connecting
        assert up.sock.family == (V4 if first == V6 else V6)     # the fallback won
        assert 0.28 <= elapsed < 0.8, elapsed                    # FallbackDelay: 300 ms
        # the loser (the primary still waiting for its SYN-ACK) is closed: the loop holds
        # the winner's socket only
        assert _fds(env) == {up.fd}
    finally:
        up.close()
        _close_all(*[m for pair in made for m in pair])


@pytest.mark.parametrize("first", [V6, V4], ids=["v6-first", "v4-first"])
def test_a_refused_primary_starts_the_fallback_at_once(first):
    port, made = _both_families()
    # the primary family's listener goes away: its connect is refused at once
    (made[0] if first == V6 else made[1])[0].close()
    env, pools = _env(lambda h, p: _dual(p, first))
    t0 = time.monotonic()
    up = _dial(env, pools.get("dual.test", port, TRANSPORT))
    elapsed = time.monotonic() - t0
    try:
        assert not up.closed and up.sock.family == (V4 if first == V6 else V6)
        assert elapsed < 0.25, elapsed      # Go resets the fallback timer to 0
    finally:
        up.close()
        _close_all(*[m for pair in made for m in pair])


def test_a_primary_that_connects_first_never_starts_the_fallback():
    port, made = _both_families()
    env, pools = _env(lambda h, p: _dual(p, V4))
    up = _dial(env, pools.get("dual.test", port, TRANSPORT))
    try:
        assert up.sock.family == V4
        end = time.monotonic() + 0.5          # past the fallback delay
        while time.monotonic() < end:
            _turn(env)
        assert _fds(env) == {up.fd}
        v6_listener = made[0][0]
        v6_listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever dialed ::1
            v6_listener.accept()
        v4_listener = made[1][0]
        conn, _ = v4_listener.accept()
        conn.close()
    finally:
        up.close()
        _close_all(*[m for pair in made for m in pair])


def test_both_families_refusing_fail_the_dial_with_502():
    port, made = _both_families()
    _close_all(*[m for pair in made for m in pair])          # nothing listens on P
    env, pools = _env(lambda h, p: _dual(p, V6))
    assert _subrequest_error(env, pools.get("dual.test", port, TRANSPORT)) == 502
    assert not _fds(env)


def _subrequest_status(env, pool, timeout=5.0):
    got = []
    env.loop.now = env.now = time.monotonic()
    SubRequest(env, pool, b"GET /won HTTP/1.1\r\nHost: x\r\n\r\n", b"", 1 << 20, 0.0,
               lambda status, head, body, error: got.append(status or error))
    end = time.monotonic() + timeout
    while not got and time.monotonic() < end:
        _turn(env)
    assert got, "no answer"
    return got[0]


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_request_goes_out_on_the_fallback_that_won(tls):
    # the connection takes the fallback's socket over: the request, the TLS handshake of an
    # https server and the answer all travel on it
    import ssl
    import trustme
    from e2e_backend import Backend
    server_ctx = client = None
    if tls:
        ca = trustme.CA()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("dual.test").configure_cert(server_ctx)
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(client)
    for _ in range(20):
        be = Backend("won", tls=server_ctx)
        try:
            hole, fillers, _ = _blackhole("::1", be.port, V6)
            break
        except OSError:
            be.close()
    env, pools = _env(lambda h, p: _dual(p, V6))
    pool = pools.get("dual.test", be.port, TRANSPORT,
                     ("k", client, "dual.test") if tls else None)
    try:
        assert _subrequest_status(env, pool) == 200
        assert [r[1] for r in be.requests] == ["/won"]
    finally:
        be.close()
        _close_all(hole, fillers)


def test_each_family_shares_the_dial_timeout_within_itself():
    # Go's dialSerial per racer: partialDeadline counts that racer's addresses only. Two v6
    # addresses swallow SYNs (2 s each of 4 s), the v4 fallback (one address) answers: it
    # starts after 300 ms and wins, without waiting for the primaries' shares
    srv = _listener()
    port = srv.getsockname()[1]
    h1, f1, p1 = _blackhole("::1", 0, V6)
    env, pools = _env(lambda h, p: [(V6, ("::1", p1, 0, 0)), (V6, ("::1", p1, 0, 0)),
                                    (V4, ("127.0.0.1", port))])
    t0 = time.monotonic()
    up = _dial(env, pools.get("dual.test", port, (10, 4.0, 0.0, 90.0)))
    elapsed = time.monotonic() - t0
    try:
        assert up.sock.family == V4 and 0.28 <= elapsed < 0.8, elapsed
    finally:
        up.close()
        _close_all(srv, h1, f1)


# ---- the master's health probes ---------------------------------------------------------

def _probe_once(checks, timeout=5.0):
    """Start every target's probe now and drive the selector until they have ended."""
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
    # the master's probes use the workers' resolver (pyroute.proxy.dns, the same hook): the
    # name looked up for every probe, off the master's loop, every address dialed in order
    import selectors as _sel
    from e2e_backend import Backend
    from pyroute.server.health import HealthChecks
    be = Backend("health")
    port = be.port
    calls = []
    answer = {"backend.test": [(V4, ("127.0.0.2", port)), (V4, ("127.0.0.1", port))],
              "gone.test": [(V4, ("127.0.0.2", port))]}

    def lookup(host, p):
        calls.append((host, p))
        return answer[host]
    checks = HealthChecks(_sel.DefaultSelector(), lookup=lookup)
    try:
        checks.configure(_health_config(["http://backend.test:%d" % port,
                                         "http://gone.test:%d" % port]))
        assert calls == []                      # configuring looks nothing up
        status = _probe_once(checks)
        assert status == {"http://backend.test:%d" % port: True,
                          "http://gone.test:%d" % port: False}
        assert [r[1] for r in be.requests] == ["/health"]
        assert sorted(calls) == [("backend.test", port), ("gone.test", port)]
        assert checks.changes == [("svc@file", "http://gone.test:%d" % port, False)]
        # the answers change: the next probes follow them at once (no cache)
        answer["backend.test"] = [(V4, ("127.0.0.2", port))]
        answer["gone.test"] = [(V4, ("127.0.0.1", port))]
        status = _probe_once(checks)
        assert status == {"http://backend.test:%d" % port: False,
                          "http://gone.test:%d" % port: True}
        assert len(calls) == 4

        def failing(host, p):
            raise socket.gaierror(-2, "Name or service not known")
        checks.lookup = failing
        checks.resolvers.clear()
        status = _probe_once(checks)
        assert status == {"http://backend.test:%d" % port: False,
                          "http://gone.test:%d" % port: False}
    finally:
        be.close()


def test_master_health_probes_race_the_other_family_as_the_workers_do():
    # a probe dials as Go's dialer too: the primary (::1) swallows SYNs, the IPv4 fallback
    # answers after 300 ms, well within the probe's timeout (serially, the primary would
    # have cost the whole 5 s and the server would be DOWN)
    import selectors as _sel
    from e2e_backend import Backend
    from pyroute.server.health import HealthChecks
    for _ in range(20):
        be = Backend("health")
        try:
            hole, fillers, _ = _blackhole("::1", be.port, V6)
            break
        except OSError:
            be.close()
    port = be.port
    checks = HealthChecks(_sel.DefaultSelector(), lookup=lambda h, p: _dual(p, V6))
    try:
        checks.configure(_health_config(["http://dual.test:%d" % port]))
        t0 = time.monotonic()
        assert _probe_once(checks) == {"http://dual.test:%d" % port: True}
        assert 0.28 <= time.monotonic() - t0 < 1.5
        assert [r[1] for r in be.requests] == ["/health"]
        # nothing of the probe is left on the selector (the primary's attempt was closed)
        assert [k for k in checks.sel.get_map().values()
                if type(k.data).__name__ != "_Wakeup"] == []
    finally:
        be.close()
        _close_all(hole, fillers)
