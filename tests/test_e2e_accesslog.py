"""The access log and pyroute's own log end to end: ``pyroute run`` with real backends, the
lines read back from the files and judged against Traefik's formats and field names
(pkg/middlewares/accesslog: logger_formatters.go, logdata.go; the cases of logger_test.go
translated to requests). Several pyroute processes start at once to keep the file short."""
import json
import os
import re
import signal
import socket
import time

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response, static_yaml

UA = "testUserAgent"
REFERER = "testReferer"

# Traefik's CommonLogFormatter: %s - %s [%s] "%s %s %s" %v %v %s %s %v %s %s %dms
CLF_TIME = r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000"

JSON_PROXIED_KEYS = {
    "ClientAddr", "ClientHost", "ClientPort", "ClientUsername", "DownstreamContentSize",
    "DownstreamStatus", "Duration", "OriginContentSize", "OriginDuration", "OriginStatus",
    "Overhead", "RequestAddr", "RequestContentSize", "RequestCount", "RequestHost",
    "RequestMethod", "RequestPath", "RequestPort", "RequestProtocol", "RequestScheme",
    "RetryAttempts", "RouterName", "ServiceAddr", "ServiceName", "ServiceURL", "StartLocal",
    "StartUTC", "entryPointName", "level", "msg", "time"}


def manifests(be_port, extra_route=""):
    return backend_service("app", [be_port]) + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: shop, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
        "    - match: Host(`a.test`)\n      kind: Rule\n"
        "      services: [{name: app, port: 80}]\n"
        "    - match: Host(`quiet.test`)\n      kind: Rule\n"
        "      observability: {accessLogs: false}\n"
        "      services: [{name: app, port: 80}]\n" + extra_route)


class Proxy:
    def __init__(self, tmp, be, access="", log="log: {level: INFO}\n", trusted=()):
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.file = tmp / "access.log"
        self.p = Pyroute(tmp, manifests(be.port))
        text = static_yaml(self.p.port, trusted=trusted).replace("log: {level: INFO}\n", log)
        if access is not None:
            text += "accessLog:\n  filePath: \"%s\"\n%s" % (self.file, access)
        self.p.static.write_text(text)
        self.port = self.p.port

    def start(self, wait=True):
        self.p.start(wait=False)
        return self

    def ready(self):
        self.p.wait_ready(timeout=60.0)
        return self

    def stop(self):
        self.p.stop()

    def lines(self, n, timeout=10.0, path=None):
        """The first ``n`` lines (the readiness probe's 400 never reaches the log)."""
        path = path or self.file
        end = time.time() + timeout
        while time.time() < end:
            try:
                text = path.read_text()
            except FileNotFoundError:
                text = ""
            lines = text.splitlines()
            if len(lines) >= n:
                return lines
            time.sleep(0.05)
        raise AssertionError("expected %d lines in %s, got: %r\n%s"
                             % (n, path, text, self.p.output()))


def send(port, raw, keep=None):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        status, headers, body, _ = read_response(s)
        return status, body, s.getsockname()[1]


def get(port, path="/", host="a.test", extra=""):
    return send(port, ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nReferer: %s\r\n"
                       "%s\r\n" % (path, host, UA, REFERER, extra)).encode())


@pytest.fixture(scope="module")
def be():
    b = Backend("be")
    yield b
    b.close()


def start_all(proxies, batch=6):
    # a few at a time: the machine running the tests may have few cores
    items = list(proxies.values())
    for i in range(0, len(items), batch):
        for p in items[i:i + batch]:
            p.start()
        for p in items[i:i + batch]:
            p.ready()
    return proxies


