"""Per-middleware cost: CPU per request through a route with one middleware kind, beside the
same route without it, measured in the same interleaved rounds.

    .venv/bin/python bench/middlewares.py [--rounds 3] [--duration 3] [--conns 64]
                                          [--kinds headers-cors,basicauth-bcrypt,...]

One pyroute worker pinned to CPU 0 serves one Host per case (``<case>.test``), each a route
to the same nginx origin (CPU 1, with wrk) answering the small body; the cases differ only in
the middleware the route carries. Per case: requests/s, p50/p99 and the worker's CPU time
per request (utime+stime deltas over the run / requests wrk completed), and the overhead
against the ``plain`` case of the same round, as medians. A case pyroute does not serve as
configured (its route disabled, a 404, a 5xx) is reported as such, not measured.
Needs nginx and wrk (Debian packages); bcrypt and apache2-utils are not needed (the hashes are
made here).
"""
import argparse
import base64
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load  # noqa: E402  (bench/load.py: origin, processes, CPU accounting)

USER, PASSWORD = "bench", "bench-password"


def _sha1_line():
    return "%s:{SHA}%s" % (USER, base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest())
                           .decode())


def _bcrypt_line():
    try:
        import bcrypt
    except ImportError:
        return None
    return "%s:%s" % (USER, bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode())


AUTH = "Authorization: Basic " + base64.b64encode(
    ("%s:%s" % (USER, PASSWORD)).encode()).decode()

# case -> (middleware spec or None, extra request header or None, expected status)
CASES = {
    "plain": (None, None, 200),
    "headers-custom": ({"headers": {"customRequestHeaders": {"X-A": "1"},
                                    "customResponseHeaders": {"X-B": "2"}}}, None, 200),
    "headers-security": ({"headers": {"frameDeny": True, "contentTypeNosniff": True,
                                      "browserXssFilter": True, "stsSeconds": 31536000,
                                      "forceSTSHeader": True,
                                      "referrerPolicy": "same-origin"}}, None, 200),
    "headers-cors": ({"headers": {"accessControlAllowOriginList": ["https://a.example"],
                                  "accessControlAllowMethods": ["GET"],
                                  "addVaryHeader": True}},
                     "Origin: https://a.example", 200),
    "stripprefix": ({"stripPrefix": {"prefixes": ["/p"]}}, None, 200),
    "addprefix": ({"addPrefix": {"prefix": "/p"}}, None, 200),
    "replacepathregex": ({"replacePathRegex": {"regex": "^/p/(.*)", "replacement": "/$1"}},
                         None, 200),
    "ipallowlist": ({"ipAllowList": {"sourceRange": ["127.0.0.1/32"]}}, None, 200),
    "basicauth-sha1": ({"basicAuth": {"users": [_sha1_line()]}}, AUTH, 200),
    "basicauth-bcrypt": (({"basicAuth": {"users": [_bcrypt_line()]}}
                          if _bcrypt_line() else None), AUTH, 200),
    "forwardauth": ({"forwardAuth": {"address": "http://127.0.0.1:{origin}/auth"}}, None,
                    200),
    "redirectscheme": ({"redirectScheme": {"scheme": "https"}}, None, 302),
    "digestauth": None,         # filled below (needs a challenge round trip per request)
    "encodedcharacters": ({"encodedCharacters": {}}, None, 200),
    "contenttype": ({"contentType": {}}, None, 200),
    # limits far above what the run reaches: the cost of the shared-memory bookkeeping
    "ratelimit": ({"rateLimit": {"average": 100000000, "burst": 100000000}}, None, 200),
    "inflightreq": ({"inFlightReq": {"amount": 100000}}, None, 200),
    "circuitbreaker": ({"circuitBreaker": {"expression": "NetworkErrorRatio() > 0.5"}}, None,
                       200),
    "retry": ({"retry": {"attempts": 2}}, None, 200),
    # a small body (under minResponseBodyBytes): the negotiation and head decision only;
    # compressing itself is bench/compress_vs_nginx.py
    "compress": ({"compress": {}}, "Accept-Encoding: gzip", 200),
    "errors": ({"errors": {"status": ["500-599"], "query": "/small",
                           "service": {"name": "origin", "port": 80}}}, None, 200),
}
del CASES["digestauth"]
# paths per case: the ones that rewrite the path get a prefix they remove
PATHS = {"stripprefix": "/p/small", "replacepathregex": "/p/small"}


def manifests(origin, cases):
    docs = ["""apiVersion: v1
kind: Service
metadata: {name: origin, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: origin-1, namespace: default, labels: {kubernetes.io/service-name: origin}}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]""" % origin]
    import json
    routes = []
    for case in cases:
        spec = CASES[case][0]
        mws = ""
        if spec is not None:
            users = spec.get("basicAuth", {}).get("users")
            if users:
                # the CRD reads credentials from a Secret (``users`` is the file provider's)
                docs.append("apiVersion: v1\nkind: Secret\nmetadata: {name: %s-users, "
                            "namespace: default}\ntype: Opaque\ndata: {users: %s}" % (
                                case, base64.b64encode("\n".join(users).encode()).decode()))
                spec = {"basicAuth": {"secret": case + "-users"}}
            text = json.dumps(spec).replace("{origin}", str(origin))
            docs.append("""apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: %s, namespace: default}
spec: %s""" % (case, text))
            mws = ", middlewares: [{name: %s}]" % case
        routes.append("    - {match: Host(`%s.test`), kind: Rule, services: [{name: origin, "
                      "port: 80}]%s}" % (case, mws))
    docs.append("""apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: bench, namespace: default}
spec:
  entryPoints: [web]
  routes:
""" + "\n".join(routes))
    return "\n---\n".join(docs) + "\n"


