"""What pyroute does with every Traefik field it reads: the one list (issue #10).

Every field of the CRDs pyroute reads (``pyroute/schemas/``), every middleware kind and every
static configuration key has one status here:

- ``supported``: done as Traefik does it (the note says where pyroute differs in a detail);
- ``ignored``: read and accepted, but without effect: a configuration that sets it gets a
  warning from ``pyroute check`` and at start (``pyroute run``), naming the object and field;
- ``refused``: what pyroute cannot do is never served weaker: the object (or the routers using
  it) is disabled with an error (``pyroute check`` and ``run`` report the same, pyroute.verdict).

``ROWS`` holds the CRD fields: ``(kind, field pattern, status, note)``; a pattern covers the
fields below it unless a longer one says otherwise, and ``<svc>`` stands for every place a
service reference (a LoadBalancerSpec) is written. Middleware kinds and ``headers`` options
come from the middleware registry (pyroute.middlewares), static keys from
``pyroute.static.STATIC_KEYS`` when it exists (else ``STATIC_FALLBACK``). Objects of the kinds in
``IGNORED_KINDS`` are dropped with a warning.

``python -m pyroute.compat`` writes docs/compatibility.md from this (a test fails when the
committed page is stale); ``pyroute check --compat FILES`` prints the status of the fields those
files use.
"""
import json
import os
import sys

SUPPORTED, IGNORED, REFUSED = "supported", "ignored", "refused"

# Where a LoadBalancerSpec (a service reference) is written, per kind.
SERVICE_PLACES = {
    "IngressRoute": ("spec.routes[].services[]",),
    "TraefikService": ("spec.weighted.services[]", "spec.highestRandomWeight.services[]",
                       "spec.mirroring", "spec.mirroring.mirrors[]", "spec.failover.service",
                       "spec.failover.fallback"),
}

# The fields of a service reference (under each SERVICE_PLACES prefix).
SERVICE_ROWS = (
    ("", SUPPORTED, "a Kubernetes Service (ClusterIP, ExternalName) or a TraefikService"),
    ("name", SUPPORTED, ""),
    ("namespace", SUPPORTED, "allowCrossNamespace as Traefik"),
    ("kind", SUPPORTED, "Service or TraefikService"),
    ("port", SUPPORTED, ""),
    ("weight", SUPPORTED, ""),
    ("scheme", SUPPORTED, "http, https (h2 when ALPN picks it, else HTTP/1.1) and h2c "
                          "(HTTP/2 with prior knowledge); HTTP/2 multiplexed as Go's "
                          "transport: docs/http2.md"),
    ("strategy", SUPPORTED, "wrr, p2c, hrw; leasttime is refused (the routers using it are "
                            "disabled)"),
    ("serversTransport", SUPPORTED, ""),
    ("passHostHeader", SUPPORTED, ""),
    ("responseForwarding", SUPPORTED, "every read from the backend is written at once, which "
                                      "meets any flushInterval"),
    ("sticky", SUPPORTED, "Traefik's cookie name and value scheme"),
    ("healthCheck", SUPPORTED, "mode http and mode grpc (grpc.health.v1 Check over plaintext "
                               "HTTP/2, as Traefik)"),
    ("nativeLB", SUPPORTED, ""),
    ("nodePortLB", REFUSED, "needs Kubernetes Node objects, which pyroute does not read"),
    ("passiveHealthCheck", IGNORED, "passive health checks (failures counted on live "
                                    "traffic) are not implemented; servers stay in rotation"),
    ("middlewares", IGNORED, "service-level middlewares are not applied yet"),
)

