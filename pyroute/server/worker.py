"""A worker process: its own listeners (SO_REUSEPORT, bound once for life), one epoll loop.

The worker serves the compiled Snapshot it holds; a new config arrives from the master on the
worker's socketpair, is loaded and compiled here in slices between events (``Reload``: the old
config serves meanwhile) and swapped in at once when complete — exchanges in flight keep
the route/service objects they already hold, so they finish on the config they began with.
SIGTERM: stop accepting, close idle keep-alive connections, let in-flight exchanges finish
(their responses say ``Connection: close``), exit when none is left or the grace period ends.
SIGQUIT: exit at once.
"""
import errno
import gc
import os
import pickle
import signal
import socket
import struct
import time

import _socket

from .._engine.conn import Env
from ..proxy.sniff import Sniffer
from ..proxy.snapshot import EntryPointRuntime, Pools, compile_config, compile_steps
from . import handoff, share
from .log import log, reopen as reopen_log
from .loop import EPOLLIN, Loop
from .release import Releaser


_SOCK_STREAM = int(socket.SOCK_STREAM)
_IPPROTO_TCP = socket.IPPROTO_TCP
_TCP_NODELAY = socket.TCP_NODELAY


from .listeners import ListenError, bind_listener  # noqa: E402,F401  (re-exported)


class Acceptor:
    __slots__ = ("worker", "sock", "ep", "tls_ep", "fd", "family", "_accept")

    def __init__(self, worker, sock, ep, tls_ep):
        self.worker = worker
        self.sock = sock
        self.ep = ep              # the entry point as plain connections see it
        self.tls_ep = tls_ep      # the same entry point for TLS connections (ep.tls True)
        self.fd = sock.fileno()
        self.family = int(sock.family)
        self._accept = sock._accept

    def on_event(self, ev):
        # One accept per readiness event: the listener is level-triggered, so a burst is
        # taken over the next loop turns, and a lone connection costs no accept that only
        # returns EAGAIN (a batch loop measured no better p99 under a 1,000-connection burst)
        try:
            fd, addr = self._accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.worker.accept_failed(self, e)
            return
        # the C socket object: socket.accept's Python wrapper converts family and type to
        # enums per call, and nothing here needs the Python-level socket class
        conn = _socket.socket(self.family, _SOCK_STREAM, 0, fd)
        conn.setblocking(False)
        conn.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        env = self.worker.env
        ip = addr[0]
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[7:]
        # TLS or plain is told by the connection's first bytes (Traefik does the same)
        env.clients.add(Sniffer(env, self.ep, self.tls_ep, conn, ip.encode(), addr[1]))

    def abort(self):
        pass


# accept() errors that mean "no resources now" (descriptors, kernel memory): the listener
# stays readable, so retrying at once would spin (issue #11: 50,000 log lines a second)
_NO_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_BACKOFF = 0.5      # seconds the listeners are out of the epoll set (nginx: 500 ms)
LOG_INTERVAL = 10.0       # one log line per interval, with the count of what it stands for
SPARE_DRAIN = 64          # at most this many queued connections refused per back-off
LEAVE_DRAIN = 4096        # the most a queue holds (listen backlog): emptied before closing
REJOIN_ROOM = 0.1         # rejoin the SO_REUSEPORT group with this share of the limit free
REJOIN_MIN = 4            # (and at least this many descriptors)


def _nofile():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _spare_fd():
    try:
        return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


class ConfigPipe:
    """Reads messages from the master: length-prefixed, a configuration as a
    pyroute.server.handoff payload (taken in slices: ``Reload``), the rest plain pickles."""

    __slots__ = ("worker", "sock", "fd", "buf")

    def __init__(self, worker, sock):
        self.worker = worker
        self.sock = sock
        self.sock.setblocking(False)
        self.fd = sock.fileno()
        self.buf = bytearray()

    def on_event(self, ev):
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            # the master is gone: nobody supervises us any more, drain and exit
            self.worker.loop.unregister(self.fd)
            self.worker.start_drain("master exited")
            return
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = struct.unpack_from("!I", self.buf)
            if len(self.buf) < 4 + n:
                break
            payload = bytes(self.buf[4:4 + n])
            del self.buf[:4 + n]
            if payload.startswith(handoff.MAGIC):
                self.worker.begin_reload(payload)
            else:
                self.worker.apply(pickle.loads(payload))

    def abort(self):
        pass


