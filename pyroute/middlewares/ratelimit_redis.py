"""rateLimit with ``redis``: the buckets live in Redis, kept by Traefik's own Lua script
(pkg/middlewares/ratelimiter/lua.go, byte for byte) under Traefik's keys
(``rate:<middleware name>:<source>``), so pyroute replicas — or pyroute beside Traefik —
share one limit.

Each request runs the script once. The client is redis-py's (a connection pool, its
timeouts, TLS), called from a small thread pool so the worker's loop never waits on the
network: the request WAITs, the answer comes back through ``loop.call_soon_threadsafe``.
Redis unreachable or failing: Traefik's answer, 500 "Could not insert/update bucket", and
nothing forwarded.

``minIdleConns`` is go-redis's: the serving process opens that many connections in the
background as the client is made, and whenever taking one leaves fewer idle (and the pool is
below its size) opens another, so the pool keeps that many ready (``IdleKeeper``).
"""
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..static import parse_duration

# Traefik v3.7 AllowTokenBucketRaw
SCRIPT = """
local key = KEYS[1]
local limit, burst, ttl, t, max_delay = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
    tonumber(ARGV[5])

local bucket = {
    limit = limit,
    burst = burst,
    tokens = 0,
    last = 0
}

local rl_source = redis.call('hgetall', key)

if table.maxn(rl_source) == 4 then
    -- Get bucket state from redis
    bucket.last = tonumber(rl_source[2])
    bucket.tokens = tonumber(rl_source[4])
end

local last = bucket.last
if t < last then
    last = t
end

local elapsed = t - last
local delta = bucket.limit * elapsed
local tokens = bucket.tokens + delta
tokens = math.min(tokens, bucket.burst)
tokens = tokens - 1

local wait_duration = 0
if tokens < 0 then
    wait_duration = (tokens * -1) / bucket.limit
    if wait_duration > max_delay then
        tokens = tokens + 1
        tokens = math.min(tokens, burst)
    end
end

redis.call('hset', key, 'last', t, 'tokens', tokens)
redis.call('expire', key, ttl)

return {tostring(true), tostring(wait_duration), tostring(tokens)}"""

PREFIX = "rate:"


def _seconds(spec, key, default):
    v = spec.get(key)
    if v is None or v == "":
        return default
    try:
        return parse_duration(v, allow_negative=True)
    except ValueError as e:
        raise ValueError("redis.%s: %s" % (key, e)) from None


