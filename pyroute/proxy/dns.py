"""Backend host names resolved as Go's dialer resolves them: per new connection, off the loop.

Traefik dials a server URL's host per new connection (Go's ``net.Dialer.DialContext``): the
name is looked up — Go keeps no cache, so a changed answer is followed by the very next
connection — and its addresses are split as ``addrList.partition`` splits them: the
*primaries* are the first address's family, the *fallbacks* the other family. The primaries are
dialed one at a time (dialSerial, each address with its share of the dial timeout:
partialDeadline); when there are fallbacks they race the primaries once ``FallbackDelay``
(300 ms) has passed without a primary connecting, or at once when the primaries have all
failed (dialParallel, RFC 6555); the first connect wins, the other attempt is closed. The engine
does the dialing (``UpstreamConn`` and its ``FallbackDial``); this module does the lookups:

- ``Resolver.resolve(loop, callback)`` never blocks: the lookup runs in one of a few threads
  (``THREADS``) and ``callback(primaries, fallbacks, error)`` runs on ``loop`` (its
  ``call_soon_threadsafe``: the worker's eventfd, or the master's for health probes).
- Lookups of one name that overlap are one lookup whose answer every waiting connection gets,
  as Go's resolver coalesces them (singleflight ``lookupGroup``); one wake-up per loop.
- A failed lookup (no such host, a failing hook) gives no address: the connection fails with
  502, as Go's dial fails with a DNSError (not a timeout). A lookup slower than the dial timeout
  is a dial timeout (504), as in Go, whose lookup runs under the dial's deadline.
- An IP literal needs no resolver: its pool keeps the address, and its connections dial at
  once (no thread, no object more).
- The master's health-check probes (pyroute.server.health) resolve per probe the same way
  and dial as the workers do (its ``_Dial``).
- ``pyroute check`` and the master's validation never look a name up: a name that does not
  resolve is a 502 per request, not a configuration error (Traefik).

``lookup(host, port)`` -> ``[(family, sockaddr)]`` does the resolution (default:
``socket.getaddrinfo``, whose order is the system's RFC 6724 sorting, as Go's cgo resolver);
tests and embedders may pass their own.
"""
import os
import socket
import threading
from collections import deque

THREADS = 8          # lookups of different names at once, per process (Go: one goroutine each)


def _lookup(host, port):
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    out = []
    for family, _, _, _, addr in infos:
        if (family, addr) not in out:
            out.append((family, addr))
    return out


def partition(addrs):
    """Go's ``addrList.partition(isIPv4)``: (the addresses of the first one's family, the
    others), each in the resolver's order."""
    if not addrs:
        return [], []
    first = addrs[0][0]
    primaries = [a for a in addrs if a[0] == first]
    fallbacks = [a for a in addrs if a[0] != first]
    return primaries, fallbacks


class _Threads:
    """A few daemon threads running lookups, made in the process that needs them (threads do
    not survive a fork; ``_forked`` resets the state a fork copied)."""

    def __init__(self, size):
        self.size = size
        self._forked()

    def _forked(self):
        self.lock = threading.Lock()
        self.jobs = deque()
        self.ready = threading.Condition(self.lock)
        self.idle = 0
        self.count = 0

    def submit(self, fn):
        with self.lock:
            self.jobs.append(fn)
            if self.idle >= len(self.jobs):
                self.ready.notify()
                return
            if self.count < self.size:
                self.count += 1
                threading.Thread(target=self._work, name="pyroute-dns", daemon=True).start()
            else:
                self.ready.notify()

    def _work(self):
        while True:
            with self.lock:
                while not self.jobs:
                    self.idle += 1
                    self.ready.wait()
                    self.idle -= 1
                fn = self.jobs.popleft()
            fn()


_threads = _Threads(THREADS)
# in flight: (host, port, lookup) -> [(loop, callback)] waiting for that lookup
_group = {}
_group_lock = threading.Lock()


def _after_fork():
    global _group, _group_lock
    _threads._forked()
    _group = {}
    _group_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def _deliver(callbacks, primaries, fallbacks, error):
    for callback in callbacks:
        callback(primaries, fallbacks, error)


class Resolver:
    """The addresses of ``host:port``, looked up anew for each ``resolve``."""

    __slots__ = ("host", "port", "lookup", "key")

    def __init__(self, host, port, lookup=None):
        self.host = host
        self.port = port
        self.lookup = lookup or _lookup
        self.key = (host, port, self.lookup)

    def resolve(self, loop, callback):
        """Look the name up in a thread; ``callback(primaries, fallbacks, error)`` runs on
        ``loop`` (``primaries`` empty when the lookup failed; ``error``: why, or None). A
        lookup of this name already running answers this call too (singleflight)."""
        with _group_lock:
            waiting = _group.get(self.key)
            if waiting is not None:
                waiting.append((loop, callback))
                return
            _group[self.key] = [(loop, callback)]
        _threads.submit(self._run)

    def _run(self):
        error = None
        try:
            addrs = list(self.lookup(self.host, self.port))
            if not addrs:
                error = "lookup %s: no such host" % self.host
        except Exception as e:       # gaierror, a bad name, a failing hook: no address (502)
            addrs = []
            error = "lookup %s: %s" % (self.host, e)
        primaries, fallbacks = partition(addrs)
        with _group_lock:
            waiting = _group.pop(self.key, [])
        by_loop = {}
        for loop, callback in waiting:
            entry = by_loop.get(id(loop))
            if entry is None:
                by_loop[id(loop)] = (loop, [callback])
            else:
                entry[1].append(callback)
        for loop, callbacks in by_loop.values():
            loop.call_soon_threadsafe(_deliver, callbacks, primaries, fallbacks, error)