class Reload:
    """A new configuration taken in slices across loop turns (issue #11: at 10,000 routers,
    unpickling and compiling it at once held the loop for 1-2 s). Each turn runs the loader
    (pyroute.server.handoff.loads_steps) and then the compiler
    (pyroute.proxy.snapshot.compile_steps) for at most ``BUDGET`` and hands the loop back.
    What drives it is an eventfd left readable while work is pending (level-triggered): each
    epoll_wait returns at once with it among the ready sockets, which are served in the same
    turn, at no system call more (a timer due "now" would run again at once in the same
    timer pass, and call_soon's queue too). The old snapshot serves until the new one is
    complete; then the worker swaps it in between two events. A newer configuration
    arriving meanwhile replaces this one.

    The cyclic GC is off while a reload builds: a full collection over the half-built
    configuration's objects costs ~0.1 s in one piece; at the swap they are frozen out of
    the collector's generations (as the start-up config is) and the GC comes back on."""

    __slots__ = ("worker", "steps", "started", "turns", "longest", "longest_cpu", "fd")

    BUDGET = 0.002

    def __init__(self, worker, payload):
        self.worker = worker
        self.steps = self._steps(payload)
        self.started = worker.loop.now
        self.turns = 0
        self.longest = 0.0
        self.longest_cpu = 0.0        # CPU time of this thread: what the worker's own code took
        self.fd = os.eventfd(1, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        worker.loop.register(self.fd, EPOLLIN, self)

    def stop(self):
        if self.fd >= 0:
            self.worker.loop.forget(self.fd)
            os.close(self.fd)             # closing it takes it out of the epoll set
            self.fd = -1
        self.steps = None

    def on_event(self, ev):
        self.run()

    def _steps(self, payload):
        if isinstance(payload, bytes):
            config = yield from handoff.loads_steps(payload)
            yield
        else:
            config = payload          # already a configuration (apply)
        snap = yield from compile_steps(config, self.worker.env.pools)
        return snap

    def run(self):
        worker = self.worker
        if worker.reload is not self:
            self.stop()                   # replaced by a newer configuration
            return
        clock = worker.loop._monotonic
        start = clock()
        cpu = time.thread_time()
        end = start + self.BUDGET
        steps = self.steps
        try:
            while clock() < end:
                next(steps)
        except StopIteration as done:
            worker.reload = None
            self.stop()
            worker.swap(done.value, self)
            self._took(clock() - start, time.thread_time() - cpu)   # the swap counted in
            worker.swapped(self)
            return
        except Exception as e:  # the master validated it; keep serving the old one anyway
            worker.reload = None
            self.stop()
            gc.enable()
            log("error", "worker could not compile the new configuration; keeping the old one",
                error=str(e))
            return
        self._took(clock() - start, time.thread_time() - cpu)

    def _took(self, t, cpu):
        self.turns += 1
        if t > self.longest:
            self.longest = t
        if cpu > self.longest_cpu:
            self.longest_cpu = cpu

    def abort(self):
        pass


class Signals:
    """The wakeup fd of Python's signal handling: makes epoll return when a signal arrives."""

    __slots__ = ("worker", "sock", "fd", "_w")

    def __init__(self, worker):
        self.worker = worker
        self.sock, wsock = socket.socketpair()
        self.sock.setblocking(False)
        wsock.setblocking(False)
        self.fd = self.sock.fileno()
        self._w = wsock
        signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)

    def on_event(self, ev):
        try:
            self.sock.recv(512)
        except BlockingIOError:
            pass

    def abort(self):
        pass


