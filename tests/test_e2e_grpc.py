"""gRPC through `pyroute run` end to end: grpcio clients (HTTP/2, h2c prior knowledge, to an
entry point with HTTP/2 on) and a grpcio server behind a `scheme: h2c` service
(engine/h2up.pyx). Unary and the three streaming kinds, grpc-status trailers, deadlines, large
messages, cancellation reaching the backend, multiplexing (one connection until the server's
stream limit, then another, as Go's transport), and a gRPC call from an HTTP/1.1 client (the
trailers as the chunked trailer section)."""
import queue
import socket
import threading
import time

import grpc
import pytest

from e2e_support import Pyroute, backend_service
from grpc_backend import GrpcBackend


def h2c_route(name, port, extra=""):
    return backend_service(name, [port]) + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: r-%s, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
        "    - match: PathPrefix(`/`)\n      kind: Rule\n"
        "      services: [{name: %s, port: 80, scheme: h2c%s}]\n" % (name, name, extra))


def h2_pyroute(tmp_path, manifests):
    pr = Pyroute(tmp_path, manifests)
    pr.static.write_text(pr.static.read_text().replace(
        "    transport:", "    http2: {enabled: true}\n    transport:", 1))
    return pr


@pytest.fixture()
def backend():
    be = GrpcBackend()
    yield be
    be.close()


@pytest.fixture()
def channel(tmp_path, backend):
    with h2_pyroute(tmp_path, h2c_route("g", backend.port)) as pr:
        ch = grpc.insecure_channel("127.0.0.1:%d" % pr.port, options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)])
        yield ch
        ch.close()


