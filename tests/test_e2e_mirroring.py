"""End to end: a mirroring TraefikService — deterministic percentages, bodies copied (also
when they arrive after the head, in pieces, Content-Length or chunked), maxBodySize and
mirrorBody, and neither a mirror that never answers nor the body copy delays the main
request or its response."""
import json
import socket
import threading
import time

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, get, read_response, request


def test_mirroring_copies_requests_without_touching_the_main_response(tmp_path):
    main, mirror = Backend("main"), Backend("mirror")
    hang = socket.socket()          # a mirror that accepts and never answers
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    m = backend_service("main", [main.port]) + "---\n" + backend_service("copy", [mirror.port])
    m += "---\n" + backend_service("hang", [hang.getsockname()[1]])
    m += """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: mirrored, namespace: default}
spec:
  mirroring:
    name: main
    port: 80
    mirrors:
      - {name: copy, port: 80, percent: 50}
      - {name: hang, port: 80, percent: 100}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`m.test`)
      kind: Rule
      services: [{name: mirrored, kind: TraefikService}]
"""
    proxy = Pyroute(tmp_path, m)
    try:
        proxy.start()
        t0 = time.time()
        for i in range(4):
            status, _, body = get(proxy.port, "/r%d" % i, "m.test")
            assert status == 200 and json.loads(body)["backend"] == "main"
        status, _, body = request(proxy.port, b"POST /post HTTP/1.1\r\nHost: m.test\r\n"
                                  b"Content-Length: 4\r\n\r\nbody")
        assert status == 200 and json.loads(body)["body"] == "body"
        assert time.time() - t0 < 3        # the silent mirror delayed nothing
        end = time.time() + 5
        while len(mirror.requests) < 3 and time.time() < end:
            time.sleep(0.05)
        # Traefik's deterministic 50%: requests 1, 3 and 5 of the sequence
        got = [(r[0], r[1], r[3]) for r in mirror.requests]
        assert got == [("GET", "/r0", b""), ("GET", "/r2", b""), ("POST", "/post", b"body")]
        assert len(main.requests) == 5
    finally:
        proxy.stop()
        main.close()
        mirror.close()
        hang.close()


