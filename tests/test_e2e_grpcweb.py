"""The grpcWeb middleware (Traefik pkg/middlewares/grpcweb, traefik/grpc-web's wrapper) end to
end: an HTTP/1.1 client writes grpc-web requests as a browser's grpc-web library does (frames:
1-byte flag, 4-byte big-endian length, the message), pyroute converts them to gRPC for a
grpcio server behind `scheme: h2c`, and the response comes back as grpc-web: the trailers as a
0x80 frame in the body, base64 for grpc-web-text, CORS per allowOrigins."""
import base64
import socket
import struct
import time

import pytest

from e2e_support import Pyroute, backend_service, read_response, request
from grpc_backend import GrpcBackend


def manifests(port, origins=("https://app.test",)):
    return backend_service("g", [port]) + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\n"
        "metadata: {name: gw, namespace: default}\n"
        "spec:\n  grpcWeb:\n    allowOrigins: [%s]\n"
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: r, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
        "    - match: PathPrefix(`/`)\n      kind: Rule\n"
        "      middlewares: [{name: gw}]\n"
        "      services: [{name: g, port: 80, scheme: h2c}]\n"
        % ", ".join('"%s"' % o for o in origins))


@pytest.fixture()
def backend():
    be = GrpcBackend()
    yield be
    be.close()


@pytest.fixture()
def proxy(tmp_path, backend):
    with Pyroute(tmp_path, manifests(backend.port)) as pr:
        yield pr


def frame(msg, flag=0):
    return bytes([flag]) + struct.pack(">I", len(msg)) + msg


def frames(body):
    """[(flag, payload)] of a grpc-web body."""
    out, pos = [], 0
    while pos < len(body):
        flag, n = body[pos], struct.unpack(">I", body[pos + 1:pos + 5])[0]
        out.append((flag, body[pos + 5:pos + 5 + n]))
        pos += 5 + n
    assert pos == len(body)
    return out


def decode_text(body):
    # padded base64 parts, one after the other (the grpc-web spec allows it)
    out, s = b"", body.decode()
    while s:
        end = s.find("=")
        if end < 0:
            part, s = s, ""
        else:
            while end < len(s) and s[end] == "=":
                end += 1
            part, s = s[:end], s[end:]
        out += base64.b64decode(part)
    return out


def call(port, path, body, ctype="application/grpc-web+proto", origin="https://app.test"):
    raw = ("POST %s HTTP/1.1\r\nHost: a.test\r\nContent-Type: %s\r\nX-Grpc-Web: 1\r\n"
           "Origin: %s\r\nContent-Length: %d\r\n\r\n" % (path, ctype, origin, len(body)))
    return request(port, raw.encode() + body)


def test_unary_grpc_web(proxy, backend):
    status, h, body = call(proxy.port, "/t.Echo/Unary", frame(b"hi"))
    assert status == 200
    # the backend's application/grpc (grpcio answers without +proto), as grpc-web
    assert h["content-type"] == "application/grpc-web"
    got = frames(body)
    assert got[0] == (0, b"echo:hi")
    assert got[1][0] == 0x80
    # lower-case names, sorted, http.Header.Write's lines
    assert got[1][1] == b"grpc-message: \r\ngrpc-status: 0\r\nx-trailer: yes\r\n"
    assert len(got) == 2
    # CORS for an allowed origin, and the wrapper's expose list
    assert h["access-control-allow-origin"] == "https://app.test"
    assert h["access-control-allow-credentials"] == "true"
    expose = h["access-control-expose-headers"].split(", ")
    assert expose[-2:] == ["grpc-status", "grpc-message"]
    assert "Content-Type" in expose and "Access-Control-Allow-Origin" in expose
    assert backend.calls == 1


def test_unary_grpc_web_text(proxy, backend):
    body = base64.b64encode(frame(b"txt"))
    status, h, out = call(proxy.port, "/t.Echo/Unary", body,
                          ctype="application/grpc-web-text")
    assert status == 200
    assert h["content-type"] == "application/grpc-web-text"
    # each part encoded (and padded) on its own: the message's DATA, then the trailer frame
    trailer = b"\x80\x00\x00\x000grpc-message: \r\ngrpc-status: 0\r\nx-trailer: yes\r\n"
    assert out == base64.b64encode(frame(b"echo:txt")) + base64.b64encode(trailer)
    got = frames(decode_text(out))
    assert got[0] == (0, b"echo:txt")
    assert got[-1][0] == 0x80 and b"grpc-status: 0\r\n" in got[-1][1]