ROWS = (
    ("IngressRoute", "spec.entryPoints", SUPPORTED, ""),
    ("IngressRoute", "spec.ingressClassName", SUPPORTED, "as providers.kubernetesCRD."
                                                         "ingressClass selects"),
    ("IngressRoute", "spec.parentRefs", SUPPORTED, "multi-layer routing (Traefik v3.6)"),
    ("IngressRoute", "spec.routes", SUPPORTED, ""),
    ("IngressRoute", "spec.routes[].kind", SUPPORTED, "Rule"),
    ("IngressRoute", "spec.routes[].match", SUPPORTED, "Traefik v3 rules (and the v2 syntax)"),
    ("IngressRoute", "spec.routes[].priority", SUPPORTED, ""),
    ("IngressRoute", "spec.routes[].syntax", SUPPORTED, ""),
    ("IngressRoute", "spec.routes[].middlewares", SUPPORTED, "each middleware kind: see "
                                                             "Middleware"),
    ("IngressRoute", "spec.routes[].observability", SUPPORTED, ""),
    ("IngressRoute", "spec.routes[].observability.accessLogs", SUPPORTED,
     "false: the router's requests are not in the access log"),
    ("IngressRoute", "spec.routes[].observability.tracing", SUPPORTED,
     "false: the router's requests get no spans and no traceparent is injected (the "
     "client's is forwarded untouched), as Traefik"),
    ("IngressRoute", "spec.routes[].observability.traceVerbosity", SUPPORTED,
     "minimal: entry point and ReverseProxy spans; detailed adds Router (child routers "
     "too), middleware, Retry (per attempt) and Service spans, each with its own start; "
     "unset: the entry point's, but a route with an observability section gets the CRD's "
     "default minimal (docs/observability.md, Tracing)"),
    ("IngressRoute", "spec.routes[].observability.metrics", SUPPORTED,
     "false: the router's requests are left out of metrics.prometheus (entry point, router "
     "and service series), as Traefik"),
    ("IngressRoute", "spec.tls", SUPPORTED, ""),
    ("IngressRoute", "spec.tls.secretName", SUPPORTED, ""),
    ("IngressRoute", "spec.tls.options", SUPPORTED, ""),
    ("IngressRoute", "spec.tls.store", SUPPORTED, "only the default store exists (as Traefik)"),
    ("IngressRoute", "spec.tls.certResolver", REFUSED,
     "no ACME resolver: an error; the store's (or the default) certificate is served"),
    ("IngressRoute", "spec.tls.domains", REFUSED,
     "no ACME resolver: an error; the store's (or the default) certificate is served"),

    ("TraefikService", "spec.weighted", SUPPORTED, ""),
    ("TraefikService", "spec.weighted.sticky", SUPPORTED, ""),
    ("TraefikService", "spec.weighted.healthCheck", SUPPORTED, "status propagation"),
    ("TraefikService", "spec.highestRandomWeight", SUPPORTED, ""),
    ("TraefikService", "spec.highestRandomWeight.healthCheck", SUPPORTED, "status propagation"),
    ("TraefikService", "spec.mirroring.mirrorBody", SUPPORTED, ""),
    ("TraefikService", "spec.mirroring.maxBodySize", SUPPORTED, ""),
    ("TraefikService", "spec.mirroring.mirrors[].percent", SUPPORTED, ""),
    ("TraefikService", "spec.mirroring.healthCheck", SUPPORTED, "status propagation"),
    ("TraefikService", "spec.failover", SUPPORTED, "on the main service's health-check "
                                                   "status"),
    ("TraefikService", "spec.failover.healthCheck", SUPPORTED, "status propagation"),
    ("TraefikService", "spec.failover.errors", REFUSED,
     "failover on status codes is not implemented: the routers using it are disabled"),

    ("ServersTransport", "spec", SUPPORTED, ""),
    ("ServersTransport", "spec.serverName", SUPPORTED, ""),
    ("ServersTransport", "spec.insecureSkipVerify", SUPPORTED, ""),
    ("ServersTransport", "spec.rootCAs", SUPPORTED, "Secrets and ConfigMaps"),
    ("ServersTransport", "spec.rootCAsSecrets", SUPPORTED, "deprecated (a warning, as Traefik)"),
    ("ServersTransport", "spec.certificatesSecrets", SUPPORTED, ""),
    ("ServersTransport", "spec.maxIdleConnsPerHost", SUPPORTED, ""),
    ("ServersTransport", "spec.disableHTTP2", SUPPORTED,
     "ALPN offers http/1.1 only to https servers (else h2, http/1.1)"),
    ("ServersTransport", "spec.peerCertURI", SUPPORTED,
     "a URI SAN must equal it, on top of the usual checks (else 502)"),
    ("ServersTransport", "spec.cipherSuites", SUPPORTED, "Go's names, as TLSOption's"),
    ("ServersTransport", "spec.minVersion", SUPPORTED, "as Traefik, refused without a "
                                                       "maxVersion above it"),
    ("ServersTransport", "spec.maxVersion", SUPPORTED, ""),
    ("ServersTransport", "spec.peerCertSANs", REFUSED,
     "Traefik v3.7; not verified by pyroute yet: the services using the transport are refused"),
    ("ServersTransport", "spec.spiffe", REFUSED,
     "needs a SPIFFE workload API: the services using the transport are refused"),
    ("ServersTransport", "spec.forwardingTimeouts", SUPPORTED, ""),
    ("ServersTransport", "spec.forwardingTimeouts.readIdleTimeout", SUPPORTED,
     "HTTP/2 backends: a PING after that long without a frame (Go's http2 health check)"),
    ("ServersTransport", "spec.forwardingTimeouts.pingTimeout", SUPPORTED,
     "HTTP/2 backends: no PING ACK within it (0: Go's 15s) closes the connection"),

    ("TLSOption", "spec", SUPPORTED, ""),
    ("TLSOption", "spec.alpnProtocols", SUPPORTED, "h2 and http/1.1 (acme-tls/1 never); h2 "
     "not on entry points with http2.enabled: false (pyroute extension: docs/http2.md), a "
     "warning there"),
    ("TLSOption", "spec.cipherSuites", SUPPORTED, ""),
    ("TLSOption", "spec.clientAuth", SUPPORTED, "all five clientAuthTypes"),
    ("TLSOption", "spec.curvePreferences", SUPPORTED, ""),
    ("TLSOption", "spec.disableSessionTickets", SUPPORTED, ""),
    ("TLSOption", "spec.minVersion", SUPPORTED, ""),
    ("TLSOption", "spec.maxVersion", SUPPORTED, ""),
    ("TLSOption", "spec.sniStrict", SUPPORTED, ""),
    ("TLSOption", "spec.preferServerCipherSuites", SUPPORTED, "deprecated in Traefik, no effect "
                                                              "there either"),

    ("TLSStore", "spec", SUPPORTED, "only the default store (as Traefik)"),
    ("TLSStore", "spec.certificates", SUPPORTED, ""),
    ("TLSStore", "spec.defaultCertificate", SUPPORTED, ""),
    ("TLSStore", "spec.defaultGeneratedCert", IGNORED,
     "needs an ACME resolver: the defaultCertificate (or a generated one) is served"),

    ("Middleware", "spec", SUPPORTED, ""),
    ("Middleware", "spec.forwardAuth.address", SUPPORTED,
     "http and https; one that is not an http(s) URL answers 500, as Traefik"),
    ("Middleware", "spec.forwardAuth.trustForwardHeader", SUPPORTED,
     "true, false and unset (Traefik's legacy writer, with its warning)"),
    ("Middleware", "spec.forwardAuth.authRequestHeaders", SUPPORTED, ""),
    ("Middleware", "spec.forwardAuth.authResponseHeaders", SUPPORTED, ""),
    ("Middleware", "spec.forwardAuth.authResponseHeadersRegex", SUPPORTED,
     "Python's re, not Go's RE2: the common syntax is the same"),
    ("Middleware", "spec.forwardAuth.addAuthCookiesToResponse", SUPPORTED,
     "Set-Cookie read and rewritten as Go's net/http does"),
    ("Middleware", "spec.forwardAuth.forwardBody", SUPPORTED, ""),
    ("Middleware", "spec.forwardAuth.maxBodySize", SUPPORTED, "over it: 401"),
    ("Middleware", "spec.forwardAuth.maxResponseBodySize", SUPPORTED, "over it: 401"),
    ("Middleware", "spec.forwardAuth.preserveLocationHeader", SUPPORTED, ""),
    ("Middleware", "spec.forwardAuth.preserveRequestMethod", SUPPORTED, ""),
    ("Middleware", "spec.forwardAuth.authSigninURL", SUPPORTED, "302 on the auth server's 401"),
    ("Middleware", "spec.forwardAuth.headerField", SUPPORTED,
     "the auth server's header names the user in the access log (ClientUsername)"),
    ("Middleware", "spec.forwardAuth.tls", SUPPORTED, "caSecret, certSecret, "
                                                      "insecureSkipVerify"),
    ("Middleware", "spec.forwardAuth.tls.caOptional", SUPPORTED,
     "deprecated, no effect in Traefik either (a warning)"),
)

