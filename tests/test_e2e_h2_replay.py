"""Replays of requests an h2c backend did not process, end to end (engine/h2up.pyx), as Go's
http2 transport does (golang.org/x/net/http2 transport.go: RoundTripOpt retries what
canRetryError accepts — RST_STREAM(REFUSED_STREAM), errClientConnGotGoAway for a stream above
the GOAWAY's last stream id — when shouldRetryRequest finds the request can go again whole).

The backend is a real h2c server on the `h2` package, run by the test on a socket, whose
policy decides per request: answer, refuse the stream, or send GOAWAY below an in-flight
stream. The client is a plain HTTP/1.1 socket to `pyroute run`: it must get the answer of the
replay, never a 502, and the backend's log says what happened on the wire."""
import socket
import struct
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events

from e2e_support import Pyroute, backend_service, read_response


def h2c_route(port):
    return backend_service("h", [port]) + (
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
        "metadata: {name: r-h, namespace: default}\nspec:\n  entryPoints: [web]\n  routes:\n"
        "    - match: PathPrefix(`/`)\n      kind: Rule\n"
        "      services: [{name: h, port: 80, scheme: h2c}]\n")


def goaway(last, code=0):
    # a raw GOAWAY frame: the h2 package would stop its own connection after sending one
    return struct.pack(">I", 8)[1:] + b"\x07\x00\x00\x00\x00\x00" + struct.pack(">II", last, code)


class PolicyH2Server:
    """An h2c server: each request (connection number, stream id, path, body) goes to
    ``policy``, which answers "ok", "refuse" (RST_STREAM REFUSED_STREAM), or "hold" (no
    answer yet; ``on_request`` may then act on the connection). ``log``: what it saw, as
    (connection number, stream id, method, path, body) once the request ended."""

    def __init__(self, policy):
        self.policy = policy
        self.log = []
        self.conns = 0
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
            threading.Thread(target=self._serve, args=(sock, n), daemon=True).start()

    def answer(self, conn, sock, sid, body):
        conn.send_headers(sid, [(":status", "200"), ("content-length", str(len(body)))])
        conn.send_data(sid, body, end_stream=True)
        sock.sendall(conn.data_to_send())

    def _serve(self, sock, n):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        sock.settimeout(0.05)
        heads, bodies = {}, {}
        state = {"sock": sock, "conn": conn, "n": n, "held": [], "closed": False}
        while not self.stop and not state["closed"]:
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
                    heads[ev.stream_id] = dict(ev.headers)
                    bodies[ev.stream_id] = b""
                elif isinstance(ev, h2.events.DataReceived):
                    if ev.stream_id in bodies:
                        bodies[ev.stream_id] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)) or (
                        isinstance(ev, h2.events.RequestReceived) and ev.stream_ended is None
                        and self.refuse_early(n, ev.stream_id, heads[ev.stream_id])):
                    sid = ev.stream_id
                    if sid not in heads:
                        continue
                    h = heads.pop(sid)
                    entry = (n, sid, h[b":method"].decode(), h[b":path"].decode(),
                             bodies.pop(sid))
                    with self.lock:
                        self.log.append(entry)
                    if isinstance(ev, h2.events.StreamReset):
                        continue
                    what = self.policy(self, state, entry)
                    if what == "ok":
                        self.answer(conn, sock, sid, b"conn %d stream %d" % (n, sid))
                    elif what == "refuse":
                        conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
                    elif what == "hold":
                        state["held"].append(sid)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
        sock.close()

    def refuse_early(self, n, sid, head):
        # a POST whose body is still coming is judged on its head (refused before the body)
        return False

    def close(self):
        self.stop = True
        self.lsock.close()


def one(port, raw):
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    s.sendall(raw)
    return s


def test_refused_stream_is_replayed(tmp_path):
    # the first request is refused (RST_STREAM REFUSED_STREAM: not processed, RFC 9113 §8.7):
    # it goes again at once and the client gets the second attempt's answer
    def policy(srv, state, entry):
        return "refuse" if len(srv.log) == 1 else "ok"
    srv = PolicyH2Server(policy)
    try:
        with Pyroute(tmp_path, h2c_route(srv.port)) as pr:
            start = time.time()
            with one(pr.port, b"GET /a HTTP/1.1\r\nHost: a.test\r\n\r\n") as s:
                status, _, body, _ = read_response(s)
            assert status == 200
            assert [(e[1], e[3]) for e in srv.log] == [(1, "/a"), (3, "/a")]
            # the connection was still good: the replay is its next stream, and it went at
            # once (Go's first retry has no backoff)
            assert body == b"conn 1 stream 3"
            assert time.time() - start < 0.9
    finally:
        srv.close()


