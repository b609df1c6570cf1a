"""A raw-socket HTTP/1.1 backend for the end-to-end tests (threads, one per connection).

It answers every request with a JSON echo of what it received (request line, headers, body),
and has special paths: ``/big/N`` (N bytes), ``/chunked/N`` (N bytes in chunks),
``/close/N`` (N bytes, body until close), ``/slow/MS`` (answer after MS ms),
``/status/N``, ``/ws`` (101 then echo bytes), ``/continue`` (sends 100 Continue before
reading the body), ``/fault/NAME`` (a broken or odd answer, see ``FAULTS`` and
``Backend._fault``). Header ``X-Backend`` carries the backend's name.

What reached it is kept for the tests to judge: ``raw`` (every byte received, per connection,
in order), ``received`` (every request as a lenient application server parses it, see
``Received``) and ``closed`` (connections whose peer closed them). It parses leniently on
purpose, as many application servers do, so that an ambiguous message a proxy lets through shows
up as a wrong or extra request instead of being refused here.
"""
import json
import socket
import threading
import time


FAULTS = {
    # a fine response whose head has bare LF line ends (RFC 9112 2.2: a recipient MAY accept)
    "lf-head": b"HTTP/1.1 200 OK\nX-Fault: lf\nContent-Length: 3\n\nabc",
    # not HTTP at all (HTTP/0.9-style): no status line
    "no-status": b"sorry, no status line here\r\n\r\n",
    "nul-header": b"HTTP/1.1 200 OK\r\nX-Fault: be\x00fore\r\nContent-Length: 3\r\n\r\nabc",
    "cr-header": b"HTTP/1.1 200 OK\r\nX-Fault: a\rSet-Cookie: stolen=1\r\n"
                 b"Content-Length: 3\r\n\r\nabc",
    "lf-in-value": b"HTTP/1.1 200 OK\r\nX-Fault: a\nSet-Cookie: stolen=1\r\n"
                   b"Content-Length: 3\r\n\r\nabc",
    # Content-Length and Transfer-Encoding together: the chunked body is the real one
    "cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 77\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"3\r\nabc\r\n0\r\n\r\n",
    "cl-differ": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nqq\r\nabc\r\n0\r\n\r\n",
    # a complete response, then a second one nobody asked for (it must never reach anyone)
    "extra-response": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
                      b"HTTP/1.1 200 OK\r\nX-Poisoned: yes\r\nContent-Length: 6\r\n\r\npoison",
    "204-body": b"HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\npoison",
    "unasked-101": b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                   b"Upgrade: websocket\r\n\r\n",
    "huge-header": b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * 102400
                   + b"\r\nContent-Length: 3\r\n\r\nabc",
    # not a fault: a chunked body with a trailer section (gRPC's grpc-status, a checksum),
    # Content-Length among them (never a valid trailer)
    "trailers": b"HTTP/1.1 200 OK\r\nTrailer: X-Checksum, Grpc-Status\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n"
                b"0\r\nX-Checksum: abc\r\nGrpc-Status: 0\r\nContent-Length: 9\r\n\r\n",
    # a WebSocket handshake the backend turns down: HTTP goes on on this connection
    "ws-426": b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
              b"Content-Length: 0\r\n\r\n",
}
# Fault answers after which the backend keeps the connection open and reads on (so a test sees
# whether the proxy closes it); the timed ones are in Backend._fault.
TIMED_FAULTS = {"close-before-response", "hang", "hang-mid-body"}


class Received:
    """One request as the backend's lenient parser read it.

    ``head``: the raw head bytes, start line to blank line included; ``line``: the start line;
    ``fields``: one ``(name, value)`` per header line, split at the first colon, bytes as they
    came (a line without a colon gives ``(None, line)``); ``body``: the body (first MiB);
    ``bad``: None, or why the body could not be read (``eof-in-body``, ``eof-in-chunk``: the
    peer closed mid-body; ``bad-chunk``: chunked framing this parser cannot read)."""
    __slots__ = ("conn", "head", "line", "fields", "body", "body_len", "bad", "done")

    def __init__(self, conn, head, line, fields):
        self.conn, self.head, self.line, self.fields = conn, head, line, fields
        self.body, self.body_len, self.bad, self.done = b"", 0, None, False

    @property
    def target(self):
        parts = self.line.split(b" ")
        return parts[1] if len(parts) > 1 else b""

    def values(self, name):
        """Values of the fields called ``name`` (case-insensitive, name stripped as a lenient
        server does), OWS trimmed."""
        name = name.lower()
        return [v.strip(b" \t") for n, v in self.fields
                if n is not None and n.strip().lower() == name]

    def __repr__(self):
        return "Received(%r, body=%r, bad=%r)" % (self.head, self.body[:80], self.bad)


