"""Compiles a RuntimeConfig into what a worker walks per request (an immutable Snapshot).

Per entry point: a RouteTable (pyroute._engine.rules) over the enabled plain routers attached
to it, another over its TLS routers, the TLS configuration (pyroute.tls: option contexts,
certificates, Host -> option association), and per route its middleware chain and service
tree — or, for a parent router of multi-layer routing, the RouteTable of its children
(``ChildRoutes``). Services pick a ``Server``; servers share connection pools across reloads
(``Pools``), so a reload never drops idle backend connections to servers that stay. Anything pyroute cannot serve (an unknown middleware kind, a service kind
or backend scheme not implemented yet) disables the routers that use it, with a ConfigError
naming the router and the reason; the rest is served.
"""
import ipaddress
import socket
from urllib.parse import urlsplit

from .._engine.balance import HRW, P2C, WRR, Sticky, cookie_name, sticky_value
from .._engine.http1 import Forwarder
import socket as _socket
from ..errors import ConfigError, RuleSyntaxError
from .. import middlewares as mw_registry
from .. import tls
from ..manifests import qualified
from ..static import UNDERSCORE_STRATEGIES, parse_duration
from .mirror import Mirroring
from ..observability import tracing
from .status import CheckedBalancer, CheckedFailover, register_child
from .normalize import Normalizer
from .._engine.conn import EntryTable, Pool, RouteTarget, ServerTarget
from .._engine.h2up import H2Pool
from .._engine.exchange import WAIT, apply_edits

DEFAULT_TRANSPORT = "default@internal"   # the static serversTransport (Traefik's internal one)
DEFAULT_DIAL_TIMEOUT = 30.0        # Traefik ServersTransport forwardingTimeouts defaults
DEFAULT_IDLE_CONN_TIMEOUT = 90.0
DEFAULT_MAX_IDLE = 200             # Traefik: maxIdleConnsPerHost 200


class Server(ServerTarget):
    __slots__ = ("url", "service_name", "addr")

    def __init__(self, url, pool, host_header, pass_host, service_name="", addr=""):
        self.url = url
        self.service_name = service_name   # the access log's ServiceName (qualified)
        self.addr = addr                   # its ServiceAddr: the URL's host[:port]
        self.pool = pool
        self.host_header = host_header     # bytes "host:port" for passHostHeader: false
        self.pass_host = pass_host


class LoadBalancer:
    """A loadBalancer service: WRR (Traefik's default) or p2c over its servers (``strategy:
    hrw`` is ``HighestRandomWeight``)."""
    __slots__ = ("servers", "wrr", "p2c", "sticky", "set_cookies", "single", "p2c_up")

    def __init__(self, servers, weights, strategy, sticky, set_cookies, fenced=()):
        self.servers = servers
        self.wrr = WRR(weights) if strategy != "p2c" else None
        self.p2c = P2C(len(servers)) if strategy == "p2c" else None
        self.sticky = sticky
        self.set_cookies = set_cookies
        # fenced servers (terminating endpoints): sticky sessions only. WRR: weight 0 (never
        # picked); p2c: marked down, picks skip them
        self.p2c_up = bool(fenced) and self.p2c is not None
        if self.p2c_up:
            for i in fenced:
                self.p2c.set_up(i, False)
        # one server, no stickiness, no p2c bookkeeping: pick is a constant
        self.single = servers[0] if (len(servers) == 1 and weights[0] != 0 and sticky is None
                                     and self.p2c is None) else None

    def pick(self, conn):
        if self.single is not None:
            return self.single
        i = -1
        if self.sticky is not None:
            cookie = conn.req.header(b"cookie")
            if cookie:
                i, rewrite = self.sticky.find(cookie)
                if i >= 0 and rewrite:
                    conn.resp_extra = (conn.resp_extra or []) + [self.set_cookies[i]]
        if i < 0:
            if self.p2c is not None:
                i = self.p2c.next_up() if self.p2c_up else self.p2c.next()
                if i < 0:
                    return None
                conn.service = self
            else:
                i = self.wrr.next()
            if i < 0:
                return None
            if self.sticky is not None:
                conn.resp_extra = (conn.resp_extra or []) + [self.set_cookies[i]]
        elif self.p2c is not None:
            conn.service = self
        conn.server_index = i
        return self.servers[i]

    def done(self, conn):
        if self.p2c is not None:
            self.p2c.done(conn.server_index)


class Weighted:
    """A weighted TraefikService: WRR over child services (each a service tree)."""
    __slots__ = ("children", "wrr", "sticky", "set_cookies")

    def __init__(self, children, weights, sticky, set_cookies):
        self.children = children
        self.wrr = WRR(weights)
        self.sticky = sticky
        self.set_cookies = set_cookies

    def pick(self, conn):
        i = -1
        if self.sticky is not None:
            cookie = conn.req.header(b"cookie")
            if cookie:
                i, rewrite = self.sticky.find(cookie)
                if i >= 0 and rewrite:
                    conn.resp_extra = (conn.resp_extra or []) + [self.set_cookies[i]]
        if i < 0:
            i = self.wrr.next()
            if i < 0:
                return None
            if self.sticky is not None:
                conn.resp_extra = (conn.resp_extra or []) + [self.set_cookies[i]]
        return self.children[i].pick(conn)


class HighestRandomWeight:
    """Traefik's hrw balancer (a loadBalancer with ``strategy: hrw``, or a
    ``highestRandomWeight`` TraefikService): the client's IP (the connection's peer, Traefik's
    RemoteAddrStrategy) always picks the same child, weighted (engine ``balance.HRW``).
    Traefik's hrw takes no sticky cookie."""
    __slots__ = ("children", "hrw", "servers")

    def __init__(self, children, names, weights, servers=False):
        self.children = children
        self.hrw = HRW(names, weights)
        self.servers = servers          # children are Servers (a load balancer), not services

    def pick(self, conn):
        i = self.hrw.next(conn.remote_ip)
        if i < 0:
            return None
        if self.servers:
            return self.children[i]
        return self.children[i].pick(conn)


class Failover:
    """A failover TraefikService whose main service reports no health-check status: the main
    service while it has an available server, else the fallback (with neither, 503). Traefik
    refuses such a failover (its main must be a healthcheck.StatusUpdater); pyroute keeps
    serving it this way. A main service with health checks gets ``status.CheckedFailover``,
    which switches on the main's status as Traefik does."""
    __slots__ = ("main", "fallback")

    def __init__(self, main, fallback):
        self.main = main
        self.fallback = fallback

    def pick(self, conn):
        server = self.main.pick(conn)
        if server is None:
            server = self.fallback.pick(conn)
        return server


class Unavailable:
    """A load balancer without servers (an empty Service inside a failover): never picks."""
    __slots__ = ()

    def pick(self, conn):
        return None


class NoopAnswer:
    """Traefik's ``noop@internal`` service (the entry point redirection routers' service):
    ``rw.WriteHeader(http.StatusTeapot)``, reached only when the redirection does not apply."""
    __slots__ = ()
    static = False

    def on_request(self, conn):
        from .responses import status_line
        return status_line(418) + b"Content-Length: 0\r\n\r\n"