class StreamingBackend:
    """A main backend that notes when the first body bytes reach it, then reads a
    Content-Length body to its end and answers 200 with the body's size."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.first_body_at = None
        self.body = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")][0])
            while not body:
                body += conn.recv(65536)
            self.first_body_at = time.monotonic()
            while len(body) < length:
                body += conn.recv(65536)
            self.body = body
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d"
                         % (len(str(length)), length))

    def close(self):
        self.sock.close()


MIRRORED_BODIES = """---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: all, namespace: default}
spec:
  mirroring:
    name: main
    port: 80
    mirrors: [{name: copy, port: 80, percent: 100}]
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: small, namespace: default}
spec:
  mirroring:
    name: main
    port: 80
    maxBodySize: 10
    mirrors: [{name: copy, port: 80, percent: 100}]
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: headonly, namespace: default}
spec:
  mirroring:
    name: main
    port: 80
    mirrorBody: false
    mirrors: [{name: copy, port: 80, percent: 100}]
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: streamed, namespace: default}
spec:
  mirroring:
    name: stream
    port: 80
    mirrors: [{name: copy, port: 80, percent: 100}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - {match: Host(`all.test`), kind: Rule, services: [{name: all, kind: TraefikService}]}
    - {match: Host(`small.test`), kind: Rule, services: [{name: small, kind: TraefikService}]}
    - match: Host(`headonly.test`)
      kind: Rule
      services: [{name: headonly, kind: TraefikService}]
    - match: Host(`stream.test`)
      kind: Rule
      services: [{name: streamed, kind: TraefikService}]
"""


def _send_in_pieces(port, head, pieces, pause=0.15):
    """One request whose body arrives in several reads: head first, then each piece."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head)
        for piece in pieces:
            time.sleep(pause)
            s.sendall(piece)
        status, headers, body, _ = read_response(s)
        return status, body


def _chunked(*payloads):
    return [b"%x\r\n%s\r\n" % (len(p), p) for p in payloads] + [b"0\r\n\r\n"]


def test_mirrors_get_bodies_that_arrive_after_the_head(tmp_path):
    main, mirror, stream = Backend("main"), Backend("mirror"), StreamingBackend()
    m = backend_service("main", [main.port]) + "---\n" + backend_service("copy", [mirror.port])
    m += "---\n" + backend_service("stream", [stream.port]) + MIRRORED_BODIES
    proxy = Pyroute(tmp_path, m)
    big = bytes(range(256)) * 400            # 100 KiB, several reads on every hop

    def mirrored(n):
        end = time.time() + 5
        while len(mirror.requests) < n and time.time() < end:
            time.sleep(0.05)
        time.sleep(0.2)                     # nothing more arrives than expected
        return [(r[0], r[1], r[2].get("content-length"), r[2].get("transfer-encoding"), r[3])
                for r in mirror.requests]

    try:
        proxy.start()
        # no limit: a Content-Length body and a chunked one, each in several pieces
        status, body = _send_in_pieces(
            proxy.port, b"POST /cl HTTP/1.1\r\nHost: all.test\r\nContent-Length: %d\r\n\r\n"
            % len(big), [big[:1000], big[1000:50000], big[50000:]])
        assert status == 200 and json.loads(body)["body"] == big.decode("latin-1")
        status, body = _send_in_pieces(
            proxy.port, b"POST /ch HTTP/1.1\r\nHost: all.test\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n", _chunked(b"hello ", b"chunked ", big[:3000]))
        assert status == 200
        assert json.loads(body)["body"] == (b"hello chunked " + big[:3000]).decode("latin-1")
        assert mirrored(2) == [("POST", "/cl", str(len(big)), None, big),
                               ("POST", "/ch", None, "chunked", b"hello chunked " + big[:3000])]
        del mirror.requests[:]
        # maxBodySize 10: bodies within it are mirrored whole, bigger ones not at all, while
        # the main request always gets everything
        for head, pieces in (
                (b"POST /cl-fits HTTP/1.1\r\nContent-Length: 10\r\n", [b"12345", b"67890"]),
                (b"POST /cl-over HTTP/1.1\r\nContent-Length: 11\r\n", [b"12345", b"678901"]),
                (b"POST /ch-fits HTTP/1.1\r\nTransfer-Encoding: chunked\r\n",
                 _chunked(b"1234", b"567890")),
                (b"POST /ch-over HTTP/1.1\r\nTransfer-Encoding: chunked\r\n",
                 _chunked(b"1234", b"567890", b"x"))):
            status, body = _send_in_pieces(proxy.port, head + b"Host: small.test\r\n\r\n",
                                           pieces)
            sent = b"".join(pieces)
            if b"chunked" in head:
                sent = b"".join(p.split(b"\r\n")[1] for p in pieces)
            assert status == 200 and json.loads(body)["body"] == sent.decode()
        assert mirrored(2) == [("POST", "/cl-fits", "10", None, b"1234567890"),
                               ("POST", "/ch-fits", None, "chunked", b"1234567890")]
        del mirror.requests[:]
        # mirrorBody: false — the mirror gets the request, without its body
        status, body = _send_in_pieces(
            proxy.port, b"PUT /nobody HTTP/1.1\r\nHost: headonly.test\r\nContent-Length: 6"
            b"\r\n\r\n", [b"abc", b"def"])
        assert status == 200 and json.loads(body)["body"] == "abcdef"
        assert mirrored(1) == [("PUT", "/nobody", "0", None, b"")]
        del mirror.requests[:]
        # the main request is never held back while the mirrors' copy is gathered: its
        # first body bytes reach the backend long before the client sends the rest
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            s.sendall(b"POST /s HTTP/1.1\r\nHost: stream.test\r\nContent-Length: 8\r\n\r\nAAAA")
            time.sleep(1.0)
            sent_rest = time.monotonic()
            s.sendall(b"BBBB")
            status, _, body, _ = read_response(s)
        assert status == 200 and body == b"8" and stream.body == b"AAAABBBB"
        assert stream.first_body_at < sent_rest - 0.5
        assert mirrored(1) == [("POST", "/s", "8", None, b"AAAABBBB")]
    finally:
        proxy.stop()
        main.close()
        mirror.close()
        stream.close()


def test_mirror_to_an_https_server(tmp_path):
    # a mirror behind https (ServersTransport TLS settings) gets its copy over TLS
    import ssl
    import trustme
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mirror.internal").configure_cert(server_ctx)
    main, mirror = Backend("main"), Backend("tls-mirror", tls=server_ctx)
    m = backend_service("main", [main.port]) + """---
apiVersion: v1
kind: Service
metadata: {name: secure, namespace: default}
spec:
  ports: [{name: https, port: 443}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: secure-1
  namespace: default
  labels: {kubernetes.io/service-name: secure}
addressType: IPv4
ports: [{name: https, port: %d}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: skip, namespace: default}
spec:
  insecureSkipVerify: true
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: to-tls, namespace: default}
spec:
  mirroring:
    name: main
    port: 80
    mirrors: [{name: secure, port: 443, percent: 100, serversTransport: skip}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - {match: Host(`m.test`), kind: Rule, services: [{name: to-tls, kind: TraefikService}]}
""" % mirror.port
    proxy = Pyroute(tmp_path, m)
    try:
        proxy.start()
        status, body = _send_in_pieces(
            proxy.port, b"POST /secure HTTP/1.1\r\nHost: m.test\r\nContent-Length: 10\r\n\r\n",
            [b"01234", b"56789"])
        assert status == 200 and json.loads(body)["backend"] == "main"
        end = time.time() + 5
        while not mirror.requests and time.time() < end:
            time.sleep(0.05)
        assert [(r[0], r[1], r[3]) for r in mirror.requests] == [
            ("POST", "/secure", b"0123456789")], proxy.output()
    finally:
        proxy.stop()
        main.close()
        mirror.close()


def test_mirror_service_middlewares_edit_only_the_copy(tmp_path):
    # Traefik's mirroring clones the request for each mirror and runs that mirror's handler
    # (its service-level middlewares) on the clone: the mirror backend sees its headers and
    # stripPrefix edits, the main backend none of them; the main service's own middlewares
    # edit only the main request.
    main, mirror = Backend("main"), Backend("mirror")
    m = backend_service("main", [main.port]) + "---\n" + backend_service("copy", [mirror.port])
    m += """---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: mark-mirror, namespace: default}
spec:
  headers:
    customRequestHeaders: {X-Mirror: "1", X-Drop: ""}
    customResponseHeaders: {X-Mirror-Resp: "leak"}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: strip-api, namespace: default}
spec:
  stripPrefix: {prefixes: [/api]}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: mark-main, namespace: default}
spec:
  headers:
    customRequestHeaders: {X-Main: "1"}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: mirrored, namespace: default}
spec:
  mirroring:
    name: main
    port: 80
    middlewares: [{name: mark-main}]
    mirrors:
      - {name: copy, port: 80, percent: 100,
         middlewares: [{name: mark-mirror}, {name: strip-api}]}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`m.test`)
      kind: Rule
      services: [{name: mirrored, kind: TraefikService}]
"""
    proxy = Pyroute(tmp_path, m)
    try:
        proxy.start()
        status, hdrs, body = get(proxy.port, "/api/users?id=7", "m.test",
                                 "X-Drop: from-client\r\n")
        assert status == 200 and json.loads(body)["backend"] == "main"
        # the mirror's response edits stay off the main response (its answer is dropped)
        assert "x-mirror-resp" not in hdrs
        status, _, body = request(proxy.port, b"POST /api/post HTTP/1.1\r\nHost: m.test\r\n"
                                  b"Content-Length: 4\r\n\r\nbody")
        assert status == 200
        end = time.time() + 5
        while len(mirror.requests) < 2 and time.time() < end:
            time.sleep(0.05)
        (gm, gt, gh, _), (pm, pt, ph, pb) = mirror.requests
        assert (gm, gt) == ("GET", "/users?id=7")
        assert gh["x-mirror"] == "1"
        assert gh["x-forwarded-prefix"] == "/api"
        assert "x-drop" not in gh and "x-main" not in gh
        assert gh["host"] == "m.test"
        assert (pm, pt, pb) == ("POST", "/post", b"body")
        assert ph["x-mirror"] == "1" and ph["x-forwarded-prefix"] == "/api"
        (_, mt, mh, _), (_, mt2, _, mb) = main.requests
        assert mt == "/api/users?id=7" and mt2 == "/api/post" and mb == b"body"
        assert mh["x-main"] == "1"
        assert mh["x-drop"] == "from-client"
        assert "x-mirror" not in mh and "x-forwarded-prefix" not in mh
    finally:
        proxy.stop()
        main.close()
        mirror.close()