# Notes on middleware kinds pyroute runs (the kind's row).
KIND_NOTES = {
    "chain": "flattened into the chain of each router and service using it at load; a chain "
             "that reaches itself is an error naming the Middleware",
    "ipWhiteList": "deprecated alias of ipAllowList (always 403): a warning, as Traefik logs",
    "redirectRegex": "the URL as Traefik's rawURL builds it (X-Forwarded-Proto is not read)",
}

# Notes on middleware kinds (the status comes from pyroute.middlewares.KINDS)
MIDDLEWARE_NOTES = {
    "plugin": "pyroute runs no plugins: the Middleware and the routers using it are "
              "disabled. Traefik Hub's middlewares (apiKey, jwt, oidc, ldap, hmac, opa, "
              "oAuthClientCredentials, oAuthIntrospection, distributedRateLimit, coraza) are "
              "written as plugins, which Traefik OSS refuses the same way (\"plugin: unknown "
              "plugin type\")",
    "contentType": "Go's sniffing (DetectContentType) on the first body bytes; none without "
                   "the middleware, as Traefik v3; autoDetect is deprecated (a warning)",
    "passTLSClientCert": "pem and every info field, in Traefik's header format; a TLS "
                         "session resumed on another worker than its full handshake passes "
                         "only the client's own certificate, not the chain it sent",
    "encodedCharacters": "Traefik v3.6's per-router check (400)",
}

