"""Which workers take their share of the SO_REUSEPORT group (issue #11).

The kernel hashes each new connection to one socket of the group, also to a worker that has no
descriptor left. Such a worker leaves the group — it closes its listening sockets, so the hash
spreads new connections over its siblings — and rejoins (binds fresh sockets) once it has room
again. One rule keeps the port ours: a worker leaves only while a sibling still takes its
share, so some pyroute socket always listens (with none, the port would be free for another
program, what the start-up check in pyroute.server.listeners prevents).

The state is one byte per worker slot (1: out of the group) in a file mapping the master makes
before it forks the workers (inherited by each, restarted ones too); the check-and-leave is
done under a POSIX record lock on that file (per process, so it excludes siblings). Touched only
when a worker saturates or recovers, never per connection.
"""
import fcntl
import mmap
import os
import tempfile

_shares = None


class Shares:
    def __init__(self, n):
        self.n = max(1, n)
        fd, path = tempfile.mkstemp(prefix="pyroute-shares-")
        os.unlink(path)
        os.ftruncate(fd, self.n)
        self.fd = fd
        self.map = mmap.mmap(fd, self.n)

    def try_leave(self, index):
        """Mark ``index`` out of the group if a sibling still takes its share; True if so."""
        if self.n < 2 or not 0 <= index < self.n:
            return False
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            if not any(self.map[i] == 0 for i in range(self.n) if i != index):
                return False
            self.map[index] = 1
            return True
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def joined(self, index):
        """``index`` takes its share (again): at a worker's start and when it rejoins."""
        if 0 <= index < self.n:
            self.map[index] = 0


def init(n):
    """In the master, before the first fork: the state for ``n`` worker slots."""
    global _shares
    _shares = Shares(n)


def get():
    """The inherited state (None outside a master-forked worker)."""
    return _shares
