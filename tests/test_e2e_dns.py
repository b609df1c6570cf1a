"""End to end: backends named by a host name (an ExternalName Service), through ``pyroute run``
and the system resolver: the name is looked up for each new backend connection off the
worker's loop (pyroute.proxy.dns), a name that does not resolve is a 502 (Go's dial fails with
a DNSError, which Traefik's proxy answers with Bad Gateway), and the worker keeps serving
everyone else meanwhile. How the addresses are dialed (order, timeout shares, the other family
raced after 300 ms) is tested with real sockets in test_dns.py."""
import time

import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, get


def external(name, host, port):
    return ("---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: default}\n"
            "spec:\n  type: ExternalName\n  externalName: %s\n"
            "  ports: [{name: http, port: %d}]\n" % (name, host, port))


def route(host, service, port):
    return ("    - match: Host(`%s`)\n      kind: Rule\n"
            "      services: [{name: %s, port: %d}]\n" % (host, service, port))


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    be = Backend("named")
    manifests = (external("named", "localhost", be.port)
                 + external("nxdomain", "nosuch.invalid", 80)
                 + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
                 "metadata: {name: main, namespace: default}\nspec:\n  entryPoints: [web]\n"
                 "  routes:\n" + route("a.test", "named", be.port)
                 + route("b.test", "nxdomain", 80))
    p = Pyroute(tmp_path_factory.mktemp("dns"), manifests)
    p.static.write_text(p.static.read_text()
                        + "providers:\n  kubernetesCRD: {allowExternalNameServices: true}\n")
    p.start()
    yield p, be
    p.stop()
    be.close()


def test_a_named_backend_is_resolved_and_served(proxy):
    p, be = proxy
    for i in range(3):
        status, _, _ = get(p.port, "/named-%d" % i, "a.test", "Connection: close\r\n")
        assert status == 200
    assert [r[1] for r in be.requests][-3:] == ["/named-0", "/named-1", "/named-2"]
    # the name reached the backend as the URL's host (passHostHeader keeps the client's)
    assert be.requests[-1][2]["host"] == "a.test"


def test_a_name_that_does_not_resolve_is_a_502_and_others_keep_being_served(proxy):
    p, be = proxy
    t0 = time.monotonic()
    status, _, body = get(p.port, "/", "b.test")
    assert status == 502
    assert body == b"Bad Gateway\n"
    assert time.monotonic() - t0 < 5
    status, _, _ = get(p.port, "/after", "a.test")
    assert status == 200
    assert "internal error" not in p.output()
