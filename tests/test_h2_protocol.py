"""HTTP/2 at the frame level against `pyroute run` (h2c with prior knowledge): RFC 9113's
validation errors, flow control, stream limits and the known attacks, driven by the `h2`
package (python-hyper) as a scriptable client, or by raw frames where h2 would refuse to
send what the test needs."""
import socket
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, ingressroute

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR = 0x1, 0x3, 0x5, 0x6
REFUSED_STREAM, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x9, 0xb


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    be = Backend("be")
    m = (backend_service("be", [be.port])
         + ingressroute("r", [("Host(`a.test`)", "be", "")]))
    pr = Pyroute(tmp_path_factory.mktemp("h2"), m)
    pr.static.write_text(pr.static.read_text().replace(
        "    transport:", "    http2: {maxConcurrentStreams: 8}\n"
        "    http:\n      maxHeaderBytes: 8192\n    transport:", 1))
    pr.start()
    yield pr
    pr.stop()
    be.close()


class Client:
    """An h2 client connection: ``events()`` reads until ``until(events)`` or EOF."""

    def __init__(self, port, settings=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False))
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        self.flush()
        self.closed = False
        self.all = []

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw(self, data):
        self.sock.sendall(data)

    def events(self, until, timeout=10.0):
        end = time.time() + timeout
        got = []
        while time.time() < end:
            if until(got):
                return got
            self.sock.settimeout(max(0.05, end - time.time()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return got
            try:
                evs = self.h2.receive_data(data)
            except Exception:      # the client's own view of a protocol violation
                self.closed = True
                raise
            got += evs
            self.all += evs
            self.flush()
        return got

    def get(self, sid, path="/", end=True, extra=()):
        self.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                   (b":authority", b"a.test"), (b":path", path.encode()),
                                   *extra], end_stream=end)
        self.flush()

    def close(self):
        self.sock.close()


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def goaway(evs):
    return next((e for e in evs if isinstance(e, h2.events.ConnectionTerminated)), None)


def ended(sid):
    def until(evs):
        return any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
                   and e.stream_id == sid for e in evs) or goaway(evs) is not None
    return until


def reset_of(evs, sid):
    return next((e.error_code for e in evs if isinstance(e, h2.events.StreamReset)
                 and e.stream_id == sid), None)


def response(evs, sid):
    status, body = None, b""
    for e in evs:
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
            status = int(dict(e.headers)[b":status"])
        elif isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
            body += e.data
    return status, body


