"""Load run: pyroute beside nginx, HAProxy and Caddy as reverse proxies, side by side.

    .venv/bin/python bench/load.py [--rounds 3] [--duration 4] [--idle 10000] [--strace]

One origin (nginx, one worker) serves a small response and a 16 KiB one. Each proxy runs one
worker pinned to CPU 0 (``taskset``); the origin and wrk share CPU 1. Rounds are interleaved
(every proxy once per round) and medians reported: requests/s, p50/p99 latency and the proxy's
CPU time per request split into user and kernel (utime/stime deltas of its processes in
/proc/<pid>/stat over the run, divided by the requests wrk completed) — on 2 cores wrk's core
saturates first, so CPU per request is the comparable number. ``--idle N`` opens N idle
keep-alive connections (each after one request) and reports the proxy's RSS growth per
connection. ``--strace`` counts system calls per proxied keep-alive request (``strace -c -f``
over a fixed run with 16 connections). ``--unpinned`` runs 2 workers without pinning.
``--baseline REF`` adds ``pyroute@REF``: the same route served by pyroute as built from the git
commit REF (a detached worktree and its own venv under ~/.cache/pyroute-bench/, built once per
commit), measured in the same interleaved rounds — the guard that a route without middlewares
does not get slower as features land (``--proxies pyroute --baseline origin/main``).
``--observability`` adds ``pyroute+obs`` (an access log in JSON to a file and Prometheus with
Traefik's default labels: entry point and service) and ``pyroute+obs+rt`` (router labels too),
measured in the same rounds: the cost of observability per request; ``pyroute+log`` and
``pyroute+prom`` are each half alone; ``pyroute+trace0`` / ``pyroute+trace1`` trace at
sampleRate 0.0 / 1.0 (OTLP/HTTP to a sink in this process, on wrk's CPU). With
``--baseline REF`` too, REF runs with the obs / obs+rt / log / prom settings as well, each
against REF off in the same round: the before and after of an observability change.
Needs nginx, haproxy, caddy, wrk and strace on PATH (Debian packages).
"""
import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK = os.sysconf("SC_CLK_TCK")
SMALL = "/small"
BIG = "/16k"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def cpu_of(pids):
    user = sys_ = 0
    for pid in pids:
        try:
            fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        sys_ += int(fields[12])
    return user / CLK, sys_ / CLK


