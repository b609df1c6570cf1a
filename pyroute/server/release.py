"""Letting an old configuration go in slices (issue #11).

At the swap the worker drops its last reference to the old Snapshot: with 10,000 routers that
is ~40-60 ms of refcount deallocation (the configuration's dicts, the compiled routes, their
route tables) in one piece — one loop turn that serves nothing. ``Release`` keeps the old
snapshot instead and frees it a few hundred objects at a time, ``BUDGET`` per loop turn.

Correctness rests on reference counts only; nothing the old configuration holds is ever
modified. An object is taken apart only when ``Release`` holds the last reference to it (no
exchange, connection or newer configuration can reach it any more): its direct referents
(``gc.get_referents``) are put on the to-free stack first, so dropping the object frees that
one object and no cascade. An object someone else still references (a Route an in-flight
exchange serves, a connection pool the next snapshot shares) is merely let go; its owner frees
it when done. The root waits until it is ours alone: a keep-alive connection keeps the snapshot
it last routed with (engine/conn.pyx ``ClientConn.snap``) until its next request, so freeing
starts once the last one has moved on (checked at each sweep, twice a second, at no cost
meanwhile).

Objects the cyclic GC does not track (strings, numbers, bytes, containers of those) have no
referents worth walking: dropping one is one deallocation. Reference cycles are not walked
apart (a member always has another reference); they stay where the previous configuration's
cycles stay, in the permanent generation the worker freezes configurations into.
"""
import gc
import os
import sys
import time

from .loop import EPOLLIN

# sys.getrefcount of an object held by one local variable only: that variable and the
# call's own argument
_SOLE = 2
STEP = 256           # objects (or container entries) freed between two looks at the clock
CHUNK = 256          # entries of a big list or dict taken out at a time


class Release:
    """The objects of an old configuration, freed ``step`` by ``step``."""

    __slots__ = ("root", "stack", "objects")

    def __init__(self, root):
        self.root = root
        self.stack = []           # tracked objects only (see step)
        self.objects = 0          # freed so far, counting container entries

    def ready(self):
        """True when nothing but this Release references the root any more (then ``step``
        frees it); until then nothing is freed."""
        if self.root is not None and sys.getrefcount(self.root) <= _SOLE:
            # (the root: a Snapshot, tracked)
            self.stack.append(self.root)
            self.root = None
        return self.root is None

    def steps(self):
        """A generator freeing ``STEP`` objects a step, for a caller that is itself run in
        steps (pyroute.proxy.snapshot.compile_steps lets its temporaries go this way). A
        root someone else still references is theirs to free: nothing is done."""
        if self.ready():
            while self.step(0.0, _zero):        # the clock always "past": ~STEP objects
                yield

    def step(self, deadline, clock):
        """Free objects until ``clock()`` passes ``deadline`` (looked at every ``STEP``
        objects); False once all are freed."""
        stack = self.stack
        pop = stack.pop
        push = stack.append
        extend = stack.extend
        refcount = sys.getrefcount
        tracked = gc.is_tracked
        referents = gc.get_referents
        chunk = CHUNK
        work = 0
        while stack:
            obj = pop()
            work += 1
            if refcount(obj) <= _SOLE:
                kind = type(obj)
                if (kind is list or kind is dict) and len(obj) > chunk:
                    # a big container (a table's 10,000 routes): ours alone, so emptying it
                    # is seen by no one; a chunk now, the rest when it comes up again
                    push(obj)
                    if kind is list:
                        part = obj[-chunk:]
                        del obj[-chunk:]
                    else:
                        # (no bound method kept in a local: it would hold the dict, which
                        # would then look shared the next time and be freed in one piece)
                        part = []
                        for _ in range(chunk):
                            part.append(obj.popitem()[1])     # the keys: strings, freed now
                    extend(filter(tracked, part))
                    part = None
                    work += chunk
                else:
                    # its referents first, so freeing it frees it alone (but for the
                    # untracked ones, each freed with it at the cost of one free)
                    extend(filter(tracked, referents(obj)))
            obj = None
            if work >= STEP:
                self.objects += work
                work = 0
                if clock() >= deadline:
                    break
        self.objects += work
        return bool(stack)


def _zero():
    return 0.0


class Releaser:
    """The worker's pending Releases, driven by its loop: a sweep hook checks the waiting ones
    (``Release.ready``); while one is freeing, an eventfd left readable (level-triggered, as
    pyroute.server.worker.Reload's) gives it ``BUDGET`` each loop turn."""

    __slots__ = ("loop", "done", "waiting", "freeing", "fd", "longest", "turns", "objects",
                 "clock")

    BUDGET = 0.002

    def __init__(self, loop, done=None):
        self.loop = loop
        self.done = done          # done(self, objects) when the last one is freed (a log line)
        self.waiting = []
        self.freeing = []
        self.fd = -1
        # since the freeing started: turns, the longest (CPU seconds of this thread), objects
        self.longest = 0.0
        self.turns = 0
        self.objects = 0
        self.clock = loop._monotonic
        loop.idle_hooks.append(self.check)

    def release(self, obj):
        """Take over ``obj``; the caller drops its own references to it, then may ``check``
        (else the next sweep does)."""
        self.waiting.append(Release(obj))

    def pending(self):
        return len(self.waiting) + len(self.freeing)

    def check(self, now=None):
        ready = [r for r in self.waiting if r.ready()]
        if not ready:
            return
        self.waiting = [r for r in self.waiting if r.root is not None]
        self.freeing.extend(ready)
        if self.fd < 0:
            self.fd = os.eventfd(1, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.loop.register(self.fd, EPOLLIN, self)

    def on_event(self, ev):
        self.run()

    def run(self):
        clock = self.clock
        start = clock()
        cpu = time.thread_time()
        deadline = start + self.BUDGET
        freeing = self.freeing
        while freeing and clock() < deadline:
            if not freeing[0].step(deadline, clock):
                self.objects += freeing.pop(0).objects
        self.turns += 1
        took = time.thread_time() - cpu
        if took > self.longest:
            self.longest = took
        if not freeing and self.fd >= 0:
            self.loop.forget(self.fd)
            os.close(self.fd)         # closing it takes it out of the epoll set
            self.fd = -1
            if self.done is not None:
                self.done(self, self.objects)
            self.longest = 0.0
            self.turns = 0
            self.objects = 0

    def abort(self):
        pass

