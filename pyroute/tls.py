"""TLS termination on the system OpenSSL, as Traefik v3 does it for HTTPS routers.

What this module mirrors, and where in Traefik it comes from:

- TLS options (``tls.options``) become one OpenSSL context per option
  (``pkg/tls/tlsmanager.go`` buildTLSConfig): minVersion/maxVersion, cipherSuites (Go's names,
  ``pkg/tls/cipher.go``, mapped to OpenSSL's), curvePreferences (``CurveIDs``), clientAuth (CA
  bundles + the five Go ``ClientAuthType`` values), sniStrict, alpnProtocols,
  disableSessionTickets. An option that fails to build is *broken*: connections whose server name
  maps to it are closed (Traefik's ``brokenTLSRouter``), never served with weaker settings.
- The certificate store (``pkg/tls/certificate_store.go``): certificates from ``tls.certificates``
  (Secrets), the ``default`` TLSStore's ``defaultCertificate``, else a self-signed certificate
  generated at start (CN ``TRAEFIK DEFAULT CERT``, ``pkg/tls/generate``). Selection by SNI: exact
  names and wildcards by Traefik's ``matchDomain``, the best match being the greatest matching
  name; no SNI -> the local IP address is the name; no match -> default certificate, or a failed
  handshake when the option is ``sniStrict``.
- Host -> TLS option association (``pkg/server/router/tcp/manager.go`` buildEntryPointHandler):
  the ``Host`` domains of every TLS router map to the router's option, conflicts being
  arbitrated beforehand as Traefik v3.7's resolveHTTPTLSOptions (pyroute.manifests.tlsresolve:
  ``<ep>-conflicted-<router>`` copies whose option is ``default``); a host still claimed by two
  different options maps to ``default``. The option of a
  connection is picked from the SNI *before* the handshake, as Traefik does by peeking the
  ClientHello (``pkg/server/router/tcp/router.go`` clientHelloInfo): that is what lets every option
  field (protocol versions and curves included) apply exactly.
- The 421 rule (``pkg/middlewares/snicheck``): a request whose Host header maps to another TLS
  option than its SNI does is answered 421 Misdirected Request.

Connections are socket-backed ``tlsio.Connection`` objects (system OpenSSL) in accept state, driven by a
``TLSStream`` (engine/tlsio.pyx: handshake steps, reads and writes are direct OpenSSL calls) in
a non-blocking event loop: :meth:`TLSConfig.accept` peeks the ClientHello (waiting with
``SO_RCVLOWAT`` when it has not fully arrived, so a selector does not spin) and returns the
stream, :func:`handshake` drives the handshake step by step, and the stream then reads and
writes as a non-blocking socket does (``BlockingIOError`` when it would block).
"""
import datetime
import hashlib
import os
import socket
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from . import rules
# Contexts, connections and the shared session ticket keys are engine/tlsio.pyx's, on the
# system OpenSSL (the one Python's ssl module uses): the cryptography wheel's static copy,
# which pyOpenSSL drives, cannot set ticket keys (see that module). Its constants keep
# pyOpenSSL's names, hence ``SSL``.
from ._engine import tlsio as _tlsio
from ._engine import tlsio as SSL
from .errors import ConfigError, RuleSyntaxError

__all__ = [
    "TLSConfig", "HostOptions", "TLSRefused", "TLSOption", "CertificateStore", "Certificate",
    "handshake", "parse_client_hello", "is_tls_record_start", "session_reused", "misdirected",
    "TLSStream", "PLAIN",
    "DEFAULT_OPTION", "DEFAULT_GENERATED_CN", "SERVED_ALPN",
]

DEFAULT_OPTION = "default"          # Traefik: DefaultTLSConfigName
DEFAULT_STORE = "default"           # Traefik: DefaultTLSStoreName
DEFAULT_GENERATED_CN = "TRAEFIK DEFAULT CERT"   # Traefik: generate.DefaultDomain

# Application protocols pyroute speaks. Traefik's default is h2, http/1.1, acme-tls/1; pyroute
# never advertises a protocol it cannot serve (no ACME TLS-ALPN yet), and h2 not on entry
# points whose HTTP/2 the pyroute extension http2.enabled: false turned off (docs/http2.md).
SERVED_ALPN = ("h2", "http/1.1")

# Traefik: MinVersion / MaxVersion maps (pkg/tls/tls.go).
VERSIONS = {
    "VersionTLS10": SSL.TLS1_VERSION,
    "VersionTLS11": SSL.TLS1_1_VERSION,
    "VersionTLS12": SSL.TLS1_2_VERSION,
    "VersionTLS13": SSL.TLS1_3_VERSION,
}
_VERSION_NAMES = {
    SSL.TLS1_VERSION: "TLSv1", SSL.TLS1_1_VERSION: "TLSv1.1",
    SSL.TLS1_2_VERSION: "TLSv1.2", SSL.TLS1_3_VERSION: "TLSv1.3",
}

# Traefik's cipher suite names (Go's crypto/tls constants, pkg/tls/cipher.go) -> OpenSSL names.
# None: accepted as Traefik accepts it, but has no TLS 1.2 cipher behind it: TLS 1.3 suites are
# not configurable (Go ignores them; OpenSSL's TLS 1.3 defaults are Go's set) and
# TLS_FALLBACK_SCSV is a signal OpenSSL always honours.
CIPHER_SUITES = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_FALLBACK_SCSV": None,
}

# Mozilla's "intermediate" TLS 1.2 list without the DHE suites (Go, hence Traefik, has no DHE),
# in server-preference order: what an option that leaves cipherSuites out is served with.
# A deliberate deviation from Traefik, whose Options.SetDefaults fills in Go's CipherSuites()
# (these six plus the four ECDHE CBC-SHA suites, obsolete and flagged by scanners): the issue
# asks for safe defaults without configuration. An option that lists suites, Go's list
# included, gets exactly those (the manifests layer leaves the field out when it is unset).
DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)

# An option that lists h2 where an entry point does not serve HTTP/2 (dropped in from_runtime
# when every entry point does: the default)
H2_ALPN_WARNING = ("'h2' is not advertised on entry points with http2.enabled: false (a "
                   "pyroute extension: docs/http2.md); there http/1.1 is")

# Traefik's default ALPN list (DefaultTLSOptions, filled in by the manifests layer): served as
# h2, http/1.1 without a warning (acme-tls/1: pyroute has no ACME).
TRAEFIK_DEFAULT_ALPN = ("h2", "http/1.1", "acme-tls/1")

# Added to the default list only when an option allows TLS 1.0/1.1, which have no AEAD suite:
# the ECDHE CBC-SHA suites that Go (hence Traefik) also enables by default.
LEGACY_CIPHERS = (
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)

