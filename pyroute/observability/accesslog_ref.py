"""The access log line in plain Python: the readable statement of what engine/accesslog.pyx
builds in C, checked against it on random exchanges (tests/test_accesslog_format.py).

Traefik's pkg/middlewares/accesslog (logger.go, logdata.go, logger_formatters.go) is the
spec. Strings are Go strings (bytes): they are decoded here with surrogateescape, so a byte
that is not valid UTF-8 survives to the JSON encoder, which writes it as ``\\ufffd`` as Go's
encoding/json does; CLF writes the bytes back unchanged.
"""
import json
import re
import time

# Traefik's defaultCoreKeys (logdata.go), plus entryPointName (logs.EntryPointName)
CORE_KEYS = ("StartUTC", "Duration", "RouterName", "ServiceAddr", "ServiceName", "ServiceURL",
             "ClientAddr", "ClientHost", "ClientPort", "ClientUsername", "GzipRatio",
             "StartLocal", "Overhead", "RetryAttempts", "TLSVersion", "TLSCipher",
             "TLSClientSubject", "RequestAddr", "RequestHost", "RequestPort", "RequestMethod",
             "RequestPath", "RequestProtocol", "RequestScheme", "RequestContentSize",
             "OriginDuration", "OriginContentSize", "OriginStatus", "DownstreamStatus",
             "DownstreamContentSize", "RequestCount", "entryPointName")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _canonical(name):
    # Go's textproto.CanonicalMIMEHeaderKey
    if not name or any(c in name for c in " \t\r\n:"):
        return name
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def _split_host_port(value):
    # Traefik's silentSplitHostPort (net.SplitHostPort, else (value, "-"))
    if value.startswith("["):
        end = value.find("]")
        if end > 0 and value[end + 1:end + 2] == ":" and value.count("]") == 1:
            return value[1:end], value[end + 2:]
        return value, "-"
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, port
    return value, "-"


# the last second formatted, per zone (UTC, local): every line of that second shares it
_SECOND = {True: (None, "", ""), False: (None, "", "")}


def _second(sec, utc):
    """(date and time to the second, zone) of Unix second ``sec``, formatted once a second."""
    last, text, zone = _SECOND[utc]
    if sec != last:
        lt = time.gmtime(sec) if utc else time.localtime(sec)
        text, zone = time.strftime("%Y-%m-%dT%H:%M:%S", lt), _zone(lt, utc)
        _SECOND[utc] = (sec, text, zone)
    return text, zone


def _rfc3339_nano(ns, utc):
    # Go's time.Time JSON (RFC 3339 with nanoseconds, trailing zeros trimmed)
    sec, frac = divmod(ns, 1_000_000_000)
    text, zone = _second(sec, utc)
    if frac:
        text += ("." + "%09d" % frac).rstrip("0")
    return text + zone


