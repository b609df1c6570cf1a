"""h2c to a backend: pyroute's CPU per request when its backend is reached over HTTP/2 with
prior knowledge (``scheme: h2c``, engine/h2up.pyx) against the same backend over HTTP/1.1,
and nginx as the HTTP/1.1 peer in the same run (its ``proxy_pass`` speaks only HTTP/1.1
upstream).

    .venv/bin/python bench/h2c_backend.py [--rounds 3] [--seconds 5] [--conns 1,16]
                                          [--baseline-python /work/main/.venv/bin/python]

One nginx origin (bench/load.py's files) listens twice: HTTP/1.1 and h2c (``listen ...
http2``). wrk (HTTP/1.1 keep-alive clients) drives each proxy; each proxy runs one worker
pinned to CPU 0, wrk and the origin share CPU 1. Rounds are interleaved; medians of
requests/s and of the proxy's CPU time per request (utime + stime over the run / requests).
``--baseline-python PY`` adds ``pyroute-h2c@base``: the h2c case as that interpreter's
environment (another checkout, built) runs it, in the same interleaved rounds.
Needs nginx, wrk, taskset (Debian: nginx, wrk, util-linux).
"""
import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from h2 import NGINX_H2  # noqa: E402
from load import (Proc, check_proxied, children, free_port, measure,  # noqa: E402
                  start_nginx, start_pyroute)


def start_origins(tmp, h1_port, h2_port):
    root = tmp / "www"
    root.mkdir(mode=0o755)
    (root / "small").write_text("hello from origin\n")
    (root / "16k").write_bytes(b"x" * 16384)
    conf = tmp / "origin.conf"
    conf.write_text("""
worker_processes 1; daemon off; pid %s/origin.pid; error_log /dev/null crit;
events { worker_connections 20000; multi_accept on; }
http { access_log off; keepalive_requests 1000000; http2_max_concurrent_streams 250;
  server { listen 127.0.0.1:%d reuseport backlog=4096; root %s;
    location / { default_type text/plain; } }
  server { listen 127.0.0.1:%d backlog=4096 %s; root %s;%s
    location / { default_type text/plain; } } }
""" % (tmp, h1_port, root, h2_port, NGINX_H2[0], root, NGINX_H2[1]))
    return Proc("origin", ["nginx", "-c", str(conf)], h1_port, "1")


def start_pyroute_h2c(tmp, port, origin, cpu, python=None, name="pyroute-h2c"):
    proc = start_pyroute(tmp, port, origin, cpu, python=python, name=name)
    proc.stop()
    m = tmp / ("pyroute-%d" % port) / "m.yaml"
    m.write_text(m.read_text().replace("services: [{name: origin, port: 80}]",
                                       "services: [{name: origin, port: 80, scheme: h2c}]"))
    d = tmp / ("pyroute-%d" % port)
    py = python or str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python")
    return Proc(name, [py, "-m", "pyroute", "run", "-c", str(d / "static.yaml"),
                                str(m), "-w", "1"], port, cpu,
                worker_pids=lambda pid: children(pid), cwd=str(d))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", default="1,16")
    ap.add_argument("--baseline-python", metavar="PY",
                    help="also run pyroute-h2c@base: the h2c case as this interpreter runs it")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit("%s is missing: apt-get install nginx wrk util-linux" % tool)
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-h2c-bench-"))
    tmp.chmod(0o755)
    h1, h2 = free_port(), free_port()
    origin = start_origins(tmp, h1, h2)
    procs = [start_pyroute(tmp, free_port(), h1, "0", name="pyroute-h1"),
             start_pyroute_h2c(tmp, free_port(), h2, "0")]
    if args.baseline_python:
        procs.append(start_pyroute_h2c(tmp, free_port(), h2, "0", python=args.baseline_python,
                                       name="pyroute-h2c@base"))
    procs.append(start_nginx(tmp, free_port(), h1, "0"))
    cases = [(path, int(c)) for path in ("/small", "/16k") for c in args.conns.split(",")]
    results = {}
    try:
        for proc in procs:
            check_proxied(proc)
        for _ in range(args.rounds):
            for path, c in cases:
                for proc in procs:
                    r = measure(proc, path, c, args.seconds, "1")
                    results.setdefault((path, c, proc.name), []).append(r)
    finally:
        for proc in procs:
            proc.stop()
        origin.stop()
    print("%-6s %5s  %-16s %10s %12s %8s" % ("path", "conns", "proxy", "req/s", "CPU us/req",
                                             "errors"))
    for path, c in cases:
        for proc in procs:
            rs = results[(path, c, proc.name)]
            print("%-6s %5d  %-16s %10.0f %12.1f %8d" % (
                path, c, proc.name, statistics.median(r["rps"] for r in rs),
                statistics.median(r["cpu_us"] for r in rs), sum(r["errors"] for r in rs)))


if __name__ == "__main__":
    main()