# Traefik: CurveIDs (Go's names and the RFC 8446 names) -> OpenSSL group names.
CURVES = {
    "secp256r1": "P-256", "CurveP256": "P-256",
    "secp384r1": "P-384", "CurveP384": "P-384",
    "secp521r1": "P-521", "CurveP521": "P-521",
    "x25519": "X25519", "X25519": "X25519",
    "x25519mlkem768": "X25519MLKEM768", "X25519MLKEM768": "X25519MLKEM768",
    "secp256r1mlkem768": "SecP256r1MLKEM768", "SecP256r1MLKEM768": "SecP256r1MLKEM768",
    "secp384r1mlkem1024": "SecP384r1MLKEM1024", "SecP384r1MLKEM1024": "SecP384r1MLKEM1024",
}

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")

_OPTION_FIELDS = frozenset((
    "minVersion", "maxVersion", "cipherSuites", "curvePreferences", "clientAuth", "sniStrict",
    "alpnProtocols", "disableSessionTickets", "preferServerCipherSuites"))

# A ClientHello record: 5-byte header + at most 2^14 bytes (RFC 8446 §5.1).
_MAX_HELLO_RECORD = 5 + (1 << 14)
# Where ClientHellos are peeked: one buffer per thread (a worker has one), never one per
# connection.
_local = threading.local()


PLAIN = "plain"   # TLSConfig.accept: the connection does not start with TLS


class TLSRefused(Exception):
    """A TLS connection that must be closed before (or instead of) a handshake; ``reason`` says
    why, for the log (broken TLS option, strict SNI, client gone)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# ClientHello peeking (first bytes of a connection, before any TLS state exists)

def is_tls_record_start(first_byte):
    """Whether a connection's first byte starts TLS: a handshake record (0x16), or 0x80, an
    SSLv2-style hello, which Traefik also counts as TLS (and the handshake then refuses)."""
    return first_byte == 0x16 or first_byte == 0x80


def parse_client_hello(data):
    """Read the SNI from the first TLS record of a connection.

    Returns ``(complete, server_name)``: ``complete`` is False while the record announced by the
    header has not fully arrived (``server_name`` is then the number of bytes needed, an int);
    once complete, ``server_name`` is the lower-cased host name, "" when the hello carries no
    server_name extension, or None for a hello this parser cannot read (it spans records, or is
    not one): such connections get the default option, as in Traefik, whose sniffing
    handshake then fails the same way, and OpenSSL's reading of the SNI picks the certificate.
    (The parser is engine/tlsio.pyx's: it runs for every TLS connection.)
    """
    return _parse_client_hello(data)


_parse_client_hello = _tlsio.parse_client_hello


def canonical_domain(name):
    """Traefik's types.CanonicalDomain: trimmed and lower-cased."""
    return name.strip().lower()


# --------------------------------------------------------------------------------------------
# Certificates and the store

class Certificate:
    """A certificate (with its chain) and its key, ready to be put in a context."""

    __slots__ = ("leaf", "chain", "key", "names", "label", "_fingerprint")

    def __init__(self, leaf, chain, key, names, label):
        self.leaf = leaf          # cryptography x509.Certificate
        self.chain = chain        # tuple of intermediates, leaf excluded, in PEM order
        self.key = key            # cryptography private key
        self.names = names        # tuple: CN, DNS SANs, IP SANs (lower-cased), Traefik's order
        self.label = label        # what logs call it
        self._fingerprint = None

    def fingerprint(self):
        """SHA-256 of the chain as served (identifies the certificate across reloads)."""
        if self._fingerprint is None:
            self._fingerprint = b"".join(c.fingerprint(hashes.SHA256())
                                         for c in (self.leaf,) + self.chain)
        return self._fingerprint

    @classmethod
    def from_pem(cls, cert_pem, key_pem, label=""):
        """Parse a PEM chain (leaf first) and its PEM key; ValueError says what is wrong."""
        if isinstance(cert_pem, str):
            cert_pem = cert_pem.encode()
        if isinstance(key_pem, str):
            key_pem = key_pem.encode()
        if not cert_pem or not cert_pem.strip():
            raise ValueError("certificate is empty")
        if not key_pem or not key_pem.strip():
            raise ValueError("key is empty")
        try:
            certs = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as exc:
            raise ValueError("certificate is not valid PEM: %s" % exc) from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("key is not a valid unencrypted PEM private key: %s" % exc) from None
        leaf = certs[0]
        if leaf.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
                key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError("key does not match the certificate")
        names = _certificate_names(leaf)
        return cls(leaf, tuple(certs[1:]), key, names, label or (names[0] if names else "?"))


def _certificate_names(cert):
    # Traefik parseCertificate: CN first, then DNS SANs and IP SANs that differ from the CN.
    names = []
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if cns else ""
    if cn:
        names.append(cn.lower())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for dns in san.get_values_for_type(x509.DNSName):
            if dns != cn:
                names.append(dns.lower())
        for ip in san.get_values_for_type(x509.IPAddress):
            if str(ip) != cn:
                names.append(str(ip).lower())
    return tuple(names)


_generated_default = None


def generated_default_certificate():
    """The self-signed default certificate, generated once per process as Traefik does at
    start (``pkg/tls/generate``): RSA 2048, CN ``TRAEFIK DEFAULT CERT``, one random
    ``<hex>.<hex>.traefik.default`` DNS name, valid one year."""
    global _generated_default
    if _generated_default is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        z = hashlib.sha256(os.urandom(100)).hexdigest()
        domain = "%s.%s.traefik.default" % (z[:32], z[32:])
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEFAULT_GENERATED_CN)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(os.urandom(16), "big"))
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # Traefik sets keyEncipherment only; digitalSignature is added because ECDHE_RSA
            # (every default suite) signs with the key, and strict clients check it.
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=True, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        _generated_default = Certificate(cert, (), key, _certificate_names(cert),
                                         "generated default certificate")
    return _generated_default


