"""User-space instructions per proxied keep-alive request, counted by callgrind: a number that
does not move with the load other processes put on the machine (CPU time does, by 20-50 %).

    .venv/bin/python bench/callgrind.py [--paths /small,/16k] [--requests 100] [--conns 16]
                                        [--baseline REF] [--top 25]

One pyroute worker runs under ``valgrind --tool=callgrind``, collecting only inside the worker's
event loop (``run_loop``: what runs per event, not start-up or config load) against bench/load.py's
origin (nginx) and route. A warm-up (20 requests per connection) fills the pools, the counters are
zeroed, then ``--conns`` keep-alive connections make ``--requests`` requests each, one at a time
(an exact count, unlike wrk's timed runs); the dump's total divided by the requests is the number.
Each request carries ``Host`` and ``User-Agent``, as wrk's do. ``--top`` lists the functions with
the most instructions of their own (self cost) per request. ``--baseline REF``: the same for
pyroute as built from git commit REF (bench/load.py's cached build), in the same run.
Needs valgrind and nginx on PATH. Under valgrind a request takes ~1 ms: 1,600 requests ~2 min.
"""
import argparse
import collections
import glob
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402


def client(port, conns, n, path):
    """``conns`` keep-alive connections, ``n`` requests each, one outstanding per connection;
    every answer must be the origin's 200 with its whole Content-Length body."""
    req = b"GET %s HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: wrk\r\n\r\n" % path.encode()
    sel = selectors.DefaultSelector()
    state = {}
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), 30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        s.send(req)
        state[s] = [1, b""]
        sel.register(s, selectors.EVENT_READ)
    done = 0
    while state:
        events = sel.select(60)
        if not events:
            raise RuntimeError("no answer in 60 s")
        for key, _ in events:
            s = key.fileobj
            st = state[s]
            data = s.recv(65536)
            if not data:
                raise RuntimeError("the proxy closed a keep-alive connection")
            st[1] += data
            buf = st[1]
            h = buf.find(b"\r\n\r\n")
            if h < 0:
                continue
            if not buf.startswith(b"HTTP/1.1 200"):
                raise RuntimeError("not a 200: %r" % buf[:200])
            cl = int(re.search(rb"(?im)^content-length:\s*(\d+)", buf[:h]).group(1))
            if len(buf) < h + 4 + cl:
                continue
            st[1] = buf[h + 4 + cl:]
            done += 1
            if st[0] < n:
                st[0] += 1
                s.send(req)
            else:
                sel.unregister(s)
                s.close()
                del state[s]
    return done


def parse(path):
    """Self cost per function of a callgrind dump (uncompressed names): {fn: instructions}."""
    own = collections.Counter()
    fn = None
    after_calls = False
    for line in open(path, errors="replace"):
        if line.startswith("fn="):
            fn = line[3:].strip()
        elif line.startswith("calls="):
            after_calls = True            # the next cost line is the callee's inclusive cost
        elif line[:1].isdigit() or line[:1] in "+-*":
            parts = line.split()
            if len(parts) >= 2:
                if after_calls:
                    after_calls = False
                elif fn:
                    own[fn] += int(parts[1])
    return own


def measure(python, tmp, origin, path, conns, n):
    port = load.free_port()
    d = load.pyroute_config(tmp, port, origin)
    out = Path(tempfile.mkdtemp(prefix="cg-", dir=tmp))
    p = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--trace-children=yes", "--collect-atstart=no",
         "--compress-strings=no", "--compress-pos=no",
         "--toggle-collect=__pyx_pf_7pyroute_7_engine_4conn_*run_loop*",
         "--callgrind-out-file=%s/callgrind.out.%%p" % out,
         python, "-m", "pyroute", "run", "-c", str(d / "static.yaml"), str(d / "m.yaml"),
         "-w", "1"],
        cwd=str(d), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=os.setsid)
    try:
        load.wait_port(port, timeout=600)      # valgrind starts Python in a minute or more
        time.sleep(2)
        client(port, conns, 20, path)
        # every callgrind process (master and worker) is zeroed and dumped; the worker's dump
        # is the one whose loop collected
        subprocess.run(["callgrind_control", "-z"], capture_output=True)
        done = client(port, conns, n, path)
        subprocess.run(["callgrind_control", "-d", "measured"], capture_output=True)
        time.sleep(1)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(60)
    best = None
    for f in glob.glob(str(out / "callgrind.out.*")):
        text = open(f, errors="replace").read(4000)
        m = re.search(r"^summary:\s+(\d+)", text, re.M)
        if m and "measured" in text and (best is None or int(m.group(1)) > best[1]):
            best = (f, int(m.group(1)))
    if best is None:
        raise RuntimeError("no callgrind dump of the worker in %s" % out)
    return best[1] / done, parse(best[0]), done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", default="%s,%s" % (load.SMALL, load.BIG))
    ap.add_argument("--requests", type=int, default=100, help="per connection")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--baseline", metavar="REF")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-cg-"))
    tmp.chmod(0o755)
    origin_port = load.free_port()
    origin = load.start_origin(tmp, origin_port)
    pythons = [("pyroute", str(load.REPO / ".venv" / "bin" / "python"))]
    if args.baseline:
        py, sha = load.build_baseline(args.baseline)
        pythons.append(("pyroute@%s" % sha[:7], py))
    try:
        for path in args.paths.split(","):
            for name, py in pythons:
                per, own, done = measure(py, tmp, origin_port, path, args.conns, args.requests)
                print("%-16s %-6s %8.0f instructions per request (%d requests, %d connections)"
                      % (name, path, per, done, args.conns), flush=True)
                total = sum(own.values())
                for fn, c in own.most_common(args.top):
                    print("    %7.0f %5.1f%%  %s" % (c / done, 100.0 * c / total, fn[:100]))
    finally:
        origin.stop()


if __name__ == "__main__":
    main()
