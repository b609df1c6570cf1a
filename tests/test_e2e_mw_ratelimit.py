"""End to end: rateLimit and inFlightReq through ``pyroute run`` with two workers — the limit
holds for the instance (shared memory, engine/limits.pyx), Traefik's answers and waits, the
source criteria (and that a spoofed X-Forwarded-For never gets a client a fresh bucket), the
release of in-flight counts when a client goes away or a worker dies, config errors."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from e2e_backend import Backend
from e2e_support import (REPO, Pyroute, backend_service, get, ingressroute, request,
                         worker_pids)


def middleware(name, kind, spec):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
            "metadata: {name: %s, namespace: default}\nspec:\n  %s: %s\n"
            % (name, kind, json.dumps(spec)))


def uses(*names):
    return "      middlewares: [%s]\n" % ", ".join("{name: %s}" % n for n in names)


# Traefik's TestInMemoryRateLimit cases that run 2 s (rate_limiter_test.go): config, incoming
# load (requests/s), initial burst sent as fast as possible
LOAD_CASES = {
    "average-is-respected": ({"average": 100, "burst": 1}, 400, 0),
    "burst-initial-over-capacity": ({"average": 100, "burst": 100}, 200, 150),
    "burst-over-average": ({"average": 100, "burst": 200}, 200, 300),
    "period-below-one-second": ({"average": 50, "period": "500ms"}, 300, 0),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ratelimit")
    be = Backend("be")
    m = backend_service("svc", [be.port])
    m += middleware("rl10", "rateLimit", {"average": 10, "burst": 10})
    m += middleware("rl2", "rateLimit", {"average": 2, "burst": 1})
    m += middleware("rl0", "rateLimit", {"average": 0, "burst": 1})
    m += middleware("rlhdr", "rateLimit", {"average": 1, "period": "10s", "burst": 2,
                                           "sourceCriterion": {"requestHeaderName": "X-Key"}})
    m += middleware("rlhost", "rateLimit", {"average": 1, "period": "10s", "burst": 1,
                                            "sourceCriterion": {"requestHost": True}})
    m += middleware("rldepth", "rateLimit", {"average": 1, "period": "10s", "burst": 2,
                                             "sourceCriterion": {"ipStrategy": {"depth": 1}}})
    m += middleware("rlxff", "rateLimit", {"average": 1, "period": "10s", "burst": 2,
                                           "sourceCriterion": {"requestHeaderName":
                                                               "X-Forwarded-For"}})
    m += middleware("inflight2", "inFlightReq", {"amount": 2})
    for name, spec in LOAD_CASES.items():
        m += middleware(name, "rateLimit", spec[0])
    m += middleware("bad-exclusive", "rateLimit", {
        "average": 1, "sourceCriterion": {"requestHost": True, "requestHeaderName": "X"}})
    m += middleware("bad-period", "rateLimit", {"average": 1, "period": "-1s"})
    m += ingressroute("main", [
        ("Host(`rl10.test`)", "svc", uses("rl10")),
        ("Host(`rl2.test`)", "svc", uses("rl2")),
        ("Host(`rl0.test`)", "svc", uses("rl0")),
        ("Host(`hdr.test`)", "svc", uses("rlhdr")),
        ("Host(`hdr2.test`)", "svc", uses("rlhdr")),
        ("HostRegexp(`^.+\\.host\\.test$`)", "svc", uses("rlhost")),
        ("Host(`depth.test`)", "svc", uses("rldepth")),
        ("Host(`xff.test`)", "svc", uses("rlxff")),
        ("Host(`inflight.test`)", "svc", uses("inflight2")),
    ] + [("Host(`%s.test`)" % name, "svc", uses(name)) for name in LOAD_CASES] + [
        ("Host(`bad1.test`)", "svc", uses("bad-exclusive")),
        ("Host(`bad2.test`)", "svc", uses("bad-period")),
    ])
    proxy = Pyroute(tmp, m, workers=2)
    proxy.start()
    yield {"port": proxy.port, "proxy": proxy, "be": be, "manifests": m, "tmp": tmp}
    proxy.stop()
    be.close()


def _status(port, host, path="/", extra=""):
    return get(port, path, host, extra)[0]


def test_the_limit_holds_for_the_instance_not_per_worker(env):
    # 40 requests, each on its own connection (SO_REUSEPORT spreads them over both
    # workers): a burst of 10 and 10/s lets ~10 through; per-worker buckets would let ~20
    t0 = time.monotonic()
    codes = [_status(env["port"], "rl10.test") for _ in range(40)]
    elapsed = time.monotonic() - t0
    ok = codes.count(200)
    assert codes.count(429) == 40 - ok
    assert 10 <= ok <= 10 + int(elapsed * 10) + 2, (ok, elapsed)


def test_over_the_limit_traefik_s_429(env):
    for _ in range(12):
        status, headers, body = get(env["port"], "/", "rl10.test")
    assert status == 429
    assert body == b"Too Many Requests"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert int(headers["retry-after"]) >= 1
    assert headers["x-retry-in"].endswith("ms")        # e.g. "93.4ms": Go's duration text


def test_a_request_within_max_delay_waits_for_its_token(env):
    # 2/s: a token every 500 ms, maxDelay 1/(2*2) = 250 ms; burst 1
    time.sleep(0.6)                       # the bucket is full
    t_a = time.monotonic()
    assert _status(env["port"], "rl2.test") == 200
    time.sleep(max(0.0, t_a + 0.35 - time.monotonic()))
    t_b = time.monotonic()
    assert _status(env["port"], "rl2.test") == 200          # ~150 ms short: it waits
    waited = time.monotonic() - t_b
    expected = 0.5 - (t_b - t_a)
    assert expected - 0.1 <= waited <= 0.5, (waited, expected)
    # right after: ~500 ms short, over maxDelay: refused at once
    t_c = time.monotonic()
    assert _status(env["port"], "rl2.test") == 429
    assert time.monotonic() - t_c < 0.25


def test_average_zero_is_no_limit(env):
    assert [_status(env["port"], "rl0.test") for _ in range(30)] == [200] * 30


def test_request_header_criterion_keeps_sources_apart(env):
    codes_a = [_status(env["port"], "hdr.test", extra="X-Key: a\r\n") for _ in range(3)]
    codes_b = [_status(env["port"], "hdr.test", extra="X-Key: b\r\n") for _ in range(3)]
    assert codes_a == [200, 200, 429] and codes_b == [200, 200, 429]


def test_each_router_gets_its_own_instance_of_the_middleware(env):
    # Traefik builds every router's chain anew: the same rateLimit on two routers limits
    # each on its own
    codes = [_status(env["port"], "hdr.test", extra="X-Key: shared\r\n") for _ in range(3)]
    codes2 = [_status(env["port"], "hdr2.test", extra="X-Key: shared\r\n") for _ in range(3)]
    assert codes == [200, 200, 429] and codes2 == [200, 200, 429]


def test_request_host_criterion(env):
    assert [_status(env["port"], "one.host.test") for _ in range(2)] == [200, 429]
    assert _status(env["port"], "two.host.test") == 200


def test_a_spoofed_x_forwarded_for_never_gets_a_fresh_bucket(env):
    # the peer (127.0.0.1) is not in forwardedHeaders.trustedIPs: its X-Forwarded-For was
    # removed before any middleware, so depth 1 sees "" for every request whatever it sends
    codes = [_status(env["port"], "depth.test", extra="X-Forwarded-For: 10.0.0.%d\r\n" % i)
             for i in range(4)]
    assert codes == [200, 200, 429, 429]
    codes = [_status(env["port"], "xff.test", extra="X-Forwarded-For: 10.1.0.%d\r\n" % i)
             for i in range(4)]
    assert codes == [200, 200, 429, 429]


def _slow(port, results, ms=1200):
    try:
        results.append(get(port, "/slow/%d" % ms, "inflight.test")[0])
    except OSError as e:
        results.append(repr(e))


def test_in_flight_limit_across_workers_and_release(env):
    port = env["port"]
    results = []
    threads = [threading.Thread(target=_slow, args=(port, results)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    # two in flight (on whichever workers): the next ones are refused, whichever worker
    extra = [get(port, "/", "inflight.test") for _ in range(6)]
    assert all(s == 429 for s, _, _ in extra), [s for s, _, _ in extra]
    assert extra[0][2] == b"max connections reached: 2"
    for t in threads:
        t.join()
    assert results == [200, 200]
    assert _status(port, "inflight.test") == 200        # released when they ended


def test_a_client_that_goes_away_releases_its_in_flight_count(env):
    port = env["port"]
    socks = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /slow/3000 HTTP/1.1\r\nHost: inflight.test\r\n\r\n")
        socks.append(s)
    time.sleep(0.4)
    assert _status(port, "inflight.test") == 429
    for s in socks:
        s.close()                     # gone: the exchanges end (499), the counts go back
    time.sleep(0.3)
    assert _status(port, "inflight.test") == 200


def test_a_worker_that_dies_gives_its_in_flight_counts_back(env):
    port = env["port"]
    socks = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /slow/5000 HTTP/1.1\r\nHost: inflight.test\r\n\r\n")
        socks.append(s)
    time.sleep(0.4)
    assert _status(port, "inflight.test") == 429
    for pid in worker_pids(env["proxy"].proc.pid):
        os.kill(pid, signal.SIGKILL)
    for s in socks:
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if _status(port, "inflight.test") == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    assert _status(port, "inflight.test") == 200


def test_bad_options_disable_the_router_with_traefik_s_error(env):
    for host in ("bad1.test", "bad2.test"):
        assert _status(env["port"], host) == 404
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c",
                          str(env["tmp"] / "static.yaml"), str(env["tmp"] / "manifests")],
                         capture_output=True, text=True, cwd=str(REPO))
    text = out.stdout + out.stderr
    assert "requestHost and RequestHeaderName are mutually exclusive" in text
    assert "negative value not valid for period" in text


class _KeepAlive:
    """Sequential requests over a few keep-alive connections (spread over the workers)."""

    def __init__(self, port, host, n=8):
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
                      for _ in range(n)]
        self.req = ("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()
        self.i = 0
        self.bufs = [b""] * n

    def one(self):
        i = self.i = (self.i + 1) % len(self.socks)
        s = self.socks[i]
        s.sendall(self.req)
        data = self.bufs[i]
        while True:
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                head = data[:end].lower()
                n = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(data) >= end + 4 + n:
                    self.bufs[i] = data[end + 4 + n:]
                    return int(data[9:12])
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk

    def close(self):
        for s in self.socks:
            s.close()


@pytest.mark.parametrize("case", list(LOAD_CASES))
def test_traefik_in_memory_rate_limit_cases(env, case):
    # as Traefik's test: a paced load for 2 s (after an optional burst sent at once); the
    # requests let through must be rate * duration + burst, within 2% above and the
    # leeway Traefik allows below for a loaded machine
    spec, load, burst_first = LOAD_CASES[case]
    client = _KeepAlive(env["port"], case + ".test")
    passed = sent = 0
    period = 1.0 / load
    duration = 2.0
    start = time.monotonic()
    end = start + duration
    next_at = start
    while time.monotonic() <= end:
        passed += client.one() == 200
        sent += 1
        if burst_first and passed < burst_first:
            continue
        next_at += period
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    client.close()
    per = {"500ms": 0.5}.get(spec.get("period"), 1.0)
    rate = spec["average"] / per
    want = int(rate * duration) + max(spec.get("burst", 1), 1)
    assert passed <= want * 102 // 100, (passed, want, sent)
    assert passed >= want * 80 // 100, (passed, want, sent)