def test_formats_fields_and_filters(tmp_path, be):
    """One pyroute per static configuration, all started at once; the cases of Traefik's
    TestNewLogHandlerOutputStdout / TestLoggerJSON translated to requests."""
    cfg = {
        "common": "",
        "generic": "  format: genericCLF\n",
        "json": "  format: json\n",
        "keep_override": "  fields:\n    defaultMode: keep\n    names: {ClientHost: drop}\n"
                         "    headers: {defaultMode: keep}\n",
        "drop": "  fields:\n    defaultMode: drop\n    headers: {defaultMode: keep}\n",
        "drop_headers": "  fields:\n    defaultMode: drop\n    names: {ClientUsername: keep}\n"
                        "    headers: {defaultMode: drop}\n",
        "redact_headers": "  fields:\n    defaultMode: drop\n    names: {ClientUsername: keep}\n"
                          "    headers: {defaultMode: redact}\n",
        "redact_referer": "  fields:\n    defaultMode: drop\n    names: {ClientUsername: keep}\n"
                          "    headers:\n      defaultMode: keep\n      names: {Referer: redact}\n",
        "json_drop": "  format: json\n  fields:\n    defaultMode: drop\n"
                     "    names: {rEqUeStHoSt: keep}\n"
                     "    headers:\n      defaultMode: drop\n      names: {ReFeReR: keep}\n",
        "json_redact": "  format: json\n  fields:\n    defaultMode: drop\n"
                       "    headers: {defaultMode: redact}\n",
        "json_noquery": "  format: json\n  fields:\n    queryParameters: {defaultMode: drop}\n",
        "status": "  format: json\n  filters: {statusCodes: [\"200\", \"500-504\"]}\n",
        "duration": "  format: json\n  filters: {minDuration: 150ms}\n",
        "retry": "  format: json\n  filters: {retryAttempts: true}\n",
    }
    proxies = start_all({k: Proxy(tmp_path / k, be, v) for k, v in cfg.items()})
    try:
        _check_formats(proxies, be)
    finally:
        for p in proxies.values():
            p.stop()