class _Reader:
    """Buffered reads from one connection; every byte received is appended to ``raw``."""

    MAX_KEEP = 1 << 20

    def __init__(self, sock, raw):
        self.sock, self.raw = sock, raw
        self.buf = bytearray()
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            return False
        self.raw += data
        self.buf += data
        return True

    def readline(self, limit=65537):
        while True:
            i = self.buf.find(b"\n", 0, limit)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) >= limit or not self._fill():
                line = bytes(self.buf[:limit])
                del self.buf[:limit]
                return line

    def read(self, n, keep=MAX_KEEP):
        """Up to ``n`` bytes (fewer at EOF)."""
        return self.read_counted(n, keep)[0]

    def read_counted(self, n, keep=MAX_KEEP):
        """Consume up to ``n`` bytes: (the first ``keep`` of them, how many were consumed). A
        declared 10 GiB body is counted, not held in memory."""
        got = 0
        out = bytearray()
        while n > got:
            if not self.buf and not self._fill():
                break
            k = min(n - got, len(self.buf))
            if len(out) < keep:
                out += self.buf[:min(k, keep - len(out))]
            del self.buf[:k]
            got += k
        return bytes(out), got


def _read_head(f):
    """The head's lines (line ends stripped) and its raw bytes; leading blank lines skipped."""
    lines, raw = [], b""
    while True:
        line = f.readline(65537)
        if not line:
            return None, raw
        if line in (b"\r\n", b"\n"):
            if lines:
                return lines, raw + line
            continue
        raw += line
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        lines.append(line)


