"""HTTP/2 to clients end to end over `pyroute run` with real HTTP/2 clients (curl, nghttp):
h2c with prior knowledge, ALPN h2 over TLS, bodies both ways, many streams on one connection,
a large response through flow control, middlewares behaving as for HTTP/1.1, HTTP/2 on by
default as in Traefik, and the pyroute opt-out http2.enabled: false (docs/http2.md)."""
import base64
import json
import re
import socket
import ssl
import subprocess

import pytest
import trustme

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, ingressroute


@pytest.fixture()
def backend():
    be = Backend("be")
    yield be
    be.close()


def h2_pyroute(tmp_path, manifests, enabled=True, extra=""):
    # HTTP/2 is on by default (as Traefik); enabled=False sets the pyroute opt-out
    pr = Pyroute(tmp_path, manifests)
    keys = ([] if enabled else ["enabled: false"]) + ([extra.lstrip(", ")] if extra else [])
    if keys:
        pr.static.write_text(pr.static.read_text().replace(
            "    transport:", "    http2: {%s}\n    transport:" % ", ".join(keys), 1))
    return pr


def curl(*args, timeout=30):
    out = subprocess.run(["curl", "-s", "-S", *args], capture_output=True, timeout=timeout)
    return out


def curl_json(pr, path, *args, host="a.test"):
    out = curl("--http2-prior-knowledge", "-H", "Host: " + host, "-w",
               "\n%{http_code} %{http_version}", *args,
               "http://127.0.0.1:%d%s" % (pr.port, path))
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition(b"\n")
    code, version = tail.split()
    return int(code), version, body


def headers_of(doc):
    return {k.lower(): v for k, v in doc["headers"]}