def _check_formats(px, be):
    # ---- common: Traefik's CLF with the count, router, server URL and duration
    p = px["common"]
    status, _, cport = get(p.port, "/a/b?x=1&y=2")
    assert status == 200
    assert get(p.port, "/", host="quiet.test")[0] == 200       # accessLogs: false
    assert get(p.port, "/none", host="nowhere.test")[0] == 404  # no router matches
    lines = p.lines(2)
    assert len(lines) == 2, lines
    m = re.fullmatch(r'127\.0\.0\.1 - - \[(%s)\] "GET /a/b\?x=1&y=2 HTTP/1\.1" 200 (\d+) '
                     r'"-" "-" 1 "(default-shop-[0-9a-f]+@kubernetescrd)" '
                     r'"http://127\.0\.0\.1:%d" (\d+)ms' % (CLF_TIME, be.port), lines[0])
    assert m, lines[0]
    assert int(m.group(2)) > 0                                 # the backend's JSON echo
    # a request no router takes: Traefik's entry point chain logs it, router "-" (quoted)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[%s\] "GET /none HTTP/1\.1" 404 19 "-" "-" 2 '
                        r'"-" "-" \d+ms' % CLF_TIME, lines[1]), lines[1]

    # ---- genericCLF: the first ten fields only
    p = px["generic"]
    get(p.port, "/g")
    line = p.lines(1)[0]
    assert re.fullmatch(r'127\.0\.0\.1 - - \[%s\] "GET /g HTTP/1\.1" 200 \d+ "-" "-"'
                        % CLF_TIME, line), line

    # ---- json: Traefik's field names, every default field of a proxied request
    p = px["json"]
    body = b"hello body"
    status, _, cport = send(p.port, b"POST /j?q=1 HTTP/1.1\r\nHost: a.test:%d\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (p.port, len(body), body))
    assert status == 200
    chunked = b"POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n" \
              b"4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
    assert send(p.port, chunked)[0] == 200
    assert get(p.port, "/x", host="nowhere.test")[0] == 404
    j, jc, miss = [json.loads(x) for x in p.lines(3)]
    assert set(j) == JSON_PROXIED_KEYS, set(j) ^ JSON_PROXIED_KEYS
    assert j["ClientAddr"] == "127.0.0.1:%d" % cport
    assert j["ClientHost"] == "127.0.0.1" and j["ClientPort"] == str(cport)
    assert j["ClientUsername"] == "-"
    assert j["RequestMethod"] == "POST" and j["RequestPath"] == "/j?q=1"
    assert j["RequestProtocol"] == "HTTP/1.1" and j["RequestScheme"] == "http"
    assert j["RequestAddr"] == "a.test:%d" % p.port
    assert j["RequestHost"] == "a.test" and j["RequestPort"] == str(p.port)
    assert j["RequestContentSize"] == len(body)
    assert jc["RequestContentSize"] == 7                     # the chunked body's payload
    assert j["DownstreamStatus"] == 200 and j["OriginStatus"] == 200
    assert j["DownstreamContentSize"] == j["OriginContentSize"] > 0
    assert re.fullmatch(r"default-shop-[0-9a-f]+@kubernetescrd", j["RouterName"])
    # Traefik's CRD provider names a route's one-Service load balancer as its router
    assert j["ServiceName"] == j["RouterName"], j["ServiceName"]
    assert j["ServiceURL"] == "http://127.0.0.1:%d" % be.port
    assert j["ServiceAddr"] == "127.0.0.1:%d" % be.port
    assert j["entryPointName"] == "web"
    assert j["RetryAttempts"] == 0 and j["RequestCount"] == 1 and jc["RequestCount"] == 2
    assert j["Duration"] > 0 and j["OriginDuration"] > 0
    assert j["Overhead"] == j["Duration"] - j["OriginDuration"]
    assert j["level"] == "info" and j["msg"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", j["StartUTC"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", j["time"])
    # the line itself: logrus' JSONFormatter sorts the keys
    assert list(j) == sorted(j)
    # pyroute answered itself: no router, no service; origin fields zero (InitServiceFields)
    assert miss["DownstreamStatus"] == 404 and miss["OriginStatus"] == 0
    assert miss["OriginDuration"] == 0 and miss["OriginContentSize"] == 0
    assert miss["DownstreamContentSize"] == 19               # "404 page not found\n"
    assert not {"RouterName", "ServiceName", "ServiceURL", "ServiceAddr"} & set(miss)

    # ---- field modes, as Traefik's TestNewLogHandlerOutputStdout
    expect = {
        "keep_override": r'- - - \[%s\] "GET /m HTTP/1\.1" 200 \d+ "testReferer" '
                         r'"testUserAgent" 1 "default-shop-[0-9a-f]+@kubernetescrd" '
                         r'"http://127\.0\.0\.1:\d+" \d+ms' % CLF_TIME,
        "drop": r'- - - \[-\] "- - -" - - "testReferer" "testUserAgent" - "-" "-" 0ms',
        "drop_headers": r'- - - \[-\] "- - -" - - "-" "-" - "-" "-" 0ms',
        "redact_headers": r'- - - \[-\] "- - -" - - "REDACTED" "REDACTED" - "-" "-" 0ms',
        "redact_referer": r'- - - \[-\] "- - -" - - "REDACTED" "testUserAgent" - "-" "-" 0ms',
    }
    for name, pattern in expect.items():
        get(px[name].port, "/m")
    for name, pattern in expect.items():
        line = px[name].lines(1)[0]
        assert re.fullmatch(pattern, line), (name, line)

    # json: all fields dropped but one, headers dropped but one (case-insensitive names)
    for name in ("json_drop", "json_redact", "json_noquery"):
        get(px[name].port, "/q?secret=1")
    j = json.loads(px["json_drop"].lines(1)[0])
    assert j == {"RequestHost": "a.test", "request_Referer": REFERER, "level": "info",
                 "msg": "", "time": j["time"]}
    j = json.loads(px["json_redact"].lines(1)[0])
    assert j["request_User-Agent"] == "REDACTED" and j["request_Referer"] == "REDACTED"
    assert j["request_Host"] == "REDACTED"
    assert j["downstream_Content-Type"] == "REDACTED" and j["origin_X-Backend"] == "REDACTED"
    assert not any(k[0].isupper() for k in j), j              # core fields dropped
    j = json.loads(px["json_noquery"].lines(1)[0])
    assert j["RequestPath"] == "/q"

    # ---- filters: any filter that matches keeps the line
    p = px["status"]
    get(p.port, "/status/404")
    get(p.port, "/ok")
    get(p.port, "/status/502")
    got = [json.loads(x) for x in p.lines(2)]
    time.sleep(0.3)
    got = [json.loads(x) for x in p.lines(2)]
    assert [(x["DownstreamStatus"], x["RequestPath"]) for x in got] == [
        (200, "/ok"), (502, "/status/502")]
    p = px["duration"]
    get(p.port, "/fast")
    get(p.port, "/slow/300")
    got = [json.loads(x) for x in p.lines(1)]
    time.sleep(0.3)
    got = [json.loads(x) for x in p.lines(1)]
    assert [x["RequestPath"] for x in got] == ["/slow/300"]
    assert got[0]["Duration"] > 150e6 and got[0]["OriginDuration"] > 150e6
    # retryAttempts: no route of this proxy retries, so nothing is kept
    p = px["retry"]
    get(p.port, "/r")
    time.sleep(0.3)
    assert not p.file.exists() or p.file.read_text() == ""


def test_downstream_and_origin_headers(tmp_path, be):
    p = Proxy(tmp_path, be, "  format: json\n  fields:\n    headers:\n      defaultMode: drop\n"
              "      names: {X-Backend: keep, Content-Length: keep, user-agent: keep}\n")
    p.start().ready()
    try:
        get(p.port, "/big/5")
        j = json.loads(p.lines(1)[0])
        assert j["request_User-Agent"] == UA
        assert j["origin_X-Backend"] == "be" and j["downstream_X-Backend"] == "be"
        assert j["origin_Content-Length"] == "5" and j["downstream_Content-Length"] == "5"
        assert j["DownstreamContentSize"] == 5 and j["OriginContentSize"] == 5
    finally:
        p.stop()


def test_client_gone_is_499_and_router_switch(tmp_path, be):
    p = Proxy(tmp_path, be, "  format: json\n")
    p.start().ready()
    try:
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(b"GET /slow/1500 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        time.sleep(0.3)
        s.close()                                   # the client gives up
        get(p.port, "/", host="quiet.test")        # accessLogs: false: never logged
        get(p.port, "/after")
        lines = p.lines(2)
        got = {json.loads(x)["RequestPath"]: json.loads(x) for x in lines}
        assert set(got) == {"/slow/1500", "/after"}, lines
        gone = got["/slow/1500"]
        assert gone["DownstreamStatus"] == 499 and gone["OriginStatus"] == 499
        assert gone["DownstreamContentSize"] == 0
    finally:
        p.stop()


def test_forwarded_for_decides_client_host_only_for_trusted_peers(tmp_path, be):
    untrusted = Proxy(tmp_path / "u", be, "  format: json\n")
    trusted = Proxy(tmp_path / "t", be, "  format: json\n", trusted=("127.0.0.1",))
    start_all({"u": untrusted, "t": trusted})
    try:
        for p in (untrusted, trusted):
            get(p.port, "/xff", extra="X-Forwarded-For: 203.0.113.9\r\n")
        assert json.loads(untrusted.lines(1)[0])["ClientHost"] == "127.0.0.1"
        assert json.loads(trusted.lines(1)[0])["ClientHost"] == "203.0.113.9"
    finally:
        untrusted.stop()
        trusted.stop()


def test_sigusr1_reopens_after_rename(tmp_path, be):
    p = Proxy(tmp_path, be, "", log="log: {level: INFO, filePath: \"%s\"}\n"
              % (tmp_path / "pyroute.log"), )
    p.p.workers = 2
    p.start().ready()
    try:
        get(p.port, "/one")
        p.lines(1)
        os.rename(p.file, tmp_path / "access.log.1")
        os.rename(tmp_path / "pyroute.log", tmp_path / "pyroute.log.1")
        p.p.signal(signal.SIGUSR1)
        deadline = time.time() + 10
        while time.time() < deadline and not (tmp_path / "pyroute.log").exists():
            time.sleep(0.05)
        time.sleep(0.5)                            # the workers' sweep takes it too
        for i in range(6):                         # both workers (SO_REUSEPORT spreads them)
            get(p.port, "/two%d" % i)
        new = p.lines(6)
        assert all("/two" in x for x in new), new
        old = (tmp_path / "access.log.1").read_text().splitlines()
        assert len(old) == 1 and '"GET /one HTTP/1.1"' in old[0]
        assert "Closing and re-opening log files for rotation" in \
            (tmp_path / "pyroute.log").read_text()
    finally:
        p.stop()


def test_pipe_nobody_reads_never_stalls_requests(tmp_path, be):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    p = Proxy(tmp_path, be, "  bufferingSize: 50\n", log="log: {level: INFO, noColor: true}\n")
    p.p.static.write_text(p.p.static.read_text().replace(str(p.file), str(fifo)))
    p.start().ready()
    try:
        n = 1500
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
            for i in range(n):
                s.sendall(b"GET /p%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i)
                assert read_response(s, timeout=5)[0] == 200
        deadline = time.time() + 15
        while time.time() < deadline and "were dropped" not in p.p.output():
            time.sleep(0.1)
        out = p.p.output()
        m = re.search(r"dropped=(\d+)", out)
        assert m and int(m.group(1)) > 0, out
    finally:
        p.stop()
    # at exit, what is left is counted too
    total = re.findall(r"droppedTotal=(\d+)", p.p.output())
    assert total and int(total[-1]) >= n - 50 - 65536 // 60, p.p.output()


def test_pyroute_log_formats(tmp_path, be):
    js = Proxy(tmp_path / "j", be, None, log="log: {level: INFO, format: json}\n")
    cons = Proxy(tmp_path / "c", be, None, log="log: {level: INFO, noColor: true}\n")
    color = Proxy(tmp_path / "k", be, None, log="log: {level: INFO}\n")
    saved = os.environ.pop("NO_COLOR", None)
    try:
        start_all({"j": js, "c": cons, "k": color})
    finally:
        if saved is not None:
            os.environ["NO_COLOR"] = saved
    for p in (js, cons, color):
        p.stop()
    lines = [x for x in js.p.output().splitlines() if x.startswith("{")]
    assert lines, js.p.output()
    for x in lines:
        j = json.loads(x)
        assert list(j)[0] == "level" and list(j)[-2:] == ["time", "message"], x
        assert j["level"] in ("debug", "info", "warn", "error")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", j["time"])
    plain = [x for x in cons.p.output().splitlines() if re.match(r"\d{4}-", x)]
    assert plain and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) "
                                  r"(DBG|INF|WRN|ERR) \S", x) for x in plain), plain
    assert "\x1b[" not in cons.p.output()
    assert "\x1b[32mINF\x1b[0m" in color.p.output()
    # NO_COLOR (zerolog's switch), as the other tests run pyroute
    plain = Proxy(tmp_path / "n", be, None, log="log: {level: INFO}\n")
    plain.start().ready()
    plain.stop()
    assert "INF" in plain.p.output() and "\x1b[" not in plain.p.output()


