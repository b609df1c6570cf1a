"""The attackbench catalogue (../shared/tools/attackbench) against ``pyroute run``.

Configured as attackbench's README asks: every host and path to its backend, a higher-priority
``PathPrefix(`/__blocked`)`` router with an ipAllowList that matches nothing (pyroute answers
403 itself: the smuggling oracle), 5 s read timeout, 5 s write timeout and a 4 s upstream
response-header timeout. Every non-TLS case must PASS; TLS cases need the TLS entry point
(pyroute.tls) and are reported SKIP by the tool until then.

attackbench is an optional outside corpus (../shared/tools/attackbench, or $PYROUTE_ATTACKBENCH):
without it this module is skipped. pyroute's own cases for every rule it checks need nothing
outside the clone: tests/test_e2e_attacks.py.
"""
import json
import subprocess
import sys
import time
from e2e_support import Pyroute, free_port, require_attackbench

ATTACKBENCH = require_attackbench("attackbench.py", "backend.py", "cases-public.json")


def manifests(backend_port):
    return """\
apiVersion: v1
kind: Service
metadata: {name: ab-backend, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ab-backend-1
  namespace: default
  labels: {kubernetes.io/service-name: ab-backend}
addressType: IPv4
ports: [{name: http, port: %d}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: ab-transport, namespace: default}
spec:
  forwardingTimeouts: {responseHeaderTimeout: 4s}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: deny-all, namespace: default}
spec:
  ipAllowList:
    sourceRange: ["192.0.2.1/32"]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: attackbench, namespace: default}
spec:
  entryPoints: [web]
  routes:
    - match: PathPrefix(`/__blocked`)
      kind: Rule
      priority: 1000
      middlewares: [{name: deny-all}]
      services: [{name: ab-backend, port: 80, serversTransport: ab-transport}]
    - match: PathPrefix(`/`)
      kind: Rule
      priority: 1
      services: [{name: ab-backend, port: 80, serversTransport: ab-transport}]
""" % backend_port


def test_attackbench_every_non_tls_case_passes(tmp_path):
    be_port = free_port()
    be_log = tmp_path / "backend.log"
    backend = subprocess.Popen([sys.executable, str(ATTACKBENCH / "backend.py"), "--port",
                                str(be_port), "--log", str(be_log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the corpus expects encoded '/', '\\', NUL, ';', '?', '#' in paths refused (Traefik
    # v3.6.4's defaults): the hardening docs/security.md describes, one setting away
    proxy = Pyroute(tmp_path, manifests(be_port), workers=1, read="5s", write="5s",
                    http="{encodedCharacters: {allowEncodedSlash: false, allowEncodedBackSlash: "
                         "false, allowEncodedNullCharacter: false, allowEncodedSemicolon: false, "
                         "allowEncodedQuestionMark: false, allowEncodedHash: false}}")
    try:
        proxy.start()
        time.sleep(0.3)
        out = tmp_path / "results.json"
        run = subprocess.run([sys.executable, str(ATTACKBENCH / "attackbench.py"), "--target",
                              "127.0.0.1:%d" % proxy.port, "--backend-log", str(be_log),
                              "--out", str(out)], capture_output=True, text=True, timeout=400)
        results = json.loads(out.read_text())["results"]
        bad = [(r["id"], r["verdict"], r.get("summary", r.get("why")),
                r.get("invariant_failures"), r.get("check_failures"))
               for r in results if r["verdict"] != "PASS" and r["verdict"] != "SKIP"]
        assert not bad, "attackbench:\n%s\n%s" % ("\n".join(map(str, bad)), run.stdout[-3000:])
        skipped = [r["id"] for r in results if r["verdict"] == "SKIP"]
        cases = {c["id"]: c for c in json.loads((ATTACKBENCH / "cases-public.json").read_text())}
        # only TLS cases may be skipped (they need --tls-target)
        assert all(cases[i].get("tls") is not None for i in skipped), skipped
        assert sum(r["verdict"] == "PASS" for r in results) == len(results) - len(skipped)
    finally:
        proxy.stop()
        backend.terminate()
        backend.wait()
