"""A raw-socket HTTP/1.1 backend for the end-to-end tests (threads, one per connection).

It answers every request with a JSON echo of what it received (request line, headers, body),
and has special paths: ``/big/N`` (N bytes), ``/chunked/N`` (N bytes in chunks),
``/close/N`` (N bytes, body until close), ``/slow/MS`` (answer after MS ms),
``/status/N``, ``/ws`` (101 then echo bytes), ``/continue`` (sends 100 Continue before
reading the body). Header ``X-Backend`` carries the backend's name.
"""
import json
import socket
import threading
import time


def _read_head(f):
    lines = []
    while True:
        line = f.readline(65537)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            if lines:
                return lines
            continue
        lines.append(line.rstrip(b"\r\n"))


def _read_chunked(f):
    body = b""
    while True:
        size = int(f.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass
            return body
        body += f.read(size)
        f.readline()


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
            threading.Thread(target=self._serve_tls if self.tls else self._serve, args=(conn,),
                             daemon=True).start()

    def _serve_tls(self, conn):
        try:
            conn.settimeout(10)
            conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(None)
        except (OSError, ValueError):
            conn.close()
            return
        self._serve(conn)

    def close(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass

    def _serve(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                head = _read_head(f)
                if head is None:
                    return
                method, target, version = head[0].decode("latin-1").split(" ", 2)
                headers = {}
                raw_headers = []
                for line in head[1:]:
                    k, v = line.decode("latin-1").split(":", 1)
                    headers.setdefault(k.strip().lower(), v.strip())
                    raw_headers.append([k.strip(), v.strip()])
                if target == "/continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if "chunked" in headers.get("transfer-encoding", ""):
                    body = _read_chunked(f)
                elif "content-length" in headers:
                    body = f.read(int(headers["content-length"]))
                else:
                    body = b""
                with self.lock:
                    self.requests.append((method, target, headers, body))
                if not self._answer(conn, f, method, target, version, raw_headers, headers, body):
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _answer(self, conn, f, method, target, version, raw_headers, headers, body):
        parts = target.split("?")[0].strip("/").split("/")
        name = self.name.encode()
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
            while True:
                data = conn.recv(65536)
                if not data:
                    return False
                conn.sendall(data)
        doc = {"backend": self.name, "method": method, "target": target, "version": version,
               "headers": raw_headers, "body": body.decode("latin-1")}
        out = json.dumps(doc).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: " + name
                     + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(out)
                     + (out if method != "HEAD" else b""))
        return True
