"""The metrics Recorder's per-exchange cost (pyroute.observability.metrics.Recorder.observe),
this checkout against another revision's (``--against REV``, default ``main``), in the same
process, interleaved rounds, medians: what the OTLP histogram's min/max (two compares per
exchange) adds.

    taskset -c 1 .venv/bin/python bench/recorder.py [--against main] [--rounds 9] [--n 200000]
        [--otlp]

The exchange is the engine's Exchange of the load run (bench/observers.py: a finished GET
/small through a router to one server, no TLS): only the Recorder's own work is timed. Since
engine/metrics.pyx, ``this`` is the C Counts.observe and ``main`` the Python one it replaced;
``take()`` of both must give the same deltas (checked before timing).
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)


def load_other(rev):
    src = subprocess.run(["git", "-C", HERE, "show", "%s:pyroute/observability/metrics.py"
                          % rev], capture_output=True, text=True, check=True).stdout
    d = tempfile.mkdtemp()
    path = os.path.join(d, "metrics_other.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("pyroute.observability.metrics_other", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def exchange(obs):
    # the load run's exchange (bench/observers.py): the engine's Exchange and a parsed head
    sys.path.insert(0, os.path.join(HERE, "bench"))
    from observers import exchange as load_exchange
    ex = load_exchange()
    ex.route.obs = obs
    return ex


def per_call(rec, ex, n):
    observe = rec.observe
    t = time.perf_counter()
    for _ in range(n):
        observe(ex)
    return (time.perf_counter() - t) / n * 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--against", default="main")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--otlp", action="store_true", help="metrics.otlp too (min/max kept)")
    a = ap.parse_args()
    from pyroute.observability import metrics as this
    other = load_other(a.against)
    from pyroute.static import Metrics, Otlp, Prometheus
    conf = Metrics(prometheus=Prometheus(), otlp=Otlp() if a.otlp else None)
    recs = {"this": (this.Recorder(conf), exchange(this.route_obs("r", "s", True, ()))),
            a.against: (other.Recorder(conf), exchange(other.route_obs("r", "s", True, ())))}
    for rec, ex in recs.values():
        for _ in range(3):
            rec.observe(ex)
    a_, b_ = (rec.take() for rec, _ in recs.values())
    assert a_ == b_, (a_, b_)
    got = {k: [] for k in recs}
    for _ in range(a.rounds):
        for k, (rec, ex) in recs.items():
            got[k].append(per_call(rec, ex, a.n))
            rec.take()
    for k, v in got.items():
        print("%-8s median %.0f ns per exchange (rounds: %s)" % (
            k, statistics.median(v), " ".join("%.0f" % x for x in v)))
    print("ratio this/%s: %.3f" % (a.against, statistics.median(got["this"]) /
                                   statistics.median(got[a.against])))


if __name__ == "__main__":
    main()
