"""Active HTTP health checks (Traefik's pkg/healthcheck), run by the master.

Where probes run: in the master, once per pyroute instance. The master never touches a
request, so a probe can never delay one; N workers probing on their own would send N times
the probes and could disagree about a server for a while (each would see it fail at another
moment). The master's loop drives the probes without blocking (non-blocking sockets in its
selector, TLS included) and pushes each status change to every worker over the config
socketpair, as ``("health", full, [(service, url, up), ...])`` (``full``: the list holds every
server that is down and everything else is up); a worker applies it to its compiled services
(pyroute.proxy.status). A worker forked later inherits the list of down servers with the
config, before it serves.

As Traefik: every server starts UP; a healthy server is probed every ``interval`` (default
30s), an unhealthy one every ``unhealthyInterval`` (default: interval); a probe is one HTTP
request to the server URL resolved with ``path``, ``scheme`` and ``port`` replaced when set,
``method`` (GET), ``hostname`` as Host, ``headers`` set; it fails on a connection error, on no
response head within ``timeout`` (5s; redirects included) or on a status other than
``status`` (default: any 2xx/3xx); with ``followRedirects`` (default true) up to 10 redirects
are followed as Go's client does. Each failure is logged ("Health check failed."), and each
change of a server's status. A server named by a host name is looked up for every probe (off
this loop: pyroute.proxy.dns) and dialed as Go's dialer dials (``_Dial``: the primaries one
at a time with their share of the timeout, the other address family raced after 300 ms).

Deviation, on purpose: a reload keeps the status of a server that stays in a service with the
same health-check settings (Traefik rebuilds its balancers with every server UP and first
probes one interval later — traefik/traefik#13218, PR #13223 — so a known-down server gets
requests again after every configuration change).
"""
import collections
import errno
import json
import os
import selectors
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit, urlunsplit

from ..proxy.dns import Resolver
from ..static import parse_duration
from .log import log

DEFAULT_INTERVAL = 30.0     # Traefik dynamic.DefaultHealthCheckInterval
DEFAULT_TIMEOUT = 5.0       # dynamic.DefaultHealthCheckTimeout
MAX_REDIRECTS = 10          # Go's http.Client default CheckRedirect
MAX_HEAD = 65536
_REDIRECTS = (301, 302, 303, 307, 308)
_CONNECTING, _HANDSHAKE, _SENDING, _READING, _RESOLVING = range(5)


def _duration(value, default, what, service):
    try:
        d = parse_duration(value) if value not in (None, "") else default
    except ValueError:
        d = 0.0
    if d <= 0:
        log("error", "Health check %s smaller than zero, default value will be used instead."
            % what, serviceName=service)
        return default
    return d


def _canonical(name):
    # Go's textproto.CanonicalMIMEHeaderKey, as http.Header.Set applies it
    if not all(c.isalnum() or c in "-!#$%&'*+.^_`|~" for c in name):
        return name
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def probe_url(server_url, hc):
    """The URL Traefik's newRequest builds: the server URL resolved with ``path``, then
    ``scheme`` and ``port`` replaced when set."""
    url = urljoin(server_url, hc.get("path") or "")
    parts = urlsplit(url)
    scheme = hc.get("scheme") or parts.scheme
    netloc = parts.netloc
    if hc.get("port"):
        host = parts.hostname or ""
        netloc = ("[%s]" % host if ":" in host else host) + ":%d" % int(hc["port"])
    return urlunsplit((scheme, netloc, parts.path, parts.query, ""))


