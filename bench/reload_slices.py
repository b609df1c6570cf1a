"""Where a worker's reload spends its longest slices (issue #11), in one process, without a
loop: the worker's own sequence — handoff.loads_steps, then compile_steps — is run in slices
of ``Reload.BUDGET`` as pyroute.server.worker.Reload runs it, and each slice is attributed to
the code it ran (the innermost generator's function at the slice's start and end). Then the
swap: the old snapshot (and its configuration) let go, as the worker lets it go (through
pyroute.server.release when the checkout has it, else at once), timed per loop turn.

    .venv/bin/python bench/reload_slices.py [--routes 10000] [--tls-routes 10000] [--repeat 3]

Times are CPU time of the thread (time.thread_time) and wall time, per slice; the report is
the longest slice of each step over ``--repeat`` reloads (the median of those maxima, and the
max). Run with the checkout's python: it imports pyroute from its own tree.
"""
import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

ROUTE = """\
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: app-%d, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`app-%d.example.com`) && PathPrefix(`/api`)
      kind: Rule
      services: [{name: svc, port: 80}]
"""

TLS_ROUTE = """\
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: tls-%d, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`tls-%d.example.com`)
      kind: Rule
      services: [{name: svc, port: 80}]
  tls: %s
"""

REST = """\
---
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: modern, namespace: default}
spec: {minVersion: VersionTLS13}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-0
  namespace: default
  labels: {kubernetes.io/service-name: svc}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
"""

STATIC = """\
entryPoints:
  web:
    address: "127.0.0.1:18080"
log: {level: ERROR}
"""


def manifests(tmp, routes, tls_routes):
    mdir = tmp / "m"
    mdir.mkdir()
    (mdir / "rest.yaml").write_text(REST)
    (mdir / "big.yaml").write_text("".join(ROUTE % (i, i) for i in range(routes)))
    (mdir / "tls.yaml").write_text("".join(
        TLS_ROUTE % (i, i, "{options: {name: modern}}" if i % 2 else "{}") for i in range(tls_routes)))
    (tmp / "static.yaml").write_text(STATIC)
    return mdir


def where(gen):
    """The innermost running generator's function and line."""
    while True:
        inner = getattr(gen, "gi_yieldfrom", None)
        if inner is None or not hasattr(inner, "gi_frame"):
            break
        gen = inner
    f = getattr(gen, "gi_frame", None)
    if f is None or f.f_lineno is None:        # a Cython generator: its name only
        return getattr(gen, "__qualname__", None) or type(gen).__name__
    return "%s:%d" % (f.f_code.co_name, f.f_lineno)


def run_slices(steps, budget, record):
    """Drives ``steps`` as Reload.run does; appends (label, cpu, wall) per slice."""
    clock = time.monotonic
    while True:
        before = where(steps)
        c0 = time.thread_time()
        w0 = time.perf_counter()
        end = clock() + budget
        try:
            while clock() < end:
                next(steps)
        except StopIteration as done:
            record.append((before + " -> end", time.thread_time() - c0,
                           time.perf_counter() - w0))
            return done.value
        record.append((before + " -> " + where(steps), time.thread_time() - c0,
                       time.perf_counter() - w0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=10000)
    ap.add_argument("--tls-routes", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from pyroute.server.run import load_config
    from pyroute.proxy.snapshot import Pools, compile_steps
    from pyroute.server import handoff
    from pyroute.server.worker import Reload
    try:
        from pyroute.server import release
    except ImportError:
        release = None
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-slices-"))
    mdir = manifests(tmp, args.routes, args.tls_routes)
    # what the master hands its workers (compile-checked, router sources left out)
    config = load_config(str(tmp / "static.yaml"), [str(mdir)])
    payload = handoff.dumps(config)
    del config
    pools = Pools()
    budget = Reload.BUDGET

    def steps():
        cfg = yield from handoff.loads_steps(payload)
        yield
        return (yield from compile_steps(cfg, pools))

    by_step = {}          # label -> [max cpu per reload]
    swap_cpu = []
    old = run_slices(steps(), budget, [])
    gc.freeze()
    for _ in range(args.repeat):
        gc.disable()
        record = []
        snap = run_slices(steps(), budget, record)
        gc.freeze()
        gc.enable()
        worst = {}
        for label, cpu, wall in record:
            worst[label] = max(worst.get(label, 0.0), cpu)
        for label, cpu in worst.items():
            by_step.setdefault(label, []).append(cpu)
        # the swap: the old snapshot let go
        if release is not None:
            rel = release.Release(old)
            del old
            assert rel.ready()
            turns = []
            clock = time.monotonic
            while True:
                c0 = time.thread_time()
                more = rel.step(clock() + budget, clock)
                turns.append(time.thread_time() - c0)
                if not more:
                    break
            swap_cpu.append(max(turns))
            top = sorted(range(len(turns)), key=lambda i: -turns[i])[:4]
            print("release: %d turns, %.1f ms CPU in all, %d objects; longest turns %s" % (
                len(turns), sum(turns) * 1000, rel.objects,
                ", ".join("#%d %.1f ms" % (i, turns[i] * 1000) for i in top)), file=sys.stderr)
        else:
            c0 = time.thread_time()
            del old
            swap_cpu.append(time.thread_time() - c0)
        old = snap
        del snap
        print("reload: %d slices, longest %.1f ms CPU (%s)" % (
            len(record), max(r[1] for r in record) * 1000,
            max(record, key=lambda r: r[1])[0]), file=sys.stderr)
    rows = sorted(by_step.items(), key=lambda kv: -max(kv[1]))
    print("%d routers, %d TLS routers, slices of %.0f ms, %d reloads; CPU ms per slice"
          % (args.routes, args.tls_routes, budget * 1000, args.repeat))
    print("%-72s %8s %8s" % ("step (innermost generator: slice start -> end)", "median", "max"))
    for label, vals in rows[:args.top]:
        print("%-72s %8.2f %8.2f" % (label[:72], statistics.median(vals) * 1000,
                                     max(vals) * 1000))
    print("%-72s %8.2f %8.2f" % (label if False else "swap: " + (
        "release, longest turn" if release is not None else "drop the old snapshot"),
        statistics.median(swap_cpu) * 1000, max(swap_cpu) * 1000))


if __name__ == "__main__":
    main()
