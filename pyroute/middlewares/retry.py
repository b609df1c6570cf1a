"""retry (Traefik pkg/middlewares/retry).

``attempts`` in all (1: nothing to do); another attempt when
- the backend could not be reached and nothing of the request was written to it (dial
  refused or timed out, TLS handshake failed) — unless ``disableRetryOnNetworkError`` — as
  Traefik retries network errors only while WroteHeaders has not been called;
- its answer has a ``status`` in the ranges ("500-599", "503") — for idempotent methods
  (not POST, PATCH, LOCK) unless ``retryNonIdempotentMethod``; the answer is dropped before
  anything reaches the client;
while ``timeout`` (since the first attempt) has not passed. Each attempt goes through the rest
of the chain again and to the server the balancer picks next; between attempts Traefik's
exponential backoff from ``initialInterval`` (cenkalti/backoff: ±50% jitter, the multiplier
that doubles the interval over the attempts). The last attempt's answer is the client's,
whatever it is. ``ex.attempts`` counts them (the access log's RetryAttempts, the retries
metric).

Requests with a body: Traefik keeps up to ``maxRequestBodyBytes`` (2 MiB) to send it again;
pyroute does not buffer request bodies for a retry yet, so a request with a body gets one
attempt (as Traefik does for a body over maxRequestBodyBytes).
"""
import random

from ..static import parse_duration

IDEMPOTENT_EXCLUDED = (b"POST", b"PATCH", b"LOCK")


def code_ranges(values, field="status"):
    """types.NewHTTPCodeRanges: "500-599" or "404" each; strconv.Atoi's errors."""
    if not isinstance(values, list):
        raise ValueError("%s: expected a list of status codes or ranges" % field)
    out = []
    for block in values:
        codes = str(block).split("-")
        if len(codes) == 1:
            codes.append(codes[0])
        nums = []
        for c in codes[:2]:
            try:
                if c != c.strip() or not c.lstrip("+-").isdigit():
                    raise ValueError
                nums.append(int(c))
            except ValueError:
                raise ValueError("%s: creating HTTP code ranges: strconv.Atoi: parsing %r: "
                                 "invalid syntax" % (field, c)) from None
        out.append((nums[0], nums[1]))
    return tuple(out)


def contains(ranges, code):
    return any(lo <= code <= hi for lo, hi in ranges)


def _seconds(spec, key):
    v = spec.get(key)
    if v is None or v == "":
        return 0.0
    try:
        return parse_duration(v, allow_negative=True)
    except ValueError as e:
        raise ValueError("%s: %s" % (key, e)) from None


class Retry:
    __slots__ = ("attempts", "statuses", "network", "initial", "timeout", "non_idempotent",
                 "max_body", "multiplier")
    static = False

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError("retry: expected a mapping")
        status = spec.get("status") or []
        self.network = not spec.get("disableRetryOnNetworkError")
        if not status and not self.network:
            raise ValueError("retry middleware requires at least HTTP status codes or retry "
                             "on TCP")
        attempts = spec.get("attempts") or 0
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts <= 0:
            raise ValueError("attempts: incorrect (or empty) value for attempt (%s)"
                             % (attempts,))
        self.attempts = attempts
        self.statuses = code_ranges(status) if status else None
        self.initial = _seconds(spec, "initialInterval")
        self.timeout = _seconds(spec, "timeout")
        self.non_idempotent = bool(spec.get("retryNonIdempotentMethod"))
        self.max_body = spec.get("maxRequestBodyBytes", 2 * 1024 * 1024)
        self.multiplier = 2 ** (1 / (attempts - 1)) if attempts > 1 else 1.0

    def on_request(self, ex):
        if self.attempts == 1:
            return None
        req = ex.req
        if req.content_length != 0 and req.framing != 0:
            return None         # a body: one attempt (see the module docstring)
        statuses = self.statuses
        if not self.non_idempotent and req.method in IDEMPOTENT_EXCLUDED:
            statuses = None
        if statuses is None and not self.network:
            return None
        ex.retry = _Attempt(self, statuses, ex)
        ex.attempts = 1
        return None


class _Attempt:
    """The retry middleware's state for one exchange: where the request stood when it passed
    the middleware (what each attempt starts from) and the backoff."""
    __slots__ = ("mw", "statuses", "start", "pos", "route", "chain", "path", "query",
                 "set_headers", "remove_headers", "resp_extra", "n_responders",
                 "n_completers", "interval")

    def __init__(self, mw, statuses, ex):
        self.mw = mw
        self.statuses = statuses
        self.start = ex.loop.now
        self.pos, self.route, self.chain = ex.pos, ex.route, ex.chain
        self.path, self.query = ex.path, ex.query
        self.set_headers = list(ex.set_headers) if ex.set_headers else None
        self.remove_headers = list(ex.remove_headers) if ex.remove_headers else None
        self.resp_extra = list(ex.resp_extra) if ex.resp_extra else None
        self.n_responders = len(ex.responders) if ex.responders else 0
        self.n_completers = len(ex.completers) if ex.completers else 0
        self.interval = mw.initial

    def _more(self, ex):
        mw = self.mw
        if ex.attempts >= mw.attempts:
            return False
        return not (mw.timeout > 0 and ex.loop.now - self.start >= mw.timeout)

    def network_retry(self, ex):
        return self.mw.network and self._more(ex)

    def status_retry(self, ex, status):
        return (self.statuses is not None and contains(self.statuses, status)
                and self._more(ex))

    def rewind(self, ex):
        """Back to where the request passed the middleware; the delay before the attempt."""
        done = ex.completers[self.n_completers:] if ex.completers else ()
        for hook in done:
            hook(ex)                 # the attempt given up is over for what it counted
        if ex.completers:
            del ex.completers[self.n_completers:]
        if ex.responders:
            del ex.responders[self.n_responders:]
        ex.pos, ex.route, ex.chain = self.pos, self.route, self.chain
        ex.path, ex.query = self.path, self.query
        ex.set_headers = list(self.set_headers) if self.set_headers else None
        ex.remove_headers = list(self.remove_headers) if self.remove_headers else None
        ex.resp_extra = list(self.resp_extra) if self.resp_extra else None
        ex.attempts += 1
        mw = self.mw
        if mw.attempts < 2 or mw.initial <= 0:
            return 0.0
        # cenkalti/backoff ExponentialBackOff: a random value within ±50% of the current
        # interval, which then grows by the multiplier (at most 60 s)
        current = self.interval
        self.interval = min(current * mw.multiplier, 60.0)
        return current * (1 + 0.5 * (2 * random.random() - 1))
