"""End to end over `pyroute run`: TLS termination on an entry point that also serves plain HTTP,
certificates from Secrets, TLSOptions, the 421 rule, reloads, resumption."""
import base64
import json
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest
import trustme

from e2e_backend import Backend
from e2e_support import Pyroute, backend_service, read_response

TLS12 = ssl.TLSVersion.TLSv1_2


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture()
def backend():
    be = Backend("be")
    yield be
    be.close()


def secret(name, leaf=None, ca_pem=None):
    data = {}
    if leaf is not None:
        data["tls.crt"] = b"".join(b.bytes() for b in leaf.cert_chain_pems)
        data["tls.key"] = leaf.private_key_pem.bytes()
    if ca_pem is not None:
        data["ca.crt"] = ca_pem
    body = "".join("  %s: %s\n" % (k, base64.b64encode(v).decode()) for k, v in data.items())
    return ("---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: default}\n"
            "type: kubernetes.io/tls\ndata:\n%s" % (name, body))


def route(name, host, tls=None):
    out = ("---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\n"
           "metadata: {name: %s, namespace: default}\nspec:\n  entryPoints: [web]\n"
           "  routes:\n    - match: Host(`%s`)\n      kind: Rule\n"
           "      services: [{name: be, port: 80}]\n" % (name, host))
    if tls is not None:
        out += "  tls: %s\n" % tls
    return out


def tls_option(name, spec):
    return ("---\napiVersion: traefik.io/v1alpha1\nkind: TLSOption\n"
            "metadata: {name: %s, namespace: default}\nspec: %s\n" % (name, spec))


