"""Every TLSOption field, over real handshakes with a stdlib-ssl client."""
import ssl

import pytest
import trustme

from pyroute import tls
from _tls_harness import Server, certificate_entry, client_context, connect, fetch, get

TLS10, TLS11, TLS12, TLS13 = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1,
                              ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def other_ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def rsa_leaf(ca):
    return ca.issue_cert("*.example.com", key_type=trustme.KeyType.RSA)


def serve(ca, leaf, options, hosts=None):
    """A config where each host in ``hosts`` (name -> option) is a TLS router's Host."""
    routers = {}
    for i, (host, option) in enumerate((hosts or {}).items()):
        routers["r%d" % i] = {"rule": "Host(`%s`)" % host, "tls": {"options": option}}
    return tls.TLSConfig.build({"certificates": [certificate_entry(leaf)], "options": options},
                               routers)


def refused(port, ctx, name, **kw):
    """True when the server refuses: handshake failure, or (TLS 1.3 client auth) an alert or a
    close on the first read."""
    try:
        status, _, _ = fetch(port, ctx, name, **kw)
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    return False


def test_defaults_are_safe(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {})
    assert config.errors == []
    option = config.options["default"]
    with Server(config) as srv:
        _, body, peer = fetch(srv.port, client_context(ca), "a.example.com")
        assert (peer.version, body["alpn"]) == ("TLSv1.3", "http/1.1")
        _, body, peer = fetch(srv.port, client_context(ca, maximum=TLS12), "a.example.com")
        assert peer.version == "TLSv1.2"
        # Mozilla intermediate, server order: ECDHE + AEAD first.
        assert peer.cipher == "ECDHE-RSA-AES128-GCM-SHA256"
        for version in (TLS10, TLS11):
            ctx = client_context(verify=False, minimum=version, maximum=version,
                                 ciphers="ALL:@SECLEVEL=0")
            assert refused(srv.port, ctx, "a.example.com")
        # Weak TLS 1.2 suites are not offered at all.
        assert refused(srv.port, client_context(ca, maximum=TLS12, ciphers="AES128-SHA"),
                       "a.example.com")
    set_options = option.base.get_options()
    assert set_options & tls.SSL.OP_NO_COMPRESSION
    assert set_options & tls.SSL.OP_NO_RENEGOTIATION