class CertificateStore:
    """Traefik's CertificateStore for the ``default`` store: dynamic certificates by name, and
    the default certificate."""

    __slots__ = ("certificates", "default", "names_ips", "_by_name", "_cache")

    _CACHE_MAX = 4096   # SNI -> certificate memo; cleared when full (SNIs are client-chosen)

    def __init__(self, certificates, default):
        self.certificates = tuple(certificates)
        self.default = default
        by_name = {}
        for cert in self.certificates:
            for name in cert.names:
                # Traefik keeps the first certificate for a given set of names; for a single
                # name shared by several certificates its map order decides. pyroute: the first
                # one in configuration order, deterministically.
                by_name.setdefault(name.rstrip("."), cert)
        self._by_name = by_name
        # whether a local IP address (the name of a connection without SNI) can match a
        # certificate: an IP name, or a wildcard over digit labels (e.g. *.0.0.1)
        self.names_ips = any(":" in name or all(label == "*" or label.isdigit()
                                                for label in name.split("."))
                             for name in by_name)
        self._cache = {}

    def best(self, server_name):
        """The certificate Traefik's GetBestCertificate picks for this (canonical) server name,
        or None when no certificate matches (the caller then serves the default one, or fails
        under sniStrict)."""
        try:
            return self._cache[server_name]
        except KeyError:
            pass
        best = None
        best_name = None
        by_name = self._by_name
        # matchDomain: the name itself, then its labels replaced by '*' from the left, one more
        # each time; among matching names the greatest one (sort.Strings, last) wins.
        if server_name in by_name:
            best, best_name = by_name[server_name], server_name
        labels = server_name.split(".")
        for i in range(len(labels)):
            candidate = ".".join(["*"] * (i + 1) + labels[i + 1:])
            cert = by_name.get(candidate)
            if cert is not None and (best_name is None or candidate > best_name):
                best, best_name = cert, candidate
        if len(self._cache) >= self._CACHE_MAX:
            self._cache.clear()
        self._cache[server_name] = best
        return best


# --------------------------------------------------------------------------------------------
# TLS options

class _ConnInfo:
    """What a TLS connection carries (``Connection.get_app_data()``)."""

    __slots__ = ("option", "server_name", "sock", "refused", "certificate", "h2")

    def __init__(self, option, server_name, sock, h2=False):
        self.h2 = h2                      # the entry point serves HTTP/2: ALPN may pick h2
        self.option = option              # TLSOption the connection was made with
        self.server_name = server_name    # SNI as peeked (canonical; "": none; None: unread)
        self.sock = sock                  # for the local address, when the client sends no SNI
        self.refused = None               # reason, when the SNI callback refused the handshake
        self.certificate = None           # the Certificate served

    def local_ip(self):
        try:
            ip = self.sock.getsockname()[0]
        except (OSError, IndexError, TypeError):
            return ""
        # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; Go reports a.b.c.d
        return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


