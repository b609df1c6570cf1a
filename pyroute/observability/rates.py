"""Request rates and error shares per router and service, computed in the master from the
metrics counters (pyroute.observability.metrics.Store): what the dashboard shows beside each
router and service, served as ``/api/pyroute/rates`` — no Prometheus server needed.

The Store only holds running totals (the workers' hand-offs added up). A rate needs two
points in time, so a thread of the master takes a small sample of those totals once per
``INTERVAL`` (per router and per service: requests, 4xx, 5xx) and keeps the last
``max(WINDOWS)`` seconds of them. A report compares the totals now with the newest sample
at least a window old (or the oldest one, while pyroute has run for less than the window),
and says how many seconds that covers. Nothing here runs per request: the cost is one pass
over the Store's series per second, and per API call.
"""
import threading
import time
from collections import deque

INTERVAL = 1.0                          # seconds between samples
WINDOWS = (("10s", 10.0), ("1m", 60.0))  # (name, seconds) of the windows reported


def totals(store):
    """({router: [requests, 4xx, 5xx]}, {service: [...]}) of the Store's totals now."""
    with store._lock:                   # whole hand-offs only (Store.add holds it)
        # the router level's series: ((router, service label), code, ...)
        items = [(key[0], key[1], acc[0]) for key, acc in store.series["router"].items()]
    routers, services = {}, {}
    for (router, service), code, n in items:
        slot = 1 if 400 <= code < 500 else 2 if 500 <= code < 600 else 0
        _add(routers, router, slot, n)
        # a service's rate: the requests of the routers that name it (a TraefikService
        # too, which has no series of its own); a parent router's "<router>-muxer" is none
        if service and service != router + "-muxer":
            _add(services, service, slot, n)
    return routers, services


def _add(table, name, slot, n):
    row = table.get(name)
    if row is None:
        row = table[name] = [0, 0, 0]
    row[0] += n
    if slot:
        row[slot] += n


class Rates:
    """The samples and the report (``report()``: the JSON of /api/pyroute/rates)."""

    def __init__(self, store, clock=time.monotonic):
        self.store = store
        self.clock = clock
        longest = max(seconds for _, seconds in WINDOWS)
        # one sample more than the longest window needs, so a full window always has a base
        self.samples = deque(maxlen=int(longest / INTERVAL) + 2)
        self._stop = threading.Event()
        self.thread = None

    def sample(self):
        self.samples.append((self.clock(),) + totals(self.store))

    def start(self):
        self.sample()                   # the base of the first windows: pyroute's start
        self.thread = threading.Thread(target=self._run, name="pyroute-rates", daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.wait(INTERVAL):
            self.sample()

    def stop(self):
        self._stop.set()

    def report(self):
        now = self.clock()
        routers, services = totals(self.store)
        samples = list(self.samples)    # one C-level copy: the sampler may append meanwhile
        bases = []
        for name, seconds in WINDOWS:
            base = samples[0] if samples else (now, {}, {})
            for s in reversed(samples):
                if s[0] <= now - seconds:
                    base = s
                    break
            bases.append((name, base))
        return {"enabled": True, "interval": INTERVAL,
                "windows": [name for name, _ in WINDOWS],
                "routers": _rows(routers, now, bases, 1),
                "services": _rows(services, now, bases, 2)}


def _rows(current, now, bases, which):
    out = {}
    for name, (n, n4, n5) in sorted(current.items()):
        row = {"total": {"requests": n, "4xx": n4, "5xx": n5}}
        for window, base in bases:
            then = base[which].get(name, (0, 0, 0))
            # a series the Store dropped and started again counts from zero, never below
            dn, d4, d5 = (max(0, a - b) for a, b in zip((n, n4, n5), then))
            seconds = max(now - base[0], 0.0)
            row[window] = {
                "seconds": round(seconds, 3),
                "requests": dn,
                "perSecond": round(dn / seconds, 3) if seconds > 0 else 0.0,
                "share4xx": round(d4 / dn, 4) if dn else 0.0,
                "share5xx": round(d5 / dn, 4) if dn else 0.0,
            }
        out[name] = row
    return out


OFF = {"enabled": False, "reason": "metrics are off: request and error rates come from "
       "metrics.prometheus in the static configuration"}