class Route(RouteTarget):
    """A router compiled: request-phase middlewares, the service tree, the head Forwarder.

    Multi-layer routing (Traefik v3.6 ``parentRefs``): a router with child routers has no
    service but ``children``, the table its children are matched in (``ChildRoutes``) once its
    own middlewares ran; ``inherited`` is the chain of the routers above a child, whose static
    header edits its Forwarder applies too (their request-phase middlewares ran already).
    ``chain``: the whole chain (inherited + own), which service-level middlewares extend
    (``Chained``).

    Two ways to run the response phase (pyroute/middlewares: the contract):
    - a chain whose middlewares only have edits fixed at load ("static") compiles them into
      the Forwarder: nothing runs per response; answers of request-phase middlewares get the
      edits of the static ones before them (``_Answering``), pyroute's own errors the whole
      chain's (``error_edits``);
    - a chain with a response-phase middleware (``on_response``) or a completion hook
      (``on_complete``) runs its response phase per exchange: the static middlewares' response
      edits become response-phase steps at their place in the chain (so nested order holds:
      innermost first), ``after[i]`` are the hooks of ``middlewares[i]``, registered on the
      exchange when the request passes it (``engine/exchange.pyx``)."""
    __slots__ = ("name", "chain", "server_name", "tls", "phased", "obs", "log_name",
                 "access_log")

    def __init__(self, name, chain, service, server_name, tls=False, inherited=(),
                 children=None):
        self.name = name
        # what pyroute.observability.metrics.Recorder reads (``route_obs``); None: not metered
        self.obs = None
        # the access log: RouterName ("parent -> child" under multi-layer routing, as
        # Traefik's ConcatFieldHandler) and whether this router's exchanges are logged
        # (observability.accessLogs of the root router; @internal services: addInternals)
        self.log_name = name
        self.access_log = True
        self.children = children
        full = list(inherited) + list(chain)
        self.chain = full
        self.server_name = server_name
        self.tls = tls
        self.phased = _phased(full)
        inherited_phased = _phased(inherited)
        if self.phased:
            steps = _steps(full, len(inherited))
            self.middlewares = tuple(m for m, _ in steps)
            self.after = tuple(h for _, h in steps)
            if not any(h is not None for h in self.after):
                self.after = None
            # routers above that ran in static mode compiled their response edits into
            # their Forwarder; this one has none, so they become the outermost steps
            self.prefix_responders = () if inherited_phased else tuple(
                h[0] for _, h in _steps(list(inherited), 0) if h is not None)
            self.error_edits = None
        else:
            self.middlewares = _answering(full, len(inherited))
            self.after = None
            self.prefix_responders = ()
            sets, removes = _response_edits(full)
            self.error_edits = (sets, removes) if sets or removes else None
        self.service = service
        # a plain one-server service: the connection skips the pick call
        self.single = getattr(service, "single", None)
        self.forwarder = _forwarder(full, server_name, tls, responses=not self.phased)


def _phased(chain):
    """Whether ``chain`` has a middleware with a per-exchange response phase or hook."""
    return any(getattr(m, "on_response", None) is not None
               or getattr(m, "on_complete", None) is not None for m in chain)


class _StaticResponse:
    """A static middleware's response edits as a response-phase step (phased chains)."""
    __slots__ = ("sets", "removes")
    static = False

    def __init__(self, sets, removes):
        self.sets = sets
        self.removes = removes

    def on_request(self, ex):
        return None

    def on_response(self, ex, head):
        for name in self.removes:
            head.remove(name)
        for name, value in self.sets:
            head.set(name, value)


def _steps(chain, start):
    """(request-phase object, (on_response, on_complete) or None) for ``chain[start:]`` of a
    phased chain: static middlewares contribute their response edits as a step."""
    out = []
    for m in chain[start:]:
        on_response = getattr(m, "on_response", None)
        on_complete = getattr(m, "on_complete", None)
        hooks = (on_response, on_complete) if on_response or on_complete else None
        if getattr(m, "on_request", None) is not None or hooks is not None:
            out.append((m if getattr(m, "on_request", None) is not None else _PASS, hooks))
        if m.static:
            # after the middleware's own step: registered only once the request passed it
            # (its own answer, a CORS preflight, does not get them, as in Traefik)
            sets, removes = [], []
            m.compile_edits([], [], sets, removes)
            if sets or removes:
                step = _StaticResponse(_last_wins(sets), removes)
                out.append((step, (step.on_response, None)))
    return out


class _Pass:
    __slots__ = ()
    static = False

    def on_request(self, ex):
        return None


_PASS = _Pass()


def _forwarder(chain, server_name, tls, responses=True):
    """The head Forwarder of a chain: its static middlewares' header edits compiled in
    (``responses`` False: the request edits only; the response phase does the rest).

    Each middleware's edits apply to what the one before left, as Traefik's nested handlers
    do: request edits in chain order, response edits innermost first; so a later set wins,
    and a later "" removes what an earlier one set."""
    req = {}
    host, omit_xff = None, False
    for m in chain:
        if m.static:
            sets, removes = [], []
            m.compile_edits(sets, removes, [], [])
            _fold(req, sets, removes)
            # headers middleware: Host sets req.Host (the innermost wins, it runs last);
            # X-Forwarded-For "" sets the header to nil, a later value sets it again
            if getattr(m, "host", None) is not None:
                host = m.host
            if getattr(m, "omit_xff", False):
                omit_xff = True
            elif any(n.lower() == b"x-forwarded-for" for n, _ in getattr(m, "request", ())):
                omit_xff = False
    resp_set, resp_remove = _response_edits(chain) if responses else ([], [])
    return Forwarder(server_name=server_name, tls=tls, forwarded=True,
                     request_set=[(n, v) for n, v in req.values() if v is not None],
                     request_remove=[n for n, v in req.values() if v is None],
                     response_set=resp_set, response_remove=resp_remove,
                     request_host=host, omit_forwarded_for=omit_xff)


def _fold(edits, sets, removes):
    # lower-case name -> (name, value), None for removed: the last edit of a name wins
    for name in removes:
        edits[name.lower()] = (name, None)
    for name, value in sets:
        edits[name.lower()] = (name, value)


def _response_edits(chain):
    """(sets, removes) of the static middlewares of ``chain``, innermost first: the
    outermost's set wins, its "" removes what an inner one set."""
    edits = {}
    for m in reversed(chain):
        if m.static:
            sets, removes = [], []
            m.compile_edits([], [], sets, removes)
            _fold(edits, sets, removes)
    return ([(n, v) for n, v in edits.values() if v is not None],
            [n for n, v in edits.values() if v is None])


class _Answering:
    """A request-phase middleware behind static ones with response edits: its answer (403,
    redirect, 400) passes through their response phase, as Traefik's wrapped
    ResponseWriters do (innermost first, outermost last)."""
    __slots__ = ("mw", "edits")
    static = False

    def __init__(self, mw, edits):
        self.mw = mw
        self.edits = edits          # [(sets, removes)], innermost first

    def on_request(self, conn):
        answer = self.mw.on_request(conn)
        if answer is WAIT:
            # it answers later (ex.answer: a bcrypt check, a sub-request): that answer goes
            # out through the response phase, where these edits wait for it
            responders = conn.responders
            if responders is None:
                conn.responders = [self._edit_answer]
            else:
                responders.append(self._edit_answer)
        elif answer is not None:
            for sets, removes in self.edits:
                answer = apply_edits(answer, sets, removes)
        return answer

    def _edit_answer(self, ex, head):
        # an answer of pyroute's (a body of its own); the backend's response got these edits
        # from the route's Forwarder already
        if head.body is None:
            return
        for sets, removes in self.edits:
            for name in removes:
                head.remove(name)
            for name, value in sets:
                head.set(name, value)


def _answering(chain, start):
    """The request-phase middlewares of ``chain[start:]``, each wrapped in ``_Answering``
    when static middlewares before it edit responses."""
    out = []
    for i in range(start, len(chain)):
        m = chain[i]
        if m.static and getattr(m, "on_request", None) is None:
            continue
        edits = []
        for outer in reversed(chain[:i]):
            if outer.static:
                sets, removes = [], []
                outer.compile_edits([], [], sets, removes)
                if sets or removes:
                    edits.append((sets, removes))
        out.append(_Answering(m, edits) if edits else m)
    return tuple(out)