# Ignored fields whose warning another module already gives, with more detail (pyroute.tls).
WARNED_ELSEWHERE = {("TLSStore", "spec.defaultGeneratedCert")}

# Traefik kinds pyroute does not serve: each object is dropped with a warning naming it.
IGNORED_KINDS = {
    "IngressRouteTCP": "TCP routing is not implemented",
    "IngressRouteUDP": "UDP routing is not implemented",
    "MiddlewareTCP": "TCP middlewares are not implemented",
    "ServersTransportTCP": "TCP routing is not implemented",
}

# Static keys, used until pyroute.static exposes STATIC_KEYS (its owner's table wins).
STATIC_FALLBACK = {
    "entryPoints.<name>.address": (SUPPORTED, ""),
    "entryPoints.<name>.asDefault": (SUPPORTED, ""),
    "entryPoints.<name>.transport": (SUPPORTED, ""),
    "entryPoints.<name>.forwardedHeaders": (SUPPORTED, ""),
    "entryPoints.<name>.http": (SUPPORTED, ""),
    "providers.kubernetesCRD": (SUPPORTED, "manifests read from files (paths)"),
    "log.level": (SUPPORTED, ""),
    "log.format": (SUPPORTED, ""),
    "accessLog": (SUPPORTED, ""),
}


def static_keys():
    """The static key table: pyroute.static.STATIC_KEYS when it exists, else the fallback."""
    from . import static
    keys = getattr(static, "STATIC_KEYS", None) or {}
    return dict(keys) if keys else dict(STATIC_FALLBACK)


# ---- the table ----------------------------------------------------------------------------

