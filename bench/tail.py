"""Where the tail at 1,000 connections comes from: one pinned worker each of pyroute, nginx and
HAProxy, under ``wrk -c1000`` (as bench/load.py), traced for a few seconds in the middle of the
run with ``strace --seccomp-bpf -f -T -tt -e trace=epoll_wait,accept4,accept,connect,close``
(only these calls stop the process; the rest runs at full speed) to count, per proxy:

- loop turns: how many events one ``epoll_wait`` returned (batch size) and how long the turn
  that followed took until the next ``epoll_wait`` (p50 / p99 / max): a request whose event is
  late in a long turn waits for the whole turn;
- accepts per turn (wrk's connections arrive once; a reconnect is churn);
- ``connect`` calls per second: upstream connections made anew, i.e. churn beyond the idle
  pool (pyroute: Traefik's maxIdleConnsPerHost 200; nginx: ``keepalive 256``; HAProxy:
  connection reuse), and ``close`` calls per second.

    .venv/bin/python bench/tail.py [--duration 10] [--trace 3] [--proxies pyroute,nginx,haproxy]

strace slows the traced calls, so the turn times are upper bounds, read side by side; the
latency figures come from an untraced wrk run just before (p50/p99 as wrk reports them).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402

LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\d+):(\d+):([\d.]+) (\w+)\((.*)\) = (-?\d+)")


def trace(proc, seconds, out):
    pids = proc.pids()
    argv = ["strace", "--seccomp-bpf", "-f", "-T", "-tt", "-o", out,
            "-e", "trace=epoll_wait,epoll_pwait,accept4,accept,connect,close"]
    for pid in pids:
        argv += ["-p", str(pid)]
    st = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    st.terminate()
    st.wait()


def analyse(path, seconds):
    turns, batches, accepts_per_turn = [], [], []
    connects = closes = accepts = 0
    last_return = {}   # pid -> time epoll_wait returned
    acc = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if "resumed>" in line or "unfinished" in line:
            continue   # a call split by another process's: rare with one worker
        m = LINE.match(line)
        if not m:
            continue
        pid, h, mi, s, name, args, ret = m.groups()
        t = int(h) * 3600 + int(mi) * 60 + float(s)
        dur = re.search(r"<([\d.]+)>$", line)
        dur = float(dur.group(1)) if dur else 0.0
        if name in ("epoll_wait", "epoll_pwait"):
            start = t
            if pid in last_return:
                turns.append(start - last_return[pid])
                accepts_per_turn.append(acc.get(pid, 0))
            acc[pid] = 0
            last_return[pid] = t + dur
            batches.append(int(ret))
        elif name in ("accept4", "accept") and int(ret) >= 0:
            accepts += 1
            acc[pid] = acc.get(pid, 0) + 1
        elif name == "connect":
            connects += 1
        elif name == "close":
            closes += 1

    def q(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0
    return {
        "turns": len(turns),
        "turn_p50_us": q(turns, 0.5) * 1e6, "turn_p99_us": q(turns, 0.99) * 1e6,
        "turn_max_ms": max(turns) * 1e3 if turns else 0.0,
        "batch_p50": q(batches, 0.5), "batch_p99": q(batches, 0.99),
        "batch_max": max(batches) if batches else 0,
        "accepts": accepts, "max_accepts_turn": max(accepts_per_turn) if accepts_per_turn else 0,
        "connects_s": connects / seconds, "closes_s": closes / seconds,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--trace", type=float, default=3.0)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--path", default=load.SMALL)
    ap.add_argument("--proxies", default="pyroute,nginx,haproxy")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-tail-"))
    origin = load.start_origin(tmp, load.free_port())
    procs = []
    try:
        for name in args.proxies.split(","):
            proc = load.STARTERS[name](tmp, load.free_port(), origin.port, "0")
            load.wait_port(proc.port)
            load.check_proxied(proc)
            procs.append(proc)
        rows = []
        for proc in procs:
            load.wrk(proc.port, args.path, args.conns, 2)          # warm: pools, caches
            plain = load.wrk(proc.port, args.path, args.conns, args.duration)
            out = str(tmp / ("%s.strace" % proc.name))
            result = {}
            t = threading.Thread(target=lambda: result.update(
                load.wrk(proc.port, args.path, args.conns, args.duration)))
            t.start()
            time.sleep(max(1.0, (args.duration - args.trace) / 2))
            trace(proc, args.trace, out)
            t.join()
            a = analyse(out, args.trace)
            rows.append((proc.name, plain, a))
            print("%-8s %7.0f req/s p50 %6.2f ms p99 %7.2f ms | turns %d: %5.0f us p50 %6.0f us "
                  "p99 %6.1f ms max | events/turn p50 %d p99 %d max %d | accepts %d (max %d a "
                  "turn) | connect %.0f/s close %.0f/s" % (
                      proc.name, plain["rps"], plain["p50"], plain["p99"], a["turns"],
                      a["turn_p50_us"], a["turn_p99_us"], a["turn_max_ms"], a["batch_p50"],
                      a["batch_p99"], a["batch_max"], a["accepts"], a["max_accepts_turn"],
                      a["connects_s"], a["closes_s"]), flush=True)
    finally:
        for proc in procs:
            proc.stop()
        origin.stop()


if __name__ == "__main__":
    main()
