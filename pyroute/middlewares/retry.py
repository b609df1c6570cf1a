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

Requests with a body: as Traefik (mirror.NewReusableRequest), up to ``maxRequestBodyBytes``
(default 2 MiB; negative: no limit) of it is read first and kept (``ex.body``, in memory), and
every attempt sends it again — with a Content-Length (Go would send a chunked request chunked
again); a body that cannot be read (broken chunked framing) is answered 500 as Traefik does.
Over the limit, as Traefik (its body peeked, statusCodes dropped), only network errors are
retried: the body streams from the client, and none of it is taken until the backend is
reached, so a dial that fails (nothing written: Traefik's WroteHeaders not called) leaves it
whole for the next attempt; once the request went out, its answer is the client's.

Inside a service-level chain (``services[].middlewares``, TraefikService children) an attempt
goes back to where that chain began (``ex.service_start``) and the service picks again, as
Traefik's retry handler wraps that service's handler. Retries nest (a buffering
``retryExpression`` around a retry): the innermost decides first, then the one around it.
"""
import random

from .._engine.exchange import WAIT
from ..proxy.responses import status_line
from ..static import parse_duration

IDEMPOTENT_EXCLUDED = (b"POST", b"PATCH", b"LOCK")

# what an attempt given up is reported to (set in the worker, after the fork): the metrics
# Recorder (``attempt(ex, status)``: Traefik's service metrics handler sits inside the retry,
# around each server, so every attempt is metered on its service), the tracing Exporter
# (its per-attempt spans); each called only while ``ex.server`` is the attempt's
observers = []
# http.Error(rw, StatusText(500), 500): the body could not be read
ANSWER_500 = (status_line(500) + b"Content-Type: text/plain; charset=utf-8\r\n"
              b"X-Content-Type-Options: nosniff\r\nContent-Length: 22\r\n\r\n"
              b"Internal Server Error\n")


def has_body(req):
    """The request comes with a body (framing and not an empty Content-Length)."""
    return req.framing != 0 and req.content_length != 0


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
    compat_note = ("a request body (up to maxRequestBodyBytes) is kept and sent again, with a "
                   "Content-Length; over it, network errors only are retried, as Traefik")
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
        max_body = spec.get("maxRequestBodyBytes")
        if max_body is None:
            max_body = 2 * 1024 * 1024      # dynamic.RetryDefaultMaxRequestBodyBytes
        if isinstance(max_body, bool) or not isinstance(max_body, int):
            raise ValueError("maxRequestBodyBytes: expected an integer, got %r" % (max_body,))
        self.max_body = max_body
        self.multiplier = 2 ** (1 / (attempts - 1)) if attempts > 1 else 1.0

    def on_request(self, ex):
        if self.attempts == 1:
            return None
        req = ex.req
        statuses = self.statuses
        if not self.non_idempotent and req.method in IDEMPOTENT_EXCLUDED:
            statuses = None
        if statuses is None and not self.network:
            return None
        if has_body(req):
            if req.method == b"CONNECT" and req.content_length < 0:
                return None          # a CONNECT's unknown-length body is tunnel data
            # Traefik keeps the body to send it again (up to maxRequestBodyBytes)
            max_body = self.max_body if self.max_body >= 0 else -1
            ready = ex.conn.read_body(ex, max_body, self._with_body, -1)
            if ready is None:
                ex.get_vars()[self] = statuses
                return WAIT
            return self._start(ex, statuses, ready[1])
        return self._start(ex, statuses, False)

    def _with_body(self, ex, body, too_large):
        statuses = ex.vars.pop(self)
        answer = self._start(ex, statuses, too_large)
        if answer is None:
            ex.resume()
        else:
            ex.answer(answer)

    def _start(self, ex, statuses, too_large):
        if too_large is None:
            return ANSWER_500
        if too_large:
            # over maxRequestBodyBytes: Traefik drops the status retries (statusCodes = nil)
            # and keeps the network ones; the body streams, held until the backend is
            # reached (ClientConn.body_held), so a failed dial can send it again
            if not self.network:
                return None
            statuses = None
        attempt = ex.retry
        while attempt is not None:
            if attempt.mw is self:
                # this middleware again, as an attempt of its own went back to before it
                # (a service-level chain runs again): the same attempt goes on
                ex.retry = attempt
                return None
            attempt = attempt.outer
        ex.retry = _Attempt(self, statuses, ex)
        if not ex.attempts:
            ex.attempts = 1
        return None


def _given_up(ex, status):
    for observe in observers:
        observe(ex, status)


class _Attempt:
    """The retry middleware's state for one exchange: where the request stood when it passed
    the middleware (what each attempt starts from), its attempts and the backoff. The
    connection asks ``network_retry(ex, status)`` / ``status_retry(ex, status)`` of
    ``ex.retry``; the attempt that says yes becomes ``ex.retry`` and ``rewind`` goes back
    to where it stood. ``outer``: the attempt of a retry around this one, asked next."""
    __slots__ = ("mw", "statuses", "start", "pos", "route", "chain", "path", "query",
                 "set_headers", "remove_headers", "resp_extra", "responders", "n_responders",
                 "n_completers", "interval", "outer", "n", "service", "chained")

    def __init__(self, mw, statuses, ex):
        self.mw = mw
        self.statuses = statuses
        self.outer = ex.retry
        self.n = 1
        self.start = ex.loop.now
        self.pos, self.chain = ex.pos, ex.chain
        self.remove_headers = list(ex.remove_headers) if ex.remove_headers else None
        self.resp_extra = list(ex.resp_extra) if ex.resp_extra else None
        saved = ex.service_start
        self.service = saved is not None
        self.chained = None
        if saved is None:
            self.route = ex.route
            self.path, self.query = ex.path, ex.query
            self.set_headers = list(ex.set_headers) if ex.set_headers else None
            self.responders = None
            self.n_responders = len(ex.responders) if ex.responders else 0
            self.n_completers = len(ex.completers) if ex.completers else 0
        else:
            # in a service-level chain: back to where that chain began (Chained.pick), the
            # service picks again and the chain runs again
            route, self.path, self.query, extra, n_extra, responders, completers, \
                self.chained = saved
            self.route = route
            self.set_headers = list(extra[:n_extra]) if extra else None
            self.responders = responders
            self.n_responders = 0
            self.n_completers = len(completers) if completers else 0
        self.interval = mw.initial

    def _more(self, ex):
        mw = self.mw
        if self.n >= mw.attempts:
            return False
        return not (mw.timeout > 0 and ex.loop.now - self.start >= mw.timeout)

    def network_retry(self, ex, status=502):
        if self.mw.network and self._more(ex):
            ex.retry = self
            _given_up(ex, status)
            return True
        return self.outer is not None and self.outer.network_retry(ex, status)

    def status_retry(self, ex, status):
        if self.statuses is not None and contains(self.statuses, status) and self._more(ex):
            ex.retry = self
            _given_up(ex, status)
            return True
        return self.outer is not None and self.outer.status_retry(ex, status)

    def error_retry(self, ex, status):
        # the backend failed after the request was sent: Traefik's retry does not resend
        # then; a buffering retryExpression around it may (oxy sees the 502/504)
        return self.outer is not None and self.outer.error_retry(ex, status)

    def rewind(self, ex):
        """Back to where the request passed the middleware; the delay before the attempt."""
        done = ex.completers[self.n_completers:] if ex.completers else ()
        for hook in done:
            hook(ex)                 # the attempt given up is over for what it counted
        if ex.completers:
            del ex.completers[self.n_completers:]
        ex.service_start = None
        if self.service:
            ex.responders = self.responders
            ex.pending = self        # exchange_resume: ``resume``, the chain runs again
        elif ex.responders:
            del ex.responders[self.n_responders:]
        ex.pos, ex.route, ex.chain = self.pos, self.route, self.chain
        ex.path, ex.query = self.path, self.query
        ex.set_headers = list(self.set_headers) if self.set_headers else None
        ex.remove_headers = list(self.remove_headers) if self.remove_headers else None
        ex.resp_extra = list(self.resp_extra) if self.resp_extra else None
        ex.attempts += 1
        self.n += 1
        return self.delay()

    def resume(self, ex):
        """``ex.pending`` after a rewind into a service-level chain: that chain again, then
        its service picks (Traefik's retry wraps that service's handler)."""
        return self.chained.pick(ex)

    def delay(self):
        mw = self.mw
        if mw.attempts < 2 or mw.initial <= 0:
            return 0.0
        # cenkalti/backoff ExponentialBackOff: a random value within ±50% of the current
        # interval, which then grows by the multiplier (at most 60 s)
        current = self.interval
        self.interval = min(current * mw.multiplier, 60.0)
        return current * (1 + 0.5 * (2 * random.random() - 1))