def test_h2c_get_and_post(tmp_path, backend):
    m = backend_service("be", [backend.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    with h2_pyroute(tmp_path, m) as pr:
        code, version, body = curl_json(pr, "/x?q=1")
        assert (code, version) == (200, b"2")
        doc = json.loads(body)
        # the backend gets HTTP/1.1 with :authority as Host and Traefik's X-Forwarded-*
        assert doc["method"] == "GET" and doc["target"] == "/x?q=1"
        assert doc["version"] == "HTTP/1.1"
        h = headers_of(doc)
        assert h["host"] == "a.test" and h["x-forwarded-proto"] == "http"
        assert h["x-forwarded-for"] == "127.0.0.1"
        # a body with content-length, and one without (sent chunked upstream)
        code, _, body = curl_json(pr, "/post", "--data-binary", "hello=1")
        doc = json.loads(body)
        assert code == 200 and doc["method"] == "POST" and doc["body"] == "hello=1"
        assert headers_of(doc)["content-length"] == "7"
        payload = tmp_path / "payload"
        payload.write_bytes(b"p" * 300000)
        code, _, body = curl_json(pr, "/upload", "-H", "Content-Length:", "-H",
                                  "Transfer-Encoding:", "--data-binary", "@%s" % payload)
        doc = json.loads(body)
        assert code == 200 and doc["body"] == "p" * 300000
        # no route: pyroute's own 404, over HTTP/2
        code, version, _ = curl_json(pr, "/", host="nobody.test")
        assert (code, version) == (404, b"2")


def test_h2c_large_response_through_flow_control(tmp_path, backend):
    m = backend_service("be", [backend.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    with h2_pyroute(tmp_path, m) as pr:
        out = curl("--http2-prior-knowledge", "-H", "Host: a.test", "-o", "-",
                   "http://127.0.0.1:%d/big/8000000" % pr.port)
        assert out.returncode == 0 and out.stdout == b"x" * 8000000
        out = curl("--http2-prior-knowledge", "-H", "Host: a.test",
                   "http://127.0.0.1:%d/chunked/250000" % pr.port)
        assert out.stdout == b"c" * 250000
        # a body until close (re-framed by END_STREAM)
        out = curl("--http2-prior-knowledge", "-H", "Host: a.test",
                   "http://127.0.0.1:%d/close/70000" % pr.port)
        assert out.stdout == b"z" * 70000


def test_many_concurrent_streams_on_one_connection(tmp_path, backend):
    m = backend_service("be", [backend.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    with h2_pyroute(tmp_path, m) as pr:
        urls = ["http://127.0.0.1:%d/slow/50?n=%d" % (pr.port, i) for i in range(40)]
        out = subprocess.run(["nghttp", "-n", "-s", "-H", ":authority: a.test", *urls],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        statuses = re.findall(r"^\s*\d+\s+(\d+)\s", out.stdout, re.M)
        # nghttp -s prints one line per stream: all 40 answered on the one connection
        assert len(re.findall(r"/slow/50\?n=\d+", out.stdout)) == 40
        # h2load: many streams at once, every response 2xx
        out = subprocess.run(["h2load", "-n", "400", "-c", "2", "-m", "50", "-H",
                              ":authority: a.test", "http://127.0.0.1:%d/" % pr.port],
                             capture_output=True, text=True, timeout=60)
        assert "400 succeeded" in out.stdout and "0 failed" in out.stdout, out.stdout
        assert re.search(r"status codes: 400 2xx", out.stdout), out.stdout
        del statuses


def test_middlewares_behave_as_for_http1(tmp_path, backend):
    htpasswd = "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"     # test:test (Traefik's)
    m = (backend_service("be", [backend.port])
         + "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
           "metadata: {name: hdr, namespace: default}\nspec:\n  headers:\n"
           "    customRequestHeaders: {X-Added: req}\n"
           "    customResponseHeaders: {X-Resp: resp, X-Backend: ''}\n"
         + "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
           "metadata: {name: strip, namespace: default}\nspec:\n"
           "  stripPrefix: {prefixes: [/api]}\n"
         + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: users, namespace: default}\n"
           "data: {users: %s}\n" % base64.b64encode(htpasswd.encode()).decode()
         + "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
           "metadata: {name: auth, namespace: default}\nspec:\n"
           "  basicAuth: {secret: users}\n"
         + ingressroute("r", [
             ("Host(`a.test`) && PathPrefix(`/api`)", "be",
              "      middlewares: [{name: hdr}, {name: strip}]\n"),
             ("Host(`a.test`) && PathPrefix(`/private`)", "be",
              "      middlewares: [{name: auth}]\n")]))
    with h2_pyroute(tmp_path, m) as pr:
        out = curl("--http2-prior-knowledge", "-H", "Host: a.test", "-D", "-",
                   "http://127.0.0.1:%d/api/thing" % pr.port)
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/2 200")
        lines = head.lower().split(b"\r\n")
        assert b"x-resp: resp" in lines and not any(x.startswith(b"x-backend") for x in lines)
        doc = json.loads(body)
        assert doc["target"] == "/thing"
        h = headers_of(doc)
        assert h["x-added"] == "req" and h["x-forwarded-prefix"] == "/api"
        # basicAuth: 401 with its challenge, then through with the right credentials
        out = curl("--http2-prior-knowledge", "-H", "Host: a.test", "-D", "-", "-o",
                   "/dev/null", "http://127.0.0.1:%d/private" % pr.port)
        assert out.stdout.startswith(b"HTTP/2 401")
        assert b'www-authenticate: basic realm="traefik"' in out.stdout.lower()
        code, _, body = curl_json(pr, "/private", "-u", "test:test")
        assert code == 200 and json.loads(body)["target"] == "/private"
        code, _, _ = curl_json(pr, "/private", "-u", "test:wrong")
        assert code == 401


def test_tls_alpn_h2(tmp_path, backend):
    ca = trustme.CA()
    leaf = ca.issue_cert("secure.example.com")
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    data = {"tls.crt": b"".join(b.bytes() for b in leaf.cert_chain_pems),
            "tls.key": leaf.private_key_pem.bytes()}
    sec = ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: cert, namespace: default}\n"
           "type: kubernetes.io/tls\ndata:\n" + "".join(
               "  %s: %s\n" % (k, base64.b64encode(v).decode()) for k, v in data.items()))
    m = (backend_service("be", [backend.port]) + sec
         + ingressroute("r", [("Host(`secure.example.com`)", "be", "")])
         + "  tls: {secretName: cert}\n")
    with h2_pyroute(tmp_path, m) as pr:
        url = "https://secure.example.com:%d/tls" % pr.port
        resolve = "secure.example.com:%d:127.0.0.1" % pr.port
        out = curl("--http2", "--cacert", str(cafile), "--resolve", resolve, "-w",
                   "\n%{http_version}", url)
        assert out.returncode == 0, out.stderr
        body, _, version = out.stdout.rpartition(b"\n")
        assert version == b"2"
        h = headers_of(json.loads(body))
        assert h["x-forwarded-proto"] == "https"
        assert h["host"] == "secure.example.com:%d" % pr.port      # :authority
        # a client that offers only http/1.1 still gets it
        out = curl("--http1.1", "--cacert", str(cafile), "--resolve", resolve, "-w",
                   "\n%{http_version}", url)
        assert out.stdout.rpartition(b"\n")[2] == b"1.1"
        ctx = ssl.create_default_context(cafile=str(cafile))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", pr.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="secure.example.com") as s:
                assert s.selected_alpn_protocol() == "h2"


def test_http2_opt_out(tmp_path, backend):
    m = backend_service("be", [backend.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    with h2_pyroute(tmp_path, m, enabled=False) as pr:
        # prior knowledge: the preface is not an HTTP/1.1 request
        out = curl("--http2-prior-knowledge", "-H", "Host: a.test",
                   "http://127.0.0.1:%d/" % pr.port)
        assert out.returncode != 0
        # --http2 on plain HTTP/1.1 (no Upgrade: h2c served): answered over HTTP/1.1
        out = curl("--http2", "-H", "Host: a.test", "-w", "\n%{http_version}",
                   "http://127.0.0.1:%d/" % pr.port)
        assert out.stdout.rpartition(b"\n")[2] == b"1.1"


def test_access_log_says_http2(tmp_path, backend):
    m = backend_service("be", [backend.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    logfile = tmp_path / "access.json"
    pr = h2_pyroute(tmp_path, m)
    pr.static.write_text(pr.static.read_text() + "accessLog:\n  filePath: \"%s\"\n"
                         "  format: json\n  bufferingSize: 0\n" % logfile)
    with pr:
        assert curl_json(pr, "/h2")[0] == 200
        out = curl("-H", "Host: a.test", "http://127.0.0.1:%d/h1" % pr.port)
        assert out.returncode == 0
        import time
        for _ in range(50):
            lines = logfile.read_text().splitlines() if logfile.exists() else []
            if len(lines) >= 2:
                break
            time.sleep(0.1)
        entries = {e["RequestPath"]: e for e in map(json.loads, lines)}
        assert entries["/h2"]["RequestProtocol"] == "HTTP/2.0"
        assert entries["/h2"]["DownstreamStatus"] == 200
        assert entries["/h1"]["RequestProtocol"] == "HTTP/1.1"


def test_misdirected_request_is_per_stream(tmp_path, backend):
    # Traefik's SNICheck runs per request: on one h2 connection (SNI a.example.com), a
    # stream for a host under another TLS option is answered 421, the others are served
    # (browsers coalesce connections across hosts that share a certificate)
    import h2.config
    import h2.connection
    import h2.events
    from test_e2e_tls import route, secret, tls_option
    ca = trustme.CA()
    leaf = ca.issue_cert("a.example.com", "b.example.com", "c.example.com")
    m = (backend_service("be", [backend.port]) + secret("cert", leaf)
         + tls_option("strict", "{minVersion: VersionTLS12, sniStrict: true}")
         + route("a", "a.example.com", "{secretName: cert}")
         + route("b", "b.example.com", "{secretName: cert, options: {name: strict}}")
         + route("c", "c.example.com", "{secretName: cert}"))
    with h2_pyroute(tmp_path, m) as pr:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", pr.port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="a.example.com")
        assert s.selected_alpn_protocol() == "h2"
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                 header_encoding=None))
        c.initiate_connection()
        for sid, host in ((1, b"c.example.com"), (3, b"b.example.com"), (5, b"a.example.com")):
            c.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"),
                                 (b":authority", host), (b":path", b"/")], end_stream=True)
        s.sendall(c.data_to_send())
        status, ended = {}, set()
        while len(ended) < 3:
            data = s.recv(65536)
            assert data
            for e in c.receive_data(data):
                if isinstance(e, h2.events.ResponseReceived):
                    status[e.stream_id] = int(dict(e.headers)[b":status"])
                elif isinstance(e, h2.events.StreamEnded):
                    ended.add(e.stream_id)
            s.sendall(c.data_to_send())
        assert status == {1: 200, 3: 421, 5: 200}
        s.close()


def test_upgrade_h2c_is_an_ordinary_upgrade_as_traefik(tmp_path, backend):
    # Traefik v3 serves h2c through Go's http.Server Protocols (UnencryptedHTTP2: prior
    # knowledge only; Go has no `Upgrade: h2c` server side). Such a request is an HTTP/1.1
    # request like any other: its ReverseProxy forwards the upgrade (Connection: Upgrade,
    # Upgrade: h2c) and drops HTTP2-Settings, a field the Connection header names
    m = backend_service("be", [backend.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    with h2_pyroute(tmp_path, m) as pr:
        with socket.create_connection(("127.0.0.1", pr.port), timeout=10) as s:
            s.sendall(b"GET /up HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings"
                      b"\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        # the backend ignored the upgrade: its HTTP/1.1 answer comes back as it is
        assert head.startswith(b"HTTP/1.1 200 ")
        h = headers_of(json.loads(body))
        assert h["upgrade"] == "h2c" and h["connection"].lower() == "upgrade"
        assert "http2-settings" not in h
        # curl --http2 on http:// sends that upgrade: answered over HTTP/1.1
        out = curl("--http2", "-H", "Host: a.test", "-w", "\n%{http_version}",
                   "http://127.0.0.1:%d/" % pr.port)
        assert out.returncode == 0, out.stderr
        assert out.stdout.rpartition(b"\n")[2] == b"1.1"


def test_response_trailers_with_curl_and_nghttp(tmp_path, backend):
    # the backend's chunked trailers reach HTTP/2 clients as a trailing HEADERS frame
    m = backend_service("be", [backend.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    with h2_pyroute(tmp_path, m) as pr:
        url = "http://127.0.0.1:%d/fault/trailers" % pr.port
        out = subprocess.run(["nghttp", "-v", "-H", ":authority: a.test", url],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        text = out.stdout.decode()
        assert "hello world" in text
        # after the DATA (no END_STREAM on it), a HEADERS frame with the trailers ends the
        # stream (nghttp prints a frame's fields before the frame)
        tail = text[text.rindex("recv DATA frame"):]
        assert "flags=0x00" in tail.splitlines()[0]
        assert "x-checksum: abc" in tail and "grpc-status: 0" in tail
        assert "content-length" not in tail
        frame = tail[tail.index("recv HEADERS frame"):].splitlines()
        assert "END_STREAM" in frame[1]
        dump = tmp_path / "headers.txt"
        out = curl("--http2-prior-knowledge", "-H", "Host: a.test", "-D", str(dump), url)
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"hello world"
        lines = dump.read_text().splitlines()
        assert lines[0].startswith("HTTP/2 200")
        # curl writes the trailers after the head's blank line
        assert lines[lines.index("") + 1:][:2] == ["x-checksum: abc", "grpc-status: 0"]


@pytest.mark.parametrize("trusted, expect", [(("127.0.0.1",), "203.0.113.9, 127.0.0.1"),
                                             ((), "127.0.0.1")])
def test_forwarded_headers_trust_per_stream(tmp_path, backend, trusted, expect):
    # forwardedHeaders.trustedIPs decides for each stream as for an HTTP/1.1 request (asked
    # once per connection): a trusted peer's X-Forwarded-For is extended, another's replaced
    m = backend_service("be", [backend.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    pr = Pyroute(tmp_path, m, trusted=trusted)
    with pr:
        for path in ("/one", "/two"):
            code, version, body = curl_json(pr, path, "-H", "X-Forwarded-For: 203.0.113.9")
            assert (code, version) == (200, b"2")
            assert headers_of(json.loads(body))["x-forwarded-for"] == expect
