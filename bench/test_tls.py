"""Micro benchmarks of pyroute.tls's per-connection and per-request Python work.

    .venv/bin/python -m pytest bench/test_tls.py --benchmark-only

Per connection: peeking the SNI out of a ClientHello and picking the option; per request over
TLS: the 421 check (Traefik's SNICheck). The handshakes themselves are OpenSSL's: see
bench/tls_vs_nginx.py for handshakes/s and requests/s against nginx.
"""
import ssl

import pytest

from pyroute import tls


def _hello(name):
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


HELLO = _hello("www.example.com")
HOSTS = {"host%d.example.com" % i: ("opt%d" % (i % 7)) for i in range(2000)}
HOSTS["www.example.com"] = "opt1"


@pytest.fixture(scope="module")
def config():
    routers = {"r%d" % i: {"rule": "Host(`%s`)" % h, "tls": {"options": o}}
               for i, (h, o) in enumerate(HOSTS.items())}
    return tls.TLSConfig.build({"options": {"opt%d" % i: {} for i in range(7)}}, routers)


@pytest.mark.benchmark(group="tls-per-connection")
def test_parse_client_hello(benchmark):
    assert benchmark(tls.parse_client_hello, HELLO) == (True, "www.example.com")


@pytest.mark.benchmark(group="tls-per-connection")
def test_option_for_server_name(benchmark, config):
    assert benchmark(config.option_for_server_name, "www.example.com").name == "opt1"


@pytest.mark.benchmark(group="tls-per-request")
def test_misdirected_same_host(benchmark, config):
    assert benchmark(tls.misdirected, config.host_options, "www.example.com",
                     "www.example.com") is False


@pytest.mark.benchmark(group="tls-per-request")
def test_misdirected_fronting(benchmark, config):
    assert benchmark(tls.misdirected, config.host_options, "www.example.com",
                     "host3.example.com") is True


@pytest.fixture(scope="module")
def served():
    import trustme
    ca = trustme.CA()
    leaf = ca.issue_cert("www.example.com")
    entry = {"certFile": b"".join(b.bytes() for b in leaf.cert_chain_pems).decode(),
             "keyFile": leaf.private_key_pem.bytes().decode()}
    return tls.TLSConfig.build({"certificates": [entry]}, {})


@pytest.mark.benchmark(group="tls-per-connection")
def test_new_connection(benchmark, served):
    # what a worker does per TLS connection before OpenSSL's handshake work: the option, a
    # Connection on its context, the certificate choice, the TLSStream (the gap to nginx in
    # bench/tls_vs_nginx.py's full handshakes is this and the Python around it)
    import socket
    a, b = socket.socketpair()
    try:
        stream = benchmark(served.new_connection, a, "www.example.com")
        assert stream.option == "default" and stream.server_name == "www.example.com"
    finally:
        a.close()
        b.close()
