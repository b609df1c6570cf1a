"""The API's HTTP server: a thread of the master listening on the ``traefik`` entry point.

A thread, not a process: the API reads the master's own state (the configuration it holds,
the health checker's servers, the worker slots) without copies or messages. It never delays
the master: the master's loop neither waits for it nor shares a lock with it (the model is
replaced whole on reload; the health targets are copied in one C-level step). Each
connection gets a thread with a read timeout, so a slow client holds only its own thread.

The API thread writes nothing to stdout/stderr: the master forks workers while it runs, and a
child must not inherit a stream lock held by a thread that does not exist in the child. The
listening socket is closed in every forked child (``os.register_at_fork``).
"""
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .handler import MAX_BODY

READ_TIMEOUT = 10.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pyroute"
    sys_version = ""
    timeout = READ_TIMEOUT

    def _serve(self):
        api = self.server.api
        body = b""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self._send(411 if self.command == "POST" else 400, [], b"")
            return
        if length:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if n < 0 or n > MAX_BODY:
                self._send(413 if n > MAX_BODY else 400, [], b"")
                return
            body = self.rfile.read(n)
        try:
            status, headers, data = api.handle(self.command, self.path, body,
                                               internal=self.server.internal,
                                               headers=self.headers)
        except Exception as e:  # never take the thread (or the master) down
            status, headers, data = 500, [("Content-Type", "text/plain; charset=utf-8")], \
                ("internal error: %r\n" % e).encode()
        self._send(status, headers, data)

    def _send(self, status, headers, data):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if status == 204 or status == 304 or status < 200:
            # no body, no Content-Length (RFC 9110 §8.6, §15.3.5): Go writes none either
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def log_message(self, format, *args):   # noqa: A002  (see the module docstring)
        pass

    def log_error(self, format, *args):     # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, family, api, internal=False):
        self.address_family = family
        self.api = api
        self.internal = internal
        super().__init__(address, _Handler)

    def server_bind(self):
        if self.address_family == socket.AF_UNIX:
            # HTTPServer.server_bind would resolve the path as a host name
            socketserver.TCPServer.server_bind(self)
            os.chmod(self.server_address, 0o600)
            self.server_name, self.server_port = "pyroute", 0
            return
        super().server_bind()

    def handle_error(self, request, client_address):
        pass                                  # no stderr from the API thread


class ApiServer:
    """Binds the entry point at once (a start error when it cannot), serves from ``start``."""

    def __init__(self, api, entry_point, unix_path=None, internal=False):
        self.thread = None
        self.unix_path = unix_path
        if unix_path is not None:
            try:
                os.unlink(unix_path)
            except OSError:
                pass
            self.server = _Server(unix_path, socket.AF_UNIX, api, internal)
            os.register_at_fork(after_in_child=self._close_in_child)
            return
        host = entry_point.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if host == "":
            # Traefik's ":8080": every interface (IPv6 socket accepting IPv4 too when possible)
            family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
            host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        try:
            self.server = _Server((host, entry_point.port), family, api)
        except OSError:
            if entry_point.host != "" or family != socket.AF_INET6:
                raise
            self.server = _Server(("0.0.0.0", entry_point.port), socket.AF_INET, api)
        self.thread = None
        os.register_at_fork(after_in_child=self._close_in_child)

    def _close_in_child(self):
        try:
            self.server.socket.close()
        except OSError:
            pass

    @property
    def address(self):
        return self.server.server_address[:2]

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.5,),
                                       name="pyroute-api", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.thread is not None:
            self.server.shutdown()
        self.server.server_close()