def _rows():
    rows = {}
    for kind, pattern, status, note in ROWS:
        rows[(kind, pattern)] = (status, note)
    from .proxy import snapshot
    # service-level middlewares: applied once the compiler wraps such services (``Chained``)
    service_mw = ((SUPPORTED, "after the router's, as Traefik") if hasattr(snapshot, "Chained")
                  else None)
    for kind, places in SERVICE_PLACES.items():
        for place in places:
            for sub, status, note in SERVICE_ROWS:
                if sub == "middlewares" and service_mw is not None:
                    status, note = service_mw
                key = (kind, place + ("." + sub if sub else ""))
                rows.setdefault(key, (status, note))
    from . import middlewares
    from .middlewares import headers
    kinds = getattr(middlewares, "KINDS", {})
    for kind in _middleware_kinds():
        if kind in kinds:
            # a kind's own note (pyroute.middlewares.<module>: ``compat_note``), else the
            # tables', where it differs
            rows[("Middleware", "spec." + kind)] = (
                SUPPORTED, getattr(kinds[kind], "compat_note", "") or KIND_NOTES.get(kind, "")
                or MIDDLEWARE_NOTES.get(kind, ""))
        else:
            rows[("Middleware", "spec." + kind)] = (
                REFUSED, MIDDLEWARE_NOTES.get(
                    kind, "not implemented: the Middleware and the routers using it are "
                          "disabled"))
    # headers options: the middleware module's lists (CUSTOM implemented; DEPRECATED no-ops,
    # as in Traefik v3; the security and CORS options refused)
    supported_headers = getattr(headers, "SUPPORTED", None) or getattr(headers, "CUSTOM", None)
    deprecated = getattr(headers, "DEPRECATED", {})
    if "headers" in kinds and supported_headers is not None:
        for option in _schema_children("Middleware", "spec.headers"):
            if option in deprecated:
                rows[("Middleware", "spec.headers." + option)] = (
                    SUPPORTED, "deprecated: no effect, in Traefik v3 either (a warning)")
    if "headers" in kinds and supported_headers is not None:
        for option in _schema_children("Middleware", "spec.headers"):
            if option in deprecated:
                continue
            rows[("Middleware", "spec.headers." + option)] = (
                (SUPPORTED, "") if option in supported_headers else
                (REFUSED, "not implemented: the routers using it are disabled"))
    return rows


_schema_cache = {}


def _schema(kind):
    if kind not in _schema_cache:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas",
                            kind + ".json")
        with open(path) as f:
            _schema_cache[kind] = json.load(f)
    return _schema_cache[kind]


def schema_fields(kind):
    """Every field path of a kind's spec (``spec.routes[].match``), in schema order."""
    out = []

    def walk(node, prefix):
        for key, sub in (node.get("properties") or {}).items():
            path = prefix + "." + key
            out.append(path)
            walk(sub, path)
        items = node.get("items")
        if isinstance(items, dict):
            walk(items, prefix + "[]")
    walk(_schema(kind).get("properties", {}).get("spec", {}), "spec")
    return out


_field_sets = {}


def _schema_field_set(kind):
    fs = _field_sets.get(kind)
    if fs is None:
        fs = _field_sets[kind] = frozenset(schema_fields(kind))
    return fs


def _schema_children(kind, path):
    return [f[len(path) + 1:] for f in schema_fields(kind)
            if f.startswith(path + ".") and "." not in f[len(path) + 1:]
            and "[" not in f[len(path) + 1:]]


def _middleware_kinds():
    return _schema_children("Middleware", "spec")


KINDS_WITH_SCHEMAS = ("IngressRoute", "Middleware", "TraefikService", "ServersTransport",
                      "TLSOption", "TLSStore")


def status(kind, path, rows=None):
    """``(status, note, row pattern)`` of a field path (``spec.routes[].services[].strategy``;
    list indexes written ``[]``): the longest row pattern covering it."""
    rows = rows if rows is not None else _table()
    probe = path
    while True:
        hit = rows.get((kind, probe))
        if hit is not None:
            return hit[0], hit[1], probe
        cut = max(probe.rfind("."), probe.rfind("[]"))
        if cut <= 0:
            return None, "", None
        probe = probe[:cut]


_TABLE = None


def _table():
    global _TABLE
    if _TABLE is None:
        _TABLE = _rows()
    return _TABLE


def table():
    """``[(kind, field, status, note)]``: every CRD field, middleware kind and static key."""
    rows = _table()
    out = []
    for kind in KINDS_WITH_SCHEMAS:
        for path in schema_fields(kind):
            if kind == "Middleware" and path.count(".") > 1 and not path.startswith(
                    ("spec.headers.", "spec.forwardAuth.")):
                continue      # a middleware kind's options follow its kind's status
            if kind == "Middleware" and path.startswith("spec.headers.") and \
                    path.count(".") > 2:
                continue
            st, note, pattern = status(kind, path, rows)
            # a note is written once, on the row that sets the status
            out.append((kind, path, st, note if pattern == path else ""))
    for kind, note in IGNORED_KINDS.items():
        out.append((kind, "(any)", IGNORED, note))
    for key, value in sorted(static_keys().items()):
        st, note = value if isinstance(value, (tuple, list)) else (value, "")
        out.append(("static", key, st, note))
    return out