def _read_chunked(f, rec):
    """A chunked body, leniently (the size is whatever int(x, 16) makes of it), into ``rec``."""
    body = bytearray()
    while True:
        line = f.readline()
        if not line:
            rec.bad = "eof-in-chunk"
            break
        try:
            size = int(line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            rec.bad = "bad-chunk"
            break
        if size < 0:
            rec.bad = "bad-chunk"
            break
        if size == 0:
            while True:
                t = f.readline()
                if not t:
                    rec.bad = "eof-in-chunk"
                    break
                if t in (b"\r\n", b"\n"):
                    break
            break
        data = f.read(size)
        if len(data) < size:
            rec.bad = "eof-in-chunk"
            break
        body += data
        end = f.readline()
        if end not in (b"\r\n", b"\n"):
            rec.bad = "eof-in-chunk" if not end else "bad-chunk"
            break
    rec.body, rec.body_len = bytes(body[:_Reader.MAX_KEEP]), len(body)


class Backend:
    def __init__(self, name="be", port=0, host="127.0.0.1", tls=None):
        self.tls = tls              # ssl.SSLContext (server side) for an https backend
        self.name = name
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host = host
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.requests = []          # (method, target, headers dict lower-case, body)
        self.connections = 0
        self.raw = []               # per connection (in accept order): every byte received
        self.received = []          # every request, in the order their heads arrived
        self.closed = set()         # connection numbers whose peer closed them (EOF or error)
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.raw.append(bytearray())
                cid = len(self.raw) - 1
            threading.Thread(target=self._serve_tls if self.tls else self._serve,
                             args=(conn, cid), daemon=True).start()

    def _serve_tls(self, conn, cid):
        try:
            conn.settimeout(10)
            conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(None)
        except (OSError, ValueError):
            conn.close()
            with self.lock:
                self.closed.add(cid)
            return
        self._serve(conn, cid)

    def close(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass

    def _serve(self, conn, cid):
        f = _Reader(conn, self.raw[cid])
        f.cid = cid
        try:
            while True:
                head, raw = _read_head(f)
                if head is None:
                    return
                fields = []
                for line in head[1:]:
                    name, colon, value = line.partition(b":")
                    fields.append((name, value) if colon else (None, line))
                rec = Received(cid, raw, head[0], fields)
                with self.lock:
                    self.received.append(rec)
                parts = head[0].decode("latin-1").split(" ", 2)
                method, target, version = (parts + ["", ""])[:3]
                headers = {}
                raw_headers = []
                for k, v in fields:
                    if k is None:
                        continue
                    k, v = k.decode("latin-1").strip(), v.decode("latin-1").strip()
                    headers.setdefault(k.lower(), v)
                    raw_headers.append([k, v])
                if target == "/continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                te = [t.strip().lower() for t in headers.get("transfer-encoding", "").split(",")
                      if t.strip()]
                if te and te[-1] == "chunked":
                    _read_chunked(f, rec)
                elif "content-length" in headers:
                    try:
                        n = int(headers["content-length"])      # lenient: '+5', '1_0' pass
                    except ValueError:
                        n = 0
                    rec.body, rec.body_len = f.read_counted(max(n, 0))
                    if rec.body_len < n:
                        rec.bad = "eof-in-body"
                rec.done = True
                body = rec.body
                with self.lock:
                    self.requests.append((method, target, headers, body))
                if rec.bad:
                    return
                if not self._answer(conn, f, method, target, version, raw_headers, headers, body):
                    return
        except (OSError, ValueError):
            return
        finally:
            with self.lock:
                self.closed.add(cid)
            try:
                conn.close()
            except OSError:
                pass

    def _wait_eof(self, f, limit=10.0):
        """Read (and log) until the peer closes, at most ``limit`` seconds."""
        f.sock.settimeout(limit)
        try:
            while f._fill():
                pass
        except OSError:
            pass

    def _fault(self, conn, f, name):
        """``/fault/NAME``: a broken answer. False: the connection is over."""
        if name in FAULTS:
            conn.sendall(FAULTS[name])
            if name == "unasked-101":
                self._wait_eof(f)
                return False
            return True
        if name == "close-before-response":
            return False
        if name == "hang":                      # no answer at all until the proxy gives up
            self._wait_eof(f)
            return False
        if name == "hang-mid-body":             # 10 of 100 bytes, then nothing
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            self._wait_eof(f)
            return False
        raise ValueError("unknown fault %r" % name)

    def _answer(self, conn, f, method, target, version, raw_headers, headers, body):
        parts = target.split("?")[0].strip("/").split("/")
        name = self.name.encode()
        if parts[0] == "fault" and len(parts) > 1:
            return self._fault(conn, f, parts[1])
        if parts[0] == "slow":
            time.sleep(int(parts[1]) / 1000.0)
        if parts[0] == "big":
            n = int(parts[1])
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: " + name
                         + b"\r\nContent-Length: %d\r\n\r\n" % n)
            if method != "HEAD":
                chunk = b"x" * 65536
                left = n
                while left:
                    k = min(left, len(chunk))
                    conn.sendall(chunk[:k])
                    left -= k
            return True
        if parts[0] == "chunked":
            n = int(parts[1])
            out = b"HTTP/1.1 200 OK\r\nX-Backend: " + name + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            left = n
            while left:
                k = min(left, 1000)
                out += b"%x\r\n" % k + b"c" * k + b"\r\n"
                left -= k
            conn.sendall(out + b"0\r\n\r\n")
            return True
        if parts[0] == "drip":
            # N chunks, MS milliseconds apart: a streamed response
            n, ms = int(parts[1]), int(parts[2])
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: " + name
                         + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(n):
                conn.sendall(b"6\r\ndrip%02d\r\n" % i)
                time.sleep(ms / 1000.0)
            conn.sendall(b"0\r\n\r\n")
            return True
        if parts[0] == "close":
            n = int(parts[1])
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: " + name + b"\r\nConnection: close\r\n\r\n"
                         + b"z" * n)
            return False
        if parts[0] == "status":
            code = int(parts[1])
            conn.sendall(b"HTTP/1.1 %d X\r\nX-Backend: " % code + name
                         + (b"\r\n\r\n" if code in (204, 304) else b"\r\nContent-Length: 0\r\n\r\n"))
            return True
        if parts[0] == "ws":
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            while True:                         # echo, through the logging reader
                if f.buf:
                    data = bytes(f.buf)
                    f.buf.clear()
                    conn.sendall(data)
                elif not f._fill():
                    return False
        doc = {"backend": self.name, "method": method, "target": target, "version": version,
               "headers": raw_headers, "body": body.decode("latin-1")}
        out = json.dumps(doc).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: " + name
                     + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(out)
                     + (out if method != "HEAD" else b""))
        return True
