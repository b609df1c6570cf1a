"""OpenTelemetry traces as Traefik writes them (pkg/middlewares/observability, pkg/observability
/tracing, pkg/proxy/httputil/observability.go), exported over OTLP (HTTP or gRPC).

Two halves, so that a request pays only for what it is:

- ``TraceStart`` is a request-phase step put first in the chain of each root router whose
  tracing is on (compile time: ``attach``). Per request it decides sampling (Traefik's
  ``ParentBased(TraceIDRatioBased(sampleRate))``), draws the ids and writes ``traceparent``
  (and ``tracestate``) into the backend request — what must happen while the request runs,
  in C (engine/tracectx.pyx: an unsampled request makes no Python object but the header
  value). It builds no span object. A router with tracing off (or no ``tracing`` section) has no
  such step and runs exactly what it ran before.
- ``Exporter`` runs in each worker, after the fork, as one of ``Env.observers``: for a
  finished, sampled exchange it builds the spans retroactively, from the exchange's
  timestamps and, for a detailed router, the times its ``_Mark`` steps noted (when the
  request reached each middleware, child router; the retry's attempts given up, through
  pyroute.middlewares.retry.observers; forwardAuth's auth requests), and hands them to the
  SDK's BatchSpanProcessor (its thread exports them). A request not sampled returns at the
  first test.

The span tree is Traefik's: the entry point's SERVER span (named after the method), and
the ``ReverseProxy`` CLIENT span to the backend (and forwardAuth's ``AuthRequest``); with
``traceVerbosity: detailed`` the ``Router`` span (and each child router's), one span per
traced middleware (Traefik's typeName), the ``Retry`` spans of each attempt and the
``Service`` span lie between them.
"""
import os
import random
import socket
import time
from urllib.parse import parse_qsl, quote_plus, unquote_to_bytes, urlsplit

from .._engine.tracectx import TraceDecider

_getrandbits = random.getrandbits
_LIMIT64 = (1 << 64) - 1

# Traefik's middleware typeNames (GetTracingInformation), per pyroute kind; kinds absent here
# are not Traceable in Traefik (chain, contentType, retry) and get no span
TYPE_NAMES = {
    "stripPrefix": "StripPrefix",
    "stripPrefixRegex": "StripPrefixRegex",
    "addPrefix": "AddPrefix",
    "replacePath": "ReplacePath",
    "replacePathRegex": "ReplacePathRegex",
    "headers": "Headers",
    "redirectScheme": "Redirect",
    "redirectRegex": "Redirect",
    "ipAllowList": "IPAllowLister",
    "ipWhiteList": "IPWhiteLister",
    "encodedCharacters": "EncodedCharacters",
    "passTLSClientCert": "PassClientTLSCert",
    "basicAuth": "BasicAuth",
    "digestAuth": "digestAuth",
    "forwardAuth": "ForwardAuth",
    "rateLimit": "RateLimiter",
    "inFlightReq": "InFlightReq",
    "circuitBreaker": "CircuitBreaker",
    "compress": "Compress",
    "errors": "CustomError",
    "buffering": "Buffer",
}

_HEX = frozenset(b"0123456789abcdef")


