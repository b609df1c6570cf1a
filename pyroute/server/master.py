"""The master process: forks the workers, restarts them, reloads config, drains on signal.

The master never touches a request. It owns the config: it loads and validates it (at start,
on SIGHUP, when a watched manifest changes) and hands a valid one to every worker over a
socketpair (length-prefixed pickle of the RuntimeConfig, written only by this process);
an invalid one is refused with a log line and the workers keep what they have.
Workers inherit the current config through fork, so a restarted worker is current too.
The master also runs the active health checks (pyroute.server.health) and sends each status
change over the same socketpair (a ``("health", ...)`` message).
"""
import dataclasses
import errno
import os
import pickle
import selectors
import signal
import socket
import struct
import time

from .health import HealthChecks
from .log import log

CRASH_WINDOW = 60.0      # seconds over which worker deaths count as a crash loop
CRASH_LIMIT = 5          # deaths of one worker slot within CRASH_WINDOW -> give up on it
BACKOFF_MAX = 10.0
RELOAD_DEBOUNCE = 0.2    # file changes arrive in bursts (write + rename): reload once after


class _Slot:
    __slots__ = ("index", "pid", "pipe", "deaths", "restart_at", "given_up", "spawns")

    def __init__(self, index):
        self.index = index
        self.pid = 0
        self.pipe = None       # master end of the socketpair
        self.deaths = []       # monotonic times of recent deaths
        self.restart_at = 0.0  # 0: no restart pending
        self.given_up = False
        self.spawns = 0        # forks so far (the API shows spawns - 1 as restarts)


def send_config(sock, config):
    """Write one config message (used by the master; read by ``read_config``)."""
    data = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(struct.pack("!I", len(data)) + data)