class TLSOption:
    """One TLS option compiled into OpenSSL contexts: a base context per option (connections
    are made on it: sessions are resumed under it) and one context per certificate served
    under it, switched to before the handshake from the SNI the peek read (or, for a hello the
    peek could not read, by the SNI callback of the ``fallback`` context). ``error`` is set when
    the option is broken."""

    __slots__ = ("name", "spec", "error", "min_version", "max_version", "ciphers",
                 "curves", "verify_mode", "verify_any", "client_cas", "sni_strict", "alpn",
                 "alpn_h1",
                 "tickets", "store", "base", "_by_cert", "_refusing", "_fallback", "_session_id")

    def __init__(self, name, spec, store):
        self.name = name
        self.spec = spec
        self.store = store
        self.error = None
        self._by_cert = {}
        self._refusing = None
        self._fallback = None
        self.base = None
        self._session_id = hashlib.sha256(b"pyroute-tls-option\0" + name.encode()).digest()[:32]

    # -- compile ------------------------------------------------------------------------------

    def compile(self):
        """Validate the spec; return the list of ConfigErrors (severity error makes the option
        broken, warnings do not)."""
        problems = []
        spec = self.spec if isinstance(self.spec, dict) else {}

        def err(field, message, severity="error"):
            problems.append(ConfigError(message, kind="TLSOption", name=self.name, field=field,
                                        severity=severity))

        if not isinstance(self.spec, dict):
            err(None, "must be a mapping, got %s" % type(self.spec).__name__)
        for key in spec:
            if key not in _OPTION_FIELDS:
                err(key, "unknown field")

        self.min_version = SSL.TLS1_2_VERSION   # Traefik default: VersionTLS12
        self.max_version = 0                    # 0: the highest OpenSSL supports (TLS 1.3)
        for field in ("minVersion", "maxVersion"):
            value = spec.get(field)
            if value in (None, ""):
                continue
            if value not in VERSIONS:
                err(field, "unknown TLS version %r (expected one of %s)"
                    % (value, ", ".join(VERSIONS)))
                continue
            if field == "minVersion":
                self.min_version = VERSIONS[value]
            else:
                self.max_version = VERSIONS[value]
        if self.max_version and self.max_version < self.min_version:
            err("maxVersion", "maxVersion %s is below minVersion %s"
                % (_VERSION_NAMES[self.max_version], _VERSION_NAMES[self.min_version]))

        self.ciphers = DEFAULT_CIPHERS
        suites = spec.get("cipherSuites")
        if suites is not None:
            if not isinstance(suites, list):
                err("cipherSuites", "must be a list of cipher suite names")
            else:
                names = []
                for i, suite in enumerate(suites):
                    if suite not in CIPHER_SUITES:
                        # Traefik: "invalid CipherSuite: %s"
                        err("cipherSuites[%d]" % i, "invalid CipherSuite: %s" % (suite,))
                        continue
                    ossl = CIPHER_SUITES[suite]
                    if ossl is None:
                        continue
                    if not _cipher_available(ossl):
                        err("cipherSuites[%d]" % i, "cipher suite %s (OpenSSL %s) is not available "
                            "in this OpenSSL build (%s)" % (suite, ossl, _openssl_version()))
                        continue
                    if ossl not in names:
                        names.append(ossl)
                self.ciphers = ":".join(names) if names else None
                if self.ciphers is None:
                    # Only TLS 1.3 names (or an empty list): in Go no TLS 1.2 handshake can
                    # succeed; OpenSSL cannot hold an empty TLS 1.2 list, so TLS 1.3 it is.
                    if self.max_version and self.max_version < SSL.TLS1_3_VERSION:
                        err("cipherSuites", "no cipher suite left for TLS 1.2 and below, and "
                            "maxVersion forbids TLS 1.3: no handshake could succeed")
                    self.min_version = SSL.TLS1_3_VERSION
        if self.min_version < SSL.TLS1_2_VERSION and suites is None:
            self.ciphers += ":" + LEGACY_CIPHERS
        if self.min_version < SSL.TLS1_2_VERSION and self.ciphers:
            # TLS 1.0/1.1 sign with SHA-1, which OpenSSL refuses above security level 0; the
            # operator asked for these versions explicitly.
            self.ciphers += ":@SECLEVEL=0"

        self.curves = None
        curves = spec.get("curvePreferences")
        if curves is not None:
            if not isinstance(curves, list):
                err("curvePreferences", "must be a list of curve names")
            else:
                groups = []
                for i, curve in enumerate(curves):
                    group = CURVES.get(curve)
                    if group is None:
                        # Traefik: "invalid CurveID in curvePreferences: %s"
                        err("curvePreferences[%d]" % i,
                            "invalid CurveID in curvePreferences: %s" % (curve,))
                    elif not _group_available(group):
                        err("curvePreferences[%d]" % i, "curve %s (OpenSSL %s) is not available in "
                            "this OpenSSL build (%s)" % (curve, group, _openssl_version()))
                    elif group not in groups:
                        groups.append(group)
                if groups:
                    self.curves = ":".join(groups)

        self.verify_mode = SSL.VERIFY_NONE
        self.verify_any = False
        self.client_cas = ()
        client_auth = spec.get("clientAuth") or {}
        if not isinstance(client_auth, dict):
            err("clientAuth", "must be a mapping")
            client_auth = {}
        for key in client_auth:
            if key not in ("caFiles", "clientAuthType", "secretNames"):
                err("clientAuth." + key, "unknown field")
        cas = []
        for i, pem in enumerate(client_auth.get("caFiles") or ()):
            try:
                if isinstance(pem, str):
                    pem = pem.encode()
                found = x509.load_pem_x509_certificates(pem)
            except (ValueError, TypeError) as exc:
                # Traefik: "invalid certificate(s) content"
                err("clientAuth.caFiles[%d]" % i, "invalid certificate(s) content: %s" % exc)
                continue
            cas.extend(found)
        self.client_cas = tuple(cas)
        auth_type = client_auth.get("clientAuthType") or ""
        if cas:
            # Traefik: CA files alone mean RequireAndVerifyClientCert.
            auth_type = auth_type or "RequireAndVerifyClientCert"
        if auth_type:
            if auth_type not in CLIENT_AUTH_TYPES:
                err("clientAuth.clientAuthType", "unknown client auth type %r (expected one of %s)"
                    % (auth_type, ", ".join(CLIENT_AUTH_TYPES)))
            elif not cas and auth_type in ("VerifyClientCertIfGiven",
                                           "RequireAndVerifyClientCert"):
                err("clientAuth.clientAuthType",
                    "invalid clientAuthType: %s, CAFiles is required" % auth_type)
            elif auth_type == "RequestClientCert":
                self.verify_mode, self.verify_any = SSL.VERIFY_PEER, True
            elif auth_type == "RequireAnyClientCert":
                self.verify_mode = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
                self.verify_any = True
            elif auth_type == "VerifyClientCertIfGiven":
                self.verify_mode = SSL.VERIFY_PEER
            elif auth_type == "RequireAndVerifyClientCert":
                self.verify_mode = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT

        self.sni_strict = _flag(spec, "sniStrict", err)
        self.tickets = not _flag(spec, "disableSessionTickets", err)

        self.alpn = SERVED_ALPN
        protos = spec.get("alpnProtocols")
        if protos is not None and tuple(protos) != TRAEFIK_DEFAULT_ALPN:
            if not isinstance(protos, list):
                err("alpnProtocols", "must be a list of protocol names")
            else:
                served = []
                for i, proto in enumerate(protos):
                    if proto in SERVED_ALPN:
                        if proto not in served:
                            served.append(proto)
                        if proto == "h2":
                            err("alpnProtocols[%d]" % i, H2_ALPN_WARNING, severity="warning")
                    else:
                        err("alpnProtocols[%d]" % i, "%r is not spoken by pyroute (it serves %s); "
                            "it is not advertised" % (proto, ", ".join(SERVED_ALPN)),
                            severity="warning")
                self.alpn = tuple(served)
        self.alpn = tuple(p.encode() for p in self.alpn)
        # on entry points without HTTP/2 (http2.enabled: false): the list without h2
        self.alpn_h1 = tuple(p for p in self.alpn if p != b"h2")

        if any(p.severity == "error" for p in problems):
            self.error = "; ".join(p.render() for p in problems if p.severity == "error")
            return problems
        # The base context is reused while the option's settings and default certificate stay
        # the same (a reload builds no new one). Ticket keys are not the context's: every
        # context encrypts and decrypts with the ring shared by all workers (engine/tlsio.pyx).
        key = (self.min_version, self.max_version, self.ciphers, self.curves,
               self.verify_mode, self.verify_any,
               tuple(ca.fingerprint(hashes.SHA256()) for ca in self.client_cas), self.tickets,
               self.alpn, self._session_id, self.store.default.fingerprint())
        self.base = _base_contexts.get(key)
        if self.base is not None:
            _base_contexts_used[key] = self.base
            return problems
        try:
            self.base = self._context(self.store.default)
            _base_contexts_used[key] = self.base
        except (_tlsio.Error, ValueError) as exc:
            self.error = "cannot build TLS context: %s" % (_ssl_error_text(exc),)
            problems.append(ConfigError(self.error, kind="TLSOption", name=self.name))
        return problems

    def _context(self, cert, with_callback=False):
        ctx = _tlsio.Context()
        ctx.set_min_proto_version(self.min_version)
        ctx.set_max_proto_version(self.max_version)
        # Safe defaults whatever the option says: no compression (CRIME), no renegotiation,
        # the server's cipher order.
        options = SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE
        if not self.tickets:
            options |= SSL.OP_NO_TICKET
        ctx.set_options(options)
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)   # idle keep-alive connections hold no buffers
        if self.ciphers:
            ctx.set_cipher_list(self.ciphers.encode())
        if self.curves is not None:
            if not ctx.set1_curves_list(self.curves.encode()):
                raise ValueError("OpenSSL refused curves %s" % self.curves)
        if self.verify_mode != SSL.VERIFY_NONE:
            for ca in self.client_cas:
                # trusted, and named as what the client is to pick a certificate for (Go:
                # ClientCAs)
                ctx.add_client_ca(ca)
            # RequestClientCert / RequireAnyClientCert: Go asks for a certificate but does not
            # verify it
            ctx.set_verify(self.verify_mode, self.verify_any)
        # Sessions: resumption by tickets only, as Go (hence Traefik) has no server-side session
        # cache: TLS 1.2 tickets and TLS 1.3 stateless tickets, unless disableSessionTickets,
        # which turns resumption off altogether. The session id context is per option, so a
        # session is only resumed under the option it was made with.
        ctx.set_session_id(self._session_id)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        if self.alpn:
            ctx.set_alpn_select_callback(self._select_alpn)
        if cert is not None:
            ctx.use_certificate(cert.leaf)
            for extra in cert.chain:
                ctx.add_extra_chain_cert(extra)
            ctx.use_privatekey(cert.key)
            ctx.check_privatekey()
        if with_callback:
            ctx.set_tlsext_servername_callback(_on_server_name)
        return ctx

    # -- handshake callbacks ------------------------------------------------------------------

    def _select_alpn(self, conn, offered):
        # Traefik/Go: when the client offers ALPN and nothing overlaps, the handshake fails
        # (no_application_protocol alert).
        info = conn.get_app_data()
        protos = self.alpn if info is not None and info.h2 else self.alpn_h1
        if not protos:
            return SSL.NO_OVERLAPPING_PROTOCOLS    # only h2 listed, not served here: no ALPN
        for proto in protos:
            if proto in offered:
                return proto
        raise _NoALPNOverlap("no application protocol in common (client offered %s, pyroute "
                             "serves %s)" % (b", ".join(offered).decode("ascii", "replace"),
                                             b", ".join(self.alpn).decode()))

    def select_certificate(self, conn, info, name):
        """Pick the certificate for (canonical) SNI ``name`` ("" for none), switching ``conn``
        to its context, or set up the refusal under sniStrict. Runs before the handshake when
        the peek read the ClientHello (no SNI callback into Python per handshake), else from
        the SNI callback of the option's ``fallback`` context."""
        try:
            if not name and (self.sni_strict or self.store.names_ips):
                # Traefik: no SNI -> the local IP address is the name to match (sniStrict's
                # refusal names it too); else no certificate could match: the default one.
                name = info.local_ip()
            cert = self.certificate_for(name)
            if cert is None:
                info.refused = ("strict SNI enabled - No certificate found for domain: %r, "
                                "closing connection" % (name,))
                conn.set_context(self._refusing_context())
                return
            info.certificate = cert
            if cert is not self.store.default:
                conn.set_context(self.context_for(cert))
        except Exception as exc:   # noqa: BLE001 - reported on the connection, never raised
            info.refused = "TLS server name callback failed: %s" % (exc,)
            try:
                conn.set_context(self._refusing_context())
            except Exception:   # noqa: BLE001
                pass

    def certificate_for(self, name):
        """The Certificate a handshake for (canonical) server name ``name`` is served under
        this option (Traefik's GetCertificate): the store's best match, else the default
        certificate, or None when the option is ``sniStrict`` (the handshake is refused)."""
        cert = self.store.best(name) if name else None
        if cert is None and not self.sni_strict:
            cert = self.store.default
        return cert

    def context_for(self, cert):
        """The context serving ``cert`` under this option (built once, then reused)."""
        ctx = self._by_cert.get(id(cert))
        if ctx is None:
            ctx = self._context(cert)
            self._by_cert[id(cert)] = ctx
        return ctx

    def fallback_context(self):
        """The option's context with the SNI callback, for a connection whose ClientHello the
        peek could not read: switched to before its handshake (the session context stays the
        base one)."""
        if self._fallback is None:
            self._fallback = self._context(self.store.default, with_callback=True)
        return self._fallback

    def _refusing_context(self):
        # Same option, no certificate: the handshake fails with a handshake_failure alert,
        # which is how a refused server name ends (Traefik returns an error from GetCertificate).
        if self._refusing is None:
            self._refusing = self._context(None)
        return self._refusing


