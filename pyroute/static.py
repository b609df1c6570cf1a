"""The static configuration, read exactly as Traefik v3 reads its own.

Three sources, as Traefik (``pkg/cli`` loaders, paerser): a configuration file (YAML or TOML:
``-c FILE`` / ``--configFile=FILE``, else Traefik's default locations
``/etc/traefik/traefik.{toml,yaml,yml}``, ``$XDG_CONFIG_HOME/traefik.*``,
``$HOME/.config/traefik.*``, ``./traefik.*``), else command-line flags
(``--entryPoints.web.address=:8000/tcp``, ``--providers.kubernetescrd``, ...), else
``TRAEFIK_*`` environment variables (``TRAEFIK_ENTRYPOINTS_WEB_ADDRESS=:8000``). Only one source
is read: the first present wins, the others are ignored (pyroute says so in a warning).
Key names are case-insensitive in every form, as paerser matches them.

Every key of Traefik v3.7's static configuration is known (:data:`STATIC_KEYS`, built from
``pyroute/static_keys.py``): a key pyroute implements behaves as Traefik's; a valid key it does
not implement gives one warning (``StaticConfig.warnings``, printed by ``pyroute check`` and at
start) and never stops pyroute; a key Traefik does not know, or a value of the wrong type, is a
:class:`ConfigError` naming the file, line and key, with the closest valid key suggested.

Defaults (``load_static(None)``, or a configuration without ``entryPoints``): one entry point
``web`` on ``127.0.0.1:8000`` — loopback and an unprivileged port, so a bare ``pyroute run``
exposes nothing to the network (Traefik would create ``http`` on ``:80``); write
``address: ":8000"`` to listen on every interface. Traefik's own defaults are kept for everything
else (readTimeout 60s, writeTimeout 0, idleTimeout 180s, graceTimeOut 10s, sanitizePath true,
maxHeaderBytes 1 MiB, redirections scheme https / permanent / priority MaxInt-1).

pyroute's one extension: ``providers.kubernetesCRD.paths`` (manifest files or folders, relative
to the configuration file; paths given on the command line are added to them).
"""
import dataclasses
import difflib
import ipaddress
import os
import re
import urllib.parse
from dataclasses import dataclass, field

import yaml

from .errors import ConfigError
from .static_keys import KEY_TYPES as _TRAEFIK_KEY_TYPES

__all__ = ["StaticConfig", "EntryPoint", "ProvidersCRD", "Log", "AccessLog", "Api", "load_static",
           "static_from_mapping", "parse_duration", "parse_flags", "DEFAULT_MAX_HEADER_BYTES",
           "STATIC_KEYS", "KEY_TYPES", "TOP_LEVEL_KEYS", "is_traefik_flag"]

DEFAULT_MAX_HEADER_BYTES = 1 << 20  # Traefik: http.DefaultMaxHeaderBytes (1 MiB)
MAX_INT = (1 << 63) - 1             # Go's math.MaxInt on 64-bit
# http.underscoreHeadersStrategy values -> the engine's code (ClientConn.underscore)
UNDERSCORE_STRATEGIES = {"keep": 0, "delete": 1, "reject": 2}

# ---------------------------------------------------------------------------------------------
# The key tree: every key, its type (static_keys.py, generated from Traefik's reference) and
# what pyroute does with it. This is the one place that says so; docs/compatibility.md is
# generated from STATIC_KEYS.

KEY_TYPES = dict(_TRAEFIK_KEY_TYPES)
KEY_TYPES["providers.kubernetesCRD.paths"] = "list"     # pyroute extension
KEY_TYPES["entryPoints.<name>.http2.enabled"] = "bool"  # pyroute extension (docs/http2.md)

_EP = "entryPoints.<name>."
_CRD = "providers.kubernetesCRD."
_PYROUTE_ONLY = {"providers.kubernetesCRD.paths", "entryPoints.<name>.http2.enabled"}

# key -> note, for the keys pyroute implements as Traefik does
_SUPPORTED = {
    "entryPoints.<name>": "",
    _EP + "address": "TCP only: an address ending in /udp is reported and not served",
    _EP + "asDefault": "",
    _EP + "http2.enabled": "pyroute extension (a warning where set), default true: false "
                           "turns HTTP/2 off on this entry point (no h2c, ALPN http/1.1 only; "
                           "docs/http2.md)",
    _EP + "http2.maxConcurrentStreams": "default 250",
    _EP + "http2.maxDecoderHeaderTableSize": "default 4096",
    _EP + "http2.maxEncoderHeaderTableSize": "default 4096",
    _EP + "transport.respondingTimeouts.readTimeout": "",
    _EP + "transport.respondingTimeouts.writeTimeout": "",
    _EP + "transport.respondingTimeouts.idleTimeout": "",
    _EP + "transport.lifeCycle.requestAcceptGraceTimeout": "",
    _EP + "transport.lifeCycle.graceTimeOut": "",
    _EP + "transport.keepAliveMaxRequests": "",
    _EP + "transport.keepAliveMaxTime": "",
    _EP + "proxyProtocol": "",
    _EP + "proxyProtocol.insecure": "",
    _EP + "proxyProtocol.trustedIPs": "",
    _EP + "forwardedHeaders.trustedIPs": "",
    _EP + "forwardedHeaders.insecure": "",
    _EP + "http.redirections.entryPoint.to": "",
    _EP + "http.redirections.entryPoint.scheme": "",
    _EP + "http.redirections.entryPoint.permanent": "",
    _EP + "http.redirections.entryPoint.priority": "",
    _EP + "http.middlewares": "",
    _EP + "http.tls": "",
    _EP + "http.tls.options": "",
    _EP + "http.tls.certResolver": "copied to the routers; pyroute has no ACME resolver, such "
                                   "routers are reported and served the store's certificate",
    _EP + "http.tls.domains": "copied to the routers (see certResolver)",
    _EP + "http.tls.domains[n].main": "",
    _EP + "http.tls.domains[n].sans": "",
    _EP + "http.encodedCharacters.allowEncodedSlash": "",
    _EP + "http.encodedCharacters.allowEncodedBackSlash": "",
    _EP + "http.encodedCharacters.allowEncodedNullCharacter": "",
    _EP + "http.encodedCharacters.allowEncodedSemicolon": "",
    _EP + "http.encodedCharacters.allowEncodedPercent": "",
    _EP + "http.encodedCharacters.allowEncodedQuestionMark": "",
    _EP + "http.encodedCharacters.allowEncodedHash": "",
    _EP + "http.encodeQuerySemicolons": "",
    _EP + "http.sanitizePath": "",
    _EP + "http.maxHeaderBytes": "",
    _EP + "http.underscoreHeadersStrategy": "keep, delete or reject request headers whose "
                                            "name holds an underscore",
    "providers.kubernetesCRD": "manifests are read from files (providers.kubernetesCRD.paths "
                               "and the command line), not from a cluster",
    _CRD + "namespaces": "",
    _CRD + "labelSelector": "",
    _CRD + "ingressClass": "",
    _CRD + "allowCrossNamespace": "",
    _CRD + "allowExternalNameServices": "",
    _CRD + "allowEmptyServices": "",
    _CRD + "nativeLBByDefault": "",
    _CRD + "disableClusterScopeResources": "",
    _CRD + "crossProviderNamespaces": "",
    _CRD + "throttleDuration": "file-change reloads at most once per throttleDuration",
    _CRD + "paths": "pyroute extension: manifest files or folders, relative to the file",
    "log.level": "",
    "log.format": "common (zerolog's console lines) or json; pyroute adds a pid field",
    "log.filePath": "default stderr (Traefik: stdout, which pyroute check keeps for its "
                    "report); reopened on SIGUSR1",
    "log.noColor": "",
    "accessLog": "",
    "accessLog.filePath": "reopened on SIGUSR1 (master and workers)",
    "accessLog.format": "",
    "accessLog.bufferingSize": "the bound of each worker's in-memory buffer, in lines "
                               "(default 16384): lines beyond it are counted and reported, "
                               "never waited for",
    "accessLog.filters": "",
    "accessLog.filters.statusCodes": "",
    "accessLog.filters.retryAttempts": "",
    "accessLog.filters.minDuration": "",
    "accessLog.fields": "",
    "accessLog.fields.defaultMode": "",
    "accessLog.fields.names": "",
    "accessLog.fields.names.<name>": "",
    "accessLog.fields.headers": "",
    "accessLog.fields.headers.defaultMode": "",
    "accessLog.fields.headers.names": "",
    "accessLog.fields.headers.names.<name>": "",
    "accessLog.fields.queryParameters": "",
    "accessLog.fields.queryParameters.defaultMode": "",
    "accessLog.addInternals": "",
    "core.defaultRuleSyntax": "v2 is deprecated (Traefik warns too)",
    "serversTransport.insecureSkipVerify": "",
    "serversTransport.rootCAs": "",
    "serversTransport.maxIdleConnsPerHost": "",
    "serversTransport.forwardingTimeouts.dialTimeout": "",
    "serversTransport.forwardingTimeouts.responseHeaderTimeout": "",
    "serversTransport.forwardingTimeouts.idleConnTimeout": "",
    "api": "served by the master (docs/api.md)",
    "ping": "ping@internal, answered by the master (docs/observability.md)",
    "ping.entryPoint": "",
    "ping.manualRouting": "",
    "ping.terminatingStatusCode": "",
    "entryPoints.<name>.observability": "the default of the entry point's routers (a "
                                        "router's own value wins) and its 404s",
    "entryPoints.<name>.observability.accessLogs": "",
    "entryPoints.<name>.observability.metrics": "",
    "entryPoints.<name>.observability.tracing": "",
    "entryPoints.<name>.observability.traceVerbosity": "minimal or detailed (any other value: "
                                                       "minimal, as Traefik's Allows)",
    "metrics.addInternals": "",
    "metrics.prometheus": "served by the master; workers hand their counts over every second "
                          "(docs/observability.md)",
    "metrics.prometheus.buckets": "",
    "metrics.prometheus.addEntryPointsLabels": "",
    "metrics.prometheus.addRoutersLabels": "",
    "metrics.prometheus.addServicesLabels": "",
    "metrics.prometheus.entryPoint": "",
    "metrics.prometheus.manualRouting": "",
    "metrics.prometheus.headerLabels": "",
    "metrics.prometheus.headerLabels.<name>": "",
    "tracing": "OpenTelemetry spans as Traefik's, exported by each worker "
               "(docs/observability.md; needs the [tracing] extra)",
    "tracing.serviceName": "",
    "tracing.sampleRate": "",
    "tracing.addInternals": "",
    "tracing.resourceAttributes": "",
    "tracing.resourceAttributes.<name>": "",
    "tracing.globalAttributes": "deprecated in Traefik: resourceAttributes when those are unset",
    "tracing.globalAttributes.<name>": "",
    "tracing.capturedRequestHeaders": "",
    "tracing.capturedResponseHeaders": "",
    "tracing.safeQueryParams": "",
    "tracing.otlp": "",
    "tracing.otlp.http.endpoint": "",
    "tracing.otlp.http.headers": "",
    "tracing.otlp.http.headers.<name>": "",
    "tracing.otlp.http.tls.ca": "",
    "tracing.otlp.http.tls.cert": "",
    "tracing.otlp.http.tls.key": "",
    "tracing.otlp.http.tls.insecureSkipVerify": "",
    "tracing.otlp.grpc.endpoint": "",
    "tracing.otlp.grpc.insecure": "",
    "tracing.otlp.grpc.headers": "",
    "tracing.otlp.grpc.headers.<name>": "",
    "tracing.otlp.grpc.tls.ca": "",
    "tracing.otlp.grpc.tls.cert": "",
    "tracing.otlp.grpc.tls.key": "",
    "metrics.otlp": "pushed by the master, with the OpenTelemetry SDK's exporters "
                    "(pip install pyroute[otlp]; docs/observability.md)",
    "metrics.otlp.addEntryPointsLabels": "",
    "metrics.otlp.addRoutersLabels": "",
    "metrics.otlp.addServicesLabels": "",
    "metrics.otlp.explicitBoundaries": "",
    "metrics.otlp.pushInterval": "",
    "metrics.otlp.serviceName": "",
    "metrics.otlp.resourceAttributes": "",
    "metrics.otlp.resourceAttributes.<name>": "",
    "metrics.otlp.http": "",
    "metrics.otlp.http.endpoint": "",
    "metrics.otlp.http.headers": "",
    "metrics.otlp.http.headers.<name>": "",
    "metrics.otlp.http.tls": "",
    "metrics.otlp.http.tls.ca": "",
    "metrics.otlp.http.tls.cert": "",
    "metrics.otlp.http.tls.key": "",
    "metrics.otlp.http.tls.insecureSkipVerify": "",
    "metrics.otlp.grpc": "",
    "metrics.otlp.grpc.endpoint": "",
    "metrics.otlp.grpc.insecure": "",
    "metrics.otlp.grpc.headers": "",
    "metrics.otlp.grpc.headers.<name>": "",
    "metrics.otlp.grpc.tls": "",
    "metrics.otlp.grpc.tls.ca": "",
    "metrics.otlp.grpc.tls.cert": "",
    "metrics.otlp.grpc.tls.key": "",
    "metrics.otlp.grpc.tls.insecureSkipVerify": "",
    "api.insecure": "Traefik's internal routers on the entry point traefik (served by the "
                    "workers, forwarded to the master), beside the IngressRoutes on it",
    "api.dashboard": "pyroute's own dashboard, not Traefik's web UI",
    "api.basePath": "with api.insecure: warned, incompatible as in Traefik",
    "api.disableDashboardAd": "",
    "api.dashboardName": "",
}

