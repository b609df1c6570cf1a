"""Certificate selection by SNI, as Traefik's certificate store does it, over real handshakes."""
import ipaddress
import ssl

import pytest
import trustme

from pyroute import tls
from _tls_harness import Server, certificate_entry, client_context, fetch, peer_names


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def build(certs=(), options=None, routers=None, stores=None):
    dyn = {"certificates": list(certs)}
    if options is not None:
        dyn["options"] = options
    if stores is not None:
        dyn["stores"] = stores
    return tls.TLSConfig.build(dyn, routers or {})


def test_sni_selects_the_certificate_with_that_name(ca):
    a, b = ca.issue_cert("a.example.com"), ca.issue_cert("b.example.com")
    config = build([certificate_entry(a), certificate_entry(b)])
    assert config.errors == []
    with Server(config) as srv:
        for name, label in (("a.example.com", "tls.certificates[0]"),
                            ("b.example.com", "tls.certificates[1]")):
            # The client verifies the chain and the name: only the right certificate passes.
            status, body, conn = fetch(srv.port, client_context(ca), name)
            assert status == 200
            assert body["certificate"] == label
            assert peer_names(conn)[1] == [name]


def test_sni_is_matched_case_insensitively(ca):
    config = build([certificate_entry(ca.issue_cert("mixed.example.com"))])
    with Server(config) as srv:
        status, body, _ = fetch(srv.port, client_context(verify=False), "MiXeD.Example.COM")
        assert body["certificate"] == "tls.certificates[0]"


def test_wildcard_matches_exactly_one_label(ca):
    config = build([certificate_entry(ca.issue_cert("*.wild.example.com"))])
    with Server(config) as srv:
        status, body, _ = fetch(srv.port, client_context(ca), "x.wild.example.com")
        assert status == 200 and body["certificate"] == "tls.certificates[0]"
        for name in ("wild.example.com", "a.b.wild.example.com"):
            _, body, conn = fetch(srv.port, client_context(verify=False), name)
            assert body["certificate"] == "generated default certificate", name
            assert peer_names(conn)[0] == [tls.DEFAULT_GENERATED_CN]


def test_exact_name_beats_wildcard_whatever_the_order(ca):
    wild = ca.issue_cert("*.example.org")
    exact = ca.issue_cert("exact.example.org")
    for certs, exact_label in (([wild, exact], "tls.certificates[1]"),
                               ([exact, wild], "tls.certificates[0]")):
        config = build([certificate_entry(c) for c in certs])
        with Server(config) as srv:
            _, body, _ = fetch(srv.port, client_context(ca), "exact.example.org")
            assert body["certificate"] == exact_label
            _, body, _ = fetch(srv.port, client_context(ca), "other.example.org")
            assert body["certificate"] != exact_label


def test_store_best_follows_traefik_match_domain(ca):
    # Unit-level check of the ordering rule (sort.Strings, last wins) on names only.
    def cert(*names):
        return tls.Certificate(None, (), None, names, names[0])
    multi, single, star, exact = (cert("*.*.example.net"), cert("*.b.example.net"), cert("*"),
                                  cert("a.b.example.net"))
    store = tls.CertificateStore([multi, single, star], default=None)
    assert store.best("a.b.example.net") is single         # "*.b..." > "*.*..."
    assert store.best("z.y.example.net") is multi
    assert store.best("localhost") is star                  # "*" matches a single label
    assert store.best("example.net") is None
    store = tls.CertificateStore([single, exact], default=None)
    assert store.best("a.b.example.net") is exact


def test_no_sni_serves_the_generated_default_certificate(ca):
    config = build([certificate_entry(ca.issue_cert("a.example.com"))])
    with Server(config) as srv:
        status, body, conn = fetch(srv.port, client_context(verify=False), None)
        assert status == 200
        cns, sans = peer_names(conn)
        assert cns == ["TRAEFIK DEFAULT CERT"]
        assert len(sans) == 1 and sans[0].endswith(".traefik.default")
        # One generated certificate per process, as Traefik generates one at start.
        assert tls.generated_default_certificate() is tls.generated_default_certificate()


def test_no_sni_matches_a_certificate_for_the_local_ip(ca):
    # Traefik: without SNI, the local address of the connection is the name to match.
    ip_cert = ca.issue_cert("127.0.0.1")
    config = build([certificate_entry(ca.issue_cert("a.example.com")), certificate_entry(ip_cert)])
    with Server(config) as srv:
        ctx = client_context(ca)
        ctx.check_hostname = False
        _, body, conn = fetch(srv.port, ctx, None)
        assert body["certificate"] == "tls.certificates[1]"


def test_tlsstore_default_certificate_is_served_when_nothing_matches(ca):
    default = ca.issue_cert("fallback.example.com")
    config = build([certificate_entry(ca.issue_cert("a.example.com"))],
                   stores={"default": {"defaultCertificate": certificate_entry(default)}})
    assert config.errors == []
    with Server(config) as srv:
        for name in ("unknown.example.com", None):
            _, body, conn = fetch(srv.port, client_context(verify=False), name)
            assert body["certificate"] == "TLSStore default certificate"
            assert peer_names(conn)[1] == ["fallback.example.com"]