# ---- what a configuration uses --------------------------------------------------------------

def _used_paths(value, prefix, out):
    if isinstance(value, dict):
        for k, v in value.items():
            path = "%s.%s" % (prefix, k) if prefix else str(k)
            out.append(path)
            _used_paths(v, path, out)
    elif isinstance(value, list):
        for v in value:
            _used_paths(v, prefix + "[]", out)


def _unset(value):
    return value is None or value == {} or value == [] or value == ""


_status_cache = {}      # (kind, field path) -> status(): paths are the schemas', so bounded


def object_warnings(obj):
    """Warnings (ConfigError) for the ignored fields a manifest object sets."""
    if obj.kind not in KINDS_WITH_SCHEMAS:
        return []
    rows = _table()
    cache = _status_cache
    out = []
    seen = set()
    kind = obj.kind

    fields = _schema_field_set(kind)

    def walk(value, path, real):
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    continue          # a free-form map's keys (statusRewrites: {404: 200})
                p = path + "." + k
                if p not in fields:
                    continue          # ... or its string keys: the map's status is judged
                rp = real + (k,)
                hit = cache.get((kind, p))
                if hit is None:
                    hit = cache[(kind, p)] = status(kind, p, rows)
                st, note, pattern = hit
                if st == SUPPORTED and not isinstance(v, (dict, list)):
                    continue
                if st == IGNORED and not _unset(v) and \
                        (obj.kind, pattern) not in WARNED_ELSEWHERE:
                    if (pattern, rp) not in seen:
                        seen.add((pattern, rp))
                        out.append(obj.error("%s is not applied by pyroute (ignored): %s"
                                             % (k, note), rp, severity="warning"))
                    continue
                walk(v, p, rp)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, path + "[]", real + (i,))
    walk(obj.spec if isinstance(obj.spec, dict) else {}, "spec", ("spec",))
    return out


def ignored_kind_warning(kind, body, file, line):
    from .errors import ConfigError
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    return ConfigError("%s objects are not served by pyroute (dropped): %s"
                       % (kind, IGNORED_KINDS[kind]), file=file, line=line, kind=kind,
                       namespace=meta.get("namespace") or "default", name=meta.get("name"),
                       severity="warning")


def static_used_keys(data):
    """Dotted keys a static configuration (the parsed YAML mapping) sets, entry point names
    written ``<name>``."""
    out = []
    if not isinstance(data, dict):
        return out
    for k, v in data.items():
        if k == "entryPoints" and isinstance(v, dict):
            out.append("entryPoints")
            for _, ep in v.items():
                sub = []
                _used_paths(ep, "entryPoints.<name>", sub)
                out.extend(sub)
        else:
            out.append(str(k))
            _used_paths(v, str(k), out)
    # STATIC_KEYS writes list items ``[n]``
    return list(dict.fromkeys(p.replace("[]", "[n]") for p in out))


def static_status(key, keys=None):
    keys = keys if keys is not None else static_keys()
    probe = key
    while True:
        if probe in keys:
            value = keys[probe]
            st, note = value if isinstance(value, (tuple, list)) else (value, "")
            return st, note, probe
        cut = probe.rfind(".")
        if cut <= 0:
            return None, "", None
        probe = probe[:cut]


def static_warnings(static):
    """Warnings for the ignored static keys a static configuration file sets (only until
    pyroute.static has its STATIC_KEYS table: it then warns itself, with the key's line)."""
    from . import static as static_module
    from .errors import ConfigError
    if getattr(static_module, "STATIC_KEYS", None):
        return []
    path = getattr(static, "source", None)
    if not path or not os.path.isfile(path):
        return []
    import yaml
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return []
    keys = static_keys()
    out = []
    reported = set()
    for key in static_used_keys(data):
        st, note, pattern = static_status(key, keys)
        if st == IGNORED and pattern not in reported:
            reported.add(pattern)
            out.append(ConfigError("%s is not applied by pyroute (ignored): %s"
                                   % (pattern, note), file=path, field=pattern,
                                   severity="warning"))
    return out