# longest matching prefix -> why pyroute ignores the keys under it
_IGNORED_NOTES = [
    ("global", "pyroute sends no version check or usage data"),
    ("serversTransport.spiffe", "pyroute has no SPIFFE support"),
    ("tcpServersTransport", "pyroute has no TCP routing"),
    ("entryPoints.<name>.allowACMEByPass", "pyroute has no ACME"),
    ("entryPoints.<name>.reusePort", "pyroute always binds with SO_REUSEPORT"),
    ("entryPoints.<name>.forwardedHeaders", "not implemented"),
    ("entryPoints.<name>.http3", "pyroute serves HTTP/1.1 only"),
    ("entryPoints.<name>.udp", "pyroute has no UDP routing"),
    ("providers", "pyroute reads Kubernetes CRD manifests from files only"),
    ("providers.kubernetesCRD", "meaningless for manifests read from files"),
    ("api.debug", "pyroute has no debug endpoints (/debug/vars, pprof)"),
    ("metrics", "pyroute exports Prometheus and OTLP metrics only (metrics.prometheus, "
                "metrics.otlp)"),
    ("log.otlp", "pyroute has no OpenTelemetry log export"),
    ("log", "pyroute does not rotate its log by size (reopens it on SIGUSR1)"),
    ("accessLog.otlp", "pyroute has no OpenTelemetry log export"),
    ("accessLog.dualOutput", "pyroute has no OpenTelemetry log export"),
    ("tracing.otlp.grpc.tls.insecureSkipVerify", "not implemented: grpcio always verifies "
                                                 "the collector's certificate"),
    ("hostResolver", "not implemented"),
    ("certificatesResolvers", "pyroute has no ACME or Tailscale resolver"),
    ("experimental", "pyroute has no plugins or experimental features"),
    ("spiffe", "pyroute has no SPIFFE support"),
    ("ocsp", "pyroute does no OCSP stapling"),
]


def _pattern_matches(prefix, key):
    return key == prefix or key.startswith(prefix + ".") or key.startswith(prefix + "[")


def _build_keys():
    keys = {}
    supported_sections = set()
    for k in _SUPPORTED:
        parts = k.split(".")
        for i in range(1, len(parts)):
            supported_sections.add(".".join(parts[:i]))
    for key in sorted(KEY_TYPES):
        if key in _SUPPORTED:
            keys[key] = ("supported", _SUPPORTED[key])
        elif key in supported_sections:
            keys[key] = ("supported", "")
        else:
            note = ""
            best = -1
            for prefix, text in _IGNORED_NOTES:
                if _pattern_matches(prefix, key) and len(prefix) > best:
                    note, best = text, len(prefix)
            keys[key] = ("ignored", note)
    return keys


#: dotted key (map keys as ``<name>``, list items as ``[n]``) -> (status, note);
#: status "supported" | "ignored" | "refused".
STATIC_KEYS = _build_keys()
TOP_LEVEL_KEYS = sorted({k.split(".")[0] for k in KEY_TYPES})

# parent key -> {lower-case child name: canonical child key segment}; "" is the root
_CHILDREN = {}
for _k in KEY_TYPES:
    _parent, _, _leaf = _k.rpartition(".")
    _CHILDREN.setdefault(_parent, {})[_leaf.lower()] = _leaf
# a key is "quiet" under a warning given for an ignored ancestor: one warning per subtree
_SUBTREE_IGNORED = {k: all(STATIC_KEYS[d][0] == "ignored" for d in STATIC_KEYS
                           if _pattern_matches(k, d))
                    for k in STATIC_KEYS}


# Traefik mapDeniedCharacters: option -> the escapes it allows.
_ENCODED_CHARACTERS = {
    "allowEncodedSlash": ("%2F", "%2f"),
    "allowEncodedBackSlash": ("%5C", "%5c"),
    "allowEncodedNullCharacter": ("%00",),
    "allowEncodedSemicolon": ("%3B", "%3b"),
    "allowEncodedPercent": ("%25",),
    "allowEncodedQuestionMark": ("%3F", "%3f"),
    "allowEncodedHash": ("%23",),
}
# Traefik v3.6.4 (CVE-2025-66490) made every allow* default to false except
# allowEncodedPercent; v3.6.7 turned them all back to true after that broke real applications
# (APIs with %2F in identifiers). pyroute follows v3.7: everything allowed unless refused
# (the hardening is one setting away: docs/security.md; `pyroute check` says how).
_ENCODED_ALLOWED_BY_DEFAULT = set(_ENCODED_CHARACTERS)
DEFAULT_DENIED_ENCODED = frozenset(esc for key, escapes in _ENCODED_CHARACTERS.items()
                                   if key not in _ENCODED_ALLOWED_BY_DEFAULT for esc in escapes)


