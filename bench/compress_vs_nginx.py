"""compress vs nginx's ``gzip on``: CPU per proxied, compressed response, same run.

    .venv/bin/python bench/compress_vs_nginx.py [--rounds 3] [--duration 4] [--conns 64]
                                                [--size 16384]

One origin (nginx, CPU 1, with wrk) serves a JSON document of ``--size`` bytes (text that
compresses about as a real API answer does: ~4-5x with gzip, not a run of one byte). Two
proxies, each one worker pinned to CPU 0, proxy it with compression at the same level:

- nginx: ``gzip on; gzip_comp_level 6; gzip_proxied any; gzip_types *; gzip_min_length 1024``
- pyroute: a ``compress`` middleware (Traefik's defaults: gzip level 6 as klauspost's
  gzhttp DefaultCompression, minResponseBodyBytes 1024)

and both without compression, as the reference each compressing row is read against. Rows:
``<proxy>-plain`` (no Accept-Encoding), ``<proxy>-gzip``; pyroute also ``-br`` and ``-zstd``
(nginx has no brotli/zstd module in Debian's package). Rounds are interleaved, the proxies
not measured are SIGSTOPped; medians of CPU per request (utime+stime of the worker / requests
wrk completed). Needs nginx and wrk.
"""
import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402


def document(size):
    """Deterministic JSON text of about ``size`` bytes: records with repeated keys, words and
    numbers, as API answers are."""
    rnd = random.Random(7)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
             "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]
    items = []
    out = ""
    while len(out) < size:
        items.append({"id": rnd.randrange(10 ** 9), "name": " ".join(rnd.choices(words, k=3)),
                      "score": round(rnd.random() * 1000, 3),
                      "tags": rnd.sample(words, 4), "active": rnd.random() < 0.5,
                      "owner": {"uid": rnd.randrange(10 ** 6), "team": rnd.choice(words)}})
        out = json.dumps({"items": items})
    return out.encode()[:size]      # cut to size: still text, compresses the same


def start_nginx(tmp, port, origin, cpu, gzip):
    conf = tmp / ("nginx-%d.conf" % port)
    gz = ("gzip on; gzip_comp_level 6; gzip_proxied any; gzip_types *; "
          "gzip_min_length 1024; gzip_vary on;") if gzip else ""
    conf.write_text("""
worker_processes 1; daemon off; pid %s/nginx-%d.pid; error_log /dev/null crit;
events { worker_connections 4000; multi_accept on; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s; %s
  upstream origin { server 127.0.0.1:%d; keepalive 256; }
  server { listen 127.0.0.1:%d backlog=4096;
    location / { proxy_pass http://origin; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host; } } }
""" % (tmp, port, gz, origin, port))
    return load.Proc("nginx", ["nginx", "-c", str(conf)], port, cpu,
                     worker_pids=lambda pid: load.children(pid))


def start_pyroute(tmp, port, origin, cpu):
    d = tmp / ("pyroute-%d" % port)
    d.mkdir()
    (d / "static.yaml").write_text(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:%d\"\n"
        "    transport: {respondingTimeouts: {idleTimeout: 300s}}\nlog: {level: ERROR}\n" % port)
    svc = "services: [{name: origin, port: 80}]"
    (d / "m.yaml").write_text("""
apiVersion: v1
kind: Service
metadata: {name: origin, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: origin-1, namespace: default, labels: {kubernetes.io/service-name: origin}}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: compress, namespace: default}
spec: {compress: {}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: bench, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - {match: Host(`plain.test`), kind: Rule, %s}
    - {match: Host(`compress.test`), kind: Rule, %s, middlewares: [{name: compress}]}
""" % (origin, svc, svc))
    py = str(load.REPO / ".venv" / "bin" / "python")
    return load.Proc("pyroute", [py, "-m", "pyroute", "run", "-c", str(d / "static.yaml"),
                                 str(d / "m.yaml"), "-w", "1"], port, cpu,
                     worker_pids=lambda pid: load.children(pid), cwd=str(d))


def wrk(port, host, encoding, conns, duration):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c%d" % conns, "-d%ds" % duration,
           "--latency", "-H", "Host: %s" % host]
    if encoding:
        cmd += ["-H", "Accept-Encoding: %s" % encoding]
    out = subprocess.run(cmd + ["http://127.0.0.1:%d/doc.json" % port], capture_output=True,
                         text=True).stdout
    import re
    return int(re.search(r"(\d+) requests in", out).group(1))


