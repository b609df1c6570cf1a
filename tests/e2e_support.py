"""Helpers for the end-to-end tests: free ports, config files, a ``pyroute run`` process,
raw HTTP exchanges over real sockets."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# pyroute's console log is coloured as Traefik's (zerolog) unless NO_COLOR is set: the tests
# read plain lines (tests/test_e2e_accesslog.py checks the colours with it unset)
os.environ.setdefault("NO_COLOR", "1")

# attackbench: an optional outside corpus of attack cases (and its runner and backend). The
# tests that replay it run only when it is there; pyroute's own cases are
# tests/test_e2e_attacks.py and tests/test_e2e_attacks_tls.py, which need nothing outside the
# clone. PYROUTE_ATTACKBENCH points at another copy (a nonexistent path hides it).
ATTACKBENCH_ENV = "PYROUTE_ATTACKBENCH"


def attackbench_dir():
    """Where the attackbench corpus is looked for: $PYROUTE_ATTACKBENCH, else
    ../shared/tools/attackbench beside the clone."""
    return Path(os.environ.get(ATTACKBENCH_ENV) or REPO.parent / "shared" / "tools" / "attackbench")


def require_attackbench(*files):
    """The corpus folder, or skip the calling test module when one of ``files`` is missing
    there. Call it at module level, before anything reads the corpus."""
    import pytest
    where = attackbench_dir()
    missing = [f for f in files if not (where / f).is_file()]
    if missing:
        pytest.skip("attackbench corpus not found at %s (missing %s): optional outside corpus "
                    "(set %s to use another copy); pyroute's own cases are "
                    "tests/test_e2e_attacks.py and tests/test_e2e_attacks_tls.py"
                    % (where, ", ".join(missing), ATTACKBENCH_ENV), allow_module_level=True)
    return where


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def static_yaml(port, read="60s", write="0s", idle="180s", grace="10s", trusted=(), http=""):
    trusted_block = ""
    if trusted:
        trusted_block = "    forwardedHeaders:\n      trustedIPs: [%s]\n" % ", ".join(
            '"%s"' % t for t in trusted)
    return (
        "entryPoints:\n"
        "  web:\n"
        '    address: "127.0.0.1:%d"\n'
        "    transport:\n"
        "      respondingTimeouts: {readTimeout: %s, writeTimeout: %s, idleTimeout: %s}\n"
        "      lifeCycle: {graceTimeOut: %s}\n"
        "%s"
        "%s"
        "log: {level: INFO}\n" % (port, read, write, idle, grace, trusted_block,
                                  ("    http: %s\n" % http) if http else ""))


def backend_service(name, ports, namespace="default"):
    """A Service + one EndpointSlice per endpoint: ``ports`` holds ports (on 127.0.0.1) or
    (ip, port) pairs. Traefik keeps one server per endpoint IP, so servers of one service
    need distinct loopback addresses (127.0.0.2, ...)."""
    eps = "".join(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
        "  name: %s-%d\n  namespace: %s\n  labels: {kubernetes.io/service-name: %s}\n"
        "addressType: IPv4\nports: [{name: http, port: %d}]\n"
        "endpoints: [{addresses: [\"%s\"], conditions: {ready: true}}]\n"
        % (name, i, namespace, name, p[1] if isinstance(p, tuple) else p,
           p[0] if isinstance(p, tuple) else "127.0.0.1") for i, p in enumerate(ports))
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\n"
            "spec:\n  ports: [{name: http, port: 80}]\n" % (name, namespace)) + eps


def ingressroute(name, routes, namespace="default"):
    """``routes``: list of (match, service name, extra route yaml lines or "")."""
    out = ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
           "metadata: {name: %s, namespace: %s}\nspec:\n  entryPoints: [web]\n  routes:\n"
           % (name, namespace))
    for match, svc, extra in routes:
        out += "    - match: %s\n      kind: Rule\n" % match
        out += "      services: [{name: %s, port: 80}]\n" % svc
        if extra:
            out += extra
    return out


class Pyroute:
    """``pyroute run`` as a subprocess on a free port."""

    def __init__(self, tmp, manifests, port=None, workers=1, **static):
        self.tmp = Path(tmp)
        self.port = port or free_port()
        self.static = self.tmp / "static.yaml"
        self.static.write_text(static_yaml(self.port, **static))
        self.mdir = self.tmp / "manifests"
        self.mdir.mkdir(exist_ok=True)
        (self.mdir / "config.yaml").write_text(manifests)
        self.workers = workers
        self.proc = None
        self.log = self.tmp / "pyroute.log"

    def start(self, wait=True):
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyroute", "run", "-c", str(self.static), str(self.mdir),
             "-w", str(self.workers)], stdout=self.logf, stderr=subprocess.STDOUT,
            cwd=str(REPO))
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20.0):
        # The master binds the port before it forks the workers (connections queue until a
        # worker accepts), so a connect alone proves little: wait for the workers and for an
        # answer. A request without Host is refused by the codec (400) before any routing, so
        # no backend sees it.
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError("pyroute exited: %s" % self.output())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.settimeout(max(0.5, end - time.time()))
                    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
                    if not s.recv(12).startswith(b"HTTP/1.1 "):
                        raise OSError("no answer")
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("pyroute did not listen: %s" % self.output())
        while len(worker_pids(self.proc.pid)) < self.workers and time.time() < end:
            time.sleep(0.05)

    def output(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def write_manifests(self, text):
        tmp = self.mdir / ".config.yaml.tmp"
        tmp.write_text(text)
        os.rename(tmp, self.mdir / "config.yaml")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def worker_pids(master_pid):
    out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def read_response(sock, head_request=False, timeout=10.0):
    """Read one response from a socket; returns (status, headers dict lower-case, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a full head: %r" % data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(b":", 1)
        headers.setdefault(k.strip().lower().decode(), v.strip().decode("latin-1"))
    if head_request or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", rest
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            rest += chunk
        return status, headers, rest[:n], rest[n:]
    if "chunked" in headers.get("transfer-encoding", ""):
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            line, rest = rest.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(rest) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed mid-chunk")
                rest += chunk
            if size == 0:
                while not rest.startswith(b"\r\n") and b"\r\n\r\n" not in rest:
                    rest += sock.recv(65536)
                rest = rest[2:] if rest.startswith(b"\r\n") else rest.split(b"\r\n\r\n", 1)[1]
                return status, headers, body, rest
            body += rest[:size]
            rest = rest[size + 2:]
    body = rest
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return status, headers, body, b""
        body += chunk


def request(port, raw, head_request=False, timeout=10.0):
    """One exchange on a new connection: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        status, headers, body, _ = read_response(s, head_request, timeout)
        return status, headers, body


def get(port, path="/", host="a.test", extra=""):
    return request(port, ("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, extra)).encode())