@dataclass(frozen=True)
class EntryPoint:
    name: str
    host: str = "127.0.0.1"          # "" = every interface
    port: int = 8000
    as_default: bool = False
    read_timeout: float = 60.0       # seconds; 0 = none (Traefik defaults)
    write_timeout: float = 0.0
    idle_timeout: float = 180.0
    request_accept_grace_timeout: float = 0.0
    grace_timeout: float = 10.0
    # transport.keepAliveMaxRequests / keepAliveMaxTime (Traefik v3): the response to the
    # Nth request, or the first one after that much time since the connection was accepted,
    # says "Connection: close"; 0 = no limit (Traefik's default)
    keep_alive_max_requests: int = 0
    keep_alive_max_time: float = 0.0
    trusted_ips: tuple = ()          # CIDRs / IPs whose X-Forwarded-* headers are kept
    forwarded_insecure: bool = False  # keep X-Forwarded-* from anyone
    sanitize_path: bool = True
    encode_query_semicolons: bool = False
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    # http.underscoreHeadersStrategy (Traefik v3.7): "keep" (default), "delete" or "reject"
    # request headers whose name holds '_' (server_entrypoint_tcp.go createHTTPServer)
    underscore_headers: str = "keep"
    # HTTP/2 served (h2c prior knowledge, ALPN h2), as Traefik on every entry point; the
    # pyroute extension http2.enabled: false turns it off (docs/http2.md)
    http2: bool = True
    h2_max_streams: int = 250
    h2_decoder_table: int = 4096
    h2_encoder_table: int = 4096
    # Escapes a root router refuses with 400 (http.encodedCharacters): none by default, as
    # Traefik >= v3.6.7; each allow*: false adds its escapes.
    denied_encoded_characters: frozenset = DEFAULT_DENIED_ENCODED
    # proxyProtocol: None (off) or {"trusted_ips": [CIDR...], "insecure": bool}
    proxy_protocol: object = None
    # http.redirections.entryPoint: None or {"to", "scheme", "permanent", "priority", "port"}
    # ("port": the port the redirect names, from ":443" or the target entry point's address)
    redirections: object = None
    # http.middlewares: qualified middleware names put before every router's own
    middlewares: tuple = ()
    # http.tls: None or the router tls section it gives routers without one
    # ({"options": ..., "certResolver": ..., "domains": [...]}, empty fields left out)
    tls: object = None
    # Traefik builds an entry point "model" (internal provider, entryPointModels) when http
    # has middlewares, tls or encodedCharacters, or observability is set: routers on several
    # entry points are then split per entry point (``<ep>-<router>``)
    has_model: bool = False
    # observability (Traefik's ObservabilityConfig, SetDefaults: all on): None without the
    # section, else {"accessLogs": bool, "metrics": bool, "tracing": bool,
    # "traceVerbosity": str}, the default of its routers that set no value of their own
    observability: object = None

    @property
    def metered(self):
        """Whether the entry point's own requests (those no router takes) are metered."""
        return self.observability is None or self.observability["metrics"]

    @property
    def access_logged(self):
        """Whether the entry point's own requests (those no router takes) are logged."""
        return self.observability is None or self.observability["accessLogs"]

    @property
    def traced(self):
        """Whether the entry point's own requests (those no router takes) are traced."""
        return self.observability is None or self.observability["tracing"]

    @property
    def address(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (host, self.port)


@dataclass(frozen=True)
class ProvidersCRD:
    allow_cross_namespace: bool = False
    allow_external_name_services: bool = False
    allow_empty_services: bool = False
    native_lb_by_default: bool = False
    disable_cluster_scope_resources: bool = False
    namespaces: tuple = ()           # empty = all namespaces
    label_selector: str = ""
    ingress_class: str = ""
    paths: tuple = ()                # absolute paths of manifest files/folders
    throttle_duration: float = 0.0   # seconds; Traefik's default 0 (no throttling)
    # Traefik crossProviderNamespaces: None (unset) = every namespace may name ``x@provider``
    # objects; a tuple = only those namespaces (an empty tuple: none)
    cross_provider_namespaces: object = None


@dataclass(frozen=True)
class Log:
    level: str = "INFO"
    format: str = "common"           # "json": zerolog's JSON; anything else: ConsoleWriter
    file_path: str = ""              # "" = stderr
    no_color: bool = False


@dataclass(frozen=True)
class AccessLog:
    """Traefik's static ``accessLog`` (pyroute.observability.accesslog), SetDefaults applied:
    fields kept, headers dropped, query parameters kept."""
    enabled: bool = False
    file_path: str = ""              # "" = stdout
    format: str = "common"           # common | genericCLF | json
    buffering_size: int = 0
    add_internals: bool = False
    status_codes: tuple = ()         # ((low, high), ...) from filters.statusCodes
    retry_attempts: bool = False
    min_duration: float = 0.0        # seconds
    default_mode: str = "keep"       # fields.defaultMode
    names: tuple = ()                # ((lower-case field name, mode), ...)
    headers_default_mode: str = "drop"
    header_names: tuple = ()         # ((canonical header name, mode), ...)
    keep_query: bool = True          # fields.queryParameters.defaultMode != drop


INTERNAL_ENTRY_POINT = "traefik"   # Traefik: static.DefaultInternalEntryPointName


@dataclass(frozen=True)
class Api:
    """Traefik's static ``api`` section (pyroute.api serves it from the master).

    ``entry_point``: with ``insecure``, the entry point ``traefik`` the API is served on
    (``entryPoints.traefik`` when defined, else Traefik's default ``:8080``); it is among
    ``StaticConfig.entry_points``: the workers serve it, routing the API's internal routers
    to the master and the routers of manifests that use it to their services."""
    insecure: bool = False
    dashboard: bool = True           # Traefik's SetDefaults: true once ``api`` is present
    base_path: str = "/"
    debug: bool = False
    disable_dashboard_ad: bool = False
    dashboard_name: str = ""
    entry_point: object = None       # EntryPoint, with insecure


@dataclass(frozen=True)
class Ping:
    """Traefik's static ``ping`` (pkg/ping Handler, SetDefaults)."""
    entry_point: str = INTERNAL_ENTRY_POINT
    manual_routing: bool = False
    terminating_status_code: int = 503


@dataclass(frozen=True)
class Prometheus:
    """Traefik's ``metrics.prometheus`` (pkg/observability/types Prometheus, SetDefaults)."""
    buckets: tuple = (0.1, 0.3, 1.2, 5.0)
    add_entry_points_labels: bool = True
    add_routers_labels: bool = False
    add_services_labels: bool = True
    entry_point: str = INTERNAL_ENTRY_POINT
    manual_routing: bool = False
    header_labels: tuple = ()        # (label, request header name), in the file's order


@dataclass(frozen=True)
class Otlp:
    """Traefik's ``metrics.otlp`` (pkg/observability/types OTLP, SetDefaults): pushed from the
    master (pyroute.observability.otlp)."""
    protocol: str = "http"           # "grpc" when the grpc section is set (Traefik: it wins)
    endpoint: str = "https://localhost:4318"   # http: a URL; grpc: host:port
    insecure: bool = False           # grpc.insecure (http: the URL's scheme says it)
    headers: tuple = ()              # (name, value)
    tls: object = None               # {"ca", "cert", "key", "insecureSkipVerify"} or None
    add_entry_points_labels: bool = True
    add_routers_labels: bool = False
    add_services_labels: bool = True
    explicit_boundaries: tuple = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0,
                                  7.5, 10.0)
    push_interval: float = 10.0
    service_name: str = "traefik"
    resource_attributes: tuple = ()  # (key, value)


@dataclass(frozen=True)
class Metrics:
    add_internals: bool = False
    prometheus: object = None        # Prometheus, or None
    otlp: object = None              # Otlp, or None


@dataclass(frozen=True)
class Tracing:
    """Traefik's static ``tracing`` (pkg/config/static Tracing, SetDefaults applied: OTLP over
    HTTP to https://localhost:4318, serviceName traefik, sampleRate 1.0); pyroute.observability
    .tracing exports it from each worker."""
    service_name: str = "traefik"
    sample_rate: float = 1.0
    add_internals: bool = False
    resource_attributes: tuple = ()          # ((key, value), ...); globalAttributes if unset
    captured_request_headers: tuple = ()     # canonical header names (Go's CanonicalHeaderKey)
    captured_response_headers: tuple = ()
    safe_query_params: tuple = ()            # query parameters whose values are not REDACTED
    protocol: str = "http"                   # "http" | "grpc" (otlp.grpc present)
    endpoint: str = "https://localhost:4318"  # http: scheme://host:port/path; grpc: host:port
    headers: tuple = ()                      # ((name, value), ...) sent with each export
    insecure: bool = False                   # grpc: no transport security
    tls: object = None                       # {"ca", "cert", "key", "insecureSkipVerify"}


@dataclass(frozen=True)
class StaticConfig:
    entry_points: dict = field(default_factory=dict)   # name -> EntryPoint (do not mutate)
    providers_crd: ProvidersCRD = ProvidersCRD()
    log: Log = Log()
    access_log: AccessLog = AccessLog()
    source: str = ""                                   # file read, "" for defaults
    origin: str = "default"                            # "file" | "flags" | "env" | "default"
    warnings: tuple = ()                               # ConfigError(severity="warning")
    # serversTransport: the transport of services that name none, as Traefik's internal
    # provider writes it (``default@internal``, dynamic ServersTransport shape), or None
    servers_transport: object = None
    # core.defaultRuleSyntax: "" without a core section, else "v3" (the default) or "v2"
    default_rule_syntax: str = ""
    api: object = None                                 # Api, or None without ``api``
    ping: object = None                                # Ping, or None without ``ping``
    metrics: object = None                             # Metrics, or None without ``metrics``
    tracing: object = None                             # Tracing, or None without ``tracing``

    def default_entry_points(self):
        """Names of the entry points a router without ``entryPoints`` attaches to.

        Traefik: the entry points marked ``asDefault``, or all of them when none is, never the
        internal entry point ``traefik`` (cmd/traefik getDefaultsEntrypoints).
        """
        marked = [n for n, ep in self.entry_points.items() if ep.as_default]
        return [n for n in (marked or list(self.entry_points)) if n != INTERNAL_ENTRY_POINT]