def test_client_renegotiation_is_refused(ca, rsa_leaf):
    # stdlib ssl cannot renegotiate: a pyOpenSSL client over TLS 1.2 asks for it, and the
    # server answers no_renegotiation (OP_NO_RENEGOTIATION) instead of a new handshake.
    import socket
    import struct
    from OpenSSL import SSL
    config = serve(ca, rsa_leaf, {})
    with Server(config) as srv:
        cctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        cctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        sock = socket.create_connection(("127.0.0.1", srv.port))
        # Blocking for OpenSSL, but never forever: a kernel receive timeout.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 5, 0))
        conn = SSL.Connection(cctx, sock)
        conn.set_tlsext_host_name(b"a.example.com")
        conn.set_connect_state()
        conn.do_handshake()
        assert conn.renegotiate()
        with pytest.raises(SSL.Error) as failure:
            conn.do_handshake()
            conn.sendall(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
            conn.recv(1024)
        assert "renegotiation" in str(failure.value)
        sock.close()


def test_min_version_per_host(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {"modern": {"minVersion": "VersionTLS13"}},
                   {"modern.example.com": "modern"})
    with Server(config) as srv:
        assert refused(srv.port, client_context(ca, maximum=TLS12), "modern.example.com")
        _, body, peer = fetch(srv.port, client_context(ca), "modern.example.com")
        assert (body["option"], peer.version) == ("modern", "TLSv1.3")
        # Another host on the same listener keeps the default option's TLS 1.2.
        _, body, peer = fetch(srv.port, client_context(ca, maximum=TLS12), "other.example.com")
        assert (body["option"], peer.version) == ("default", "TLSv1.2")


def test_max_version_is_negotiated_down_not_refused(ca, rsa_leaf):
    # The option is picked from the peeked ClientHello, before OpenSSL negotiates a version:
    # a TLS 1.3 capable client gets TLS 1.2 on that host, as with Traefik.
    config = serve(ca, rsa_leaf, {"max12": {"maxVersion": "VersionTLS12"}},
                   {"legacy.example.com": "max12"})
    with Server(config) as srv:
        _, body, peer = fetch(srv.port, client_context(ca), "legacy.example.com")
        assert (body["option"], peer.version) == ("max12", "TLSv1.2")
        _, body, peer = fetch(srv.port, client_context(ca), "new.example.com")
        assert peer.version == "TLSv1.3"


def test_old_versions_when_asked_for(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {"default": {"minVersion": "VersionTLS10"}})
    assert config.errors == []
    with Server(config) as srv:
        for version, name in ((TLS10, "TLSv1"), (TLS11, "TLSv1.1")):
            ctx = client_context(verify=False, minimum=version, maximum=version,
                                 ciphers="DEFAULT:@SECLEVEL=0")
            assert fetch(srv.port, ctx, "a.example.com")[2].version == name


def test_bad_versions_are_errors(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {"a": {"minVersion": "TLS1.2"},
                                  "b": {"minVersion": "VersionTLS13",
                                        "maxVersion": "VersionTLS12"}})
    rendered = sorted(e.render() for e in config.errors)
    assert rendered == [
        "TLSOption a: minVersion: unknown TLS version 'TLS1.2' (expected one of VersionTLS10, "
        "VersionTLS11, VersionTLS12, VersionTLS13)",
        "TLSOption b: maxVersion: maxVersion TLSv1.2 is below minVersion TLSv1.3"]
    assert config.options["a"].error and config.options["b"].error


def test_cipher_suites_mapped_from_go_names(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {"pinned": {"cipherSuites": [
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"]}},
        {"pinned.example.com": "pinned"})
    assert config.errors == []
    with Server(config) as srv:
        _, _, peer = fetch(srv.port, client_context(ca, maximum=TLS12), "pinned.example.com")
        assert peer.cipher == "ECDHE-RSA-AES256-GCM-SHA384"
        assert refused(srv.port, client_context(ca, maximum=TLS12,
                                                ciphers="ECDHE-RSA-AES128-GCM-SHA256"),
                       "pinned.example.com")
        # TLS 1.3 suites are not configurable (Go), so TLS 1.3 still works.
        assert fetch(srv.port, client_context(ca), "pinned.example.com")[2].version == "TLSv1.3"


def test_only_tls13_suite_names_mean_no_tls12(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {"default": {"cipherSuites": ["TLS_AES_256_GCM_SHA384"]}})
    assert config.errors == []
    with Server(config) as srv:
        assert refused(srv.port, client_context(ca, maximum=TLS12), "a.example.com")
        assert fetch(srv.port, client_context(ca), "a.example.com")[2].version == "TLSv1.3"


def test_unknown_cipher_breaks_the_option_and_closes_its_hosts(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {"bad": {"cipherSuites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                                           "ECDHE-RSA-AES128-GCM-SHA256"]}},
                   {"bad.example.com": "bad", "good.example.com": "default"})
    (err,) = config.errors
    assert err.render() == ("TLSOption bad: cipherSuites[1]: invalid CipherSuite: "
                            "ECDHE-RSA-AES128-GCM-SHA256")
    with Server(config) as srv:
        # Never served with weaker settings: the connection is closed before any handshake.
        assert refused(srv.port, client_context(ca), "bad.example.com")
        assert srv.wait_refusals(1) == ["broken TLS options bad: " + err.render()]
        assert fetch(srv.port, client_context(ca), "good.example.com")[0] == 200


def test_curve_preferences(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {"p384": {"curvePreferences": ["CurveP384"]},
                                  "rfc": {"curvePreferences": ["secp521r1", "x25519"]}},
                   {"p384.example.com": "p384", "rfc.example.com": "rfc"})
    assert config.errors == []
    with Server(config) as srv:
        for tls_max in (TLS12, TLS13):
            _, body, _ = fetch(srv.port, client_context(ca, maximum=tls_max), "p384.example.com")
            assert body["group"] == "secp384r1"
            _, body, _ = fetch(srv.port, client_context(ca, maximum=tls_max), "rfc.example.com")
            assert body["group"] in ("secp521r1", "x25519")
    bad = serve(ca, rsa_leaf, {"default": {"curvePreferences": ["CurveP999"]}})
    assert [e.render() for e in bad.errors] == [
        "TLSOption default: curvePreferences[0]: invalid CurveID in curvePreferences: CurveP999"]


CLIENT_AUTH_MATRIX = {
    # type: (no certificate, certificate from the trusted CA, certificate from another CA)
    "NoClientCert": (True, True, True),
    "RequestClientCert": (True, True, True),
    "RequireAnyClientCert": (False, True, True),
    "VerifyClientCertIfGiven": (True, True, False),
    "RequireAndVerifyClientCert": (False, True, False),
}


@pytest.mark.parametrize("auth_type", sorted(CLIENT_AUTH_MATRIX))
def test_client_auth_types(ca, other_ca, rsa_leaf, auth_type):
    client_ca = trustme.CA()
    good = client_ca.issue_cert("good-client", common_name="good-client")
    stranger = other_ca.issue_cert("stranger", common_name="stranger")
    ca_pem = client_ca.cert_pem.bytes().decode()
    config = serve(ca, rsa_leaf, {"mtls": {"clientAuth": {"caFiles": [ca_pem],
                                                          "clientAuthType": auth_type}}},
                   {"mtls.example.com": "mtls"})
    assert config.errors == []
    expected = CLIENT_AUTH_MATRIX[auth_type]
    with Server(config) as srv:
        for tls_max in (TLS12, TLS13):
            for client, ok in zip((None, good, stranger), expected):
                ctx = client_context(ca, maximum=tls_max, client_cert=client)
                if not ok:
                    assert refused(srv.port, ctx, "mtls.example.com"), (tls_max, client)
                    continue
                status, body, _ = fetch(srv.port, ctx, "mtls.example.com")
                assert status == 200
                seen = None if auth_type == "NoClientCert" or client is None else \
                    ("good-client" if client is good else "stranger")
                assert body["client_cn"] == seen, (tls_max, client)


def test_ca_files_alone_require_and_verify(ca, rsa_leaf):
    client_ca = trustme.CA()
    config = serve(ca, rsa_leaf, {"default": {"clientAuth": {
        "caFiles": [client_ca.cert_pem.bytes().decode()]}}})
    with Server(config) as srv:
        assert refused(srv.port, client_context(ca), "a.example.com")
        ctx = client_context(ca, client_cert=client_ca.issue_cert("c", common_name="c"))
        assert fetch(srv.port, ctx, "a.example.com")[1]["client_cn"] == "c"


def test_client_auth_errors(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {
        "noca": {"clientAuth": {"clientAuthType": "RequireAndVerifyClientCert"}},
        "typo": {"clientAuth": {"clientAuthType": "RequireClientCert"}},
        "badca": {"clientAuth": {"caFiles": ["garbage"]}},
    })
    rendered = sorted(e.render() for e in config.errors)
    assert rendered[0].startswith("TLSOption badca: clientAuth.caFiles[0]: invalid certificate(s) "
                                  "content")
    assert rendered[1:] == [
        "TLSOption noca: clientAuth.clientAuthType: invalid clientAuthType: "
        "RequireAndVerifyClientCert, CAFiles is required",
        "TLSOption typo: clientAuth.clientAuthType: unknown client auth type "
        "'RequireClientCert' (expected one of NoClientCert, RequestClientCert, "
        "RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"]


def test_alpn_h2_by_default_as_traefik(ca, rsa_leaf):
    # Traefik's entry points serve HTTP/2: ALPN picks h2 when the client offers it (the
    # default list and an option listing h2), http/1.1 for a client that offers only that.
    config = serve(ca, rsa_leaf, {"both": {"alpnProtocols": ["h2", "http/1.1"]}},
                   {"both.example.com": "both"})
    assert config.h2
    with Server(config) as srv:
        for name in ("a.example.com", "both.example.com"):
            assert fetch(srv.port, client_context(ca, alpn=("h2", "http/1.1")),
                         name)[2].alpn == "h2"
            assert fetch(srv.port, client_context(ca, alpn=("http/1.1",)),
                         name)[2].alpn == "http/1.1"
            assert fetch(srv.port, client_context(ca, alpn=()), name)[2].alpn is None


def test_alpn_never_advertises_what_pyroute_cannot_speak(ca, rsa_leaf):
    # an entry point with the pyroute extension http2.enabled: false serves no h2
    config = serve(ca, rsa_leaf, {"both": {"alpnProtocols": ["h2", "http/1.1"]},
                                  "h2only": {"alpnProtocols": ["h2"]}},
                   {"both.example.com": "both", "h2only.example.com": "h2only"})
    config.h2 = False
    # (built outside from_runtime, which drops these when every entry point serves h2)
    assert sorted((e.name, e.field, e.severity) for e in config.errors) == [
        ("both", "alpnProtocols[0]", "warning"), ("h2only", "alpnProtocols[0]", "warning")]
    assert all(e.message == tls.H2_ALPN_WARNING for e in config.errors)
    with Server(config) as srv:
        for name in ("a.example.com", "both.example.com"):
            _, body, peer = fetch(srv.port, client_context(ca, alpn=("h2", "http/1.1")), name)
            assert peer.alpn == "http/1.1"
            # A client that speaks only h2 is refused (no_application_protocol), as Go does
            # when nothing overlaps; without ALPN the client just gets HTTP/1.1.
            assert refused(srv.port, client_context(ca, alpn=("h2",)), name)
            assert fetch(srv.port, client_context(ca, alpn=()), name)[2].alpn is None
        reasons = srv.wait_refusals(2)
        assert any(r.startswith("no application protocol in common") for r in reasons)
        # Nothing left to advertise: ALPN is not acknowledged, h2 is never selected.
        _, _, peer = fetch(srv.port, client_context(ca, alpn=("h2",)), "h2only.example.com")
        assert peer.alpn is None


@pytest.mark.parametrize("tls_max", [TLS12, TLS13])
def test_session_resumption(ca, rsa_leaf, tls_max):
    config = serve(ca, rsa_leaf, {"other": {"sniStrict": False, "minVersion": "VersionTLS12"},
                                  "notickets": {"disableSessionTickets": True}},
                   {"other.example.com": "other", "nt.example.com": "notickets"})
    with Server(config) as srv:
        ctx = client_context(ca, maximum=tls_max)
        _, body, first = fetch(srv.port, ctx, "a.example.com")
        assert not first.session_reused and first.session is not None
        _, body, again = fetch(srv.port, ctx, "a.example.com", session=first.session)
        assert again.session_reused and body["resumed"] is True
        # A session is resumed only under the option it was made with.
        _, body, elsewhere = fetch(srv.port, ctx, "other.example.com", session=first.session)
        assert not elsewhere.session_reused and body["option"] == "other"
        # disableSessionTickets: every handshake is a full one.
        _, _, nt = fetch(srv.port, ctx, "nt.example.com")
        _, body, nt2 = fetch(srv.port, ctx, "nt.example.com", session=nt.session)
        assert not nt2.session_reused and body["resumed"] is False


# Go's crypto/tls CipherSuites(): what Traefik fills in for an option without cipherSuites.
GO_DEFAULT_SUITES = [
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
]


def test_unset_cipher_suites_mean_mozilla_intermediate(ca, rsa_leaf):
    # What the manifests layer passes for a TLSOption without cipherSuites (the field absent)
    # and Traefik's default ALPN list: Mozilla intermediate and http/1.1, without warnings.
    config = serve(ca, rsa_leaf, {"default": {"alpnProtocols": ["h2", "http/1.1", "acme-tls/1"],
                                              "minVersion": "VersionTLS12"}})
    assert config.errors == []
    option = config.options["default"]
    # (h2 is in the list, not advertised on entry points with http2.enabled: false: alpn_h1)
    assert (option.ciphers, option.alpn, option.alpn_h1) == (
        tls.DEFAULT_CIPHERS, (b"h2", b"http/1.1"), (b"http/1.1",))
    with Server(config) as srv:
        # The CBC suites of Go's list are not offered...
        assert refused(srv.port, client_context(ca, maximum=TLS12, ciphers="ECDHE-RSA-AES128-SHA"),
                       "a.example.com")
        # ...the AEAD ones are.
        _, _, peer = fetch(srv.port, client_context(ca, maximum=TLS12,
                                                    ciphers="ECDHE-RSA-CHACHA20-POLY1305"),
                           "a.example.com")
        assert peer.cipher == "ECDHE-RSA-CHACHA20-POLY1305"


def test_listed_cipher_suites_are_served_exactly_even_gos_own_list(ca, rsa_leaf):
    # An option that lists suites gets exactly those, Go's default list included (its CBC-SHA
    # suites too): pyroute only substitutes its safe default when the field is absent.
    config = serve(ca, rsa_leaf, {"default": {"cipherSuites": list(GO_DEFAULT_SUITES)}})
    assert config.errors == []
    assert config.options["default"].ciphers.split(":") == [
        "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES128-SHA",
        "ECDHE-RSA-AES256-SHA", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"]
    with Server(config) as srv:
        _, _, peer = fetch(srv.port, client_context(ca, maximum=TLS12,
                                                    ciphers="ECDHE-RSA-AES128-SHA"),
                           "a.example.com")
        assert peer.cipher == "ECDHE-RSA-AES128-SHA"


def test_unknown_option_fields_are_errors(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {"x": {"minversion": "VersionTLS12", "sniStrict": "yes"}})
    assert sorted(e.render() for e in config.errors) == [
        "TLSOption x: minversion: unknown field",
        "TLSOption x: sniStrict: must be true or false, got 'yes'"]


def test_keep_alive_requests_after_handshake(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {})
    with Server(config) as srv:
        with connect(srv.port, client_context(ca), "a.example.com") as conn:
            for _ in range(20):
                status, body = get(conn, "a.example.com")
                assert status == 200 and body["option"] == "default"


def test_large_responses_cross_partial_tls_writes(ca, rsa_leaf):
    config = serve(ca, rsa_leaf, {})
    with Server(config) as srv:
        with connect(srv.port, client_context(ca), "a.example.com") as conn:
            for size in (16 * 1024 * 1024, 1024, 5 * 1024 * 1024 + 16):
                status, body = get(conn, "a.example.com", "/big/%d" % size)
                assert status == 200 and len(body) == size // 16 * 16
                assert body[:32] == "0123456789abcdef" * 2


def test_base_contexts_are_reused_while_settings_stay(ca, rsa_leaf):
    # The base context holds the ticket keys: the same settings and default certificate give
    # the same context (so workers forked after the master's build share keys, and tickets
    # survive reloads); any change gives a new one.
    first = serve(ca, rsa_leaf, {"a": {"minVersion": "VersionTLS12"}})
    again = serve(ca, rsa_leaf, {"a": {"minVersion": "VersionTLS12"}})
    changed = serve(ca, rsa_leaf, {"a": {"minVersion": "VersionTLS13"}})
    assert again.options["a"].base is first.options["a"].base
    assert changed.options["a"].base is not first.options["a"].base
    assert changed.options["default"].base is first.options["default"].base
    with Server(first) as srv:
        ctx = client_context(ca)
        _, _, peer = fetch(srv.port, ctx, "a.example.com")
        srv.config = again                      # a reload with the same settings
        _, body, resumed = fetch(srv.port, ctx, "a.example.com", session=peer.session)
        assert resumed.session_reused and body["resumed"] is True
