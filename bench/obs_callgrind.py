"""Instructions per proxied request with observability off and on, counted by callgrind:
deterministic where bench/load.py's CPU times move by 5-10 us between rounds on the shared
2-core machine.

    .venv/bin/python bench/obs_callgrind.py [--requests 3000] [--variants off,obs,obs+rt]
        [--python PATH]   # another build's python (bench/load.py --baseline's venv)

pyroute (one worker) runs under ``valgrind --tool=callgrind --collect-atstart=no
--toggle-collect=*run_loop*``: only what runs inside the worker's dispatch loop is counted
(the master's and the worker's start-up work would swamp it). A keep-alive client sends
GET /small through it to bench/load.py's nginx origin: a warm-up, then the counters are
zeroed (callgrind_control -z), ``--requests`` requests, a dump (callgrind_control -d); the
dump's total Ir over the requests is the number. The access log writer's thread runs outside
run_loop: its instructions (the write(2) calls' user side) are not in the count; the kernel's
work never is (see bench/load.py --strace for the system calls).
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
                       "--collect-atstart=no '--toggle-collect=*run_loop*' "
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
    try:
        requests(port, 200)                       # warm-up (first-use work, caches)
        time.sleep(1.5)                           # the metrics' first hand-off, the log's
        subprocess.run(["callgrind_control", "-z"], capture_output=True)
        requests(port, n)
        subprocess.run(["callgrind_control", "-d"], capture_output=True)
        time.sleep(1)
    finally:
        proc.stop()
    best = None
    for f in glob.glob(str(out / "callgrind.out.*")):
        # the dumps (.N suffix) of the process that served: the largest total after zeroing
        if not re.search(r"\.\d+\.\d+$", f):
            continue
        text = open(f).read()
        m = re.search(r"^totals: (\d+)", text, re.M) or re.search(r"^summary: (\d+)", text,
                                                                      re.M)
        if m and (best is None or int(m.group(1)) > best):
            best = int(m.group(1))
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
            print("%-8s %s Ir in run_loop over %d requests: %.0f per request" % (
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