# Go's time.ParseDuration units, as Traefik's ptypes.Duration accepts them.
_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(value, allow_negative=False):
    """Seconds (float) from a Traefik duration: an int/float (seconds) or Go's "1m30s" form.

    Raises ValueError with a message on anything else.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, (int, float)):
        if value < 0 and not allow_negative:
            raise ValueError("duration must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as \"60s\"")
    text = value.strip()
    if re.fullmatch(r"-?[0-9]+", text):   # paerser: a bare number is seconds
        return parse_duration(int(text), allow_negative)
    if text in ("0", ""):
        return 0.0
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError("invalid duration %r (expected e.g. \"1m30s\", \"500ms\")" % value)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if sign < 0 and total:
        if not allow_negative:
            raise ValueError("duration must not be negative")
        return -total
    return total


# ---------------------------------------------------------------------------------------------
# Sources -> one raw tree (nested dicts / lists / scalars) plus where each key was written.

class _Source:
    """Where a raw tree came from: names the file, line and key spelling in messages."""

    def __init__(self, origin, name, lines=None, spelling=None):
        self.origin = origin            # "file" | "flags" | "env" | "mapping"
        self.name = name                # the file path, "command line", "environment"
        self.lines = lines or {}        # lower-case path tuple -> line number
        self.spelling = spelling or {}  # lower-case path tuple -> flag / variable as written

    def line(self, path):
        path = tuple(p.lower() if isinstance(p, str) else p for p in path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def error(self, path, message, severity="error"):
        dotted = _dotted(path)
        low = tuple(p.lower() if isinstance(p, str) else p for p in path)
        written = self.spelling.get(low)
        if written is None:      # a section: name the first flag / variable under it
            written = next((w for p, w in self.spelling.items() if p[:len(low)] == low), None)
        if written:
            message = "%s (%s)" % (message, written)
        return ConfigError(message, file=self.name or None, line=self.line(path),
                           field=dotted or None, severity=severity)


def _dotted(path):
    out = ""
    for p in path:
        if isinstance(p, int):
            out += "[%d]" % p
        else:
            out += ("." if out else "") + p
    return out


def _yaml_tree(text, path_name):
    """YAML -> (tree, lines): the plain data and the line of every mapping key."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError("invalid YAML: %s" % getattr(e, "problem", e), file=path_name,
                          line=mark.line + 1 if mark else None) from None
    lines = {}
    constructor = loader("")

    def build(n, path):
        if isinstance(n, yaml.MappingNode):
            out = {}
            for k, v in n.value:
                key = constructor.construct_object(k, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                p = path + (key.lower(),)
                lines.setdefault(p, k.start_mark.line + 1)
                out[key] = build(v, p)
            return out
        if isinstance(n, yaml.SequenceNode):
            items = []
            for i, v in enumerate(n.value):
                lines.setdefault(path + (i,), v.start_mark.line + 1)
                items.append(build(v, path + (i,)))
            return items
        return constructor.construct_object(n, deep=True)

    try:
        tree = build(node, ()) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError("invalid YAML: %s" % getattr(e, "problem", e), file=path_name,
                          line=mark.line + 1 if mark else None) from None
    return tree, lines


def _toml_module():
    try:
        import tomllib
    except ImportError:          # Python < 3.11
        import tomli as tomllib  # a dependency there
    return tomllib


_TOML_KEY = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_.\s"\'-]+?)\s*=')


def _toml_split(text):
    parts = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', text):
        parts.append(next(g for g in m.groups() if g is not None))
    return parts


def _toml_tree(text, path_name):
    tomllib = _toml_module()
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError("invalid TOML: %s" % e, file=path_name,
                          line=int(m.group(1)) if m else None) from None
    # tomllib keeps no positions: find each key's line with a light scan of the text
    lines = {}
    table = ()
    counters = {}
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            keys = tuple(k.lower() for k in _toml_split(line[2:line.find("]]")]))
            idx = counters.get(keys, -1) + 1
            counters[keys] = idx
            table = keys + (idx,)
            for i in range(1, len(keys) + 1):
                lines.setdefault(keys[:i], no)
            lines.setdefault(table, no)
            continue
        if line.startswith("["):
            keys = tuple(k.lower() for k in _toml_split(line[1:line.find("]")]))
            table = keys
            for i in range(1, len(keys) + 1):
                lines.setdefault(keys[:i], no)
            continue
        m = _TOML_KEY.match(line)
        if m:
            keys = tuple(k.lower() for k in _toml_split(m.group(1)))
            for i in range(1, len(keys) + 1):
                lines.setdefault(table + keys[:i], no)
    return tree, lines


def _read_file(path):
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError("cannot read static configuration: %s" % e.strerror, file=path) from None
    text = data.decode("utf-8", "replace")
    if path.lower().endswith(".toml"):
        tree, lines = _toml_tree(text, path)
    else:
        tree, lines = _yaml_tree(text, path)
    return tree, _Source("file", path, lines)


def _key_type(segments):
    """The schema key and type for a path of given names (case-insensitive), or (None, None)."""
    key = ""
    for seg in segments:
        kids = _CHILDREN.get(key, {})
        if isinstance(seg, int):
            if KEY_TYPES.get(key) != "sections":
                return None, None
            key += "[n]"
            continue
        low = seg.lower()
        name = kids.get(low)
        if name is None and "<name>" in kids:
            name = "<name>"
        if name is None:
            if KEY_TYPES.get(key) == "any":
                return key, "any"
            return None, None
        key = key + "." + name if key else name
    return key, ("section" if key.endswith("[n]") else KEY_TYPES.get(key))


_INDEXED = re.compile(r"^(.*?)\[(\d+)\]$")


def _flat_segments(name):
    segs = []
    for part in name.split("."):
        m = _INDEXED.match(part)
        if m:
            segs.append(m.group(1))
            segs.append(int(m.group(2)))
        else:
            segs.append(part)
    return segs


def is_traefik_flag(arg):
    """True for a command-line argument naming a Traefik static configuration key
    (``--entryPoints.web.address=:80``, ``--providers.kubernetescrd``, ``--configFile=x``)."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return False
    name = arg.lstrip("-").split("=", 1)[0]
    top = name.split(".", 1)[0].split("[", 1)[0].lower()
    return top == "configfile" or top in {t.lower() for t in TOP_LEVEL_KEYS}


def parse_flags(args):
    """Traefik's flag syntax (paerser flag.Parse) -> [(name as written, value)].

    ``--name=value``, ``--name value``, a bare ``--name`` for a boolean or a section (true),
    ``-name`` with one dash as well; repeated list flags are joined with commas.
    """
    out = []
    index = {}
    args = list(args)
    while args:
        s = args.pop(0)
        if s == "--":
            break
        if len(s) < 2 or s[0] != "-":
            raise ConfigError("unexpected argument %r among Traefik flags" % s,
                              file="command line")
        name = s[2:] if s[1] == "-" else s[1:]
        if not name or name[0] in "-=":
            raise ConfigError("bad flag syntax: %s" % s, file="command line")
        if "=" in name[1:]:
            name, value = name.split("=", 1)
        else:
            _, typ = _key_type(_flat_segments(name))
            if typ in ("bool", "section"):
                value = "true"
            elif args:
                value = args.pop(0)
            else:
                raise ConfigError("flag needs an argument: %s" % s, file="command line")
        low = name.lower()
        _, typ = _key_type(_flat_segments(name))
        if low in index and typ and typ.startswith("list"):
            i = index[low]
            out[i] = (out[i][0], out[i][1] + "," + value)
            continue
        if low in index:
            out[index[low]] = (out[index[low]][0], value)
            continue
        index[low] = len(out)
        out.append((name, value))
    return out


def _flat_tree(pairs, origin, name, spelling_of):
    """[(dotted name, value)] -> (tree, source), building sections as paerser does."""
    tree = {}
    spelling = {}
    for dotted, value in pairs:
        segs = _flat_segments(dotted)
        node = tree
        path = ()
        for i, seg in enumerate(segs):
            last = i == len(segs) - 1
            if isinstance(seg, int):
                seg_key = seg
            else:
                # keys are case-insensitive: reuse the spelling seen first
                seg_key = next((k for k in node if isinstance(k, str) and k.lower() == seg.lower()),
                               seg)
            path += (seg_key.lower() if isinstance(seg_key, str) else seg_key,)
            if last:
                if isinstance(node.get(seg_key), dict):
                    node[seg_key].setdefault("", value)   # "--providers.x" and its children
                else:
                    node[seg_key] = value
                spelling[path] = spelling_of(dotted)
            else:
                child = node.get(seg_key)
                if not isinstance(child, dict):
                    child = {} if child is None else {"": child}
                    node[seg_key] = child
                node = child
    return tree, _Source(origin, name, spelling=spelling)


def _env_pairs(environ):
    """The TRAEFIK_* variables Traefik's EnvLoader reads (those naming a top-level key)."""
    prefixes = tuple("TRAEFIK_" + t.upper() for t in TOP_LEVEL_KEYS)
    pairs = []
    names = {}
    for var in sorted(environ):
        if not var.startswith(prefixes):
            continue
        # (a list index is a plain segment, DOMAINS_0_MAIN: read as such where a list is)
        dotted = var[len("TRAEFIK_"):].lower().replace("_", ".")
        pairs.append((dotted, environ[var]))
        names[dotted] = var
    return pairs, names


# ---------------------------------------------------------------------------------------------
# Raw tree -> canonical tree: keys checked against the schema and spelled as Traefik does,
# values converted to their type; warnings for what pyroute ignores.

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class _Normalizer:
    def __init__(self, src):
        self.src = src
        self.warnings = []
        self.seen_warnings = set()

    def warn(self, path, key):
        status, note = STATIC_KEYS[key]
        message = "pyroute ignores this key" + (" (%s)" % note if note else "")
        w = self.src.error(path, message, severity="warning")
        k = (w.field, w.message)
        if k not in self.seen_warnings:
            self.seen_warnings.add(k)
            self.warnings.append(w)

    def unknown(self, parent_key, path, name):
        kids = _CHILDREN.get(parent_key, {})
        names = sorted(set(kids.values()) - {"<name>"})
        close = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=1,
                                          cutoff=0.6)
        if close:
            hint = "did you mean %r?" % next(n for n in names if n.lower() == close[0])
        else:
            hint = "known: %s" % ", ".join(names)
        return self.src.error(path + (name,), "unknown key %r: Traefik's static configuration "
                              "has no such key (%s)" % (name, hint))

    def run(self, tree):
        if tree is None:
            return {}
        if not isinstance(tree, dict):
            raise self.src.error((), "expected a mapping of static configuration keys")
        return self.section("", (), tree, quiet=False)

    def section(self, key, path, value, quiet):
        out = {}
        for name, v in value.items():
            if name == "":          # "--providers.kubernetescrd=true" next to its children
                continue
            if not isinstance(name, str):
                name = str(name)
            kids = _CHILDREN.get(key, {})
            child = kids.get(name.lower())
            if child is None and "<name>" in kids:
                child_key = (key + "." if key else "") + "<name>"
                canonical = name                   # a map name keeps its spelling
            elif child is None:
                raise self.unknown(key, path, name)
            else:
                child_key = (key + "." if key else "") + child
                canonical = child
            if canonical in out:
                raise self.src.error(path + (name,), "key given twice (keys are "
                                     "case-insensitive)")
            converted = self.value(child_key, path + (canonical,), v, quiet)
            if converted is not _DISABLED:
                out[canonical] = converted
        return out

    def value(self, key, path, v, quiet):
        typ = KEY_TYPES[key]
        status = STATIC_KEYS[key][0]
        if typ == "any":
            return v
        if typ == "section":
            if isinstance(v, dict) and "" in v:
                flag = v[""]
                if isinstance(flag, str) and flag not in _TRUE:
                    return _DISABLED
            if v is None or v is True or (isinstance(v, str) and v in _TRUE):
                v = {}
            elif v is False or (isinstance(v, str) and v in _FALSE) or v == "":
                return _DISABLED                   # paerser: "false" disables the section
            if not isinstance(v, dict):
                raise self.src.error(path, "expected a mapping (or true/false)")
            if status == "ignored" and not quiet and _SUBTREE_IGNORED.get(key):
                self.warn(path, key)
                quiet = True
            return self.section(key, path, v, quiet)
        if status == "ignored" and not quiet and _SUBTREE_IGNORED.get(key):
            self.warn(path, key)
            quiet = True
        if typ == "sections":
            if isinstance(v, dict) and all(isinstance(k, int) or str(k).isdigit() for k in v):
                v = [v[k] for k in sorted(v, key=int)]
            if isinstance(v, dict):
                v = [v]
            if not isinstance(v, list):
                raise self.src.error(path, "expected a list of mappings")
            items = []
            for i, item in enumerate(v):
                if not isinstance(item, dict):
                    raise self.src.error(path + (i,), "expected a mapping")
                items.append(self.section(key + "[n]", path + (i,), item, quiet))
            return items
        if typ == "map":
            if v is None:
                return {}
            if not isinstance(v, dict):
                raise self.src.error(path, "expected a mapping of names to values")
            return {str(k): self.scalar("string", path + (str(k),), x) for k, x in v.items()}
        if typ.startswith("list"):
            elem = typ.partition(":")[2] or "string"
            if v is None:
                return []
            if isinstance(v, str):
                v = [s for s in (p.strip() for p in v.split(",")) if s]
            elif not isinstance(v, list):
                v = [v]
            return [self.scalar(elem, path + (i,), x) for i, x in enumerate(v)]
        return self.scalar(typ, path, v)

    def scalar(self, typ, path, v):
        if isinstance(v, (dict, list)):
            raise self.src.error(path, "expected a single value, not a %s"
                                 % ("mapping" if isinstance(v, dict) else "list"))
        if typ == "bool":
            if isinstance(v, bool):
                return v
            text = str(v) if v is not None else ""
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise self.src.error(path, "expected true or false")
        if typ == "int":
            if isinstance(v, int) and not isinstance(v, bool):
                return v
            try:
                return int(str(v).strip(), 0)
            except ValueError:
                raise self.src.error(path, "expected an integer") from None
        if typ == "float":
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            try:
                return float(str(v))
            except ValueError:
                raise self.src.error(path, "expected a number") from None
        if typ == "duration":
            try:
                return parse_duration(v if not isinstance(v, str) else v.strip(),
                                      allow_negative=True)
            except ValueError as e:
                raise self.src.error(path, str(e)) from None
        if v is None:
            return ""
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)


