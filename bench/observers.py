"""What each observer costs per exchange, called directly (no sockets): the numbers behind
bench/load.py --observability, without the load run's noise (on a shared 2-core machine a
load run's CPU per request moves by 5-10 us between rounds; these move by tenths).

    .venv/bin/python bench/observers.py [--calls 100000] [--repeats 5]

One finished exchange of the load run's shape (GET /small through a router to one server,
a Request the engine's parser read, the engine's Exchange): each observer is called
``--calls`` times per repeat, pinned to CPU 0; the median of the repeats, in ns of this
thread's CPU time per call (CPU time, not wall time: on a shared machine the wall clock counts
the other jobs' turns on the core too).
- access log: engine/accesslog.pyx's Formatter (JSON, common) and the Python reference it
  replaced (pyroute/observability/accesslog_ref.py, the json.dumps line);
- Prometheus: pyroute.observability.metrics.Recorder.observe (the worker's per-request part;
  router labels are added when the master merges, so the worker does the same work);
- tracing at sampleRate 0: engine/tracectx.pyx's on_request, and the Python step it
  replaced (copied below as it was).
"""
import argparse
import os
import random
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyroute._engine.accesslog import Formatter  # noqa: E402
from pyroute._engine.exchange import Exchange  # noqa: E402
from pyroute._engine.http1 import RequestParser  # noqa: E402
from pyroute.observability.accesslog_ref import ReferenceFormatter  # noqa: E402
from pyroute.observability.metrics import Recorder, route_obs  # noqa: E402
from pyroute.observability import tracing  # noqa: E402
from pyroute.proxy.snapshot import Route, Server  # noqa: E402
from pyroute.static import AccessLog, Metrics, Prometheus  # noqa: E402

HEAD = (b"GET /small HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: wrk\r\n"
        b"Accept: */*\r\n\r\n")


def exchange():
    ex = Exchange.__new__(Exchange)
    ex.req = RequestParser().parse(bytearray(HEAD))
    ex.path = ex.req.path
    ex.conn = types.SimpleNamespace(remote_port=40000, sock=None)
    ex.ep = types.SimpleNamespace(name="web", access_logged=True, metered=True)
    ex.remote_ip = b"127.0.0.1"
    route = Route("default-bench-7a1b@kubernetescrd", [], None, None)
    route.obs = route_obs(route.name, "default-origin-http@kubernetescrd", True)
    ex.route = route
    ex.server = Server("http://127.0.0.1:8081", None, b"", True,
                       "default-origin-http@kubernetescrd", "127.0.0.1:8081")
    ex.status = ex.origin_status = 200
    ex.attempts = 1
    now = time.monotonic()
    ex.started, ex.origin_started, ex.ended = now - 0.0004, now - 0.0003, now
    ex.bytes_out = 183
    return ex


_getrandbits = random.getrandbits


def python_trace_step(step, ex):
    # tracing.TraceStart.on_request before engine/tracectx.pyx (commit e2dfbe6)
    trace_id, parent_id, sampled, state, sent = tracing.decide(ex.req, step.bound)
    client_id = _getrandbits(64) or 1
    value = b"00-%032x-%016x-%s" % (trace_id, client_id, b"01" if sampled else b"00")
    if sent:
        rm = ex.remove_headers
        if rm is None:
            ex.remove_headers = [b"traceparent", b"tracestate"]
        else:
            rm.extend((b"traceparent", b"tracestate"))
    add = [(b"traceparent", value)]
    if state:
        add.append((b"tracestate", state))
    if ex.set_headers is None:
        ex.set_headers = add
    else:
        ex.set_headers.extend(add)


def timed(fn, ex, calls, reset=None):
    t0 = time.thread_time_ns()
    if reset is None:
        for _ in range(calls):
            fn(ex)
    else:
        for _ in range(calls):
            reset(ex)
            fn(ex)
    return (time.thread_time_ns() - t0) / calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    ex = exchange()
    mono, real = time.monotonic(), time.time_ns()
    json_cfg = AccessLog(enabled=True, format="json")
    clf_cfg = AccessLog(enabled=True, format="common")
    c_json = Formatter(json_cfg, None)
    c_clf = Formatter(clf_cfg, None)
    py_json = ReferenceFormatter(json_cfg, None)
    py_clf = ReferenceFormatter(clf_cfg, None)
    assert c_json.line(ex, mono, real) == py_json.line(ex, mono, real)

    def c_observe(f):
        def run(ex):
            f.observe(ex)
            if f.lines >= 4096:
                f.take()                 # what the writer thread does
        return run

    rec = Recorder(Metrics(prometheus=Prometheus()))
    step = tracing.TraceStart(tracing.sample_bound(0.0), False, "r", "", "s", ())
    ex.env = types.SimpleNamespace(now=ex.started)

    def clear(ex):
        ex.set_headers = None
        ex.remove_headers = None
    cases = [
        ("access log JSON, C (engine/accesslog.pyx)", c_observe(c_json), None),
        ("access log JSON, Python reference (before)",
         lambda ex: py_json.line(ex, time.monotonic(), time.time_ns()), None),
        ("access log common, C", c_observe(c_clf), None),
        ("access log common, Python reference (before)",
         lambda ex: py_clf.line(ex, time.monotonic(), time.time_ns()), None),
        ("Prometheus Recorder.observe (EP+service; router labels: same)", rec.observe, None),
        ("tracing unsampled, C (engine/tracectx.pyx)", step.on_request, clear),
        ("tracing unsampled, Python step (before)",
         lambda ex: python_trace_step(step, ex), clear),
        ("(the loop of this script: a no-op call)", lambda ex: None, None),
    ]
    print("CPU ns per call, median of %d repeats of %d calls, CPU 0" % (args.repeats, args.calls))
    for name, fn, reset in cases:
        runs = [timed(fn, ex, args.calls, reset) for _ in range(args.repeats)]
        if fn is rec.observe:
            rec.take()
        print("%-66s %8.0f" % (name, statistics.median(runs)))


if __name__ == "__main__":
    main()