def client(ca=None, **kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        ca.configure_trust(ctx)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for key, value in kw.items():
        setattr(ctx, key, value)
    return ctx


def tls_get(port, ctx, sni, host=None, path="/", session=None):
    """(status, headers, body, ssl info) of one GET over a new TLS connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host or sni)).encode())
            status, headers, body, _ = read_response(s)
            return status, headers, body, {"version": s.version(), "session": s.session,
                                           "reused": s.session_reused,
                                           "cert": s.getpeercert(binary_form=True)}


def plain_get(port, host):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode())
        return read_response(s)[:3]


def cert_names(der):
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    return cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_tls_and_plain_routers_share_the_entry_point(tmp_path, ca, backend):
    leaf = ca.issue_cert("secure.example.com")
    manifests = (backend_service("be", [backend.port]) + secret("cert", leaf)
                 + route("secure", "secure.example.com", "{secretName: cert}")
                 + route("plain", "plain.example.com"))
    with Pyroute(tmp_path, manifests) as pr:
        # what `pyroute run` says is served: both schemes on the one port
        assert ("entry point web listening on http://127.0.0.1:%d and https://127.0.0.1:%d "
                "(1 plain router(s), 1 TLS router(s))" % (pr.port, pr.port)) in pr.output()
        status, _, body, info = tls_get(pr.port, client(ca), "secure.example.com")
        assert status == 200 and info["version"] == "TLSv1.3"
        seen = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
        assert seen["x-forwarded-proto"] == "https"
        assert seen["x-forwarded-port"] == "443"
        status, _, body = plain_get(pr.port, "plain.example.com")
        assert status == 200
        assert dict((k.lower(), v) for k, v in json.loads(body)["headers"])[
            "x-forwarded-proto"] == "http"
        # A TLS router is reachable only over TLS, a plain router only over plain HTTP.
        assert plain_get(pr.port, "secure.example.com")[0] == 404
        assert tls_get(pr.port, client(), "plain.example.com")[0] == 404


def test_misdirected_request_across_options(tmp_path, ca, backend):
    leaf = ca.issue_cert("a.example.com", "b.example.com", "c.example.com")
    manifests = (backend_service("be", [backend.port]) + secret("cert", leaf)
                 + tls_option("strict", "{minVersion: VersionTLS12, sniStrict: true}")
                 + route("a", "a.example.com", "{secretName: cert}")
                 + route("b", "b.example.com", "{secretName: cert, options: {name: strict}}")
                 + route("c", "c.example.com", "{secretName: cert}"))
    with Pyroute(tmp_path, manifests) as pr:
        assert tls_get(pr.port, client(ca), "a.example.com", "c.example.com")[0] == 200
        status, headers, body, _ = tls_get(pr.port, client(ca), "a.example.com", "b.example.com")
        assert (status, body) == (421, b"Misdirected Request\n")
        assert tls_get(pr.port, client(ca), "b.example.com", "a.example.com")[0] == 421
        assert tls_get(pr.port, client(ca), "b.example.com")[0] == 200


def test_tls_options_apply_per_host(tmp_path, ca, backend):
    leaf = ca.issue_cert("*.example.com")
    client_ca = trustme.CA()
    manifests = (backend_service("be", [backend.port]) + secret("cert", leaf)
                 + secret("client-ca", ca_pem=client_ca.cert_pem.bytes())
                 + tls_option("modern", "{minVersion: VersionTLS13}")
                 + tls_option("mtls", "{clientAuth: {secretNames: [client-ca], "
                                      "clientAuthType: RequireAndVerifyClientCert}}")
                 + tls_option("broken", "{cipherSuites: [TLS_NOT_A_SUITE]}")
                 + route("m", "modern.example.com", "{secretName: cert, options: {name: modern}}")
                 + route("t", "mtls.example.com", "{secretName: cert, options: {name: mtls}}")
                 + route("x", "broken.example.com", "{secretName: cert, options: {name: broken}}")
                 + route("d", "plain-tls.example.com", "{secretName: cert}"))
    with Pyroute(tmp_path, manifests) as pr:
        assert "invalid CipherSuite: TLS_NOT_A_SUITE" in pr.output()
        with pytest.raises(ssl.SSLError):
            tls_get(pr.port, client(ca, maximum_version=TLS12), "modern.example.com")
        assert tls_get(pr.port, client(ca), "modern.example.com")[3]["version"] == "TLSv1.3"
        assert tls_get(pr.port, client(ca, maximum_version=TLS12),
                       "plain-tls.example.com")[3]["version"] == "TLSv1.2"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_get(pr.port, client(ca), "mtls.example.com")
        ctx = client(ca)
        client_ca.issue_cert("someone", common_name="someone").configure_cert(ctx)
        assert tls_get(pr.port, ctx, "mtls.example.com")[0] == 200
        # The broken option closes its hosts' connections, never serves them weaker.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_get(pr.port, client(ca), "broken.example.com")
        assert tls_get(pr.port, client(ca), "plain-tls.example.com")[0] == 200


def test_default_certificate_and_resumption(tmp_path, backend):
    manifests = backend_service("be", [backend.port]) + route("r", "r.example.com", "{}")
    with Pyroute(tmp_path, manifests) as pr:
        ctx = client()
        _, _, _, first = tls_get(pr.port, ctx, "r.example.com")
        assert cert_names(first["cert"])[0].endswith(".traefik.default")
        _, _, _, again = tls_get(pr.port, ctx, "r.example.com", session=first["session"])
        assert again["reused"]


def test_tickets_resume_on_every_worker(tmp_path, backend):
    # Contexts built by the master before the fork are every worker's: a ticket from one
    # worker resumes on another (SO_REUSEPORT spreads these connections over both).
    manifests = backend_service("be", [backend.port]) + route("r", "r.example.com", "{}")
    with Pyroute(tmp_path, manifests, workers=2) as pr:
        ctx = client()
        _, _, _, first = tls_get(pr.port, ctx, "r.example.com")
        reused = [tls_get(pr.port, ctx, "r.example.com", session=first["session"])[3]["reused"]
                  for _ in range(12)]
        assert all(reused), reused


def _resumed_by(port, ctx, sni, session):
    """(resumed, pid of the worker that served it) for one TLS connection: the worker is the
    process that holds the server side of the connection (``ss -p``), asked while it is open."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s:
            s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % sni).encode())
            assert read_response(s)[0] == 200
            out = subprocess.run(
                ["ss", "-Htnp", "state", "established", "( sport = :%d and dport = :%d )"
                 % (port, s.getsockname()[1])], capture_output=True, text=True).stdout
            pids = {int(p) for p in re.findall(r"pid=(\d+)", out)}
            assert len(pids) == 1, out
            return s.session_reused, pids.pop(), s.session


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls12", "tls13"])
def test_ticket_keys_shared_by_workers_and_rotated_by_the_master(tmp_path, backend, monkeypatch,
                                                                 version):
    # The master makes the keys and rotates them without a restart (here every second, each
    # accepted 4 s: PYROUTE_TICKET_PERIODS, a test-only knob; Go's 24 h / 7 days otherwise);
    # workers encrypt and decrypt with the ring they share with it.
    monkeypatch.setenv("PYROUTE_TICKET_PERIODS", "1,4")
    manifests = backend_service("be", [backend.port]) + route("r", "r.example.com", "{}")
    with Pyroute(tmp_path, manifests, workers=2) as pr:
        ctx = client(maximum_version=version)
        reused, issuer, first = _resumed_by(pr.port, ctx, "r.example.com", None)
        issued_at = time.monotonic()
        assert not reused
        served = {}
        for _ in range(40):
            reused, pid, _ = _resumed_by(pr.port, ctx, "r.example.com", first)
            served.setdefault(pid, []).append(reused)
            if len(served) == 2 and len(served[issuer]) and sum(map(len, served.values())) >= 6:
                break
        # a ticket issued by one worker resumes on the other, and on itself
        assert len(served) == 2 and all(all(r) for r in served.values()), served
        time.sleep(max(0.0, issued_at + 1.5 - time.monotonic()))
        # at least one rotation since: the first key only decrypts now, and still does
        assert _resumed_by(pr.port, ctx, "r.example.com", first)[0]
        time.sleep(max(0.0, issued_at + 6.0 - time.monotonic()))
        # past its 4 s: refused (a full handshake) on every worker
        assert not any(_resumed_by(pr.port, ctx, "r.example.com", first)[0] for _ in range(6))
        # and tickets are still issued (the master kept rotating: the first key alone could
        # issue none now), resuming on both workers
        _, _, fresh = _resumed_by(pr.port, ctx, "r.example.com", None)
        again = {}
        for _ in range(40):
            reused, pid, _ = _resumed_by(pr.port, ctx, "r.example.com", fresh)
            again.setdefault(pid, []).append(reused)
            if len(again) == 2:
                break
        assert len(again) == 2 and all(all(r) for r in again.values()), again