def raw_conn(port):
    """A raw socket past the preface and SETTINGS exchange; returns (sock, read_frames)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(PREFACE + frame(4, 0, 0, b""))
    buf = bytearray()

    def frames(until, timeout=5.0):
        end = time.time() + timeout
        out = []
        while time.time() < end:
            while len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) < 9 + n:
                    break
                out.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff,
                            bytes(buf[9:9 + n])))
                del buf[:9 + n]
            if until(out):
                return out
            s.settimeout(max(0.05, end - time.time()))
            try:
                data = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                out.append(("eof", 0, 0, b""))
                return out
            buf.extend(data)
        return out
    return s, frames


def goaway_code(fr):
    for t, _, _, p in fr:
        if t == 7:
            return int.from_bytes(p[4:8], "big")
    return None


def has_goaway(fr):
    return goaway_code(fr) is not None or any(t == "eof" for t, _, _, _ in fr)


# ---- the basics --------------------------------------------------------------------------

def test_settings_and_simple_exchange(server):
    c = Client(server.port)
    c.get(1)
    evs = c.events(ended(1))
    changed = next(e for e in c.all if isinstance(e, h2.events.RemoteSettingsChanged))
    s = {k: v.new_value for k, v in changed.changed_settings.items()}
    assert s[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 8
    assert s[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 8192 + 320
    status, body = response(evs, 1)
    assert status == 200 and b'"version": "HTTP/1.1"' in body
    headers = dict(next(e for e in evs if isinstance(e, h2.events.ResponseReceived)).headers)
    # lower case names, hop-by-hop fields gone (Go's http2 server)
    assert all(k == k.lower() for k in headers)
    assert b"connection" not in headers and b"keep-alive" not in headers
    # PING is answered with the same payload
    c.h2.ping(b"12345678")
    c.flush()
    evs = c.events(lambda evs: any(isinstance(e, h2.events.PingAckReceived) for e in evs))
    assert next(e for e in evs if isinstance(e, h2.events.PingAckReceived)).ping_data == \
        b"12345678"
    c.close()


def test_head_and_204_end_on_headers(server):
    c = Client(server.port)
    c.h2.send_headers(1, [(b":method", b"HEAD"), (b":scheme", b"http"),
                          (b":authority", b"a.test"), (b":path", b"/big/1000")], end_stream=True)
    c.flush()
    evs = c.events(ended(1))
    status, body = response(evs, 1)
    assert status == 200 and body == b""
    c.get(3, "/status/204")
    evs = c.events(ended(3))
    assert response(evs, 3) == (204, b"")
    c.close()


def test_response_waits_for_the_clients_window(server):
    # a client that opens no window beyond the default gets exactly 65535 bytes, then the
    # rest once it says so (stream and connection flow control)
    c = Client(server.port)
    c.get(1, "/big/200000")
    evs = c.events(lambda evs: sum(len(e.data) for e in evs
                                   if isinstance(e, h2.events.DataReceived)) >= 65535,
                   timeout=5)
    evs += c.events(lambda evs: False, timeout=0.5)
    got = sum(len(e.data) for e in evs if isinstance(e, h2.events.DataReceived))
    assert got == 65535
    c.h2.increment_flow_control_window(200000)
    c.h2.increment_flow_control_window(200000, stream_id=1)
    c.flush()
    evs = c.events(ended(1))
    got += sum(len(e.data) for e in evs if isinstance(e, h2.events.DataReceived))
    assert got == 200000
    c.close()


def test_short_writes_keep_frames_whole(server):
    # wide-open windows and a client that reads late: the socket fills, pyroute's writes of
    # its queued frames come short and resume on EPOLLOUT; three interleaved 3 MB bodies
    # still arrive whole (a frame cut wrong would break the h2 package's parser)
    c = Client(server.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    c.h2.increment_flow_control_window(2**30)
    c.flush()
    for sid in (1, 3, 5):
        c.get(sid, "/big/3000000")
    time.sleep(1.0)
    evs = c.events(lambda evs: all(any(isinstance(e, h2.events.StreamEnded) and
                                       e.stream_id == s for e in evs) for s in (1, 3, 5)),
                   timeout=30)
    assert [response(evs, sid)[0] for sid in (1, 3, 5)] == [200, 200, 200]
    assert [len(response(evs, sid)[1]) for sid in (1, 3, 5)] == [3000000] * 3
    c.close()


# ---- validation errors (RFC 9113 names them) ---------------------------------------------

@pytest.mark.parametrize("fields, why", [
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test")],
     "no :path"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":path", b"/x")],
     "duplicated pseudo-header"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b"x-a", b"1"), (b":path", b"/")],
     "pseudo-header after a field"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":status", b"200")],
     "response pseudo-header"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"X-Upper", b"1")],
     "upper-case field name"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
      (b"connection", b"keep-alive")], "connection-specific field"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"te", b"gzip")],
     "te other than trailers"),
    # header injection into the HTTP/1.1 request pyroute forwards: refused, never split
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a.test"),
      (b"x-a", b"1\r\nx-injected: yes")], "CRLF in a value"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/ HTTP/1.1\r\nx: y"),
      (b":authority", b"a.test")], "space and CRLF in :path"),
    ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
      (b":authority", b"a.test\r\nx: y")], "CRLF in :authority"),
    ([(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"),
      (b":authority", b"a.test"), (b"content-length", b"5")], "content-length without DATA"),
])
def test_malformed_requests_are_stream_errors(server, fields, why):
    c = Client(server.port)
    c.h2.send_headers(1, fields, end_stream=True)
    c.flush()
    evs = c.events(ended(1))
    assert reset_of(evs, 1) == PROTOCOL_ERROR, why
    # the connection goes on (a stream error, not a connection error)
    c.get(3)
    evs = c.events(ended(3))
    assert response(evs, 3)[0] == 200, why
    c.close()


def test_extended_connect_as_go_without_http2xconnect(server):
    # Traefik on Go >= 1.24: SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3) is not announced
    # unless GODEBUG=http2xconnect=1, and a request with :protocol is then a stream error
    # PROTOCOL_ERROR (x/net/http2 newWriterAndRequest: "bad_connect"); the connection goes on
    c = Client(server.port)
    c.get(1)
    c.events(ended(1))
    changed = next(e for e in c.all if isinstance(e, h2.events.RemoteSettingsChanged))
    assert 0x8 not in changed.changed_settings
    c.h2.send_headers(3, [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                          (b":scheme", b"http"), (b":path", b"/chat"),
                          (b":authority", b"a.test"), (b"sec-websocket-version", b"13")])
    c.flush()
    evs = c.events(ended(3))
    assert reset_of(evs, 3) == PROTOCOL_ERROR
    c.get(5)
    assert response(c.events(ended(5)), 5)[0] == 200
    c.close()


def test_response_trailers_are_a_trailing_headers_frame(server):
    # a backend's chunked trailers leave as Go's http2 server writes a ReverseProxy's: a
    # HEADERS frame with END_STREAM after the DATA, names lower-cased, fields that may not be
    # trailers (Content-Length) dropped
    c = Client(server.port)
    c.get(1, "/fault/trailers")
    evs = c.events(ended(1))
    status, body = response(evs, 1)
    assert (status, body) == (200, b"hello world")
    tr = next(e for e in evs if isinstance(e, h2.events.TrailersReceived))
    assert tr.headers == [(b"x-checksum", b"abc"), (b"grpc-status", b"0")]
    kinds = [type(e).__name__ for e in evs if getattr(e, "stream_id", None) == 1]
    assert kinds.index("TrailersReceived") > max(i for i, k in enumerate(kinds)
                                                 if k == "DataReceived")
    # no DATA frame carried END_STREAM: the trailers did
    assert not any(isinstance(e, h2.events.DataReceived) and e.stream_ended for e in evs)
    c.close()


def test_no_header_injection_reaches_the_backend(server):
    s, frames = raw_conn(server.port)
    import hpack
    block = hpack.Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"),
                                    (b":path", b"/"), (b":authority", b"a.test"),
                                    (b"x-a", b"1\r\nx-injected: yes")])
    s.sendall(frame(1, 0x5, 1, block))
    fr = frames(lambda fr: any(t == 3 for t, _, _, _ in fr))
    assert [int.from_bytes(p, "big") for t, _, sid, p in fr if t == 3] == [PROTOCOL_ERROR]
    s.close()


def test_content_length_mismatch(server):
    c = Client(server.port)
    c.h2.send_headers(1, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/"),
                          (b":authority", b"a.test"), (b"content-length", b"3")])
    c.h2.send_data(1, b"abcdef", end_stream=True)
    c.flush()
    evs = c.events(ended(1))
    assert reset_of(evs, 1) == PROTOCOL_ERROR
    c.close()


@pytest.mark.parametrize("data, code, why", [
    (frame(0, 0, 0, b"x"), PROTOCOL_ERROR, "DATA on stream 0"),
    (frame(0, 0, 9, b"x"), PROTOCOL_ERROR, "DATA on an idle stream"),
    (frame(1, 0x4, 0, b""), PROTOCOL_ERROR, "HEADERS on stream 0"),
    (frame(1, 0x4, 2, b"\x82"), PROTOCOL_ERROR, "even stream id"),
    (frame(9, 0x4, 1, b""), PROTOCOL_ERROR, "CONTINUATION without HEADERS"),
    (frame(4, 0, 1, b""), PROTOCOL_ERROR, "SETTINGS on a stream"),
    (frame(4, 1, 0, b"\x00" * 6), FRAME_SIZE_ERROR, "SETTINGS ack with payload"),
    (frame(4, 0, 0, b"\x00" * 5), FRAME_SIZE_ERROR, "SETTINGS length"),
    (frame(4, 0, 0, b"\x00\x02\x00\x00\x00\x02"), PROTOCOL_ERROR, "ENABLE_PUSH 2"),
    (frame(4, 0, 0, b"\x00\x04\x80\x00\x00\x00"), FLOW_CONTROL_ERROR, "INITIAL_WINDOW 2^31"),
    (frame(4, 0, 0, b"\x00\x05\x00\x00\x10\x00"), PROTOCOL_ERROR, "MAX_FRAME_SIZE 4096"),
    (frame(6, 0, 0, b"1234567"), FRAME_SIZE_ERROR, "PING length"),
    (frame(6, 0, 1, b"12345678"), PROTOCOL_ERROR, "PING on a stream"),
    (frame(8, 0, 0, b"\x00\x00\x00\x00"), PROTOCOL_ERROR, "WINDOW_UPDATE of 0"),
    (frame(8, 0, 0, b"\x00\x00\x01"), FRAME_SIZE_ERROR, "WINDOW_UPDATE length"),
    (frame(8, 0, 0, b"\x7f\xff\xff\xff"), FLOW_CONTROL_ERROR, "connection window overflow"),
    (frame(3, 0, 0, b"\x00\x00\x00\x00"), PROTOCOL_ERROR, "RST_STREAM on stream 0"),
    (frame(3, 0, 7, b"\x00\x00\x00\x00"), PROTOCOL_ERROR, "RST_STREAM on an idle stream"),
    (frame(5, 0x4, 1, b"\x00\x00\x00\x02"), PROTOCOL_ERROR, "PUSH_PROMISE from a client"),
    (frame(7, 0, 1, b"\x00" * 8), PROTOCOL_ERROR, "GOAWAY on a stream"),
    (frame(0, 0, 1, b"x" * 16385), FRAME_SIZE_ERROR, "frame over MAX_FRAME_SIZE"),
    (frame(1, 0x5, 1, b"\xff\xff\xff\xff"), COMPRESSION_ERROR, "undecodable header block"),
])
def test_connection_errors(server, data, code, why):
    s, frames = raw_conn(server.port)
    frames(lambda fr: any(t == 4 for t, _, _, _ in fr))
    s.sendall(data)
    fr = frames(has_goaway)
    assert goaway_code(fr) == code, why
    assert frames(lambda fr: any(t == "eof" for t, _, _, _ in fr))[-1][0] == "eof", why
    s.close()


def test_first_frame_must_be_settings(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(PREFACE + frame(6, 0, 0, b"12345678"))
    data = b""
    while True:
        got = s.recv(65536)
        if not got:
            break
        data += got
    # our SETTINGS, then GOAWAY(PROTOCOL_ERROR)
    i = data.find(b"\x07\x00\x00\x00\x00\x00")
    assert i > 0 and int.from_bytes(data[i + 10:i + 14], "big") == PROTOCOL_ERROR
    s.close()


def test_stream_window_overflow_is_a_stream_error(server):
    c = Client(server.port)
    c.get(1, "/slow/300")
    c.raw(frame(8, 0, 1, b"\x7f\xff\xff\xff"))
    evs = c.events(ended(1))
    assert reset_of(evs, 1) == FLOW_CONTROL_ERROR
    c.close()


# ---- limits and attacks ------------------------------------------------------------------

def test_more_streams_than_max_concurrent_streams(server):
    # maxConcurrentStreams 8: the 9th open stream is refused (REFUSED_STREAM before the
    # client acknowledged our SETTINGS, PROTOCOL_ERROR after, as Go's server)
    s, frames = raw_conn(server.port)
    frames(lambda fr: any(t == 4 and not f & 1 for t, f, _, _ in fr))
    s.sendall(frame(4, 1, 0, b""))            # ack: the client knows the limit
    import hpack
    enc = hpack.Encoder()
    out = b""
    for i in range(9):
        block = enc.encode([(b":method", b"GET"), (b":scheme", b"http"),
                            (b":path", b"/slow/500"), (b":authority", b"a.test")])
        out += frame(1, 0x5, 1 + 2 * i, block)
    s.sendall(out)
    fr = frames(lambda fr: any(t == 3 for t, _, _, _ in fr))
    resets = [(sid, int.from_bytes(p, "big")) for t, _, sid, p in fr if t == 3]
    assert resets == [(17, PROTOCOL_ERROR)]
    # the 8 others are answered
    fr += frames(lambda more: sum(1 for t, f, _, _ in fr + more if t == 0 and f & 1) >= 8,
                 timeout=10)
    assert sorted({sid for t, f, sid, _ in fr if t == 0 and f & 1}) == list(range(1, 17, 2))
    s.close()


def test_refused_stream_before_settings_ack(server):
    s, frames = raw_conn(server.port)
    import hpack
    enc = hpack.Encoder()
    out = b""
    for i in range(9):
        out += frame(1, 0x5, 1 + 2 * i, enc.encode([
            (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/slow/300"),
            (b":authority", b"a.test")]))
    s.sendall(out)
    fr = frames(lambda fr: any(t == 3 for t, _, _, _ in fr))
    assert [(sid, int.from_bytes(p, "big")) for t, _, sid, p in fr if t == 3] == \
        [(17, REFUSED_STREAM)]
    s.close()


def test_rapid_reset_gets_enhance_your_calm(server):
    # CVE-2023-44487: HEADERS + RST_STREAM over and over. Streams are reset faster than any
    # limit on concurrent streams would notice: past nghttp2's budget (1000, refilled at
    # 33/s) the connection ends with GOAWAY ENHANCE_YOUR_CALM
    s, frames = raw_conn(server.port)
    frames(lambda fr: any(t == 4 for t, _, _, _ in fr))
    import hpack
    enc = hpack.Encoder()
    block = None
    out = []
    for i in range(1200):
        sid = 1 + 2 * i
        block = enc.encode([(b":method", b"GET"), (b":scheme", b"http"),
                            (b":path", b"/slow/1000"), (b":authority", b"a.test")])
        out.append(frame(1, 0x5, sid, block) + frame(3, 0, sid, b"\x00\x00\x00\x08"))
    try:
        s.sendall(b"".join(out))
    except (BrokenPipeError, ConnectionResetError):
        pass
    fr = frames(has_goaway, timeout=15)
    assert goaway_code(fr) == ENHANCE_YOUR_CALM
    s.close()


def test_continuation_flood_is_bounded(server):
    # CVE-2024-27316: CONTINUATION frames without END_HEADERS, forever: pyroute stops at
    # twice the header list size it advertised (8192 + 320 here) with ENHANCE_YOUR_CALM
    s, frames = raw_conn(server.port)
    frames(lambda fr: any(t == 4 for t, _, _, _ in fr))
    import hpack
    s.sendall(frame(1, 0, 1, hpack.Encoder().encode([(b":method", b"GET")])))
    try:
        for _ in range(200):
            s.sendall(frame(9, 0, 1, b"\x40\x01a\x7f" + b"a" * 16000))
    except (BrokenPipeError, ConnectionResetError):
        pass
    fr = frames(has_goaway)
    assert goaway_code(fr) == ENHANCE_YOUR_CALM
    s.close()


def test_interleaved_frame_during_header_block(server):
    s, frames = raw_conn(server.port)
    frames(lambda fr: any(t == 4 for t, _, _, _ in fr))
    import hpack
    s.sendall(frame(1, 0, 1, hpack.Encoder().encode([(b":method", b"GET")]))
              + frame(6, 0, 0, b"12345678"))
    assert goaway_code(frames(has_goaway)) == PROTOCOL_ERROR
    s.close()


def test_oversized_header_list_gets_431(server):
    # over SETTINGS_MAX_HEADER_LIST_SIZE (maxHeaderBytes + 320): Go's server answers 431 on
    # that stream and the connection goes on (the HPACK state stays in step)
    c = Client(server.port)
    c.get(1, extra=[(b"x-big", b"b" * 9000)])
    evs = c.events(ended(1))
    assert response(evs, 1)[0] == 431
    c.get(3)
    evs = c.events(ended(3))
    assert response(evs, 3)[0] == 200
    c.close()


def test_ping_and_settings_floods_from_a_client_that_does_not_read(server):
    # acks pile up for a client that never reads them: past Go's maxQueuedControlFrames the
    # connection is closed instead of buffering without end
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)     # before connect: a small window
    s.connect(("127.0.0.1", server.port))
    s.settimeout(10)
    s.sendall(PREFACE + frame(4, 0, 0, b""))
    flood = frame(6, 0, 0, b"12345678") * 2000 + frame(4, 0, 0, b"") * 2000
    sent = 0
    try:
        for _ in range(200):               # 10 MiB of frames, each asking for an ack
            s.sendall(flood)
            sent += len(flood)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    time.sleep(6)                          # the server reads them all while we do not read
    got = 0
    s.settimeout(15)
    try:
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            got += len(data)
    except ConnectionResetError:
        pass
    # closed (EOF or reset, not a timeout), after far fewer acks than were asked for
    # (every ack is as long as the frame asking for it)
    assert got < sent - (1 << 20), (got, sent)
    s.close()
    s.close()


def test_client_reset_cancels_the_backend_request(server):
    c = Client(server.port)
    c.get(1, "/slow/2000")
    time.sleep(0.2)
    c.h2.reset_stream(1)
    c.flush()
    # the connection is fine and serves the next stream at once
    t = time.time()
    c.get(3)
    evs = c.events(ended(3))
    assert response(evs, 3)[0] == 200 and time.time() - t < 1.5
    c.close()


def test_graceful_goaway_on_drain(tmp_path):
    be = Backend("be")
    m = backend_service("be", [be.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    pr = Pyroute(tmp_path, m)
    pr.start()
    try:
        # raw frames: the h2 package stops reading responses once it got a GOAWAY
        import hpack
        s, frames = raw_conn(pr.port)
        s.sendall(frame(1, 0x5, 1, hpack.Encoder().encode([
            (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/slow/800"),
            (b":authority", b"a.test")])))
        time.sleep(0.2)
        import signal
        pr.signal(signal.SIGTERM)
        fr = frames(lambda fr: any(t == "eof" for t, _, _, _ in fr), timeout=10)
        kinds = [t for t, _, _, _ in fr]
        # GOAWAY(NO_ERROR) naming stream 1 as the last one, then stream 1 still answered in
        # full, then the close
        g = next(p for t, _, _, p in fr if t == 7)
        assert int.from_bytes(g[:4], "big") == 1 and int.from_bytes(g[4:8], "big") == 0
        assert kinds.index(7) < kinds.index(1)
        assert any(t == 0 and f & 1 and sid == 1 for t, f, sid, _ in fr)
        assert kinds[-1] == "eof"
        s.close()
    finally:
        pr.stop()
        be.close()


def test_idle_connection_gets_goaway_on_drain_and_none_on_reload(tmp_path):
    # Go's Server.Shutdown tells every HTTP/2 connection, idle ones too (GOAWAY NO_ERROR,
    # then the close); a reload closes nothing (Traefik swaps its handlers under open
    # connections): the same connection serves the new routes
    be = Backend("be")
    m = backend_service("be", [be.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    pr = Pyroute(tmp_path, m)
    pr.start()
    try:
        c = Client(pr.port)
        c.get(1)
        assert response(c.events(ended(1)), 1)[0] == 200
        # Traefik's default maxConcurrentStreams (and Go's http2 server's)
        changed = next(e for e in c.all if isinstance(e, h2.events.RemoteSettingsChanged))
        assert changed.changed_settings[
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 250
        pr.write_manifests(m + ingressroute("r2", [("Host(`b.test`)", "be", "")]))
        import signal
        pr.signal(signal.SIGHUP)
        deadline = time.time() + 10
        sid, status = 1, 404
        while status != 200 and time.time() < deadline:
            sid += 2
            c.h2.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"),
                                    (b":authority", b"b.test"), (b":path", b"/")],
                              end_stream=True)
            c.flush()
            evs = c.events(ended(sid))
            assert goaway(c.all) is None          # no GOAWAY for a reload
            status = response(evs, sid)[0]
            if status != 200:
                time.sleep(0.2)
        assert status == 200
        pr.signal(signal.SIGTERM)
        evs = c.events(lambda evs: goaway(evs) is not None)
        g = goaway(evs)
        assert g is not None and g.error_code == 0 and g.last_stream_id == sid
        c.events(lambda evs: False, timeout=5)
        assert c.closed                           # then the close
    finally:
        pr.stop()
        be.close()


def test_zero_window_stall_is_cut_by_write_timeout(tmp_path):
    # a client that opens no window at all never gets a byte of the body: the entry point's
    # writeTimeout still ends the stream (RST_STREAM), as for an HTTP/1.1 client that does
    # not read, and the connection serves on
    be = Backend("be")
    m = backend_service("be", [be.port]) + ingressroute("r", [("Host(`a.test`)", "be", "")])
    pr = Pyroute(tmp_path, m, write="1s")
    pr.start()
    try:
        c = Client(pr.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        c.events(lambda evs: any(isinstance(e, h2.events.SettingsAcknowledged)
                                 for e in evs))
        t = time.time()
        c.get(1, "/big/2000000")          # more than pyroute holds for a stream
        evs = c.events(ended(1), timeout=10)
        assert reset_of(evs, 1) is not None and 0.8 < time.time() - t < 5
        assert not any(isinstance(e, h2.events.DataReceived) and e.data for e in evs)
        assert response(evs, 1)[0] == 200          # the head went out, the body could not
        c.close()
    finally:
        pr.stop()
        be.close()
