"""End to end: Traefik v3.7's arbitration of conflicting TLS options (pkg/server/aggregator.go
resolveHTTPTLSOptions, run after applyModel). Routers serving one host with different TLS
options (and a router with a non-default option whose rule names no host) leave the entry
point; copies named ``<ep>-conflicted-<router>`` take their place with the default option —
for every host of their rule, not only the contested one. Checked through `pyroute run` with
real TLS handshakes and through `pyroute check --dump`."""
import json
import ssl
import subprocess
import sys

import pytest
import trustme

from e2e_backend import Backend
from e2e_support import REPO, Pyroute, backend_service
from test_e2e_tls import client, secret, tls_get, tls_option

TLS13 = ssl.TLSVersion.TLSv1_3


def route(name, match, tls):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
            "metadata: {name: %s, namespace: default}\nspec:\n  entryPoints: [web]\n"
            "  routes:\n    - match: %s\n      kind: Rule\n"
            "      services: [{name: be, port: 80}]\n  tls: %s\n" % (name, match, tls))


def manifests(ca, backend):
    leaf = ca.issue_cert("*.example.com")
    return (backend_service("be", [backend.port]) + secret("cert", leaf)
            # "old": at most TLS 1.2, so the handshake's version shows which option applied
            + tls_option("old", "{maxVersion: VersionTLS12}")
            # r1 asks for "old" on a.example.com and b.example.com; r2 serves a.example.com
            # with the default option: both conflict, and r1's copy uses the default on b too
            + route("r1", "Host(`a.example.com`) || Host(`b.example.com`)",
                    "{secretName: cert, options: {name: old}}")
            + route("r2", "Host(`a.example.com`) && PathPrefix(`/x`)", "{secretName: cert}")
            # no conflict: keeps its name and its option
            + route("r3", "Host(`c.example.com`)", "{secretName: cert, options: {name: old}}")
            # no host: its option cannot be chosen by the SNI, so it conflicts by itself
            + route("r4", "PathPrefix(`/nohost`)", "{secretName: cert, options: {name: old}}"))


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture()
def backend():
    be = Backend("be")
    yield be
    be.close()


def router_names(routers):
    return sorted(n.split("@")[0] for n in routers)


def test_conflicting_routers_become_conflicted_copies_in_the_dump(tmp_path, ca, backend):
    d = tmp_path / "m"
    d.mkdir()
    (d / "all.yaml").write_text(manifests(ca, backend))
    out = subprocess.run([sys.executable, "-m", "pyroute", "check", "--dump", str(d)],
                         capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert out.returncode == 0, out.stderr
    dump = json.loads(out.stdout)
    routers = dump["http"]["routers"]
    names = router_names(routers)
    assert len(names) == 4
    prefix = "web-conflicted-"
    r1, r2, r4 = ([n for n in names if n.startswith(prefix + "default-%s-" % r)][0][len(prefix):]
                  for r in ("r1", "r2", "r4"))
    # r3 keeps its name; the others exist only as their copies
    assert [n for n in names if not n.startswith(prefix)][0].startswith("default-r3-")
    copy = routers["web-conflicted-%s@kubernetescrd" % r1]
    assert copy["entryPoints"] == ["web"]
    # the written option stays (Traefik's ResolvedOptions is not exported)
    assert copy["tls"]["options"] == "default-old"
    assert copy["status"] == "enabled"
    err = out.stderr
    assert ('On EntryPoint "web", Host "a.example.com" is served by multiple routers with '
            'different TLS options, default TLSOptions will be applied for the following '
            'routers: [') in err
    assert ("router's TLSOptions configuration is conflicting with other routers on the same "
            "entrypoint and host, default TLS options will be used instead") in err
    assert "no domain found in rule PathPrefix(`/nohost`), the TLS option " \
           "default-old@kubernetescrd cannot be applied" in err


def test_conflicted_routers_serve_with_the_default_option(tmp_path, ca, backend):
    with Pyroute(tmp_path, manifests(ca, backend)) as pr:
        # the contested host and r1's other host: the default option (TLS 1.3 allowed)
        for sni, path in (("a.example.com", "/"), ("a.example.com", "/x"),
                          ("b.example.com", "/")):
            status, _, _, info = tls_get(pr.port, client(ca), sni, path=path)
            assert status == 200 and info["version"] == "TLSv1.3", (sni, path)
        # the router without a conflict keeps "old": TLS 1.3 only is refused
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_get(pr.port, client(ca, minimum_version=TLS13), "c.example.com")
        status, _, _, info = tls_get(pr.port, client(ca), "c.example.com")
        assert status == 200 and info["version"] == "TLSv1.2"
        # the host-less router is served (through the default option)
        status, _, _, info = tls_get(pr.port, client(ca), "d.example.com", path="/nohost")
        assert status == 200 and info["version"] == "TLSv1.3"
        assert "web-conflicted-default-r1-" in pr.output()
