"""Demo backends for ``pyroute run`` without arguments: small echo servers in the spirit of
Traefik's ``whoami`` — each answers with its name, the request line, the headers and the body
it received, so a newcomer sees what the proxy forwarded."""
import json
import os
import signal
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEMO_PORTS = {"echo-a": 18081, "echo-b": 18082, "echo-c": 18083}


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pyroute-demo-echo"

    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        lines = ["Hostname: %s" % self.server.demo_name,
                 "RemoteAddr: %s:%d" % self.client_address[:2],
                 "%s %s %s" % (self.command, self.path, self.request_version)]
        lines += ["%s: %s" % (k, v) for k, v in self.headers.items()]
        out = ("\n".join(lines) + "\n").encode() + (b"\n" + body if body else b"")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _echo

    def log_message(self, fmt, *args):
        pass


def _serve(name, port):
    server = ThreadingHTTPServer(("127.0.0.1", port), EchoHandler)
    server.demo_name = name
    server.daemon_threads = True
    return server


def start_demo_backends():
    """Fork one process serving every demo backend; returns its pid."""
    servers = [_serve(name, port) for name, port in DEMO_PORTS.items()]
    pid = os.fork()
    if pid:
        for s in servers:
            s.server_close()
        return pid
    try:
        from .proctitle import set_title
        set_title("pyroute: demo backend", "pyroute-demo")
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        import threading
        for s in servers[1:]:
            threading.Thread(target=s.serve_forever, daemon=True).start()
        servers[0].serve_forever()
    finally:
        os._exit(0)