def _zone(lt, utc):
    off = 0 if utc else lt.tm_gmtoff
    if off == 0:
        return "Z"
    sign = "+" if off > 0 else "-"
    off = abs(off)
    return "%s%02d:%02d" % (sign, off // 3600, off % 3600 // 60)


def _clf_time(ns):
    # Traefik's commonLogTimeFormat "02/Jan/2006:15:04:05 -0700", of StartUTC (UTC: +0000)
    lt = time.gmtime(ns // 1_000_000_000)
    return "%02d/%s/%04d:%02d:%02d:%02d +0000" % (lt.tm_mday, _MONTHS[lt.tm_mon - 1],
                                                 lt.tm_year, lt.tm_hour, lt.tm_min, lt.tm_sec)


_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _go_json(obj):
    # logrus' JSONFormatter: encoding/json, keys sorted, HTML characters escaped, every byte
    # that is not valid UTF-8 (a surrogate escape here) written as \ufffd
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return _NOT_UTF8.sub("\\\\ufffd", text)


def _go_str(b):
    # a Go string (bytes) as a str that keeps every byte (see the module docstring)
    return b.decode("utf-8", "surrogateescape")


def _to_log(fields, key, default, quoted):
    # Traefik's toLog / toLogEntry
    if key not in fields:
        return default
    v = fields[key]
    if v is None:
        return default
    if isinstance(v, str):
        if not v:
            return default
        return '"' + v.replace('"', '\\"') + '"' if quoted else v
    return str(v)


class ReferenceFormatter:
    """``line(ex, mono, real_ns)``: the line engine.accesslog.Formatter builds, or None;
    ``cfg``: pyroute.static.AccessLog, ``tls_fields``: as the Formatter's."""

    def __init__(self, cfg, tls_fields=None):
        self.cfg = cfg
        self.format = cfg.format
        self.count = 0
        names = dict(cfg.names)
        self.keep = {k: names.get(k.lower(), cfg.default_mode) == "keep" for k in CORE_KEYS}
        self.keep_all = all(self.keep.values())
        self.header_modes = dict(cfg.header_names)
        self.header_default = cfg.headers_default_mode
        self.headers_on = self.header_default != "drop" or any(
            m != "drop" for m in self.header_modes.values())
        self.filtered = bool(cfg.status_codes or cfg.retry_attempts or cfg.min_duration > 0)
        self.ranges = cfg.status_codes
        self.min_duration_ns = int(cfg.min_duration * 1e9)
        self.tls_fields = tls_fields

    def line(self, ex, mono, real_ns):
        route = ex.route
        if route is not None:
            if not route.access_log:
                return
        elif not ex.ep.access_logged:
            # no router took it: the entry point's observability.accessLogs decides
            return
        duration = int((mono - ex.started) * 1e9)
        status = ex.status
        # Traefik's SaveRetries: the request attempt x is retry attempt x-1
        retries = ex.attempts - 1 if ex.attempts > 1 else 0
        if self.filtered and not self._keep_line(status, duration, retries):
            return
        self.count += 1
        core = self._core(ex, route, duration, mono, status, real_ns)
        core["RetryAttempts"] = retries
        fields = core if self.keep_all else {k: v for k, v in core.items() if self.keep[k]}
        if self.headers_on:
            self._headers(ex, fields)
        fmt = self.format
        if fmt == "json":
            if "StartUTC" in fields:
                fields["StartUTC"] = _rfc3339_nano(fields["StartUTC"], True)
            if "StartLocal" in fields:
                fields["StartLocal"] = _rfc3339_nano(fields["StartLocal"], False)
            fields["level"] = "info"
            fields["msg"] = ""
            fields["time"] = _rfc3339(real_ns // 1_000_000_000)
            line = _go_json(fields) + "\n"
        elif fmt == "genericCLF":
            line = self._clf(fields, False)
        else:
            line = self._clf(fields, True)
        return line.encode("utf-8", "surrogateescape")

    def _keep_line(self, status, duration, retries):
        # Traefik's keepAccessLog (filters given): any filter that matches keeps the line
        for low, high in self.ranges:
            if low <= status <= high:
                return True
        if self.cfg.retry_attempts and retries > 0:
            return True
        return self.min_duration_ns > 0 and duration > self.min_duration_ns

    def _core(self, ex, route, duration, mono, status, real_ns):
        req = ex.req
        start_ns = real_ns - duration
        core = {"StartUTC": start_ns, "StartLocal": start_ns}
        core["RequestCount"] = self.count
        host = _go_str(req.host) if req.host else ""
        if host:
            core["RequestAddr"] = host
            core["RequestHost"], core["RequestPort"] = _split_host_port(host)
        path = req.path
        path = _go_str(path) if path is not None else ""
        query = req.query
        if self.cfg.keep_query and query is not None:
            path += "?" + _go_str(query)
        core["RequestMethod"] = _go_str(req.method)
        core["RequestPath"] = path
        # an HTTP/2 stream's request reaches the chain as HTTP/1.1 (engine/h2.pyx)
        core["RequestProtocol"] = ("HTTP/2.0" if getattr(ex.conn, "http2", False) else
                                   "HTTP/1.1" if req.version == 11 else "HTTP/1.0")
        if ex.tls:
            core["RequestScheme"] = "https"
            self._tls(ex, core)
        else:
            core["RequestScheme"] = "http"
        ip = _go_str(ex.remote_ip)
        port = getattr(ex.conn, "remote_port", 0)
        port = str(port) if port else "-"
        core["ClientAddr"] = ("[%s]:%s" % (ip, port) if ":" in ip else "%s:%s" % (ip, port)) \
            if port != "-" else ip
        core["ClientHost"] = ip
        core["ClientPort"] = port
        if ex.trusted:
            # Traefik: X-Forwarded-For decides ClientHost; its forwardedHeaders handler
            # removed the header of a client outside trustedIPs before (never trusted)
            xff = req.header(b"x-forwarded-for")
            if xff:
                core["ClientHost"] = _go_str(xff)
        core["entryPointName"] = ex.ep.name
        # InitServiceFields: the origin fields exist even when pyroute answered itself
        origin_duration = 0
        core["OriginStatus"] = 0
        core["OriginContentSize"] = 0
        if route is not None:
            core["RouterName"] = route.log_name
        server = ex.server
        if server is not None and ex.origin_started:
            service_name = getattr(server, "service_name", None)
            if service_name is not None:
                core["ServiceURL"] = server.url
                core["ServiceAddr"] = server.addr
                core["ServiceName"] = service_name
            origin_duration = int((mono - ex.origin_started) * 1e9)
            # a backend that failed: the status pyroute answered in its place (Traefik's
            # proxy error handler writes it inside the service's handler)
            core["OriginStatus"] = ex.origin_status or status
            core["OriginContentSize"] = ex.bytes_out
        core["OriginDuration"] = origin_duration
        # basicAuth/digestAuth leave the user in ex.vars (Traefik: failed attempts too)
        v = ex.vars
        user = v.get("ClientUsername") if v is not None else None
        if isinstance(user, bytes):
            user = _go_str(user)
        core["ClientUsername"] = user or "-"
        core["RequestContentSize"] = ex.bytes_in
        core["DownstreamStatus"] = ex.status
        core["Duration"] = duration
        core["DownstreamContentSize"] = ex.bytes_out
        core["Overhead"] = duration - origin_duration
        return core

    def _tls(self, ex, core):
        tls = self.tls_fields(ex) if self.tls_fields is not None else None
        if tls is None:
            return
        core["TLSVersion"], core["TLSCipher"] = tls[0], tls[1]
        if tls[2] is not None:
            core["TLSClientSubject"] = tls[2]

    def _headers(self, ex, fields):
        # Traefik's redactHeaders: <prefix><Canonical-Name>, values joined by ","
        self._header_fields(ex.req.headers, fields, "request_")
        if ex.origin_head is not None:
            self._header_fields(_head_lines(ex.origin_head, _HOP_BY_HOP), fields, "origin_")
        if ex.resp_head is not None:
            self._header_fields(_head_lines(ex.resp_head, _SERVER_ADDED), fields,
                                "downstream_")

    def _header_fields(self, headers, fields, prefix):
        seen = {}
        modes = {}
        for name, value in headers:
            key = _canonical(name.decode("latin-1"))
            mode = modes.get(key)
            if mode is None:
                mode = modes[key] = self.header_modes.get(key, self.header_default)
            if mode == "drop":
                continue
            v = _go_str(value)
            seen[key] = seen[key] + "," + v if key in seen else v
        for key, v in seen.items():
            fields[prefix + key] = "REDACTED" if modes[key] == "redact" else v

    def _clf(self, data, extended):
        start = data.get("StartUTC")
        if start is not None:
            timestamp = _clf_time(start)
        elif "StartLocal" in data:
            timestamp = _clf_local(data["StartLocal"])
        else:
            timestamp = "-"
        parts = ["%s - %s [%s] \"%s %s %s\" %s %s %s %s" % (
            _to_log(data, "ClientHost", "-", False),
            _to_log(data, "ClientUsername", "-", False),
            timestamp,
            _to_log(data, "RequestMethod", "-", False),
            _to_log(data, "RequestPath", "-", False),
            _to_log(data, "RequestProtocol", "-", False),
            _to_log(data, "DownstreamStatus", "-", True),
            _to_log(data, "DownstreamContentSize", "-", True),
            _to_log(data, "request_Referer", '"-"', True),
            _to_log(data, "request_User-Agent", '"-"', True))]
        if extended:
            parts.append(" %s %s %s %dms" % (
                _to_log(data, "RequestCount", "-", True),
                _to_log(data, "RouterName", '"-"', True),
                _to_log(data, "ServiceURL", '"-"', True),
                data.get("Duration", 0) // 1_000_000))
        parts.append("\n")
        return "".join(parts)


# Go's ReverseProxy drops hop-by-hop headers before they reach the ResponseWriter (origin_);
# the lines Go's server writes itself are not in the handler's header map (downstream_)
_HOP_BY_HOP = frozenset((b"connection", b"proxy-connection", b"keep-alive", b"te",
                         b"trailer", b"transfer-encoding", b"upgrade", b"proxy-authenticate",
                         b"proxy-authorization"))
_SERVER_ADDED = frozenset((b"connection", b"keep-alive"))


def _head_lines(head, skip):
    end = head.find(b"\r\n\r\n")
    out = []
    for line in (head if end < 0 else head[:end]).split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.lower() not in skip:
            out.append((name, value.strip(b" \t")))
    return out


def _clf_local(ns):
    lt = time.localtime(ns // 1_000_000_000)
    off = lt.tm_gmtoff
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return "%02d/%s/%04d:%02d:%02d:%02d %s%02d%02d" % (
        lt.tm_mday, _MONTHS[lt.tm_mon - 1], lt.tm_year, lt.tm_hour, lt.tm_min, lt.tm_sec,
        sign, off // 3600, off % 3600 // 60)


def _rfc3339(sec):
    text, zone = _second(sec, False)
    return text + zone
