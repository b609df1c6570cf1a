"""The static configuration: entry points, the manifests provider, logs — in Traefik's shape.

``load_static(path)`` reads a YAML file shaped like Traefik's static configuration (the subset
pyroute implements) and returns an immutable :class:`StaticConfig`; ``load_static(None)`` returns
the defaults. Any key pyroute does not know is a :class:`ConfigError` naming the key, so a typo
never silently falls back to a default.

Defaults (``load_static(None)``): one entry point ``web`` on ``127.0.0.1:8000`` — loopback and an
unprivileged port, so a bare ``pyroute run`` exposes nothing to the network; write
``address: ":8000"`` to listen on every interface. Traefik's own defaults are kept for everything
else (readTimeout 60s, writeTimeout 0, idleTimeout 180s, graceTimeOut 10s, sanitizePath true,
maxHeaderBytes 1 MiB).

Shape::

    entryPoints:
      web:
        address: ":8000"                    # [host]:port, optional /tcp
        asDefault: true
        transport:
          respondingTimeouts: {readTimeout: 60s, writeTimeout: 0s, idleTimeout: 180s}
          lifeCycle: {requestAcceptGraceTimeout: 0s, graceTimeOut: 10s}
        forwardedHeaders: {trustedIPs: ["10.0.0.0/8"], insecure: false}
        http:
          sanitizePath: true
          encodeQuerySemicolons: false
          maxHeaderBytes: 1048576
          encodedCharacters: {allowEncodedSlash: false, ...}  # Traefik >= v3.6.4: see below
    providers:
      kubernetesCRD:
        allowCrossNamespace: false
        allowExternalNameServices: false
        allowEmptyServices: false
        nativeLBByDefault: false
        namespaces: []
        labelSelector: ""
        ingressClass: ""
        paths: ["manifests/"]               # pyroute: where manifests are read (relative to
                                            # this file); CLI paths are added to these
    log: {level: INFO, format: common}
    accessLog: {filePath: "", format: common}
"""
import ipaddress
import os
import re
from dataclasses import dataclass, field

import yaml

from .errors import ConfigError

__all__ = ["StaticConfig", "EntryPoint", "ProvidersCRD", "Log", "AccessLog", "Api", "load_static",
           "parse_duration", "DEFAULT_MAX_HEADER_BYTES"]

DEFAULT_MAX_HEADER_BYTES = 1 << 20  # Traefik: http.DefaultMaxHeaderBytes (1 MiB)


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
# Traefik >= v3.6.4 (CVE-2025-66490): every allow* defaults to false except allowEncodedPercent.
_ENCODED_ALLOWED_BY_DEFAULT = {"allowEncodedPercent"}
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
    # Escapes a root router refuses with 400 (http.encodedCharacters). Since Traefik v2.11.32 /
    # v3.6.4 (CVE-2025-66490) encoded '/', '\\', NUL, ';', '?' and '#' are refused unless allowed;
    # '%25' stays allowed.
    denied_encoded_characters: frozenset = DEFAULT_DENIED_ENCODED

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
    namespaces: tuple = ()           # empty = all namespaces
    label_selector: str = ""
    ingress_class: str = ""
    paths: tuple = ()                # absolute paths of manifest files/folders


@dataclass(frozen=True)
class Log:
    level: str = "INFO"
    format: str = "common"


@dataclass(frozen=True)
class AccessLog:
    enabled: bool = False
    file_path: str = ""              # "" = stdout
    format: str = "common"


INTERNAL_ENTRY_POINT = "traefik"   # Traefik: static.DefaultInternalEntryPointName


@dataclass(frozen=True)
class Api:
    """Traefik's static ``api`` section (pyroute.api serves it from the master).

    ``entry_point``: with ``insecure``, the internal entry point ``traefik`` the master's API
    listens on (``entryPoints.traefik`` when defined, else Traefik's default ``:8080``); it is
    not among ``StaticConfig.entry_points`` (the workers never bind it)."""
    insecure: bool = False
    dashboard: bool = True           # Traefik's SetDefaults: true once ``api`` is present
    base_path: str = "/"
    debug: bool = False
    disable_dashboard_ad: bool = False
    dashboard_name: str = ""
    entry_point: object = None       # EntryPoint, with insecure