_DISABLED = object()


# ---------------------------------------------------------------------------------------------
# Canonical tree -> StaticConfig

class _Reader:
    """Reads values from the canonical tree; errors name the source, line and key."""

    def __init__(self, src):
        self.src = src

    def error(self, path, message):
        if isinstance(path, str):
            path = tuple(path.split("."))
        return self.src.error(path, message)


def _parse_address(r, path, text):
    addr = text
    if "/" in addr:
        addr, proto = addr.rsplit("/", 1)
        if proto.lower() not in ("tcp", "udp"):
            raise r.error(path, "invalid protocol %r (Traefik accepts tcp or udp)" % proto)
    m = re.fullmatch(r"(?:\[([0-9a-fA-F:.%]+)\]|([^:\[\]]*)):([0-9]+)", addr)
    if not m:
        raise r.error(path, "invalid address %r (expected [host]:port, e.g. \":8000\")" % text)
    host = m.group(1) if m.group(1) is not None else m.group(2)
    port = int(m.group(3))
    if not 0 < port < 65536:
        raise r.error(path, "port %d out of range" % port)
    return host, port


def _nonneg(r, path, value, what="duration"):
    if value < 0:
        raise r.error(path, "%s must not be negative" % what)
    return value


def _cidrs(r, path, values):
    for i, cidr in enumerate(values):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise r.error(path + (i,), "invalid IP or CIDR %r" % cidr) from None
    return tuple(values)


def _entry_point(r, name, m):
    p = ("entryPoints", name)
    if not m.get("address"):
        raise r.error(p + ("address",), "required (e.g. \":8000\")")
    host, port = _parse_address(r, p + ("address",), m["address"])
    transport = m.get("transport", {})
    rt = transport.get("respondingTimeouts", {})
    lc = transport.get("lifeCycle", {})
    tp = p + ("transport",)

    def dur(sec, sub, k, default):
        return _nonneg(r, tp + sub + (k,), sec.get(k, default))

    fh = m.get("forwardedHeaders", {})
    http = m.get("http", {})
    ec = http.get("encodedCharacters", {})
    denied = frozenset(esc for key, escapes in _ENCODED_CHARACTERS.items()
                       if not ec.get(key, key in _ENCODED_ALLOWED_BY_DEFAULT)
                       for esc in escapes)
    kmr = transport.get("keepAliveMaxRequests", 0)
    if kmr < 0:
        raise r.error(tp + ("keepAliveMaxRequests",),
                      "expected a non-negative integer (0 = no limit)")
    mhb = http.get("maxHeaderBytes", DEFAULT_MAX_HEADER_BYTES)
    if mhb <= 0:
        raise r.error(p + ("http", "maxHeaderBytes"), "expected a positive integer")
    underscore = http.get("underscoreHeadersStrategy") or "keep"
    if underscore not in UNDERSCORE_STRATEGIES:
        # Traefik: createHTTPServer fails, so the entry point (and Traefik) does not start
        raise r.error(p + ("http", "underscoreHeadersStrategy"),
                      "invalid underscoreHeadersStrategy value %r (expected keep, delete or "
                      "reject)" % (underscore,))
    h2 = m.get("http2", {})
    h2_values = {}
    for key, attr, default in (("maxConcurrentStreams", "h2_max_streams", 250),
                               ("maxDecoderHeaderTableSize", "h2_decoder_table", 4096),
                               ("maxEncoderHeaderTableSize", "h2_encoder_table", 4096)):
        v = h2.get(key, default)
        if v <= 0 or v > 0x7fffffff:
            raise r.error(p + ("http2", key), "expected a positive integer")
        h2_values[attr] = v
    pp = m.get("proxyProtocol")
    proxy_protocol = None
    if pp is not None:
        proxy_protocol = {"trusted_ips": list(_cidrs(r, p + ("proxyProtocol", "trustedIPs"),
                                                     pp.get("trustedIPs", []))),
                          "insecure": pp.get("insecure", False)}
        if not proxy_protocol["insecure"] and not proxy_protocol["trusted_ips"]:
            # Traefik's ip.NewChecker refuses an empty list: the entry point cannot start
            raise r.error(p + ("proxyProtocol", "trustedIPs"),
                          "no trusted IPs provided (set trustedIPs, or insecure: true to trust "
                          "every peer)")
    redirections = None
    red = (http.get("redirections") or {}).get("entryPoint")
    if red is not None:
        redirections = {"to": red.get("to", ""), "scheme": red.get("scheme") or "https",
                        "permanent": red.get("permanent", True),
                        "priority": red.get("priority", MAX_INT - 1)}
    tls = None
    if "tls" in http:
        t = http["tls"]
        tls = {}
        if t.get("options"):
            tls["options"] = t["options"]
        if t.get("certResolver"):
            tls["certResolver"] = t["certResolver"]
        if t.get("domains"):
            tls["domains"] = [{k: v for k, v in d.items() if v} for d in t["domains"]]
    return EntryPoint(
        name=name, host=host, port=port,
        as_default=m.get("asDefault", False),
        read_timeout=dur(rt, ("respondingTimeouts",), "readTimeout", 60.0),
        write_timeout=dur(rt, ("respondingTimeouts",), "writeTimeout", 0.0),
        idle_timeout=dur(rt, ("respondingTimeouts",), "idleTimeout", 180.0),
        request_accept_grace_timeout=dur(lc, ("lifeCycle",), "requestAcceptGraceTimeout", 0.0),
        grace_timeout=dur(lc, ("lifeCycle",), "graceTimeOut", 10.0),
        keep_alive_max_requests=kmr,
        keep_alive_max_time=_nonneg(r, tp + ("keepAliveMaxTime",),
                                    transport.get("keepAliveMaxTime", 0.0)),
        trusted_ips=_cidrs(r, p + ("forwardedHeaders", "trustedIPs"), fh.get("trustedIPs", [])),
        forwarded_insecure=fh.get("insecure", False),
        sanitize_path=http.get("sanitizePath", True),
        encode_query_semicolons=http.get("encodeQuerySemicolons", False),
        max_header_bytes=mhb,
        underscore_headers=underscore,
        http2=bool(h2.get("enabled", True)),
        **h2_values,
        denied_encoded_characters=denied,
        proxy_protocol=proxy_protocol,
        redirections=redirections,
        middlewares=tuple(http.get("middlewares", ())),
        tls=tls,
        has_model=bool(http.get("middlewares") or tls is not None
                       or "encodedCharacters" in http or "observability" in m),
        observability=_ep_observability(m.get("observability")) if "observability" in m
        else None,
    )


