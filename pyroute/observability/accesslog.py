"""The access log: one line per finished exchange, in Traefik's formats and field names.

Traefik's pkg/middlewares/accesslog (logger.go, logdata.go, logger_formatters.go) is the
spec. pyroute does not run it as a middleware: each worker appends ``AccessLogger.observe``
to ``Env.observers`` (engine/conn.pyx calls it once when an exchange ends), which reads the
finished exchange, applies the filters and field modes, and builds the line in the worker.
The line goes to a bounded in-memory buffer; a writer thread writes the buffer to the file
(blocking there, never in the loop). Lines that do not fit the buffer (a slow disk, a pipe
nobody reads) are counted and reported in pyroute's log, never waited for. ``reopen``
(SIGUSR1) closes and reopens the file, for logrotate.

Routes with access logs off (``observability.accessLogs: false``, or an @internal service
without ``addInternals``) cost one attribute read; without ``accessLog`` nothing runs.
"""
import collections
import json
import os
import threading
import time

from ..server.log import log

DEFAULT_BUFFER = 16384          # lines per worker when bufferingSize is 0
FLUSH_INTERVAL = 0.05           # seconds between the writer thread's looks at the buffer
REPORT_INTERVAL = 10.0          # at most one "lines dropped" log line per interval

# Traefik's defaultCoreKeys (logdata.go), plus entryPointName (logs.EntryPointName)
CORE_KEYS = ("StartUTC", "Duration", "RouterName", "ServiceAddr", "ServiceName", "ServiceURL",
             "ClientAddr", "ClientHost", "ClientPort", "ClientUsername", "GzipRatio",
             "StartLocal", "Overhead", "RetryAttempts", "TLSVersion", "TLSCipher",
             "TLSClientSubject", "RequestAddr", "RequestHost", "RequestPort", "RequestMethod",
             "RequestPath", "RequestProtocol", "RequestScheme", "RequestContentSize",
             "OriginDuration", "OriginContentSize", "OriginStatus", "DownstreamStatus",
             "DownstreamContentSize", "RequestCount", "entryPointName")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TLS_VERSIONS = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}


def _go_ciphers():
    from ..tls import CIPHER_SUITES
    names = {v: k for k, v in CIPHER_SUITES.items()}
    for n in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
              "TLS_CHACHA20_POLY1305_SHA256"):
        names[n] = n
    return names


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


def _go_json(obj):
    # logrus' JSONFormatter: encoding/json, keys sorted, HTML characters escaped
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


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


class _Writer:
    """A bounded buffer of lines and the thread that writes it to the file."""

    def __init__(self, path, limit):
        self.path = path
        self.limit = limit
        self.lines = collections.deque()
        self.fd = 1
        self.dropped = 0            # since the last report
        self.dropped_total = 0
        self.reported_at = 0.0
        self.reopen_wanted = False
        self.stopping = False
        if path:
            self.fd = self._open()
        self.thread = threading.Thread(target=self._run, name="pyroute-accesslog",
                                       daemon=True)
        self.thread.start()

    def _open(self):
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        # as Traefik: O_RDWR|O_CREATE|O_APPEND, 0664 (a FIFO opens without a reader)
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o664)

    def put(self, data):
        lines = self.lines
        if len(lines) >= self.limit:
            self.dropped += 1
            return
        lines.append(data)

    def _run(self):
        lines = self.lines
        while True:
            if self.reopen_wanted:
                self._reopen()
            if not lines:
                if self.stopping:
                    return
                time.sleep(FLUSH_INTERVAL)
                continue
            batch = []
            n = 0
            while lines and n < 1 << 20:
                data = lines.popleft()
                batch.append(data)
                n += len(data)
            self._write(b"".join(batch))
            if len(batch) * 4 < self.limit and not self.stopping:
                # a batch well below the bound: wait for the next, rather than wake (and
                # take the GIL from the worker's loop) for every few lines — under load
                # that was a write and two GIL hand-offs per handful of requests
                time.sleep(FLUSH_INTERVAL)

    def _write(self, data):
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError as e:
                log("error", "cannot write the access log", filePath=self.path or "stdout",
                    error=e.strerror or str(e))
                return
            view = view[n:]

    def _reopen(self):
        self.reopen_wanted = False
        if not self.path:
            return
        try:
            fd = self._open()
        except OSError as e:
            log("error", "Error rotating access log", filePath=self.path,
                error=e.strerror or str(e))
            return
        old, self.fd = self.fd, fd
        if old > 2:
            os.close(old)

    def report(self, now, final=False):
        """Called from the loop: one log line per REPORT_INTERVAL while lines are dropped."""
        if self.dropped and (final or now >= self.reported_at + REPORT_INTERVAL):
            self.dropped_total += self.dropped
            log("warn", "access log lines could not be written in time and were dropped",
                dropped=self.dropped, droppedTotal=self.dropped_total,
                filePath=self.path or "stdout", buffer=self.limit)
            self.dropped = 0
            self.reported_at = now

    def close(self, timeout=1.0):
        self.stopping = True
        self.thread.join(timeout)
        left = len(self.lines)
        if left:
            self.dropped += left
            self.lines.clear()
        self.report(0.0, final=True)


