"""The worker's event loop: one epoll object, level-triggered, one handler object per fd.

``selectors`` is this with a dict lookup and a namedtuple per event more; the proxy asks the
loop for the fewest system calls and the least Python per event, so it drives ``select.epoll``
directly. Interest is set once per socket and changed only on backpressure (a peer that cannot
take more) or half-close, never per request. Timeouts are deadlines on the connection objects,
checked by a sweep twice a second: no timer object is created per request.

Middlewares that wait (an exchange's request phase returning WAIT) get two more things:
``call_later`` (a timer heap the loop's poll timeout follows: rate-limit delays, retries) and
``call_soon_threadsafe`` (a thread-pool job finishing — a bcrypt check — wakes the loop through
an eventfd and its callback runs on the loop). Neither costs anything until used.
"""
import collections
import heapq
import json
import os
import select
import time

from .log import log

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLERR = select.EPOLLERR
EPOLLHUP = select.EPOLLHUP
EPOLLRDHUP = select.EPOLLRDHUP
# How client connections are registered (engine/conn.pyx's ET_EVENTS): once, edge-triggered,
# for everything they will ever need. A Sniffer registers the same way, so the ClientConn
# that follows it takes the registration over without an epoll_ctl.
ET_EVENTS = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
SWEEP_INTERVAL = 0.5


class Loop:
    """Dispatches ``handler.on_event(events)``; ``timed`` objects get ``on_timeout(now)``."""

    __slots__ = ("ep", "handlers", "timed", "now", "running", "next_sweep", "idle_hooks",
                 "sweep_interval", "_poll", "_monotonic", "timers", "_seq", "_wakeup",
                 "_soon")

    def __init__(self):
        self.ep = select.epoll()
        self.handlers = {}       # fd -> object with on_event(events)
        self.timed = set()       # objects with a ``deadline`` (monotonic; 0 = none)
        self.now = time.monotonic()
        self.running = True
        self.next_sweep = self.now + SWEEP_INTERVAL
        self.idle_hooks = []     # called after each sweep (drain checks, ...)
        self.sweep_interval = SWEEP_INTERVAL
        self._poll = self.ep.poll
        self._monotonic = time.monotonic
        self.timers = []         # heap of [when, seq, fn, args] (fn None: cancelled)
        self._seq = 0
        self._wakeup = None      # eventfd handler, made on the first call_soon_threadsafe
        self._soon = collections.deque()

    def call_later(self, delay, fn, *args):
        """Run ``fn(*args)`` on the loop after ``delay`` seconds; returns a handle with
        ``cancel()``."""
        self._seq += 1
        entry = _Timer(self.now + max(0.0, delay), self._seq, fn, args)
        heapq.heappush(self.timers, entry)
        return entry

    def run_timers(self, now):
        """Called by the dispatch loop when the earliest timer is due."""
        timers = self.timers
        while timers and timers[0].when <= now:
            entry = heapq.heappop(timers)
            fn = entry.fn
            if fn is None:
                continue
            entry.fn = None
            try:
                fn(*entry.args)
            except Exception as e:
                self._fail(entry, e)

    def call_soon_threadsafe(self, fn, *args):
        """From any thread: run ``fn(*args)`` on the loop soon (wakes it up)."""
        wakeup = self._wakeup
        if wakeup is None:
            wakeup = self._make_wakeup()
        self._soon.append((fn, args))
        wakeup.poke()

    def _make_wakeup(self):
        # made once; registering from another thread is safe (epoll_ctl is), and a race
        # between two first callers only costs a second eventfd that is never poked again
        wakeup = _Wakeup(self)
        self._wakeup = wakeup
        return wakeup

    def run_soon(self):
        soon = self._soon
        while soon:
            fn, args = soon.popleft()
            try:
                fn(*args)
            except Exception as e:
                self._fail(None, e)

    def register(self, fd, events, handler):
        self.ep.register(fd, events)
        self.handlers[fd] = handler

    def modify(self, fd, events):
        self.ep.modify(fd, events)

    def forget(self, fd):
        """Drop ``fd``'s handler without an epoll_ctl: for a socket about to be closed, since
        closing its only descriptor removes it from the epoll set (what nginx does too)."""
        self.handlers.pop(fd, None)

    def unregister(self, fd):
        if self.handlers.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def run(self, env=None):
        """Run until ``running`` is False; ``env`` (pyroute._engine.conn.Env) gets ``now``
        too. The dispatch loop itself is Cython: it runs for every event."""
        from .._engine.conn import run_loop
        path = os.environ.get("PYROUTE_LOOP_STATS")   # bench/tail.py: loop turn histograms
        # bench/tail.py: events per epoll_wait (default and most: 512), to compare batch sizes
        max_events = int(os.environ.get("PYROUTE_MAX_EVENTS") or 512)
        run_loop(self, env, _stats_writer(path) if path else None, max_events)

    def sweep(self, now):
        expired = [c for c in self.timed if 0 < c.deadline <= now]
        for c in expired:
            try:
                c.on_timeout(now)
            except Exception as e:
                self._fail(c, e)
        for hook in list(self.idle_hooks):
            hook(now)

    def _fail(self, handler, exc):
        log("error", "internal error while serving a connection; closing it",
            error="%s: %s" % (type(exc).__name__, exc))
        try:
            handler.abort()
        except Exception:
            pass


def _stats_writer(path):
    # bench/tail.py reads <path>.<pid>: the histograms so far, rewritten at every sweep
    # and the cyclic GC's pauses, by generation (gc.callbacks; only in this mode)
    import gc
    target = "%s.%d" % (path, os.getpid())
    gc_hist = {0: [0] * 32, 1: [0] * 32, 2: [0] * 32}
    started = [0.0]

    def on_gc(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            us = int((time.perf_counter() - started[0]) * 1e6)
            gc_hist[info["generation"]][min(31, us.bit_length())] += 1
    gc.callbacks.append(on_gc)

    def write(turns, sweeps, events, cpu):
        with open(target + ".tmp", "w") as f:
            json.dump({"turn_us_log2": turns, "sweep_us_log2": sweeps,
                       "events_by16": events, "turn_cpu_us_log2": cpu,
                       "gc0_us_log2": gc_hist[0], "gc1_us_log2": gc_hist[1],
                       "gc2_us_log2": gc_hist[2]}, f)
        os.replace(target + ".tmp", target)
    return write


class _Timer:
    __slots__ = ("when", "seq", "fn", "args")

    def __init__(self, when, seq, fn, args):
        self.when = when
        self.seq = seq
        self.fn = fn
        self.args = args

    def __lt__(self, other):
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self):
        self.fn = None
        self.args = ()

    def abort(self):
        pass


class _Wakeup:
    """An eventfd on the loop: ``poke`` from any thread, the loop runs ``Loop._soon``."""
    __slots__ = ("loop", "fd")

    def __init__(self, loop):
        self.loop = loop
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        loop.register(self.fd, EPOLLIN, self)

    def poke(self):
        os.eventfd_write(self.fd, 1)

    def on_event(self, ev):
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass
        self.loop.run_soon()

    def abort(self):
        pass