def _on_server_name(conn):
    # Set on fallback contexts only (a ClientHello the peek could not read): the option is the
    # connection's own. Runs inside SSL_do_handshake; it must not raise (pyOpenSSL would print
    # a traceback).
    info = conn.get_app_data()
    try:
        raw = conn.get_servername()
    except Exception:   # noqa: BLE001 - reported as a refusal by select_certificate
        raw = None
    info.option.select_certificate(
        conn, info, canonical_domain(raw.decode("ascii", "replace")) if raw else "")


# Base contexts by settings (see TLSOption.compile); each build keeps only those it uses.
_base_contexts = {}
_base_contexts_used = {}


class _NoALPNOverlap(Exception):
    pass


def _flag(spec, field, err):
    value = spec.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        err(field, "must be true or false, got %r" % (value,))
        return False
    return value


_availability = {}


def _cipher_available(name):
    key = ("cipher", name)
    if key not in _availability:
        try:
            ctx = _tlsio.Context()
            ctx.set_cipher_list((name + ":@SECLEVEL=0").encode())
            _availability[key] = name in ctx.cipher_list()
        except _tlsio.Error:
            _availability[key] = False
    return _availability[key]


def _group_available(name):
    key = ("group", name)
    if key not in _availability:
        _availability[key] = _tlsio.Context().set1_curves_list(name.encode())
    return _availability[key]


def _openssl_version():
    return _tlsio.openssl_version()


def _ssl_error_text(exc):
    return str(exc) or repr(exc)


# --------------------------------------------------------------------------------------------
# Host -> option association

def _qualified_option(ref, options):
    """The key in ``tls.options`` a router's ``tls.options`` reference designates, or None.

    Traefik: "" and "default" are the default option; any other name is qualified with the
    router's provider (``provider.GetQualifiedName``), here ``@kubernetescrd`` when the config
    keys carry provider suffixes.
    """
    if not ref or ref == DEFAULT_OPTION:
        return DEFAULT_OPTION
    if ref in options:
        return ref
    if "@" not in ref and ref + "@kubernetescrd" in options:
        return ref + "@kubernetescrd"
    if "@" in ref and ref.split("@", 1)[0] in options:
        return ref.split("@", 1)[0]
    return None


# --------------------------------------------------------------------------------------------
# Host -> TLS option association

ASSOCIATE_STEP = 100      # routers (or hosts) associated per step of HostOptions.steps