def test_later_replays_back_off(tmp_path):
    # refused twice: the second replay waits 1 s (Go: 2^(retry-1) s from the second retry on)
    def policy(srv, state, entry):
        return "refuse" if len(srv.log) <= 2 else "ok"
    srv = PolicyH2Server(policy)
    try:
        with Pyroute(tmp_path, h2c_route(srv.port)) as pr:
            start = time.time()
            with one(pr.port, b"GET /b HTTP/1.1\r\nHost: a.test\r\n\r\n") as s:
                status, _, body, _ = read_response(s)
            took = time.time() - start
            assert (status, body) == (200, b"conn 1 stream 5")
            assert len(srv.log) == 3
            assert 0.95 <= took < 3.0
    finally:
        srv.close()


def test_a_refused_post_whose_body_went_out_is_502(tmp_path):
    # the body was sent with the stream: it cannot go again (Go's shouldRetryRequest: "cannot
    # retry err after Request.Body was written" without GetBody), so the client gets 502 and
    # the server saw one attempt
    def policy(srv, state, entry):
        return "refuse"
    srv = PolicyH2Server(policy)
    try:
        with Pyroute(tmp_path, h2c_route(srv.port)) as pr:
            with one(pr.port, b"POST /c HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\n"
                              b"hello") as s:
                status, _, _, _ = read_response(s)
            assert status == 502
            assert [(e[2], e[3], e[4]) for e in srv.log] == [("POST", "/c", b"hello")]
    finally:
        srv.close()


def test_goaway_below_an_in_flight_stream_replays_it_on_a_new_connection(tmp_path):
    # two requests share the first connection (streams 1 and 3); once both are there, the
    # server sends GOAWAY(last_stream_id=1), answers stream 1 and closes: stream 3 was not
    # processed and goes again on a new connection (errClientConnGotGoAway)
    def policy(srv, state, entry):
        if state["n"] > 1:
            return "ok"
        if entry[1] == 1:
            return "hold"
        sock, conn = state["sock"], state["conn"]
        sock.sendall(goaway(1))
        srv.answer(conn, sock, 1, b"conn 1 stream 1")
        time.sleep(0.2)
        state["closed"] = True
        return None
    srv = PolicyH2Server(policy)
    try:
        with Pyroute(tmp_path, h2c_route(srv.port)) as pr:
            a = one(pr.port, b"GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n")
            deadline = time.time() + 5
            while not srv.log and time.time() < deadline:
                time.sleep(0.01)
            b = one(pr.port, b"GET /second HTTP/1.1\r\nHost: a.test\r\n\r\n")
            with a, b:
                sa, _, ba, _ = read_response(a)
                sb, _, bb, _ = read_response(b)
            assert (sa, ba) == (200, b"conn 1 stream 1")
            assert (sb, bb) == (200, b"conn 2 stream 1")
            assert [(e[0], e[1], e[3]) for e in srv.log] == [
                (1, 1, "/first"), (1, 3, "/second"), (2, 1, "/second")]
    finally:
        srv.close()


def test_goaway_replays_a_post_whose_body_had_not_started(tmp_path):
    # the client sends a POST's head and holds its body; the server sends GOAWAY(0) on the
    # head: the stream was not processed and none of its body went out, so it goes again on a
    # new connection, and the body, sent afterwards, follows it there whole
    class Srv(PolicyH2Server):
        def refuse_early(self, n, sid, head):
            return n == 1

    def policy(srv, state, entry):
        if state["n"] == 1:
            state["sock"].sendall(goaway(0))
            time.sleep(0.2)
            state["closed"] = True
            return None
        return "ok"
    srv = Srv(policy)
    try:
        with Pyroute(tmp_path, h2c_route(srv.port)) as pr:
            with one(pr.port, b"POST /d HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n"
                              b"\r\n") as s:
                deadline = time.time() + 5
                while srv.conns < 2 and time.time() < deadline:
                    time.sleep(0.01)
                assert srv.conns == 2              # the replay dialed a new connection
                s.sendall(b"abc")
                status, _, body, _ = read_response(s)
            assert (status, body) == (200, b"conn 2 stream 1")
            assert srv.log == [(1, 1, "POST", "/d", b""), (2, 1, "POST", "/d", b"abc")]
    finally:
        srv.close()