class MiddlewareAnswer(ServerTarget):
    """What ``pick`` returns when a service-level middleware answered (``pool`` None): the
    connection sends ``answer`` as it sends a router middleware's answer."""
    __slots__ = ("answer",)

    def __init__(self, answer):
        self.pool = None
        self.answer = answer


class Chained:
    """A service with service-level middlewares (Traefik: ``services[].middlewares``, and
    those of TraefikService children): they run in front of the service's handler, after
    the router's chain (and for a weighted child, when that child is picked). Their request
    phase runs here; their header edits and response phase through a Route derived once per
    route that reaches this service (the route's chain + this one), which becomes the
    connection's route for the rest of the exchange."""
    __slots__ = ("inner", "chain", "derived")

    def __init__(self, inner, chain):
        self.inner = inner
        self.chain = list(chain)
        self.derived = {}           # route (RouteTarget) -> derived Route

    # health-check status travels through the middlewares (Traefik statusUpdaterHandler)
    @property
    def wants(self):
        return getattr(self.inner, "wants", False)

    @property
    def register(self):
        return getattr(self.inner, "register", None)

    def pick(self, ex):
        route = ex.route
        derived = self.derived.get(route)
        if derived is None:
            derived = Route(route.name, self.chain, None, route.server_name, route.tls,
                            inherited=route.chain)
            derived.log_name = route.log_name
            derived.access_log = route.access_log
            self.derived[route] = derived
        extra = ex.set_headers
        saved = (route, ex.path, ex.query, extra, len(extra) if extra is not None else 0,
                 ex.responders, ex.completers, self)
        ex.service_start = saved         # a retry in this chain goes back to here
        if derived.prefix_responders:
            ex.responders = list(derived.prefix_responders) + (ex.responders or [])
        elif ex.responders is not None:
            ex.responders = list(ex.responders)
        if ex.completers is not None:
            ex.completers = list(ex.completers)
        return self._run(ex, derived, 0, saved)

    def _run(self, ex, derived, start, saved):
        middlewares, after = derived.middlewares, derived.after
        for i in range(start, len(middlewares)):
            answer = middlewares[i].on_request(ex)
            if answer is None:
                if after is not None and after[i] is not None:
                    _register(ex, after[i])
                continue
            if answer is WAIT:
                return _ServiceWait(self, derived, i + 1, saved)
            return MiddlewareAnswer(answer)
        ex.route = derived
        server = self.inner.pick(ex)
        if server is None:
            # no server here: a failover's fallback must not see this service's changes
            route, ex.path, ex.query, extra, n_extra, ex.responders, ex.completers, _ = saved
            ex.route = route
            if extra is None:
                ex.set_headers = None
            else:
                del extra[n_extra:]
                ex.set_headers = extra
        return server


class _ServiceWait(ServerTarget):
    """What ``pick`` returns when a service-level middleware waits (``pool`` and ``answer``
    None): the connection calls ``resume(ex)`` once the middleware resumes, and gets the
    server (or an answer) as ``pick`` would have returned it."""
    __slots__ = ("answer", "chained", "derived", "start", "saved")

    def __init__(self, chained, derived, start, saved):
        self.pool = None
        self.answer = None
        self.chained = chained
        self.derived = derived
        self.start = start
        self.saved = saved

    def resume(self, ex):
        after = self.derived.after
        if after is not None and after[self.start - 1] is not None:
            _register(ex, after[self.start - 1])
        return self.chained._run(ex, self.derived, self.start, self.saved)


def _register(ex, hooks):
    # a middleware let the request pass: its response phase and completion hook are due
    on_response, on_complete = hooks
    if on_response is not None:
        ex.responders = (ex.responders or []) + [on_response]
    if on_complete is not None:
        ex.completers = (ex.completers or []) + [on_complete]


def _last_wins(edits):
    seen = {}
    for name, value in edits:
        seen[name.lower()] = (name, value)
    return list(seen.values())


class EntryRoutes(EntryTable):
    __slots__ = ()

    def __init__(self, table, targets):
        self.table = table
        self.targets = targets
        self.needs_headers = table.needs_headers
        self.needs_ip = table.needs_client_ip

    def route(self, req, path, query, remote_ip, tls):
        return self.table.route(req.method, req.host, path, query if query is not None else b"",
                                req.headers if self.needs_headers else None, remote_ip, tls)


class ChildRoutes(EntryTable):
    """The child routers of one parent router (multi-layer routing), as a route table built at
    config load. Traefik matches them against the request as the parents' middlewares left
    it: the connection's path and query, and — when a child rule looks at headers — the
    request's headers with the header edits of the middlewares above (``headers``)."""
    __slots__ = ("req_set", "req_remove")

    def __init__(self, table, targets, inherited):
        self.table = table
        self.targets = targets
        self.needs_headers = table.needs_headers
        self.needs_ip = table.needs_client_ip
        edits = {}
        for m in inherited:
            if m.static:
                sets, removes = [], []
                m.compile_edits(sets, removes, [], [])
                _fold(edits, sets, removes)
        self.req_set = [(n, v) for n, v in edits.values() if v is not None]
        self.req_remove = set(edits)

    def headers(self, conn):
        """The headers the child rules see (only called when a child rule needs headers)."""
        headers = conn.req.headers
        extra = list(self.req_set) + list(conn.set_headers or ())
        if not extra and not self.req_remove:
            return headers
        drop = self.req_remove | {n.lower() for n, _ in conn.set_headers or ()}
        return [(n, v) for n, v in headers if n.lower() not in drop] + \
            [(n, v) for n, v in extra if v is not None]


class EntryPointRuntime:
    """What a client connection needs from its entry point (static config), computed once."""

    def __init__(self, ep, tls=False):
        self.name = ep.name
        self.ep = ep
        self.tls = tls
        self.read_timeout = ep.read_timeout
        self.write_timeout = ep.write_timeout
        self.idle_timeout = ep.idle_timeout
        self.grace_timeout = ep.grace_timeout
        self.keep_alive_max_requests = ep.keep_alive_max_requests
        self.keep_alive_max_time = ep.keep_alive_max_time
        # http.maxHeaderBytes: Go's server limits what it reads of a request head to
        # MaxHeaderBytes + 4096 (server.go initialReadLimitSize) and answers 431 beyond
        self.max_head = getattr(ep, "max_header_bytes", 1 << 20) + 4096
        self.underscore = UNDERSCORE_STRATEGIES[getattr(ep, "underscore_headers", "keep")]
        # observability: what the requests no router takes get (Traefik's default handler
        # is built with the entry point's observability config)
        self.metered = getattr(ep, "metered", True)
        self.access_logged = getattr(ep, "access_logged", True)
        self.traced = getattr(ep, "traced", True)
        # HTTP/2 (engine/h2.pyx): on unless the pyroute extension http2.enabled: false
        self.http2 = getattr(ep, "http2", True)
        self.h2_max_streams = getattr(ep, "h2_max_streams", 250)
        self.h2_decoder_table = getattr(ep, "h2_decoder_table", 4096)
        self.h2_encoder_table = getattr(ep, "h2_encoder_table", 4096)
        self.proto = b"https" if tls else b"http"
        self.ws_proto = b"wss" if tls else b"ws"
        self.default_port = b"443" if tls else b"80"
        self.insecure = ep.forwarded_insecure
        self.trusted_nets = [ipaddress.ip_network(t, strict=False) for t in ep.trusted_ips]
        self.normalize = Normalizer(ep.sanitize_path, ep.encode_query_semicolons,
                                    getattr(ep, "denied_encoded_characters", frozenset()))
        # a path without '%', "/." or "//" and a query without ';' need no normalisation
        self.fast_path = True
        self._trust_cache = {}
        # proxyProtocol (pyroute.proxy.sniff reads the header): None when not enabled
        # (pyroute.static: None, or {"trusted_ips": [CIDR...], "insecure": bool})
        pp = getattr(ep, "proxy_protocol", None)
        self.proxy_protocol = pp
        self.pp_insecure = bool(pp is not None and pp.get("insecure"))
        self.pp_nets = [ipaddress.ip_network(t, strict=False)
                        for t in pp.get("trusted_ips") or ()] if pp is not None else []

    def proxy_trusted(self, ip):
        """Whether a PROXY header from peer ``ip`` (bytes) sets the client address (Traefik:
        go-proxyproto USE for trustedIPs or insecure, else IGNORE)."""
        if self.pp_insecure:
            return True
        try:
            addr = ipaddress.ip_address(ip.decode())
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == n.version and addr in n for n in self.pp_nets)

    def is_trusted(self, ip):
        if self.insecure:
            return True
        if not self.trusted_nets:
            return False
        ok = self._trust_cache.get(ip)
        if ok is None:
            try:
                addr = ipaddress.ip_address(ip.decode())
                if addr.version == 6 and addr.ipv4_mapped is not None:
                    addr = addr.ipv4_mapped
                ok = any(addr in n for n in self.trusted_nets)
            except ValueError:
                ok = False
            if len(self._trust_cache) < 4096:
                self._trust_cache[ip] = ok
        return ok

    def forwarded_port(self, host):
        # Traefik forwardedheaders: the Host's port, else 443/80 by scheme
        if host.endswith(b"]") or b":" not in host:
            return self.default_port
        return host.rsplit(b":", 1)[1] or self.default_port


