"""End to end: the process model — reloads (file change, SIGHUP, invalid config refused, under
load with no failed request), SIGTERM drain, a SIGKILLed worker replaced, the bundled demo."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from e2e_backend import Backend
from e2e_support import (REPO, Pyroute, backend_service, free_port, get, read_response,
                          worker_pids)


def manifests(port, version, extra_route=""):
    return backend_service("svc", [port]) + """---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: version, namespace: default}
spec:
  headers:
    customResponseHeaders: {X-Version: "%d"}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: main, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: Host(`a.test`)
      kind: Rule
      middlewares: [{name: version}]
      services: [{name: svc, port: 80}]
%s""" % (version, extra_route)


def wait_version(port, version, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        status, hdrs, _ = get(port, "/", "a.test")
        if hdrs.get("x-version") == str(version):
            return
        time.sleep(0.05)
    raise AssertionError("version %s never served" % version)


class Load:
    """Clients sending requests in a loop (keep-alive and fresh connections); counts failures."""

    def __init__(self, port, threads=4):
        self.port = port
        self.ok = 0
        self.failures = []
        self.running = True
        self.threads = [threading.Thread(target=self._run, args=(i % 2 == 0,), daemon=True)
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, keep_alive):
        sock = None
        while self.running:
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                sock.sendall(b"GET /load HTTP/1.1\r\nHost: a.test\r\n\r\n")
                status, hdrs, body, rest = read_response(sock)
                if status != 200:
                    self.failures.append(status)
                else:
                    self.ok += 1
                if not keep_alive or hdrs.get("connection") == "close":
                    sock.close()
                    sock = None
            except Exception as e:  # any failure counts
                self.failures.append(repr(e))
                if sock is not None:
                    sock.close()
                sock = None

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(15)


def test_reload_on_file_change_under_load_drops_nothing(tmp_path):
    be = Backend("a")
    proxy = Pyroute(tmp_path, manifests(be.port, 0), workers=2)
    try:
        proxy.start()
        wait_version(proxy.port, 0)
        load = Load(proxy.port)
        for v in range(1, 21):
            proxy.write_manifests(manifests(be.port, v))
            wait_version(proxy.port, v)
        time.sleep(0.3)
        load.stop()
        assert load.failures == [], load.failures[:5]
        assert load.ok > 100
        assert "configuration reloaded" in proxy.output()
    finally:
        proxy.stop()
        be.close()


def test_sighup_reloads_and_invalid_config_is_refused(tmp_path):
    be = Backend("a")
    proxy = Pyroute(tmp_path, manifests(be.port, 1), workers=1)
    try:
        proxy.start()
        wait_version(proxy.port, 1)
        # a broken static file makes the whole config unusable: refused, old one serves
        good_static = proxy.static.read_text()
        proxy.static.write_text("entryPoints: [not, a, mapping]\n")
        proxy.signal(signal.SIGHUP)
        time.sleep(1.0)
        assert "reload refused" in proxy.output()
        status, hdrs, _ = get(proxy.port, "/", "a.test")
        assert status == 200 and hdrs["x-version"] == "1"
        proxy.static.write_text(good_static)
        # SIGHUP picks up a change the watcher does not see (files outside the manifest dir)
        (proxy.mdir / "config.yaml").write_text(manifests(be.port, 2))
        proxy.signal(signal.SIGHUP)
        wait_version(proxy.port, 2)
    finally:
        proxy.stop()
        be.close()


def test_sigterm_drains_in_flight_requests(tmp_path):
    be = Backend("a")
    proxy = Pyroute(tmp_path, manifests(be.port, 1), workers=1, grace="10s")
    try:
        proxy.start()
        s = socket.create_connection(("127.0.0.1", proxy.port))
        s.sendall(b"GET /slow/1500 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        idle = socket.create_connection(("127.0.0.1", proxy.port))   # idle keep-alive
        time.sleep(0.4)
        t0 = time.time()
        proxy.signal(signal.SIGTERM)
        status, hdrs, body, _ = read_response(s, timeout=10)
        assert status == 200 and hdrs.get("connection") == "close"
        idle.settimeout(5)
        assert idle.recv(100) == b""        # the idle connection was closed, not answered
        proxy.proc.wait(10)
        assert proxy.proc.returncode == 0
        assert time.time() - t0 < 8
    finally:
        proxy.stop()
        be.close()


def test_sigkilled_worker_comes_back_and_others_keep_serving(tmp_path):
    be = Backend("a")
    proxy = Pyroute(tmp_path, manifests(be.port, 1), workers=2)
    try:
        proxy.start()
        end = time.time() + 10
        while len(worker_pids(proxy.proc.pid)) < 2 and time.time() < end:
            time.sleep(0.05)
        pids = worker_pids(proxy.proc.pid)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.2)
        for _ in range(20):
            assert get(proxy.port, "/", "a.test")[0] == 200
        end = time.time() + 10
        while time.time() < end:
            now = worker_pids(proxy.proc.pid)
            if len(now) == 2 and pids[0] not in now:
                break
            time.sleep(0.05)
        now = worker_pids(proxy.proc.pid)
        assert len(now) == 2 and pids[0] not in now and pids[1] in now
        assert "worker died; restarting" in proxy.output()
    finally:
        proxy.stop()
        be.close()


def test_bare_pyroute_run_serves_the_demo():
    proc = subprocess.Popen([sys.executable, "-m", "pyroute", "run", "-w", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(REPO))
    try:
        end = time.time() + 20
        while time.time() < end:
            try:
                status, hdrs, body = get(8000, "/api/users", "demo.localhost")
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("demo did not start")
        assert status == 200
        assert b"Hostname: echo-b" in body and b"GET /users HTTP/1.1" in body
        assert hdrs["x-served-by"] == "pyroute-demo"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    assert "curl -H 'Host: demo.localhost'" in out


def test_second_signal_stops_at_once(tmp_path):
    be = Backend("a")
    proxy = Pyroute(tmp_path, manifests(be.port, 1), workers=1, grace="30s")
    try:
        proxy.start()
        s = socket.create_connection(("127.0.0.1", proxy.port))
        s.sendall(b"GET /slow/20000 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        time.sleep(0.3)
        t0 = time.time()
        proxy.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert proxy.proc.poll() is None       # draining: the slow request holds it
        proxy.signal(signal.SIGINT)
        proxy.proc.wait(5)
        assert time.time() - t0 < 3
        s.close()
    finally:
        proxy.stop()
        be.close()


def test_crash_looping_workers_make_the_master_give_up(tmp_path):
    # a worker that keeps dying (killed here as soon as it is up) is restarted with backoff;
    # after CRASH_LIMIT deaths the master gives up on it and, every slot given up, exits 1.
    # (A port held by another program no longer makes workers crash-loop: the master refuses
    # to start with a clear error, tests/test_e2e_limits.py.)
    be = Backend("a")
    proxy = Pyroute(tmp_path, manifests(be.port, 1), workers=1)
    try:
        proxy.start()
        killed = set()
        end = time.time() + 30
        while proxy.proc.poll() is None and time.time() < end:
            for pid in worker_pids(proxy.proc.pid):
                if pid not in killed:
                    killed.add(pid)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.02)
        assert proxy.proc.wait(10) == 1
        out = proxy.output()
        assert "worker died; restarting" in out and "not restarting it" in out
        assert "every worker is in a crash loop" in out
        assert len(killed) == 5
    finally:
        proxy.stop()
        be.close()


def test_responding_timeouts_idle_and_read(tmp_path):
    be = Backend("a")
    proxy = Pyroute(tmp_path, manifests(be.port, 1), workers=1, read="1s", idle="1s")
    try:
        proxy.start()
        # idleTimeout: a keep-alive connection left idle is closed without a word
        idle = socket.create_connection(("127.0.0.1", proxy.port))
        idle.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        assert read_response(idle)[0] == 200
        t0 = time.time()
        idle.settimeout(5)
        assert idle.recv(100) == b""
        assert 0.8 <= time.time() - t0 < 3
        # readTimeout: a head that never ends is cut off
        slow = socket.create_connection(("127.0.0.1", proxy.port))
        slow.sendall(b"GET / HTTP/1.1\r\nHost: a.te")
        t0 = time.time()
        slow.settimeout(5)
        assert slow.recv(100) == b""
        assert 0.8 <= time.time() - t0 < 3
        assert get(proxy.port, "/", "a.test")[0] == 200
    finally:
        proxy.stop()
        be.close()


def test_reload_with_entry_point_changes_logs_restart_needed_and_applies_the_rest(tmp_path):
    # Listeners are bound once, for life: a reload that adds or changes an entry point names
    # it in a log line (a restart is needed) and still applies the routers/services.
    be = Backend("a")
    proxy = Pyroute(tmp_path, manifests(be.port, 1), workers=1)
    extra = free_port()
    try:
        proxy.start()
        wait_version(proxy.port, 1)
        static = proxy.static.read_text().replace("readTimeout: 60s", "readTimeout: 30s")
        assert static != proxy.static.read_text()
        static = static.replace("log:", "  extra:\n    address: \"127.0.0.1:%d\"\nlog:" % extra)
        proxy.static.write_text(static)
        (proxy.mdir / "config.yaml").write_text(manifests(be.port, 2))
        proxy.signal(signal.SIGHUP)
        wait_version(proxy.port, 2)          # the rest of the config was applied
        out = proxy.output()
        line = [ln for ln in out.splitlines() if "entry point changes need a restart" in ln]
        assert line, out
        assert "extra (added)" in line[0] and "web (changed)" in line[0]
        with pytest.raises(OSError):         # no listener opened by a reload
            socket.create_connection(("127.0.0.1", extra), timeout=1).close()
        # a worker forked after the reload binds what the others hold, not the new entry point
        pid = worker_pids(proxy.proc.pid)[0]
        os.kill(pid, signal.SIGKILL)
        end = time.time() + 10
        while time.time() < end:
            now = worker_pids(proxy.proc.pid)
            if now and pid not in now:
                break
            time.sleep(0.05)
        proxy.wait_ready()
        wait_version(proxy.port, 2)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", extra), timeout=1).close()
    finally:
        proxy.stop()
        be.close()
