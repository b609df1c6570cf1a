"""Requests repeated on one HTTP/2 connection, end to end: pyroute reuses what the last
identical request block decoded to (fields and HTTP/1.1 head) and what the last identical
response head gave (fields, framing, HPACK block) — engine/h2.pyx's per-connection caches. A
client on the `h2` package sends the same request many times, mixed with others that differ
in path, method, body or HEAD, over one connection; a raw HTTP/1.1 backend answers heads that
repeat or change. Every response must be the backend's own, every forwarded request the
client's: a stale reuse shows as a wrong header, body, status or request line."""
import socket
import threading

import h2.config
import h2.connection
import h2.events

from e2e_support import Pyroute, backend_service, ingressroute


class RawBackend:
    """HTTP/1.1 keep-alive backend: the head names the request's path (``x-path``) and, for
    /varying, a counter; the body is ``METHOD PATH #n body`` (``n``: requests so far)."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.seen = []
        self.n = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = s.recv(65536)
                if not data:
                    s.close()
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            method, path, _ = lines[0].split(b" ")
            hdrs = dict(line.lower().split(b": ", 1) for line in lines[1:])
            n = int(hdrs.get(b"content-length", b"0"))
            while len(buf) < n:
                buf += s.recv(65536)
            body, buf = buf[:n], buf[n:]
            self.n += 1
            self.seen.append((method, path, body))
            out = b"%s %s #%04d %s" % (method, path, self.n, body)
            extra = b"x-count: %d\r\n" % self.n if path == b"/varying" else b""
            resp = (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Path: %s\r\n%s\r\n"
                    % (len(out), path, extra))
            s.sendall(resp if method == b"HEAD" else resp + out)

    def close(self):
        self.lsock.close()


def test_repeated_requests_and_heads_on_one_connection(tmp_path):
    be = RawBackend()
    m = backend_service("be", [be.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    try:
        with Pyroute(tmp_path, m) as pr:
            s = socket.create_connection(("127.0.0.1", pr.port), timeout=10)
            c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            c.initiate_connection()
            s.sendall(c.data_to_send())

            def ask(method, path, body=b""):
                sid = c.get_next_available_stream_id()
                c.send_headers(sid, [(":method", method), (":scheme", "http"),
                                     (":authority", "a.test"), (":path", path)]
                               + ([("content-length", str(len(body)))] if body else []),
                               end_stream=not body)
                if body:
                    c.send_data(sid, body, end_stream=True)
                s.sendall(c.data_to_send())
                head, got = None, b""
                while True:
                    for ev in c.receive_data(s.recv(65536)):
                        if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                            head = dict(ev.headers)
                        elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                            got += ev.data
                            c.acknowledge_received_data(ev.flow_controlled_length, sid)
                        elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                            s.sendall(c.data_to_send())
                            return head, got
                    s.sendall(c.data_to_send())

            plan = ([("GET", "/same", b"")] * 4 + [("GET", "/other", b"")]
                    + [("GET", "/same", b"")] * 2 + [("HEAD", "/same", b"")]
                    + [("GET", "/same", b"")] + [("POST", "/same", b"abc")] * 2
                    + [("POST", "/same", b"xyz")] + [("GET", "/varying", b"")] * 3
                    + [("GET", "/same", b"")] * 2)
            for i, (method, path, body) in enumerate(plan, 1):
                head, got = ask(method, path, body)
                assert head[b":status"] == b"200", (i, head)
                assert head[b"x-path"] == path.encode(), (i, head)
                want = b"%s %s #%04d %s" % (method.encode(), path.encode(), i, body)
                assert head[b"content-length"] == b"%d" % len(want), (i, head)
                assert got == (b"" if method == "HEAD" else want), (i, got)
                if path == "/varying":
                    assert head[b"x-count"] == b"%d" % i
                else:
                    assert b"x-count" not in head
            assert be.seen == [(m.encode(), p.encode(), b) for m, p, b in plan]
            s.close()
    finally:
        be.close()