def fetch(port, host, encoding):
    import socket
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(("GET /doc.json HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
               % (host, "Accept-Encoding: %s\r\n" % encoding if encoding else "")).encode())
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1").lower(), body


def decode_chunked(body):
    out, i = b"", 0
    while True:
        j = body.index(b"\r\n", i)
        n = int(body[i:j].split(b";")[0], 16)
        if n == 0:
            return out
        out += body[j + 2:j + 2 + n]
        i = j + 4 + n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--size", type=int, default=16384)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-compressbench-"))
    tmp.chmod(0o755)
    origin_port = load.free_port()
    origin = load.start_origin(tmp, origin_port)
    doc = document(args.size)
    (tmp / "www" / "doc.json").write_bytes(doc)
    procs = {"nginx-gzip": start_nginx(tmp, load.free_port(), origin_port, "0", True),
             "nginx-plain": start_nginx(tmp, load.free_port(), origin_port, "0", False),
             "pyroute": start_pyroute(tmp, load.free_port(), origin_port, "0")}
    # row -> (process, Host, Accept-Encoding)
    rows = {"nginx-plain": ("nginx-plain", "bench.test", None),
            "nginx-gzip": ("nginx-gzip", "bench.test", "gzip"),
            "pyroute-plain": ("pyroute", "plain.test", None),
            "pyroute-gzip": ("pyroute", "compress.test", "gzip"),
            "pyroute-br": ("pyroute", "compress.test", "br"),
            "pyroute-zstd": ("pyroute", "compress.test", "zstd")}
    results = {r: [] for r in rows}
    sizes = {}
    try:
        for row, (p, host, enc) in rows.items():
            head, body = fetch(procs[p].port, host, enc)
            if "transfer-encoding: chunked" in head:
                body = decode_chunked(body)
            got = ("content-encoding: %s" % enc) in head if enc else "content-encoding" not in head
            if not got or not head.startswith("http/1.1 200"):
                sys.exit("%s does not answer as configured: %s" % (row, head[:300]))
            if enc == "gzip":
                assert zlib.decompress(body, 47) == doc, row
            sizes[row] = len(body)
        names = list(rows)
        for rnd in range(args.rounds):
            for row in names[rnd % len(names):] + names[:rnd % len(names)]:
                p, host, enc = rows[row]
                for other in procs:
                    if other != p:
                        procs[other].signal(signal.SIGSTOP)
                time.sleep(0.3)
                try:
                    pids = procs[p].pids()
                    u0, s0 = load.cpu_of(pids)
                    n = max(1, wrk(procs[p].port, host, enc, args.conns, args.duration))
                    u1, s1 = load.cpu_of(pids)
                finally:
                    for other in procs:
                        if other != p:
                            procs[other].signal(signal.SIGCONT)
                cpu = ((u1 - u0) + (s1 - s0)) / n * 1e6
                results[row].append((n / args.duration, cpu, (u1 - u0) / n * 1e6))
                print("round %d %-14s %8.0f req/s cpu %.1fus (user %.1f)" % (
                    rnd, row, n / args.duration, cpu, (u1 - u0) / n * 1e6), flush=True)
    finally:
        for p in procs.values():
            p.stop()
        origin.stop()
    print("\nmedians (%d rounds, %ds each, %d connections, %d-byte JSON; 1 worker pinned to "
          "CPU 0, wrk+origin on CPU 1)" % (args.rounds, args.duration, args.conns, args.size))
    print("%-14s %9s %8s %8s %9s %11s" % ("row", "req/s", "cpu us", "user us", "body B",
                                           "compress us"))
    med = {r: [statistics.median(x[i] for x in v) for i in range(3)] for r, v in results.items()}
    for r in rows:
        base = med["nginx-plain" if r.startswith("nginx") else "pyroute-plain"][1]
        print("%-14s %9.0f %8.1f %8.1f %9d %+10.1f" % (r, med[r][0], med[r][1], med[r][2],
                                                       sizes[r], med[r][1] - base))
    print("\npyroute-gzip / nginx-gzip CPU per request: %.2fx" % (
        med["pyroute-gzip"][1] / med["nginx-gzip"][1]))


if __name__ == "__main__":
    main()