def test_one_tls13_ticket_per_handshake_as_go(tmp_path, backend):
    # Go's TLS 1.3 server sends one NewSessionTicket after a handshake (OpenSSL would send
    # two); counted by a real peer, openssl s_client -msg
    manifests = backend_service("be", [backend.port]) + route("r", "r.example.com", "{}")
    with Pyroute(tmp_path, manifests) as pr:
        out = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % pr.port, "-servername",
             "r.example.com", "-tls1_3", "-msg", "-ign_eof"],
            input=b"GET / HTTP/1.1\r\nHost: r.example.com\r\nConnection: close\r\n\r\n",
            capture_output=True, timeout=20).stdout.decode("latin-1")
        assert "HTTP/1.1 200" in out
        assert out.count("NewSessionTicket") == 1, out


def test_reload_swaps_certificates_and_keeps_connections(tmp_path, ca, backend):
    old = ca.issue_cert("r.example.com")
    new = ca.issue_cert("r.example.com", "new.example.com")
    base = backend_service("be", [backend.port]) + route("r", "r.example.com",
                                                         "{secretName: cert}")
    with Pyroute(tmp_path, base + secret("cert", old)) as pr:
        raw = socket.create_connection(("127.0.0.1", pr.port), timeout=10)
        kept = client(ca).wrap_socket(raw, server_hostname="r.example.com")
        kept.sendall(b"GET / HTTP/1.1\r\nHost: r.example.com\r\n\r\n")
        assert read_response(kept)[0] == 200
        pr.write_manifests(base + secret("cert", new))
        deadline = time.time() + 15
        while time.time() < deadline:
            info = tls_get(pr.port, client(ca), "r.example.com")[3]
            if "new.example.com" in cert_names(info["cert"]):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the new certificate was never served: " + pr.output())
        kept.sendall(b"GET / HTTP/1.1\r\nHost: r.example.com\r\n\r\n")
        assert read_response(kept)[0] == 200
        kept.close()


