"""Backend host names resolved the way Go's dialer uses them, without blocking the event loop.

Traefik dials a server URL's host per new connection (Go's ``net.Dialer``): the name is looked
up, and its addresses are tried in order until one connects. pyroute does the same — every new
backend connection (engine ``UpstreamConn``) dials the addresses its pool's ``Resolver`` holds,
in the order the system resolver gave them, moving to the next one when a connect fails — but
never calls the resolver on the event loop: a ``Resolver`` keeps the answer for ``TTL``
seconds and refreshes it in a background thread, the loop reading the last answer meanwhile
(stale-while-refresh). So an ExternalName whose addresses change is followed within ``TTL``,
without a restart or a reload.

- An IP literal needs no resolver (the pool keeps the address): endpoints cost nothing more.
- The first answer is looked up in the background as soon as the worker builds the pool
  (``prefetch``); a connection that needs it before it came waits for it at most
  ``FIRST_WAIT`` seconds (then: no address, 502).
- A failed lookup leaves no address (502 until the next lookup succeeds), as Go's dial fails
  when its lookup does; the next one is tried after ``FAILED_TTL``.
- The master's health-check probes (pyroute.server.health) use this resolver too.
- ``pyroute check`` and the master's validation never look a name up: DNS is per connection,
  and a name that does not resolve is a 502, not a configuration error (Traefik).

Each address gets Go's share of the dial timeout (engine UpstreamConn: the time left divided by
the addresses left, at least 2 s). Go re-resolves on every dial (pyroute caches for ``TTL``
seconds) and races the other address family after 300 ms (pyroute dials one at a time).
"""
import os
import socket
import threading
import time

TTL = 5.0            # seconds an answer is used before it is refreshed (in the background)
FAILED_TTL = 1.0     # after a failed lookup
FIRST_WAIT = 1.0     # the most a connection waits for a name's first answer


def _lookup(host, port):
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    out = []
    for family, _, _, _, addr in infos:
        if (family, addr) not in out:
            out.append((family, addr))
    return out


class Resolver:
    """The addresses of ``host:port``: ``[(family, sockaddr)]`` in the resolver's order.

    ``lookup(host, port)`` does the resolution (default: ``socket.getaddrinfo``, run in a
    thread); tests and embedders may pass their own."""

    __slots__ = ("host", "port", "ttl", "lookup", "addrs", "expires", "_pid", "_busy",
                 "_first", "_lock")

    def __init__(self, host, port, lookup=None, ttl=None, prefetch=False):
        self.host = host
        self.port = port
        self.ttl = TTL if ttl is None else ttl
        self.lookup = lookup or _lookup
        self.addrs = None          # None: never answered yet
        self.expires = 0.0
        self._pid = 0              # process whose thread is looking up (threads do not fork)
        self._busy = False
        self._first = threading.Event()
        self._lock = threading.Lock()
        if prefetch:
            self.refresh()

    def addresses(self):
        """The current answer (never blocks, except for a name's very first answer)."""
        if time.monotonic() >= self.expires:
            self.refresh()
            if self.addrs is None:
                self._first.wait(FIRST_WAIT)
        return self.addrs or []

    def refresh(self):
        """Start a background lookup unless one is running in this process."""
        with self._lock:
            pid = os.getpid()
            if self._busy and self._pid == pid:
                return
            self._busy = True
            self._pid = pid
        threading.Thread(target=self._run, name="pyroute-dns %s" % self.host,
                         daemon=True).start()

    def _run(self):
        addrs, ttl = [], FAILED_TTL
        try:
            addrs = list(self.lookup(self.host, self.port))
            ttl = self.ttl
        except Exception:       # gaierror, a bad name, a failing hook: no address (502)
            pass
        finally:
            self.addrs = addrs               # one reference swap: the loop sees old or new
            self.expires = time.monotonic() + ttl
            with self._lock:
                self._busy = False
            self._first.set()