class Master:
    """Supervises ``workers`` worker processes running ``worker_main(config, pipe, index,
    down)`` (``down``: (service, url, False) for every server health checks found down).

    ``loader()`` returns a fresh validated config or raises (ConfigError or any error: the
    reload is refused). ``watch_paths`` are watched with inotify for changes.
    """

    def __init__(self, config, loader, worker_main, workers, grace_timeout, watch_paths=(),
                 describe=None):
        self.config = config
        # Listeners are bound once per worker, for life (issue 5): the entry points they were
        # bound with stay in force until a restart, whatever a reload's static config says.
        self.entry_points = config.static.entry_points
        self.loader = loader
        self.worker_main = worker_main
        self.slots = [_Slot(i) for i in range(workers)]
        self.grace_timeout = grace_timeout
        self.watch_paths = list(watch_paths)
        self.describe = describe or (lambda cfg: "")
        self.draining_until = 0.0
        self.stopping = False
        self.pending_signals = []
        self.reload_at = 0.0
        self.exit_code = 0
        # active health checks: probed here, once for all workers (see pyroute.server.health)
        self.health = HealthChecks()
        self.health.configure(config)
        self.api = None        # pyroute.api.Api: kept current on reloads (see attach_api)

    def attach_api(self, api):
        """The API (served by a thread of this process) reads the health checker and slots."""
        self.api = api
        api.health, api.slots = self.health, self.slots

    # ---- processes ------------------------------------------------------------------

    def _spawn(self, slot):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # worker
            code = 1
            try:
                parent.close()
                for other in self.slots:
                    if other.pipe is not None:
                        other.pipe.close()
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGCHLD, signal.SIGQUIT):
                    signal.signal(sig, signal.SIG_DFL)
                # Ctrl-C reaches the whole process group: the master turns it into SIGTERM.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                # the servers health checks found down (inherited, like the config)
                code = self.worker_main(self.config, child, slot.index, self.health.down())
            except BaseException as e:  # the worker must never take the master's path
                log("error", "worker failed", error=repr(e))
            finally:
                os._exit(code or 0)
        child.close()
        slot.pid = pid
        slot.pipe = parent
        slot.spawns += 1
        slot.restart_at = 0.0
        log("debug", "worker started", worker=slot.index, worker_pid=pid)

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for slot in self.slots:
                if slot.pid == pid:
                    self._worker_died(slot, status)

    def _worker_died(self, slot, status):
        slot.pid = 0
        if slot.pipe is not None:
            slot.pipe.close()
            slot.pipe = None
        if self.stopping:
            return
        now = time.monotonic()
        slot.deaths = [t for t in slot.deaths if now - t < CRASH_WINDOW] + [now]
        how = ("signal %d" % os.WTERMSIG(status)) if os.WIFSIGNALED(status) else (
            "exit status %d" % os.WEXITSTATUS(status))
        if len(slot.deaths) >= CRASH_LIMIT:
            slot.given_up = True
            log("error", "worker keeps dying; not restarting it", worker=slot.index,
                deaths=len(slot.deaths), window="%ds" % CRASH_WINDOW, last=how)
            if all(s.given_up for s in self.slots):
                log("error", "every worker is in a crash loop; exiting")
                self.stopping = True
                self.exit_code = 1
            return
        delay = min(BACKOFF_MAX, 0.05 * (2 ** (len(slot.deaths) - 1)))
        slot.restart_at = now + delay
        log("warn", "worker died; restarting", worker=slot.index, reason=how,
            backoff="%.2fs" % delay)

    # ---- config ---------------------------------------------------------------------

    def reload(self, why):
        try:
            config = self.loader()
        except Exception as e:  # any failure refuses the new config, old one keeps serving
            log("error", "configuration reload refused; keeping the previous one",
                trigger=why, error=str(e))
            if self.api is not None:
                self.api.refused(why, e)
            return False
        config = self._keep_entry_points(config)
        self.config = config
        # health status first (servers that stay keep theirs), then the config it applies to
        self.health.configure(config)
        self.health.take_changes()
        self._send_all(("health", True, self.health.down()))
        self._send_all(config)
        if self.api is not None:
            self.api.reloaded(config, why)
        log("info", "configuration reloaded", trigger=why, summary=self.describe(config))
        return True

    def _send_all(self, message):
        for slot in self.slots:
            if slot.pipe is not None:
                try:
                    send_config(slot.pipe, message)
                except OSError:
                    pass  # worker is dying; it gets the new state when it is forked again

    def _keep_entry_points(self, config):
        """``config`` with the entry points the listeners were bound with.

        A reload never opens or closes a listener, so an added, removed or changed entry point
        takes effect only after a restart: say so, naming them, and apply the rest (routers on
        an entry point that does not exist yet attach to nothing until then)."""
        old, new = self.entry_points, config.static.entry_points
        if new == old:
            return config
        changed = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
        what = ", ".join("%s (%s)" % (n, "added" if n not in old else
                                      "removed" if n not in new else "changed")
                         for n in changed)
        log("warn", "entry point changes need a restart; listeners keep their current "
            "settings, the rest of the configuration is applied", entryPoints=what)
        static = dataclasses.replace(config.static, entry_points=old)
        return dataclasses.replace(config, static=static)

    # ---- main loop ------------------------------------------------------------------

    def _on_signal(self, signum, frame):
        self.pending_signals.append(signum)

    def run(self):
        sel = selectors.DefaultSelector()
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        sel.register(rsock, selectors.EVENT_READ, "signal")
        self.health.sel = sel
        watcher = None
        if self.watch_paths:
            try:
                from .watch import Watcher
                watcher = Watcher(self.watch_paths)
                sel.register(watcher.fileno(), selectors.EVENT_READ, "watch")
            except OSError as e:
                log("warn", "cannot watch manifest files; reload with SIGHUP", error=str(e))
        for slot in self.slots:
            self._spawn(slot)
        try:
            while True:
                now = time.monotonic()
                timeout = 1.0
                for slot in self.slots:
                    if slot.restart_at:
                        timeout = min(timeout, max(0.0, slot.restart_at - now))
                if self.reload_at:
                    timeout = min(timeout, max(0.0, self.reload_at - now))
                due = None if self.stopping else self.health.timeout(now)
                if due is not None:
                    timeout = min(timeout, due)
                for key, events in sel.select(timeout):
                    if not isinstance(key.data, str):
                        key.data.on_event(events)       # a health-check probe
                    elif key.data == "signal":
                        try:
                            while rsock.recv(512):
                                pass
                        except BlockingIOError:
                            pass
                    elif key.data == "watch" and watcher.relevant():
                        self.reload_at = time.monotonic() + RELOAD_DEBOUNCE
                signals, self.pending_signals = self.pending_signals, []
                for signum in signals:
                    if signum == signal.SIGCHLD:
                        self._reap()
                    elif signum == signal.SIGHUP and not self.stopping:
                        self.reload("SIGHUP")
                    elif signum in (signal.SIGTERM, signal.SIGINT):
                        self._stop(signum)
                self._reap()
                now = time.monotonic()
                if not self.stopping:
                    self.health.run_due(now)
                    changes = self.health.take_changes()
                    if changes:
                        self._send_all(("health", False, changes))
                if self.reload_at and now >= self.reload_at and not self.stopping:
                    self.reload_at = 0.0
                    self.reload("file change")
                if self.stopping:
                    if not any(s.pid for s in self.slots):
                        break
                    if self.draining_until and now > self.draining_until:
                        log("warn", "grace period over; stopping workers now")
                        self._kill_all(signal.SIGKILL)
                        self.draining_until = 0.0
                    continue
                for slot in self.slots:
                    if slot.restart_at and now >= slot.restart_at and not slot.given_up:
                        self._spawn(slot)
        finally:
            signal.set_wakeup_fd(-1)
            if watcher is not None:
                watcher.close()
            self._kill_all(signal.SIGKILL)
            self._reap()
        return self.exit_code

    def _stop(self, signum):
        if self.stopping:
            # a second signal: stop at once
            log("info", "second signal; stopping immediately")
            self._kill_all(signal.SIGQUIT)
            self.draining_until = time.monotonic() + 1.0
            return
        self.stopping = True
        log("info", "stopping: draining connections", signal=signal.Signals(signum).name,
            graceTimeOut="%gs" % self.grace_timeout)
        self._kill_all(signal.SIGTERM)
        self.draining_until = time.monotonic() + self.grace_timeout + 1.0

    def _kill_all(self, sig):
        for slot in self.slots:
            if slot.pid:
                try:
                    os.kill(slot.pid, sig)
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        raise