def _endpoint(text):
    """(host, port); None for an address go-redis cannot dial ("missing port in address"):
    as in Traefik, that fails each request (500), not the configuration."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class RedisBuckets:
    """The Redis side of one rateLimit middleware; ``allow(source, done)`` calls
    ``done(delay_us, error)`` on another thread (``error``: an exception or None)."""

    def __init__(self, spec, name, rate, burst, max_delay, ttl):
        import redis
        if not isinstance(spec, dict):
            raise ValueError("redis: expected a mapping")
        endpoints = spec.get("endpoints") or ["localhost:6379"]
        if not isinstance(endpoints, list):
            raise ValueError("redis.endpoints: expected a list of host:port")
        self.nodes = [_endpoint(e) for e in endpoints]
        self.invalid = None
        if None in self.nodes:
            self.invalid = ValueError("dial tcp: address %s: missing port in address"
                                      % endpoints[self.nodes.index(None)])
            self.nodes = [n for n in self.nodes if n is not None] or [("localhost", 6379)]
        self.name = name
        self.rate = rate
        self.burst = burst
        self.max_delay_us = int(max_delay * 1e6)
        self.ttl = ttl
        min_idle = spec.get("minIdleConns") or 0
        if isinstance(min_idle, bool) or not isinstance(min_idle, int) or min_idle < 0:
            raise ValueError("redis.minIdleConns: expected a non-negative integer")
        db = spec.get("db") or 0
        if isinstance(db, bool) or not isinstance(db, int):
            raise ValueError("redis.db: expected an integer")
        pool_size = spec.get("poolSize") or 0
        active = spec.get("maxActiveConns") or 0
        # go-redis: PoolSize defaults to 10 per CPU; MaxActiveConns caps it when set
        size = pool_size or 10 * (os.cpu_count() or 1)
        if active:
            size = min(size, active)
        read = _seconds(spec, "readTimeout", 3.0)
        write = _seconds(spec, "writeTimeout", 3.0)
        dial = _seconds(spec, "dialTimeout", 5.0)
        # go-redis: a timeout of -1 (pyroute: <= 0 given) means none; redis-py has one socket
        # timeout for reads and writes, so the longer of the two is used
        timeout = None if read <= 0 and write <= 0 else max(read, write)
        kwargs = dict(username=spec.get("username") or None,
                      password=spec.get("password") or None, db=db,
                      socket_timeout=timeout, socket_connect_timeout=dial if dial > 0 else 5.0,
                      max_connections=size)
        tls = spec.get("tls")
        if tls is not None:
            kwargs.update(self._tls(tls))
        if len(self.nodes) > 1:
            # go-redis UniversalClient: several addresses make a cluster client
            from redis.cluster import ClusterNode, RedisCluster
            kwargs.pop("db", None)
            self.client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in self.nodes],
                                       **kwargs)
        else:
            host, port = self.nodes[0]
            self.client = redis.Redis(host=host, port=port, **kwargs)
        self.script = self.client.register_script(SCRIPT)
        self.threads = ThreadPoolExecutor(max_workers=min(size, 16),
                                          thread_name_prefix="pyroute-redis")
        self.min_idle = min_idle
        self.keeper = None

    def serve(self):
        """Called in the process that serves with this middleware (not by ``check``): start
        keeping ``minIdleConns`` idle connections, as go-redis's NewConnPool does."""
        if self.min_idle and self.keeper is None and self.invalid is None:
            if hasattr(self.client, "get_nodes"):
                pools = [n.redis_connection.connection_pool for n in self.client.get_nodes()
                         if n.redis_connection is not None]
            else:
                pools = [self.client.connection_pool]
            self.keeper = IdleKeeper(pools, self.min_idle)
            self.keeper.top_up()

    def _tls(self, tls):
        out = {"ssl": True}
        if tls.get("insecureSkipVerify"):
            out["ssl_cert_reqs"] = "none"
            out["ssl_check_hostname"] = False
        ca = tls.get("ca")
        if ca:
            # the CRD provider hands PEM blocks, a file provider a path (as Traefik's
            # ClientTLS: a file path or the PEM itself)
            out["ssl_ca_data" if "-----BEGIN" in ca else "ssl_ca_certs"] = ca
        cert, key = tls.get("cert"), tls.get("key")
        if cert and key:
            if "-----BEGIN" in cert:
                d = tempfile.mkdtemp(prefix="pyroute-redis-tls-")
                paths = []
                for fname, data in (("cert.pem", cert), ("key.pem", key)):
                    path = os.path.join(d, fname)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write(data)
                    paths.append(path)
                cert, key = paths
            out["ssl_certfile"], out["ssl_keyfile"] = cert, key
        return out

    def allow(self, source, done):
        if self.invalid is not None:
            done(None, self.invalid)
            return
        self.threads.submit(self._run, source, done)

    def _run(self, source, done):
        if self.keeper is not None:
            # go-redis: taking an idle connection below minIdleConns opens another
            self.keeper.top_up(taking=1)
        try:
            v = self.script(keys=[PREFIX + self.name + ":" + source.decode("latin-1")],
                            args=[float(self.rate / 1000000), self.burst, self.ttl,
                                  int(time.time() * 1e6), self.max_delay_us])
            ok = v[0] in (b"true", "true")
            delay = float(v[1])
        except Exception as e:      # unreachable, timeout, auth, a script error
            done(None, e)
            return
        done(delay if ok else None, None)


class IdleKeeper:
    """go-redis's checkMinIdleConns over redis-py pools: while a pool has fewer than
    ``min_idle`` idle connections and fewer than its size in all, open one more in the
    background (a failed dial is dropped, as go-redis's addIdleConn; the next check tries
    again). redis-py keeps idle connections until they are used, as go-redis with its
    default (lazy) idle expiry."""

    def __init__(self, pools, min_idle):
        self.pools = pools
        self.min_idle = min_idle
        self.pending = {id(p): 0 for p in pools}
        self.lock = threading.Lock()
        self.dialers = ThreadPoolExecutor(max_workers=min(min_idle, 4),
                                          thread_name_prefix="pyroute-redis-idle")

    def top_up(self, taking=0):
        for pool in self.pools:
            with self.lock, pool._lock:
                pending = self.pending[id(pool)]
                idle = len(pool._available_connections) - taking + pending
                total = (len(pool._available_connections) + len(pool._in_use_connections)
                         + pending)
                need = min(self.min_idle - idle, pool.max_connections - total)
                if need <= 0:
                    continue
                self.pending[id(pool)] = pending + need
            for _ in range(need):
                self.dialers.submit(self._open, pool)

    def _open(self, pool):
        conn = None
        try:
            with pool._lock:
                conn = pool.make_connection()
            conn.connect()
        except Exception:           # unreachable, auth: dropped, as go-redis's addIdleConn
            with pool._lock:
                if conn is not None:
                    pool._created_connections -= 1
            if conn is not None:
                conn.disconnect()
            conn = None
        with self.lock:
            self.pending[id(pool)] -= 1
            if conn is not None:
                with pool._lock:
                    pool._available_connections.append(conn)