class Worker:
    def __init__(self, config, pipe, index, down=(), sockets=None):
        self.index = index
        self.sockets = sockets        # {entry point: listening socket} opened by the master
        self.loop = Loop()
        self.env = Env(self.loop, Pools())
        self.env.pools.serving = True
        self.pipe = pipe
        self.listeners = []
        self.entry_points = {name: EntryPointRuntime(ep) for name, ep in
                             config.static.entry_points.items()}
        self.tls_entry_points = {name: EntryPointRuntime(ep, tls=True) for name, ep in
                                 config.static.entry_points.items()}
        self.env.snapshot = compile_config(config, self.env.pools)
        self.reload = None            # the Reload being built, if any
        self.releaser = Releaser(self.loop, self.released)   # old configurations, freed
        self.drain_deadline = 0.0
        # out of descriptors (accept_failed): a spare one to give up, the back-off state
        self.spare = _spare_fd()
        self.accept_paused = False
        self.accept_resume_at = 0.0
        self.accept_errors = 0        # since the last log line
        self.accept_log_at = 0.0
        self.accept_other_log_at = 0.0
        self.refused = 0              # connections accepted and closed for lack of fds
        # out of the SO_REUSEPORT group while saturated (pyroute.server.share)
        self.shares = share.get()
        self.left_group = False
        if self.shares is not None:
            self.shares.joined(index)
        self.down = set()             # (service, url) the master's health checks say are down
        self.apply_health(True, down)
        # metrics.prometheus / otlp: counted here per exchange (Env.observers), handed to the master
        # every FLUSH_INTERVAL over the pipe (pyroute.observability.metrics)
        self.recorder = None
        self.up_buf = b""             # what is still to be written up to the master
        self.flush_at = 0.0
        metrics = getattr(config.static, "metrics", None)
        if metrics is not None and pipe is not None and (
                metrics.prometheus is not None or getattr(metrics, "otlp", None) is not None):
            from ..observability.metrics import Recorder
            self.recorder = Recorder(metrics)
            self.env.observers.append(self.recorder.observe)
            from ..proxy import mirror
            mirror.metering = self.recorder      # mirrors' copies, on their services
            from ..middlewares import retry
            retry.observers.append(self.recorder.attempt)    # each attempt, on its service
        # the access log (static accessLog): an observer of finished exchanges, its writer
        # thread started here, after the fork
        self.access_log = None
        self.reopen = False
        if config.static.access_log.enabled:
            from ..observability.accesslog import AccessLogger
            try:
                self.access_log = AccessLogger(config.static.access_log)
            except OSError as e:
                log("error", "error opening access log file; no access log",
                    filePath=config.static.access_log.file_path, error=e.strerror or str(e))
            else:
                self.env.observers.append(self.access_log.observe)

        # tracing: the OpenTelemetry SDK (its export thread) is set up here, in the worker,
        # after the fork; the routers' TraceStart steps were compiled in with the snapshot
        self.tracer = None
        conf = getattr(config.static, "tracing", None)
        if conf is not None:
            from ..observability import tracing
            missing = tracing.missing_packages()
            if missing is not None:
                if index == 0:
                    log("error", missing)
            else:
                from .._version import __version__
                self.tracer = tracing.Exporter(conf, __version__,
                                               getattr(config.static, "metrics", None))
                self.env.observers.append(self.tracer.observe)
                from ..middlewares import retry
                retry.observers.append(self.tracer.attempt)     # per-attempt spans

    # ---- out of file descriptors --------------------------------------------------------

    def accept_failed(self, acc, e):
        """accept() failed. Out of descriptors (or kernel memory), the listener stays
        readable and retrying at once spins a core: instead, as nginx does, the listeners
        leave the epoll set for ACCEPT_BACKOFF and come back on the sweep after it. The
        spare descriptor held for this moment is given up to accept the queued connections
        and close them at once, so their clients see a close/reset now instead of waiting in
        the queue (libuv's EMFILE trick); a client that retries lands, by SO_REUSEPORT's hash
        of its new source port, most likely on a sibling worker with room. One log line per
        LOG_INTERVAL, with the count. With a sibling that has room, the worker also leaves
        the SO_REUSEPORT group until it has room again (``_leave_group``; see
        docs/operations.md, "Limits and failures")."""
        now = self.loop.now
        if e.errno not in _NO_RESOURCES:
            # e.g. ECONNABORTED (the client reset it while it was queued): nothing to back off
            # from — pausing here would let any client stall the listener; logged, bounded
            if now >= self.accept_other_log_at:
                log("debug", "accept failed", worker=self.index, entryPointName=acc.ep.name,
                    error=e.strerror or str(e))
                self.accept_other_log_at = now + LOG_INTERVAL
            return
        self.accept_errors += 1
        if now >= self.accept_log_at:
            log("warn", "accept failed; new connections are refused for a moment",
                worker=self.index,
                entryPointName=acc.ep.name, error=e.strerror or str(e),
                count=self.accept_errors, interval="%gs" % LOG_INTERVAL)
            self.accept_errors = 0
            self.accept_log_at = now + LOG_INTERVAL
        if self.spare >= 0:
            os.close(self.spare)
            self.spare = -1
            refused = 0
            for other in self.listeners:
                while refused < SPARE_DRAIN:
                    try:
                        fd, _ = other._accept()
                    except OSError:
                        break
                    refused += 1
                    os.close(fd)
            self.refused += refused
            self.spare = _spare_fd()
        if not self.accept_paused:
            self.accept_paused = True
            self.accept_resume_at = now + ACCEPT_BACKOFF
            for other in self.listeners:
                self.loop.unregister(other.fd)
            self.loop.next_sweep = min(self.loop.next_sweep, self.accept_resume_at)
            self._leave_group(acc)

    # ---- a saturated worker out of the SO_REUSEPORT group -------------------------------
    # Out of descriptors, the worker closes its listening sockets while a sibling still takes
    # its share (pyroute.server.share): the kernel's hash then sends every new connection to
    # the siblings instead of refusing a share of them here. Closing a listener resets what
    # waits in its queue, so the queue is emptied first with the spare descriptor (accepted
    # and closed, as above: those clients are refused either way); only a connection that
    # arrives between that last accept and the close is reset. The worker rejoins — fresh
    # sockets bound to the same addresses — once it has descriptors to spare again.

    def _leave_group(self, acc):
        if self.left_group or self.shares is None or self.env.draining:
            return
        if not self.shares.try_leave(self.index):
            return                        # no sibling takes its share: stay (and refuse)
        refused = 0
        for other in self.listeners:
            while refused < LEAVE_DRAIN:
                if self.spare >= 0:
                    os.close(self.spare)
                    self.spare = -1
                try:
                    fd, _ = other._accept()
                except OSError:
                    break
                refused += 1
                os.close(fd)
            other.sock.close()
        self.refused += refused
        self.spare = _spare_fd()
        self.left_group = True
        log("warn", "out of file descriptors: this worker stopped taking its share of new "
            "connections; its siblings take them", worker=self.index,
            entryPointName=acc.ep.name, refused=refused)

    def _rejoin_group(self):
        """Back in the group once descriptors are spare (REJOIN_ROOM of the limit free)."""
        soft = _nofile()
        try:
            used = len(os.listdir("/proc/self/fd"))
        except OSError:
            return False
        if soft - used < max(REJOIN_MIN, soft * REJOIN_ROOM):
            return False
        fresh = []
        try:
            for acc in self.listeners:
                fresh.append(bind_listener(acc.ep.ep))
        except (ListenError, OSError) as e:
            for sock in fresh:
                sock.close()
            log("warn", "could not listen again; retrying", worker=self.index,
                error=str(e))
            return False
        for acc, sock in zip(self.listeners, fresh):
            acc.sock = sock
            acc.fd = sock.fileno()
            acc._accept = sock._accept
        self.left_group = False
        self.shares.joined(self.index)
        log("info", "this worker takes its share of new connections again", worker=self.index)
        return True

    def _resume_accepting(self, now):
        if not self.accept_paused or now < self.accept_resume_at:
            return
        if self.left_group and not self.env.draining and not self._rejoin_group():
            self.accept_resume_at = now + ACCEPT_BACKOFF    # checked again after a while
            return
        self.accept_paused = False
        if self.env.draining:
            return
        if self.spare < 0:
            self.spare = _spare_fd()
        for acc in self.listeners:
            self.loop.register(acc.fd, EPOLLIN, acc)

    def apply(self, config):
        if isinstance(config, tuple) and config[0] == "health":
            self.apply_health(config[1], config[2])
            return
        # a configuration sent as one pickle: compiled in slices all the same
        self.begin_reload(config)

    def begin_reload(self, payload):
        """A new configuration (its handoff payload, or itself) arrived: build it in slices
        (``Reload``); one still building is dropped for it."""
        if self.reload is not None:
            self.reload.stop()
        gc.disable()
        self.reload = Reload(self, payload)

    def swap(self, snap, reload):
        for service, url in self.down:
            snap.set_health(service, url, False)
        old = self.env.snapshot
        self.env.snapshot = snap      # swapped between events: nothing is mid-request here
        # the old one is freed in slices once nothing references it (pyroute.server.release:
        # dropped here at 10,000 routers, its deallocation held the loop for ~50 ms)
        self.releaser.release(old)
        old = None
        self.releaser.check()
        gc.freeze()                   # config objects live long: keep them out of GC passes
        gc.enable()

    def swapped(self, reload):
        log("debug", "worker swapped configuration", worker=self.index,
            took="%.3fs" % (self.loop._monotonic() - reload.started), turns=reload.turns,
            longestTurn="%.1fms" % (reload.longest * 1000),
            longestTurnCPU="%.1fms" % (reload.longest_cpu * 1000))

    def released(self, releaser, objects):
        log("debug", "worker freed an old configuration", worker=self.index,
            objects=objects, turns=releaser.turns,
            longestTurnCPU="%.1fms" % (releaser.longest * 1000))

    def apply_health(self, full, items):
        """Server status from the master's health checks (pyroute.server.health)."""
        snap = self.env.snapshot
        if full:
            for service, url in self.down:
                snap.set_health(service, url, True)
            self.down = set()
        for service, url, up in items:
            if up:
                self.down.discard((service, url))
            else:
                self.down.add((service, url))
            snap.set_health(service, url, up)

    def _flush_metrics(self, now):
        if now < self.flush_at:
            return
        from ..observability.metrics import FLUSH_INTERVAL, open_connections
        self.flush_at = now + FLUSH_INTERVAL
        self._send_up(("metrics", self.recorder.take(), open_connections(self.env.clients,
                                                                    self.entry_points)))

    def _send_up(self, msg):
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        self.up_buf += struct.pack("!I", len(data)) + data
        try:
            n = self.pipe.send(self.up_buf)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.up_buf = b""        # the master is gone
            return
        # the rest goes with the next hand-off (whole frames only are appended)
        self.up_buf = self.up_buf[n:]

    def final_flush(self):
        """At exit: the last deltas, written in full (bounded wait)."""
        if self.recorder is None or self.pipe is None:
            return
        try:
            data = pickle.dumps(("metrics", self.recorder.take(), {}),
                                protocol=pickle.HIGHEST_PROTOCOL)
            self.pipe.settimeout(1.0)
            self.pipe.sendall(self.up_buf + struct.pack("!I", len(data)) + data)
        except OSError:
            pass

    def start_drain(self, why):
        env = self.env
        if env.draining:
            return
        env.draining = True
        for acc in self.listeners:
            if not self.accept_paused:
                self.loop.unregister(acc.fd)
            acc.sock.close()
        self.listeners = []
        grace = max([ep.grace_timeout for ep in self.entry_points.values()] or [10.0])
        self.drain_deadline = self.loop.now + grace
        for c in list(env.clients):
            if c.is_idle():
                c.close()
            else:
                c.keep_alive = False     # its response says "Connection: close"
        log("debug", "worker draining", worker=self.index, reason=why,
            connections=len(env.clients))

    def _check(self, now):
        if self.reopen:
            self.reopen = False
            reopen_log()
            if self.access_log is not None:
                self.access_log.reopen()
        if self.access_log is not None:
            self.access_log.tick(now)
        if self.accept_paused:
            self._resume_accepting(now)
        if self.term:
            self.term = False
            # transport.lifeCycle.requestAcceptGraceTimeout (Traefik's TCPEntryPoint.Shutdown
            # sleeps that long before shutting the server down): keep accepting and serving,
            # keep-alive included, for that long; then drain (graceTimeOut starts then)
            accept_grace = max([ep.ep.request_accept_grace_timeout
                                for ep in self.entry_points.values()] or [0.0])
            if accept_grace > 0 and not self.env.draining:
                self.accept_until = now + accept_grace
                log("info", "SIGTERM: still accepting requests before draining",
                    worker=self.index, requestAcceptGraceTimeout="%gs" % accept_grace)
                for acc in list(self.listeners):
                    if acc.ep.ep.request_accept_grace_timeout <= 0:
                        # this entry point has no grace: it stops accepting now
                        self.loop.unregister(acc.fd)
                        acc.sock.close()
                        self.listeners.remove(acc)
            else:
                self.start_drain("SIGTERM")
        if self.accept_until and now >= self.accept_until:
            self.accept_until = 0.0
            self.start_drain("SIGTERM (requestAcceptGraceTimeout over)")
        env = self.env
        if env.draining:
            for c in list(env.clients):
                if c.is_idle():
                    c.close()
            if not env.clients or now >= self.drain_deadline:
                self.loop.running = False

    def run(self):
        self.term = False
        self.accept_until = 0.0
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGQUIT, lambda *a: os._exit(0))
        signal.signal(signal.SIGUSR1, self._on_usr1)
        sig = Signals(self)
        self.loop.register(sig.fd, EPOLLIN, sig)
        for name, ep in self.entry_points.items():
            sock = self.sockets.get(name) if self.sockets else None
            if sock is None:
                sock = bind_listener(ep.ep)
            acc = Acceptor(self, sock, ep, self.tls_entry_points[name])
            self.listeners.append(acc)
            self.loop.register(acc.fd, EPOLLIN, acc)
        if self.pipe is not None:
            cp = ConfigPipe(self, self.pipe)
            self.loop.register(cp.fd, EPOLLIN, cp)
        self.loop.idle_hooks.append(self._check)
        if self.recorder is not None:
            self.flush_at = self.loop.now
            self.loop.idle_hooks.append(self._flush_metrics)
        # everything built so far (config, tables, pools) lives as long as the process: move
        # it out of the cyclic GC's generations so collections only walk per-request objects
        gc.freeze()
        try:
            self.loop.run(self.env)
        finally:
            self.final_flush()
            if self.access_log is not None:
                self.access_log.close()     # what is buffered is written (or reported)
            if self.tracer is not None:
                self.tracer.close()         # the queued spans are exported (bounded)
        return 0

    def _on_usr1(self, signum, frame):
        self.reopen = True
        self.loop.next_sweep = 0.0

    def _on_term(self, signum, frame):
        # handled by the loop (the wakeup fd makes epoll return at once)
        self.term = True
        self.loop.next_sweep = 0.0


def worker_main(config, pipe, index, down=(), sockets=None):
    worker = Worker(config, pipe, index, down, sockets)
    profile = os.environ.get("PYROUTE_PROFILE")
    if not profile:
        return worker.run()
    # PYROUTE_PROFILE=/path/prefix: each worker writes cProfile stats to prefix.<pid> on exit
    import cProfile
    prof = cProfile.Profile()
    try:
        return prof.runcall(worker.run)
    finally:
        prof.dump_stats("%s.%d" % (profile, os.getpid()))
