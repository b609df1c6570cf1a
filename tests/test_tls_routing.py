"""Host -> TLS option association, conflicts, the 421 rule, and ClientHello peeking."""
import functools
import select
import socket
import ssl

import pytest
import trustme
from hypothesis import given, settings, strategies as st

from pyroute import tls
from _tls_harness import Server, certificate_entry, client_context, fetch
from tls_hello_oracle import oracle_parse_client_hello


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca):
    return ca.issue_cert("*.example.com", "example.net", "*.example.net")


def build(leaf, routers, options=None, **kw):
    opts = {"foo": {}, "bar": {}, "strict12": {"maxVersion": "VersionTLS12"}}
    opts.update(options or {})
    return tls.TLSConfig.build({"certificates": [certificate_entry(leaf)], "options": opts},
                               routers, **kw)


def router(rule, options=None, **tls_fields):
    spec = dict(tls_fields)
    if options is not None:
        spec["options"] = options
    return {"rule": rule, "service": "s", "tls": spec}


def test_every_host_of_a_rule_maps_to_the_router_option(ca, leaf):
    config = build(leaf, {
        "r1": router("(Host(`a.example.com`) || Host(`B.example.com`)) && PathPrefix(`/x`)", "foo"),
        "r2": router("Host(`c.example.com`, `d.example.com`)", "bar"),
        "r3": router("Host(`e.example.com`)"),
        "plain": {"rule": "Host(`p.example.com`)", "service": "s"},
    })
    assert config.errors == []
    assert config.host_options == {"a.example.com": "foo", "b.example.com": "foo",
                                   "c.example.com": "bar", "d.example.com": "bar",
                                   "e.example.com": "default"}
    assert (config.router_option("r1"), config.router_option("r3"),
            config.router_option("plain")) == ("foo", "default", None)
    with Server(config) as srv:
        for name, option in (("a.example.com", "foo"), ("B.EXAMPLE.COM", "foo"),
                             ("d.example.com", "bar"), ("p.example.com", "default"),
                             ("zzz.example.com", "default")):
            _, body, _ = fetch(srv.port, client_context(ca), name)
            assert body["option"] == option, name
        _, body, _ = fetch(srv.port, client_context(verify=False), None, host="a.example.com")
        # No SNI: default option (and here, a 421: Host maps to foo).
        assert body == "Misdirected Request\n"


def test_conflicting_options_fall_back_to_default(ca, leaf):
    # The seed's "Conflicting TLS Options" example: IngressRoute01 (foo) and IngressRoute02 (bar)
    # both on example.net.
    config = build(leaf, {
        "ingressroute01": router("Host(`example.net`) || Host(`only01.example.net`)", "foo"),
        "ingressroute02": router("Host(`example.net`)", "bar"),
        "same": router("Host(`only01.example.net`)", "foo"),
    })
    assert config.host_options == {"example.net": "default", "only01.example.net": "foo"}
    assert sorted((e.name, e.severity, e.message) for e in config.errors) == [
        (name, "warning", "found different TLS options for routers on the same host "
         "example.net, so using the default TLS options instead")
        for name in ("ingressroute01", "ingressroute02")]
    with Server(config) as srv:
        _, body, _ = fetch(srv.port, client_context(ca), "example.net")
        assert body["option"] == "default"
        _, body, _ = fetch(srv.port, client_context(ca), "only01.example.net")
        assert body["option"] == "foo"


def test_unknown_option_closes_the_router_hosts(ca, leaf):
    config = build(leaf, {"r": router("Host(`x.example.com`)", "nosuch"),
                          "ok": router("Host(`y.example.com`)", "foo")})
    (err,) = config.errors
    assert (err.kind, err.name, err.field) == ("Router", "r", "tls.options")
    assert err.message.startswith("unknown TLS options: nosuch")
    with Server(config) as srv:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            fetch(srv.port, client_context(ca), "x.example.com")
        assert srv.wait_refusals(1) == ["unknown TLS options: nosuch"]
        assert fetch(srv.port, client_context(ca), "y.example.com")[1]["option"] == "foo"


