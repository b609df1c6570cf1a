"""The worker's event loop: one epoll object, level-triggered, one handler object per fd.

``selectors`` is this with a dict lookup and a namedtuple per event more; the proxy asks the
loop for the fewest system calls and the least Python per event, so it drives ``select.epoll``
directly. Interest is set once per socket and changed only on backpressure (a peer that cannot
take more) or half-close, never per request. Timeouts are deadlines on the connection objects,
checked by a sweep twice a second: no timer object is created per request.
"""
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
                 "sweep_interval", "_poll", "_monotonic")

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
        run_loop(self, env)

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
