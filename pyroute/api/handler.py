"""The API's routes (Traefik v3.7 pkg/api, handler*.go) and pyroute's additions.

``Api.handle(method, target, body)`` answers one request from the current :class:`Model`
and returns ``(status, [(header, value)], body)``; pyroute.api.server puts it on a socket.
Everything here runs on the API thread of the master: it reads the model (replaced whole on
each reload, never mutated), the health checker's servers and the worker slots, and writes
nothing the master reads.
"""
import json
import os
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

from ..server import handoff
from .model import Model

DEFAULT_PER_PAGE = 100
NEXT_PAGE = "X-Next-Page"
MAX_BODY = 1 << 20
DASHBOARD_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "dashboard")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                  ".png": "image/png", ".ico": "image/x-icon", ".txt": "text/plain"}


class BadRequest(Exception):
    pass


def encode(obj):
    """JSON as Go's json.Encoder writes it: compact, HTML-safe escapes, newline-terminated."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return (text + "\n").encode()


def _error(message, code):
    # Go's http.Error: text/plain, nosniff, the JSON apiError as the body
    return code, [("Content-Type", "text/plain; charset=utf-8"),
                  ("X-Content-Type-Options", "nosniff")], encode({"message": message})


def _json(obj, extra=()):
    return 200, [("Content-Type", "application/json")] + list(extra), encode(obj)


def _not_found():
    return 404, [("Content-Type", "text/plain; charset=utf-8"),
                 ("X-Content-Type-Options", "nosniff")], b"404 page not found\n"


def _int_param(query, key, default):
    raw = (query.get(key) or [""])[0]
    if raw == "":
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        value = 0
        raise BadRequest("invalid request: %s: %d" % (key, value)) from None
    if value <= 0:
        raise BadRequest("invalid request: %s: %d" % (key, value))
    return value


def paginate(query, items):
    """criterion.go pagination: (page of items, X-Next-Page)."""
    per_page = _int_param(query, "per_page", DEFAULT_PER_PAGE)
    page = _int_param(query, "page", 1)
    start = (page - 1) * per_page
    if start != 0 and start >= len(items):
        raise BadRequest("invalid request: page: %d, per_page: %d" % (page, per_page))
    end = min(start + per_page, len(items))
    nxt = page + 1 if page * per_page < len(items) else 1
    return items[start:end], nxt


class Criterion:
    """criterion.go searchCriterion (None when no filter is set)."""

    def __init__(self, query):
        get = lambda k: (query.get(k) or [""])[0]   # noqa: E731  url.Values.Get: the first
        self.search = get("search")
        self.status = get("status")
        self.service = get("serviceName")
        self.middleware = get("middlewareName")

    @classmethod
    def of(cls, query):
        c = cls(query)
        return c if (c.search or c.status or c.service or c.middleware) else None

    def with_status(self, status):
        return not self.status or (status or "").lower() == self.status.lower()

    def search_in(self, *values):
        return not self.search or any(self.search.lower() in (v or "").lower() for v in values)

    def filter_service(self, name):
        if not self.service:
            return True
        name = name or ""
        if "@" in name:
            return self.service == name
        return self.service.split("@", 1)[0] == name

    def filter_middleware(self, names):
        return not self.middleware or self.middleware in (names or ())


def _sort(query, items, keys):
    """sort.go: ``sortBy`` one of ``keys`` (else name), ``direction`` asc (default) or
    anything else for descending; ties by name."""
    by = (query.get("sortBy") or [""])[0]
    desc = ((query.get("direction") or ["asc"])[0] or "asc") != "asc"
    fn = keys.get(by)
    if fn is None:
        items.sort(key=lambda r: r["name"], reverse=desc)
    else:
        items.sort(key=lambda r: (fn(r), r["name"]), reverse=desc)


_ROUTER_KEYS = {
    "provider": lambda r: r.get("provider", ""),
    "priority": lambda r: r.get("priority") or 0,
    "status": lambda r: r.get("status", ""),
    "rule": lambda r: r.get("rule", ""),
    "service": lambda r: r.get("service", ""),
    "entryPoints": lambda r: len(r.get("entryPoints") or ()),
}
_SERVICE_KEYS = {
    "type": lambda s: s.get("type", ""),
    "servers": lambda s: len((s.get("loadBalancer") or {}).get("servers") or ()),
    "provider": lambda s: s.get("provider", ""),
    "status": lambda s: s.get("status", ""),
}
_MIDDLEWARE_KEYS = {
    "type": lambda m: m.get("type", ""),
    "provider": lambda m: m.get("provider", ""),
    "status": lambda m: m.get("status", ""),
}


class Api:
    """The API's state in the master: the current model, the last reload, the processes."""

    def __init__(self, config, api_static, version):
        self.settings = api_static
        self.version = version
        self.start_date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.model = Model(config, 1)
        self.health = None        # pyroute.server.health.HealthChecks (set by the master)
        self.slots = ()           # the master's worker slots
        self.rates = None         # pyroute.observability.rates.Rates, with metrics
        self.explainer = None     # (generation, Explainer), built on first use
        self.last_reload = {"ok": True, "trigger": "start", "time": self.start_date,
                            "generation": 1, "error": None}
        base = (api_static.base_path or "/").rstrip("/")
        self.base = base
        self._lock = threading.Lock()
        self._seq = self._model_seq = self._result_seq = 0
        self._applied = 0         # reloads applied (generation = 1 + this)

    # -- updates from the master (its thread) -------------------------------------------
    # Each event gets a sequence number from the master's thread; a configuration the API
    # unpickles on a thread of its own (reloaded_payload) is installed only if nothing newer
    # was meanwhile, so the API never goes back to an older configuration or result.
    def reloaded(self, config, trigger):
        self._seq += 1
        self._applied += 1
        self._install(self._seq, Model(config, self._applied + 1), trigger)

    def reloaded_payload(self, payload, trigger):
        """The master keeps only a small view of a reloaded configuration (it never
        unpickles it): the API does, off the master's thread."""
        self._seq += 1
        self._applied += 1
        threading.Thread(target=self._build, args=(self._seq, self._applied + 1, payload,
                                                   trigger),
                         name="pyroute-api-load", daemon=True).start()

    def _build(self, seq, generation, payload, trigger):
        try:
            model = Model(handoff.loads(payload), generation)
        except Exception as e:   # the workers have it; only the API cannot show it
            self._result(seq, {"ok": True, "trigger": trigger, "time": _now(),
                               "generation": self.model.generation,
                               "error": "the API cannot read this configuration: %r" % e})
            return
        self._install(seq, model, trigger)

    def _install(self, seq, model, trigger):
        with self._lock:
            if seq > self._model_seq:
                self._model_seq = seq
                self.model = model
        self._result(seq, {"ok": True, "trigger": trigger, "time": _now(),
                           "generation": model.generation, "error": None})

    def refused(self, trigger, error):
        self._seq += 1
        self._result(self._seq, {"ok": False, "trigger": trigger, "time": _now(),
                                 "generation": self.model.generation, "error": str(error),
                                 "refusedProblems": [_problem(e) for e in
                                                     getattr(error, "errors", ()) or ()
                                                     if hasattr(e, "message")]})

    def _result(self, seq, result):
        with self._lock:
            if seq > self._result_seq:
                self._result_seq = seq
                self.last_reload = result

    # -- reading (the API thread) ---------------------------------------------------------
    def down(self):
        """(service, url) of every server the health checker has down now."""
        if self.health is None:
            return frozenset()
        targets = list(self.health.targets.values())   # one C-level copy: no race
        return frozenset((t.service, t.url) for t in targets if not t.up)

    def handle(self, method, target, body=b"", internal=False, headers=None):
        """``internal``: the request came through ``api@internal`` (a worker's route);
        ``headers``: the request's (unused here)."""
        parts = urlsplit(target)
        raw_path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        base = self.base
        if base:
            if raw_path != base and not raw_path.startswith(base + "/"):
                return _not_found()
            raw_path = raw_path[len(base):] or "/"
        try:
            if raw_path.startswith("/api/"):
                return self._api(method, raw_path, query, body)
            if self.settings.dashboard:
                return self._dashboard(method, raw_path, internal)
        except BadRequest as e:
            return _error(str(e), 400)
        return _not_found()

    # -- /api -------------------------------------------------------------------------
    def _api(self, method, path, query, body):
        m = self.model
        if path.startswith("/api/pyroute/"):
            return self._pyroute(method, path[len("/api/pyroute/"):], query, body)
        if method not in ("GET", "HEAD"):
            return 405, [], b""
        if path == "/api/version":
            v = {"Version": self.version, "Codename": "pyroute", "startDate": self.start_date}
            if self.settings.disable_dashboard_ad:
                v["disableDashboardAd"] = True
            if self.settings.dashboard_name:
                v["dashboardName"] = self.settings.dashboard_name
            return _json(v)
        if path == "/api/overview":
            return _json(m.overview())
        if path == "/api/rawdata":
            return _json(m.rawdata(self.down()))
        if path == "/api/entrypoints":
            items = [m.entry_point(n) for n in sorted(m.entry_points)]
            page, nxt = paginate(query, items)
            return _json(page, [(NEXT_PAGE, str(nxt))])
        if path.startswith("/api/entrypoints/"):
            name = _unescape(path[len("/api/entrypoints/"):], "entryPointID")
            if name not in m.entry_points:
                return _error("entry point not found: %s" % name, 404)
            return _json(m.entry_point(name))
        for proto in ("http", "tcp", "udp"):
            prefix = "/api/%s/" % proto
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            kind, sep, ident = rest.partition("/")
            kinds = ("routers", "services", "middlewares") if proto != "udp" else (
                "routers", "services")
            if kind not in kinds or (sep and not ident):
                return _not_found()
            if proto != "http":
                if sep:
                    name = _unescape(ident, {"routers": "routerID", "services": "serviceID",
                                             "middlewares": "middlewareID"}[kind])
                    what = {"routers": "router", "services": "service",
                            "middlewares": "middleware"}[kind]
                    return _error("%s not found: %s" % (what, name), 404)
                paginate(query, [])
                return _json([], [(NEXT_PAGE, "1")])
            return self._http(kind, ident if sep else None, query)
        if path in ("/api/certificates",) or path.startswith("/api/certificates/"):
            return _not_found()
        return _not_found()

    def _http(self, kind, ident, query):
        m = self.model
        if kind == "routers":
            table, one, what, idname = m.routers, m.router, "router", "routerID"
        elif kind == "services":
            down = self.down()
            table, one, what, idname = m.services, (lambda n: m.service(n, down)), "service", \
                "serviceID"
        else:
            table, one, what, idname = m.middlewares, m.middleware, "middleware", \
                "middlewareID"
        if ident is not None:
            name = _unescape(ident, idname)
            if name not in table:
                return _error("%s not found: %s" % (what, name), 404)
            return _json(one(name))
        crit = Criterion.of(query)
        items = []
        for name, obj in table.items():
            if crit is not None:
                if not crit.with_status(obj.get("status")):
                    continue
                if kind == "routers":
                    if not (crit.search_in(obj.get("rule"), name)
                            and crit.filter_service(obj.get("service"))
                            and crit.filter_middleware(obj.get("middlewares"))):
                        continue
                elif not crit.search_in(name):
                    continue
            items.append(one(name))
        _sort(query, items, {"routers": _ROUTER_KEYS, "services": _SERVICE_KEYS,
                             "middlewares": _MIDDLEWARE_KEYS}[kind])
        page, nxt = paginate(query, items)
        return _json(page, [(NEXT_PAGE, str(nxt))])

    # -- /api/pyroute -----------------------------------------------------------------
    def _pyroute(self, method, what, query, body):
        m = self.model
        if what == "explain":
            if method == "POST":
                try:
                    req = json.loads(body or b"{}")
                except ValueError as e:
                    raise BadRequest("invalid JSON body: %s" % e) from None
                if not isinstance(req, dict):
                    raise BadRequest("expected a JSON object")
            elif method in ("GET", "HEAD"):
                req = {k: v[0] for k, v in query.items() if k != "header"}
                if "header" in query:
                    req["headers"] = query["header"]
            else:
                return 405, [], b""
            return _json(self.explain(req))
        if method not in ("GET", "HEAD"):
            return 405, [], b""
        if what == "generation":
            return _json({"generation": m.generation,
                          "health": sorted("%s %s" % d for d in self.down()),
                          "reload": self.last_reload})
        if what == "reload":
            return _json(dict(self.last_reload, problems=[
                _problem(e) for e in m.config.errors]))
        if what == "workers":
            return _json([_slot(s) for s in self.slots])
        if what == "rates":
            from ..observability.rates import OFF
            return _json(self.rates.report() if self.rates is not None else OFF)
        return _not_found()

    def explain(self, req):
        from ..manifests.explain import _public
        from ..manifests.trace import Explainer
        url = req.get("url")
        if not isinstance(url, str) or not url:
            raise BadRequest("explain: \"url\" is required (http://host/path, https://... "
                             "or /path with a Host header)")
        headers = req.get("headers") or []
        if isinstance(headers, dict):
            headers = list(headers.items())
        pairs = []
        for h in headers:
            if isinstance(h, str):
                name, sep, value = h.partition(":")
                if not sep or not name.strip():
                    raise BadRequest("explain: header %r is not 'Name: value'" % h)
                pairs.append((name.strip(), value.strip()))
            elif isinstance(h, (list, tuple)) and len(h) == 2:
                pairs.append((str(h[0]), str(h[1])))
            else:
                raise BadRequest("explain: headers are 'Name: value' strings or pairs")
        m = self.model
        cached = self.explainer
        if cached is None or cached[0] != m.generation:
            cached = self.explainer = (m.generation, Explainer(m.config))
        try:
            res = cached[1].explain(str(req.get("method") or "GET").upper(), url, pairs,
                                    str(req.get("client_ip") or req.get("clientIP")
                                        or "127.0.0.1"),
                                    req.get("entrypoint") or None, req.get("sni") or None)
        except ValueError as e:
            raise BadRequest("explain: %s" % e) from None
        return _public(res)

    # -- the dashboard ----------------------------------------------------------------
    def _dashboard(self, method, path, internal=False):
        if method not in ("GET", "HEAD"):
            return 405, [], b""
        base = self.base
        if path in ("/", "/dashboard"):
            # Traefik: on the traefik entry point / gets the dashboard_redirect middleware's
            # 301, /dashboard a 302; through api@internal, {basePath} gets a 302
            # (dashboard.Append). X-Forwarded-Prefix is not read: the client may have sent it
            code = 301 if path == "/" and not internal else 302
            return code, [("Location", base + "/dashboard/")], b""
        if not path.startswith("/dashboard/"):
            return _not_found()
        return self._asset(unquote(path[len("/dashboard/"):]) or "index.html")

    def dashboard_asset(self, method, target):
        """``dashboard@internal`` (Traefik's dashboard.Handler): the dashboard's files at
        the root, ``/`` the page itself — what the internal router ``dashboard@internal``
        reaches on the entry point ``traefik``, its stripprefix middleware having taken
        ``/dashboard`` off."""
        if method not in ("GET", "HEAD"):
            return 405, [], b""
        path = urlsplit(target).path
        if not path.startswith("/"):
            return _not_found()
        return self._asset(unquote(path[1:]) or "index.html")

    def _asset(self, name):
        if "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
            return _not_found()
        full = os.path.join(DASHBOARD_DIR, name)
        try:
            with open(full, "rb") as f:
                data = f.read()
        except OSError:
            return _not_found()
        if name == "index.html":
            data = data.replace(b"{{ .APIUrl }}", (self.base + "/api/").encode())
        ctype = _CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
        return 200, [("Content-Type", ctype), ("Cache-Control", "no-cache"),
                     ("X-Content-Type-Options", "nosniff"),
                     ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")], \
            data


def _unescape(ident, what):
    try:
        return unquote(ident, errors="strict")
    except UnicodeDecodeError as e:
        raise BadRequest("unable to decode %s %r: %s" % (what, ident, e)) from None


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _problem(e):
    return {"severity": getattr(e, "severity", "error"), "file": e.file, "line": e.line,
            "kind": e.kind, "namespace": e.namespace, "name": e.name, "field": e.field,
            "message": e.message}


def _slot(s):
    alive = bool(s.pid)
    if alive:
        try:
            os.kill(s.pid, 0)
        except OSError:
            alive = False
    return {"index": s.index, "pid": s.pid or None, "alive": alive,
            "restarts": max(0, getattr(s, "spawns", 1) - 1), "givenUp": s.given_up,
            "recentDeaths": len(s.deaths)}