def test_chain_from_the_secret_is_sent(ca):
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("chain.example.com")
    entry = certificate_entry(leaf)
    leaf_only = dict(entry, certFile=leaf.cert_chain_pems[0].bytes().decode())
    # The client trusts only the root: verification needs the intermediate from the server.
    with Server(build([entry])) as srv:
        status, body, _ = fetch(srv.port, client_context(ca), "chain.example.com")
        assert status == 200 and body["certificate"] == "tls.certificates[0]"
    with Server(build([leaf_only])) as srv:
        with pytest.raises(ssl.SSLCertVerificationError):
            fetch(srv.port, client_context(ca), "chain.example.com")


def test_sni_strict_refuses_unknown_and_missing_server_names(ca):
    config = build([certificate_entry(ca.issue_cert("known.example.com"))],
                   options={"default": {"sniStrict": True}})
    with Server(config) as srv:
        status, body, _ = fetch(srv.port, client_context(ca), "known.example.com")
        assert status == 200
        for name in ("unknown.example.com", None):
            with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE|handshake failure"):
                fetch(srv.port, client_context(verify=False), name)
        assert srv.wait_refusals(2) == [
            "strict SNI enabled - No certificate found for domain: 'unknown.example.com', "
            "closing connection",
            "strict SNI enabled - No certificate found for domain: '127.0.0.1', "
            "closing connection"]


def test_sni_strict_ignores_the_default_certificate(ca):
    # "The default certificate is irrelevant on that matter": a name only the TLSStore default
    # certificate carries is refused under sniStrict.
    default = ca.issue_cert("fallback.example.com")
    config = build([], options={"default": {"sniStrict": True}},
                   stores={"default": {"defaultCertificate": certificate_entry(default)}})
    with Server(config) as srv:
        with pytest.raises(ssl.SSLError):
            fetch(srv.port, client_context(ca), "fallback.example.com")


def test_bad_certificates_are_config_errors_and_the_rest_serves(ca):
    good = ca.issue_cert("good.example.com")
    other = ca.issue_cert("other.example.com")
    mismatched = dict(certificate_entry(good), keyFile=certificate_entry(other)["keyFile"])
    config = build([{"certFile": "not a pem", "keyFile": "nope"}, mismatched,
                    certificate_entry(good)])
    rendered = [e.render() for e in config.errors]
    assert len(rendered) == 2
    assert rendered[0].startswith("Certificate tls.certificates[0]: certFile: certificate is not "
                                  "valid PEM")
    assert rendered[1] == ("Certificate tls.certificates[1]: certFile: key does not match the "
                           "certificate")
    with Server(config) as srv:
        _, body, _ = fetch(srv.port, client_context(ca), "good.example.com")
        assert body["certificate"] == "tls.certificates[2]"


def test_broken_store_default_falls_back_to_the_generated_certificate():
    config = build([], stores={"default": {"defaultCertificate": {"certFile": "x",
                                                                  "keyFile": "y"}}})
    assert [e.field for e in config.errors] == ["defaultCertificate"]
    assert "serving the generated default certificate instead" in config.errors[0].message
    with Server(config) as srv:
        _, _, conn = fetch(srv.port, client_context(verify=False), "any.example.com")
        assert peer_names(conn)[0] == ["TRAEFIK DEFAULT CERT"]


def test_other_stores_and_store_lists_are_reported(ca):
    leaf = ca.issue_cert("elsewhere.example.com")
    config = build([certificate_entry(leaf, stores=["other"])],
                   stores={"other": {}})
    assert sorted((e.kind, e.severity) for e in config.errors) == [
        ("Certificate", "warning"), ("TLSStore", "warning")]


def test_ip_san_names_are_indexed():
    # IP SANs count as names (Traefik parseCertificate), in their canonical text form.
    ca = trustme.CA()
    leaf = ca.issue_cert("::1", "10.0.0.1")
    cert = tls.Certificate.from_pem(*[certificate_entry(leaf)[k] for k in ("certFile", "keyFile")])
    assert {str(ipaddress.ip_address(n)) for n in cert.names} == {"::1", "10.0.0.1"}


def test_reload_swaps_certificates_without_dropping_connections(ca):
    old = ca.issue_cert("reload.example.com")
    new = ca.issue_cert("reload.example.com", "extra.example.com")
    first = build([certificate_entry(old)])
    with Server(first) as srv:
        from _tls_harness import connect, get
        with connect(srv.port, client_context(ca), "reload.example.com") as kept:
            assert get(kept, "reload.example.com")[0] == 200
            srv.config = build([certificate_entry(new)])      # what a worker does on reload
            # The established connection keeps going on the context it was made with...
            status, body = get(kept, "reload.example.com")
            assert status == 200 and body["certificate"] == "tls.certificates[0]"
            # ...while new connections get the new certificate.
            _, _, peer = fetch(srv.port, client_context(ca), "extra.example.com")
            assert peer_names(peer)[1] == ["reload.example.com", "extra.example.com"]
