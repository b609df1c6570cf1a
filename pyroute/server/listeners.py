"""Listening sockets: one instance per port, each worker its own SO_REUSEPORT socket.

Every worker accepts on its own socket (SO_REUSEPORT: the kernel spreads connections over the
workers' accept queues, no thundering herd, no shared accept lock). SO_REUSEPORT alone would let
a second ``pyroute run`` of the same user join the group silently and take a share of the
traffic, so the master opens the sockets, before any worker exists:

1. it takes a lock that is an abstract Unix socket (``\\0pyroute-listen-lock``): abstract names
   live in the network namespace, exactly the scope of ports, and vanish with their process;
2. for each entry point it *probes* the address with a bind without SO_REUSEPORT: that fails
   while anything listens there — a pyroute instance (its sockets are SO_REUSEPORT, the probe's
   is not: the kernel refuses the pair) or any other program — and the start is refused with
   the entry point and the address named (SO_REUSEADDR stays on, so connections in TIME_WAIT
   from a previous run do not block a restart);
3. it binds and listens the SO_REUSEPORT sockets of every worker slot, then lets the lock go.

From then on the port has listeners of this instance until it stops, so another instance's probe
fails. Two instances started at the same moment are serialised by the lock (no window between
probe and bind). Each worker inherits its own socket through fork; the master closes its copies
at once (a socket the master kept would be a member of the group with an accept queue nobody
reads). A worker that dies takes its socket with it (its queued connections are reset, as
before); the master binds a fresh one for its replacement — directly when sibling workers still
hold the port, else after the lock and the probe again.
"""
import errno
import os
import socket
import time

LOCK_NAME = b"\0pyroute-listen-lock"


class ListenError(Exception):
    """An entry point's address cannot be listened on (message names both)."""


def _addrinfo(ep):
    host = ep.host
    infos = socket.getaddrinfo(host or None, ep.port, 0, socket.SOCK_STREAM, 0,
                               socket.AI_PASSIVE)
    family, stype, proto, _, addr = infos[0]
    if not host:
        # every interface: prefer the dual-stack IPv6 socket when there is one
        for info in infos:
            if info[0] == socket.AF_INET6:
                family, stype, proto, _, addr = info
                break
    return family, stype, proto, addr


def _explain(ep, e):
    if e.errno == errno.EADDRINUSE:
        why = ("address already in use: another pyroute instance or another program listens "
               "there (only the workers of one instance may share a port)")
    elif e.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
    elif e.errno == errno.EADDRNOTAVAIL:
        why = "address not available on this host"
    else:
        why = e.strerror or str(e)
    return ListenError("entry point %s: cannot listen on %s: %s" % (ep.name, ep.address, why))


def _socket(ep, reuseport):
    try:
        family, stype, proto, addr = _addrinfo(ep)
    except OSError as e:
        raise ListenError("entry point %s: cannot resolve %s: %s"
                          % (ep.name, ep.address, e.strerror or e)) from None
    sock = socket.socket(family, stype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and not ep.host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise _explain(ep, e) from None
    return sock


def probe(ep):
    """Raise ListenError when anything listens on ``ep``'s address already."""
    _socket(ep, False).close()


def bind_listener(ep):
    """A non-blocking listening socket for an entry point, with SO_REUSEPORT."""
    sock = _socket(ep, True)
    try:
        sock.listen(4096)
    except OSError as e:
        sock.close()
        raise _explain(ep, e) from None
    sock.setblocking(False)
    return sock


class _Lock:
    def __init__(self, timeout=10.0):
        self.timeout = timeout
        self.sock = None

    def __enter__(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        end = time.monotonic() + self.timeout
        while True:
            try:
                sock.bind(LOCK_NAME)
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE or time.monotonic() > end:
                    sock.close()
                    # no lock (another instance stuck starting?): probing still refuses
                    # an address in use; only the simultaneous-start window stays open
                    return self
                time.sleep(0.01)
        self.sock = sock
        return self

    def __exit__(self, *exc):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Listeners:
    """The listening sockets of every worker slot, opened by the master (see module doc)."""

    def __init__(self, entry_points, slots):
        self.entry_points = dict(entry_points)
        self.pending = {}            # slot index -> {entry point name: socket} not yet forked
        self.slots = slots

    def open(self):
        """Probe every address, then bind every slot's sockets; ListenError on failure."""
        with _Lock():
            for ep in self.entry_points.values():
                probe(ep)
            try:
                for index in range(self.slots):
                    self.pending[index] = self._bind_slot()
            except ListenError:
                self.close()
                raise

    def _bind_slot(self):
        socks = {}
        try:
            for name, ep in self.entry_points.items():
                socks[name] = bind_listener(ep)
        except ListenError:
            for s in socks.values():
                s.close()
            raise
        return socks

    def take(self, index, siblings_alive):
        """The sockets for slot ``index`` (bound now for a restarted worker)."""
        socks = self.pending.pop(index, None)
        if socks is not None:
            return socks
        if siblings_alive:
            return self._bind_slot()
        with _Lock():                # the port was free meanwhile: probe again
            for ep in self.entry_points.values():
                probe(ep)
            return self._bind_slot()

    @staticmethod
    def forked(socks):
        """In the master, once the worker has its copies: drop ours."""
        for s in socks.values():
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        for socks in self.pending.values():
            self.forked(socks)
        self.pending = {}