def rss_of(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path("/proc/%d/status" % pid).read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class Proc:
    def __init__(self, name, argv, port, cpu, env=None, worker_pids=None, cwd=None):
        self.name = name
        self.port = port
        cmd = (["taskset", "-c", cpu] if cpu else []) + argv
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=env, preexec_fn=os.setsid, cwd=cwd)
        wait_port(port)
        time.sleep(0.3)
        self._workers = worker_pids

    def pids(self):
        if self._workers:
            return self._workers(self.p.pid)
        return [self.p.pid] + children(self.p.pid)

    def signal(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except OSError:
            pass

    def stop(self):
        try:
            os.killpg(self.p.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)


def start_origin(tmp, port):
    root = tmp / "www"
    root.mkdir(mode=0o755)
    (root / "small").write_text("hello from origin\n")
    (root / "16k").write_bytes(b"x" * 16384)
    conf = tmp / "origin.conf"
    conf.write_text("""
worker_processes 1; daemon off; pid %s/origin.pid; error_log /dev/null crit;
events { worker_connections 20000; multi_accept on; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:%d reuseport backlog=4096; root %s;
    location / { default_type text/plain; } } }
""" % (tmp, port, root))
    return Proc("origin", ["nginx", "-c", str(conf)], port, "1")


def start_nginx(tmp, port, origin, cpu, workers=1):
    conf = tmp / ("nginx-%d.conf" % port)
    conf.write_text("""
worker_processes %d; daemon off; pid %s/nginx-%d.pid; error_log /dev/null crit;
worker_rlimit_nofile 19000;
events { worker_connections 20000; multi_accept on; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  upstream origin { server 127.0.0.1:%d; keepalive 256; }
  server { listen 127.0.0.1:%d backlog=4096; server_name bench.test;
    location / { proxy_pass http://origin; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host; } } }
""" % (workers, tmp, port, origin, port))
    return Proc("nginx", ["nginx", "-c", str(conf)], port, cpu,
                worker_pids=lambda pid: children(pid))


def start_haproxy(tmp, port, origin, cpu, workers=1):
    conf = tmp / ("haproxy-%d.cfg" % port)
    conf.write_text("""
global
  nbthread %d
  maxconn 9800
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  http-reuse always
frontend fe
  bind 127.0.0.1:%d backlog 4096
  default_backend be
backend be
  server origin 127.0.0.1:%d
""" % (workers, port, origin))
    return Proc("haproxy", ["haproxy", "-f", str(conf)], port, cpu)


def start_caddy(tmp, port, origin, cpu, workers=1):
    conf = tmp / ("Caddyfile-%d" % port)
    conf.write_text("""{
  admin off
  auto_https off
}
http://:%d {
  reverse_proxy 127.0.0.1:%d
}
""" % (port, origin))
    env = dict(os.environ, GOMAXPROCS=str(workers), HOME=str(tmp))
    return Proc("caddy", ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"],
                port, cpu, env=env)


def build_baseline(ref):
    """A venv with pyroute installed (not editable) from git commit ``ref``; its python."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", ref], capture_output=True,
                         text=True, check=True).stdout.strip()
    cache = Path.home() / ".cache" / "pyroute-bench" / sha
    py = cache / "venv" / "bin" / "python"
    if py.exists():
        return str(py), sha
    src = cache / "src"
    if not src.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(src), sha],
                       check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", str(cache / "venv")], check=True)
    print("building pyroute at %s (once) ..." % sha[:12], flush=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(src)], check=True)
    return str(py), sha


# --observability: Traefik's defaults switched on (an access log in JSON to a file, Prometheus
# with entry point and service labels), then with router labels too
# (manualRouting: no /metrics listener of the master on :8080, which two pyroutes would share)
OBSERVABILITY = {
    "pyroute+obs": "accessLog: {filePath: %(dir)s/access.log, format: json}\n"
                   "metrics: {prometheus: {manualRouting: true}}\n",
    "pyroute+obs+rt": "accessLog: {filePath: %(dir)s/access.log, format: json}\n"
                      "metrics: {prometheus: {manualRouting: true, addRoutersLabels: true}}\n",
    # each half alone, to tell their costs apart
    "pyroute+log": "accessLog: {filePath: %(dir)s/access.log, format: json}\n",
    "pyroute+prom": "metrics: {prometheus: {manualRouting: true}}\n",
    # tracing: nothing sampled (a trace id drawn, traceparent injected, no span), and every
    # request's spans exported over OTLP/HTTP to OTLPSink (in this process, on wrk's CPU)
    "pyroute+trace0": "tracing: {sampleRate: 0.0, otlp: {http: {endpoint: "
                      "'http://127.0.0.1:%(otlp)d'}}}\n",
    "pyroute+trace1": "tracing: {sampleRate: 1.0, otlp: {http: {endpoint: "
                      "'http://127.0.0.1:%(otlp)d'}}}\n",
}


# with --baseline REF too: these also run on REF (tracing is left out: its 1.0 run is long)
BASELINE_OBSERVABILITY = ("pyroute+obs", "pyroute+obs+rt", "pyroute+log", "pyroute+prom")


class OTLPSink:
    """An OTLP/HTTP endpoint that accepts and drops every export, its thread on ``cpu``."""

    def __init__(self, cpu):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]

        def serve():
            if cpu is not None:
                os.sched_setaffinity(0, {int(cpu)})     # this thread (and its children)
            self.server.serve_forever()
        threading.Thread(target=serve, daemon=True).start()


def start_pyroute(tmp, port, origin, cpu, workers=1, python=None, name="pyroute", extra="",
                  static_extra="", otlp=0):
    d = pyroute_config(tmp, port, origin, extra, static_extra, otlp)
    py = python or str(REPO / ".venv" / "bin" / "python")
    # cwd outside the repository: `python -m pyroute` must import the venv's pyroute, not
    # the source tree's
    return Proc(name, [py, "-m", "pyroute", "run", "-c", str(d / "static.yaml"),
                       str(d / "m.yaml"), "-w", str(workers)], port, cpu,
                worker_pids=lambda pid: children(pid), cwd=str(d))


def pyroute_config(tmp, port, origin, extra="", static_extra="", otlp=0):
    """The bench's pyroute configuration (one route to the origin) in a new directory."""
    d = tmp / ("pyroute-%d" % port)
    d.mkdir()
    (d / "static.yaml").write_text(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:%d\"\n"
        "    transport: {respondingTimeouts: {idleTimeout: 300s}}\nlog: {level: ERROR}\n" % port
        + extra % {"dir": d, "otlp": otlp} + static_extra)
    (d / "m.yaml").write_text("""
apiVersion: v1
kind: Service
metadata: {name: origin, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: origin-1, namespace: default, labels: {kubernetes.io/service-name: origin}}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: bench, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - {match: Host(`bench.test`), kind: Rule, services: [{name: origin, port: 80}]}
""" % origin)
    return d


STARTERS = {"pyroute": start_pyroute, "nginx": start_nginx, "haproxy": start_haproxy,
            "caddy": start_caddy}


def wrk(port, path, conns, duration, cpu="1"):
    cmd = (["taskset", "-c", cpu] if cpu else []) + [
        "wrk", "-t1" if conns <= 64 else "-t2", "-c%d" % conns, "-d%ds" % duration, "--latency",
        "-H", "Host: bench.test", "http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_errs = re.search(r"Socket errors: (.*)", out)
    lat = {}
    for q in ("50", "99"):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % q, out)
        v = float(m.group(1))
        lat[q] = v / 1000 if m.group(2) == "us" else (v * 1000 if m.group(2) == "s" else v)
    return {"requests": reqs, "rps": rps, "p50": lat["50"], "p99": lat["99"],
            "errors": (int(errs.group(1)) if errs else 0), "socket_errors": sock_errs and sock_errs.group(1)}


def check_proxied(proc):
    """Every proxy must answer both paths with the origin's bodies: a proxy that answers
    something else (Caddy answers an empty 200 for a Host its site address does not match)
    would be measured doing no proxying at all."""
    for path, body in ((SMALL, b"hello from origin\n"), (BIG, b"x" * 16384)):
        s = socket.create_connection(("127.0.0.1", proc.port), 5)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n"
                  % path.encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        if not data.startswith(b"HTTP/1.1 200") or not data.endswith(b"\r\n\r\n" + body):
            sys.exit("%s does not proxy %s to the origin: %r" % (proc.name, path, data[:300]))


def measure(proc, path, conns, duration, cpu):
    pids = proc.pids()
    u0, s0 = cpu_of(pids)
    r = wrk(proc.port, path, conns, duration, cpu)
    u1, s1 = cpu_of(pids)
    n = max(1, r["requests"])
    r["user_us"] = (u1 - u0) / n * 1e6
    r["sys_us"] = (s1 - s0) / n * 1e6
    r["cpu_us"] = r["user_us"] + r["sys_us"]
    return r


def idle_memory(proc, n, batch=500):
    """RSS growth of the proxy per idle keep-alive connection (each made one request).

    Connections are opened and make their request ``batch`` at a time (each batch answered
    before the next starts): what is measured is what an idle connection keeps, not the
    high-water mark of 10,000 requests in flight at once (each with its backend connection),
    which allocators keep as RSS and which varied 0.6-1.3 KiB per connection between runs."""
    import selectors
    pids = proc.pids()
    before = rss_of(pids)
    socks = []
    req = b"GET /small HTTP/1.1\r\nHost: bench.test\r\n\r\n"
    ok = 0
    sel = selectors.DefaultSelector()
    for start in range(0, n, batch):
        pending = {}
        for i in range(min(batch, n - start)):
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", proc.port))
                s.sendall(req)
            except OSError:
                s.close()
                continue
            s.setblocking(False)
            socks.append(s)
            pending[s] = b""
            sel.register(s, selectors.EVENT_READ)
        end = time.time() + 30
        while pending and time.time() < end:
            for key, _ in sel.select(1.0):
                s = key.fileobj
                try:
                    d = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                buf = pending[s] + d
                if not d or b"hello from origin" in buf:
                    sel.unregister(s)
                    del pending[s]
                    ok += bool(d)
                else:
                    pending[s] = buf
        for s in pending:
            sel.unregister(s)
    time.sleep(1.0)
    after = rss_of(pids)
    for s in socks:
        s.close()
    return (after - before) / max(1, ok), ok


def strace_count(proc, seconds=3, conns=16):
    """System calls per proxied keep-alive request (strace -c -f on the proxy's workers)."""
    pids = proc.pids()
    out = Path(tempfile.mktemp(suffix=".strace"))
    args = ["strace", "-c", "-f", "-o", str(out)]
    for p in pids:
        # every thread: -f follows only threads created after attaching (HAProxy's and Caddy's
        # threads exist already). Caddy's count still undercounts: Go's scheduler under
        # ptrace moves work onto threads strace misses (2.6 calls per proxied request, below
        # the floor of 4), so the summary leaves Caddy out.
        for tid in sorted(os.listdir("/proc/%d/task" % p), key=int):
            args += ["-p", tid]
    st = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    r = wrk(proc.port, SMALL, conns, seconds, None if conns > 64 else "1")
    st.send_signal(signal.SIGINT)
    st.wait(20)
    text = out.read_text()
    m = re.search(r"^-+\s.*\n\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*total", text, re.M)
    total = 0
    per = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and f[0].replace(".", "").isdigit() and f[-1] != "total":
            calls = int(f[3])
            per[f[-1]] = calls
            total += calls
    return total / max(1, r["requests"]), {k: round(v / max(1, r["requests"]), 2)
                                           for k, v in sorted(per.items(), key=lambda x: -x[1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--proxies", default="pyroute,nginx,haproxy,caddy")
    ap.add_argument("--conns", default="64,1000")
    ap.add_argument("--paths", default="%s,%s" % (SMALL, BIG))
    ap.add_argument("--idle", type=int, default=0)
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--unpinned", action="store_true", help="2 workers each, no pinning")
    ap.add_argument("--observability", action="store_true",
                    help="also pyroute with an access log and Prometheus on (and with router "
                         "labels): " + ", ".join(OBSERVABILITY))
    ap.add_argument("--baseline", metavar="REF",
                    help="also measure pyroute built from git commit REF (same run)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    names = args.proxies.split(",")
    for tool in [t for t in ("nginx", "haproxy", "caddy") if t in names] + ["nginx", "wrk",
                                                                             "taskset"]:
        if shutil.which(tool) is None:
            sys.exit("%s is missing: apt-get install nginx haproxy caddy wrk util-linux" % tool)
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-bench-"))
    tmp.chmod(0o755)            # the origin's nginx worker (www-data) reads files under it
    origin_port = free_port()
    origin = start_origin(tmp, origin_port)
    workers = 2 if args.unpinned else 1
    cpu = None if args.unpinned else "0"
    wrk_cpu = None if args.unpinned else "1"
    procs = {n: STARTERS[n](tmp, free_port(), origin_port, cpu, workers) for n in names}
    if args.observability:
        sink = OTLPSink(wrk_cpu)
        for n, extra in OBSERVABILITY.items():
            procs[n] = start_pyroute(tmp, free_port(), origin_port, cpu, workers, name=n,
                                     extra=extra, otlp=sink.port)
            names.append(n)
    if args.baseline:
        base_py, sha = build_baseline(args.baseline)
        base = "pyroute@%s" % sha[:7]
        procs[base] = start_pyroute(tmp, free_port(), origin_port, cpu, workers, python=base_py,
                                    name=base)
        names.append(base)
        if args.observability:
            # the before of an observability change: REF with the same defaults on, its
            # ratio against REF off in the same rounds
            for n in BASELINE_OBSERVABILITY:
                procs[base + n[7:]] = start_pyroute(tmp, free_port(), origin_port, cpu,
                                                    workers, python=base_py,
                                                    name=base + n[7:],
                                                    extra=OBSERVABILITY[n])
                names.append(base + n[7:])
    results = {}
    try:
        for n in names:
            check_proxied(procs[n])
        for rnd in range(args.rounds):
            for path in args.paths.split(","):
                for conns in map(int, args.conns.split(",")):
                    # each round starts with another proxy, and the proxies not measured
                    # are stopped (SIGSTOP) meanwhile: Caddy's Go runtime keeps working on
                    # CPU 0 for seconds after a heavy run (GC, scavenger), which otherwise
                    # fell on whichever proxy came next
                    for n in names[rnd % len(names):] + names[:rnd % len(names)]:
                        for other in names:
                            if other != n:
                                procs[other].signal(signal.SIGSTOP)
                        time.sleep(0.3)
                        try:
                            r = measure(procs[n], path, conns, args.duration, wrk_cpu)
                        finally:
                            for other in names:
                                if other != n:
                                    procs[other].signal(signal.SIGCONT)
                        results.setdefault((path, conns, n), []).append(r)
                        print("round %d %-8s %-6s c=%-5d %8.0f req/s p50 %.2fms p99 %.2fms "
                              "cpu %.1fus (user %.1f sys %.1f) err %s" % (
                                  rnd, n, path, conns, r["rps"], r["p50"], r["p99"], r["cpu_us"],
                                  r["user_us"], r["sys_us"], r["errors"]), flush=True)
        print("\nmedians (%d rounds, %ds each; %s)" % (
            args.rounds, args.duration, "2 workers unpinned" if args.unpinned else
            "1 worker pinned to CPU 0, wrk+origin on CPU 1"))
        print("%-7s %-6s %-8s %9s %8s %8s %8s %8s %8s" % ("path", "conns", "proxy", "req/s",
                                                          "p50 ms", "p99 ms", "cpu us", "user us",
                                                          "sys us"))
        for (path, conns, n), rs in results.items():
            med = {k: statistics.median(r[k] for r in rs)
                   for k in ("rps", "p50", "p99", "cpu_us", "user_us", "sys_us")}
            print("%-7s %-6d %-8s %9.0f %8.2f %8.2f %8.1f %8.1f %8.1f" % (
                path, conns, n, med["rps"], med["p50"], med["p99"], med["cpu_us"],
                med["user_us"], med["sys_us"]))
        if args.observability:
            # each round's variant against pyroute in the same round: the drift of a shared
            # machine (other jobs come and go) cancels out of the ratio
            print("\nCPU per request against pyroute measured in the same round (median of "
                  "the rounds' ratios; user us: median of the rounds' differences)")
            for (path, conns, n), rs in results.items():
                ref = n.split("+")[0]      # pyroute, or pyroute@REF for REF's variants
                base = results.get((path, conns, ref))
                if n == ref or base is None:
                    continue
                ratios = [r["cpu_us"] / b["cpu_us"] - 1 for r, b in zip(rs, base)]
                users = [r["user_us"] - b["user_us"] for r, b in zip(rs, base)]
                print("%-7s %-6d %-15s %+6.1f%%  (rounds: %s)  user %+5.1f us" % (
                    path, conns, n, 100 * statistics.median(ratios),
                    " ".join("%+.0f%%" % (100 * x) for x in ratios),
                    statistics.median(users)))
        if args.strace:
            print("\nsystem calls per keep-alive request (strace -c -f, 16 connections)")
            for n in names:
                if n == "caddy":
                    print("caddy    n/a   (not countable with strace, see strace_count)")
                    continue
                per, detail = strace_count(procs[n])
                print("%-8s %5.2f  %s" % (n, per, detail))
        if args.idle:
            print("\nmemory per idle keep-alive connection (%d connections)" % args.idle)
            for n in names:
                per, ok = idle_memory(procs[n], args.idle)
                print("%-8s %7.2f KiB  (%d connections held)" % (n, per / 1024, ok))
    finally:
        for p in procs.values():
            p.stop()
        origin.stop()


if __name__ == "__main__":
    main()
