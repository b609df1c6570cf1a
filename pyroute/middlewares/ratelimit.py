"""rateLimit (Traefik pkg/middlewares/ratelimiter) and inFlightReq (pkg/middlewares/inflightreq,
oxy connlimit), with limits that hold for the whole instance.

rateLimit: Traefik's token bucket per source (``average`` per ``period`` (default 1s),
``burst`` (at least 1); ``average: 0``: no limit). A request finding no token waits for one,
up to Traefik's maxDelay (1/(2*rate), 0.5 s below 1 request/s) — on a loop timer, the worker
serving others meanwhile; a longer wait is refused at once: 429 with ``Retry-After`` (whole
seconds, rounded up) and ``X-Retry-In`` (Go's duration text), body "Too Many Requests".
The buckets live in memory shared by every worker (engine/limits.pyx): one limit for the
instance, whichever worker a client reaches. ``redis`` (buckets shared across replicas) is
not run yet: a middleware that sets it is refused with an error (its routers disabled)
rather than limiting per instance while the user asked for a shared limit.

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


class RateLimit:
    __slots__ = ("source", "bucket", "max_delay_ns", "rate", "name")
    static = False

    def __init__(self, spec, name="rate-limiter"):
        if not isinstance(spec, dict):
            raise ValueError("rateLimit: expected a mapping")
        if spec.get("redis") is not None:
            raise ValueError("redis: the Redis-backed rate limiter is not supported by "
                             "pyroute yet (it would limit per instance, not across replicas)")
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

    def on_request(self, ex):
        if self.bucket.unlimited:
            return None
        delay = self.bucket.reserve(self.source.get(ex))
        if delay > self.max_delay_ns:
            retry = b"Retry-After: %d\r\nX-Retry-In: %s\r\n" % (
                math.ceil(delay / 1e9), go_duration(delay).encode("utf-8"))
            return _answer(429, b"Too Many Requests", retry)
        if delay <= 0:
            return None
        ex.loop.call_later(delay / 1e9, ex.resume)
        return WAIT


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
