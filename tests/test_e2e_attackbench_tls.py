"""The attackbench ``tls`` cases (../shared/tools/attackbench) against ``pyroute run``.

Set up as attackbench's README asks for them, on top of the configuration of
test_e2e_attackbench.py (every host and path to attackbench's backend, the ``/__blocked`` 403
router, 5 s read/write timeouts, a 4 s upstream response-header timeout): a TLS entry point
``websecure`` whose routers serve the same routes, a certificate for ``a.test`` and one for
``b.test`` (Secrets), a default certificate (TLSStore ``default``) and, for ``b.test``, a TLS
option with client authentication that ``a.test`` does not have, so that SNI ``a.test`` with
``Host: b.test`` is domain fronting across options and must be answered 421.

attackbench is an optional outside corpus (../shared/tools/attackbench, or $PYROUTE_ATTACKBENCH):
without it this module is skipped. pyroute's own TLS cases: tests/test_e2e_attacks_tls.py.
"""
import json
import subprocess
import sys
import time

import trustme

from e2e_support import Pyroute, free_port, require_attackbench, static_yaml

ATTACKBENCH = require_attackbench("attackbench.py", "backend.py", "cases-public.json")

from test_e2e_attackbench import manifests as plain_manifests  # noqa: E402 (after the skip)
from test_e2e_tls import secret, tls_option


def tls_manifests(ca, client_ca):
    store = ("---\napiVersion: traefik.io/v1alpha1\nkind: TLSStore\n"
             "metadata: {name: default, namespace: default}\n"
             "spec:\n  defaultCertificate: {secretName: default-cert}\n")
    out = (secret("a-cert", ca.issue_cert("a.test")) + secret("b-cert", ca.issue_cert("b.test"))
           + secret("default-cert", ca.issue_cert("default.test"))
           + secret("client-ca", ca_pem=client_ca.cert_pem.bytes()) + store
           + tls_option("client-auth", "{clientAuth: {secretNames: [client-ca], "
                                       "clientAuthType: RequireAndVerifyClientCert}}"))
    service = "      services: [{name: ab-backend, port: 80, serversTransport: ab-transport}]\n"
    for name, tls, routes in (
            ("ab-tls", "{}", (("PathPrefix(`/__blocked`)", 1000, True),
                              ("PathPrefix(`/`)", 1, False))),
            ("ab-tls-a", "{secretName: a-cert}", (("Host(`a.test`)", 0, False),)),
            ("ab-tls-b", "{secretName: b-cert, options: {name: client-auth}}",
             (("Host(`b.test`)", 0, False),))):
        out += ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
                "metadata: {name: %s, namespace: default}\nspec:\n  entryPoints: [websecure]\n"
                "  routes:\n" % name)
        for match, priority, blocked in routes:
            out += "    - match: %s\n      kind: Rule\n" % match
            if priority:
                out += "      priority: %d\n" % priority
            if blocked:
                out += "      middlewares: [{name: deny-all}]\n"
            out += service
        out += "  tls: %s\n" % tls
    return out


def test_attackbench_every_tls_case_passes(tmp_path):
    cases = json.loads((ATTACKBENCH / "cases-public.json").read_text())
    cases = cases["cases"] if isinstance(cases, dict) else cases
    tls_ids = sorted(c["id"] for c in cases if c["category"] == "tls")
    assert tls_ids, "no tls case in attackbench's catalogue"
    ca, client_ca = trustme.CA(), trustme.CA()
    be_port, tls_port = free_port(), free_port()
    be_log = tmp_path / "backend.log"
    backend = subprocess.Popen([sys.executable, str(ATTACKBENCH / "backend.py"), "--port",
                                str(be_port), "--log", str(be_log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = Pyroute(tmp_path, plain_manifests(be_port) + tls_manifests(ca, client_ca),
                    workers=1)
    # Two entry points, as the README's setup has them: ``web`` (plain) and ``websecure``.
    websecure = ("  websecure:\n"
                 '    address: "127.0.0.1:%d"\n'
                 "    transport:\n"
                 "      respondingTimeouts: {readTimeout: 5s, writeTimeout: 5s}\n" % tls_port)
    proxy.static.write_text(static_yaml(proxy.port, read="5s", write="5s").replace(
        "entryPoints:\n", "entryPoints:\n" + websecure, 1))
    try:
        proxy.start()
        time.sleep(0.3)
        out = tmp_path / "results.json"
        run = subprocess.run([sys.executable, str(ATTACKBENCH / "attackbench.py"), "--target",
                              "127.0.0.1:%d" % proxy.port, "--backend-log", str(be_log),
                              "--tls-target", "127.0.0.1:%d" % tls_port, "--category", "tls",
                              "--out", str(out)], capture_output=True, text=True, timeout=120)
        results = json.loads(out.read_text())["results"]
        assert sorted(r["id"] for r in results) == tls_ids, run.stdout
        bad = [(r["id"], r["verdict"], r.get("summary", r.get("why")),
                r.get("invariant_failures"), r.get("check_failures"))
               for r in results if r["verdict"] != "PASS"]
        assert not bad, "attackbench:\n%s\n%s\n%s" % ("\n".join(map(str, bad)),
                                                       run.stdout[-3000:], proxy.output()[-3000:])
    finally:
        proxy.stop()
        backend.terminate()
        backend.wait()
