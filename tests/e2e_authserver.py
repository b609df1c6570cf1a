"""A scripted HTTP/1.1 server for the end-to-end tests of forwardAuth: an authentication
server (or a backend) whose answer per path is set by the test.

Threads, one per connection, keep-alive. Every request is recorded (``requests``: a
``Seen`` per request, in arrival order: method, target, the header lines as they came, the
body as read, the connection number). ``script[path]`` (the path without the query) is a
function ``Seen -> answer`` where ``answer`` is ``bytes`` (sent as they are: a complete raw
response) or ``(status, [(name, value)], body)`` (Content-Length added unless a header names
Transfer-Encoding or Content-Length); or directly one of these values. ``"hold"``: no answer, the
connection is held until the peer closes it (``closed_at`` notes when). ``delay[path]``:
seconds to wait before answering. Unscripted paths get 200 with an empty body.
``tls``: an ``ssl.SSLContext`` (server side) for an https server.
"""
import socket
import threading
import time


class Seen:
    __slots__ = ("method", "target", "version", "fields", "body", "conn", "raw", "at")

    def __init__(self, method, target, version, fields, body, conn, raw):
        self.method, self.target, self.version = method, target, version
        self.fields, self.body, self.conn, self.raw = fields, body, conn, raw
        self.at = time.monotonic()

    @property
    def path(self):
        return self.target.split("?", 1)[0]

    def values(self, name):
        name = name.lower()
        return [v for k, v in self.fields if k.lower() == name]

    def get(self, name):
        v = self.values(name)
        return v[0] if v else None

    def names(self):
        return [k for k, _ in self.fields]


class ScriptedServer:
    def __init__(self, host="127.0.0.1", tls=None):
        self.tls = tls
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.script = {}
        self.delay = {}
        self.requests = []
        self.closed_at = []         # when peers closed connections held by "hold"
        self.connections = 0
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def seen(self, path):
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def clear(self):
        with self.lock:
            self.requests.clear()

    def close(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                cid = self.connections
            threading.Thread(target=self._serve, args=(conn, cid), daemon=True).start()

    def _serve(self, conn, cid):
        try:
            if self.tls is not None:
                conn.settimeout(10)
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(30)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = (lines[0].split(" ", 2) + ["", ""])[:3]
                fields = []
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    fields.append((k, v.strip()))
                low = {k.lower(): v for k, v in fields}
                body = b""
                if "chunked" in low.get("transfer-encoding", "").lower():
                    while True:
                        while b"\r\n" not in buf:
                            buf += conn.recv(65536)
                        size_line, buf = buf.split(b"\r\n", 1)
                        size = int(size_line.split(b";")[0], 16)
                        while len(buf) < size + 2:
                            buf += conn.recv(65536)
                        if size == 0:
                            buf = buf[2:]
                            break
                        body += buf[:size]
                        buf = buf[size + 2:]
                elif "content-length" in low:
                    n = int(low["content-length"])
                    while len(buf) < n:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    body, buf = buf[:n], buf[n:]
                seen = Seen(method, target, version, fields, body, cid, head)
                with self.lock:
                    self.requests.append(seen)
                path = seen.path
                if self.delay.get(path):
                    time.sleep(self.delay[path])
                answer = self.script.get(path, (200, [], b""))
                if answer == "hold":
                    # no answer: wait for the peer to close, and note when it did
                    conn.settimeout(10)
                    try:
                        while conn.recv(65536):
                            pass
                    except OSError:
                        pass
                    with self.lock:
                        self.closed_at.append(time.monotonic())
                    return
                if callable(answer):
                    answer = answer(seen)
                if answer is None:          # hang up without answering
                    return
                conn.sendall(render(answer))
        except (OSError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass


def render(answer):
    if isinstance(answer, bytes):
        return answer
    status, headers, body = answer
    names = {k.lower() for k, _ in headers}
    out = "HTTP/1.1 %d X\r\n" % status
    out += "".join("%s: %s\r\n" % (k, v) for k, v in headers)
    if "content-length" not in names and "transfer-encoding" not in names \
            and status not in (204, 304):
        out += "Content-Length: %d\r\n" % len(body)
    return out.encode("latin-1") + b"\r\n" + body


def go_error(status, text, headers=()):
    """What Go's http.Error writes (before its server adds Date): text/plain, nosniff, the
    text and a newline."""
    body = text.encode() + b"\n"
    return (status, list(headers) + [("Content-Type", "text/plain; charset=utf-8"),
                                     ("X-Content-Type-Options", "nosniff")], body)