def wrk(port, host, path, header, conns, duration):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c%d" % conns, "-d%ds" % duration,
           "--latency", "-H", "Host: %s" % host]
    if header:
        cmd += ["-H", header]
    out = subprocess.run(cmd + ["http://127.0.0.1:%d%s" % (port, path)], capture_output=True,
                         text=True).stdout
    import re
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {}
    for q in ("50", "99"):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % q, out)
        v = float(m.group(1))
        lat[q] = v / 1000 if m.group(2) == "us" else (v * 1000 if m.group(2) == "s" else v)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return reqs, lat["50"], lat["99"], int(bad.group(1)) if bad else 0


def probe(port, host, path, header):
    import socket
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
               % (path, host, header + "\r\n" if header else "")).encode())
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--kinds", default=",".join(CASES))
    args = ap.parse_args()
    cases = [c for c in args.kinds.split(",") if c]
    if "plain" not in cases:
        cases.insert(0, "plain")
    tmp = Path(tempfile.mkdtemp(prefix="pyroute-mwbench-"))
    tmp.chmod(0o755)            # the origin nginx worker reads its files
    origin_port = load.free_port()
    origin = load.start_origin(tmp, origin_port)
    (tmp / "www" / "auth").write_text("ok\n")
    (tmp / "www" / "p").mkdir(mode=0o755)
    (tmp / "www" / "p" / "small").write_text("hello from origin\n")     # addPrefix /p
    port = load.free_port()
    d = tmp / "pyroute"
    d.mkdir()
    (d / "static.yaml").write_text(
        "entryPoints:\n  web:\n    address: \"127.0.0.1:%d\"\n"
        "    transport: {respondingTimeouts: {idleTimeout: 300s}}\nlog: {level: ERROR}\n"
        % port)
    (d / "m.yaml").write_text(manifests(origin_port, [c for c in cases
                                                      if c == "plain" or CASES[c][0]]))
    py = str(load.REPO / ".venv" / "bin" / "python")
    proc = load.Proc("pyroute", [py, "-m", "pyroute", "run", "-c", str(d / "static.yaml"),
                                 str(d / "m.yaml"), "-w", "1"], port, "0",
                     worker_pids=lambda pid: load.children(pid), cwd=str(d))
    results = {c: [] for c in cases}
    skipped = {}
    try:
        time.sleep(1.0)
        for c in cases:
            spec, header, want = CASES[c]
            if spec is None and c != "plain":
                skipped[c] = "not configured here (a Python package is missing)"
                continue
            got = probe(port, c + ".test", PATHS.get(c, "/small"), header)
            if got != want:
                skipped[c] = "pyroute answers %d, expected %d: not served as configured" % (
                    got, want)
        live = [c for c in cases if c not in skipped]
        for r in range(args.rounds):
            for c in live:
                pids = proc.pids()
                u0, s0 = load.cpu_of(pids)
                reqs, p50, p99, bad = wrk(port, c + ".test", PATHS.get(c, "/small"),
                                          CASES[c][1], args.conns, args.duration)
                u1, s1 = load.cpu_of(pids)
                n = max(1, reqs)
                cpu = ((u1 - u0) + (s1 - s0)) / n * 1e6
                results[c].append((reqs / args.duration, p50, p99, cpu, (u1 - u0) / n * 1e6))
                print("round %d %-18s %8.0f req/s p50 %.2fms p99 %.2fms cpu %.1fus "
                      "(user %.1f) bad %d" % (r, c, reqs / args.duration, p50, p99, cpu,
                                              (u1 - u0) / n * 1e6, bad), flush=True)
    finally:
        proc.stop()
        origin.stop()
    print("\nmedians (%d rounds, %ds each, %d connections; 1 worker pinned to CPU 0, wrk+origin "
          "on CPU 1)" % (args.rounds, args.duration, args.conns))
    print("%-18s %9s %8s %8s %8s %8s %10s" % ("case", "req/s", "p50 ms", "p99 ms", "cpu us",
                                              "user us", "vs plain"))
    base = statistics.median(x[3] for x in results["plain"]) if results["plain"] else None
    for c in cases:
        if c in skipped:
            print("%-18s %s" % (c, skipped[c]))
            continue
        rows = results[c]
        med = [statistics.median(x[i] for x in rows) for i in range(5)]
        print("%-18s %9.0f %8.2f %8.2f %8.1f %8.1f %+9.1fus" % (
            c, med[0], med[1], med[2], med[3], med[4], med[3] - base if base else 0))


if __name__ == "__main__":
    main()
