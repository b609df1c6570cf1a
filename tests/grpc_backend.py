"""A gRPC server (grpcio, real HTTP/2 over h2c) for the end-to-end tests: generic handlers on
raw bytes, so no generated protobuf code is needed. Service ``t.Echo``:

- ``Unary``: ``b"echo:" + request``; ``b"fail"`` aborts with NOT_FOUND; ``b"big:N"``
  answers N bytes; sets trailing metadata ``x-trailer: yes``.
- ``Count`` (server streaming): the request is a number N; N messages ``m0`` .. ``mN-1``.
- ``Sum`` (client streaming): ``b"<messages>:<bytes>"`` of what the client streamed.
- ``Chat`` (bidi): ``b"re:" + message`` for each message, as it comes.
- ``Hold``: waits until the call is cancelled or ``request`` seconds pass; records in
  ``cancelled`` whether the client's cancellation reached it.
- ``Peer``: sleeps ``request`` seconds, answers the peer address (one per connection).

Also ``grpc.health.v1.Health/Check`` by hand (the protocol's two tiny messages): the status
of a service name comes from ``health`` (1 SERVING, 2 NOT_SERVING; unknown: NOT_FOUND).
"""
import threading
import time
from concurrent import futures

import grpc


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def health_request(service):
    """grpc.health.v1.HealthCheckRequest{service} in protobuf wire form."""
    raw = service.encode()
    return (b"\x0a" + _varint(len(raw)) + raw) if raw else b""


def health_status(response):
    """grpc.health.v1.HealthCheckResponse's status (0 when absent)."""
    return response[1] if len(response) >= 2 and response[0] == 0x08 else 0


def _health_service(request):
    if not request:
        return ""
    n, i = 0, 1
    shift = 0
    while True:
        b = request[i]
        n |= (b & 0x7f) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    return request[i:i + n].decode()


class GrpcBackend:
    def __init__(self, max_streams=None, tls=None):
        # ``tls``: (key PEM, certificate chain PEM): gRPC over TLS (ALPN h2 only)
        self.cancelled = []
        self.peers = []
        self.lock = threading.Lock()
        self.busy = {}
        self.most = {}
        self.calls = 0
        self.release = threading.Event()       # Drip's second message waits for it
        self.health = {"": 1}
        self.health_calls = []
        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]
        if max_streams:
            options.append(("grpc.max_concurrent_streams", max_streams))
        self.server = grpc.server(futures.ThreadPoolExecutor(32), options=options)
        h = grpc.method_handlers_generic_handler("t.Echo", {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "Count": grpc.unary_stream_rpc_method_handler(self.count),
            "Sum": grpc.stream_unary_rpc_method_handler(self.sum),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
            "Hold": grpc.unary_unary_rpc_method_handler(self.hold),
            "Peer": grpc.unary_unary_rpc_method_handler(self.peer),
            "Drip": grpc.unary_stream_rpc_method_handler(self.drip),
        })
        health = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(self.check)})
        self.server.add_generic_rpc_handlers((h, health))
        if tls is not None:
            self.port = self.server.add_secure_port(
                "127.0.0.1:0", grpc.ssl_server_credentials([tls]))
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self):
        self.server.stop(0)

    def unary(self, request, ctx):
        self.calls += 1
        if request == b"fail":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        ctx.set_trailing_metadata((("x-trailer", "yes"),))
        md = dict(ctx.invocation_metadata())
        if request.startswith(b"big:"):
            return b"b" * int(request[4:])
        if request == b"md":
            return ("%s|%s" % (md.get("x-test", ""), md.get("user-agent", ""))).encode()
        return b"echo:" + request

    def count(self, request, ctx):
        for i in range(int(request)):
            yield b"m%d" % i

    def drip(self, request, ctx):
        # one message now, the next only once the test set ``release`` (a stream in flight)
        yield b"first"
        self.release.wait(10)
        yield b"second"

    def sum(self, it, ctx):
        n = size = 0
        for m in it:
            n += 1
            size += len(m)
        return b"%d:%d" % (n, size)

    def chat(self, it, ctx):
        for m in it:
            yield b"re:" + m

    def hold(self, request, ctx):
        done = threading.Event()
        ctx.add_callback(done.set)
        done.wait(float(request))
        self.cancelled.append(not ctx.is_active())
        return b"held"

    def peer(self, request, ctx):
        # the most calls in progress at once on each connection (peer address)
        with self.lock:
            n = self.busy[ctx.peer()] = self.busy.get(ctx.peer(), 0) + 1
            self.most[ctx.peer()] = max(self.most.get(ctx.peer(), 0), n)
        time.sleep(float(request))
        with self.lock:
            self.busy[ctx.peer()] -= 1
        self.peers.append(ctx.peer())
        return ctx.peer().encode()

    def check(self, request, ctx):
        name = _health_service(request)
        self.health_calls.append(name)
        status = self.health.get(name)
        if status is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return b"\x08" + bytes([status])
