"""End to end: Traefik's managed X-headers in their underscore spelling (X_Forwarded_For,
X_Forwarded_Proto, ...), from a trusted and from an untrusted peer.

Go's server keeps ``X_Forwarded_For`` as a header of its own (CanonicalHeaderKey leaves a name
with '_' alone: ``X_forwarded_for``), so for Traefik it is never X-Forwarded-For: the
forwarded-headers handler deletes it with the family for a peer outside
``forwardedHeaders.trustedIPs`` (DeleteXForwardedHeaders / isManagedXHeader), and forwards it
unchanged for a trusted one, while X-Forwarded-For / -Proto / -Host are built as if it were not
there (Header.Get never sees it). Ported from Traefik's
pkg/middlewares/forwardedheaders/forwarded_header_test.go (the "X_forwarded_*" cases)."""
import pytest

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, ingressroute, request


@pytest.fixture(scope="module")
def backend():
    b = Backend("fw")
    yield b
    b.close()


def send(port, path, fields):
    status, _, _ = request(port, ("GET %s HTTP/1.1\r\nHost: a.test\r\n%s\r\n"
                                  % (path, "".join(f + "\r\n" for f in fields))).encode())
    return status


def fields_of(backend, path):
    """The header lines the backend received for ``path``: [(name, value)] as sent."""
    for rec in reversed(backend.received):
        if rec.line.split(b" ")[1] == path.encode():
            return [(n.decode().strip(), v.decode().strip()) for n, v in rec.fields
                    if n is not None]
    raise AssertionError("no request for %s" % path)


def values(fields, name):
    return [v for n, v in fields if n == name]


def lower_values(fields, name):
    return [v for n, v in fields if n.lower() == name.lower()]


def run(tmp_path, backend, trusted):
    manifests = backend_service("svc", [backend.port]) + ingressroute(
        "app", [("Host(`a.test`)", "svc", "")])
    return Pyroute(tmp_path, manifests, trusted=trusted)


UNDERSCORED = ["X_Forwarded_Proto: https", "X_Forwarded_For: 10.0.0.1",
               "X_Forwarded_Host: evil.example", "X_Real_Ip: 10.9.9.9",
               "X_Forwarded_Tls_Client_Cert: Cert", "X_Custom_Header: value"]


def test_untrusted_peer_loses_every_spelling_of_the_family(tmp_path, backend):
    # "insecure false with incoming X-Forwarded headers" and "insecure false preserves
    # non-matching underscore headers"
    with run(tmp_path, backend, ()) as p:
        assert send(p.port, "/untrusted", UNDERSCORED) == 200
        f = fields_of(backend, "/untrusted")
        names = [n for n, _ in f]
        for name in ("X_Forwarded_Proto", "X_Forwarded_For", "X_Forwarded_Host", "X_Real_Ip",
                     "X_Forwarded_Tls_Client_Cert"):
            assert name not in names, name
        assert values(f, "X_Custom_Header") == ["value"]
        assert lower_values(f, "X-Forwarded-For") == ["127.0.0.1"]
        assert lower_values(f, "X-Forwarded-Proto") == ["http"]
        assert lower_values(f, "X-Forwarded-Host") == ["a.test"]
        assert lower_values(f, "X-Real-Ip") == ["127.0.0.1"]


def test_trusted_peer_underscore_spellings_are_forwarded_as_they_are(tmp_path, backend):
    # "insecure false with incoming X-Forwarded headers and valid Trusted Ips": the underscore
    # spellings reach the backend unchanged, and Traefik's own X-Forwarded-* ignore them
    with run(tmp_path, backend, ("127.0.0.1/32",)) as p:
        assert send(p.port, "/trusted", UNDERSCORED) == 200
        f = fields_of(backend, "/trusted")
        assert values(f, "X_Forwarded_For") == ["10.0.0.1"]
        assert values(f, "X_Forwarded_Proto") == ["https"]
        assert values(f, "X_Forwarded_Host") == ["evil.example"]
        assert values(f, "X_Real_Ip") == ["10.9.9.9"]
        assert values(f, "X_Forwarded_Tls_Client_Cert") == ["Cert"]
        assert values(f, "X_Custom_Header") == ["value"]
        # X_Forwarded_For is not a prior X-Forwarded-For: only the peer is appended
        assert lower_values(f, "X-Forwarded-For") == ["127.0.0.1"]
        assert lower_values(f, "X-Forwarded-Proto") == ["http"]
        assert lower_values(f, "X-Forwarded-Port") == ["80"]
        assert lower_values(f, "X-Forwarded-Host") == ["a.test"]
        assert lower_values(f, "X-Real-Ip") == ["127.0.0.1"]

        # both spellings from a trusted peer: the dash one is the prior list, the other rides
        assert send(p.port, "/both", ["X-Forwarded-For: 10.0.1.0", "X_Forwarded_For: 10.0.0.1",
                                      "X-Forwarded-Proto: https"]) == 200
        f = fields_of(backend, "/both")
        assert lower_values(f, "X-Forwarded-For") == ["10.0.1.0, 127.0.0.1"]
        assert values(f, "X_Forwarded_For") == ["10.0.0.1"]
        assert lower_values(f, "X-Forwarded-Proto") == ["https"]
        assert lower_values(f, "X-Forwarded-Port") == ["443"]

        # "Trusted: Connection header has no effect on X- forwarded headers": a managed
        # header named by Connection stays, in either spelling
        assert send(p.port, "/conn", ["Connection: X_Forwarded_Proto, X-Forwarded-Host, Foo",
                                      "X_Forwarded_Proto: https", "X-Forwarded-Host: h.test",
                                      "Foo: bar"]) == 200
        f = fields_of(backend, "/conn")
        assert values(f, "X_Forwarded_Proto") == ["https"]
        assert lower_values(f, "X-Forwarded-Host") == ["h.test"]
        assert lower_values(f, "Foo") == []


def test_untrusted_connection_header_cannot_save_an_underscore_spelling(tmp_path, backend):
    # "Untrusted: Connection header has no effect on X- forwarded headers"
    with run(tmp_path, backend, ()) as p:
        assert send(p.port, "/uconn", ["Connection: X_Forwarded_Proto",
                                       "X_Forwarded_Proto: spoofed"]) == 200
        f = fields_of(backend, "/uconn")
        assert "X_Forwarded_Proto" not in [n for n, _ in f]
        assert lower_values(f, "X-Forwarded-Proto") == ["http"]
        assert lower_values(f, "Connection") == []