def _drain(steps):
    """Runs a generator of this module's ``steps`` to its end; returns what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


class HostOptions:
    """Traefik's Host -> TLS option association for one entry point (buildEntryPointHandler:
    tlsOptionsForHost, conflicts -> default; tlsOptionsForHostSNI, every option seen per host,
    to report the conflict). Pure data, no OpenSSL: ``pyroute check`` reports conflicts from it
    and TLSConfig serves connections with it.

    ``host_options``: lower-case host -> option name, conflicts resolved; ``router_options``:
    TLS router -> the option name it asked for; ``claims``: host -> {option name: [routers]};
    ``errors``: ConfigErrors (unknown options, certificate resolvers, conflicts, bad rules).
    """

    __slots__ = ("host_options", "router_options", "claims", "errors")

    def __init__(self, routers, entry_point, default_entry_points, option_names, domains=None):
        """``routers``: the dynamic configuration's http.routers; ``entry_point``: None for
        every entry point; ``option_names``: the keys of tls.options (``default`` implied);
        ``domains``: (rule, syntax) -> parse_domains' answer, parsed ahead (a worker's reload
        does it in slices: pyroute.proxy.snapshot.compile_steps)."""
        _drain(self._build(routers, entry_point, default_entry_points, option_names, domains))

    @classmethod
    def steps(cls, routers, entry_point, default_entry_points, option_names, domains=None):
        """The constructor as a generator: it yields every ``ASSOCIATE_STEP`` routers (and
        hosts) and returns the HostOptions. With 10,000 TLS routers the association takes
        ~30-50 ms, which a worker's reload (pyroute.server.worker.Reload) spreads over its
        loop turns (issue #11)."""
        self = cls.__new__(cls)
        yield from self._build(routers, entry_point, default_entry_points, option_names,
                               domains)
        return self

    def _build(self, routers, entry_point, default_entry_points, option_names, domains):
        step = ASSOCIATE_STEP
        self.host_options = {}
        self.router_options = {}
        self.claims = claims = {}
        self.errors = []
        for i, (rname, router) in enumerate(routers.items()):
            if i % step == step - 1:
                yield
            if not isinstance(router, dict) or router.get("tls") is None:
                continue
            # Traefik (GetRoutersByEntryPoints) associates every TLS router's hosts, disabled ones
            # included: a router whose option is unknown still gets its hosts closed.
            eps = router.get("entryPoints") or default_entry_points
            if entry_point is not None and eps is not None and entry_point not in eps:
                continue
            tls = router["tls"] or {}
            ref = tls.get("options") or ""
            oname = _qualified_option(ref, option_names)
            if oname is None:
                # Traefik: "unknown TLS options: %s" -> the router's hosts are closed.
                self._error("unknown TLS options: %s; TLS connections for this router's hosts "
                            "are closed" % ref, kind="Router", name=rname, field="tls.options")
                oname = ref
            self.router_options[rname] = oname
            resolver = tls.get("certResolver")
            if resolver:
                self._error("certificate resolver %r does not exist (pyroute has no certificate "
                            "resolvers yet: ACME comes later); the router is served with the "
                            "certificates of the store, else the default certificate" % resolver,
                            kind="Router", name=rname, field="tls.certResolver")
            try:
                # Traefik httpmuxer.ParseDomains: the (non-negated) Host names, lower-cased.
                key = (router.get("rule") or "", router.get("ruleSyntax") or "v3")
                hosts = domains.get(key) if domains else None
                if hosts is None:
                    hosts = rules.parse_domains(*key)
            except RuleSyntaxError as exc:
                self._error("invalid rule %s, error: %s" % (router.get("rule"), exc.message),
                            kind="Router", name=rname, field="rule")
                continue
            for host in hosts:
                by_option = claims.setdefault(host, {})
                if rname not in by_option.setdefault(oname, []):
                    by_option[oname].append(rname)
        for i, (host, by_option) in enumerate(claims.items()):
            if i % step == step - 1:
                yield
            if len(by_option) == 1:
                self.host_options[host] = next(iter(by_option))
                continue
            self.host_options[host] = DEFAULT_OPTION
            for rnames in by_option.values():
                self._error("found different TLS options for routers on the same host %s, so "
                            "using the default TLS options instead" % host,
                            severity="warning", kind="Router", name=rnames[0],
                            field="tls.options")

    def _error(self, message, severity="error", **where):
        self.errors.append(ConfigError(message, severity=severity, **where))

    @property
    def conflicts(self):
        """host -> {option name: [routers]} for the hosts claimed by different options."""
        return {host: by_option for host, by_option in self.claims.items()
                if len(by_option) > 1}


# --------------------------------------------------------------------------------------------
# The compiled TLS configuration of an entry point

class TLSConfig:
    """Everything TLS for one entry point, compiled once per configuration load.

    ``errors`` lists ConfigErrors found while building (the configuration still serves: a broken
    option closes only its hosts' connections). Attributes are read-only after build.
    """

    def __init__(self):
        self.errors = []
        self.options = {}            # option name -> TLSOption (default always present)
        self.store = None            # CertificateStore
        self.host_options = {}       # host (lower-case) -> option name, conflicts resolved
        self.router_options = {}     # TLS router name -> option name it asked for
        self._sni_options = {}       # host -> TLSOption, or a str: why its connections close
        self.h2 = True               # the entry point serves HTTP/2 (ALPN may pick h2)

    # -- build --------------------------------------------------------------------------------

    @classmethod
    def build(cls, dynamic_tls, routers, entry_point=None, default_entry_points=None):
        """Compile the dynamic configuration's ``tls`` section and the TLS routers of
        ``entry_point`` (all routers when None) into a TLSConfig. A router without
        ``entryPoints`` belongs to ``default_entry_points`` (to every entry point when None)."""
        return cls.build_entry_points(dynamic_tls, routers, [entry_point],
                                      default_entry_points)[entry_point]

    @classmethod
    def build_entry_points(cls, dynamic_tls, routers, entry_points, default_entry_points=None,
                           domains=None):
        """One TLSConfig per entry point name, sharing the certificate store and the option
        contexts (built once); each has its own host -> option association, as Traefik builds
        one per entry point. Errors about the shared parts are on the first one only; they are
        returned, not logged: the caller reports them with the rest of the configuration's."""
        return _drain(cls.build_entry_points_steps(dynamic_tls, routers, entry_points,
                                                   default_entry_points, domains))

    @classmethod
    def build_entry_points_steps(cls, dynamic_tls, routers, entry_points,
                                 default_entry_points=None, domains=None):
        """``build_entry_points`` as a generator (the associations in steps: HostOptions.steps)
        that returns its answer."""
        global _base_contexts, _base_contexts_used
        shared = cls()
        dynamic_tls = dynamic_tls or {}
        shared._build_store(dynamic_tls)
        _base_contexts_used = {}
        shared._build_options(dynamic_tls.get("options") or {})
        _base_contexts, _base_contexts_used = _base_contexts_used, {}
        configs = {}
        for i, name in enumerate(entry_points):
            yield
            config = cls()
            config.store = shared.store
            config.options = shared.options
            config.errors = list(shared.errors) if i == 0 else []
            yield from config._associate_hosts(routers or {}, name, default_entry_points,
                                               domains)
            configs[name] = config
        return configs

    @classmethod
    def from_runtime(cls, config, domains=None):
        """One TLSConfig per entry point of a RuntimeConfig: what the server serves with and
        what ``pyroute explain`` answers from (one build, so they cannot disagree);
        ``domains``: see HostOptions."""
        return _drain(cls.from_runtime_steps(config, domains))

    @classmethod
    def from_runtime_steps(cls, config, domains=None, routers=None):
        """``from_runtime`` as a generator (a worker's reload: pyroute.proxy.snapshot
        .compile_steps) that returns its answer; ``routers``: ``config.tls_routers()`` when
        the caller has it already."""
        # Traefik associates the hosts of the routers of its runtime configuration: disabled
        # ones included, those its provider dropped not (RuntimeConfig.tls_routers)
        if routers is None:
            routers = (config.tls_routers() if hasattr(config, "tls_routers")
                       else config.dynamic.get("http", {}).get("routers", {}))
        configs = yield from cls.build_entry_points_steps(
            config.dynamic.get("tls"), routers,
            list(config.static.entry_points), config.static.default_entry_points(), domains)
        for name, cfg in configs.items():
            cfg.h2 = bool(getattr(config.static.entry_points.get(name), "http2", True))
        if configs and all(cfg.h2 for cfg in configs.values()):
            for cfg in configs.values():
                cfg.errors = [e for e in cfg.errors if e.message != H2_ALPN_WARNING]
        return configs

    def _error(self, message, severity="error", **where):
        self.errors.append(ConfigError(message, severity=severity, **where))

    def _build_store(self, dynamic_tls):
        certs = []
        for i, entry in enumerate(dynamic_tls.get("certificates") or ()):
            label = "tls.certificates[%d]" % i
            if not isinstance(entry, dict):
                self._error("must be a mapping", kind="Certificate", name=label)
                continue
            try:
                cert = Certificate.from_pem(entry.get("certFile"), entry.get("keyFile"),
                                            label=label)
            except ValueError as exc:
                # Traefik: "Unable to append certificate ... to store", the rest still serves.
                self._error(str(exc), kind="Certificate", name=label, field="certFile")
                continue
            stores = entry.get("stores") or [DEFAULT_STORE]
            if DEFAULT_STORE not in stores:
                self._error("stores %s: only the %r store is used (Traefik ignores the others); "
                            "this certificate is not served" % (stores, DEFAULT_STORE),
                            severity="warning", kind="Certificate", name=label, field="stores")
                continue
            certs.append(cert)
        default = None
        stores = dynamic_tls.get("stores") or {}
        for name, spec in stores.items():
            if name != DEFAULT_STORE:
                self._error("only the %r TLS store is used; this one is ignored" % DEFAULT_STORE,
                            severity="warning", kind="TLSStore", name=name)
                continue
            spec = spec or {}
            if spec.get("defaultGeneratedCert"):
                self._error("defaultGeneratedCert needs a certificate resolver (ACME), which "
                            "pyroute does not have yet; using %s" % (
                                "defaultCertificate" if spec.get("defaultCertificate")
                                else "the generated default certificate"),
                            severity="warning", kind="TLSStore", name=name,
                            field="defaultGeneratedCert")
            dc = spec.get("defaultCertificate")
            if dc:
                try:
                    default = Certificate.from_pem(dc.get("certFile"), dc.get("keyFile"),
                                                   label="TLSStore default certificate")
                except (ValueError, AttributeError) as exc:
                    # Traefik: "Error while creating certificate store" -> generated default.
                    self._error("%s; serving the generated default certificate instead" % exc,
                                kind="TLSStore", name=name, field="defaultCertificate")
        if default is None:
            default = generated_default_certificate()
        self.store = CertificateStore(certs, default)

    def _build_options(self, specs):
        names = list(specs)
        if DEFAULT_OPTION not in specs:
            names.insert(0, DEFAULT_OPTION)
        for name in names:
            option = TLSOption(name, specs.get(name, {}), self.store)
            self.errors.extend(option.compile())
            self.options[name] = option

    def _associate_hosts(self, routers, entry_point, default_entry_points, domains=None):
        # a generator (steps of ASSOCIATE_STEP routers, then hosts): build_entry_points_steps
        hosts = yield from HostOptions.steps(routers, entry_point, default_entry_points,
                                             self.options, domains)
        self.errors.extend(hosts.errors)
        self.host_options = hosts.host_options
        self.router_options = hosts.router_options
        options = self.options
        step = ASSOCIATE_STEP
        for i, (host, oname) in enumerate(self.host_options.items()):
            if i % step == step - 1:
                yield
            # Traefik's HostSNI matcher compares lower-case names, the host without its FQDN dot.
            key = host.rstrip(".") if host != "." else host
            option = options.get(oname)
            if option is None:
                self._sni_options[key] = "unknown TLS options: %s" % oname
            elif option.error is not None:
                self._sni_options[key] = "broken TLS options %s: %s" % (oname, option.error)
            else:
                self._sni_options[key] = option
        default = options[DEFAULT_OPTION]
        self._default = ("broken default TLS options: %s" % default.error
                         if default.error is not None else default)

    # -- per connection -----------------------------------------------------------------------

    def option_for_server_name(self, server_name):
        """The TLSOption for a (canonical) SNI, or a str: why its connections are closed."""
        if server_name:
            found = self._sni_options.get(server_name)
            if found is not None:
                return found
        return self._default

    def handshake_outcome(self, server_name):
        """What a handshake whose SNI is ``server_name`` (canonical; "" for none) gets, decided
        by the same lookups as a served connection (for ``pyroute explain``):
        ``(option name, Certificate or None, refusal reason or None)``."""
        option = self.option_for_server_name(server_name)
        if isinstance(option, str):
            key = server_name.rstrip(".") if server_name else ""
            name = next((o for h, o in self.host_options.items()
                         if key and (h.rstrip(".") if h != "." else h) == key), DEFAULT_OPTION)
            return name, None, option
        cert = option.certificate_for(server_name)
        if cert is None:
            return option.name, None, ("strict SNI enabled - No certificate found for domain: "
                                       "%r, closing connection" % (server_name,))
        return option.name, cert, None

    def new_connection(self, sock, server_name=None):
        """A non-blocking server-side TLS connection on ``sock`` (accept state, a TLSStream
        whose ``handshake()`` drives it), made with the
        option that ``server_name`` (the SNI peeked from the ClientHello) maps to. Raises
        TLSRefused when that option is broken (Traefik closes such connections at once)."""
        option = self.option_for_server_name(server_name)
        if isinstance(option, str):
            raise TLSRefused(option)
        conn = _tlsio.Connection(option.base, sock)
        info = _ConnInfo(option, server_name, sock, self.h2)
        conn.set_app_data(info)
        conn.set_accept_state()
        if server_name is None:
            conn.set_context(option.fallback_context())   # OpenSSL reads the SNI
        else:
            option.select_certificate(conn, info, server_name)
        # server_name None: the peek read none; the stream asks OpenSSL after the handshake
        return TLSStream(conn, sock, server_name, option.name)

    def accept(self, sock, again=False):
        """Start TLS on a freshly accepted non-blocking socket, if it speaks TLS.

        Returns PLAIN when the first byte is not TLS (nothing consumed: serve it as plain
        HTTP). Otherwise peeks the ClientHello record without consuming it and returns the
        Connection once the record is there; returns None while it is incomplete, after
        setting SO_RCVLOWAT so that the selector reports the socket readable only when the rest
        has arrived: call again then, with ``again=True``. Raises TLSRefused (close the socket) when the client went
        away or its option is broken.
        """
        buf = getattr(_local, "peek", None)
        if buf is None:
            buf = _local.peek = bytearray(_MAX_HELLO_RECORD)
        try:
            n = sock.recv_into(buf, _MAX_HELLO_RECORD, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise TLSRefused("client connection failed: %s" % exc) from None
        if not n:
            raise TLSRefused("client closed the connection before its TLS hello")
        if not again and not is_tls_record_start(buf[0]):
            _local.peek_n = n       # what plain_peek sees (the h2c preface test)
            return PLAIN
        complete, result = _parse_client_hello(buf, n)
        if not complete:
            if again and _get_lowat(sock) >= result:
                # Woken with the threshold already set and the record still short: the peer
                # closed (EOF wakes a reader) or sent less than it announced; let the handshake
                # read what is there and fail or succeed on its own.
                _set_lowat(sock, 1)
                return self.new_connection(sock, None)
            _set_lowat(sock, result)
            return None
        if again:
            _set_lowat(sock, 1)
        return self.new_connection(sock, result)

    @staticmethod
    def plain_peek(length):
        """The first ``length`` bytes (or fewer) of what the accept that just returned PLAIN
        peeked: the sniffer tells the h2c preface from HTTP/1.1 with them, so a plain
        connection costs no second peek."""
        return bytes(_local.peek[:min(length, _local.peek_n)])

    @staticmethod
    def option_name_of(stream):
        """The name of the TLS option a connection (a TLSStream) was made with."""
        return stream.option

    def router_option(self, router_name):
        """The TLS option a TLS router asked for (``default`` when none), or None for a router
        this entry point does not serve over TLS."""
        return self.router_options.get(router_name)

    def is_misdirected(self, stream, host):
        """Traefik's SNICheck: True when the request's Host (``host``, the Host header without
        its port) maps to another TLS option than the connection's SNI does -> answer 421."""
        raw = stream.conn.get_servername()
        server_name = raw.decode("ascii", "replace").strip() if raw else ""
        return misdirected(self.host_options, server_name, host)

    def host_option(self, host):
        """The option name the 421 check gives a Host header (str or bytes, port included)."""
        return _find_option(self.host_options, _host_without_port(host).strip(), True)

    def misdirected_request(self, server_name, host):
        """The 421 check for a request on a TLS connection: ``server_name`` is the connection's
        SNI (``TLSStream.server_name``), ``host`` the raw Host header (bytes, port included)."""
        if not self.host_options:
            return False          # nothing maps to an option: every name is "default"
        return misdirected(self.host_options, server_name, _host_without_port(host))

    def served_certificate(self, stream):
        """The Certificate the handshake presented (after it completed)."""
        return stream.conn.get_app_data().certificate


def misdirected(host_options, server_name, host):
    """pkg/middlewares/snicheck ServeHTTP, on plain strings: ``host_options`` maps lower-case
    hosts to option names (conflicts already resolved)."""
    host = host.strip()
    if host.lower() == server_name.lower():
        return False
    return (_find_option(host_options, host, True)
            != _find_option(host_options, server_name, False))


def _host_without_port(raw):
    # Traefik snicheck getHost: net.SplitHostPort(req.Host), else req.Host as it is.
    host = raw.decode("latin-1") if isinstance(raw, (bytes, bytearray)) else (raw or "")
    if host.startswith("["):
        end = host.find("]")
        if end > 0 and host[end + 1:end + 2] == ":":
            return host[1:end]
        return host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _find_option(host_options, host, fqdn):
    for candidate in (host, host.lower()):
        found = host_options.get(candidate)
        if found is not None:
            return found
        if fqdn:
            if candidate.endswith("."):
                found = host_options.get(candidate[:-1])
            else:
                found = host_options.get(candidate + ".")
            if found is not None:
                return found
    return DEFAULT_OPTION


def _get_lowat(sock):
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)


def _set_lowat(sock, value):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, value)