def test_text_body_split_across_writes(proxy, backend):
    # the base64 body arrives in pieces that cut its quanta: decoded as it flows
    enc = base64.b64encode(frame(b"split-me-please"))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(b"POST /t.Echo/Unary HTTP/1.1\r\nHost: a.test\r\n"
                  b"Content-Type: application/grpc-web-text+proto\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(enc))
        for i in range(0, len(enc), 3):
            s.sendall(enc[i:i + 3])
            time.sleep(0.01)
        status, h, out, _ = read_response(s)
    assert status == 200 and h["content-type"] == "application/grpc-web-text"
    assert frames(decode_text(out))[0] == (0, b"echo:split-me-please")


def test_bad_base64_fails_the_call(proxy, backend):
    status, _, _ = call(proxy.port, "/t.Echo/Unary", b"!!!!AAAA",
                        ctype="application/grpc-web-text")
    assert status == 502


def test_error_status_in_trailers(proxy, backend):
    status, h, body = call(proxy.port, "/t.Echo/Unary", frame(b"fail"))
    assert status == 200
    got = dict()
    for flag, payload in frames(body):
        if flag == 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    k, v = line.split(": ", 1)
                    got[k] = v
    # grpcio answers an abort trailers-only (status in the head) or with trailers: either way
    # the client finds grpc-status 5 where grpc-web says to look
    status_value = got.get("grpc-status", h.get("grpc-status"))
    message = got.get("grpc-message", h.get("grpc-message"))
    assert status_value == "5"
    assert message == "no such thing"


def test_unimplemented_is_trailers_only(proxy, backend):
    # a trailers-only gRPC answer: its status in the head, no trailer frame (nothing left)
    status, h, body = call(proxy.port, "/t.Echo/Nope", frame(b""))
    assert status == 200
    assert h["grpc-status"] == "12"
    assert h["content-type"].startswith("application/grpc-web")
    assert body == b""


def test_server_streaming(proxy, backend):
    status, h, body = call(proxy.port, "/t.Echo/Count", frame(b"50"))
    assert status == 200
    got = frames(body)
    assert [p for f, p in got[:-1]] == [b"m%d" % i for i in range(50)]
    assert got[-1][0] == 0x80 and b"grpc-status: 0" in got[-1][1]


def test_server_streaming_text(proxy, backend):
    status, h, body = call(proxy.port, "/t.Echo/Count", base64.b64encode(frame(b"20")),
                           ctype="application/grpc-web-text+proto")
    assert status == 200
    got = frames(decode_text(body))
    assert [p for f, p in got[:-1]] == [b"m%d" % i for i in range(20)]


def test_streaming_is_converted_as_it_flows(proxy, backend):
    # the first message reaches the client while the backend still holds the second
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        msg = frame(b"")
        s.sendall(b"POST /t.Echo/Drip HTTP/1.1\r\nHost: a.test\r\n"
                  b"Content-Type: application/grpc-web\r\nContent-Length: %d\r\n\r\n"
                  % len(msg) + msg)
        data = b""
        deadline = time.time() + 5
        while frame(b"first") not in data and time.time() < deadline:
            data += s.recv(65536)
        assert frame(b"first") in data
        assert b"second" not in data
        backend.release.set()
        while b"0\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk
            data += chunk
    assert frame(b"second") in data and b"grpc-status: 0" in data


def test_preflight_allowed_origin(proxy, backend):
    status, h, body = request(proxy.port, (
        b"OPTIONS /t.Echo/Unary HTTP/1.1\r\nHost: a.test\r\nOrigin: https://app.test\r\n"
        b"Access-Control-Request-Method: POST\r\n"
        b"Access-Control-Request-Headers: x-grpc-web,content-type, x-user-agent\r\n\r\n"))
    assert status == 200 and body == b""
    assert h["access-control-allow-origin"] == "https://app.test"
    assert h["access-control-allow-methods"] == "POST"
    assert h["access-control-allow-headers"] == "X-Grpc-Web, Content-Type, X-User-Agent"
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-max-age"] == "600"
    assert h["vary"] == "Origin"
    assert backend.calls == 0


def test_preflight_refused_origin(proxy, backend):
    status, h, body = request(proxy.port, (
        b"OPTIONS /t.Echo/Unary HTTP/1.1\r\nHost: a.test\r\nOrigin: https://evil.test\r\n"
        b"Access-Control-Request-Method: POST\r\n"
        b"Access-Control-Request-Headers: x-grpc-web\r\n\r\n"))
    assert status == 200
    assert "access-control-allow-origin" not in h
    assert "access-control-allow-methods" not in h
    assert h["vary"] == "Origin"


def test_refused_origin_call_still_served_without_cors(proxy, backend):
    status, h, body = call(proxy.port, "/t.Echo/Unary", frame(b"x"),
                           origin="https://evil.test")
    assert status == 200 and frames(body)[0] == (0, b"echo:x")
    assert "access-control-allow-origin" not in h


def test_star_allows_any_origin(tmp_path, backend):
    with Pyroute(tmp_path, manifests(backend.port, origins=("*",))) as pr:
        status, h, _ = request(pr.port, (
            b"OPTIONS /x HTTP/1.1\r\nHost: a.test\r\nOrigin: https://any.test\r\n"
            b"Access-Control-Request-Method: POST\r\n"
            b"Access-Control-Request-Headers: X-Grpc-Web\r\n\r\n"))
        assert h["access-control-allow-origin"] == "https://any.test"


def test_plain_grpc_passes_through(proxy, backend):
    # not grpc-web: relayed unchanged (application/grpc, trailers as HTTP trailers)
    body = frame(b"plain")
    status, h, out = request(proxy.port, (
        b"POST /t.Echo/Unary HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/grpc\r\n"
        b"TE: trailers\r\nOrigin: https://app.test\r\nContent-Length: %d\r\n\r\n"
        % len(body)) + body)
    assert status == 200
    assert h["content-type"] == "application/grpc"
    assert out == frame(b"echo:plain")
    assert "access-control-allow-origin" not in h
    assert "access-control-expose-headers" not in h


def test_options_without_grpc_web_header_passes_through(proxy, backend):
    # an OPTIONS that is no grpc-web preflight goes to the backend (the gRPC server refuses
    # the method), not answered by the middleware
    status, h, _ = request(proxy.port, (
        b"OPTIONS /t.Echo/Unary HTTP/1.1\r\nHost: a.test\r\nOrigin: https://app.test\r\n"
        b"Access-Control-Request-Method: POST\r\n\r\n"))
    assert "access-control-allow-methods" not in h