def test_explain_agrees_with_served_connections(tmp_path, ca, backend):
    # `pyroute explain` answers from the server's own TLSConfig: the option a handshake gets
    # and the 421 decision agree with real connections, for a conflict (x: modern and tls12 ->
    # default), a wildcard Host (Traefik's HostSNI takes no wildcard: *.example.com maps no
    # SNI, so w.example.com gets default), a router the runtime disables (its host is still
    # associated, as Traefik's GetRoutersByEntryPoints does) and one the provider drops (a
    # missing Service: it never reaches Traefik's runtime, so its host keeps the default).
    from pyroute import manifests, static
    from pyroute.manifests.trace import Explainer

    leaf = ca.issue_cert("*.example.com")
    manifests_text = (
        backend_service("be", [backend.port]) + secret("cert", leaf)
        + tls_option("modern", "{minVersion: VersionTLS13}")
        + tls_option("tls12", "{maxVersion: VersionTLS12}")
        + route("m", "m.example.com", "{secretName: cert, options: {name: modern}}")
        + route("wild", "*.example.com", "{secretName: cert, options: {name: modern}}")
        + route("x1", "x.example.com", "{secretName: cert, options: {name: modern}}")
        + route("x2", "x.example.com", "{secretName: cert, options: {name: tls12}}")
        + route("d", "d.example.com", "{secretName: cert}")
        + route("gone", "off.example.com", "{secretName: cert, options: {name: modern}}").replace(
            "      services:", "      middlewares: [{name: no-such-middleware}]\n      services:")
        + route("dropped", "drop.example.com", "{secretName: cert, options: {name: modern}}")
        .replace("{name: be,", "{name: no-such-service,"))
    with Pyroute(tmp_path, manifests_text) as pr:
        rc = manifests.load([pr.mdir], static.load_static(pr.static))
        assert rc.dynamic["http"]["routers"][next(
            n for n in rc.dynamic["http"]["routers"] if "-gone-" in n)]["status"] != "enabled"
        explainer = Explainer(rc)

        def explained(sni, host):
            return explainer.explain("GET", "https://%s/" % host, entrypoint="web", sni=sni)

        def served_option(sni):
            # modern refuses TLS 1.2, tls12 refuses TLS 1.3, default takes both
            try:
                tls_get(pr.port, client(ca, maximum_version=TLS12), sni)
                v12 = True
            except (ssl.SSLError, ConnectionError):
                v12 = False
            try:
                tls_get(pr.port, client(ca, minimum_version=ssl.TLSVersion.TLSv1_3), sni)
                v13 = True
            except (ssl.SSLError, ConnectionError):
                v13 = False
            return {(False, True): "modern", (True, False): "tls12",
                    (True, True): "default"}[(v12, v13)]

        expected = {"m.example.com": "modern", "w.example.com": "default",
                    "x.example.com": "default", "d.example.com": "default",
                    "off.example.com": "modern", "drop.example.com": "default"}
        for sni, want in expected.items():
            option = explained(sni, sni)["tls"]["option"]
            assert option.split("-")[-1].split("@")[0] == want, (sni, option)
            assert served_option(sni) == want, sni
        for sni, host, want in (("d.example.com", "m.example.com", 421),
                                ("d.example.com", "w.example.com", 200),
                                ("d.example.com", "x.example.com", 200),
                                ("m.example.com", "x.example.com", 421),
                                ("d.example.com", "*.example.com", 421)):
            res = explained(sni, host)
            assert (421 if res["status"] == 421 else 200) == want, (sni, host, res)
            status = tls_get(pr.port, client(ca), sni, host)[0]
            assert (421 if status == 421 else 200) == want, (sni, host, status)


def test_http10_request_without_host_gets_the_servers_host(tmp_path, backend):
    # What `openssl s_time -www /` sends: "GET / HTTP/1.0" and no Host. Traefik's transport (Go)
    # writes the server URL's host when the request has none; an empty Host would be a 400 at
    # any HTTP/1.1 backend (and a new backend connection each time).
    manifests = (backend_service("be", [backend.port])
                 + route("any", "x", "{}").replace("Host(`x`)", "PathPrefix(`/`)"))
    with Pyroute(tmp_path, manifests) as pr:
        with socket.create_connection(("127.0.0.1", pr.port), timeout=10) as raw:
            with client().wrap_socket(raw) as s:
                s.sendall(b"GET /h10 HTTP/1.0\r\n\r\n")
                status = read_response(s)[0]
        assert status == 200
        seen = [r for r in backend.requests if r[1] == "/h10"]
        assert seen and seen[0][2]["host"] == "127.0.0.1:%d" % backend.port, seen


class _Relay:
    """A TCP relay between a client and pyroute whose server-to-client direction the test can
    hold, so that pyroute's socket send buffer fills while the client still reaches it."""

    def __init__(self, target_port):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target_port = target_port
        self.flowing = threading.Event()
        self.flowing.set()
        self.threads = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target_port))
        self.socks = (client, server)
        for src, dst, gate in ((client, server, None), (server, client, self.flowing)):
            t = threading.Thread(target=self._pump, args=(src, dst, gate), daemon=True)
            t.start()
            self.threads.append(t)

    @staticmethod
    def _pump(src, dst, gate):
        try:
            while True:
                if gate is not None:
                    gate.wait()
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            return

    def close(self):
        self.flowing.set()
        self.listener.close()
        for s in getattr(self, "socks", ()):
            s.close()


