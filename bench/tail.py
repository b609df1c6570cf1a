"""Where the tail at 1,000 connections comes from: one pinned worker each of pyroute, nginx and
HAProxy under ``wrk -c1000`` (as bench/load.py), per proxy and round:

- latency (p50/p99) and requests/s of an untraced wrk run;
- pyroute's loop, from its own counters over that run (``PYROUTE_LOOP_STATS``, engine/conn.pyx
  run_loop): turn lengths (from epoll_wait's return to the next call) in wall time and in the
  worker's CPU time (the difference: other processes had the core), events per turn, and
  the sweep's length (timeouts, drain checks, metrics flush: every 0.5 s), the cyclic GC's
  pauses by generation -- a request whose
  event is late in a long turn waits for the whole turn;
- from a second run, traced a few seconds with ``strace --seccomp-bpf -f`` on accept, connect,
  close and shutdown only: upstream ``connect``s per second, i.e. connection churn beyond the
  idle pool (pyroute: Traefik's maxIdleConnsPerHost 200; nginx ``keepalive 256``; HAProxy
  reuse), closes, and accepts (wrk connects once: a later accept is churn).

    .venv/bin/python bench/tail.py [--duration 8] [--trace 3] [--rounds 2]
                                   [--proxies pyroute,nginx] [--max-events 512,64]

``--max-events`` runs pyroute once per epoll_wait batch size in the same rounds.
"""
import argparse
import json
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
            "-e", "trace=epoll_wait,epoll_pwait,accept4,accept,connect,close,shutdown"]
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
        elif name in ("close", "shutdown"):
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


def loop_stats(folder):
    """Sum of the pyroute workers' loop histograms so far (PYROUTE_LOOP_STATS files)."""
    total = None
    for f in Path(folder).glob("loop.*"):
        if f.suffix == ".tmp":
            continue
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if total is None:
            total = {k: [0] * len(v) for k, v in d.items()}
        for k, v in d.items():
            total[k] = [a + b for a, b in zip(total[k], v)]
    return total


def hist_quantiles(hist, qs, unit):
    """Quantiles of a bucketed histogram: log2 microsecond buckets (upper bound 2^b us) or
    buckets of 16 events (upper bound 16 b)."""
    n = sum(hist)
    out = []
    for q in qs:
        acc = 0
        for b, c in enumerate(hist):
            acc += c
            if n and acc >= q * n:
                out.append((2 ** b if unit == "us" else 16 * b))
                break
        else:
            out.append(0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--trace", type=float, default=3.0)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--path", default=load.SMALL)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--proxies", default="pyroute,nginx,haproxy")
    ap.add_argument("--max-events", default="",
                    help="comma-separated epoll_wait batch sizes: pyroute once per size "
                         "(named pyroute-evN), in the same rounds (PYROUTE_MAX_EVENTS)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-tail-"))
    tmp.chmod(0o755)            # the origin's nginx worker (www-data) reads files under it
    soft, hard = load.resource.getrlimit(load.resource.RLIMIT_NOFILE)
    load.resource.setrlimit(load.resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    origin = load.start_origin(tmp, load.free_port())
    procs = []
    stats = {}          # pyroute's name -> the folder its worker writes its loop stats to
    names = args.proxies.split(",")
    if args.max_events:
        names = [n for n in names if n != "pyroute"] + [
            "pyroute-ev%d" % int(v) for v in args.max_events.split(",")]
    try:
        for name in names:
            if name.startswith("pyroute"):
                stats[name] = tmp / ("loopstats-" + name)
                stats[name].mkdir()
                # read by the worker at start (pyroute/server/loop.py)
                os.environ["PYROUTE_LOOP_STATS"] = str(stats[name] / "loop")
                os.environ["PYROUTE_MAX_EVENTS"] = name[len("pyroute-ev"):] \
                    if name.startswith("pyroute-ev") else ""
                proc = load.start_pyroute(tmp, load.free_port(), origin.port, "0", 1, name=name)
            else:
                proc = load.STARTERS[name](tmp, load.free_port(), origin.port, "0", 1)
            load.wait_port(proc.port)
            load.check_proxied(proc)
            procs.append(proc)
        for rnd in range(args.rounds):
            for proc in procs:
                load.wrk(proc.port, args.path, args.conns, 2)          # warm: pools, caches
                sd = stats.get(proc.name)
                before = loop_stats(sd) if sd else None
                plain = load.wrk(proc.port, args.path, args.conns, args.duration)
                after = loop_stats(sd) if sd else None
                out = str(tmp / ("%s-%d.strace" % (proc.name, rnd)))
                t = threading.Thread(target=load.wrk, args=(proc.port, args.path, args.conns,
                                                            args.duration))
                t.start()
                time.sleep(max(1.0, (args.duration - args.trace) / 2))
                trace(proc, args.trace, out)
                t.join()
                a = analyse(out, args.trace)
                line = ("round %d %-13s %7.0f req/s p50 %6.2f ms p99 %7.2f ms | connect %4.0f/s "
                        "close %4.0f/s accepts %d" % (
                            rnd, proc.name, plain["rps"], plain["p50"], plain["p99"],
                            a["connects_s"], a["closes_s"], a["accepts"]))
                if before is not None and after is not None:
                    d = {k: [x - y for x, y in zip(after[k], before[k])] for k in after}
                    tq = hist_quantiles(d["turn_us_log2"], (0.5, 0.99, 1.0), "us")
                    cq = hist_quantiles(d["turn_cpu_us_log2"], (0.5, 0.99, 1.0), "us")
                    sq = hist_quantiles(d["sweep_us_log2"], (0.5, 1.0), "us")
                    eq = hist_quantiles(d["events_by16"], (0.5, 0.99), "ev")
                    line += (" | turns %d: wall <=%d us p50, <=%d us p99, <=%d us max; CPU "
                             "<=%d/%d/%d us; events/turn <=%d p50 <=%d p99; sweeps %d: <=%d us "
                             "p50 <=%d us max" % (
                                 sum(d["turn_us_log2"]), tq[0], tq[1], tq[2], cq[0], cq[1],
                                 cq[2], eq[0], eq[1], sum(d["sweep_us_log2"]), sq[0], sq[1]))
                    for g in (0, 1, 2):
                        h = d["gc%d_us_log2" % g]
                        gq = hist_quantiles(h, (0.5, 1.0), "us")
                        line += "; gc%d %d: <=%d us p50 <=%d us max" % (g, sum(h), gq[0], gq[1])
                print(line, flush=True)
    finally:
        for proc in procs:
            proc.stop()
        origin.stop()


if __name__ == "__main__":
    main()
