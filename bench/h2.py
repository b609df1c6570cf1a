"""HTTP/2 load run: pyroute (h2c) beside nginx (``http2 on``) as h2c reverse
proxies to the same HTTP/1.1 origin, in the same run.

    .venv/bin/python bench/h2.py [--rounds 3] [--requests 20000] [--streams 1,10,100]
                                 [--baseline-python /work/main/.venv/bin/python]

The origin is bench/load.py's (nginx, one worker, /small and /16k). Each proxy runs one worker
pinned to CPU 0; h2load and the origin share CPU 1. Rounds are interleaved (every proxy once
per round for each case) and medians reported: requests/s and the proxy's CPU time per request
(utime + stime of its processes over the run, divided by the requests h2load completed).
``--baseline-python PY`` adds ``pyroute@base``: pyroute as that interpreter's environment
imports it (another checkout's .venv, built), in the same interleaved rounds, so a change is
measured against the code before it on the same noisy machine. Its entry point gets
``http2: {enabled: true}`` (builds before HTTP/2 was on by default need it; later ones only
warn). Needs nginx and h2load (Debian: nginx, nghttp2-client).
"""
import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import Proc, children, cpu_of, free_port, start_origin, start_pyroute  # noqa: E402


def _nginx_h2_syntax():
    # nginx >= 1.25.1: "http2 on;" in the server; before: "listen ... http2" (h2c too)
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    if m and tuple(map(int, m.groups())) >= (1, 25, 1):
        return ("", " http2 on;")
    return ("http2", "")


NGINX_H2 = _nginx_h2_syntax() if shutil.which("nginx") else ("", "")


def start_nginx_h2(tmp, port, origin, cpu):
    conf = tmp / ("nginx-h2-%d.conf" % port)
    conf.write_text("""
worker_processes 1; daemon off; pid %s/nginx-h2-%d.pid; error_log /dev/null crit;
events { worker_connections 20000; multi_accept on; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  http2_max_concurrent_streams 250;
  upstream origin { server 127.0.0.1:%d; keepalive 256; }
  server { listen 127.0.0.1:%d backlog=4096 %s; server_name bench.test;%s
    location / { proxy_pass http://origin; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host; } } }
""" % (tmp, port, origin, port, *NGINX_H2))
    return Proc("nginx", ["nginx", "-c", str(conf)], port, cpu,
                worker_pids=lambda pid: children(pid))


def start_pyroute_h2(tmp, port, origin, cpu, python=None, name="pyroute", h2=""):
    proc = start_pyroute(tmp, port, origin, cpu, python=python, name=name)
    # the same config as bench/load.py's, with Traefik's h2 stream limit (restarted with it)
    proc.stop()
    d = tmp / ("pyroute-%d" % port)
    static = d / "static.yaml"
    static.write_text(static.read_text().replace(
        "    transport:", "    http2: {%smaxConcurrentStreams: 250}\n"
        "    transport:" % h2, 1))
    py = python or str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python")
    return Proc(name, [py, "-m", "pyroute", "run", "-c", str(static), str(d / "m.yaml"),
                       "-w", "1"], port, cpu, worker_pids=lambda pid: children(pid),
                cwd=str(d))


def h2load(port, path, requests, streams, conns=1, cpu="1"):
    cmd = ["taskset", "-c", cpu, "h2load", "-n", str(requests), "-c", str(conns),
           "-m", str(streams), "-H", ":authority: bench.test",
           "http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    done = int(re.search(r"(\d+) succeeded", out).group(1))
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    ok = re.search(r"status codes: (\d+) 2xx", out)
    return {"requests": done, "rps": rps, "ok": int(ok.group(1)) if ok else 0}


def measure(proc, path, requests, streams):
    pids = proc.pids()
    u0, s0 = cpu_of(pids)
    r = h2load(proc.port, path, requests, streams)
    u1, s1 = cpu_of(pids)
    n = max(1, r["requests"])
    r["cpu_us"] = ((u1 - u0) + (s1 - s0)) / n * 1e6
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--streams", default="1,10,100")
    ap.add_argument("--baseline-python", metavar="PY",
                    help="also run pyroute@base: pyroute as imported by this interpreter")
    args = ap.parse_args()
    for tool in ("nginx", "h2load", "taskset"):
        if not shutil.which(tool):
            sys.exit("%s is missing: apt-get install nginx nghttp2-client util-linux" % tool)
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-h2-bench-"))
    tmp.chmod(0o755)
    origin_port = free_port()
    origin = start_origin(tmp, origin_port)
    procs = [start_pyroute_h2(tmp, free_port(), origin_port, "0")]
    if args.baseline_python:
        procs.append(start_pyroute_h2(tmp, free_port(), origin_port, "0",
                                      python=args.baseline_python, name="pyroute@base",
                                      h2="enabled: true, "))
    procs.append(start_nginx_h2(tmp, free_port(), origin_port, "0"))
    cases = [(path, int(m)) for path in ("/small", "/16k") for m in args.streams.split(",")]
    results = {}
    try:
        for proc in procs:       # every proxy answers over h2 with the origin's body
            r = h2load(proc.port, "/small", 10, 1)
            if r["ok"] != 10:
                sys.exit("%s does not proxy h2c requests" % proc.name)
        for _ in range(args.rounds):
            for path, m in cases:
                for proc in procs:
                    n = args.requests if m > 1 else args.requests // 4
                    r = measure(proc, path, n, m)
                    results.setdefault((path, m, proc.name), []).append(r)
    finally:
        for proc in procs:
            proc.stop()
        origin.stop()
    print("%-6s %7s  %-12s %10s %12s %9s" % ("path", "streams", "proxy", "req/s",
                                              "CPU us/req", "vs nginx"))
    for path, m in cases:
        ngx = statistics.median(r["cpu_us"] for r in results[(path, m, "nginx")])
        for proc in procs:
            rs = results[(path, m, proc.name)]
            cpu = statistics.median(r["cpu_us"] for r in rs)
            print("%-6s %7d  %-12s %10.0f %12.1f %8.2fx" % (
                path, m, proc.name, statistics.median(r["rps"] for r in rs), cpu, cpu / ngx))


if __name__ == "__main__":
    main()