def test_key_update_asking_for_one_back_while_the_socket_buffer_is_full(tmp_path, ca, backend):
    # RFC 8446 §4.6.3: a KeyUpdate with update_requested arrives while pyroute's socket buffer
    # is full (a big response the client is not reading). OpenSSL answers it with the next
    # record pyroute writes (never from inside the read), and pyroute's reads retry after a
    # write should a read ever need one (TLSStream.read_wants_write). The response must go on
    # under the new keys to its last byte, and pyroute's own KeyUpdate must reach the client.
    leaf = ca.issue_cert("secure.example.com")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    manifests = (backend_service("be", [backend.port]) + secret("cert", leaf)
                 + route("secure", "secure.example.com", "{secretName: cert}"))
    size = 32 * 1024 * 1024
    with Pyroute(tmp_path, manifests) as pr:
        relay = _Relay(pr.port)
        # openssl s_client: a line "K" sends a KeyUpdate asking for one back; -msg shows the
        # handshake messages it receives
        proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % relay.port, "-servername",
             "secure.example.com", "-tls1_3", "-CAfile", str(ca_file), "-msg"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = bytearray()
        reader = threading.Thread(target=lambda: [out.extend(b) for b in
                                                  iter(lambda: proc.stdout.read1(65536), b"")],
                                  daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 10
            while b"Verify return code: 0" not in out and time.monotonic() < deadline:
                time.sleep(0.05)
            assert b"Verify return code: 0" in out, out.decode(errors="replace")
            relay.flowing.clear()          # pyroute's answer now piles up in its socket buffer
            proc.stdin.write(b"GET /big/%d HTTP/1.1\r\nHost: secure.example.com\r\n\r\n" % size)
            proc.stdin.flush()
            time.sleep(1.0)
            before = out.count(b"x")
            assert before < size // 2        # held back: pyroute's socket buffer is full
            proc.stdin.write(b"K\n")
            proc.stdin.flush()
            time.sleep(0.5)
            relay.flowing.set()
            deadline = time.monotonic() + 30
            while out.count(b"x") < size and time.monotonic() < deadline:
                time.sleep(0.1)
            assert out.count(b"x") >= size, "the response stopped after the KeyUpdate"
            assert b"KEYUPDATE" in out       # s_client sent its KeyUpdate...
            sent = out.index(b"KEYUPDATE")
            # ...and received pyroute's (decrypting the rest of the body with the new keys)
            assert b"KeyUpdate" in out[sent:]
        finally:
            proc.kill()
            proc.wait()
            relay.close()


def test_responses_bigger_than_one_record_flow_without_waiting(tmp_path, ca, backend):
    # pyOpenSSL contexts write one record (16 KiB) per SSL_write (partial-write mode): the
    # stream writes on until the socket is full, or a short count would wait for an EPOLLOUT
    # edge that never comes (the response stalled after its first 16 KiB).
    leaf = ca.issue_cert("secure.example.com")
    manifests = (backend_service("be", [backend.port]) + secret("cert", leaf)
                 + route("secure", "secure.example.com", "{secretName: cert}"))
    with Pyroute(tmp_path, manifests) as pr:
        started = time.monotonic()
        status, _, body, _ = tls_get(pr.port, client(ca), "secure.example.com",
                                     path="/big/3000000")
        assert status == 200 and len(body) == 3000000
        assert time.monotonic() - started < 5


def test_client_hello_in_two_pieces_is_served(tmp_path, ca, backend):
    # The Sniffer is registered edge-triggered: a ClientHello that arrives in two segments
    # waits (SO_RCVLOWAT set to the record's length) for the rest, then the handshake goes on.
    leaf = ca.issue_cert("secure.example.com")
    manifests = (backend_service("be", [backend.port]) + secret("cert", leaf)
                 + route("secure", "secure.example.com", "{secretName: cert}"))
    with Pyroute(tmp_path, manifests) as pr:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client(ca).wrap_bio(incoming, outgoing, server_hostname="secure.example.com")
        with socket.create_connection(("127.0.0.1", pr.port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with pytest.raises(ssl.SSLWantReadError):
                obj.do_handshake()
            hello = outgoing.read()
            sock.sendall(hello[:40])
            time.sleep(0.3)
            sock.sendall(hello[40:])
            while True:
                data = sock.recv(65536)
                assert data, "pyroute closed the connection during the handshake"
                incoming.write(data)
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
            obj.write(b"GET / HTTP/1.1\r\nHost: secure.example.com\r\nConnection: close\r\n\r\n")
            sock.sendall(outgoing.read())
            answer = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                incoming.write(data)
                try:
                    while True:
                        chunk = obj.read(65536)
                        if not chunk:
                            break
                        answer += chunk
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    pass
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]
            assert obj.version() == "TLSv1.3"