def _used_services(dynamic):
    """Names of the services enabled routers reach (Traefik builds only those, and only their
    health checkers run)."""
    from ..manifests import qualified
    http = dynamic.get("http", {})
    services = http.get("services", {})
    todo = [r["service"] for r in http.get("routers", {}).values()
            if r.get("status", "enabled") == "enabled" and r.get("service")]
    seen = set()
    while todo:
        name = qualified(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        spec = services.get(name) or {}
        for kind in ("weighted", "highestRandomWeight"):
            todo += [c["name"] for c in (spec.get(kind) or {}).get("services") or ()]
        m = spec.get("mirroring") or {}
        todo += ([m["service"]] if m.get("service") else []) + \
            [x["name"] for x in m.get("mirrors") or ()]
        f = spec.get("failover") or {}
        todo += [f[k] for k in ("service", "fallback") if f.get(k)]
    return seen


class Target:
    """One server of one health-checked service."""
    __slots__ = ("service", "url", "key", "hc", "interval", "unhealthy_interval", "timeout",
                 "method", "headers", "hostname", "status", "follow", "tls", "up", "next_at",
                 "probe")

    def __init__(self, service, url, hc, tls, now):
        self.service = service
        self.url = url
        self.hc = hc
        self.tls = tls                 # (key, SSLContext, server name) from the transport
        self.key = (service, url, json.dumps(hc, sort_keys=True), tls[0] if tls else None)
        self.interval = _duration(hc.get("interval"), DEFAULT_INTERVAL, "interval", service)
        self.unhealthy_interval = _duration(hc.get("unhealthyInterval"), self.interval,
                                            "unhealthy interval", service)
        self.timeout = _duration(hc.get("timeout"), DEFAULT_TIMEOUT, "timeout", service)
        self.method = (hc.get("method") or "GET").upper()
        self.hostname = hc.get("hostname") or ""
        self.headers = [(_canonical(str(k)), str(v)) for k, v in
                        sorted((hc.get("headers") or {}).items())]
        self.status = int(hc.get("status") or 0)
        self.follow = hc.get("followRedirects", True) is not False
        self.up = True                 # Traefik: servers are UP until a check says otherwise
        self.next_at = now + self.interval   # the first check comes one interval after start
        self.probe = None


def _numeric(host, port):
    # an IP literal's address, without a lookup (AI_NUMERICHOST never asks DNS); None: a name
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None
    return [(infos[0][0], infos[0][4])]


class HealthChecks:
    """The master's health checkers: targets from the config, probes in the master's loop.

    ``sel``: the master's selector (probe sockets are registered with the Probe as data);
    ``changes`` collects (service, url, up) until the master sends them to the workers.
    """

    def __init__(self, sel=None, lookup=None):
        self.sel = sel
        self.targets = {}              # key -> Target
        self.changes = []
        # backend names resolve as the workers' do (pyroute.proxy.dns.Resolver): looked up
        # per probe in a thread, the answer handed to this loop through an eventfd
        self.resolvers = {}            # (host, port) -> Resolver
        self.lookup = lookup           # the resolver hook (default: getaddrinfo)
        self._soon = collections.deque()
        self._wakeup = None            # _Wakeup on ``sel``, made by the first lookup

    def resolve(self, host, port, callback):
        """Look ``host`` up off the loop; ``callback(primaries, fallbacks, error)`` runs in
        this loop (from ``sel``'s events). Called on the master's loop."""
        if self._wakeup is None:
            self._wakeup = _Wakeup(self)
        resolver = self.resolvers.get((host, port))
        if resolver is None:
            resolver = self.resolvers[(host, port)] = Resolver(host, port, self.lookup)
        resolver.resolve(self, callback)

    def call_soon_threadsafe(self, fn, *args):
        """From the resolver's thread: run ``fn(*args)`` in the master's loop soon."""
        self._soon.append((fn, args))
        self._wakeup.poke()

    def run_soon(self):
        soon = self._soon
        while soon:
            fn, args = soon.popleft()
            fn(*args)

    def configure(self, config, now=None):
        """Targets for ``config``; a server whose service and settings stay keeps its status."""
        from ..proxy.snapshot import _client_tls
        now = time.monotonic() if now is None else now
        dynamic = config.dynamic
        services = dynamic.get("http", {}).get("services", {})
        # filled aside, then swapped in whole: the API thread reads self.targets meanwhile
        old, targets = self.targets, {}
        tls_cache = {}
        used = _used_services(dynamic)
        for name, spec in sorted(services.items()):
            if name not in used:
                continue                 # Traefik checks only the services routers build
            lb = spec.get("loadBalancer")
            if not lb or spec.get("status") == "disabled" or lb.get("healthCheck") is None:
                continue
            hc = lb["healthCheck"]
            for server in lb.get("servers") or ():
                url = server.get("url") or ""
                try:
                    purl = probe_url(url, hc)
                    parts = urlsplit(purl)
                    tls = None
                    if parts.scheme == "https":
                        ck = (lb.get("serversTransport") or "", parts.hostname)
                        if ck not in tls_cache:
                            tls_cache[ck] = _client_tls(dynamic, lb.get("serversTransport"),
                                                        parts.hostname)
                        tls = tls_cache[ck]
                    t = Target(name, url, hc, tls, now)
                except (ValueError, OSError, ssl.SSLError) as e:
                    # the workers refuse what cannot be built; the master just cannot probe it
                    log("error", "cannot set up the health check", serviceName=name,
                        targetURL=url, error=str(e))
                    continue
                if t.key in targets:
                    continue             # Traefik keys a service's targets by URL
                prev = old.pop(t.key, None)
                if prev is not None:
                    t.up, t.next_at, t.probe = prev.up, prev.next_at, prev.probe
                    if t.probe is not None:
                        t.probe.target = t
                targets[t.key] = t
        self.targets = targets
        for t in old.values():
            if t.probe is not None:
                t.probe.close()

    def down(self):
        """Every server now down: (service, url, False) — what a new worker needs."""
        return [(t.service, t.url, False) for t in self.targets.values() if not t.up]

    def timeout(self, now):
        """Seconds until something is due (a probe to start or to time out)."""
        best = None
        for t in self.targets.values():
            at = t.probe.deadline if t.probe is not None else t.next_at
            if t.probe is not None and t.probe.dial is not None:
                at = min(at, t.probe.dial.due())
            best = at if best is None or at < best else best
        return None if best is None else max(0.0, best - now)

    def run_due(self, now):
        for t in list(self.targets.values()):
            if t.probe is not None:
                if now >= t.probe.deadline:
                    t.probe.fail("HTTP request failed: context deadline exceeded "
                                 "(timeout %gs)" % t.timeout)
                elif t.probe.dial is not None:
                    t.probe.dial.tick(now)   # an address's share over, the fallback's start
            elif now >= t.next_at:
                Probe(self, t, now)          # sets t.probe; a result clears it

    def result(self, target, error):
        """A probe ended: ``error`` None means healthy."""
        target.probe = None
        if self.targets.get(target.key) is not target:
            return                       # dropped by a reload meanwhile
        up = error is None
        if not up:
            log("warn", "Health check failed.", serviceName=target.service,
                targetURL=target.url, error=error)
        if up != target.up:
            target.up = up
            log("info", "Health check status changed", serviceName=target.service,
                targetURL=target.url, status="UP" if up else "DOWN")
            self.changes.append((target.service, target.url, up))
        # Traefik: healthy targets wait ``interval``, unhealthy ones ``unhealthyInterval``
        started = target.next_at
        step = target.interval if up else target.unhealthy_interval
        now = time.monotonic()
        target.next_at = started + step if started + step > now else now

    def take_changes(self):
        changes, self.changes = self.changes, []
        return changes


class Probe:
    """One health-check request, driven by the master's selector (never blocks)."""
    __slots__ = ("checks", "target", "deadline", "url", "method", "host", "redirects", "sock",
                 "state", "out", "buf", "registered", "dial", "dialing", "done", "grpc")

    def __init__(self, checks, target, now):
        self.checks = checks
        self.target = target
        target.probe = self
        target.next_at = now
        self.deadline = now + target.timeout         # covers redirects too (Go's context)
        self.url = probe_url(target.url, target.hc)
        self.method = target.method
        self.host = target.hostname
        self.redirects = 0
        self.sock = None
        self.registered = False
        self.done = False
        self.dial = None             # the _Dial connecting, None once connected
        self.grpc = None             # mode grpc: the _GrpcReply being read
        self.state = _CONNECTING
        try:
            self._connect()
        except (OSError, ValueError) as e:
            self.fail("HTTP request failed: %s" % e)

    def _request(self, parts):
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host = self.host or parts.netloc
        lines = ["%s %s HTTP/1.1" % (self.method, path), "Host: " + host]
        names = {n.lower() for n, _ in self.target.headers}
        if "user-agent" not in names:
            lines.append("User-Agent: Go-http-client/1.1")   # what Traefik's probes send
        lines += ["%s: %s" % (n, v) for n, v in self.target.headers if n.lower() != "host"]
        if self.method != "HEAD" and "accept-encoding" not in names:
            lines.append("Accept-Encoding: gzip")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _connect(self):
        parts = urlsplit(self.url)
        if self.target.hc.get("mode") == "grpc":
            self._connect_grpc()
            return
        if parts.scheme not in ("http", "https"):
            raise ValueError("unsupported protocol scheme %r" % parts.scheme)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.dialing = "%s:%d" % (parts.hostname, port)
        self.out = self._request(parts)
        self.buf = b""
        addrs = _numeric(parts.hostname, port)
        if addrs is not None:
            self.state = _CONNECTING
            self.dial = _Dial(self, addrs, [], time.monotonic())
            return
        # a name: looked up for this probe, as the workers' dialer does (pyroute.proxy.dns)
        self.state = _RESOLVING
        self.checks.resolve(parts.hostname, port, self._resolved)

    def _connect_grpc(self):
        # Traefik's checkHealthGRPC: the server's host and port (healthCheck.port replaces
        # it; path, hostname, headers and method play no part), plaintext HTTP/2 unless
        # healthCheck.scheme asks for something else, which grpc.DialContext then refuses
        # for want of transport credentials
        parts = urlsplit(self.target.url)
        if (self.target.hc.get("scheme") or "") not in ("", "http", "h2c"):
            raise ValueError("grpc: no transport security set (use grpc.WithTransportCredentials"
                             "(insecure.NewCredentials()) explicitly or set credentials)")
        port = int(self.target.hc.get("port") or parts.port or 80)
        self.dialing = "%s:%d" % (parts.hostname, port)
        self.out = _grpc_check_request(self.dialing)
        self.buf = b""
        self.grpc = _GrpcReply()
        addrs = _numeric(parts.hostname, port)
        if addrs is not None:
            self.state = _CONNECTING
            self.dial = _Dial(self, addrs, [], time.monotonic())
            return
        self.state = _RESOLVING
        self.checks.resolve(parts.hostname, port, self._resolved)

    def _resolved(self, primaries, fallbacks, error):
        if self.done or self.state != _RESOLVING:
            return          # timed out, or dropped by a reload, meanwhile
        if not primaries:
            self.fail("HTTP request failed: dial tcp: %s" % error)
            return
        self.state = _CONNECTING
        self.dial = _Dial(self, primaries, fallbacks, time.monotonic())

    def dial_connected(self, sock):
        """The dialer's winning socket, connected: TLS or the request next."""
        self.dial = None
        self.sock = sock
        self.registered = False
        self._watch(True)
        self.on_event(selectors.EVENT_WRITE)

    def dial_failed(self, err):
        self.dial = None
        self.fail("HTTP request failed: dial tcp %s: %s" % (self.dialing, err))

    def _watch(self, write):
        mask = selectors.EVENT_WRITE if write else selectors.EVENT_READ
        if self.registered:
            self.checks.sel.modify(self.sock, mask, self)
        else:
            self.checks.sel.register(self.sock, mask, self)
            self.registered = True

    def on_event(self, mask):
        if self.state == _CONNECTING and not mask & selectors.EVENT_WRITE:
            return      # a stale event for the socket a redirect replaced in this batch
        try:
            self._step()
        except ssl.SSLError as e:
            self.fail("HTTP request failed: tls: %s" % (e.reason or e))
        except (OSError, ValueError) as e:
            self.fail("HTTP request failed: %s" % e)

    def _step(self):
        if self.state == _CONNECTING:
            tls = self.target.tls if urlsplit(self.url).scheme == "https" else None
            if tls is not None:
                self.checks.sel.unregister(self.sock)
                self.registered = False
                self.sock = tls[1].wrap_socket(self.sock, server_hostname=tls[2],
                                               do_handshake_on_connect=False)
                self.state = _HANDSHAKE
            else:
                self.state = _SENDING
        if self.state == _HANDSHAKE:
            try:
                self.sock.do_handshake()
            except ssl.SSLWantReadError:
                self._watch(False)
                return
            except ssl.SSLWantWriteError:
                self._watch(True)
                return
            self.state = _SENDING
        if self.state == _SENDING:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._watch(True)
                return
            self.out = self.out[n:]
            if self.out:
                self._watch(True)
                return
            self.state = _READING
            self._watch(False)
            return
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            if not data:
                raise OSError(0, "EOF before a response head")
            if self.grpc is not None:
                if self._grpc_response(data):
                    return
                continue
            self.buf += data
            if self._response():
                return
            if len(self.buf) > MAX_HEAD:
                raise ValueError("response head too large")

    def _response(self):
        """Parse what was read; True when the probe is over (or restarted for a redirect)."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            lines = head.split(b"\r\n")
            try:
                code = int(lines[0].split()[1])
            except (IndexError, ValueError):
                raise ValueError("malformed HTTP response %r" % lines[0][:80]) from None
            if 100 <= code < 200 and code != 101:
                continue                    # interim response: the real one follows
            break
        location = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"location":
                location = value.strip().decode("latin-1")
        t = self.target
        if t.follow and code in _REDIRECTS and location:
            self.redirects += 1
            if self.redirects > MAX_REDIRECTS:
                self.fail("HTTP request failed: stopped after %d redirects" % MAX_REDIRECTS)
                return True
            # Go's redirectBehavior: 301/302/303 turn other methods into GET; a Host set
            # by hand survives only a relative redirect
            if code in (301, 302, 303) and self.method not in ("GET", "HEAD"):
                self.method = "GET"
            if urlsplit(location).netloc:
                self.host = ""
            self.url = urljoin(self.url, location)
            self._close_socket()
            self._connect()
            return True
        if t.status == 0 and not 200 <= code < 400:
            self.fail("received error status code: %d" % code)
        elif t.status and code != t.status:
            self.fail("received error status code: %d expected status code: %d"
                      % (code, t.status))
        else:
            self.done = True
            self._close_socket()
            self.checks.result(t, None)
        return True

    def _grpc_response(self, data):
        """Frames of the Check call's answer; True when the probe is over."""
        g = self.grpc
        error = g.feed(data)
        if error is None and not g.done:
            return False
        if error is None:
            if g.status != 0:
                error = _grpc_error(g.status, g.message)
            elif g.serving != 1:
                error = "received gRPC status code: %s" % _SERVING_NAMES.get(
                    g.serving, str(g.serving))
        if error is not None:
            self.fail("checking gRPC health: " + error)
        else:
            self.done = True
            self._close_socket()
            self.checks.result(self.target, None)
        return True

    def _close_socket(self):
        if self.dial is not None:
            self.dial.close()
            self.dial = None
        if self.sock is not None:
            if self.registered:
                try:
                    self.checks.sel.unregister(self.sock)
                except (KeyError, ValueError):
                    pass
                self.registered = False
            self.sock.close()
            self.sock = None

    def fail(self, error):
        self.done = True
        self._close_socket()
        self.checks.result(self.target, error)

    def close(self):
        """Dropped by a reload: no result."""
        self.done = True
        self._close_socket()


# ---- mode grpc: one grpc.health.v1.Health/Check call over HTTP/2 (prior knowledge) ------

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SERVING_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_GRPC_CODES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
               "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
               "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
               "Unauthenticated")


