"""Tracing's cost: CPU per proxied request of one pinned pyroute worker, tracing off (no
``tracing`` section), ``sampleRate: 1.0`` (every request's spans built and exported over
OTLP/HTTP to a sink in this process) and ``sampleRate: 0.0`` (decided, traceparent injected,
no span built), in the same interleaved rounds.

    .venv/bin/python bench/tracing.py [--rounds 3] [--duration 4] [--conns 16]

Reuses bench/load.py's origin (nginx), wrk and CPU accounting: pyroute's worker on CPU 0, the
origin, wrk and the OTLP sink on CPU 1; the worker's CPU includes the SDK's export thread.
Medians of the rounds; on a shared machine quote them as rough.
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402


class Sink:
    """An OTLP/HTTP endpoint that accepts and drops every export (counts the bytes)."""

    def __init__(self):
        outer = self
        self.bytes = 0

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers["Content-Length"])
                outer.bytes += len(self.rfile.read(n))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--conns", type=int, default=16)
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})          # the sink's thread beside the origin and wrk
    sink = Sink()
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-tracing-bench-"))
    os.chmod(tmp, 0o755)                  # nginx's worker reads the origin's files
    origin_port = load.free_port()
    origin = load.start_origin(tmp, origin_port)
    tracing = "tracing:\n  sampleRate: %s\n  otlp: {http: {endpoint: http://127.0.0.1:%d}}\n"
    variants = {"off": "", "sampled-1.0": tracing % ("1.0", sink.port),
                "unsampled-0.0": tracing % ("0.0", sink.port)}
    procs = {}
    try:
        for name, extra in variants.items():
            procs[name] = load.start_pyroute(tmp, load.free_port(), origin_port, "0",
                                             name=name, static_extra=extra)
        results = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, proc in procs.items():
                load.wrk(proc.port, load.SMALL, args.conns, 1)     # warm-up
                u0, s0 = load.cpu_of(proc.pids())
                r = load.wrk(proc.port, load.SMALL, args.conns, args.duration)
                u1, s1 = load.cpu_of(proc.pids())
                results[name].append((r["rps"], (u1 - u0 + s1 - s0) / r["requests"] * 1e6,
                                      r["errors"]))
        base = statistics.median(c for _, c, _ in results["off"])
        print("%-14s %10s %14s %8s" % ("variant", "req/s", "CPU us/req", "vs off"))
        for name, rows in results.items():
            rps = statistics.median(r for r, _, _ in rows)
            cpu = statistics.median(c for _, c, _ in rows)
            print("%-14s %10.0f %14.1f %+7.0f%%  (non-2xx: %d)"
                  % (name, rps, cpu, (cpu / base - 1) * 100, sum(e for _, _, e in rows)))
        print("OTLP bytes received by the sink: %d" % sink.bytes)
    finally:
        for proc in procs.values():
            proc.stop()
        origin.stop()


if __name__ == "__main__":
    main()
