"""TLS load run: pyroute vs nginx terminating TLS with the same certificate and settings.

    .venv/bin/python bench/tls_vs_nginx.py [--seconds 8] [--rounds 3] [--key ecdsa|rsa]

One pinned worker each (server on CPU 0; load generator and backend on CPU 1), measured in
one run, interleaved round by round:

- new TLS handshakes per second: ``openssl s_time -new`` (full handshakes, TLS 1.3, one small
  GET each so TLS 1.3 tickets are read), and ``-reuse`` (resumed handshakes);
- requests per second over keep-alive TLS: ``wrk -t1 -c16`` on a route to a backend (an nginx
  answering 200 from CPU 1), both proxies forwarding to it over keep-alive HTTP/1.1;
- the same without TLS (new connection per request, keep-alive), to tell TLS's own cost from
  the proxy's;
- CPU time of the server worker per handshake / per request (from /proc/PID/stat), the figure
  that holds on a noisy machine.

Same certificate (served as the default certificate: s_time sends no SNI), TLS 1.2-1.3, the
Mozilla intermediate TLS 1.2 suites, session tickets on. Prints medians per metric and the
pyroute/nginx ratios.
"""
import argparse
import base64
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
           "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
HOST = "bench.example.com"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(kind, folder):
    key = (ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa"
           else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with open(os.path.join(folder, "cert.pem"), "wb") as f:
        f.write(cert_pem)
    with open(os.path.join(folder, "key.pem"), "wb") as f:
        f.write(key_pem)
    return cert_pem, key_pem


def nginx_conf(folder, body):
    conf = os.path.join(folder, "nginx.conf")
    with open(conf, "w") as f:
        f.write(textwrap.dedent("""\
            worker_processes 1;
            daemon off;
            master_process on;
            error_log %s/error.log warn;
            pid %s/nginx.pid;
            events { worker_connections 4096; }
            http {
                access_log off;
                client_body_temp_path %s/tmp;
                proxy_temp_path %s/tmp;
                fastcgi_temp_path %s/tmp;
                uwsgi_temp_path %s/tmp;
                scgi_temp_path %s/tmp;
            %s
            }
            """) % ((folder,) * 7 + (textwrap.indent(body, "    "),)))
    os.makedirs(os.path.join(folder, "tmp"), exist_ok=True)
    return conf


def start_nginx(folder, body, cpu):
    os.makedirs(folder, exist_ok=True)
    conf = nginx_conf(folder, body)
    proc = subprocess.Popen(["taskset", "-c", str(cpu), "nginx", "-c", conf, "-p", folder],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nothing listens on %d" % port)


def worker_pid(master_pid, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(master_pid)
        if kids:
            return kids[0]
        time.sleep(0.1)
    raise RuntimeError("no worker under %d" % master_pid)


def s_time(port, mode, seconds):
    out = subprocess.run(["taskset", "-c", "1", "openssl", "s_time", "-connect",
                          "127.0.0.1:%d" % port, mode, "-time", str(seconds), "-www", "/"],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    # e.g. "1234 connections in 8.01s; 154.06 connections/user sec, bytes read 0"
    #      "1234 connections in 9 real seconds, 1234 bytes read per connection"
    m = re.findall(r"(\d+) connections in (\d+) real seconds", out)
    if not m:
        raise RuntimeError("s_time output: %s" % out)
    n, secs = map(int, m[-1])
    return n, secs


def wrk(port, seconds, scheme="https", close=False):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c16", "-d%ds" % seconds, "-H", "Host: %s" % HOST]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + ["%s://127.0.0.1:%d/" % (scheme, port)],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or not rps:
        raise RuntimeError("wrk output: %s" % out)
    if errors:
        raise RuntimeError("wrk saw errors: %s" % out)
    return int(m.group(1)), float(rps.group(1))


METRICS = ("full handshakes", "resumed handshakes", "keep-alive requests",
           "plain new connections", "plain keep-alive requests")


def measure(name, port, plain_port, pid, seconds, results, only):
    for metric, run in (
            ("full handshakes", lambda: s_time(port, "-new", seconds)),
            ("resumed handshakes", lambda: s_time(port, "-reuse", seconds)),
            ("keep-alive requests", lambda: wrk(port, seconds)),
            # the same without TLS, to tell TLS's cost from the proxy's
            ("plain new connections", lambda: wrk(plain_port, seconds, "http", close=True)),
            ("plain keep-alive requests", lambda: wrk(plain_port, seconds, "http"))):
        if only and metric not in only:
            continue
        before = cpu_seconds(pid)
        t0 = time.monotonic()
        if metric not in ("full handshakes", "resumed handshakes"):
            n, rate = run()
        else:
            n, secs = run()
            rate = n / (time.monotonic() - t0)
        cpu = cpu_seconds(pid) - before
        results.setdefault((name, metric), []).append((rate, cpu / max(n, 1) * 1e6))
        print("  %-8s %-26s %10.0f /s   %8.1f us CPU each" % (name, metric, rate,
                                                              cpu / max(n, 1) * 1e6),
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa")
    ap.add_argument("--only", action="append", choices=METRICS, metavar="METRIC",
                    help="measure only this metric (repeatable; default: all of %s)"
                    % ", ".join(METRICS))
    ap.add_argument("--serve", action="store_true",
                    help="start both servers, print their ports and worker pids, and wait "
                    "(for perf/strace by hand); Ctrl-C stops them")
    ap.add_argument("--pyroute", default=shutil.which("pyroute") or
                    os.path.join(os.path.dirname(sys.executable), "pyroute"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pyroute-tls-bench-")
    procs = []
    try:
        cert_pem, key_pem = make_cert(args.key, work)
        backend = free_port()
        nginx_port = free_port()
        nginx_plain = free_port()
        pyroute_port = free_port()
        procs.append(start_nginx(os.path.join(work, "backend"), """\
            server { listen 127.0.0.1:%d; keepalive_requests 1000000;
                     location / { return 200 "hello\\n"; } }""" % backend, 1))
        procs.append(start_nginx(os.path.join(work, "proxy"), """\
            upstream backend { server 127.0.0.1:%d; keepalive 32; }
            server {
                listen 127.0.0.1:%d ssl;
                listen 127.0.0.1:%d;
                ssl_certificate %s/cert.pem;
                ssl_certificate_key %s/key.pem;
                ssl_protocols TLSv1.2 TLSv1.3;
                ssl_ciphers %s;
                ssl_prefer_server_ciphers on;
                ssl_session_tickets on;
                keepalive_requests 1000000;
                location / { proxy_pass http://backend; proxy_http_version 1.1;
                             proxy_set_header Connection ""; }
            }""" % (backend, nginx_port, nginx_plain, work, work, CIPHERS), 0))
        manifests = os.path.join(work, "manifests")
        os.makedirs(manifests)
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        with open(os.path.join(manifests, "bench.yaml"), "w") as f:
            f.write(textwrap.dedent("""\
                apiVersion: v1
                kind: Secret
                metadata: {name: bench-cert, namespace: default}
                type: kubernetes.io/tls
                data: {tls.crt: %s, tls.key: %s}
                ---
                apiVersion: traefik.io/v1alpha1
                kind: TLSStore
                metadata: {name: default, namespace: default}
                spec: {defaultCertificate: {secretName: bench-cert}}
                ---
                apiVersion: v1
                kind: Service
                metadata: {name: backend, namespace: default}
                spec: {ports: [{name: http, port: 80, targetPort: %d}]}
                ---
                apiVersion: discovery.k8s.io/v1
                kind: EndpointSlice
                metadata:
                  name: backend-1
                  namespace: default
                  labels: {kubernetes.io/service-name: backend}
                addressType: IPv4
                ports: [{name: http, port: %d}]
                endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
                ---
                apiVersion: traefik.io/v1alpha1
                kind: IngressRoute
                metadata: {name: bench, namespace: default}
                spec:
                  entryPoints: [websecure]
                  routes:
                    - match: PathPrefix(`/`)
                      kind: Rule
                      services: [{name: backend, port: 80}]
                  tls: {secretName: bench-cert}
                ---
                apiVersion: traefik.io/v1alpha1
                kind: IngressRoute
                metadata: {name: bench-plain, namespace: default}
                spec:
                  entryPoints: [websecure]
                  routes:
                    - match: PathPrefix(`/`)
                      kind: Rule
                      services: [{name: backend, port: 80}]
                """) % (b64(cert_pem), b64(key_pem), backend, backend))
        static = os.path.join(work, "static.yaml")
        with open(static, "w") as f:
            f.write("entryPoints:\n  websecure:\n    address: \"127.0.0.1:%d\"\n"
                    "log: {level: ERROR}\n" % pyroute_port)
        pyroute = subprocess.Popen(["taskset", "-c", "0", args.pyroute, "run", "-c", static,
                                    "--workers", "1", manifests],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(pyroute)
        for port in (backend, nginx_port, pyroute_port):
            wait_port(port)
        # pyroute serves TLS and plain HTTP on one entry point (first-byte sniff)
        targets = (("pyroute", pyroute_port, pyroute_port, worker_pid(pyroute.pid)),
                   ("nginx", nginx_port, nginx_plain, worker_pid(procs[1].pid)))
        print("pyroute %s, nginx %s, %s certificate, %ds per measurement, %d rounds" % (
            subprocess.run([args.pyroute, "version"], capture_output=True,
                           text=True).stdout.strip(),
            subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            args.key, args.seconds, args.rounds))
        if args.serve:
            for name, port, plain_port, pid in targets:
                print("%s: TLS port %d, plain port %d, worker pid %d" % (name, port, plain_port,
                                                                         pid), flush=True)
            # SIGTERM too (a background job ignores SIGINT): stop the servers on the way out
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return
        results = {}
        for r in range(args.rounds):
            print("round %d" % (r + 1), flush=True)
            for name, port, plain_port, pid in (targets if r % 2 == 0 else targets[::-1]):
                measure(name, port, plain_port, pid, args.seconds, results, args.only)
        print("\nmedians (pyroute / nginx)")
        for metric in METRICS:
            if args.only and metric not in args.only:
                continue
            p = [x for x in results[("pyroute", metric)]]
            n = [x for x in results[("nginx", metric)]]
            pr, pc = statistics.median(x[0] for x in p), statistics.median(x[1] for x in p)
            nr, nc = statistics.median(x[0] for x in n), statistics.median(x[1] for x in n)
            print("  %-26s pyroute %8.0f/s %7.1f us CPU | nginx %8.0f/s %7.1f us CPU | "
                  "rate %.2fx, CPU %.2fx" % (metric, pr, pc, nr, nc, pr / nr, pc / nc))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT if proc is not procs[-1] else signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