def _h2_frame(ftype, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + \
        sid.to_bytes(4, "big") + payload


def _grpc_check_request(authority):
    """The connection preface, SETTINGS, and the Check call: HEADERS as grpc-go sends them
    and one DATA frame with the empty HealthCheckRequest (Traefik sends no service name)."""
    from .._engine.hpack import Encoder
    block = Encoder().encode([
        (b":method", b"POST"), (b":scheme", b"http"), (b":authority", authority.encode()),
        (b":path", b"/grpc.health.v1.Health/Check"), (b"content-type", b"application/grpc"),
        (b"user-agent", b"grpc-go/1.72.0"), (b"te", b"trailers")])
    return (_H2_PREFACE + _h2_frame(4, 0, 0, b"") + _h2_frame(1, 4, 1, block)
            + _h2_frame(0, 1, 1, b"\x00\x00\x00\x00\x00"))


def _grpc_error(code, message):
    name = _GRPC_CODES[code] if 0 <= code < len(_GRPC_CODES) else "Code(%d)" % code
    text = "rpc error: code = %s desc = %s" % (name, message)
    if code == 12:
        return "gRPC server does not implement the health protocol: " + text
    if code == 4:
        return "gRPC health check timeout: " + text
    return "gRPC health check failed: " + text


class _GrpcReply:
    """Reads the server's frames for stream 1: the response headers, the message (a
    HealthCheckResponse: field 1, the status enum) and the trailers (grpc-status)."""
    __slots__ = ("buf", "decoder", "status", "message", "serving", "body", "done", "block")

    def __init__(self):
        from .._engine.hpack import Decoder
        self.buf = b""
        self.decoder = Decoder()
        self.status = None
        self.message = ""
        self.serving = 0
        self.body = b""
        self.done = False
        self.block = b""

    def feed(self, data):
        """None while all is well (``done`` once the call ended), else the error."""
        self.buf += data
        while len(self.buf) >= 9 and not self.done:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
            payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
            if ftype in (1, 9) and sid == 1:           # HEADERS, CONTINUATION
                if ftype == 1 and flags & 0x8:
                    payload = payload[1:len(payload) - payload[0]]
                if ftype == 1 and flags & 0x20:
                    payload = payload[5:]
                self.block += payload
                if flags & 0x4:
                    fields = dict(self.decoder.decode(self.block))
                    self.block = b""
                    if b":status" in fields and fields[b":status"] != b"200":
                        return "gRPC health check failed: rpc error: code = Unknown desc = " \
                            "unexpected HTTP status code %s" % fields[b":status"].decode()
                    if b"grpc-status" in fields:
                        self.status = int(fields[b"grpc-status"])
                        self.message = fields.get(b"grpc-message", b"").decode("latin-1")
                if flags & 0x1:
                    return self._end()
            elif ftype == 0 and sid == 1:              # DATA
                if flags & 0x8:
                    payload = payload[1:len(payload) - payload[0]]
                self.body += payload
                if flags & 0x1:
                    return self._end()
            elif ftype == 3 and sid == 1:              # RST_STREAM
                return "gRPC health check failed: stream reset (code %d)" % \
                    int.from_bytes(payload[:4], "big")
            elif ftype == 7:                           # GOAWAY
                return "gRPC health check failed: connection closed (GOAWAY)"
        return None

    def _end(self):
        self.done = True
        if self.status is None:
            return "gRPC health check failed: rpc error: code = Internal desc = " \
                "server closed the stream without sending trailers"
        msg = self.body[5:] if len(self.body) >= 5 else b""
        if len(msg) >= 2 and msg[0] == 0x08:
            self.serving = msg[1]
        return None


class _Wakeup:
    """An eventfd on the master's selector: the resolver's thread pokes it, the loop runs
    what it handed over (``HealthChecks.run_soon``)."""
    __slots__ = ("checks", "fd")

    def __init__(self, checks):
        self.checks = checks
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        checks.sel.register(self.fd, selectors.EVENT_READ, self)

    def poke(self):
        os.eventfd_write(self.fd, 1)

    def on_event(self, mask):
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass
        self.checks.run_soon()


# Go's net.Dialer.FallbackDelay default, as the workers' (engine/conn.pyx FALLBACK_DELAY)
FALLBACK_DELAY = 0.3


def _share(deadline, now, left):
    # Go's partialDeadline: the time left shared by the addresses left, at least 2 s (or
    # what is left, if less)
    rest = deadline - now
    share = rest / max(1, left)
    if share < 2.0:
        share = rest if rest < 2.0 else 2.0
    return now + share


class _Dial:
    """A probe's dial, as the workers' (engine UpstreamConn) and Go's dialer: the primaries one
    at a time, each with its share of the probe's deadline (dialSerial), the other family
    racing them after FALLBACK_DELAY, at once when the primaries are out (dialParallel); the
    first connect wins, the other attempt is closed; the primaries' error when both fail."""
    __slots__ = ("probe", "racers", "fallbacks", "fallback_at", "error")

    def __init__(self, probe, primaries, fallbacks, now):
        self.probe = probe
        self.racers = []
        self.fallbacks = fallbacks or None
        self.fallback_at = now + FALLBACK_DELAY if fallbacks else 0.0
        self.error = None
        self._race(primaries, True, now)

    def _race(self, addrs, primary, now):
        racer = _Racer(self, addrs, primary)
        self.racers.append(racer)
        racer.connect(now)

    def due(self):
        at = [r.deadline for r in self.racers]
        if self.fallback_at:
            at.append(self.fallback_at)
        return min(at) if at else self.probe.deadline

    def tick(self, now):
        if self.fallback_at and now >= self.fallback_at:
            self._start_fallback(now)
        for r in list(self.racers):
            if r in self.racers and now >= r.deadline:
                r.next(now, "i/o timeout")

    def _start_fallback(self, now):
        self.fallback_at = 0.0
        fallbacks, self.fallbacks = self.fallbacks, None
        if fallbacks:
            self._race(fallbacks, False, now)

    def failed(self, racer, error):
        self.racers.remove(racer)
        if racer.primary:
            self.error = error
            if self.fallbacks:
                self._start_fallback(time.monotonic())
                return
        if not self.racers and self.fallbacks is None:
            self.probe.dial_failed(self.error or error)

    def connected(self, racer):
        for r in self.racers:
            if r is not racer:
                r.close()
        self.racers = []
        self.fallbacks = None
        self.probe.dial_connected(racer.take())

    def close(self):
        for r in self.racers:
            r.close()
        self.racers = []
        self.fallbacks = None


class _Racer:
    """One family's addresses dialed one at a time on the master's selector."""
    __slots__ = ("dial", "addrs", "primary", "sock", "deadline")

    def __init__(self, dial, addrs, primary):
        self.dial = dial
        self.addrs = list(addrs)
        self.primary = primary
        self.sock = None
        self.deadline = 0.0

    def connect(self, now):
        sel = self.dial.probe.checks.sel
        while self.addrs:
            family, addr = self.addrs[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            if err in (0, errno.EINPROGRESS, errno.EAGAIN):
                self.sock = sock
                self.deadline = _share(self.dial.probe.deadline, now, len(self.addrs))
                sel.register(sock, selectors.EVENT_WRITE, self)
                return
            sock.close()
            self.addrs.pop(0)
            if not self.addrs:
                self.dial.failed(self, os.strerror(err))
                return

    def next(self, now, error):
        """This address failed (``error``): the next one, or the racer is out."""
        self.close()
        self.addrs.pop(0)
        if self.addrs:
            self.connect(now)
        else:
            self.dial.failed(self, error)

    def on_event(self, mask):
        if self.sock is None:
            return
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.next(time.monotonic(), os.strerror(err))
        else:
            self.dial.connected(self)

    def take(self):
        sock, self.sock = self.sock, None
        self.dial.probe.checks.sel.unregister(sock)
        return sock

    def close(self):
        if self.sock is not None:
            try:
                self.dial.probe.checks.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()
            self.sock = None
