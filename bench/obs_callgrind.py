"""Instructions per proxied request with observability off and on, counted by callgrind:
deterministic where bench/load.py's CPU times move by 5-10 us between rounds on the shared
2-core machine.

    .venv/bin/python bench/obs_callgrind.py [--requests 3000] [--variants off,obs,obs+rt]
        [--python PATH]   # another build's python (bench/load.py --baseline's venv)

pyroute (one worker) runs under ``valgrind --tool=callgrind --instr-atstart=no``: nothing
is counted (the master's and the worker's start-up work would swamp it; a toggle on
run_loop does not work: the master forks the worker from inside its own run_loop, so the
child starts with collection on and its toggle turns it off). A keep-alive client sends
GET /small through it to bench/load.py's nginx origin: a warm-up, then the worker's
instrumentation is turned on and its counters zeroed (callgrind_control -i on, -z),
``--requests`` requests, a dump (callgrind_control -d); the dump's total Ir over the
requests is the number: every user-space instruction of the worker, its threads included
(the access log writer), its timers too; the kernel's work never is (bench/load.py --strace
counts the system calls).
"""
import argparse
import glob
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402

VARIANTS = {"off": "", "obs": load.OBSERVABILITY["pyroute+obs"],
            "obs+rt": load.OBSERVABILITY["pyroute+obs+rt"],
            "log": load.OBSERVABILITY["pyroute+log"],
            "prom": load.OBSERVABILITY["pyroute+prom"]}
REQ = b"GET /small HTTP/1.1\r\nHost: bench.test\r\n\r\n"


def requests(port, n, conns=4):
    socks = [socket.create_connection(("127.0.0.1", port), 60) for _ in range(conns)]
    for i in range(0, n, conns):
        for s in socks:
            s.sendall(REQ)
        for s in socks:
            buf = b""
            while True:
                buf += s.recv(65536)
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                m = re.search(rb"(?i)content-length: *(\d+)", buf[:end])
                if len(buf) >= end + 4 + int(m.group(1)):
                    assert buf.startswith(b"HTTP/1.1 200"), buf[:100]
                    break
    for s in socks:
        s.close()


def run(variant, python, n, tmp, origin_port):
    out = tmp / ("cg-" + variant.replace("+", "_"))
    out.mkdir()
    wrapper = out / "python"
    wrapper.write_text("#!/bin/sh\nexec valgrind --tool=callgrind --trace-children=yes "
                       "--instr-atstart=no "
                       "--callgrind-out-file=%s/callgrind.out.%%p %s \"$@\"\n" % (out, python))
    wrapper.chmod(0o755)
    port = load.free_port()
    old = load.wait_port.__defaults__
    load.wait_port.__defaults__ = (600,)          # python's start-up under valgrind
    try:
        proc = load.start_pyroute(tmp, port, origin_port, None, 1, python=str(wrapper),
                                  name=variant, extra=VARIANTS[variant], otlp=0)
    finally:
        load.wait_port.__defaults__ = old
    workers = []
    try:
        requests(port, 200)                       # warm-up (first-use work, caches)
        time.sleep(1.5)                           # the metrics' first hand-off, the log's
        # the worker: the master's child that runs under callgrind (not ldconfig's)
        workers = [str(p) for p in load.children(proc.p.pid)
                   if b"pyroute" in open("/proc/%d/cmdline" % p, "rb").read()]
        for w in workers:
            for arg in ("-i", "-z"):
                r = subprocess.run(["callgrind_control", arg] + (["on"] if arg == "-i" else [])
                                   + [w], capture_output=True, text=True)
                if r.returncode:
                    print("callgrind_control %s %s: %s" % (arg, w, r.stdout + r.stderr))
        requests(port, n)
        for w in workers:
            subprocess.run(["callgrind_control", "-d", w], capture_output=True)
        time.sleep(1)
    finally:
        proc.stop()
    best = None
    for w in workers:
        # the worker's dump (callgrind.out.<pid>.1): its total since the zeroing
        for f in glob.glob(str(out / ("callgrind.out.%s.*" % w))):
            m = re.search(r"^totals: (\d+)", open(f).read(), re.M)
            if m and int(m.group(1)) > 0:
                best = int(m.group(1))
    if best is None:
        print("%s: no dump of the worker (%s) in %s" % (variant, workers, out), flush=True)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--variants", default="off,obs,obs+rt")
    ap.add_argument("--python", default=str(load.REPO / ".venv" / "bin" / "python"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-cg-"))
    tmp.chmod(0o755)
    origin_port = load.free_port()
    origin = load.start_origin(tmp, origin_port)
    got = {}
    try:
        for v in a.variants.split(","):
            ir = run(v, a.python, a.requests, tmp, origin_port)
            got[v] = ir
            print("%-8s %s Ir in the worker over %d requests: %.0f per request" % (
                v, ir, a.requests, ir / a.requests if ir else float("nan")), flush=True)
    finally:
        origin.stop()
    off = got.get("off")
    if off:
        for v, ir in got.items():
            if v != "off" and ir:
                print("%-8s %+6.1f%% instructions per request against off (%+.0f)" % (
                    v, 100.0 * (ir / off - 1), (ir - off) / a.requests))


if __name__ == "__main__":
    main()