@dataclass(frozen=True)
class StaticConfig:
    entry_points: dict = field(default_factory=dict)   # name -> EntryPoint (do not mutate)
    providers_crd: ProvidersCRD = ProvidersCRD()
    log: Log = Log()
    access_log: AccessLog = AccessLog()
    source: str = ""                                   # file read, "" for defaults
    api: object = None                                 # Api, or None without ``api``
    warnings: tuple = ()                               # ConfigError (severity "warning"):
                                                       # read but not done as Traefik does

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


def parse_duration(value):
    """Seconds (float) from a Traefik duration: an int/float (seconds) or Go's "1m30s" form.

    Raises ValueError with a message on anything else.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as \"60s\"")
    text = value.strip()
    if re.fullmatch(r"[0-9]+", text):   # paerser: a bare number is seconds
        return float(text)
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
        raise ValueError("duration must not be negative")
    return total


class _Reader:
    """Walks a mapping, refusing unknown keys and wrong types with ConfigError."""

    def __init__(self, source):
        self.source = source

    def error(self, field, message):
        return ConfigError(message, file=self.source or None, field=field)

    def mapping(self, value, field, allowed):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(field, "expected a mapping")
        for key in value:
            if key not in allowed:
                raise self.error("%s.%s" % (field, key) if field else str(key),
                                 "unknown key %r (known: %s)" % (key, ", ".join(sorted(allowed))))
        return value

    def boolean(self, m, key, field, default):
        v = m.get(key, default)
        if not isinstance(v, bool):
            raise self.error("%s.%s" % (field, key), "expected true or false")
        return v

    def string(self, m, key, field, default):
        v = m.get(key, default)
        if not isinstance(v, str):
            raise self.error("%s.%s" % (field, key), "expected a string")
        return v

    def duration(self, m, key, field, default):
        if key not in m:
            return default
        try:
            return parse_duration(m[key])
        except ValueError as e:
            raise self.error("%s.%s" % (field, key), str(e)) from None

    def strings(self, m, key, field):
        v = m.get(key, [])
        if v is None:
            return ()
        if isinstance(v, str):       # Traefik's CLI form: comma-separated
            v = [s.strip() for s in v.split(",") if s.strip()]
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise self.error("%s.%s" % (field, key), "expected a list of strings")
        return tuple(v)




def _parse_address(r, field, text):
    if not isinstance(text, str):
        raise r.error(field, "expected an address such as \":8000\"")
    addr = text
    if "/" in addr:
        addr, proto = addr.rsplit("/", 1)
        if proto.lower() != "tcp":
            raise r.error(field, "pyroute serves HTTP over TCP only (got %r)" % proto)
    m = re.fullmatch(r"(?:\[([0-9a-fA-F:.%]+)\]|([^:\[\]]*)):([0-9]+)", addr)
    if not m:
        raise r.error(field, "invalid address %r (expected [host]:port, e.g. \":8000\")" % text)
    host = m.group(1) if m.group(1) is not None else m.group(2)
    port = int(m.group(3))
    if not 0 < port < 65536:
        raise r.error(field, "port %d out of range" % port)
    return host, port


def _entry_point(r, name, raw):
    f = "entryPoints.%s" % name
    m = r.mapping(raw, f, {"address", "asDefault", "transport", "forwardedHeaders", "http"})
    if "address" not in m:
        raise r.error(f + ".address", "required (e.g. \":8000\")")
    host, port = _parse_address(r, f + ".address", m["address"])
    transport = r.mapping(m.get("transport"), f + ".transport",
                          {"respondingTimeouts", "lifeCycle", "keepAliveMaxRequests",
                           "keepAliveMaxTime"})
    rt_f = f + ".transport.respondingTimeouts"
    rt = r.mapping(transport.get("respondingTimeouts"), rt_f,
                   {"readTimeout", "writeTimeout", "idleTimeout"})
    lc_f = f + ".transport.lifeCycle"
    lc = r.mapping(transport.get("lifeCycle"), lc_f,
                   {"requestAcceptGraceTimeout", "graceTimeOut"})
    fh_f = f + ".forwardedHeaders"
    fh = r.mapping(m.get("forwardedHeaders"), fh_f, {"trustedIPs", "insecure"})
    trusted = r.strings(fh, "trustedIPs", fh_f)
    for i, cidr in enumerate(trusted):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise r.error("%s.trustedIPs[%d]" % (fh_f, i),
                          "invalid IP or CIDR %r" % cidr) from None
    http_f = f + ".http"
    http = r.mapping(m.get("http"), http_f,
                     {"sanitizePath", "encodeQuerySemicolons", "maxHeaderBytes",
                      "encodedCharacters"})
    ec_f = http_f + ".encodedCharacters"
    ec = r.mapping(http.get("encodedCharacters"), ec_f, set(_ENCODED_CHARACTERS))
    denied = frozenset(esc for key, escapes in _ENCODED_CHARACTERS.items()
                       if not r.boolean(ec, key, ec_f, key in _ENCODED_ALLOWED_BY_DEFAULT)
                       for esc in escapes)
    kmr = transport.get("keepAliveMaxRequests", 0)
    if isinstance(kmr, bool) or not isinstance(kmr, int) or kmr < 0:
        raise r.error(f + ".transport.keepAliveMaxRequests",
                      "expected a non-negative integer (0 = no limit)")
    mhb = http.get("maxHeaderBytes", DEFAULT_MAX_HEADER_BYTES)
    if isinstance(mhb, bool) or not isinstance(mhb, int) or mhb <= 0:
        raise r.error(http_f + ".maxHeaderBytes", "expected a positive integer")
    return EntryPoint(
        name=name, host=host, port=port,
        as_default=r.boolean(m, "asDefault", f, False),
        read_timeout=r.duration(rt, "readTimeout", rt_f, 60.0),
        write_timeout=r.duration(rt, "writeTimeout", rt_f, 0.0),
        idle_timeout=r.duration(rt, "idleTimeout", rt_f, 180.0),
        request_accept_grace_timeout=r.duration(lc, "requestAcceptGraceTimeout", lc_f, 0.0),
        grace_timeout=r.duration(lc, "graceTimeOut", lc_f, 10.0),
        keep_alive_max_requests=kmr,
        keep_alive_max_time=r.duration(transport, "keepAliveMaxTime", f + ".transport", 0.0),
        trusted_ips=trusted,
        forwarded_insecure=r.boolean(fh, "insecure", fh_f, False),
        sanitize_path=r.boolean(http, "sanitizePath", http_f, True),
        encode_query_semicolons=r.boolean(http, "encodeQuerySemicolons", http_f, False),
        max_header_bytes=mhb,
        denied_encoded_characters=denied,
    )


def _providers(r, raw, base_dir):
    m = r.mapping(raw, "providers", {"kubernetesCRD"})
    f = "providers.kubernetesCRD"
    k = r.mapping(m.get("kubernetesCRD"), f, {
        "allowCrossNamespace", "allowExternalNameServices", "allowEmptyServices",
        "nativeLBByDefault", "namespaces", "labelSelector", "ingressClass", "paths",
        "throttleDuration"})
    if "throttleDuration" in k:
        r.duration(k, "throttleDuration", f, 0.0)   # accepted for compatibility; validated only
    paths = tuple(os.path.normpath(os.path.join(base_dir, p)) for p in r.strings(k, "paths", f))
    selector = r.string(k, "labelSelector", f, "")
    from .manifests.labels import parse_selector   # light module, no cycle at import time
    try:
        parse_selector(selector)
    except ValueError as e:
        raise r.error(f + ".labelSelector", str(e)) from None
    return ProvidersCRD(
        allow_cross_namespace=r.boolean(k, "allowCrossNamespace", f, False),
        allow_external_name_services=r.boolean(k, "allowExternalNameServices", f, False),
        allow_empty_services=r.boolean(k, "allowEmptyServices", f, False),
        native_lb_by_default=r.boolean(k, "nativeLBByDefault", f, False),
        namespaces=r.strings(k, "namespaces", f),
        label_selector=selector,
        ingress_class=r.string(k, "ingressClass", f, ""),
        paths=paths,
    )


_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC")


def _log(r, raw):
    m = r.mapping(raw, "log", {"level", "format"})
    level = r.string(m, "level", "log", "INFO").upper()
    if level not in _LEVELS:
        raise r.error("log.level", "unknown level %r (one of %s)" % (level, ", ".join(_LEVELS)))
    fmt = r.string(m, "format", "log", "common")
    if fmt not in ("common", "json"):
        raise r.error("log.format", "expected \"common\" or \"json\"")
    return Log(level=level, format=fmt)


def _access_log(r, raw, present):
    m = r.mapping(raw, "accessLog", {"filePath", "format"})
    fmt = r.string(m, "format", "accessLog", "common")
    if fmt not in ("common", "json"):
        raise r.error("accessLog.format", "expected \"common\" or \"json\"")
    return AccessLog(enabled=present, file_path=r.string(m, "filePath", "accessLog", ""),
                     format=fmt)


def _api(r, raw, eps):
    """``api`` -> Api; with ``insecure`` the ``traefik`` entry point moves out of ``eps`` into
    the Api (the master serves it, not the workers)."""
    m = r.mapping(raw, "api", {"insecure", "dashboard", "basePath", "debug",
                               "disableDashboardAd", "dashboardName"})
    base = r.string(m, "basePath", "api", "/") or "/"
    if not base.startswith("/"):
        raise r.error("api.basePath", "expected a path starting with \"/\" (got %r)" % base)
    insecure = r.boolean(m, "insecure", "api", False)
    ep = None
    if insecure:
        ep = eps.pop(INTERNAL_ENTRY_POINT, None) or EntryPoint(
            name=INTERNAL_ENTRY_POINT, host="", port=8080)
    return Api(insecure=insecure, dashboard=r.boolean(m, "dashboard", "api", True),
               base_path=base, debug=r.boolean(m, "debug", "api", False),
               disable_dashboard_ad=r.boolean(m, "disableDashboardAd", "api", False),
               dashboard_name=r.string(m, "dashboardName", "api", ""), entry_point=ep)


def static_from_mapping(data, source=""):
    """Build a StaticConfig from an already-parsed mapping (``source`` names it in errors)."""
    r = _Reader(source)
    top = r.mapping(data, "", {"entryPoints", "providers", "log", "accessLog", "api"})
    base_dir = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
    eps_raw = top.get("entryPoints")
    if eps_raw is None:
        eps = {"web": EntryPoint(name="web")}
    else:
        if not isinstance(eps_raw, dict) or not eps_raw:
            raise r.error("entryPoints", "expected a mapping of at least one entry point")
        eps = {}
        for name, raw in eps_raw.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                raise r.error("entryPoints", "invalid entry point name %r" % (name,))
            eps[name] = _entry_point(r, name, raw)
        seen = {}
        for ep in eps.values():
            key = (ep.host, ep.port)
            if key in seen:
                raise r.error("entryPoints.%s.address" % ep.name,
                              "same address as entry point %r" % seen[key])
            seen[key] = ep.name
    api = _api(r, top["api"], eps) if "api" in top else None
    warnings = []
    if api is not None and api.debug:
        warnings.append(ConfigError(
            "pyroute has no debug endpoints (/debug/vars, pprof): api.debug is ignored",
            file=source or None, field="api.debug", severity="warning"))
    if api is not None and api.insecure:
        if not eps:
            raise r.error("entryPoints", "besides \"traefik\" (the API's, with api.insecure), "
                          "at least one entry point is needed to serve routes")
        for ep in eps.values():
            if (ep.host, ep.port) == (api.entry_point.host, api.entry_point.port):
                raise r.error("entryPoints.%s.address" % ep.name,
                              "same address as entry point 'traefik' (api.insecure)")
    return StaticConfig(
        entry_points=eps,
        providers_crd=_providers(r, top.get("providers"), base_dir),
        log=_log(r, top.get("log")),
        access_log=_access_log(r, top.get("accessLog"), "accessLog" in top),
        source=source,
        api=api,
        warnings=tuple(warnings),
    )


def load_static(path=None):
    """Read the static configuration at ``path`` (YAML), or return the defaults for None.

    Raises ConfigError (naming the file and key) for anything invalid or unknown.
    """
    if path is None:
        return static_from_mapping({})
    try:
        with open(path, "rb") as f:
            data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as e:
        raise ConfigError("cannot read static configuration: %s" % e.strerror, file=path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError("invalid YAML: %s" % getattr(e, "problem", e), file=path,
                          line=mark.line + 1 if mark else None) from None
    return static_from_mapping(data, source=path)
