"""PYROUTE_LOOP_STATS (bench/tail.py): a worker writes its loop's histograms -- turn lengths in
wall and CPU time, events per turn, sweeps, GC pauses -- to <path>.<pid> at every sweep."""
import json
import socket
import time

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response, worker_pids

ROUTE = ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
         "metadata: {name: r, namespace: default}\nspec:\n  entryPoints: [web]\n"
         "  routes:\n    - match: Host(`a.test`)\n      kind: Rule\n"
         "      services: [{name: be, port: 80}]\n")


def test_worker_writes_loop_histograms(tmp_path, monkeypatch):
    be = Backend("be")
    monkeypatch.setenv("PYROUTE_LOOP_STATS", str(tmp_path / "loop"))
    try:
        with Pyroute(tmp_path, backend_service("be", [be.port]) + ROUTE, workers=1) as pr:
            with socket.create_connection(("127.0.0.1", pr.port), timeout=10) as s:
                for _ in range(20):
                    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
                    assert read_response(s)[0] == 200
            (pid,) = worker_pids(pr.proc.pid)
            path = tmp_path / ("loop.%d" % pid)
            deadline = time.time() + 5
            while time.time() < deadline:
                if path.exists():
                    stats = json.loads(path.read_text())
                    if sum(stats["events_by16"]) >= 20:
                        break
                time.sleep(0.1)
            else:
                raise AssertionError("no loop statistics written: %s" % pr.output())
    finally:
        be.close()
    turns = sum(stats["turn_us_log2"])
    # every turn with events is counted once in each histogram of turns
    assert turns == sum(stats["events_by16"]) == sum(stats["turn_cpu_us_log2"]) >= 20
    assert stats["events_by16"][0] == 0          # turns without events are not counted
    assert sum(stats["sweep_us_log2"]) >= 1
    assert len(stats["gc0_us_log2"]) == 32


def test_max_events_one_serves_every_connection(tmp_path, monkeypatch):
    # PYROUTE_MAX_EVENTS (bench/tail.py's batch-size comparison): with one event per epoll_wait
    # the events left ready are handed over by later turns, none lost (edge-triggered sockets
    # get no second edge): 32 requests in flight at once are all answered, in >= 64 turns
    # (each takes a client read and a backend read, one per turn)
    be = Backend("be")
    monkeypatch.setenv("PYROUTE_LOOP_STATS", str(tmp_path / "loop"))
    monkeypatch.setenv("PYROUTE_MAX_EVENTS", "1")
    socks = []
    try:
        with Pyroute(tmp_path, backend_service("be", [be.port]) + ROUTE, workers=1) as pr:
            (pid,) = worker_pids(pr.proc.pid)
            path = tmp_path / ("loop.%d" % pid)
            deadline = time.time() + 5
            while not path.exists() and time.time() < deadline:
                time.sleep(0.1)       # the first sweep's stats: turns before the requests
            before = sum(json.loads(path.read_text())["turn_us_log2"])
            for _ in range(32):
                socks.append(socket.create_connection(("127.0.0.1", pr.port), timeout=10))
            for s in socks:
                s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            for s in socks:
                assert read_response(s)[0] == 200
            deadline = time.time() + 5
            while time.time() < deadline:
                turns = sum(json.loads(path.read_text())["turn_us_log2"]) - before
                if turns >= 64:
                    break
                time.sleep(0.1)
    finally:
        for s in socks:
            s.close()
        be.close()
    assert turns >= 64
