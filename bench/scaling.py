#!/usr/bin/env python3
"""Multi-worker scaling: pyroute vs nginx as reverse proxies, 1 -> 8 workers.

Made for a machine with >= 16 cores (the lent 16-core machine): proxy workers pinned to cores
0..N-1, the origin (nginx, 4 workers, `return 200`) on 8..11, wrk (4 threads) on 12..15, so the
proxy is the bottleneck. On a smaller machine it shrinks the layout and says so. For each worker
count, pyroute and nginx are measured in interleaved rounds; we report the median requests/s,
p50/p99 latency and the proxy's CPU time per request (utime+stime of the proxy's processes from
/proc, divided by the requests wrk completed).

    python3 bench/scaling.py [--workers 1,2,4,8] [--duration 5] [--rounds 3] [--nginx PATH] [--wrk PATH]
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from load import cpu_of, wait_port  # noqa: E402  (bench/ is a folder of scripts, not a package)
ORIGIN_PORT, NGINX_PORT, PYROUTE_PORT = 19001, 19080, 19081


def nginx_conf(tmp, workers, body):
    common = ("pid {t}/{n}.pid; error_log {t}/{n}.err warn; daemon off; master_process on;\n"
              "events {{ worker_connections 20000; }}\n")
    temp = " ".join("%s_temp_path %s/%s;" % (k, tmp, k) for k in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    origin = common.format(t=tmp, n="origin") + (
        "worker_processes 4;\nhttp { access_log off; keepalive_requests 10000000; %s\n"
        "  server { listen 127.0.0.1:%d reuseport backlog=4096;\n"
        "    location / { return 200 '%s'; } } }\n" % (temp, ORIGIN_PORT, body))
    proxy = common.format(t=tmp, n="proxy") + (
        "worker_processes %d;\nhttp { access_log off; keepalive_requests 10000000; %s\n"
        "  upstream origin { server 127.0.0.1:%d; keepalive 256; }\n"
        "  server { listen 127.0.0.1:%d reuseport backlog=4096;\n"
        "    location / { proxy_pass http://origin; proxy_http_version 1.1;\n"
        "      proxy_set_header Connection ''; proxy_set_header Host $host; } } }\n"
        % (workers, temp, ORIGIN_PORT, NGINX_PORT))
    for name, text in (("origin", origin), ("proxy", proxy)):
        with open(os.path.join(tmp, name + ".conf"), "w") as f:
            f.write(text)


def tree_pids(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return pids


def parse_wrk(out):
    def lat(label):
        m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % label, out, re.M)
        if not m:
            return None
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"requests": reqs, "rps": rps, "p50_us": lat("50%"), "p99_us": lat("99%"),
            "non2xx": int(errs.group(1)) if errs else 0, "socket_errors": sock.group(1) if sock else ""}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns-per-worker", type=int, default=64)
    ap.add_argument("--nginx", default="nginx")
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    ncpu = os.cpu_count()
    counts = [int(x) for x in a.workers.split(",")]
    if ncpu >= 16:
        proxy_cores = lambda n: "0-%d" % (n - 1)
        origin_cores, wrk_cores, wrk_threads = "8-11", "12-15", 4
    else:
        counts = [n for n in counts if n <= max(1, ncpu // 2)]
        proxy_cores = lambda n: "0-%d" % (n - 1)
        origin_cores = wrk_cores = "%d-%d" % (max(counts), ncpu - 1)
        wrk_threads = 1
        print("note: %d cores only; layout shrunk (proxy 0..N-1, origin+wrk on the rest)" % ncpu)
    tmp = tempfile.mkdtemp(prefix="pyroute-scaling-")
    procs = []

    def start(cmd, cores, **kw):
        p = subprocess.Popen(["taskset", "-c", cores] + cmd, stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(tmp, "%d.log" % len(procs)), "w"),
                             start_new_session=True, **kw)
        procs.append(p)
        return p

    def stop(p):
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(10)
        except Exception:
            os.killpg(p.pid, signal.SIGKILL)

    results = []
    try:
        nginx_conf(tmp, 1, "hello from origin\\n")
        origin = start([a.nginx, "-p", tmp, "-c", os.path.join(tmp, "origin.conf")], origin_cores)
        wait_port(ORIGIN_PORT)
        for n in counts:
            rows = {"pyroute": [], "nginx": []}
            for rnd in range(a.rounds):
                for name in (("pyroute", "nginx") if rnd % 2 == 0 else ("nginx", "pyroute")):
                    if name == "nginx":
                        nginx_conf(tmp, n, "hello from origin\\n")
                        p = start([a.nginx, "-p", tmp, "-c", os.path.join(tmp, "proxy.conf")],
                                  proxy_cores(n))
                        port = NGINX_PORT
                    else:
                        p = start([a.python, "-m", "pyroute", "run", "-c",
                                   os.path.join(HERE, "scaling", "static.yaml"),
                                   os.path.join(HERE, "scaling", "manifests.yaml"),
                                   "--workers", str(n)], proxy_cores(n))
                        port = PYROUTE_PORT
                    wait_port(port)
                    subprocess.run(["taskset", "-c", wrk_cores, a.wrk, "-t%d" % wrk_threads,
                                    "-c%d" % (a.conns_per_worker * n), "-d1s",
                                    "-H", "Host: bench.local", "http://127.0.0.1:%d/" % port],
                                   capture_output=True)          # warm-up: pools, caches
                    pids = tree_pids(p.pid)
                    t0 = sum(cpu_of(pids))
                    out = subprocess.run(
                        ["taskset", "-c", wrk_cores, a.wrk, "-t%d" % wrk_threads,
                         "-c%d" % (a.conns_per_worker * n), "-d%ds" % a.duration, "--latency",
                         "-H", "Host: bench.local", "http://127.0.0.1:%d/" % port],
                        capture_output=True, text=True).stdout
                    t1 = sum(cpu_of(pids))
                    stop(p)
                    r = parse_wrk(out)
                    r["cpu_us_per_req"] = (t1 - t0) * 1e6 / max(1, r["requests"])
                    rows[name].append(r)
            for name, rs in rows.items():
                med = {k: statistics.median(r[k] for r in rs)
                       for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req") if rs[0][k] is not None}
                med.update(proxy=name, workers=n, non2xx=sum(r["non2xx"] for r in rs),
                           socket_errors=[r["socket_errors"] for r in rs if r["socket_errors"]])
                results.append(med)
                print("%-8s workers=%d  rps=%9.0f  p50=%7.0fus  p99=%7.0fus  cpu/req=%6.1fus  non2xx=%d %s"
                      % (name, n, med["rps"], med.get("p50_us", 0), med.get("p99_us", 0),
                         med["cpu_us_per_req"], med["non2xx"], med["socket_errors"]), flush=True)
        stop(origin)
    except Exception:
        for log in sorted(os.listdir(tmp)):
            if log.endswith((".log", ".err")):
                with open(os.path.join(tmp, log), errors="replace") as f:
                    print("--- %s\n%s" % (log, f.read()[-3000:]))
        raise
    finally:
        for p in procs:
            if p.poll() is None:
                stop(p)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