# --------------------------------------------------------------------------------------------
# Handshake driving and the established stream (engine/tlsio.pyx does the per-event work)

WANT_READ = _tlsio.WANT_READ
WANT_WRITE = _tlsio.WANT_WRITE
TLSStream = _tlsio.TLSStream


def handshake(stream):
    """Advance a non-blocking server handshake (``stream``: what TLSConfig.accept returned).
    Returns 0 when it is complete, WANT_READ or WANT_WRITE for the event to wait for; raises
    TLSRefused (with the reason) when it failed."""
    return stream.handshake()


def session_reused(stream):
    """Whether the handshake resumed a session (SSL_session_reused; pyOpenSSL has no wrapper)."""
    return stream.session_reused()


def _handshake_failed(stream, error, errno, text):
    # tlsio hook: a handshake step failed; raise TLSRefused with the reason for the log
    conn = stream.conn
    exc = conn.callback_error
    if isinstance(exc, _NoALPNOverlap):
        raise TLSRefused(str(exc)) from None
    if error == _tlsio.ERROR_ZERO_RETURN:
        raise TLSRefused("client closed the TLS connection during the handshake") from None
    if error == _tlsio.ERROR_SYSCALL and not text:
        raise TLSRefused("client connection failed during the TLS handshake: %s"
                         % (os.strerror(errno) if errno else "unexpected EOF")) from None
    reason = getattr(conn.get_app_data(), "refused", None)
    if reason:
        raise TLSRefused(reason) from None
    if exc is not None:
        raise TLSRefused("TLS handshake failed: %s" % (exc,)) from None
    raise TLSRefused("TLS handshake failed: %s" % (text or "OpenSSL error %d" % error))