class Pools:
    """Connection pools by (address, transport settings); shared by successive snapshots.

    A server whose host is a name gets a ``dns.Resolver``: each new connection looks the
    name up and dials its addresses as Go's dialer does (pyroute.proxy.dns); nothing is looked
    up here, so a configuration never depends on DNS. ``lookup``: the resolver's lookup
    function (default getaddrinfo)."""

    # True in a worker (the process that serves): middlewares that keep connections open
    # ahead of traffic (rateLimit redis.minIdleConns) start only there, not in ``check``
    serving = False

    def __init__(self, lookup=None):
        self.pools = {}
        self.lookup = lookup

    def get(self, host, port, transport, tls=None, h2c=None):
        """``tls``: None for http, else (key, ssl.SSLContext, server name[, verify]) for
        https (``verify``: a check of the peer after the handshake, or None). ``h2c``: the
        server speaks HTTP/2 with prior knowledge (engine/h2up.pyx multiplexes it): its
        (readIdleTimeout, pingTimeout) in seconds; None: HTTP/1.1."""
        key = (host, port) + transport + ((tls[0], tls[2]) if tls else ()) + \
            (("h2c",) + tuple(h2c) if h2c is not None else ())
        pool = self.pools.get(key)
        if pool is None:
            resolver = None
            try:
                ip = ipaddress.ip_address(host)
                family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
                addr = (host, port, 0, 0) if ip.version == 6 else (host, port)
            except ValueError:
                from .dns import Resolver
                resolver = Resolver(host, port, self.lookup)
                family, addr = socket.AF_INET, None
            max_idle, dial, header, idle = transport
            pool = Pool(addr, family, max_idle, dial, header, idle, "%s:%d" % (host, port),
                        tls[1] if tls else None, tls[2] if tls else None, resolver,
                        tls[3] if tls and len(tls) > 3 else None)
            if h2c is not None:
                # h2c: every exchange is a stream; https: once ALPN picked h2 (H2Pool.adopt)
                H2Pool(pool, *h2c, alpn=tls is not None)
            self.pools[key] = pool
        return pool


class Snapshot:
    """One compiled configuration: entry point name -> EntryRoutes, for plain connections
    (``entries``: routers without ``tls``) and TLS ones (``entries_tls``), as Traefik keeps
    TLS and non-TLS routers apart on one entry point; ``tls``: entry point name ->
    pyroute.tls.TLSConfig (option contexts, certificates, Host -> TLS option, 421 check)."""

    def __init__(self, entries, entries_tls, errors, config, tls=None, health=None):
        self.entries = entries
        self.entries_tls = entries_tls
        # service name -> status.CheckedBalancer of a load balancer with health checks: where
        # the master's probe results land (``set_health``)
        self.health = health or {}
        self.tls = tls or {}
        self.errors = errors
        self.config = config

    def set_health(self, service, url, up):
        """A probe result from the master: server ``url`` of ``service`` is up or down."""
        lb = self.health.get(service)
        if lb is not None:
            lb.set_status(url, up)


def _dur(value, default):
    if value is None or value == "":
        return default
    return parse_duration(value)


