"""What a new backend connection costs the worker: an IP literal (dialed at once) against a
host name (looked up per connection in pyroute.proxy.dns's threads, the answer handed back
through the loop's eventfd), CPU time per connection of the whole process (the lookup threads
included) and, with ``--strace``, system calls per connection.

    .venv/bin/python bench/dial.py [--n 2000] [--rounds 3] [--name localhost]

Each connection is made, driven by the worker's Loop until connected, and closed; a thread
accepts on the backend side. Rounds alternate the two kinds (same run)."""
import argparse
import collections
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pyroute._engine.conn import Env, UpstreamConn  # noqa: E402
from pyroute.proxy.snapshot import DEFAULT_DIAL_TIMEOUT, Pools  # noqa: E402
from pyroute.server.loop import Loop  # noqa: E402

TRANSPORT = (10, DEFAULT_DIAL_TIMEOUT, 0.0, 90.0)


def backend():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)

    def accept():
        # kept open a while: a backend closing at once would end the connection before the
        # dialer saw it connected
        held = collections.deque()
        while True:
            try:
                c, _ = lst.accept()
            except OSError:
                return
            held.append(c)
            if len(held) > 256:
                held.popleft().close()
    threading.Thread(target=accept, daemon=True).start()
    return lst


def run(env, pool, n):
    loop = env.loop
    cpu0 = os.times()
    t0 = time.monotonic()
    for _ in range(n):
        loop.now = env.now = time.monotonic()
        up = UpstreamConn(env, pool)
        while up.connecting and not up.closed:
            for fd, ev in loop.ep.poll(1.0):
                h = loop.handlers.get(fd)
                if h is not None:
                    h.on_event(ev)
        assert not up.closed, "dial failed"
        up.close()
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return cpu / n * 1e6, (time.monotonic() - t0) / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--name", default="localhost")
    ap.add_argument("--only", choices=["ip", "name"])
    args = ap.parse_args()
    lst = backend()
    port = lst.getsockname()[1]
    loop = Loop()
    pools = Pools()
    env = Env(loop, pools)
    kinds = {"ip": pools.get("127.0.0.1", port, TRANSPORT),
             "name": pools.get(args.name, port, TRANSPORT)}
    run(env, kinds["ip"], 100)        # warm up (the lookup threads start on first use)
    run(env, kinds["name"], 100)
    results = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind, pool in kinds.items():
            if args.only and kind != args.only:
                continue
            results[kind].append(run(env, pool, args.n))
    for kind, rows in results.items():
        if rows:
            cpu = sorted(r[0] for r in rows)[len(rows) // 2]
            wall = sorted(r[1] for r in rows)[len(rows) // 2]
            print("%-5s new connection: %.1f us CPU, %.1f us wall (median of %d x %d)"
                  % (kind, cpu, wall, len(rows), args.n))
    lst.close()


if __name__ == "__main__":
    main()