def parse_traceparent(value):
    """W3C Trace Context ``traceparent`` -> (trace_id, span_id, sampled) or None when invalid
    (then a new trace starts, as Go's propagation.TraceContext does)."""
    if value is None:
        return None
    value = value.strip()
    parts = value.split(b"-")
    if len(parts) < 4:
        return None
    version, tid, sid, flags = parts[0], parts[1], parts[2], parts[3]
    if len(version) != 2 or version == b"ff" or not _HEX.issuperset(version):
        return None
    if version == b"00" and len(parts) != 4:
        return None
    if len(tid) != 32 or len(sid) != 16 or len(flags) != 2:
        return None
    if not (_HEX.issuperset(tid) and _HEX.issuperset(sid) and _HEX.issuperset(flags)):
        return None
    trace_id = int(tid, 16)
    span_id = int(sid, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


class Trace:
    """What the request phase decided, read by the Exporter (``ex.vars["trace"]``)."""
    __slots__ = ("trace_id", "parent_id", "client_id", "sampled", "state", "step", "path",
                 "query", "start", "marks", "attempts", "auth")

    def __init__(self, trace_id, parent_id, client_id, sampled, state, step, path, query,
                 start=0.0, detailed=False):
        self.trace_id = trace_id
        self.parent_id = parent_id      # the client's span (remote parent), 0: a new trace
        self.client_id = client_id      # the ReverseProxy span: the backend's parent
        self.sampled = sampled
        self.state = state              # the client's tracestate (bytes), or None
        self.step = step                # the TraceStart of the router (its names, verbosity)
        self.path = path                # the path and query the entry point saw (before the
        self.query = query              # middlewares rewrote them): the SERVER span's
        self.start = start              # when the router's chain began (its Router span)
        # detailed: {mark key: monotonic time the request reached it} (the _Mark steps), the
        # retry's attempts given up and forwardAuth's auth requests; None otherwise
        self.marks = {} if detailed else None
        self.attempts = None            # [_GivenUp] (pyroute.middlewares.retry observers)
        self.auth = None                # [(span id, start, end, status, url)]


def decide(req, bound):
    """(trace_id, parent_id, sampled, tracestate, client sent trace headers) for a request:
    the client's trace when its traceparent is valid (ParentBased: its sampled flag decides),
    else a new one sampled when its lower 64 bits fall under ``bound`` (TraceIDRatioBased)."""
    tp = req.header(b"traceparent")
    if tp is not None:
        parent = parse_traceparent(tp)
        if parent is not None:
            return parent[0], parent[1], parent[2], req.header(b"tracestate"), True
    trace_id = _getrandbits(128) or 1
    return (trace_id, 0, (trace_id & _LIMIT64) < bound, None,
            tp is not None or req.header(b"tracestate") is not None)


def sample_bound(rate):
    # the OpenTelemetry SDK's TraceIdRatioBased: sampled when the id's low 64 bits < bound
    return round(rate * (_LIMIT64 + 1))


class TraceStart(TraceDecider):
    """The request-phase step of a traced root router (see the module's docstring); its
    ``on_request`` is engine/tracectx.pyx's: the decision and the injected ``traceparent``
    in C, ``record`` called for a sampled request only (or, below a forwardAuth, for all)."""
    __slots__ = ("detailed", "router", "rule", "service", "middlewares", "routes")
    static = False

    def __init__(self, bound, detailed, router, rule, service, middlewares):
        self.bound = bound
        self.detailed = detailed
        self.router = router            # Traefik's traefik.router.name
        self.rule = rule                # http.route
        self.service = service          # traefik.service.name (``<router>-muxer``: a parent)
        # ((typeName, qualified name, mark key), ...) traced, in order (typeName "Retry":
        # the retry middleware, which writes one span per attempt)
        self.middlewares = middlewares
        # detailed, multi-layer routing: {id(child Route): (name, rule, service, middlewares,
        # id(parent Route) or None)} of the child routers below
        self.routes = {}
        # a forwardAuth below: its auth request carries the trace's context, sampled or not
        # (so an unsampled request keeps its Trace too, on these routers only)
        self.auth = False

    def record(self, ex, trace_id, parent_id, client_id, state, sampled):
        v = ex.vars
        if v is None:
            v = ex.vars = {}
        env = ex.env                    # None: an exchange made outside a worker (tests)
        v["trace"] = Trace(trace_id, parent_id, client_id, sampled, state, self, ex.path,
                           ex.query, env.now if env is not None else 0.0,
                           self.detailed and sampled)


class _Mark:
    """A compiled step of a detailed router, wrapped: a sampled request notes when it reached
    it (its span's own start), then the step runs. Only routers with ``traceVerbosity:
    detailed`` have these."""
    __slots__ = ("inner", "key")
    static = False

    def __init__(self, inner, key):
        self.inner = inner
        self.key = key

    def on_request(self, ex):
        v = ex.vars
        if v is not None:
            t = v.get("trace")
            if t is not None and t.marks is not None:
                t.marks[self.key] = ex.env.now
        return self.inner.on_request(ex)


class _Pass:
    __slots__ = ()
    static = False

    def on_request(self, ex):
        return None


_PASS = _Pass()


def _flat(config, names, seen=()):
    """[(qualified name, kind)] of a router's middlewares as Traefik wraps them (and as
    pyroute.proxy.snapshot.Compiler.chain lists their objects): a chain's members in its
    place."""
    from ..manifests import qualified
    specs = config.dynamic.get("http", {}).get("middlewares", {})
    out = []
    for name in names or ():
        key = qualified(name)
        spec = specs.get(key) or {}
        kind = next((k for k in spec if k not in ("status", "error")), None)
        if kind == "chain":
            if key not in seen:
                out.extend(_flat(config, (spec.get("chain") or {}).get("middlewares"),
                                 seen + (key,)))
        else:
            out.append((key, kind))
    return out


def _middleware_kinds(config, names, seen=()):
    """((typeName, qualified name), ...) of a router's traced middlewares (the chain itself
    is not traced)."""
    return [(TYPE_NAMES[kind], key) for key, kind in _flat(config, names, seen)
            if kind in TYPE_NAMES]


def _instrument(route, rname, router, config, root=True):
    """The traced middlewares of a detailed router, ((typeName, name, mark key), ...), and
    its compiled steps wrapped in _Mark so that a sampled request notes when it reached
    each. The compiled steps hold the middlewares' objects (route.chain: the inherited
    ones, then the router's own, in the order of ``_flat``)."""
    flat = _flat(config, router.get("middlewares"))
    chain = list(route.chain)
    if len(chain) < len(flat):
        own = []
    elif root:
        own = chain[:len(flat)]      # (noop@internal's answer follows them)
    else:
        own = chain[len(chain) - len(flat):]      # after the parents' (inherited)
    traced = []
    where = {}
    for j, (key, kind) in enumerate(flat):
        if kind in TYPE_NAMES or kind == "retry":
            name = "Retry" if kind == "retry" else TYPE_NAMES[kind]
            traced.append((name, key, (rname, j)))
            if j < len(own):
                where.setdefault(id(own[j]), []).append(j)
    steps = list(route.middlewares or ())
    for i, st in enumerate(steps):
        inner = st.mw if hasattr(st, "edits") and hasattr(st, "mw") else st
        js = where.get(id(inner))
        if js:
            steps[i] = _Mark(st, (rname, js.pop(0)))
    route.middlewares = tuple(steps)
    return tuple(traced)


def _instrument_children(step, route, config, seen):
    """Child routers of multi-layer routing (Traefik builds each with its own Router span,
    pkg/server/router buildHTTPHandler): a start mark first in each child's chain, its
    middlewares marked, their span data in ``step.routes``."""
    children = route.children
    if children is None or id(children) in seen:
        return
    seen.add(id(children))
    from ..manifests import qualified
    routers = config.dynamic.get("http", {}).get("routers", {})
    for child in children.targets:
        if not hasattr(child, "chain") or child.name not in routers:
            continue
        conf = routers[child.name]
        traced = _instrument(child, child.name, conf, config, root=False)
        child.middlewares = (_Mark(_PASS, (child.name, "start")),) + tuple(
            child.middlewares or ())
        if child.after is not None:
            child.after = (None,) + tuple(child.after)
        service = "%s-muxer" % child.name if child.children is not None else (
            qualified(conf["service"]) if conf.get("service") else "")
        step.routes[id(child)] = (child.name, conf.get("rule") or "", service, traced,
                                  id(route) if route is not step else None)
        _instrument_children(step, child, config, seen)


def _auth_below(route, config, seen):
    # a child router (at any depth) with a forwardAuth middleware
    children = route.children
    if children is None or id(children) in seen:
        return False
    seen.add(id(children))
    routers = config.dynamic.get("http", {}).get("routers", {})
    for child in children.targets:
        conf = routers.get(getattr(child, "name", None))
        if conf is None:
            continue
        if any(kind == "forwardAuth" for _, kind in _flat(config, conf.get("middlewares"))) \
                or _auth_below(child, config, seen):
            return True
    return False


def attach(route, rname, router, config, children=False):
    """Puts a TraceStart first in the chain of root router ``rname`` when Traefik's
    ObservabilityMgr.shouldTrace says so: a tracing section, the router's
    ``observability.tracing`` not false, an @internal service only with addInternals."""
    conf = getattr(config.static, "tracing", None)
    if conf is None:
        return
    obs = router.get("observability") or {}
    if obs.get("tracing", True) is False:
        return
    service = router.get("service") or ""
    if service.endswith("@internal") and not conf.add_internals:
        return
    from ..manifests import qualified
    detailed = obs.get("traceVerbosity") == "detailed"
    traced = _instrument(route, rname, router, config) if detailed else tuple(
        (name, key, None) for name, key in _middleware_kinds(config, router.get("middlewares")))
    step = TraceStart(sample_bound(conf.sample_rate), detailed, rname, router.get("rule") or "",
                      "%s-muxer" % rname if children else (qualified(service) if service
                                                          else ""), traced)
    step.auth = any(kind == "forwardAuth" for _, kind in _flat(config,
                                                                 router.get("middlewares")))
    if children:
        step.auth = step.auth or _auth_below(route, config, set())
    if detailed and children:
        _instrument_children(step, route, config, set())
        # the root's own children point to it as None
        for key, info in list(step.routes.items()):
            if info[4] == id(route):
                step.routes[key] = info[:4] + (None,)
    route.middlewares = (step,) + tuple(route.middlewares or ())
    if route.after is not None:
        route.after = (None,) + tuple(route.after)


# ---- the worker's side: spans out of finished exchanges -------------------------------------

def _decode(b):
    return b.decode("latin-1") if b is not None else ""


def redact_query(query, safe):
    """Traefik safeURL: every query parameter's value is REDACTED unless named in
    safeQueryParams, re-encoded as Go's url.Values.Encode (keys sorted)."""
    if not query:
        return ""
    values = {}
    for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        values.setdefault(k, []).append(v)
    out = []
    for k in sorted(values):
        for v in (values[k] if k in safe else ("REDACTED",)):
            out.append(quote_plus(k) + "=" + quote_plus(v))
    return "&".join(out)


def _status(code, limit):
    # Traefik serverStatus (limit 500) / clientStatus (400): (is error, description)
    if code < 100 or code >= 600:
        return True, "Invalid HTTP status code %d" % code
    return code >= limit, ""


def _head_values(head, names):
    """{canonical name: [values]} of ``names`` in a serialized response head."""
    if not head or not names:
        return {}
    want = {n.lower().encode("latin-1"): n for n in names}
    end = head.find(b"\r\n\r\n")
    out = {}
    for line in (head if end < 0 else head[:end]).split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        canon = want.get(name.strip().lower()) if sep else None
        if canon is not None:
            out.setdefault(canon, []).append(value.strip(b" \t").decode("latin-1"))
    return out


class Exporter:
    """The worker's observer: ``observe(ex)`` once per finished exchange. Set up after the
    fork (the SDK's export thread must belong to the worker)."""

    def __init__(self, conf, version="", metrics=None):
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
        from opentelemetry.trace.status import Status, StatusCode
        self.conf = conf
        # the metrics levels on (static metrics): Traefik wraps its entry point, router and
        # service metrics handlers in a ``Metrics`` span each in detailed mode
        self.metric_levels = frozenset()
        if metrics is not None:
            from .metrics import recording
            self.metric_levels = frozenset(recording(metrics)[2])
        self.bound = sample_bound(conf.sample_rate)
        self.safe = frozenset(conf.safe_query_params)
        self.req_headers = tuple((h.lower().encode("latin-1"), "http.request.header." +
                                  h.lower()) for h in conf.captured_request_headers
                                 if h.lower() != "user-agent")
        self.resp_headers = conf.captured_response_headers
        attrs = {"service.name": conf.service_name, "service.version": version,
                 "host.name": socket.gethostname(), "process.pid": os.getpid()}
        attrs.update(dict(conf.resource_attributes))
        # Traefik: the detectors, then serviceName/version, then resourceAttributes, then
        # OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME win
        self.resource = _resource_class(Resource)(
            Resource.create(attrs).merge(OTELResourceDetector().detect()))
        self.scope = InstrumentationScope("github.com/traefik/traefik", version)
        self.processor = BatchSpanProcessor(_span_exporter(conf))
        self._Span = ReadableSpan
        self._Ctx = SpanContext
        self._flags = TraceFlags(TraceFlags.SAMPLED)
        self._TraceState = TraceState
        self._SERVER, self._CLIENT, self._INTERNAL = (SpanKind.SERVER, SpanKind.CLIENT,
                                                      SpanKind.INTERNAL)
        self._ok = Status(StatusCode.UNSET)
        self._error = lambda d: Status(StatusCode.ERROR, d or None)

    def close(self):
        """At exit: what is queued is exported (bounded by the SDK's export timeout)."""
        try:
            self.processor.shutdown()
        except Exception:
            pass

    def observe(self, ex):
        v = ex.vars
        t = v.get("trace") if v is not None else None
        if t is None:
            if ex.route is not None or ex.status != 404 or not ex.ep.traced:
                return
            # Traefik's entry point default handler (no router took it) traces the 404,
            # with the entry point's observability.tracing switch
            trace_id, parent_id, sampled, state, _ = decide(ex.req, self.bound)
            if not sampled:
                return
            t = Trace(trace_id, parent_id, 0, True, state, None, ex.path, ex.query)
        elif not t.sampled:
            return
        self._spans(ex, t)

    def _spans(self, ex, t):
        # monotonic -> epoch nanoseconds, once per exchange
        off = time.time_ns() - int(time.monotonic() * 1e9)

        def ns(mono):
            return int(mono * 1e9) + off

        state = self._TraceState.from_header([t.state.decode("latin-1")]) if t.state \
            else self._TraceState()
        trace_id = t.trace_id
        Ctx = self._Ctx
        flags = self._flags
        parent = Ctx(trace_id, t.parent_id, True, flags, state) if t.parent_id else None
        start = ns(ex.started)
        end = ns(ex.ended)
        req = ex.req
        out = []

        def span(name, kind, span_id, parent_ctx, s, e, attrs, status=None):
            ctx = Ctx(trace_id, span_id, False, flags, state)
            out.append(self._Span(name=name, context=ctx, parent=parent_ctx,
                                  resource=self.resource, attributes=attrs, kind=kind,
                                  status=status or self._ok, start_time=s, end_time=max(s, e),
                                  instrumentation_scope=self.scope))
            return ctx

        attrs = self._server_attrs(ex, t)
        attrs.update(self._resp_attrs(ex.status, ex.resp_head))
        server = span(_decode(req.method), self._SERVER, _getrandbits(64) or 1, parent,
                      start, end, attrs, self._resp_status(ex.status, 500))
        above = server
        step = t.step
        reached = bool(ex.origin_started) and ex.server is not None
        if step is not None and step.detailed:
            above = self._detailed(ex, t, step, span, ns, above, end, reached)
        elif t.auth:
            # forwardAuth's AuthRequest is traced in minimal mode too (TracingEnabled)
            self._auth_spans(t, span, ns, above, set(t.auth))
        if reached and t.client_id:
            self._client_span(ex, span, ns, above, t.client_id, ex.origin_started, ex.ended,
                              ex.origin_status or ex.status, ex.origin_head, ex.server)
        for s in out:
            self.processor.on_end(s)

    def attempt(self, ex, status):
        """An attempt the retry middleware gave up (pyroute.middlewares.retry.observers):
        kept for its spans (Traefik: a Retry span per attempt, the Service and ReverseProxy
        spans of that attempt under it)."""
        v = ex.vars
        t = v.get("trace") if v is not None else None
        if t is None or t.marks is None:
            return
        if t.attempts is None:
            t.attempts = []
        t.attempts.append((dict(t.marks), ex.server, ex.origin_started, ex.env.now, status))

    def _detailed(self, ex, t, step, span, ns, above, end, reached):
        """Router, middleware, child Router, Retry and Service spans, each with its own start
        (when the request reached it: the _Mark steps), ending with the exchange; returns the
        span the ReverseProxy span goes under."""
        INTERNAL = self._INTERNAL
        levels = self.metric_levels
        marks = t.marks or {}
        if "entrypoint" in levels:
            above = self._metrics_span(span, above, "metrics-entrypoint", ns(ex.started), end)
        # the routers the request went through: the root, then the child routers down to
        # the one whose service answered (ex.route)
        layers = [(step.router, step.rule, step.service, step.middlewares, t.start)]
        chain, at = [], step.routes.get(id(ex.route))
        while at is not None:
            chain.append(at)
            at = step.routes.get(at[4]) if at[4] is not None else None
        for name, rule, service, traced, _parent in reversed(chain):
            s = marks.get((name, "start"))
            if s is None:
                break
            layers.append((name, rule, service, traced, s))
        auth = set(t.auth or ())
        attempts = t.attempts or ()
        svc_start = ex.origin_started if reached else 0.0
        last_at = t.start
        for li, (name, rule, service, traced, s) in enumerate(layers):
            last_at = max(last_at, s)
            above = span("Router", INTERNAL, _getrandbits(64) or 1, above, ns(s), end,
                         {"traefik.service.name": service, "traefik.router.name": name,
                          "http.route": rule})
            if "router" in levels:
                above = self._metrics_span(span, above, "metrics-router", ns(s), end)
            deeper = li + 1 < len(layers)
            for mi, (type_name, mname, key) in enumerate(traced):
                m = marks.get(key)
                if m is None:
                    # a middleware compiled away (static header edits): it ran, at the time
                    # the next one was reached, if the request went further
                    later = [marks[k] for _, _, k in traced[mi + 1:] if k in marks]
                    if later:
                        m = min(later)
                    elif deeper or reached:
                        m = svc_start if not deeper else layers[li + 1][4]
                    else:
                        break
                m = max(m, last_at)
                last_at = m
                if type_name == "Retry" and attempts:
                    above = self._retry_spans(ex, span, ns, above, mname, m, end, attempts,
                                              traced[mi + 1:])
                    continue
                above = span(type_name, INTERNAL, _getrandbits(64) or 1, above, ns(m), end,
                             {"traefik.middleware.name": mname})
                if type_name == "ForwardAuth" and auth:
                    self._auth_spans(t, span, ns, above, auth, m)
        if reached:
            s = ns(max(svc_start, last_at))
            above = span("Service", INTERNAL, _getrandbits(64) or 1, above, s, end,
                         {"traefik.service.name": getattr(ex.server, "service_name", "")})
            if "service" in levels:
                above = self._metrics_span(span, above, "metrics-service", s, end)
        return above

    def _metrics_span(self, span, above, name, s, e):
        # pkg/middlewares/metrics: typeName Metrics, wrapped by observability.WrapMiddleware
        return span("Metrics", self._INTERNAL, _getrandbits(64) or 1, above, s, e,
                    {"traefik.middleware.name": name})

    def _retry_spans(self, ex, span, ns, above, name, at, end, attempts, after):
        """Traefik's retry (pkg/middlewares/retry): a ``Retry`` span per attempt, the next
        one starting when the previous ended, ``http.resend_count`` from the second; each
        given-up attempt's middlewares after it, Service and ReverseProxy spans under it.
        Returns the last attempt's span (the final one's spans go under it)."""
        INTERNAL = self._INTERNAL
        s = at
        for n, (amarks, server, origin, given_up, status) in enumerate(attempts):
            attrs = {"traefik.middleware.name": name}
            if n:
                attrs["http.request.resend_count"] = n
            r = span("Retry", INTERNAL, _getrandbits(64) or 1, above, ns(s), ns(given_up),
                     attrs)
            under = r
            for k, (type_name, mname, key) in enumerate(after):
                m = amarks.get(key)
                if m is None or m < s:
                    # compiled away (static edits): it ran if the attempt went further
                    later = [amarks[x] for _, _, x in after[k + 1:]
                             if x in amarks and amarks[x] >= s]
                    m = min(later) if later else (origin if server is not None and origin
                                                  else None)
                    if m is None:
                        break
                under = span(type_name, INTERNAL, _getrandbits(64) or 1, under,
                             ns(max(m, s)), ns(given_up), {"traefik.middleware.name": mname})
            if server is not None and origin:
                under = span("Service", INTERNAL, _getrandbits(64) or 1, under, ns(origin),
                             ns(given_up), {"traefik.service.name":
                                            getattr(server, "service_name", "")})
                if "service" in self.metric_levels:
                    under = self._metrics_span(span, under, "metrics-service", ns(origin),
                                               ns(given_up))
                self._client_span(ex, span, ns, under, _getrandbits(64) or 1, origin,
                                  given_up, status, None, server)
            s = given_up
        attrs = {"traefik.middleware.name": name,
                 "http.request.resend_count": len(attempts)}
        return span("Retry", INTERNAL, _getrandbits(64) or 1, above, ns(s), end, attrs)

    def _auth_spans(self, t, span, ns, above, auth, after=None):
        # forwardAuth's AuthRequest CLIENT span(s) (pkg/middlewares/auth/forward.go): from
        # the auth request's start to its answer handled
        for item in sorted(auth, key=lambda a: a[1]):
            span_id, s, e, status, url = item
            if after is not None and s < after:
                continue
            auth.discard(item)
            u = urlsplit(url)
            port = u.port or (443 if u.scheme == "https" else 80)
            attrs = {"http.request.method": "GET", "url.full": url, "url.scheme": u.scheme,
                     "network.peer.address": u.hostname or "", "network.peer.port": port,
                     "server.address": u.hostname or "", "server.port": port}
            if status > 0:
                attrs["http.response.status_code"] = status
            # no answer (refused, timed out): Traefik's span ends without a response
            span("AuthRequest", self._CLIENT, span_id, above, ns(s), ns(e), attrs,
                 self._resp_status(status, 400) if status > 0 else None)
            if after is not None:
                break

    def _client_span(self, ex, span, ns, above, span_id, s, e, code, head, server):
        attrs = self._client_attrs(ex, server)
        attrs.update(self._resp_attrs(code, head))
        span("ReverseProxy", self._CLIENT, span_id, above, ns(s), ns(e), attrs,
             self._resp_status(code, 400))

    def _resp_status(self, code, limit):
        err, desc = _status(code, limit)
        return self._error(desc) if err else self._ok

    def _resp_attrs(self, code, head):
        attrs = {}
        if code > 0:
            attrs["http.response.status_code"] = code
        for name, values in _head_values(head, self.resp_headers).items():
            attrs["http.response.header." + name.lower()] = tuple(values)
        return attrs

    def _req_headers(self, req, attrs):
        for lname, key in self.req_headers:
            values = [_decode(val) for n, val in req.headers if n.lower() == lname]
            if values:
                attrs[key] = tuple(values)

    def _server_attrs(self, ex, t):
        # Traefik CaptureServerRequest
        req = ex.req
        if req.framing == 1:
            body = req.content_length
        elif req.framing == 2:
            body = -1                    # Go's ContentLength for a chunked body: unknown
        else:
            body = 0
        proto = None
        if ex.trusted:
            proto = req.header(b"x-forwarded-proto")
        if not proto:
            # Traefik's forwarded-headers middleware ran before: it set the scheme
            ws = req.upgrade is not None and b"websocket" in req.upgrade.lower()
            proto = (b"wss" if ex.tls else b"ws") if ws else (b"https" if ex.tls else b"http")
        peer = _decode(ex.remote_ip)
        port = getattr(ex.conn, "remote_port", 0)
        path = t.path if t.path is not None else (req.path or b"")
        attrs = {
            "entry_point": ex.ep.name,
            "http.request.method": _decode(req.method),
            "network.protocol.version": "1.0" if req.version == 10 else "1.1",
            "http.request.body.size": body,
            "url.path": unquote_to_bytes(path).decode("utf-8", "replace"),
            "url.query": redact_query(t.query, self.safe),
            "url.scheme": _decode(proto),
            "user_agent.original": _decode(req.header(b"user-agent")),
            "server.address": _decode(req.host),
            "network.peer.address": peer,
            "client.address": peer,
            "client.port": port,
            "network.peer.port": port,
        }
        self._req_headers(req, attrs)
        return attrs

    def _client_attrs(self, ex, server):
        # Traefik CaptureClientRequest, on the request as it left for the backend
        req = ex.req
        url = urlsplit(getattr(server, "url", "") or "")
        scheme = url.scheme or "http"
        host = url.hostname or ""
        port = url.port or (443 if scheme == "https" else 80)
        query = redact_query(ex.query, self.safe)
        full = "%s://%s%s%s" % (scheme, url.netloc, _decode(ex.path or b"/"),
                                "?" + query if query else "")
        attrs = {
            "http.request.method": _decode(req.method),
            "network.protocol.version": "1.0" if req.version == 10 else "1.1",
            "url.full": full,
            "url.scheme": scheme,
            "user_agent.original": _decode(req.header(b"user-agent")),
            "network.peer.address": host,
            "network.peer.port": port,
            "server.address": host,
            "server.port": port,
        }
        self._req_headers(req, attrs)
        return attrs


def _resource_class(Resource):
    class _Resource(Resource):
        # the same attributes for every span of the worker: the exporter's encoder groups
        # spans by resource, and Resource.__hash__ JSON-dumps the attributes on every call
        def __init__(self, base):
            super().__init__(base.attributes, base.schema_url)
            self._hash = super().__hash__()

        def __hash__(self):
            return self._hash

        def __eq__(self, other):
            return other is self or super().__eq__(other)
    return _Resource


def _span_exporter(conf):
    """The OTLP exporter Traefik's setupHTTPExporter / setupGRPCExporter would build (gzip)."""
    tls = conf.tls or {}
    headers = dict(conf.headers)
    if conf.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression
        creds = None
        if not conf.insecure:
            def read(k):
                if not tls.get(k):
                    return None
                with open(tls[k], "rb") as f:
                    return f.read()
            creds = grpc.ssl_channel_credentials(read("ca"), read("key"), read("cert"))
        return OTLPSpanExporter(endpoint=conf.endpoint, insecure=conf.insecure,
                                credentials=creds, headers=headers or None,
                                compression=Compression.Gzip)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http import Compression
    endpoint = conf.endpoint
    if not urlsplit(endpoint).path:
        endpoint += "/v1/traces"         # otlptracehttp's default URL path
    session = None
    if tls:
        import requests

        class _Session(requests.Session):
            # the tls section decides what is trusted: requests would let REQUESTS_CA_BUNDLE
            # / CURL_CA_BUNDLE replace it (Go's CreateTLSConfig uses only the given CA)
            def merge_environment_settings(self, url, proxies, stream, verify, cert):
                out = super().merge_environment_settings(url, proxies, stream, verify, cert)
                out["verify"] = self.verify
                return out
        session = _Session()
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers or None,
                                certificate_file=tls.get("ca") or None,
                                client_key_file=tls.get("key") or None,
                                client_certificate_file=tls.get("cert") or None,
                                compression=Compression.Gzip, session=session)
    if tls.get("insecureSkipVerify"):
        session.verify = False           # set by the exporter's transport: overridden here
    return exporter


def missing_packages():
    """The message to report when tracing is configured and the SDK is not installed."""
    import importlib.util
    for mod in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http",
                "opentelemetry.exporter.otlp.proto.grpc"):
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return ("tracing needs the OpenTelemetry packages (%s is missing): pip install "
                    "'pyroute-proxy[tracing]'; no spans are exported" % mod)
    return None