def _ep_observability(o):
    # pkg/config/static ObservabilityConfig.SetDefaults: a section sets what it names, the
    # rest is on (traceVerbosity minimal)
    o = o or {}
    return {"accessLogs": o.get("accessLogs", True) is not False,
            "metrics": o.get("metrics", True) is not False,
            "tracing": o.get("tracing", True) is not False,
            "traceVerbosity": o.get("traceVerbosity") or "minimal"}


def _redirect_ports(r, eps, warnings):
    """Traefik's getRedirectPort: ``to`` is ``:port`` or an entry point's name."""
    out = {}
    for name, ep in eps.items():
        red = ep.redirections
        if red is None:
            out[name] = ep
            continue
        path = ("entryPoints", name, "http", "redirections", "entryPoint", "to")
        to = red["to"]
        port = None
        if not to:
            warnings.append(r.src.error(path, "unable to create redirection: the entry point "
                                        "or the port is missing (as Traefik, no redirection "
                                        "is made)", severity="warning"))
        elif re.fullmatch(r":\d+", to):
            port = to[1:]
        elif to in eps:
            port = str(eps[to].port)
        else:
            warnings.append(r.src.error(path, "'to' entry point field references a "
                                        "non-existing entry point: %s (as Traefik, no "
                                        "redirection is made)" % to, severity="warning"))
        red = dict(red, port=port) if port is not None else None
        out[name] = dataclasses.replace(ep, redirections=red)
    return out


def _providers(r, m, base_dir):
    k = m.get("kubernetesCRD", {})
    f = ("providers", "kubernetesCRD")
    paths = tuple(os.path.normpath(os.path.join(base_dir, p)) for p in k.get("paths", []))
    selector = k.get("labelSelector", "")
    from .manifests.labels import parse_selector   # light module, no cycle at import time
    try:
        parse_selector(selector)
    except ValueError as e:
        raise r.error(f + ("labelSelector",), str(e)) from None
    return ProvidersCRD(
        allow_cross_namespace=k.get("allowCrossNamespace", False),
        allow_external_name_services=k.get("allowExternalNameServices", False),
        allow_empty_services=k.get("allowEmptyServices", False),
        native_lb_by_default=k.get("nativeLBByDefault", False),
        disable_cluster_scope_resources=k.get("disableClusterScopeResources", False),
        namespaces=tuple(k.get("namespaces", ())),
        label_selector=selector,
        ingress_class=k.get("ingressClass", ""),
        throttle_duration=_nonneg(r, f + ("throttleDuration",), k.get("throttleDuration", 0.0)),
        paths=paths,
        cross_provider_namespaces=(None if k.get("crossProviderNamespaces") is None
                                   else tuple(k["crossProviderNamespaces"])),
    )


# zerolog.ParseLevel's names
_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC", "DISABLED")


def _log(r, m, warnings):
    level = m.get("level", "INFO").upper()
    if level not in _LEVELS:
        warnings.append(r.src.error(("log", "level"), "invalid log level %r: as Traefik, the "
                                    "level is set to ERROR" % m.get("level"),
                                    severity="warning"))
        level = "ERROR"
    fmt = m.get("format", "common") or "common"
    if fmt not in ("common", "json"):
        warnings.append(r.src.error(("log", "format"), "unknown log format %r: as Traefik, "
                                    "the common (console) format is used" % fmt,
                                    severity="warning"))
    return Log(level=level, format=fmt, file_path=m.get("filePath", "") or "",
               no_color=bool(m.get("noColor", False)))


def _canonical_header(name):
    # Go's textproto.CanonicalMIMEHeaderKey
    if not name or any(c in name for c in " \t\r\n:"):
        return name
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def _access_log(r, m, present, warnings):
    """Traefik's accessLog with its SetDefaults; values it would not act on are reported."""
    def warn(path, msg):
        warnings.append(r.src.error(("accessLog",) + path, msg, severity="warning"))

    fmt = m.get("format", "common") or "common"
    if fmt not in ("common", "genericCLF", "json"):
        warn(("format",), "unsupported access log format %r: as Traefik, the common format "
                          "is used" % fmt)
        fmt = "common"
    filters = m.get("filters") or {}
    ranges = []
    for i, block in enumerate(filters.get("statusCodes") or ()):
        codes = str(block).split("-")
        if len(codes) == 1:
            codes.append(codes[0])
        try:
            ranges.append((int(codes[0]), int(codes[1])))
        except ValueError:
            # Traefik: "Failed to create new HTTP code ranges" and no status filter at all
            warn(("filters", "statusCodes", i), "invalid status code range %r: as Traefik, "
                 "the statusCodes filter is ignored" % block)
            ranges = []
            break
    fields = m.get("fields") or {}

    def mode(path, value, allowed, default):
        if value in allowed:
            return value
        if value not in (None, ""):
            warn(path, "invalid mode %r (%s): as Traefik, %r applies"
                 % (value, " | ".join(allowed), default))
        return default

    field_modes = ("keep", "drop")
    header_modes = ("keep", "drop", "redact")
    default_mode = mode(("fields", "defaultMode"), fields.get("defaultMode"), field_modes,
                        "keep")
    names = tuple((str(k).lower(), mode(("fields", "names", k), v, field_modes, default_mode))
                  for k, v in (fields.get("names") or {}).items())
    headers = fields.get("headers") or {}
    hdefault = mode(("fields", "headers", "defaultMode"), headers.get("defaultMode"),
                    header_modes, "drop")
    hnames = tuple((_canonical_header(str(k)), mode(("fields", "headers", "names", k), v,
                                                     header_modes, hdefault))
                   for k, v in (headers.get("names") or {}).items())
    query = fields.get("queryParameters") or {}
    keep_query = mode(("fields", "queryParameters", "defaultMode"), query.get("defaultMode"),
                      field_modes, "keep") == "keep"
    size = m.get("bufferingSize", 0) or 0
    if size < 0:
        warn(("bufferingSize",), "bufferingSize must not be negative: 0 is used")
        size = 0
    return AccessLog(enabled=present, file_path=m.get("filePath", "") or "", format=fmt,
                     buffering_size=size, add_internals=bool(m.get("addInternals", False)),
                     status_codes=tuple(ranges),
                     retry_attempts=bool(filters.get("retryAttempts", False)),
                     min_duration=max(0.0, filters.get("minDuration", 0.0) or 0.0),
                     default_mode=default_mode, names=names, headers_default_mode=hdefault,
                     header_names=hnames, keep_query=keep_query)


def _servers_transport(r, m, base_dir):
    """Traefik's internal serverTransport(): the static serversTransport as ``default@internal``
    (rootCAs are types.FileOrContent: a file's path, else the PEM itself)."""
    from .manifests.names import format_duration
    st = {}
    if m.get("insecureSkipVerify"):
        st["insecureSkipVerify"] = True
    cas = []
    for i, ca in enumerate(m.get("rootCAs", [])):
        path = os.path.join(base_dir, ca)
        if os.path.isfile(path):
            try:
                with open(path, encoding="ascii", errors="replace") as f:
                    ca = f.read()
            except OSError as e:
                raise r.error(("serversTransport", "rootCAs", i),
                              "cannot read %s: %s" % (path, e.strerror)) from None
        elif "-----BEGIN" not in ca:
            raise r.error(("serversTransport", "rootCAs", i),
                          "neither a readable file nor a PEM certificate: %r" % ca)
        cas.append(ca)
    if cas:
        st["rootCAs"] = cas
    if m.get("maxIdleConnsPerHost"):
        st["maxIdleConnsPerHost"] = m["maxIdleConnsPerHost"]
    ft = m.get("forwardingTimeouts")
    if ft is not None:
        st["forwardingTimeouts"] = {
            k: format_duration(_nonneg(r, ("serversTransport", "forwardingTimeouts", k),
                                       ft.get(k, default)))
            for k, default in (("dialTimeout", 30.0), ("responseHeaderTimeout", 0.0),
                               ("idleConnTimeout", 90.0))}
    return st