def used_fields(paths, static):
    """``[(kind, field pattern, status, note, count)]`` for the fields the manifests under
    ``paths`` and the static configuration set (``pyroute check --compat``)."""
    from .manifests.source import read_paths
    rows = _table()
    counts = {}
    crd = getattr(static, "providers_crd", None)
    paths = list(getattr(crd, "paths", ()) or ()) + [p for p in paths]
    objects, _, _ = read_paths(paths, skip=(getattr(static, "source", None),))
    for obj in objects:
        if obj.kind not in KINDS_WITH_SCHEMAS:
            continue
        used = []
        _used_paths(obj.spec if isinstance(obj.spec, dict) else {}, "spec", used)
        keys = set()
        fields = _schema_field_set(obj.kind)
        for path in used:
            if path not in fields:
                continue          # a free-form map's keys: the map itself is listed
            st, note, pattern = status(obj.kind, path, rows)
            keys.add((obj.kind, pattern or path, st, note))
        for key in keys:          # counted once per object
            counts[key] = counts.get(key, 0) + 1
    path = getattr(static, "source", None)
    if path and os.path.isfile(path):
        import yaml
        with open(path) as f:
            data = yaml.safe_load(f)
        keys = static_keys()
        used = static_used_keys(data)
        for key in used:
            st, note, pattern = static_status(key, keys)
            if st is None and any(u.startswith(key + ".") for u in used):
                continue          # a section (entryPoints, log): its keys are listed
            counts[("static", pattern or key, st, note)] = 1
    return [k + (n,) for k, n in counts.items()]


def render_used(used):
    lines = []
    for kind, field, st, note, n in sorted(used, key=lambda r: (r[0], r[1])):
        lines.append("%s %s: %s%s (%d use%s)" % (kind, field, st or "unknown",
                                                ": " + note if note else "", n,
                                                "" if n == 1 else "s"))
    return lines


# ---- docs/compatibility.md ------------------------------------------------------------------

def render_markdown():
    lines = ["# Compatibility with Traefik",
             "",
             "Generated from `pyroute/compat.py` by `python -m pyroute.compat` (do not edit: "
             "a test fails when this page is stale).",
             "",
             "- **supported**: done as Traefik does it;",
             "- **ignored**: accepted without effect; `pyroute check` and `pyroute run` warn, "
             "naming the object and field;",
             "- **refused**: an error; the object, or the routers using it, are disabled "
             "(`check` and `run` give the same verdict).",
             "",
             "`pyroute check --compat FILES` prints the status of the fields your files use.",
             "",
             "## One verdict",
             "",
             "`pyroute check`, `pyroute explain` and `pyroute run` judge a configuration the "
             "same way: `check` and `explain` compile it with the compiler `run` serves with "
             "(`pyroute/verdict.py`), so every router `run` would disable (a refused field "
             "below, an unknown middleware kind, a service kind, strategy or scheme pyroute "
             "lacks) is an error of `check` naming the file, line, IngressRoute and route "
             "field, is shown disabled by `check --dump`, and is shown disabled with that "
             "reason by `explain` (which never simulates it).",
             ""]
    current = None
    for kind, field, st, note in table():
        section = "Static configuration" if kind == "static" else (
            "Kinds pyroute drops" if kind in IGNORED_KINDS else kind)
        if section != current:
            current = section
            lines += ["", "## " + section, "", "| field | status | note |", "|---|---|---|"]
        lines.append("| `%s` | %s | %s |" % (field if kind not in IGNORED_KINDS else kind,
                                             st or "unknown", note.replace("|", "\\|")))
    return "\n".join(lines) + "\n"


DOC_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "compatibility.md")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    path = argv[0] if argv else DOC_PATH
    text = render_markdown()
    if path == "-":
        sys.stdout.write(text)
        return 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    print("wrote %s (%d rows)" % (path, len(table())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
