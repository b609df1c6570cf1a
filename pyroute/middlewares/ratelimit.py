"""rateLimit (Traefik pkg/middlewares/ratelimiter) and inFlightReq (pkg/middlewares/inflightreq,
oxy connlimit), with limits that hold for the whole instance.

rateLimit: Traefik's token bucket per source (``average`` per ``period`` (default 1s),
``burst`` (at least 1); ``average: 0``: no limit). A request finding no token waits for one,
up to Traefik's maxDelay (1/(2*rate), 0.5 s below 1 request/s) — on a loop timer, the worker
serving others meanwhile; a longer wait is refused at once: 429 with ``Retry-After`` (whole
seconds, rounded up) and ``X-Retry-In`` (Go's duration text), body "Too Many Requests".
The buckets live in memory shared by every worker (engine/limits.pyx): one limit for the
instance, whichever worker a client reaches. With ``redis`` they live in Redis instead, kept
by Traefik's own script under Traefik's keys (pyroute/middlewares/ratelimit_redis.py): one
limit across replicas.

inFlightReq: at most ``amount`` requests in flight per source (default: the request host);
one more gets 429 "max connections reached: <amount>"; the count is released when the
exchange ends (answered, proxied, failed or the client gone) — shared by all workers, and a
worker that dies gives back what it held (the master's ``forget_worker``).
"""
import math

from .._engine.exchange import WAIT
from .._engine.limits import InFlight, TokenBucket
from ..proxy.responses import status_line
from ..manifests.names import format_duration
from ..static import parse_duration
from .source import SourceCriterion


def go_duration(ns):
    """Go's time.Duration.String() for ``ns`` nanoseconds ("1.5s", "250ms", "2m0.5s")."""
    return format_duration(ns / 1e9)


def _int(spec, key, default=0):
    v = spec.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("%s: expected an integer" % key)
    return v


def _answer(code, body, extra=b""):
    return (status_line(code) + extra + b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _go_error(code, text):
    # Go's http.Error: text/plain, nosniff, the text and a newline
    body = text + b"\n"
    return (status_line(code) + b"Content-Type: text/plain; charset=utf-8\r\n"
            b"X-Content-Type-Options: nosniff\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body)


class RateLimit:
    __slots__ = ("source", "bucket", "max_delay_ns", "rate", "name", "redis")
    static = False

    def __init__(self, spec, name="rate-limiter"):
        if not isinstance(spec, dict):
            raise ValueError("rateLimit: expected a mapping")
        self.name = name
        self.source = SourceCriterion(spec.get("sourceCriterion"), "ip")
        average = _int(spec, "average")
        burst = max(_int(spec, "burst"), 1)
        period = spec.get("period")
        try:
            period = parse_duration(period, allow_negative=True) if period is not None else 0.0
        except ValueError as e:
            raise ValueError("period: %s" % e) from None
        if period < 0:
            raise ValueError("period: negative value not valid for period: %s"
                             % go_duration(int(period * 1e9)))
        if period == 0:
            period = 1.0
        rate = 0.0
        max_delay = 0.0
        if average > 0:
            rate = average / period
            # Traefik: 1/(2*rate), capped at 0.5 s below 1 request/s
            max_delay = 0.5 if rate < 1 else 1.0 / (int(rate) * 2)
        self.rate = rate
        ttl = 1
        if rate >= 1:
            ttl += 1
        elif rate > 0:
            ttl += int(1 / rate)
        self.bucket = TokenBucket(name.encode("utf-8"), rate, burst, max_delay, ttl)
        self.max_delay_ns = int(max_delay * 1e9)
        self.redis = None
        if spec.get("redis") is not None:
            from .ratelimit_redis import RedisBuckets
            # Traefik's key is "rate:<middleware name>:<source>": the name as Traefik has it
            self.redis = RedisBuckets(spec["redis"], name.split("#", 1)[0], rate, burst,
                                      max_delay, ttl)

    def bind(self, pools):
        """The serving process's pools (``pools.serving``; ``check`` compiles too): the
        Redis client starts keeping its ``minIdleConns`` there only."""
        if self.redis is not None and getattr(pools, "serving", False):
            self.redis.serve()

    def on_request(self, ex):
        if self.bucket.unlimited:
            return None
        if self.redis is not None:
            loop = ex.loop

            def done(delay_us, error):
                loop.call_soon_threadsafe(self._decided, ex, delay_us, error)
            self.redis.allow(self.source.get(ex), done)
            return WAIT
        return self._decide(ex, self.bucket.reserve(self.source.get(ex)))

    def _decide(self, ex, delay):
        if delay > self.max_delay_ns:
            retry = b"Retry-After: %d\r\nX-Retry-In: %s\r\n" % (
                math.ceil(delay / 1e9), go_duration(delay).encode("utf-8"))
            return _answer(429, b"Too Many Requests", retry)
        if delay <= 0:
            return None
        ex.loop.call_later(delay / 1e9, ex.resume)
        return WAIT

    def _decided(self, ex, delay_us, error):
        # on the loop: the Redis script's answer for a request that waits for it
        if error is not None:
            # Traefik: http.Error(rw, "Could not insert/update bucket", 500)
            ex.answer(_go_error(500, b"Could not insert/update bucket"))
            return
        if delay_us is None:
            ex.answer(_go_error(429, b"No bursty traffic allowed"))
            return
        answer = self._decide(ex, int(delay_us * 1000))
        if answer is None:
            ex.resume()
        elif answer is not WAIT:
            ex.answer(answer)


class InFlightReq:
    __slots__ = ("source", "flights", "amount", "answer", "key")
    static = False

    def __init__(self, spec, name="inflight"):
        if not isinstance(spec, dict):
            raise ValueError("inFlightReq: expected a mapping")
        self.amount = _int(spec, "amount")
        self.source = SourceCriterion(spec.get("sourceCriterion"), "host")
        self.flights = InFlight(name.encode("utf-8"), self.amount)
        self.answer = _answer(429, b"max connections reached: %d" % self.amount)
        self.key = "inflight:" + name

    def on_request(self, ex):
        slot = self.flights.acquire(self.source.get(ex))
        if slot == -1:
            return self.answer
        if slot >= 0:
            ex.get_vars()[self.key] = slot
        # -2: the shared table has no slot left (16384 sources in flight at once): the
        # request is let through uncounted rather than refused for pyroute's own limit
        return None

    def on_complete(self, ex):
        slot = ex.vars.pop(self.key, None) if ex.vars else None
        if slot is not None:
            self.flights.release(slot)
