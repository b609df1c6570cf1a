"""How long a worker stops serving while it takes a reload of a big configuration: a probe
client sends one keep-alive request every ``--every`` ms to a 1-worker pyroute serving
``--routes`` IngressRoutes, the manifest is rewritten (a new version header and one new route)
and the longest request latency in the reload window (from the change until 1 s after the new
version answered) is compared with the longest in the quiet 3 s before the change (same run,
same process). The worker's longest loop turn
is at least (and within a request's own cost of) the longest probe latency.

    .venv/bin/python bench/reload.py [--repo DIR] [--routes 10000] [--tls-routes 0]
        [--reloads 5] [--every 2]

``--repo``: the checkout whose pyroute runs (its .venv's python), e.g. /work/main for "before".
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from e2e_backend import Backend  # noqa: E402
from e2e_support import backend_service, free_port, static_yaml  # noqa: E402

ROUTE = """\
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app-%d, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`app-%d.example.com`) && PathPrefix(`/api`)
      kind: Rule
      services: [{name: svc, port: 80}]
"""

TLS_ROUTE = """\
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: tls-%d, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`tls-%d.example.com`)
      kind: Rule
      services: [{name: svc, port: 80}]
  tls: {}
"""

MAIN = """\
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: version, namespace: default}
spec:
  headers:
    customResponseHeaders: {X-Version: "%d"}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: main, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.test`)
      kind: Rule
      middlewares: [{name: version}]
      services: [{name: svc, port: 80}]
    - match: Host(`new-%d.test`)
      kind: Rule
      services: [{name: svc, port: 80}]
"""


def request(sock, host):
    sock.sendall(b"GET /probe HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("closed")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    version = None
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.lower() == b"content-length":
            length = int(v)
        elif k.lower() == b"x-version":
            version = int(v)
    while len(body) < length:
        body += sock.recv(65536)
    return int(head[9:12]), version


class Probe(threading.Thread):
    def __init__(self, port, every):
        super().__init__(daemon=True)
        self.port = port
        self.every = every
        self.samples = []         # (sent at, latency, status, version)
        self.running = True

    def run(self):
        sock = socket.create_connection(("127.0.0.1", self.port))
        nxt = time.monotonic()
        while self.running:
            t = time.monotonic()
            try:
                status, version = request(sock, "a.test")
            except OSError:
                sock.close()
                sock = socket.create_connection(("127.0.0.1", self.port))
                status, version = 0, None
            self.samples.append((t, time.monotonic() - t, status, version))
            nxt += self.every
            time.sleep(max(0.0, nxt - time.monotonic()))

    def window(self, start, end):
        return [s for s in self.samples if start <= s[0] < end]


def wait_for(fn, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.01)
    return False


def get_status(port, host):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        return request(s, host)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=str(HERE.parent))
    ap.add_argument("--routes", type=int, default=10000)
    ap.add_argument("--tls-routes", type=int, default=0,
                    help="IngressRoutes with a tls section, on top of --routes")
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--every", type=float, default=2.0, help="ms between probe requests")
    ap.add_argument("--cpu", default="0", help="taskset CPU list for pyroute")
    args = ap.parse_args()
    repo = Path(args.repo)
    be = Backend("a")
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-reload-bench-"))
    port = free_port()
    (tmp / "static.yaml").write_text(static_yaml(port).replace("level: INFO", "level: DEBUG"))
    mdir = tmp / "m"
    mdir.mkdir()
    (mdir / "svc.yaml").write_text(backend_service("svc", [be.port]))
    (mdir / "big.yaml").write_text("".join(ROUTE % (i, i) for i in range(args.routes)))
    if args.tls_routes:
        (mdir / "tls.yaml").write_text("".join(TLS_ROUTE % (i, i) for i in range(args.tls_routes)))
    (mdir / "main.yaml").write_text(MAIN % (0, 0))
    logf = open(tmp / "pyroute.log", "wb")
    proc = subprocess.Popen(["taskset", "-c", args.cpu, str(repo / ".venv/bin/python"), "-m",
                             "pyroute", "run", "-c", str(tmp / "static.yaml"), str(mdir),
                             "-w", "1"], cwd=str(repo), stdout=logf, stderr=subprocess.STDOUT)
    rows = []
    try:
        assert wait_for(lambda: _ok(port), 600), "pyroute did not start"
        probe = Probe(port, args.every / 1000.0)
        probe.start()
        time.sleep(2.0)
        for v in range(1, args.reloads + 1):
            quiet_start = time.monotonic()
            time.sleep(3.0)
            t0 = time.monotonic()
            tmpf = mdir / ".main.tmp"
            tmpf.write_text(MAIN % (v, v))
            os.rename(tmpf, mdir / "main.yaml")
            assert wait_for(lambda: any(s[3] == v for s in probe.samples[-50:]), 120), \
                "version %d never served" % v
            swapped = time.monotonic()
            assert get_status(port, "new-%d.test" % v) == 200
            time.sleep(1.0)
            t1 = time.monotonic()
            during = probe.window(t0, t1)
            quiet = probe.window(quiet_start, t0)
            failed = sum(1 for s in during if s[2] != 200)
            worst = max(during, key=lambda s: s[1])
            print("reload %d: worst request sent %.2fs after the change, the new config served"
                  " %.2fs after it" % (v, worst[0] - t0, swapped - t0), file=sys.stderr)
            rows.append((max(s[1] for s in quiet) * 1000, max(s[1] for s in during) * 1000,
                         sorted(s[1] for s in during)[int(len(during) * 0.99)] * 1000,
                         swapped - t0, failed, len(during)))
        probe.running = False
        probe.join(5)
    finally:
        proc.terminate()
        proc.wait(30)
        be.close()
    # the worker's own account (its debug lines): the longest loop turn of each reload, wall
    # and CPU time of its thread, and of the freeing of the old configuration where it has it
    worker = []
    for line in (tmp / "pyroute.log").read_text(errors="replace").splitlines():
        if "worker swapped configuration" in line or "worker freed an old" in line:
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            worker.append(("swap" if "swapped" in line else "free",
                           fields.get("longestTurn", "-"), fields.get("longestTurnCPU", "-")))
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    print("pyroute at %s (%s), 1 worker pinned to CPU %s, %d IngressRoutes + %d with tls, "
          "probe every %g ms" % (repo, rev, args.cpu, args.routes, args.tls_routes, args.every))
    print("%-7s %12s %12s %12s %14s %7s" % ("reload", "quiet max", "reload max", "reload p99",
                                            "new config in", "failed"))
    for i, (q, m, p99, sw, failed, n) in enumerate(rows, 1):
        print("%-7d %10.1fms %10.1fms %10.1fms %13.2fs %4d/%d" % (i, q, m, p99, sw, failed, n))
    print("median  %10.1fms %10.1fms %10.1fms %13.2fs" % (
        statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
        statistics.median(r[2] for r in rows), statistics.median(r[3] for r in rows)))
    print("worker's own longest turn per reload (wall / CPU of its thread):",
          "; ".join("%s %s / %s" % w for w in worker))


def _ok(port):
    try:
        return get_status(port, "a.test") == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