def test_tls_fields(tmp_path, be):
    import ssl
    p = Proxy(tmp_path, be, "  format: json\n")
    tls_route = ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
                 "metadata: {name: sec, namespace: default}\nspec:\n  entryPoints: [web]\n"
                 "  routes:\n    - match: Host(`s.test`)\n      kind: Rule\n"
                 "      services: [{name: app, port: 80}]\n  tls: {}\n")
    (p.p.mdir / "config.yaml").write_text(manifests(be.port) + tls_route)
    p.start().ready()
    try:
        for maximum in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.maximum_version = maximum
            with socket.create_connection(("127.0.0.1", p.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="s.test") as s:
                    s.sendall(b"GET /tls HTTP/1.1\r\nHost: s.test\r\n\r\n")
                    assert read_response(s)[0] == 200
        j12, j13 = [json.loads(x) for x in p.lines(2)]
        assert j12["RequestScheme"] == "https" and j12["TLSVersion"] == "1.2"
        # Go's cipher suite names (tls.CipherSuiteName), not OpenSSL's
        assert re.fullmatch(r"TLS_ECDHE_(RSA|ECDSA)_WITH_[A-Z0-9_]+", j12["TLSCipher"]), j12
        assert j13["TLSVersion"] == "1.3"
        assert j13["TLSCipher"] in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                    "TLS_CHACHA20_POLY1305_SHA256")
        assert "TLSClientSubject" not in j13                 # no client certificate
    finally:
        p.stop()


