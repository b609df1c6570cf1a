"""End to end: rateLimit with ``redis`` against a real redis-server (Debian package
``redis-server``; .ci/run installs it) — two pyroute replicas share one limit, the bucket is
Traefik's (its script, its key ``rate:<middleware>:<source>``, so Traefik beside pyroute
would share it too), credentials from a Secret, and Traefik's answer when Redis is down."""
import base64
import json
import shutil
import subprocess
import time

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, free_port, get, ingressroute

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (Debian package redis-server; "
    ".ci/run installs it)")
PASSWORD = "s3cret-pw"


def _b64(s):
    return base64.b64encode(s.encode()).decode()


def manifests(be_port, redis_port):
    m = backend_service("svc", [be_port])
    m += ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: redis-auth, namespace: default}\n"
          "type: Opaque\ndata: {username: %s, password: %s}\n" % (_b64("default"),
                                                                  _b64(PASSWORD)))
    spec = {"average": 1, "period": "10s", "burst": 3,
            "redis": {"endpoints": ["127.0.0.1:%d" % redis_port], "secret": "redis-auth",
                      "readTimeout": "1s", "dialTimeout": "1s"}}
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: shared, namespace: default}\nspec:\n  rateLimit: %s\n"
          % json.dumps(spec))
    m += ingressroute("main", [("Host(`rl.test`)", "svc",
                                "      middlewares: [{name: shared}]\n")])
    return m


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ratelimit-redis")
    redis_port = free_port()
    server = subprocess.Popen([REDIS, "--port", str(redis_port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--requirepass", PASSWORD],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis
    client = redis.Redis(port=redis_port, password=PASSWORD)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    be = Backend("be")
    m = manifests(be.port, redis_port)
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    a = Pyroute(tmp / "a", m, workers=1)        # two replicas, nothing shared but Redis
    b = Pyroute(tmp / "b", m, workers=1)
    a.start()
    b.start()
    yield {"a": a, "b": b, "redis": client, "server": server, "port": redis_port, "be": be}
    a.stop()
    b.stop()
    be.close()
    if server.poll() is None:
        server.terminate()
        server.wait(5)


def test_two_replicas_share_one_limit_in_traefik_s_bucket(env):
    env["redis"].flushall()
    # burst 3, 1 per 10 s: three requests in all, alternating between the two replicas
    codes = [get((env["a"] if i % 2 == 0 else env["b"]).port, "/", "rl.test")[0]
             for i in range(6)]
    assert codes.count(200) == 3 and codes.count(429) == 3, codes
    keys = sorted(k.decode() for k in env["redis"].keys("rate:*"))
    # Traefik's key: "rate:" + the middleware's name + ":" + the source (the peer's IP)
    assert keys == ["rate:default-shared@kubernetescrd:127.0.0.1"], keys
    bucket = env["redis"].hgetall(keys[0])
    assert set(bucket) == {b"last", b"tokens"}
    assert env["redis"].ttl(keys[0]) > 0                 # expire set, as the script does


def test_over_the_limit_the_429_carries_traefik_s_headers(env):
    env["redis"].flushall()
    for _ in range(3):
        assert get(env["a"].port, "/", "rl.test")[0] == 200
    status, headers, body = get(env["b"].port, "/", "rl.test")
    assert status == 429 and body == b"Too Many Requests"
    assert int(headers["retry-after"]) >= 9              # ~10 s to the next token
    assert headers["x-retry-in"].endswith("s")


def test_redis_down_is_traefik_s_500_and_nothing_forwarded(env):
    env["server"].terminate()
    env["server"].wait(5)
    before = len(env["be"].requests)
    status, headers, body = get(env["a"].port, "/", "rl.test")
    assert len(env["be"].requests) == before
    assert status == 500 and body == b"Could not insert/update bucket\n"
    assert headers["x-content-type-options"] == "nosniff"


def _redis_server(port):
    server = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return server, client
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


def _others(client):
    """The connections CLIENT LIST shows, less the test's own."""
    me = client.client_id()
    return [c for c in client.client_list() if int(c["id"]) != me]


def _wait_count(client, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        others = _others(client)
        if len(others) == n or time.monotonic() > deadline:
            return others
        time.sleep(0.05)


@pytest.mark.parametrize("min_idle", [0, 3])
def test_min_idle_conns_are_opened_ahead_of_traffic_and_kept(tmp_path, min_idle):
    # go-redis's pool: MinIdleConns connections opened in the background as the client is
    # made, and each one taken is replaced while the pool is under its size; 0: on demand
    port = free_port()
    server, client = _redis_server(port)
    be = Backend("be")
    try:
        spec = {"average": 100, "burst": 100,
                "redis": {"endpoints": ["127.0.0.1:%d" % port], "minIdleConns": min_idle}}
        m = backend_service("svc", [be.port])
        m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
              "metadata: {name: idle, namespace: default}\nspec:\n  rateLimit: %s\n"
              % json.dumps(spec))
        m += ingressroute("main", [("Host(`rl.test`)", "svc",
                                    "      middlewares: [{name: idle}]\n")])
        with Pyroute(tmp_path, m, workers=2) as p:
            # before any request: 3 per worker (each worker's client has its own pool)
            others = _wait_count(client, 2 * min_idle)
            assert len(others) == 2 * min_idle, others
            time.sleep(0.3)                       # and no more than that
            assert len(_others(client)) == 2 * min_idle
            for _ in range(6):
                assert get(p.port, "/", "rl.test")[0] == 200
            # one at a time: a worker that took one of its idle connections opened another
            # (min_idle + 1), or, with 0, the one connection it made on demand is kept
            time.sleep(0.3)
            others = _others(client)
            assert 2 * min_idle + 1 <= len(others) <= 2 * (min_idle + 1), others
            ran = [c for c in others if c["cmd"] in ("evalsha", "eval")]
            assert ran, others                # the script ran on the pooled connections
            if min_idle:
                # a reload that changes the middleware makes a new client (Traefik rebuilds
                # the limiter); the old one's connections are closed, not leaked
                p.write_manifests(m.replace('"burst": 100', '"burst": 99'))
                others = _wait_count(client, 2 * min_idle, timeout=10)
                assert len(others) == 2 * min_idle, others
    finally:
        be.close()
        server.terminate()
        server.wait(5)
