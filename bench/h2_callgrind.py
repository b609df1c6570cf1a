"""Instructions per HTTP/2 request in pyroute's worker, counted by callgrind: deterministic
where CPU time on this shared machine is not (bench/h2.py measures that, beside nginx).

    .venv/bin/python bench/h2_callgrind.py [--requests 2000] [--streams 1] [--path /small]
                                           [--python /work/main/.venv/bin/python] [--nginx]

pyroute (one worker, bench/h2.py's config, h2c in front, the HTTP/1.1 origin of bench/load.py
behind) runs under ``valgrind --tool=callgrind``, collecting only inside the worker's event
loop (``--toggle-collect`` on conn.run_loop's wrapper: the master and start-up are left out).
After a warm-up the counters are zeroed, h2load sends ``--requests`` on one connection with
``--streams`` at a time, and the dump's instruction total divided by the requests is printed
(user space only: the kernel's share of a syscall is not counted). ``--python`` measures
another checkout's build; ``--nginx`` counts nginx's worker the same way for scale; ``--h2c`` reaches the origin over
h2c (``scheme: h2c``, bench/h2c_backend.py's origin) instead of HTTP/1.1. With
``--annotate N`` the N costliest functions (inclusive) are listed too.
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import free_port, start_origin  # noqa: E402
from h2 import h2load, start_nginx_h2, start_pyroute_h2  # noqa: E402


def wait_port(port, timeout=300):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit("nothing listens on %d" % port)


def total_ir(path):
    # "summary:" (or "totals:") line of a callgrind dump: the first event is Ir
    for line in open(path):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0


def run(argv, cwd, port, out_dir, toggle, requests, streams, path, annotate):
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--collect-atstart=no",
           "--toggle-collect=" + toggle,
           "--callgrind-out-file=%s/cg.%%p" % out_dir] + argv
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=os.setsid, cwd=cwd)
    try:
        wait_port(port)
        h2load(port, path, 200, streams)          # warm-up: pools, caches, first turns
        time.sleep(0.5)
        subprocess.run(["callgrind_control", "-z"], capture_output=True)
        for f in glob.glob("%s/cg.*" % out_dir):
            os.unlink(f)
        r = h2load(port, path, requests, streams)
        subprocess.run(["callgrind_control", "-d"], capture_output=True)
        time.sleep(1.0)
        best, best_ir = None, 0
        for f in glob.glob("%s/cg.*" % out_dir):
            ir = total_ir(f)
            if ir > best_ir:
                best, best_ir = f, ir
        if annotate and best:
            out = subprocess.run(["callgrind_annotate", "--inclusive=yes", best],
                                 capture_output=True, text=True).stdout
            lines = [ln for ln in out.splitlines() if re.match(r"\s*[\d,]+ ", ln)]
            for ln in lines[:annotate]:
                print("   ", ln[:160])
        return best_ir, r["requests"]
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--path", default="/small")
    ap.add_argument("--python", help="the interpreter whose pyroute is measured")
    ap.add_argument("--nginx", action="store_true", help="count nginx's worker instead")
    ap.add_argument("--annotate", type=int, default=0)
    ap.add_argument("--h2c", action="store_true", help="the backend over h2c")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "h2load", "nginx"):
        if not shutil.which(tool):
            sys.exit("%s is missing" % tool)
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-h2cg-"))
    tmp.chmod(0o755)
    origin_port = free_port()
    if args.h2c:
        from h2c_backend import start_origins
        h2_port = free_port()
        origin = start_origins(tmp, origin_port, h2_port)
    else:
        origin = start_origin(tmp, origin_port)
    port = free_port()
    try:
        if args.nginx:
            proc = start_nginx_h2(tmp, port, origin_port, "")
            argv = proc.p.args
            proc.stop()
            toggle = "ngx_process_events_and_timers"
            cwd = None
        else:
            proc = start_pyroute_h2(tmp, port, origin_port, "", python=args.python)
            argv = list(proc.p.args)
            proc.stop()
            if args.h2c:
                m = tmp / ("pyroute-%d" % port) / "m.yaml"
                m.write_text(m.read_text().replace(
                    "services: [{name: origin, port: 80}]",
                    "services: [{name: origin, port: 80, scheme: h2c}]").replace(
                    "port: %d}]" % origin_port, "port: %d}]" % h2_port))
            toggle = "__pyx_pw_7pyroute_7_engine_4conn_*run_loop"
            cwd = str(tmp / ("pyroute-%d" % port))
        if argv[:1] == ["taskset"]:
            argv = argv[3:]
        out_dir = tmp / "cg"
        out_dir.mkdir()
        ir, n = run(argv, cwd, port, out_dir, toggle, args.requests, args.streams, args.path,
                    args.annotate)
    finally:
        origin.stop()
    print("%s%s %s streams=%d requests=%d: %.0f instructions/request" % (
        "nginx" if args.nginx else (args.python or "pyroute"), " (h2c backend)" if args.h2c
        else "", args.path, args.streams, n,
        ir / max(1, n)))


if __name__ == "__main__":
    main()