def test_retry_attempts_field_and_filter(tmp_path, be):
    """The retry middleware's retries are RetryAttempts; filters.retryAttempts keeps only the
    requests that were retried."""
    dead = socket.socket()
    dead.bind(("127.0.0.2", 0))
    dead_port = dead.getsockname()[1]
    dead.close()                                     # nothing listens there
    m = backend_service("mixed", [("127.0.0.2", dead_port), be.port])
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: net, namespace: default}\nspec:\n  retry: {attempts: 2}\n")
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
          "metadata: {name: r, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
          "    - match: Host(`a.test`)\n      kind: Rule\n"
          "      middlewares: [{name: net}]\n      services: [{name: mixed, port: 80}]\n")
    every = Proxy(tmp_path / "all", be, "  format: json\n")
    only = Proxy(tmp_path / "only", be, "  format: json\n  filters: {retryAttempts: true}\n")
    for p in (every, only):
        (p.p.mdir / "config.yaml").write_text(m)
    start_all({"a": every, "o": only})
    try:
        for p in (every, only):
            for i in range(4):
                assert get(p.port, "/r%d" % i)[0] == 200
        got = [json.loads(x) for x in every.lines(4)]
        retried = [x["RequestPath"] for x in got if x["RetryAttempts"] == 1]
        assert retried and all(x["RetryAttempts"] in (0, 1) for x in got), got
        assert all(x["ServiceURL"] == "http://127.0.0.1:%d" % be.port for x in got)
        time.sleep(0.3)
        kept = [json.loads(x) for x in only.file.read_text().splitlines()]
        assert kept and all(x["RetryAttempts"] == 1 for x in kept), kept
    finally:
        every.stop()
        only.stop()