def _read_failed(stream, error, errno, text):
    # tlsio hook: 0 at EOF (close_notify or not), else OSError
    if error == _tlsio.ERROR_ZERO_RETURN:
        return 0
    if error == _tlsio.ERROR_SYSCALL and not text:
        if not errno:                          # EOF without close_notify
            return 0
        raise OSError(errno, os.strerror(errno))
    if "unexpected eof" in text:               # OpenSSL 3+: EOF without close_notify
        return 0
    raise OSError(0, "TLS read failed: %s" % (text or "OpenSSL error %d" % error))


def _write_failed(stream, error, errno, text):
    # tlsio hook: always raises OSError
    if error == _tlsio.ERROR_SYSCALL and not text:
        raise OSError(errno, os.strerror(errno) if errno else "connection closed")
    raise OSError(0, "TLS write failed: %s" % (text or "OpenSSL error %d" % error))


def _server_name_of(stream):
    # tlsio hook, once the handshake is done, when the peek read no SNI: ask OpenSSL (Go's
    # req.TLS.ServerName: the SNI as sent, "" if none; SNICheck trims it)
    raw = stream.conn.get_servername()
    return raw.decode("ascii", "replace").strip() if raw else ""


_tlsio.bind(_handshake_failed, _read_failed, _write_failed, _server_name_of)