def test_broken_default_option_closes_unmapped_connections(ca, leaf):
    config = build(leaf, {"r": router("Host(`foo.example.com`)", "foo")},
                   options={"default": {"cipherSuites": ["NOPE"]}})
    assert config.options["default"].error
    with Server(config) as srv:
        assert fetch(srv.port, client_context(ca), "foo.example.com")[0] == 200
        for name in ("other.example.com", None):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                fetch(srv.port, client_context(verify=False), name)
        reasons = srv.wait_refusals(2)
        assert len(reasons) == 2
        assert all(r.startswith("broken default TLS options:") for r in reasons)


def test_router_without_host_rule_does_not_claim_hosts(ca, leaf):
    config = build(leaf, {"r": router("PathPrefix(`/api`)", "foo")})
    assert config.host_options == {}
    assert config.router_option("r") == "foo"
    with Server(config) as srv:
        assert fetch(srv.port, client_context(ca), "a.example.com")[1]["option"] == "default"


def test_option_references_resolve_provider_suffixes(leaf):
    config = tls.TLSConfig.build(
        {"certificates": [certificate_entry(leaf)],
         "options": {"apps-opt@kubernetescrd": {}, "plain": {}}},
        {"r1": router("Host(`a.example.com`)", "apps-opt"),
         "r2": router("Host(`b.example.com`)", "plain@kubernetescrd"),
         "r3": router("Host(`c.example.com`)", "default")})
    assert config.errors == []
    assert config.host_options == {"a.example.com": "apps-opt@kubernetescrd",
                                   "b.example.com": "plain", "c.example.com": "default"}


def test_entry_point_and_status_filter_routers(leaf):
    routers = {
        "web": dict(router("Host(`w.example.com`)", "foo"), entryPoints=["websecure"]),
        "other": dict(router("Host(`o.example.com`)", "bar"), entryPoints=["internal"]),
        "any": router("Host(`any.example.com`)", "bar"),
        # Disabled routers still claim their hosts (Traefik's GetRoutersByEntryPoints).
        "off": dict(router("Host(`off.example.com`)", "foo"), status="disabled"),
    }
    config = build(leaf, routers, entry_point="websecure")
    assert config.host_options == {"w.example.com": "foo", "any.example.com": "bar",
                                   "off.example.com": "foo"}
    # A router without entryPoints belongs to the default entry points only.
    config = build(leaf, routers, entry_point="websecure", default_entry_points=["web"])
    assert config.host_options == {"w.example.com": "foo"}


def test_cert_resolver_is_reported_and_default_certificate_served(ca, leaf):
    config = tls.TLSConfig.build({}, {"r": router("Host(`acme.example.com`)",
                                                  certResolver="letsencrypt",
                                                  domains=[{"main": "acme.example.com"}])})
    (err,) = config.errors
    assert (err.name, err.field) == ("r", "tls.certResolver")
    assert "'letsencrypt' does not exist" in err.message and "default certificate" in err.message
    with Server(config) as srv:
        _, body, _ = fetch(srv.port, client_context(verify=False), "acme.example.com")
        assert body["certificate"] == "generated default certificate"


# -- the 421 rule ------------------------------------------------------------------------------

def test_domain_fronting_across_options_is_misdirected(ca, leaf):
    config = build(leaf, {"a": router("Host(`a.example.com`)", "foo"),
                          "b": router("Host(`b.example.com`)", "bar"),
                          "c": router("Host(`c.example.com`)", "foo"),
                          "d": router("Host(`d.example.com`)")})
    cases = [
        # (SNI, Host header, expected status)
        ("a.example.com", "a.example.com", 200),
        ("a.example.com", "A.Example.com", 200),        # EqualFold
        ("a.example.com", "b.example.com", 421),        # foo -> bar
        ("a.example.com", "c.example.com", 200),        # foo -> foo: allowed
        ("d.example.com", "zzz.example.com", 200),      # default -> default (unmapped)
        ("d.example.com", "a.example.com", 421),        # default -> foo
        ("a.example.com", "d.example.com", 421),        # foo -> default
        ("a.example.com", "c.example.com.", 200),       # FQDN Host finds c's option
        ("a.example.com", "b.example.com.", 421),
        ("a.example.com", "c.example.com:443", 200),    # the port is not part of the host
    ]
    with Server(config) as srv:
        for sni, host, status in cases:
            got = fetch(srv.port, client_context(ca), sni, host=host)[0]
            assert got == status, (sni, host)