def test_check_reports_values_traefik_would_not_act_on(tmp_path, be):
    import subprocess
    import sys
    p = Proxy(tmp_path, be, "  format: xml\n  filters: {statusCodes: [\"2xx\"]}\n"
              "  fields:\n    defaultMode: hide\n    headers: {defaultMode: maybe}\n")
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "-c", str(p.p.static),
                          str(p.p.mdir)], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for key, what in (("accessLog.format", "common format is used"),
                      ("accessLog.filters.statusCodes[0]", "statusCodes filter is ignored"),
                      ("accessLog.fields.defaultMode", "'keep' applies"),
                      ("accessLog.fields.headers.defaultMode", "'drop' applies")):
        assert any(str(p.p.static) in ln and key in ln and "warning" in ln and what in ln
                   for ln in text.splitlines()), (key, text)


def test_client_username_from_basic_auth(tmp_path, be):
    import base64
    import hashlib
    line = "alice:{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
    m = manifests(be.port, "    - match: Host(`auth.test`)\n      kind: Rule\n"
                  "      middlewares: [{name: auth}]\n"
                  "      services: [{name: app, port: 80}]\n")
    m += ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: users, namespace: default}\n"
          "type: Opaque\ndata: {users: %s}\n" % base64.b64encode(line.encode()).decode())
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: auth, namespace: default}\nspec: {basicAuth: {secret: users}}\n")
    p = Proxy(tmp_path, be, "")
    (p.p.mdir / "config.yaml").write_text(m)
    p.start().ready()
    try:
        for cred in (b"alice:pw", b"alice:wrong"):
            auth = base64.b64encode(cred).decode()
            get(p.port, "/u", host="auth.test", extra="Authorization: Basic %s\r\n" % auth)
        ok, bad = p.lines(2)
        assert ok.startswith('127.0.0.1 - alice [') and '" 200 ' in ok, ok
        assert bad.startswith('127.0.0.1 - alice [') and '" 401 ' in bad, bad
    finally:
        p.stop()


def test_client_username_from_forward_auth_header_field(tmp_path, be):
    # forwardAuth headerField: the auth server's header names the user in the access log
    # (Traefik's forward.go sets logData.Core[ClientUsername] from it); without the header
    # the user stays "-"
    import http.server
    import threading

    class Auth(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            if self.headers.get("X-Forwarded-Uri", "").startswith("/known"):
                self.send_header("X-Auth-User", "bob")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Auth)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    m = manifests(be.port, "    - match: Host(`fa.test`)\n      kind: Rule\n"
                  "      middlewares: [{name: fa}]\n"
                  "      services: [{name: app, port: 80}]\n")
    m += ("---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
          "metadata: {name: fa, namespace: default}\nspec: {forwardAuth: {address: "
          "\"http://127.0.0.1:%d/check\", headerField: x-auth-user, "
          "trustForwardHeader: false}}\n" % srv.server_address[1])
    p = Proxy(tmp_path, be, "  format: json\n")
    (p.p.mdir / "config.yaml").write_text(m)
    p.start().ready()
    try:
        assert get(p.port, "/known", host="fa.test")[0] == 200
        assert get(p.port, "/other", host="fa.test")[0] == 200
        known, other = (json.loads(x) for x in p.lines(2))
        assert known["RequestPath"] == "/known" and known["ClientUsername"] == "bob", known
        assert other["RequestPath"] == "/other" and other["ClientUsername"] == "-", other
    finally:
        p.stop()
        srv.shutdown()
