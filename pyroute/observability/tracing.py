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
  finished, sampled exchange it builds the spans retroactively, with the exchange's own
  timestamps, and hands them to the SDK's BatchSpanProcessor (its thread exports them). A
  request not sampled returns at the first test.

The span tree is Traefik's: the entry point's SERVER span (named after the method), and
the ``ReverseProxy`` CLIENT span to the backend; with ``traceVerbosity: detailed`` the
``Router`` span, one span per traced middleware (Traefik's typeName) and the ``Service``
span lie between them.
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
                 "query")

    def __init__(self, trace_id, parent_id, client_id, sampled, state, step, path, query):
        self.trace_id = trace_id
        self.parent_id = parent_id      # the client's span (remote parent), 0: a new trace
        self.client_id = client_id      # the ReverseProxy span: the backend's parent
        self.sampled = sampled
        self.state = state              # the client's tracestate (bytes), or None
        self.step = step                # the TraceStart of the router (its names, verbosity)
        self.path = path                # the path and query the entry point saw (before the
        self.query = query              # middlewares rewrote them): the SERVER span's


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
    in C, ``sampled`` called for a sampled request only."""
    __slots__ = ("detailed", "router", "rule", "service", "middlewares")
    static = False

    def __init__(self, bound, detailed, router, rule, service, middlewares):
        self.bound = bound
        self.detailed = detailed
        self.router = router            # Traefik's traefik.router.name
        self.rule = rule                # http.route
        self.service = service          # traefik.service.name (``<router>-muxer``: a parent)
        self.middlewares = middlewares  # ((typeName, qualified name), ...) traced, in order

    def sampled(self, ex, trace_id, parent_id, client_id, state):
        v = ex.vars
        if v is None:
            v = ex.vars = {}
        v["trace"] = Trace(trace_id, parent_id, client_id, True, state, self, ex.path,
                           ex.query)


def _middleware_kinds(config, names, seen=()):
    """((typeName, qualified name), ...) of a router's middlewares as Traefik wraps them:
    a chain's members in its place (the chain itself is not traced)."""
    from ..manifests import qualified
    specs = config.dynamic.get("http", {}).get("middlewares", {})
    out = []
    for name in names or ():
        key = qualified(name)
        spec = specs.get(key) or {}
        kind = next((k for k in spec if k not in ("status", "error")), None)
        if kind == "chain" and key not in seen:
            out.extend(_middleware_kinds(config, (spec.get("chain") or {}).get(
                "middlewares"), seen + (key,)))
        elif kind in TYPE_NAMES:
            out.append((TYPE_NAMES[kind], key))
    return out


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
    step = TraceStart(sample_bound(conf.sample_rate), detailed, rname, router.get("rule") or "",
                      "%s-muxer" % rname if children else (qualified(service) if service
                                                          else ""),
                      tuple(_middleware_kinds(config, router.get("middlewares"))))
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

    def __init__(self, conf, version=""):
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
        from opentelemetry.trace.status import Status, StatusCode
        self.conf = conf
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
            if ex.route is not None or ex.status != 404:
                return
            # Traefik's entry point default handler (no router took it) traces the 404
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
        if step is not None and step.detailed:
            above = span("Router", self._INTERNAL, _getrandbits(64) or 1, above, start, end,
                         {"traefik.service.name": step.service,
                          "traefik.router.name": step.router, "http.route": step.rule})
            if ex.origin_started:
                # the request reached the service: it passed every middleware
                for type_name, name in step.middlewares:
                    above = span(type_name, self._INTERNAL, _getrandbits(64) or 1, above,
                                 start, end, {"traefik.middleware.name": name})
                if ex.server is not None:
                    above = span("Service", self._INTERNAL, _getrandbits(64) or 1, above,
                                 ns(ex.origin_started), end,
                                 {"traefik.service.name":
                                  getattr(ex.server, "service_name", "")})
        if ex.origin_started and ex.server is not None and t.client_id:
            code = ex.origin_status or ex.status
            attrs = self._client_attrs(ex)
            attrs.update(self._resp_attrs(code, ex.origin_head))
            span("ReverseProxy", self._CLIENT, t.client_id, above, ns(ex.origin_started),
                 end, attrs, self._resp_status(code, 400))
        for s in out:
            self.processor.on_end(s)

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

    def _client_attrs(self, ex):
        # Traefik CaptureClientRequest, on the request as it left for the backend
        req = ex.req
        url = urlsplit(getattr(ex.server, "url", "") or "")
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