def wait_for(cond, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_unary_status_and_trailers(channel, backend):
    unary = channel.unary_unary("/t.Echo/Unary")
    resp, call = unary.with_call(b"hi", timeout=10)
    assert resp == b"echo:hi"
    assert call.code() == grpc.StatusCode.OK
    assert ("x-trailer", "yes") in tuple(call.trailing_metadata())
    # metadata reaches the backend
    assert unary(b"md", metadata=(("x-test", "v1"),), timeout=10).startswith(b"v1|grpc-python")
    # a non-OK status and its message travel in the trailers
    with pytest.raises(grpc.RpcError) as err:
        unary(b"fail", timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "no such thing"
    # an unknown method: the backend's UNIMPLEMENTED (a trailers-only response)
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/t.Echo/Nope")(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_server_client_and_bidi_streaming(channel):
    got = list(channel.unary_stream("/t.Echo/Count")(b"500", timeout=20))
    assert got == [b"m%d" % i for i in range(500)]
    msgs = [b"x" * (i % 97) for i in range(300)]
    assert channel.stream_unary("/t.Echo/Sum")(iter(msgs), timeout=20) == \
        b"300:%d" % sum(map(len, msgs))
    # bidi, in lock step: each message is sent only after the answer to the one before
    # came back, so both directions stream through pyroute at the same time
    answers = queue.Queue()
    sent = []

    def requests():
        for i in range(50):
            m = b"ping%d" % i
            sent.append(m)
            yield m
            assert answers.get(timeout=10) == b"re:" + m

    for reply in channel.stream_stream("/t.Echo/Chat")(requests(), timeout=30):
        answers.put(reply)
    assert len(sent) == 50


def test_large_messages(channel):
    # 5 MiB up (past every flow-control window: stream 4 MiB, connection 1 GiB) and 6 MiB down
    big = bytes(range(256)) * (5 * 4096)
    assert channel.stream_unary("/t.Echo/Sum")(iter([big, big]), timeout=30) == \
        b"2:%d" % (2 * len(big))
    resp = channel.unary_unary("/t.Echo/Unary")(b"big:%d" % (6 << 20), timeout=30)
    assert len(resp) == 6 << 20 and resp == b"b" * (6 << 20)


def test_deadline_and_cancellation_reach_the_backend(channel, backend):
    hold = channel.unary_unary("/t.Echo/Hold")
    # the deadline (grpc-timeout) is the backend's to enforce; the client gives up too
    start = time.time()
    with pytest.raises(grpc.RpcError) as err:
        hold(b"10", timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.time() - start < 5
    assert wait_for(lambda: backend.cancelled == [True])
    # the client cancels: its RST_STREAM reaches pyroute, which resets the backend stream
    fut = hold.future(b"10", timeout=30)
    time.sleep(0.5)
    fut.cancel()
    assert wait_for(lambda: backend.cancelled == [True, True])
    # and the connection goes on serving
    assert channel.unary_unary("/t.Echo/Unary")(b"after", timeout=10) == b"echo:after"


def test_one_connection_carries_concurrent_calls(channel, backend):
    peer = channel.unary_unary("/t.Echo/Peer")
    futs = [peer.future(b"0.3", timeout=20) for _ in range(20)]
    assert all(f.result().startswith(b"ipv4:127.0.0.1:") for f in futs)
    assert len(set(backend.peers)) == 1


def test_stream_limit_opens_another_connection(tmp_path):
    be = GrpcBackend(max_streams=2)
    try:
        with h2_pyroute(tmp_path, h2c_route("g", be.port)) as pr:
            with grpc.insecure_channel("127.0.0.1:%d" % pr.port) as ch:
                peer = ch.unary_unary("/t.Echo/Peer")
                peer(b"0", timeout=10)      # the server's SETTINGS (2 streams) are known now
                futs = [peer.future(b"0.5", timeout=20) for _ in range(6)]
                assert all(f.result().startswith(b"ipv4:") for f in futs)
        # 6 calls at once, never more than 2 on one connection: the first connection is
        # full, a second one is dialed (streams beyond its limit wait there for a slot)
        assert len(set(be.peers)) >= 2
        assert max(be.most.values()) == 2
    finally:
        be.close()


def test_grpc_from_an_http11_client(tmp_path, backend):
    # a gRPC request over HTTP/1.1 (grpc-web proxies and curl do this): the backend's
    # HTTP/2 trailers arrive as the chunked trailer section
    with Pyroute(tmp_path, h2c_route("g", backend.port)) as pr:
        body = b"\x00\x00\x00\x00\x02hi"
        with socket.create_connection(("127.0.0.1", pr.port), timeout=10) as s:
            s.sendall(b"POST /t.Echo/Unary HTTP/1.1\r\nHost: a.test\r\n"
                      b"Content-Type: application/grpc\r\nTE: trailers\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            data = b""
            while not (b"\r\n0\r\n" in data and data.endswith(b"\r\n\r\n")):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"transfer-encoding: chunked" in head.lower()
        assert b"content-type: application/grpc" in head.lower()
        # one chunk: the length-prefixed message, then the trailers
        assert rest.startswith(b"c\r\n\x00\x00\x00\x00\x07echo:hi\r\n0\r\n")
        trailers = rest.split(b"\r\n0\r\n", 1)[1]
        assert b"grpc-status: 0\r\n" in trailers and b"x-trailer: yes\r\n" in trailers


class ScriptedH2Server:
    """An h2c server on the `h2` package: answers ``GET /`` after ``delay`` seconds while
    acking PINGs (``freeze`` False), or stops reading its socket once a request came (``freeze``
    True: a backend that hangs, PINGs unanswered). ``pings``: PINGs it received."""

    def __init__(self, delay, freeze):
        import h2.config
        import h2.connection
        import h2.events
        self.h2 = h2
        self.delay = delay
        self.freeze = freeze
        self.pings = 0
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        h2 = self.h2
        sock, _ = self.lsock.accept()
        sock.settimeout(0.05)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        due = None
        while not self.stop:
            if due is not None and time.time() >= due:
                conn.send_headers(sid, [(":status", "200"), ("content-length", "2")])
                conn.send_data(sid, b"ok", end_stream=True)
                sock.sendall(conn.data_to_send())
                due = None
            if self.freeze and due is not None:
                time.sleep(0.05)      # hangs: reads nothing, answers nothing
                continue
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    sid = ev.stream_id
                    due = time.time() + self.delay
                elif isinstance(ev, h2.events.PingReceived):
                    self.pings += 1
            sock.sendall(conn.data_to_send())
        sock.close()

    def close(self):
        self.stop = True
        self.lsock.close()


def ping_manifests(port):
    return h2c_route("s", port, ", serversTransport: pinger") + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\n"
        "metadata: {name: pinger, namespace: default}\nspec:\n"
        "  forwardingTimeouts: {readIdleTimeout: 300ms, pingTimeout: 500ms}\n")


def test_read_idle_timeout_pings_a_live_server(tmp_path):
    # a response 1.5 s away: the connection is quiet past readIdleTimeout, pyroute PINGs, the
    # server answers, the request goes on (Go's http2 health check)
    srv = ScriptedH2Server(delay=1.5, freeze=False)
    try:
        with Pyroute(tmp_path, ping_manifests(srv.port)) as pr:
            with socket.create_connection(("127.0.0.1", pr.port), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
                data = b""
                while not data.endswith(b"ok"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nok")
        assert srv.pings >= 2
    finally:
        srv.close()


def test_ping_timeout_closes_a_hung_connection(tmp_path):
    # the server hangs (reads nothing, so no PING ACK): after readIdleTimeout + pingTimeout
    # the connection is closed and the request fails with 502, long before any other timeout
    srv = ScriptedH2Server(delay=30, freeze=True)
    try:
        with Pyroute(tmp_path, ping_manifests(srv.port)) as pr:
            start = time.time()
            with socket.create_connection(("127.0.0.1", pr.port), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
                data = s.recv(4096)
            assert data.startswith(b"HTTP/1.1 502 ")
            assert 0.7 <= time.time() - start < 5
    finally:
        srv.close()


def test_health_check_mode_grpc(tmp_path, backend):
    # Traefik's checkHealthGRPC: grpc.health.v1.Health/Check with an empty service name over
    # plaintext HTTP/2; SERVING keeps the server in rotation, anything else takes it out
    m = ("apiVersion: v1\nkind: Service\nmetadata: {name: svc-g, namespace: default}\n"
         "spec:\n  type: ExternalName\n  externalName: 127.0.0.1\n"
         "  ports: [{name: grpc, port: %d}]\n"
         "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
         "metadata: {name: r, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
         "    - match: PathPrefix(`/`)\n      kind: Rule\n"
         "      services: [{name: svc-g, port: %d, scheme: h2c,"
         " healthCheck: {mode: grpc, interval: 200ms, timeout: 1s}}]\n"
         % (backend.port, backend.port))
    pr = h2_pyroute(tmp_path, m)
    pr.static.write_text(pr.static.read_text()
                         + "providers:\n  kubernetesCRD: {allowExternalNameServices: true}\n")
    with pr, grpc.insecure_channel("127.0.0.1:%d" % pr.port) as ch:
        unary = ch.unary_unary("/t.Echo/Unary")
        assert unary(b"up", timeout=10) == b"echo:up"
        assert wait_for(lambda: len(backend.health_calls) >= 2)
        assert set(backend.health_calls) == {""}

        def status():
            try:
                unary(b"x", timeout=5)
                return grpc.StatusCode.OK
            except grpc.RpcError as e:
                return e.code()

        backend.health[""] = 2                 # NOT_SERVING: out of rotation (503)
        assert wait_for(lambda: status() == grpc.StatusCode.UNAVAILABLE, 8)
        backend.health[""] = 1
        assert wait_for(lambda: status() == grpc.StatusCode.OK, 8)
        del backend.health[""]                 # the server answers NOT_FOUND: down again
        assert wait_for(lambda: status() == grpc.StatusCode.UNAVAILABLE, 8)
    out = pr.output()
    assert "received gRPC status code: NOT_SERVING" in out, out
    assert "gRPC health check failed: rpc error: code = NotFound desc = unknown service" in out
    assert "status=DOWN" in out and "status=UP" in out


def tls_backend_manifests(port, disable_h2):
    return backend_service("gs", [port]) + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\n"
        "metadata: {name: tr, namespace: default}\nspec:\n  insecureSkipVerify: true\n"
        "  disableHTTP2: %s\n"
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: r-gs, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
        "    - match: PathPrefix(`/`)\n      kind: Rule\n"
        "      services: [{name: gs, port: 80, scheme: https, serversTransport: tr}]\n"
        % ("true" if disable_h2 else "false"))


@pytest.fixture()
def tls_backend():
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    be = GrpcBackend(tls=(cert.private_key_pem.bytes(),
                          b"".join(c.bytes() for c in cert.cert_chain_pems)))
    yield be
    be.close()


def test_https_backend_negotiates_h2_by_alpn(tmp_path, tls_backend):
    # Go's transport offers h2 first: a gRPC server over TLS (which speaks nothing else) is
    # reached over h2; the first dial learns it, later exchanges share one connection
    with h2_pyroute(tmp_path, tls_backend_manifests(tls_backend.port, False)) as pr, \
            grpc.insecure_channel("127.0.0.1:%d" % pr.port) as ch:
        assert ch.unary_unary("/t.Echo/Unary")(b"tls", timeout=10) == b"echo:tls"
        assert list(ch.unary_stream("/t.Echo/Count")(b"3", timeout=10)) == [b"m0", b"m1", b"m2"]
        peer = ch.unary_unary("/t.Echo/Peer")
        futs = [peer.future(b"0.2", timeout=20) for _ in range(8)]
        assert all(f.result().startswith(b"ipv4:") for f in futs)
        assert len(set(tls_backend.peers)) == 1


def test_disable_http2_offers_only_http11(tmp_path, tls_backend):
    # disableHTTP2: ALPN offers http/1.1 only, which a gRPC server refuses: 502 (UNAVAILABLE)
    with h2_pyroute(tmp_path, tls_backend_manifests(tls_backend.port, True)) as pr, \
            grpc.insecure_channel("127.0.0.1:%d" % pr.port) as ch:
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary("/t.Echo/Unary")(b"tls", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "502" in err.value.details()


def test_h2c_backend_down_is_502(tmp_path):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    dead = port.getsockname()[1]
    port.close()                               # nothing listens there
    with Pyroute(tmp_path, h2c_route("g", dead)) as pr:
        with socket.create_connection(("127.0.0.1", pr.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 502 ")


def test_http11_client_leaving_cancels_the_backend_stream(tmp_path, backend):
    # an HTTP/1.1 client closes its connection mid-call: the stream is reset (CANCEL) and
    # the gRPC server sees the call cancelled, long before its 10 s wait
    with Pyroute(tmp_path, h2c_route("g", backend.port)) as pr:
        body = b"\x00\x00\x00\x00\x0210"
        s = socket.create_connection(("127.0.0.1", pr.port), timeout=10)
        s.sendall(b"POST /t.Echo/Hold HTTP/1.1\r\nHost: a.test\r\n"
                  b"Content-Type: application/grpc\r\nTE: trailers\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.5)
        s.close()
        assert wait_for(lambda: backend.cancelled == [True])


def test_grpc_client_over_tls_alpn_h2(tmp_path, backend):
    # the client side over TLS (ALPN h2 on the entry point), the backend over h2c
    import base64
    import trustme
    ca = trustme.CA()
    leaf = ca.issue_cert("grpc.example.com")
    data = {"tls.crt": b"".join(b.bytes() for b in leaf.cert_chain_pems),
            "tls.key": leaf.private_key_pem.bytes()}
    m = (h2c_route("g", backend.port).replace("PathPrefix(`/`)", "Host(`grpc.example.com`)")
         + "  tls: {secretName: cert}\n"
         + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: cert, namespace: default}\n"
         "type: kubernetes.io/tls\ndata:\n" + "".join(
             "  %s: %s\n" % (k, base64.b64encode(v).decode()) for k, v in data.items()))
    with h2_pyroute(tmp_path, m) as pr:
        creds = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
        with grpc.secure_channel("127.0.0.1:%d" % pr.port, creds, options=[
                ("grpc.ssl_target_name_override", "grpc.example.com"),
                ("grpc.default_authority", "grpc.example.com")]) as ch:
            assert ch.unary_unary("/t.Echo/Unary")(b"sec", timeout=10) == b"echo:sec"
            got = list(ch.stream_stream("/t.Echo/Chat")(iter([b"a", b"b"]), timeout=10))
            assert got == [b"re:a", b"re:b"]
