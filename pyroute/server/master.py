"""The master process: forks the workers, restarts them, reloads config, drains on signal.

The master never touches a request. It owns the config: it loads and validates it (at start,
on SIGHUP, when a watched manifest changes) and hands a valid one to every worker over a
socketpair (a length-prefixed pyroute.server.handoff payload of the RuntimeConfig: framed
pickles a worker loads in slices; written only by this process);
an invalid one is refused with a log line per problem and the workers keep what they have.
A reload is loaded in a child process (see ``_start_load``): the master's loop keeps
supervising meanwhile, and keeps only a small view of the result (``_MasterView``).
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

from . import handoff, share
from .health import HealthChecks
from .log import log, reopen as reopen_log
from .proctitle import set_title

CRASH_WINDOW = 60.0      # seconds over which worker deaths count as a crash loop
CRASH_LIMIT = 5          # deaths of one worker slot within CRASH_WINDOW -> give up on it
BACKOFF_MAX = 10.0
RELOAD_DEBOUNCE = 0.2    # file changes arrive in bursts (write + rename): reload once after


class _Slot:
    __slots__ = ("index", "pid", "pipe", "deaths", "restart_at", "given_up", "spawns",
                 "reader")

    def __init__(self, index):
        self.index = index
        self.pid = 0
        self.pipe = None       # master end of the socketpair
        self.deaths = []       # monotonic times of recent deaths
        self.restart_at = 0.0  # 0: no restart pending
        self.given_up = False
        self.spawns = 0        # forks so far (the API shows spawns - 1 as restarts)
        self.reader = None     # _FromWorker registered in the master's selector


class _Load:
    __slots__ = ("pid", "fd", "why", "chunks", "started")

    def __init__(self, pid, fd, why):
        self.pid = pid
        self.fd = fd
        self.why = why
        self.chunks = []
        self.started = time.monotonic()


class _MasterView:
    """What the master needs of a configuration: its static part, the services its health
    checks probe (with the ServersTransports they use), its problems and its summary line."""

    def __init__(self, config, summary):
        from .health import _used_services
        http = config.dynamic.get("http", {})
        used = _used_services(config.dynamic)
        checked = {name: spec for name, spec in (http.get("services") or {}).items()
                   if name in used and (spec.get("loadBalancer") or {}).get("healthCheck")
                   is not None}
        self.static = config.static
        self.dynamic = {"http": {"services": checked,
                                 "routers": {name: {"service": name} for name in checked},
                                 "serversTransports": http.get("serversTransports") or {}}}
        self.errors = tuple(config.errors)
        self.summary = summary
        self.certs = ()
        self.names = None
        m = getattr(config.static, "metrics", None)
        if m is not None and (m.prometheus is not None or getattr(m, "otlp", None) is not None):
            from ..observability.metrics import certificates, config_names
            self.certs = certificates(config)   # traefik_tls_certs_not_after
            self.names = config_names(config)   # its series outlive a reload only if named


class _Refusal(Exception):
    def __init__(self, message, level, errors):
        super().__init__(message)
        self.level = level
        self.errors = errors


def _log_errors(errors, level=None):
    """Each configuration problem on its own line, as ``pyroute check`` prints it."""
    from ..manifests.check import render
    for e in errors:
        try:
            line = render(e)
        except Exception:
            line = str(e)
        log(level or ("warn" if getattr(e, "severity", "error") == "warning" else "error"),
            line)


class _FromWorker:
    """The master's end of a worker's socketpair, read for what the worker sends up: its
    metric deltas, every FLUSH_INTERVAL (length-prefixed pickles, as the other way)."""
    __slots__ = ("master", "slot", "sock", "buf")

    def __init__(self, master, slot, sock):
        self.master = master
        self.slot = slot
        self.sock = sock
        self.buf = b""

    def on_event(self, events):
        try:
            data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.master._unwatch(self.slot)
            return
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = struct.unpack_from("!I", self.buf)
            if len(self.buf) < 4 + n:
                break
            payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            try:
                msg = pickle.loads(payload)
            except Exception:
                continue
            store = self.master.metrics
            if store is not None and isinstance(msg, tuple) and msg and msg[0] == "metrics":
                store.add(self.slot.index, msg[1], msg[2])


def send_config(sock, config):
    """Write one config message (used by the master; read by ``read_config``)."""
    if isinstance(config, tuple):     # ("health", ...): small, one pickle
        data = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    else:                             # a configuration: framed, the worker loads it in slices
        data = handoff.dumps(config)
    sock.sendall(struct.pack("!I", len(data)) + data)


class Master:
    """Supervises ``workers`` worker processes running ``worker_main(config, pipe, index,
    down)`` (``down``: (service, url, False) for every server health checks found down).

    ``loader()`` returns a fresh validated config or raises (ConfigError or any error: the
    reload is refused). ``watch_paths`` are watched with inotify for changes.
    """

    def __init__(self, config, loader, worker_main, workers, grace_timeout, watch_paths=(),
                 describe=None, listeners=None):
        self.config = config
        # pyroute.server.listeners.Listeners: the workers' listening sockets, opened here
        # (one instance per port); None: each worker binds its own (tests, embedding)
        self.listeners = listeners
        # Listeners are bound once per worker, for life (issue 5): the entry points they were
        # bound with stay in force until a restart, whatever a reload's static config says.
        self.entry_points = config.static.entry_points
        self.loader = loader
        self.worker_main = worker_main
        self.slots = [_Slot(i) for i in range(workers)]
        self.grace_timeout = grace_timeout
        self.watch_paths = list(watch_paths)
        self.file_reload_at = -1e9       # when the last file-change reload started
        self.describe = describe or (lambda cfg: "")
        self.draining_until = 0.0
        self.stopping = False
        self.pending_signals = []
        self.reload_at = 0.0
        self.exit_code = 0
        self.config_payload = None   # the current config's pickle when self.config is a view
        self.sel = None
        self.loading = None      # the reload being loaded in a child process (_Load)
        self.load_again = None   # a reload asked for meanwhile: its trigger
        # active health checks: probed here, once for all workers (see pyroute.server.health)
        self.health = HealthChecks()
        self.health.configure(config)
        self.api = None        # pyroute.api.Api: kept current on reloads (see attach_api)
        self.endpoints = None  # pyroute.observability.endpoints.Endpoints (ping's state)
        # metrics.prometheus: the totals the workers' deltas add up to (served by the API
        # thread, pyroute.observability.endpoints)
        self.metrics = None
        self.otlp = None       # pyroute.observability.otlp.Pusher (metrics.otlp)
        static_metrics = getattr(config.static, "metrics", None)
        if static_metrics is not None and (static_metrics.prometheus is not None or
                                           getattr(static_metrics, "otlp", None) is not None):
            from ..observability.metrics import Store
            self.metrics = Store(static_metrics)
            self.metrics.health = self.health
            # (a _MasterView knows its names; a whole configuration gives them)
            self.metrics.reloaded(config, getattr(config, "names", None))
        # limits that hold for the instance (rateLimit, inFlightReq): memory shared with
        # every worker, made before the first fork (engine/limits.pyx)
        from .._engine import limits
        self.limits = limits.arena()
        # session ticket keys: a ring in memory shared with every worker (engine/tlsio.pyx),
        # filled here and rotated from the loop below as Go rotates its own (a new key every
        # 24 h, each accepted 7 days): a ticket from one worker resumes on any other
        from .._engine import tlsio
        self.tickets = tlsio
        periods = os.environ.get("PYROUTE_TICKET_PERIODS")   # "rotation,lifetime": tests only
        if periods:
            tlsio.ticket_periods(*(int(x) for x in periods.split(",")))
        tlsio.rotate_ticket_keys()

    def attach_api(self, api):
        """The API (served by a thread of this process) reads the health checker and slots."""
        self.api = api
        api.health, api.slots = self.health, self.slots

    # ---- processes ------------------------------------------------------------------

    def _spawn(self, slot):
        socks = None
        if self.listeners is not None:
            from .listeners import ListenError
            try:
                socks = self.listeners.take(slot.index, any(
                    s.pid for s in self.slots if s is not slot))
            except ListenError as e:
                log("error", "cannot start worker", worker=slot.index, error=str(e))
                self._worker_died(slot, 256)
                return
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # worker
            code = 1
            try:
                parent.close()
                for other in self.slots:
                    if other.pipe is not None:
                        other.pipe.close()
                if self.loading is not None:
                    os.close(self.loading.fd)
                if self.listeners is not None:
                    self.listeners.close()     # other slots' sockets: not ours to hold
                    self.listeners = None
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGCHLD, signal.SIGQUIT):
                    signal.signal(sig, signal.SIG_DFL)
                # until the worker's loop handles it: a SIGUSR1 must not kill it
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)
                # Ctrl-C reaches the whole process group: the master turns it into SIGTERM.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                set_title("pyroute: worker %d" % slot.index, "pyroute-wrk%d" % slot.index)
                from .._engine import limits
                limits.set_worker(slot.index)     # its share of the in-flight counts
                # the servers health checks found down (inherited, like the config)
                config = self.config
                if self.config_payload is not None:
                    config = handoff.loads(self.config_payload)  # the master keeps a view only
                    self.config_payload = None
                if socks is not None:
                    code = self.worker_main(config, child, slot.index, self.health.down(),
                                            sockets=socks)
                else:
                    code = self.worker_main(config, child, slot.index, self.health.down())
            except BaseException as e:  # the worker must never take the master's path
                log("error", "worker failed", error=repr(e))
            finally:
                os._exit(code or 0)
        child.close()
        if socks is not None:
            self.listeners.forked(socks)   # the worker has them; a copy here would keep a
                                           # queue alive that nobody accepts from
        slot.pid = pid
        slot.pipe = parent
        if self.metrics is not None and self.sel is not None:
            slot.reader = _FromWorker(self, slot, parent)
            self.sel.register(parent, selectors.EVENT_READ, slot.reader)
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

    def _unwatch(self, slot):
        if slot.reader is not None:
            reader, slot.reader = slot.reader, None
            try:
                reader.on_event(0)      # what the worker sent before it went
            except Exception:
                pass
            try:
                self.sel.unregister(reader.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _worker_died(self, slot, status):
        slot.pid = 0
        self._unwatch(slot)
        if self.metrics is not None:
            self.metrics.worker_gone(slot.index)
        # what it had in flight (inFlightReq) will never be released by it: given back here
        self.limits.forget_worker(slot.index)
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

    def _refused(self, why, e):
        level = getattr(e, "level", "error")
        _log_errors(getattr(e, "errors", ()), level)
        log(level, "configuration reload refused; keeping the previous one",
            trigger=why, error=str(e))
        if self.api is not None:
            self.api.refused(why, e)

    def _apply(self, config, why, payload=None):
        """Make ``config`` current; ``payload``: its pickle, when it arrived as one (sent to
        the workers as is)."""
        kept = self._keep_entry_points(config)
        if kept is not config:
            config, payload = kept, None
        self.config = config
        self.config_payload = None
        # health status first (servers that stay keep theirs), then the config it applies to
        self.health.configure(config)
        self.health.take_changes()
        self._send_all(("health", True, self.health.down()))
        if payload is None:
            self._send_all(config)
        else:
            self._send_raw(struct.pack("!I", len(payload)) + payload)
        _log_errors(getattr(config, "errors", ()))
        if self.metrics is not None:
            self.metrics.reloaded(config)
        if self.api is not None:
            self.api.reloaded(config, why)
        log("info", "configuration reloaded", trigger=why, summary=self.describe(config))

    # ---- loading off the supervision path ---------------------------------------------
    # Loading and compile-checking a big configuration takes seconds (a 50 MB manifest: tens of
    # seconds); the master's loop must keep reaping and restarting workers, probing health and
    # answering signals meanwhile. A reload is loaded in a child process forked for it (the
    # only other threads are the API's, which hold no lock a child uses: fork is safe), which
    # writes the pickled result on a
    # pipe and exits; the loop reads the pipe between its other events. Reloads asked for while
    # one loads are coalesced into one more after it.

    def _start_load(self, why):
        if self.loading is not None:
            self.load_again = why
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the loader
            code = 0
            try:
                os.close(r)
                for slot in self.slots:
                    if slot.pipe is not None:
                        slot.pipe.close()   # a worker must see EOF when the master is gone
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                set_title("pyroute: loader", "pyroute-loader")
                try:
                    config = self.loader()
                    view = pickle.dumps(_MasterView(config, self.describe(config)),
                                        protocol=pickle.HIGHEST_PROTOCOL)
                    out = b"".join((b"C", struct.pack("!I", len(view)), view,
                                    handoff.dumps(config)))
                except Exception as e:
                    errs = list(getattr(e, "errors", ()))
                    out = b"E" + pickle.dumps((str(e), getattr(e, "level", "error"), errs),
                                              protocol=pickle.HIGHEST_PROTOCOL)
                view = memoryview(out)
                while view:
                    view = view[os.write(w, view):]
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        os.set_blocking(r, False)
        self.loading = _Load(pid, r, why)
        self.sel.register(r, selectors.EVENT_READ, "loader")

    def _on_loader(self):
        load = self.loading
        while True:
            try:
                chunk = os.read(load.fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                break
            load.chunks.append(chunk)
        self.sel.unregister(load.fd)
        os.close(load.fd)
        self.loading = None
        data = b"".join(load.chunks)
        load.chunks = []
        took = "%.2fs" % (time.monotonic() - load.started)
        if not self.stopping:
            if data[:1] == b"C":
                (n,) = struct.unpack_from("!I", data, 1)
                try:
                    view = pickle.loads(data[5:5 + n])
                except Exception as e:
                    log("error", "configuration reload refused; keeping the previous one",
                        trigger=load.why, error="unreadable result from the loader: %r" % e)
                else:
                    log("debug", "configuration loaded", trigger=load.why, took=took)
                    self._apply_view(view, data[5 + n:], load.why)
            elif data[:1] == b"E":
                message, level, errs = pickle.loads(data[1:])
                exc = _Refusal(message, level, errs)
                self._refused(load.why, exc)
            else:
                log("error", "configuration reload refused; keeping the previous one",
                    trigger=load.why, error="the loader process died")
        if self.load_again and not self.stopping:
            why, self.load_again = self.load_again, None
            self._start_load(why)

    def _apply_view(self, view, payload, why):
        """Make current the config whose pickle is ``payload``, knowing only its ``view``: the
        master never unpickles a big configuration (that alone takes ~0.5 s for 10,000
        routes); workers forked later unpickle it themselves."""
        if view.static.entry_points != self.entry_points:
            # rare (a restart is needed anyway): the full config, its entry points replaced
            self._apply(handoff.loads(payload), why)
            return
        self.config = view
        self.config_payload = payload
        self.health.configure(view)
        self.health.take_changes()
        self._send_all(("health", True, self.health.down()))
        self._send_raw(struct.pack("!I", len(payload)) + payload)
        _log_errors(view.errors)
        if self.metrics is not None:
            self.metrics.reloaded(names=view.names)
            self.metrics.certs = view.certs
        if self.api is not None:
            self.api.reloaded_payload(payload, why)   # unpickled by the API, not here
        log("info", "configuration reloaded", trigger=why, summary=view.summary)

    def _send_raw(self, data):
        for slot in self.slots:
            if slot.pipe is not None:
                try:
                    slot.pipe.sendall(data)
                except OSError:
                    pass

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
        set_title("pyroute: master", "pyroute-master")
        share.init(len(self.slots))      # before the first fork: every worker inherits it
        sel = self.sel = selectors.DefaultSelector()
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD,
                    signal.SIGUSR1):
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
                self.tickets.rotate_ticket_keys()     # a C check, nothing unless one is due
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
                    elif key.data == "loader":
                        self._on_loader()
                    elif key.data == "watch" and watcher.relevant():
                        # settle: a reload once the writes have stopped for a moment; and,
                        # as Traefik's providers.kubernetesCRD.throttleDuration, no two
                        # file-change reloads closer than that (the last change is kept)
                        throttle = self.config.static.providers_crd.throttle_duration
                        self.reload_at = max(time.monotonic() + RELOAD_DEBOUNCE,
                                             self.file_reload_at + throttle)
                signals, self.pending_signals = self.pending_signals, []
                for signum in signals:
                    if signum == signal.SIGCHLD:
                        self._reap()
                    elif signum == signal.SIGHUP and not self.stopping:
                        self._start_load("SIGHUP")
                    elif signum in (signal.SIGTERM, signal.SIGINT):
                        self._stop(signum)
                    elif signum == signal.SIGUSR1:
                        # logrotate: reopen pyroute's log here, the access log in every
                        # worker (Traefik: "Closing and re-opening log files for rotation")
                        reopen_log()
                        log("info", "Closing and re-opening log files for rotation",
                            signal="SIGUSR1")
                        self._kill_all(signal.SIGUSR1)
                self._reap()
                now = time.monotonic()
                if not self.stopping:
                    self.health.run_due(now)
                    changes = self.health.take_changes()
                    if changes:
                        self._send_all(("health", False, changes))
                if self.reload_at and now >= self.reload_at and not self.stopping:
                    self.reload_at = 0.0
                    self.file_reload_at = now
                    self._start_load("file change")
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
            if self.loading is not None:
                try:
                    os.kill(self.loading.pid, signal.SIGKILL)
                except OSError:
                    pass
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
        if self.endpoints is not None:
            self.endpoints.terminating = True    # /ping answers terminatingStatusCode
        log("info", "stopping: draining connections", signal=signal.Signals(signum).name,
            graceTimeOut="%gs" % self.grace_timeout)
        self._kill_all(signal.SIGTERM)
        # workers keep accepting for requestAcceptGraceTimeout, then drain for graceTimeOut
        accept_grace = max([getattr(ep, "request_accept_grace_timeout", 0.0)
                            for ep in self.entry_points.values()] or [0.0])
        self.draining_until = time.monotonic() + accept_grace + self.grace_timeout + 1.0

    def _kill_all(self, sig):
        for slot in self.slots:
            if slot.pid:
                try:
                    os.kill(slot.pid, sig)
                except OSError as e:
                    if e.errno != errno.ESRCH:
                        raise