def test_misdirected_matches_traefik_snicheck():
    hosts = {"example.com": "foo", "fqdn.example.com.": "bar"}
    # pkg/middlewares/snicheck/snicheck_test.go, plus FQDN and case handling.
    assert not tls.misdirected({}, "localhost", "example.com")
    assert not tls.misdirected(hosts, "example.com", "example.com")
    assert tls.misdirected(hosts, "localhost", "example.com")
    assert not tls.misdirected(hosts, "localhost", "other.com")
    assert not tls.misdirected(hosts, "example.com", "EXAMPLE.COM.")   # same option via FQDN
    assert tls.misdirected(hosts, "localhost", "EXAMPLE.COM.")
    assert not tls.misdirected({"x.com": "foo", "y.com": "foo"}, "x.com", "y.com")
    assert tls.misdirected(hosts, "", "fqdn.example.com")
    # The SNI is looked up as is (no FQDN variants), the Host with and without its dot.
    assert tls.misdirected(hosts, "fqdn.example.com", "fqdn.example.com.")


# -- ClientHello peeking ---------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def client_hello(server_name):
    """The bytes of a real ClientHello (stdlib ssl over memory BIOs)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_parse_client_hello_reads_sni():
    hello = client_hello("Mixed.Example.COM")
    assert tls.parse_client_hello(hello) == (True, "mixed.example.com")
    assert tls.parse_client_hello(hello[:3]) == (False, 5)
    assert tls.parse_client_hello(hello[:100]) == (False, len(hello))
    assert tls.parse_client_hello(b"GET / HTTP/1.1\r\n") == (True, None)
    no_sni = ssl.create_default_context()
    no_sni.check_hostname = False
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = no_sni.wrap_bio(inc, out)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    assert tls.parse_client_hello(out.read()) == (True, "")     # read, and no SNI in it


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=700))
def test_parse_client_hello_never_raises(noise, cut):
    hello = client_hello("fuzz.example.com")
    for data in (noise, b"\x16\x03\x01" + noise, hello[:cut] + noise,
                 hello[:5] + noise[: len(hello) - 5]):
        complete, result = tls.parse_client_hello(data)
        assert isinstance(complete, bool)
        assert result is None or isinstance(result, (str, int))
        assert (complete, result) == oracle_parse_client_hello(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=255),
       st.sampled_from(["a.example.com", "Mixed.Case.Example", ".".join(["x" * 60] * 3), None]))
def test_parse_client_hello_agrees_with_python_oracle(where, value, name):
    # one byte of a real hello changed anywhere: the C parser and its Python twin agree
    hello = bytearray(client_hello(name) if name else client_hello_without_sni())
    hello[where % len(hello)] = value
    assert tls.parse_client_hello(bytes(hello)) == oracle_parse_client_hello(bytes(hello))


@functools.lru_cache(maxsize=None)
def client_hello_without_sni():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def tcp_pair():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setblocking(False)
    return client, server


def readable(sock, timeout):
    return bool(select.select([sock], [], [], timeout)[0])


def test_split_client_hello_waits_without_spinning(leaf):
    config = build(leaf, {"r": router("Host(`split.example.com`)", "strict12")})
    hello = client_hello("split.example.com")
    client, server = tcp_pair()
    try:
        client.sendall(hello[:40])
        assert readable(server, 2)
        assert config.accept(server) is None
        # SO_RCVLOWAT holds the socket unreadable until the whole record is there: a
        # level-triggered selector does not spin on the partial hello.
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == len(hello)
        assert not readable(server, 0.2)
        client.sendall(hello[40:])
        assert readable(server, 2)
        conn = config.accept(server, again=True)
        assert config.option_name_of(conn) == "strict12"
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
        # Nothing was consumed: OpenSSL reads the whole hello and answers it.
        assert tls.handshake(conn) == tls.WANT_READ
        assert readable(client, 2) and client.recv(5)[0] == 0x16
    finally:
        client.close()
        server.close()


def test_client_leaving_mid_hello_is_refused(leaf):
    config = build(leaf, {})
    hello = client_hello("gone.example.com")
    client, server = tcp_pair()
    try:
        client.sendall(hello[:40])
        assert readable(server, 2) and config.accept(server) is None
        client.close()
        assert readable(server, 2)
        conn = config.accept(server, again=True)   # woken by EOF, the record still short
        assert conn is not None and config.option_name_of(conn) == "default"
        with pytest.raises(tls.TLSRefused):
            while True:
                assert tls.handshake(conn) == tls.WANT_READ
                assert readable(server, 2)
    finally:
        server.close()


def test_client_closing_before_hello_is_refused(leaf):
    config = build(leaf, {})
    client, server = tcp_pair()
    client.close()
    assert readable(server, 2)
    with pytest.raises(tls.TLSRefused, match="before its TLS hello"):
        config.accept(server)
    server.close()


def test_hosts_come_from_the_rule_language(leaf):
    config = build(leaf, {
        "neg": router("Host(`a.example.com`) && !Host(`b.example.com`)", "foo"),
        "v2": dict(router("Host(`c.example.com`, `d.example.com`)", "bar"), ruleSyntax="v2"),
        "bad": router("Host(`e.example.com`", "foo"),
    })
    assert config.host_options == {"a.example.com": "foo", "c.example.com": "bar",
                                   "d.example.com": "bar"}
    (err,) = config.errors
    assert (err.name, err.field) == ("bad", "rule")
    assert err.message.startswith("invalid rule Host(`e.example.com`, error:")


def test_misdirected_request_takes_the_raw_host_header(leaf):
    config = build(leaf, {"a": router("Host(`a.example.com`)", "foo")})
    assert config.misdirected_request("", b"a.example.com:8443")
    assert config.misdirected_request("other.example.com", b"a.example.com")
    assert not config.misdirected_request("a.example.com", b"A.EXAMPLE.COM:443")
    assert not config.misdirected_request("x.example.com", b"[::1]:443")
    assert not config.misdirected_request("x.example.com", b"")
    empty = build(leaf, {})
    assert not empty.misdirected_request("", b"a.example.com")


def test_accept_tells_plain_from_tls_without_consuming(leaf):
    config = build(leaf, {})
    client, server = tcp_pair()
    try:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert readable(server, 2)
        assert config.accept(server) is tls.PLAIN
        assert server.recv(100).startswith(b"GET / HTTP/1.1")
    finally:
        client.close()
        server.close()


def test_hello_spanning_two_records_gets_default_option_and_certificate_by_sni(ca, leaf):
    # The peek reads one record (as Traefik's sniffer does): a ClientHello fragmented over two
    # records maps to the default option, and OpenSSL's own reading of the SNI (the fallback
    # context's callback) still picks the certificate, as Go's GetCertificate does in Traefik.
    config = build(leaf, {"r": router("Host(`split.example.com`)", "strict12")})
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx.wrap_bio(incoming, outgoing, server_hostname="split.example.com")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    body = hello[5:]
    assert len(hello) == 5 + len(body) and hello[0] == 0x16
    cut = 60
    records = b"".join(hello[:3] + len(part).to_bytes(2, "big") + part
                       for part in (body[:cut], body[cut:]))
    assert tls.parse_client_hello(records) == (True, None)     # the peek cannot read it
    client, server = tcp_pair()
    try:
        client.sendall(records)
        assert readable(server, 2)
        stream = config.accept(server)
        assert stream is not None and config.option_name_of(stream) == "default"
        client.settimeout(2)
        done = False
        for _ in range(20):
            state = tls.handshake(stream)
            done = done or state == 0
            if readable(client, 0.2):
                incoming.write(client.recv(65536))
            try:
                obj.do_handshake()
                client.sendall(outgoing.read())
                if done:
                    break
            except ssl.SSLWantReadError:
                client.sendall(outgoing.read())
            readable(server, 0.2)
        assert done
        cert = config.served_certificate(stream)
        assert cert is not None and "*.example.com" in cert.names
        assert stream.server_name == "split.example.com"
        assert obj.version() == "TLSv1.3"     # the default option, not strict12's TLS 1.2
    finally:
        client.close()
        server.close()