def _client_tls(dynamic, name, host, h2=False):
    """(key, SSLContext, server name, verify) for https servers, from the ServersTransport:
    serverName, insecureSkipVerify, rootCAs (PEM), certificates (client cert + key, PEM),
    minVersion / maxVersion / cipherSuites (Go's names, as TLSOption's), peerCertURI.
    Without a transport: verified against the system's roots, server name = the URL's host
    (Traefik). ``verify``: None, or the peerCertURI check run after the handshake. Raises
    ValueError for what pyroute cannot honour (spiffe): never a weaker check than asked.
    ``h2``: offer h2 before http/1.1 by ALPN unless the transport sets disableHTTP2 (the
    proxy's connections; health probes speak HTTP/1.1 only). ``h2 in key[0]`` then says
    whether h2 is offered."""
    import ssl
    import tempfile
    import warnings
    st = {}
    transports = dynamic.get("http", {}).get("serversTransports", {})
    if name:
        st = transports.get(qualified(name)) or transports.get(name) or {}
    elif DEFAULT_TRANSPORT in transports:
        # the static configuration's serversTransport (Traefik: default@internal)
        name = DEFAULT_TRANSPORT
        st = transports[name]
    if st.get("spiffe") is not None:
        # Traefik: "SPIFFE is enabled for this transport, but not configured" without a
        # SPIFFE workload API (static spiffe.workloadAPIAddr); pyroute has no client for it
        raise ValueError("serversTransport %s: spiffe needs a SPIFFE workload API, which "
                         "pyroute does not support; the service is not served rather than "
                         "served without the SPIFFE check" % name)
    h2 = h2 and not st.get("disableHTTP2")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.set_alpn_protocols(["http/1.1"])
    roots = st.get("rootCAs") or []
    if roots:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.set_alpn_protocols(["http/1.1"])
        for pem in roots:
            ctx.load_verify_locations(cadata=pem if isinstance(pem, str) else pem.decode())
    uri = st.get("peerCertURI") or ""
    verify = None
    if st.get("insecureSkipVerify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if uri:
        # Traefik (VerifyPeerCertificate, run after Go's own verification): a URI SAN must
        # equal peerCertURI, and the chain is verified against rootCAs (the system's
        # without) even under insecureSkipVerify, which then only lifts the host name check
        ctx.verify_mode = ssl.CERT_REQUIRED
        verify = _peer_uri_check(uri)
    versions = {"VersionTLS10": ssl.TLSVersion.TLSv1, "VersionTLS11": ssl.TLSVersion.TLSv1_1,
                "VersionTLS12": ssl.TLSVersion.TLSv1_2, "VersionTLS13": ssl.TLSVersion.TLSv1_3}
    for field in ("minVersion", "maxVersion"):
        value = st.get(field)
        if value in (None, ""):
            continue
        if value not in versions:
            raise ValueError("serversTransport %s: %s: unknown TLS version %r (expected one of "
                             "%s)" % (name, field, value, ", ".join(versions)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)   # TLS 1.0/1.1: asked for
                if field == "minVersion":
                    ctx.minimum_version = versions[value]
                else:
                    ctx.maximum_version = versions[value]
        except ValueError as e:
            raise ValueError("serversTransport %s: %s %s: %s" % (name, field, value, e)) \
                from None
    order = list(versions)
    low = order.index(st["minVersion"]) + 1 if st.get("minVersion") else 0
    high = order.index(st["maxVersion"]) + 1 if st.get("maxVersion") else 0
    if low > high:
        # Traefik createTLSConfig compares the two values, an unset maxVersion being 0: it
        # refuses a minVersion above maxVersion, and so a minVersion without a maxVersion
        # (the transport is dropped and the services using it fail); so does pyroute
        raise ValueError("serversTransport %s: TLS minimum version %s is above the maximum "
                         "version %s (Traefik refuses a minVersion without a maxVersion too)"
                         % (name, st["minVersion"], st.get("maxVersion") or '""'))
    suites = st.get("cipherSuites")
    if suites:
        names = []
        for suite in suites:
            if suite not in tls.CIPHER_SUITES:
                raise ValueError("serversTransport %s: cipherSuites: invalid CipherSuite: %s"
                                 % (name, suite))
            ossl = tls.CIPHER_SUITES[suite]
            if ossl is not None and ossl not in names:
                names.append(ossl)
        if names:
            try:
                ctx.set_ciphers(":".join(names))
            except ssl.SSLError:
                raise ValueError("serversTransport %s: cipherSuites: none of %s is available "
                                 "in this OpenSSL build" % (name, ", ".join(suites))) from None
        else:
            # only TLS 1.3 suites named (Go ignores those: not configurable): TLS 1.2 and
            # below would have no suite at all, so only TLS 1.3 can be negotiated
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    for cert in st.get("certificates") or []:
        # ssl loads client certificates from files only: a private temporary file, removed
        # as soon as it is read
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
            f.write(cert["certFile"].rstrip() + "\n" + cert["keyFile"].rstrip() + "\n")
            f.flush()
            ctx.load_cert_chain(f.name)
    server_name = st.get("serverName") or host
    # the pool key changes with the transport's content, so a reload with new CAs or
    # certificates never reuses connections (or a context) made with the old ones
    if h2:
        ctx.set_alpn_protocols(["h2", "http/1.1"])     # Go's transport: h2 first
    return ((name or "", repr(sorted(st.items()))) + (("h2",) if h2 else ()), ctx,
            server_name, verify)


def _peer_uri_check(uri):
    """The peerCertURI check: the verified peer certificate has ``uri`` among its URI SANs
    (Traefik verifyServerCertMatchesURI: an exact match)."""
    def verify(sock):
        try:
            cert = sock.getpeercert()
        except (ValueError, OSError):
            return False
        return any(kind == "URI" and value.lower() == uri.lower()       # strings.EqualFold
                   for kind, value in (cert or {}).get("subjectAltName", ()))
    return verify


def _transport(dynamic, name):
    if not name and DEFAULT_TRANSPORT in dynamic.get("http", {}).get("serversTransports", {}):
        name = DEFAULT_TRANSPORT    # the static configuration's serversTransport
    if not name:
        return (DEFAULT_MAX_IDLE, DEFAULT_DIAL_TIMEOUT, 0.0, DEFAULT_IDLE_CONN_TIMEOUT)
    st = dynamic.get("http", {}).get("serversTransports", {}).get(qualified(name)) or \
        dynamic.get("http", {}).get("serversTransports", {}).get(name)
    if st is None:
        raise ValueError("serversTransport %s not found" % name)
    ft = st.get("forwardingTimeouts") or {}
    max_idle = st.get("maxIdleConnsPerHost")
    return (DEFAULT_MAX_IDLE if max_idle in (None, 0) else int(max_idle),
            _dur(ft.get("dialTimeout"), DEFAULT_DIAL_TIMEOUT),
            _dur(ft.get("responseHeaderTimeout"), 0.0),
            _dur(ft.get("idleConnTimeout"), DEFAULT_IDLE_CONN_TIMEOUT))


def _h2_timeouts(dynamic, name):
    """The HTTP/2 health check of a ServersTransport: (readIdleTimeout, pingTimeout) in
    seconds, Go's http2.Transport ReadIdleTimeout and PingTimeout (0: off / Go's 15 s)."""
    if not name and DEFAULT_TRANSPORT in dynamic.get("http", {}).get("serversTransports", {}):
        name = DEFAULT_TRANSPORT
    if not name:
        return (0.0, 0.0)
    transports = dynamic.get("http", {}).get("serversTransports", {})
    st = transports.get(qualified(name)) or transports.get(name) or {}
    ft = st.get("forwardingTimeouts") or {}
    return (_dur(ft.get("readIdleTimeout"), 0.0), _dur(ft.get("pingTimeout"), 0.0))


def _sticky(spec, service_name, handler_names):
    cookie = (spec or {}).get("cookie")
    if cookie is None:
        return None, None
    name = cookie_name(cookie.get("name") or "", service_name)
    attrs = "; Path=" + (cookie.get("path") or "/")
    if cookie.get("domain"):
        attrs += "; Domain=" + cookie["domain"]
    max_age = cookie.get("maxAge") or 0
    if max_age > 0:
        attrs += "; Max-Age=%d" % max_age
    elif max_age < 0:
        attrs += "; Max-Age=0"
    if cookie.get("httpOnly"):
        attrs += "; HttpOnly"
    if cookie.get("secure"):
        attrs += "; Secure"
    same = (cookie.get("sameSite") or "").lower()
    if same in ("none", "lax", "strict"):
        attrs += "; SameSite=" + same.capitalize()
    set_cookies = [(b"Set-Cookie", ("%s=%s%s" % (name, sticky_value(h), attrs)).encode("latin-1"))
                   for h in handler_names]
    return Sticky(name, handler_names), set_cookies


class Compiler:
    def __init__(self, config, pools):
        self.config = config
        self.dynamic = config.dynamic
        self.pools = pools
        self.services = {}
        self.middlewares = {}
        self.tls_contexts = {}
        self.health = {}        # service name -> CheckedBalancer (load balancer with checks)

    def service(self, name, stack=(), allow_empty=False):
        key = qualified(name)
        if key in self.services:
            return self.services[key]
        if key in stack:
            raise ValueError("service %s refers to itself" % key)
        if key == "api@internal" and getattr(self.config.static, "api", None) is not None:
            svc = self.services[key] = self._api_internal()
            return svc
        if key in _MASTER_SERVICES and _MASTER_SERVICES[key](self.config.static):
            svc = self.services[key] = self._api_internal(key.split("@")[0] + ".internal")
            return svc
        spec = self.dynamic.get("http", {}).get("services", {}).get(key)
        if spec is None:
            raise ValueError("service %s not found" % key)
        if spec.get("status") == "disabled":
            raise ValueError("service %s is disabled" % key)
        if "loadBalancer" in spec:
            if not spec["loadBalancer"].get("servers"):
                # a Service without endpoints, kept by allowEmptyServices (the manifests layer
                # refuses it otherwise): Traefik's load balancer has no server to pick, 503
                svc = Unavailable()
            else:
                svc = self._load_balancer(key, spec["loadBalancer"])
        elif "weighted" in spec:
            w = spec["weighted"]
            children, weights, names = [], [], []
            for child in w.get("services") or []:
                children.append(self.service(child["name"], stack + (key,)))
                weights.append(child.get("weight", 1))
                names.append(child["name"])
            if not children:
                raise ValueError("weighted service %s has no services" % key)
            sticky, cookies = _sticky(w.get("sticky"), key, names)
            if w.get("healthCheck") is not None:
                svc = CheckedBalancer(key, "weighted", children, names, False,
                                      wrr=WRR(weights), sticky=sticky, set_cookies=cookies)
                self._listen(svc, children, names)
            else:
                svc = Weighted(children, weights, sticky, cookies)
        elif "highestRandomWeight" in spec:
            h = spec["highestRandomWeight"]
            children, weights, names = [], [], []
            for child in h.get("services") or []:
                children.append(self.service(child["name"], stack + (key,)))
                weights.append(child.get("weight", 1))
                names.append(child["name"])     # Traefik's handler name: the service's
            if not children:
                raise ValueError("highestRandomWeight service %s has no services" % key)
            if h.get("healthCheck") is not None:
                svc = CheckedBalancer(key, "HRW", children, names, False,
                                      hrw=HRW(names, weights))
                self._listen(svc, children, names)
            else:
                svc = HighestRandomWeight(children, names, weights)
        elif "mirroring" in spec:
            mspec = spec["mirroring"]
            main = self.service(mspec["service"], stack + (key,))
            mirrors = []
            for m in mspec.get("mirrors") or []:
                percent = int(m.get("percent", 0) or 0)
                if not 0 <= percent <= 100:
                    raise ValueError("mirror %s: percent must be in [0, 100]" % m.get("name"))
                mirrors.append((self.service(m["name"], stack + (key,)), percent))
            max_body = mspec.get("maxBodySize")
            svc = Mirroring(main, mirrors, mspec.get("mirrorBody", True) is not False,
                            -1 if max_body is None else int(max_body))
        elif "failover" in spec:
            fspec = spec["failover"]
            if (fspec.get("errors") or {}).get("status"):
                # Traefik >= v3.6 also fails over on the main service's error statuses (with
                # the request body buffered); pyroute does not yet: refuse rather than ignore
                raise ValueError("failover service %s: errors (fail over on status codes) is "
                                 "not supported by pyroute yet" % key)
            main = self.service(fspec["service"], stack + (key,), True)
            fallback = self.service(fspec["fallback"], stack + (key,), True)
            wants = fspec.get("healthCheck") is not None
            if getattr(main, "wants", False) or wants:
                # Traefik's failover: follows its main service's health-check status
                # (and its fallback's when the failover itself has healthCheck)
                svc = CheckedFailover(key, main, fallback, wants)
                register_child(main, qualified(fspec["service"]), key, svc.set_main)
                if wants:
                    register_child(fallback, qualified(fspec["fallback"]), key,
                                   svc.set_fallback)
            else:
                svc = Failover(main, fallback)
        else:
            kind = next((k for k in spec if k not in ("status", "error", "middlewares")), "?")
            raise ValueError("%s services are not supported by pyroute yet" % kind)
        if spec.get("middlewares"):
            # service-level middlewares (Traefik's service manager: chain.Then(lb))
            chain = self.chain(spec["middlewares"])
            # its header edits are compiled per route at the first request: check them now
            # (a bad header name or value is a config error, never a failing request)
            _forwarder(chain, b"pyroute", False)
            svc = Chained(svc, chain)
        self.services[key] = svc
        return svc

    def _api_internal(self, host=None):
        """Traefik's api@internal: forwarded to the master's API over its private unix
        socket (pyroute.api); without a running master (``pyroute check``) the pool's
        address is empty and a request would get 502. ``host``: dashboard@internal,
        ping@internal and prometheus@internal (``dashboard.internal``, ...) go to sockets of
        their own (the master answers ping and prometheus whatever the path, as Traefik's
        handlers do, and the dashboard's files at the root)."""
        from .. import api
        path = api.internal_socket(host.split(".")[0] if host else "api") or ""
        key = ("unix", path)
        pool = self.pools.pools.get(key)
        if pool is None:
            # idle connections are dropped after 5s, before the master's API closes them
            # (10s, pyroute.api.server.READ_TIMEOUT): a request never meets a closing one
            pool = self.pools.pools[key] = Pool(
                path, socket.AF_UNIX, 8, 30.0, 0.0, 5.0,
                "%s@internal" % (host.split(".")[0] if host else "api"), None, None)
        if host is not None:
            return LoadBalancer([Server("http://" + host, pool, host.encode(), False)], [1],
                                "wrr", None, None)
        return LoadBalancer([Server("http://api.internal", pool, b"api.internal", True)], [1],
                            "wrr", None, None)

    @staticmethod
    def _listen(parent, children, names):
        # Traefik getWRRServiceHandler/getHRWServiceHandler with healthCheck: every child
        # must report its status (RegisterStatusUpdater), or the service is not built
        for child, name in zip(children, names):
            register_child(child, qualified(name), parent.name,
                           lambda up, name=name: parent.set_status(name, up))

    def _load_balancer(self, key, lb):
        servers, weights, urls = [], [], []
        transport = _transport(self.dynamic, lb.get("serversTransport"))
        if lb.get("serversTransport") and (lb["serversTransport"], None) not in self.tls_contexts:
            # Traefik builds a transport's TLS settings whatever the servers' scheme: one it
            # refuses (spiffe without a workload API, a bad version or suite) fails every
            # service using it, http ones too
            self.tls_contexts[(lb["serversTransport"], None)] = _client_tls(
                self.dynamic, lb["serversTransport"], "")
        pass_host = lb.get("passHostHeader", True)
        strategy = (lb.get("strategy") or "wrr").lower()
        sticky_lb = (lb.get("sticky") or {}).get("cookie") is not None
        hc = lb.get("healthCheck")
        fenced = []
        for s in lb.get("servers") or []:
            if s.get("fenced") and hc is None and (not sticky_lb or strategy == "hrw"):
                # a terminating endpoint (Traefik v3.7 fenced server) receives sticky traffic
                # only: without a sticky cookie to reach it (hrw has none) and without health
                # checks (whose status it would count in), it makes no difference: left out
                continue
            if s.get("fenced"):
                fenced.append(len(servers))
            url = s.get("url") or ""
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https", "h2c"):
                raise ValueError("server %s: scheme %r to backends is not supported"
                                 % (url, parts.scheme))
            tls = None
            if parts.scheme == "https":
                tls_key = (lb.get("serversTransport") or "", parts.hostname)
                tls = self.tls_contexts.get(tls_key)
                if tls is None:
                    tls = _client_tls(self.dynamic, lb.get("serversTransport"), parts.hostname,
                                      h2=True)
                    self.tls_contexts[tls_key] = tls
            port = parts.port or (443 if parts.scheme == "https" else 80)
            h2 = None
            if parts.scheme == "h2c" or (tls is not None and "h2" in tls[0]):
                h2 = _h2_timeouts(self.dynamic, lb.get("serversTransport"))
            pool = self.pools.get(parts.hostname, port, transport, tls, h2c=h2)
            servers.append(Server(url, pool, parts.netloc.encode(), pass_host, key,
                                  parts.netloc))
            # fenced: out of the WRR rotation (weight 0 is never picked), its sticky cookie
            # still reaches it (Traefik's WRR keeps fenced servers for sticky sessions)
            weights.append(0 if s.get("fenced") and strategy != "hrw" else s.get("weight", 1))
            urls.append(url)
        if not servers:
            # every endpoint is terminating: nothing takes new requests (503)
            return Unavailable()
        sticky, cookies = _sticky(lb.get("sticky"), key, urls)
        if hc is not None:
            if strategy not in ("wrr", "p2c", "hrw", "roundrobin", ""):
                raise ValueError("load-balancing strategy %r is not supported yet" % strategy)
            # its servers' status comes from the master's probes (pyroute.server.health)
            svc = CheckedBalancer(
                key, "load-balancer", servers, urls, True,
                wrr=WRR(weights) if strategy in ("wrr", "roundrobin", "") else None,
                p2c=P2C(len(servers)) if strategy == "p2c" else None,
                hrw=HRW(urls, weights) if strategy == "hrw" else None,
                sticky=sticky if strategy != "hrw" else None, set_cookies=cookies,
                fenced=fenced)
            self.health[key] = svc
            return svc
        if strategy == "hrw":
            # Traefik's service manager: lb.AddServer(server.URL, ...) — the URL is the name
            return HighestRandomWeight(servers, urls, weights, servers=True)
        if strategy not in ("wrr", "p2c", "roundrobin", ""):
            raise ValueError("load-balancing strategy %r is not supported yet" % strategy)
        return LoadBalancer(servers, weights, "p2c" if strategy == "p2c" else "wrr", sticky,
                            cookies, fenced)

    def chain(self, names, router=None, stack=()):
        """The middleware objects of a chain of names, chain middlewares flattened into their
        members (Traefik nests their handlers in the same order, and builds them per router as
        it builds the router's own); a chain that reaches itself is Traefik's recursion
        error, naming the Middleware."""
        out = []
        for name in names or ():
            key = qualified(name)
            mw = self.middleware(key, router)
            if isinstance(mw, mw_registry.Chain):
                if key in stack:
                    raise ConfigError(mw_registry.recursion_error(stack, key),
                                      kind="Middleware", name=key, field="chain.middlewares")
                out.extend(self.chain(mw.members, router, stack + (key,)))
            else:
                out.append(mw)
        return out

    def middleware(self, name, router=None):
        """The middleware object ``name``; kinds that keep state (rateLimit, inFlightReq,
        circuitBreaker) get one per router, as Traefik builds each router's chain anew
        ("each router gets its own instance")."""
        key = qualified(name)
        spec = self.dynamic.get("http", {}).get("middlewares", {}).get(key)
        if router is not None and spec is not None and any(k in mw_registry.NAMED
                                                           for k in spec):
            cache = (key, router)
            if cache not in self.middlewares:
                self.middlewares[cache] = self._build_middleware(key, spec, router)
            return self.middlewares[cache]
        if key not in self.middlewares:
            spec = self.dynamic.get("http", {}).get("middlewares", {}).get(key)
            if spec is None:
                raise ConfigError("middleware %s not found" % key, kind="Middleware", name=key)
            if spec.get("status") == "disabled":
                raise ConfigError("middleware %s is disabled: %s" % (
                    key, "; ".join(spec.get("error") or ())), kind="Middleware", name=key)
            self.middlewares[key] = self._build_middleware(key, spec)
        return self.middlewares[key]

    def _build_middleware(self, key, spec, router=None):
        if spec.get("status") == "disabled":
            raise ConfigError("middleware %s is disabled: %s" % (
                key, "; ".join(spec.get("error") or ())), kind="Middleware", name=key)
        mw = mw_registry.build(key, spec, router)
        bind = getattr(mw, "bind", None)
        if bind is not None:
            # a middleware that sends its own requests (forwardAuth) takes its Pool from
            # the pools every proxied request uses (this process's: the worker's)
            bind(self.pools)
        bind_service = getattr(mw, "bind_service", None)
        if bind_service is not None:
            # errors: the compiled service its pages come from
            try:
                bind_service(self)
            except ValueError as e:
                raise ConfigError("service: %s" % str(e).replace("service: ", "", 1),
                                  kind="Middleware", name=key, field="errors.service") \
                    from None
        return mw


# Traefik's internal services the master answers (pyroute.api), with the static section
# that creates them
_MASTER_SERVICES = {
    "dashboard@internal": lambda st: getattr(st, "api", None) is not None and st.api.dashboard,
    "ping@internal": lambda st: getattr(st, "ping", None) is not None,
    "prometheus@internal": lambda st: getattr(getattr(st, "metrics", None), "prometheus",
                                              None) is not None,
}


def _metered(config, router):
    """Traefik ObservabilityMgr.shouldMeter: metrics configured, the router's
    ``observability.metrics`` not false, an ``@internal`` service only with addInternals."""
    metrics = getattr(config.static, "metrics", None)
    if metrics is None:
        return False
    if not any(p is not None and (p.add_entry_points_labels or p.add_routers_labels or
                                  p.add_services_labels)
               for p in (metrics.prometheus, getattr(metrics, "otlp", None))):
        return False
    if str(router.get("service") or "").endswith("@internal") and not metrics.add_internals:
        return False
    return (router.get("observability") or {}).get("metrics", True) is not False


def _set_obs(route, config, name, router, parents=()):
    """Route.obs for the metrics Recorder: the router and the parents above it, each with
    its service label (a parent's is ``<router>-muxer``, Traefik's router.go); the service
    series is the picked server's load balancer (the Recorder reads it per exchange)."""
    from ..observability.metrics import route_obs
    if route.children is not None:
        service = "%s-muxer" % name
    else:
        service = qualified(router["service"]) if router.get("service") else ""
    route.obs = route_obs(name, service, _metered(config, router),
                          tuple((p, "%s-muxer" % p) for p in parents))


def _observability(route, rname, router, static):
    """The access-log switch and names of a root router and of its child routers (Traefik
    builds the observability chain of root routers only: their switch holds below)."""
    obs = router.get("observability") or {}
    on = obs.get("accessLogs", True) is not False
    service = router.get("service") or ""
    if service.endswith("@internal") and not static.access_log.add_internals:
        on = False

    def mark(r, name, seen):
        r.log_name = name
        r.access_log = on
        children = r.children
        if children is not None and id(children) not in seen:
            seen.add(id(children))
            for child in children.targets:
                if isinstance(child, Route):
                    mark(child, name + " -> " + child.name, seen)
    mark(route, rname, set())


def compile_config(config, pools, route_table_factory=None, server_name=None):
    """RuntimeConfig -> Snapshot. Raises only on whole-config failures."""
    steps = compile_steps(config, pools, route_table_factory, server_name)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def compile_steps(config, pools, route_table_factory=None, server_name=None):
    """``compile_config`` as a generator: it yields after each router and each rule (each a
    few tens of microseconds), and returns the Snapshot. A worker taking a reload runs it in
    slices between its events (pyroute.server.worker.Reload), so a config of 10,000 routers
    never holds the loop for more than a slice (issue #11)."""
    if server_name is None:
        server_name = socket.gethostname().encode("ascii", "replace")
    from .._engine.rules import RouteTable, compile_rule, parse_domains
    make_table = route_table_factory or RouteTable
    comp = Compiler(config, pools)
    errors = []
    per_ep = {name: [] for name in config.static.entry_points}
    per_ep_tls = {name: [] for name in config.static.entry_points}
    routers = config.dynamic.get("http", {}).get("routers", {})
    layers = _Layers(comp, routers, server_name, make_table, errors)
    yield from layers.scan()
    for rname, router in routers.items():
        if router.get("status", "enabled") != "enabled":
            continue
        if router.get("parentRefs") is not None:
            # child routers of multi-layer routing are reached through their parents only
            # (in the parents' ChildRoutes), never from an entry point directly
            continue
        # Traefik: a router with a tls section serves TLS connections only, the others plain
        # connections only (the worker tells them apart by the first byte).
        tls_router = router.get("tls") is not None
        try:
            chain = comp.chain(router.get("middlewares"), rname)
            if rname in layers.children:
                # a parent router: its children are routed to, its service (if any) is not
                # (Traefik's buildHTTPHandler: ChildRefs first)
                route = Route(rname, chain, None, server_name, tls_router,
                              children=layers.table(rname, chain, tls_router, (rname,)))
            elif router.get("service") == "noop@internal":
                route = Route(rname, chain + [NoopAnswer()], Unavailable(), server_name,
                              tls_router)
            elif router.get("service") is None:
                # Traefik: "the service is missing on the router" (no children either)
                raise ValueError("the router has no service")
            else:
                route = Route(rname, chain, comp.service(router["service"]), server_name,
                              tls_router)
        except ConfigError as e:
            errors.append(ConfigError("router disabled: %s" % e.message, kind="Router",
                                      name=rname, field="middlewares"))
            continue
        except ValueError as e:
            errors.append(ConfigError("router disabled: %s" % e, kind="Router", name=rname,
                                      field="service"))
            continue
        _set_obs(route, config, rname, router)
        _observability(route, rname, router, config.static)
        tracing.attach(route, rname, router, config, children=route.children is not None)
        target = per_ep_tls if tls_router else per_ep
        for ep in router.get("entryPoints") or config.static.default_entry_points():
            if ep in target:
                target[ep].append((rname, router, route))
        yield
    rules = {}
    if make_table is RouteTable:
        # the rules compiled ahead, one per step; RouteTable then only sorts and indexes
        for items in list(per_ep.values()) + list(per_ep_tls.values()):
            for _, r, _ in items:
                key = (r["rule"], r.get("ruleSyntax") or "v3")
                if key not in rules:
                    try:
                        rules[key] = compile_rule(*key)
                    except Exception:
                        rules[key] = None   # the constructor raises it, naming the router
                    yield
    if make_table is RouteTable:
        entries = yield from _staged_tables(per_ep, errors, rules)
        entries_tls = yield from _staged_tables(per_ep_tls, errors, rules)
    else:
        entries = _tables(per_ep, make_table, errors, rules)
        entries_tls = _tables(per_ep_tls, make_table, errors, rules)
    yield
    # the TLS routers' Host names (HostOptions), parsed ahead one per step: with 10,000 TLS
    # routers, parsing them in from_runtime took ~0.4 s in one piece
    domains = {}
    tls_routers = (config.tls_routers() if hasattr(config, "tls_routers") else routers)
    yield
    for r in tls_routers.values():
        if isinstance(r, dict) and r.get("tls") is not None:
            key = (r.get("rule") or "", r.get("ruleSyntax") or "v3")
            if key not in domains:
                try:
                    domains[key] = parse_domains(*key)
                except Exception:
                    pass                # HostOptions parses it again and reports it
                yield
    # the Host -> option associations, ASSOCIATE_STEP routers a step (~30-50 ms in one piece
    # with 10,000 TLS routers)
    tls_configs = yield from tls.TLSConfig.from_runtime_steps(config, domains, tls_routers)
    for cfg in tls_configs.values():
        errors.extend(cfg.errors)
    snap = Snapshot(entries, entries_tls, errors, config, tls_configs, comp.health)
    # the build's temporaries (the routers by entry point, the rules and Host names parsed
    # ahead: ~10 ms of deallocation at 10,000 + 10,000 routers) let go in steps too; what
    # the snapshot keeps of them stays (pyroute.server.release frees what only it holds)
    from ..server.release import Release
    garbage = Release([per_ep, per_ep_tls, rules, domains, layers, comp])
    del per_ep, per_ep_tls, rules, domains, layers, comp
    yield from garbage.steps()
    return snap


SCAN_STEP = 500        # routers a step of _Layers.scan looks at


class _Layers:
    """Builds the ChildRoutes of parent routers (multi-layer routing), recursively: a child
    may itself be a parent. A child reached through several parents gets one compiled Route
    per path (the header edits above it differ); its errors are reported once."""

    def __init__(self, comp, routers, server_name, make_table, errors):
        self.comp = comp
        self.routers = routers
        self.server_name = server_name
        self.make_table = make_table
        self.errors = errors
        self.reported = set()
        self.children = {}       # parent name -> enabled child names, in config order (scan)

    def scan(self):
        """Finds the parents' children: a generator, a step per ``SCAN_STEP`` routers (one
        pass over 10,000 routers is ~5 ms, which a reload spreads over its loop turns)."""
        step = SCAN_STEP
        for i, (name, r) in enumerate(self.routers.items()):
            if i % step == step - 1:
                yield
            if r.get("status", "enabled") != "enabled":
                continue
            for parent in r.get("parentRefs") or ():
                self.children.setdefault(parent, []).append(name)

    def _error(self, name, message, field):
        if name not in self.reported:
            self.reported.add(name)
            self.errors.append(ConfigError("router disabled: %s" % message, kind="Router",
                                           name=name, field=field))

    def table(self, parent, inherited, tls, path):
        items = []
        for name in self.children.get(parent, ()):
            if name in path:
                self._error(name, "parentRefs form a cycle (%s)" % " -> ".join(
                    path + (name,)), "parentRefs")
                continue
            r = self.routers[name]
            try:
                chain = self.comp.chain(r.get("middlewares"), name)
                above = list(inherited) + chain
                if name in self.children:
                    route = Route(name, chain, None, self.server_name, tls, inherited,
                                  children=self.table(name, above, tls, path + (name,)))
                else:
                    route = Route(name, chain, self.comp.service(r["service"]),
                                  self.server_name, tls, inherited)
            except ConfigError as e:
                self._error(name, e.message, "middlewares")
                continue
            except (ValueError, KeyError) as e:
                self._error(name, e if isinstance(e, ValueError) else "the router has no "
                            "service", "service")
                continue
            _set_obs(route, self.comp.config, name, r, path)
            items.append((name, r, route))
        built = _tables({parent: items}, self.make_table, self.errors)
        if parent not in built:
            return ChildRoutes(self.make_table([]), [], inherited)
        entry = built[parent]
        return ChildRoutes(entry.table, entry.targets, inherited)


def _tables(per_ep, make_table, errors, rules=None):
    """entry point -> EntryRoutes; ``rules``: (rule, syntax) -> Rule compiled ahead (None:
    compiled by the table, which raises naming the router)."""
    entries = {}
    for ep, items in per_ep.items():
        while items:
            try:
                table = make_table([(name, _rule(rules, r), r.get("priority") or 0,
                                     r.get("ruleSyntax") or "") for name, r, _ in items])
            except (RuleSyntaxError, ValueError) as e:
                # the manifests layer disables routers with bad rules; should one get here
                # anyway, it alone is left out
                bad = getattr(e, "router", None)
                if bad is None or not any(n == bad for n, _, _ in items):
                    raise ConfigError("entry point %s: %s" % (ep, e)) from None
                errors.append(ConfigError("router disabled: %s" % e, kind="Router", name=bad,
                                          field="rule"))
                items = [it for it in items if it[0] != bad]
                continue
            entries[ep] = EntryRoutes(table, [route for _, _, route in items])
            break
    return entries


TABLE_SLICE = 200     # routes added to a staged RouteTable per step


def _staged_tables(per_ep, errors, rules):
    """``_tables`` for RouteTable, as a generator: each table is built in stages, TABLE_SLICE
    routes a step, then sorted and indexed in steps too (``RouteTable.finish_steps``). A table
    with a
    router it refuses (a bad rule or priority the manifests layer let through) is built again
    the plain way, which leaves that router out and reports it."""
    from .._engine.rules import RouteTable
    entries = {}
    for ep, items in per_ep.items():
        if not items:
            continue
        table = RouteTable((), finish=False)
        try:
            for i in range(0, len(items), TABLE_SLICE):
                table.add([(name, _rule(rules, r), r.get("priority") or 0,
                            r.get("ruleSyntax") or "") for name, r, _ in
                           items[i:i + TABLE_SLICE]])
                yield
            yield from table.finish_steps()   # sorted and indexed in steps as well
        except (RuleSyntaxError, ValueError):
            entries.update(_tables({ep: items}, RouteTable, errors, rules))
        else:
            entries[ep] = EntryRoutes(table, [route for _, _, route in items])
        yield
    return entries


def _rule(rules, router):
    if rules:
        rule = rules.get((router["rule"], router.get("ruleSyntax") or "v3"))
        if rule is not None:
            return rule
    return router["rule"]