def _build(tree, src, base_dir, source=""):
    norm = _Normalizer(src)
    top = norm.run(tree)
    warnings = norm.warnings
    r = _Reader(src)
    eps = {}
    for name, raw in (top.get("entryPoints") or {}).items():
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise r.error(("entryPoints", name), "invalid entry point name %r" % name)
        ep = _entry_point(r, name, raw)
        if raw["address"].lower().endswith("/udp"):
            warnings.append(src.error(("entryPoints", name, "address"), "a UDP entry point: "
                                      "pyroute has no UDP routing, it is not served",
                                      severity="warning"))
            continue
        h2 = raw.get("http2")
        if isinstance(h2, dict) and "enabled" in h2:
            # Traefik has no such key (it serves HTTP/2 on every entry point and would refuse
            # the file): said, so a config shared with Traefik keeps it out
            warnings.append(src.error(("entryPoints", name, "http2", "enabled"),
                                      "a pyroute extension (Traefik has no such key and serves "
                                      "HTTP/2 on every entry point): docs/http2.md",
                                      severity="warning"))
            others = [k for k in h2 if k != "enabled"]
            if others and not ep.http2:
                warnings.append(src.error(("entryPoints", name, "http2"), "pyroute ignores "
                                          "this key (HTTP/2 is off here: http2.enabled false)",
                                          severity="warning"))
        eps[name] = ep
    if not eps:
        eps = {"web": EntryPoint(name="web")}
    seen = {}
    for ep in eps.values():
        key = (ep.host, ep.port)
        if key in seen:
            raise r.error(("entryPoints", ep.name, "address"),
                          "same address as entry point %r" % seen[key])
        seen[key] = ep.name
    eps = _redirect_ports(r, eps, warnings)
    syntax = ""
    if "core" in top:
        syntax = top["core"].get("defaultRuleSyntax") or "v3"     # Core.SetDefaults
        if syntax not in ("v3", "v2"):
            raise r.error(("core", "defaultRuleSyntax"), "unsupported default rule syntax "
                          "configuration: %r (v3 or v2)" % syntax)
        if syntax == "v2":
            warnings.append(src.error(("core", "defaultRuleSyntax"), "v2 rules syntax is now "
                                      "deprecated, please use v3 instead", severity="warning"))
        # Traefik's entryPointModels: a default rule syntax gives every entry point a model
        eps = {n: dataclasses.replace(ep, has_model=True) for n, ep in eps.items()}
    crd = _providers(r, top.get("providers") or {}, base_dir)
    api = _api(r, top["api"], eps, syntax) if "api" in top else None
    if api is not None and api.insecure and api.base_path.rstrip("/"):
        # Traefik's docs: basePath is incompatible with insecure (its router is
        # PathPrefix(`/api`), its handler answers under basePath only)
        warnings.append(src.error(("api", "basePath"), "api.basePath %r is incompatible with "
                                  "api.insecure (as in Traefik): on the entry point traefik "
                                  "the API's router takes /api, its handler answers only "
                                  "under the base path; route to api@internal from an "
                                  "IngressRoute instead" % api.base_path, severity="warning"))
    ping = _ping(r, top["ping"]) if "ping" in top else None
    metrics = _metrics(r, top["metrics"]) if "metrics" in top else None
    tracing = _tracing(r, top["tracing"] or {}, base_dir) if "tracing" in top else None
    if tracing is not None:
        from .observability.tracing import missing_packages
        missing = missing_packages()
        if missing is not None:
            warnings.append(src.error(("tracing",), missing, severity="warning"))
    prom = metrics.prometheus if metrics is not None else None
    if any(x is not None and not x.manual_routing and x.entry_point == INTERNAL_ENTRY_POINT
           for x in (ping, prom)):
        # Traefik's SetEffectiveConfiguration: ping / prometheus on the internal entry point
        # create it (":8080") when it is not defined, a regular entry point the workers
        # serve (ping@internal and prometheus@internal are routed there to the master, and
        # IngressRoutes may use it), as api.insecure does
        _traefik_entry_point(r, eps, syntax, "ping / metrics.prometheus")
    for what, x in (("ping", ping), ("metrics.prometheus", prom)):
        if x is not None and not x.manual_routing and x.entry_point != INTERNAL_ENTRY_POINT \
                and x.entry_point not in eps:
            warnings.append(src.error((what.split(".")[0],) + (("prometheus",) if "." in what
                                                              else ()) + ("entryPoint",),
                                    "entry point %r does not exist: %s is not served"
                                    % (x.entry_point, what), severity="warning"))
    return StaticConfig(
        entry_points=eps,
        providers_crd=crd,
        log=_log(r, top.get("log") or {}, warnings),
        access_log=_access_log(r, top.get("accessLog") or {}, "accessLog" in top, warnings),
        source=source,
        origin=src.origin if src.origin != "mapping" else "file",
        warnings=tuple(warnings),
        servers_transport=(_servers_transport(r, top["serversTransport"], base_dir)
                           if "serversTransport" in top else None),
        default_rule_syntax=syntax,
        api=api,
        ping=ping,
        metrics=metrics,
        tracing=tracing,
    )


def _traefik_entry_point(r, eps, syntax, why):
    """The entry point ``traefik`` (Traefik's default ``:8080``), added to ``eps`` when the
    user did not define it; returns it."""
    ep = eps.get(INTERNAL_ENTRY_POINT)
    if ep is None:
        ep = EntryPoint(name=INTERNAL_ENTRY_POINT, host="", port=8080, has_model=bool(syntax))
        for other in eps.values():
            if (other.host, other.port) == (ep.host, ep.port):
                raise r.error(("entryPoints", other.name, "address"),
                              "same address as entry point 'traefik' (%s)" % why)
        eps[INTERNAL_ENTRY_POINT] = ep
    return ep


def _ping(r, m):
    code = m.get("terminatingStatusCode", 503)
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 999:
        raise r.error(("ping", "terminatingStatusCode"), "expected an HTTP status code (got %r)"
                      % (code,))
    return Ping(entry_point=m.get("entryPoint") or INTERNAL_ENTRY_POINT,
                manual_routing=bool(m.get("manualRouting", False)),
                terminating_status_code=code)


def _metrics(r, m):
    prom = None
    p = m.get("prometheus")
    if p is not None:
        buckets = p.get("buckets")
        if buckets is None:
            buckets = Prometheus.buckets
        else:
            try:
                buckets = tuple(float(b) for b in buckets)
            except (TypeError, ValueError):
                raise r.error(("metrics", "prometheus", "buckets"), "expected a list of "
                              "numbers (got %r)" % (buckets,)) from None
            if any(b2 <= b1 for b1, b2 in zip(buckets, buckets[1:])):
                # client_golang: "histogram buckets must be in increasing order"
                raise r.error(("metrics", "prometheus", "buckets"), "histogram buckets must "
                              "be in increasing order: %r" % (list(buckets),))
        labels = []
        for label, header in (p.get("headerLabels") or {}).items():
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label) or label.startswith("__") \
                    or label in ("code", "method", "protocol", "entrypoint", "router",
                                 "service"):
                raise r.error(("metrics", "prometheus", "headerLabels", label),
                              "invalid Prometheus label name %r" % label)
            labels.append((label, str(header)))
        prom = Prometheus(
            buckets=buckets,
            add_entry_points_labels=bool(p.get("addEntryPointsLabels", True)),
            add_routers_labels=bool(p.get("addRoutersLabels", False)),
            add_services_labels=bool(p.get("addServicesLabels", True)),
            entry_point=p.get("entryPoint") or INTERNAL_ENTRY_POINT,
            manual_routing=bool(p.get("manualRouting", False)),
            header_labels=tuple(labels))
    otlp = _otlp(r, m["otlp"] or {}) if "otlp" in m else None
    return Metrics(add_internals=bool(m.get("addInternals", False)), prometheus=prom,
                   otlp=otlp)