class AccessLogger:
    """One worker's access log (see the module docstring); ``cfg``: pyroute.static.AccessLog."""

    def __init__(self, cfg):
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
        self.ciphers = None
        limit = cfg.buffering_size if cfg.buffering_size > 0 else DEFAULT_BUFFER
        self.writer = _Writer(cfg.file_path, limit)

    # ---- per exchange (the worker's loop) -------------------------------------------------

    def observe(self, ex):
        route = ex.route
        if route is not None:
            if not route.access_log:
                return
        elif not ex.ep.access_logged:
            # no router took it: the entry point's observability.accessLogs decides
            return
        mono = time.monotonic()
        duration = int((mono - ex.started) * 1e9)
        status = ex.status
        # Traefik's SaveRetries: the request attempt x is retry attempt x-1
        retries = ex.attempts - 1 if ex.attempts > 1 else 0
        if self.filtered and not self._keep_line(status, duration, retries):
            return
        self.count += 1
        core = self._core(ex, route, duration, mono, status)
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
            fields["time"] = _rfc3339(time.time())
            line = _go_json(fields) + "\n"
        elif fmt == "genericCLF":
            line = self._clf(fields, False)
        else:
            line = self._clf(fields, True)
        self.writer.put(line.encode("utf-8", "replace"))

    def _keep_line(self, status, duration, retries):
        # Traefik's keepAccessLog (filters given): any filter that matches keeps the line
        for low, high in self.ranges:
            if low <= status <= high:
                return True
        if self.cfg.retry_attempts and retries > 0:
            return True
        return self.min_duration_ns > 0 and duration > self.min_duration_ns

    def _core(self, ex, route, duration, mono, status):
        req = ex.req
        start_ns = time.time_ns() - int((mono - ex.started) * 1e9)
        core = {"StartUTC": start_ns, "StartLocal": start_ns}
        core["RequestCount"] = self.count
        host = req.host.decode("latin-1") if req.host else ""
        if host:
            core["RequestAddr"] = host
            core["RequestHost"], core["RequestPort"] = _split_host_port(host)
        path = req.path
        path = path.decode("latin-1") if path is not None else ""
        query = req.query
        if self.cfg.keep_query and query is not None:
            path += "?" + query.decode("latin-1")
        core["RequestMethod"] = req.method.decode("latin-1")
        core["RequestPath"] = path
        # an HTTP/2 stream's request reaches the chain as HTTP/1.1 (engine/h2.pyx)
        core["RequestProtocol"] = ("HTTP/2.0" if getattr(ex.conn, "http2", False) else
                                   "HTTP/1.1" if req.version == 11 else "HTTP/1.0")
        if ex.tls:
            core["RequestScheme"] = "https"
            self._tls(ex, core)
        else:
            core["RequestScheme"] = "http"
        ip = ex.remote_ip.decode("latin-1")
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
                core["ClientHost"] = xff.decode("latin-1")
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
            user = user.decode("utf-8", "replace")
        core["ClientUsername"] = user or "-"
        core["RequestContentSize"] = ex.bytes_in
        core["DownstreamStatus"] = ex.status
        core["Duration"] = duration
        core["DownstreamContentSize"] = ex.bytes_out
        core["Overhead"] = duration - origin_duration
        return core

    def _tls(self, ex, core):
        stream = getattr(ex.conn, "sock", None)
        conn = getattr(stream, "conn", stream)     # TLSStream: its pyOpenSSL Connection
        try:
            version = conn.get_protocol_version_name()
            cipher = conn.get_cipher_name()
        except Exception:       # not a pyOpenSSL connection (any more)
            return
        if self.ciphers is None:
            self.ciphers = _go_ciphers()
        core["TLSVersion"] = _TLS_VERSIONS.get(version, version)
        core["TLSCipher"] = self.ciphers.get(cipher, cipher)
        try:
            cert = conn.get_peer_certificate()
        except Exception:
            cert = None
        if cert is not None:
            core["TLSClientSubject"] = _subject(cert)

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
            v = value.decode("latin-1")
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

    # ---- from the loop, off the per-request path -------------------------------------------

    def tick(self, now):
        self.writer.report(now)

    def reopen(self):
        self.writer.reopen_wanted = True

    def close(self):
        self.writer.close()


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


def _rfc3339(t):
    text, zone = _second(int(t), False)
    return text + zone


def _subject(cert):
    # Go's pkix.Name.String(): RFC 2253 order (most specific first), comma-separated
    short = {b"CN": "CN", b"O": "O", b"OU": "OU", b"C": "C", b"L": "L", b"ST": "ST",
             b"street": "STREET", b"postalCode": "POSTALCODE", b"serialNumber": "SERIALNUMBER"}
    parts = []
    for k, v in reversed(cert.get_subject().get_components()):
        parts.append("%s=%s" % (short.get(k, k.decode()), v.decode("utf-8", "replace")))
    return ",".join(parts)