def _otlp(r, o):
    p = ("metrics", "otlp")
    bounds = o.get("explicitBoundaries")
    if bounds is None:
        bounds = Otlp.explicit_boundaries
    else:
        try:
            bounds = tuple(float(b) for b in bounds)
        except (TypeError, ValueError):
            raise r.error(p + ("explicitBoundaries",), "expected a list of numbers (got %r)"
                          % (bounds,)) from None
        if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
            raise r.error(p + ("explicitBoundaries",), "boundaries must be in increasing "
                          "order: %r" % (list(bounds),))
    interval = Otlp.push_interval
    if o.get("pushInterval") is not None:
        try:
            interval = parse_duration(o["pushInterval"])
        except ValueError as e:
            raise r.error(p + ("pushInterval",), str(e)) from None
        if interval <= 0:
            # Go's sdkmetric.WithInterval ignores a non-positive interval: its default (60s)
            interval = 60.0
    grpc = o.get("grpc")
    if grpc is not None:
        grpc = grpc or {}
        sec, protocol = grpc, "grpc"
        endpoint = grpc.get("endpoint") or "localhost:4317"
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise r.error(p + ("grpc", "endpoint"), "invalid collector endpoint %r "
                          "(expected host:port)" % endpoint)
    else:
        sec, protocol = o.get("http") or {}, "http"
        endpoint = sec.get("endpoint") or "https://localhost:4318"
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise r.error(p + ("http", "endpoint"), "invalid collector endpoint %r "
                          "(expected http(s)://host:port[/path])" % endpoint)
    tls = sec.get("tls")
    if tls is not None:
        tls = {"ca": tls.get("ca") or "", "cert": tls.get("cert") or "",
               "key": tls.get("key") or "",
               "insecureSkipVerify": bool(tls.get("insecureSkipVerify", False))}
        if bool(tls["cert"]) != bool(tls["key"]):
            raise r.error(p + (protocol, "tls"), "cert and key go together (Traefik: both or "
                          "neither)")
    return Otlp(
        protocol=protocol, endpoint=endpoint, insecure=bool(sec.get("insecure", False)),
        headers=tuple((str(k), str(v)) for k, v in (sec.get("headers") or {}).items()),
        tls=tls,
        add_entry_points_labels=bool(o.get("addEntryPointsLabels", True)),
        add_routers_labels=bool(o.get("addRoutersLabels", False)),
        add_services_labels=bool(o.get("addServicesLabels", True)),
        explicit_boundaries=bounds, push_interval=interval,
        service_name=o.get("serviceName") or "traefik",
        resource_attributes=tuple((str(k), str(v)) for k, v in
                                  (o.get("resourceAttributes") or {}).items()))


def _tracing(r, m, base_dir):
    """Traefik's tracing section with its SetDefaults (and SetEffectiveConfiguration:
    globalAttributes stand for resourceAttributes when those are unset)."""
    rate = m.get("sampleRate", 1.0)
    if not 0.0 <= rate <= 1.0:
        # Go's TraceIDRatioBased: >= 1 samples all, <= 0 none; a rate outside is a mistake
        raise r.error(("tracing", "sampleRate"), "expected a rate between 0.0 and 1.0 (got %r)"
                      % rate)
    attrs = m.get("resourceAttributes")
    if attrs is None:
        attrs = m.get("globalAttributes")
    otlp = m.get("otlp") or {}
    grpc = otlp.get("grpc")
    if grpc is not None:
        grpc = grpc or {}
        proto, sec = "grpc", grpc
        endpoint = grpc.get("endpoint") or "localhost:4317"
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit():
            # Traefik setupGRPCExporter: net.SplitHostPort
            raise r.error(("tracing", "otlp", "grpc", "endpoint"), "invalid collector "
                          "endpoint %r: expected host:port" % endpoint)
    else:
        sec = otlp.get("http") or {}
        proto = "http"
        endpoint = sec.get("endpoint") or "https://localhost:4318"
        if not re.match(r"https?://[^/]+", endpoint):
            raise r.error(("tracing", "otlp", "http", "endpoint"), "invalid collector "
                          "endpoint %r: expected http(s)://host:port/path" % endpoint)
    tls = sec.get("tls")
    if tls is not None:
        tls = dict(tls or {})
        for k in ("ca", "cert", "key"):
            if tls.get(k):
                tls[k] = os.path.join(base_dir, tls[k])
        if bool(tls.get("cert")) != bool(tls.get("key")):
            raise r.error(("tracing", "otlp", proto, "tls"), "tls.cert and tls.key go "
                          "together")
    return Tracing(
        service_name=m.get("serviceName") or "traefik",
        sample_rate=float(rate),
        add_internals=bool(m.get("addInternals", False)),
        resource_attributes=tuple((str(k), str(v)) for k, v in (attrs or {}).items()),
        captured_request_headers=tuple(_canonical_header(h) for h in
                                       m.get("capturedRequestHeaders") or ()),
        captured_response_headers=tuple(_canonical_header(h) for h in
                                        m.get("capturedResponseHeaders") or ()),
        safe_query_params=tuple(m.get("safeQueryParams") or ()),
        protocol=proto, endpoint=endpoint,
        headers=tuple((str(k), str(v)) for k, v in (sec.get("headers") or {}).items()),
        insecure=bool(sec.get("insecure", False)), tls=tls)


def _api(r, m, eps, syntax=""):
    """``api`` (normalized) -> Api. With ``insecure`` the API is served on the entry point
    ``traefik``, created as Traefik's SetEffectiveConfiguration creates it (``:8080``) when
    not defined; it is a workers' entry point like any other: they route the API's internal
    routers (pyroute.manifests api_internal) to the master, beside the routers of manifests
    that use it."""
    base = m.get("basePath") or "/"
    if not base.startswith("/"):
        raise r.error(("api", "basePath"), "expected a path starting with \"/\" (got %r)"
                      % base)
    insecure = bool(m.get("insecure", False))
    ep = _traefik_entry_point(r, eps, syntax, "api.insecure") if insecure else None
    return Api(insecure=insecure, dashboard=bool(m.get("dashboard", True)), base_path=base,
               debug=bool(m.get("debug", False)),
               disable_dashboard_ad=bool(m.get("disableDashboardAd", False)),
               dashboard_name=m.get("dashboardName") or "", entry_point=ep)


def static_from_mapping(data, source=""):
    """Build a StaticConfig from an already-parsed mapping (``source`` names it in errors)."""
    base_dir = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
    return _build(data, _Source("mapping", source), base_dir, source)


_FINDER_BASES = ("/etc/traefik/traefik", "$XDG_CONFIG_HOME/traefik", "$HOME/.config/traefik",
                 "./traefik")


def find_default_file(environ=None):
    """Traefik's cli.Finder: the first of its default locations that exists, or None."""
    env = os.environ if environ is None else environ
    for base in _FINDER_BASES:
        if "$XDG_CONFIG_HOME" in base and not env.get("XDG_CONFIG_HOME"):
            continue
        if "$HOME" in base and not env.get("HOME"):
            continue
        base = base.replace("$XDG_CONFIG_HOME", env.get("XDG_CONFIG_HOME", "")).replace(
            "$HOME", env.get("HOME", ""))
        for ext in ("toml", "yaml", "yml"):
            path = base + "." + ext
            if os.path.isfile(path):
                return path
    return None


def load_static(path=None, args=None, environ=None, search=False):
    """The static configuration, from one source as Traefik picks it.

    ``path``: a file (``-c``); ``args``: Traefik flags (``--configFile=`` among them names the
    file); ``environ``: the environment to read ``TRAEFIK_*`` variables from (None: not read);
    ``search``: look in Traefik's default file locations. Precedence: the file, else the flags,
    else the environment, else the defaults. ``load_static(None)`` returns the defaults.

    Raises ConfigError (naming the file, line and key) for anything Traefik would refuse;
    what pyroute ignores is in ``.warnings``.
    """
    pairs = parse_flags(args or ())
    warnings = []
    config_file = path
    flag_file = next((v for n, v in pairs if n.lower() == "configfile"), None)
    pairs = [(n, v) for n, v in pairs if n.lower() != "configfile"]
    if config_file is None and flag_file:
        config_file = flag_file
    if config_file is None and search:
        config_file = find_default_file(environ)
    env_pairs, env_names = _env_pairs(environ) if environ is not None else ([], {})
    if config_file is not None:
        tree, src = _read_file(config_file)
        base_dir = os.path.dirname(os.path.abspath(config_file))
        st = _build(tree, src, base_dir, config_file)
        if pairs:
            warnings.append(ConfigError(
                "command-line flags ignored (%s): as Traefik, the configuration file %s is the "
                "only source read" % (" ".join("--" + n for n, _ in pairs), config_file),
                file="command line", severity="warning"))
    elif pairs:
        tree, src = _flat_tree(pairs, "flags", "command line", lambda d: "--" + d)
        st = _build(tree, src, os.getcwd())
    elif env_pairs:
        tree, src = _flat_tree(env_pairs, "env", "environment", lambda d: env_names[d])
        st = _build(tree, src, os.getcwd())
    else:
        return dataclasses.replace(static_from_mapping({}), origin="default")
    if env_pairs and st.origin != "env":
        warnings.append(ConfigError(
            "TRAEFIK_* environment variables ignored (%s): as Traefik, only one configuration "
            "source is read" % ", ".join(sorted(env_names.values())),
            file="environment", severity="warning"))
    if warnings:
        st = dataclasses.replace(st, warnings=tuple(warnings) + st.warnings)
    return st


def traefik_flags_help():
    """Text for ``pyroute run --help``: the Traefik flags and how pyroute reads them."""
    return """\
Traefik's static configuration, in any of its three forms (one source only, as Traefik:
the file wins, else the flags, else the environment):
  -c FILE / --configFile=FILE        YAML or TOML file (else Traefik's default locations:
                                     /etc/traefik/traefik.{toml,yaml,yml}, ./traefik.* ...)
  --entryPoints.web.address=:8000/tcp --providers.kubernetescrd --ping=true
  --log.level=DEBUG --entrypoints.websecure.http.tls=true ...
                                     Traefik's flags, case-insensitive; a bare flag of a
                                     boolean or a section means true
  TRAEFIK_ENTRYPOINTS_WEB_ADDRESS=:8000 ...
                                     Traefik's environment variables
Every key of Traefik v3.7 is known: the ones pyroute does not implement are reported
(one warning each) and ignored; an unknown key is an error naming the closest valid one.
See docs/configuration.md."""
