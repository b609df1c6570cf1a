"""passTLSClientCert (Traefik pkg/middlewares/passtlsclientcert).

On a TLS connection whose client sent a certificate (a TLSOption with ``clientAuth`` asks for
one), the backend gets, as Traefik sends them:

- ``pem: true``: ``X-Forwarded-Tls-Client-Cert``: each certificate the client sent (its own
  first, then the chain it sent; Go's ``req.TLS.PeerCertificates``) as PEM without the
  BEGIN/END lines and newlines (the base64 of its DER), joined by ``,``;
- ``info``: ``X-Forwarded-Tls-Client-Cert-Info``, URL-query-escaped (Go's
  ``url.QueryEscape``): per certificate, ``;``-joined ``Subject="..."``, ``Issuer="..."``,
  ``SerialNumber="..."``, ``NB="<unix>"``, ``NA="<unix>"``, ``SAN="..."`` (only the selected
  fields, empty ones left out), certificates joined by ``,``. A distinguished name lists the
  selected parts in Traefik's order: DC (in the certificate's order), C, ST, L, O, OU
  (subject only), SN, CN, each ``KEY=value`` joined by ``,``; multi-valued C/ST/L/O/OU give one
  part per value, SN and CN the last value (Go's pkix.Name). SANs: DNS names, e-mail
  addresses, IP addresses, URIs.

Either header replaces what the request had (Go's ``Header.Set``); the entry point already
dropped a client's own X-Forwarded-Tls-Client-Cert* unless it trusts the peer (Traefik's
forwarded-headers handler), and a request without a client certificate gets nothing from this
middleware. The values depend on the connection only: they are computed on its first request
and kept for the next ones (per worker, per middleware, for the connection's life).
"""
import base64
import calendar
import weakref
from urllib.parse import quote_plus

from cryptography import x509
from cryptography.x509.oid import NameOID

CERT = b"X-Forwarded-Tls-Client-Cert"
CERT_INFO = b"X-Forwarded-Tls-Client-Cert-Info"
_REMOVE = (b"x-forwarded-tls-client-cert", b"x-forwarded-tls-client-cert-info")

_DC = x509.ObjectIdentifier("0.9.2342.19200300.100.1.25")    # RFC 2247 domainComponent
# Go's pkix.Name fields, by attribute type
_LISTS = {NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST",
          NameOID.LOCALITY_NAME: "L", NameOID.ORGANIZATION_NAME: "O",
          NameOID.ORGANIZATIONAL_UNIT_NAME: "OU"}
_SINGLE = {NameOID.SERIAL_NUMBER: "SN", NameOID.COMMON_NAME: "CN"}

# option -> the part it selects, in the order Traefik writes them (getSubjectDNInfo)
_SUBJECT = (("domainComponent", "DC"), ("country", "C"), ("province", "ST"),
            ("locality", "L"), ("organization", "O"), ("organizationalUnit", "OU"),
            ("serialNumber", "SN"), ("commonName", "CN"))
_ISSUER = tuple(o for o in _SUBJECT if o[0] != "organizationalUnit")
_INFO = ("notAfter", "notBefore", "sans", "serialNumber", "subject", "issuer")

_NO_CERT = (None, None)


def _bools(spec, where, options):
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("%s: expected a mapping" % where)
    for key, value in spec.items():
        if key not in options:
            raise ValueError("%s.%s: unknown option" % (where, key))
        if key in ("subject", "issuer"):
            if value is not None and not isinstance(value, dict):
                raise ValueError("%s.%s: expected a mapping" % (where, key))
        elif value is not None and not isinstance(value, bool):
            raise ValueError("%s.%s: expected true or false" % (where, key))
    return spec


def _dn_parts(name):
    """A certificate's Name as Go's pkix.Name holds it: {part: [values]}, DC in order."""
    parts = {"DC": []}
    for rdn in name.rdns:
        for attr in rdn:
            value = attr.value
            if not isinstance(value, str):
                continue
            oid = attr.oid
            if oid == _DC:
                parts["DC"].append(value)
            elif oid in _LISTS:
                parts.setdefault(_LISTS[oid], []).append(value)
            elif oid in _SINGLE:
                parts[_SINGLE[oid]] = [value]       # Go: the last one wins
    return parts


def _dn(parts, selected):
    out = []
    for key in selected:
        for value in parts.get(key, ()):
            # Traefik writePart skips empty values; DC (from Names) is written as it is
            if value or key == "DC":
                out.append("%s=%s" % (key, value))
    return ",".join(out)


def _unix(dt):
    # Go: uint64(t.Unix()): a time before 1970 wraps around
    return calendar.timegm(dt.utctimetuple()) % (1 << 64)


def _sans(cert):
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = list(ext.get_values_for_type(x509.DNSName))
    out += ext.get_values_for_type(x509.RFC822Name)
    for ip in ext.get_values_for_type(x509.IPAddress):
        mapped = getattr(ip, "ipv4_mapped", None)
        out.append(str(mapped if mapped is not None else ip))   # Go's net.IP.String
    out += ext.get_values_for_type(x509.UniformResourceIdentifier)
    return out


class PassTLSClientCert:
    __slots__ = ("pem", "subject", "issuer", "serial", "not_before", "not_after", "sans",
                 "info", "cache")
    static = False

    def __init__(self, spec):
        pem = spec.get("pem")
        if pem is not None and not isinstance(pem, bool):
            raise ValueError("pem: expected true or false")
        self.pem = bool(pem)
        info = _bools(spec.get("info"), "info", _INFO)
        for key in spec:
            if key not in ("pem", "info"):
                raise ValueError("%s: unknown option" % key)
        self.info = info is not None
        info = info or {}
        sub = _bools(info.get("subject"), "info.subject", [o for o, _ in _SUBJECT])
        iss = _bools(info.get("issuer"), "info.issuer", [o for o, _ in _ISSUER])
        self.subject = None if sub is None else tuple(k for o, k in _SUBJECT if sub.get(o))
        self.issuer = None if iss is None else tuple(k for o, k in _ISSUER if iss.get(o))
        self.serial = bool(info.get("serialNumber"))
        self.not_before = bool(info.get("notBefore"))
        self.not_after = bool(info.get("notAfter"))
        self.sans = bool(info.get("sans"))
        # connection (pyroute.tls Connection) -> (pem value, info value): fixed per connection
        self.cache = weakref.WeakKeyDictionary()

    # -- the header values, from DER certificates -----------------------------------------

    def pem_value(self, ders):
        """Traefik getCertificates: the sanitized PEM of each certificate, ``,``-joined."""
        return b",".join(base64.b64encode(d) for d in ders)

    def cert_info(self, cert):
        """Traefik getCertInfo for one certificate (unescaped)."""
        values = []
        if self.subject is not None:
            subject = _dn(_dn_parts(cert.subject), self.subject)
            if subject:
                values.append('Subject="%s"' % subject)
        if self.issuer is not None:
            issuer = _dn(_dn_parts(cert.issuer), self.issuer)
            if issuer:
                values.append('Issuer="%s"' % issuer)
        if self.serial:
            values.append('SerialNumber="%d"' % cert.serial_number)
        if self.not_before:
            values.append('NB="%d"' % _unix(cert.not_valid_before_utc))
        if self.not_after:
            values.append('NA="%d"' % _unix(cert.not_valid_after_utc))
        if self.sans:
            sans = _sans(cert)
            if sans:
                values.append('SAN="%s"' % ",".join(sans))
        return ";".join(values)

    def info_value(self, ders):
        text = ",".join(self.cert_info(x509.load_der_x509_certificate(d)) for d in ders)
        return quote_plus(text, safe="").encode("ascii")

    def values(self, ders):
        """(X-Forwarded-Tls-Client-Cert value or None, ...-Info value or None)."""
        if not ders:
            return _NO_CERT
        return (self.pem_value(ders) if self.pem else None,
                self.info_value(ders) if self.info else None)

    # -- per request ----------------------------------------------------------------------

    def on_request(self, ex):
        if not ex.tls or not (self.pem or self.info):
            return None     # Traefik: "Tried to extract a certificate without mutual TLS"
        conn = ex.conn.sock.conn
        got = self.cache.get(conn)
        if got is None:
            got = self.cache[conn] = self.values(peer_certificates(conn))
        pem, info = got
        if pem is None and info is None:
            return None
        edits = ex.set_headers
        if edits is None:
            ex.set_headers = edits = []
        removes = ex.remove_headers
        if removes is None:
            ex.remove_headers = removes = []
        if pem is not None:
            removes.append(_REMOVE[0])
            edits.append((CERT, pem))
        if info is not None:
            removes.append(_REMOVE[1])
            edits.append((CERT_INFO, info))
        return None


# leaf DER -> the certificates sent with it on a full handshake (this worker's last ones): a
# resumed session keeps the client's own certificate but not the rest of what it sent
# (OpenSSL's tickets hold the peer certificate only; Go's hold them all)
_CHAINS = {}
_CHAINS_MAX = 4096


def peer_certificates(conn):
    """The DER certificates the client sent on a server Connection (pyroute.tls), its own
    first (Go's ``PeerCertificates``); [] when it sent none."""
    der = conn.peer_certificate_der()
    if der is None:
        return []
    out = [der]
    # server side, OpenSSL's peer chain is the chain without the peer's own certificate
    # (SSL_get_peer_cert_chain); should it start with it, it is not listed twice
    for i, d in enumerate(conn.peer_chain_der()):
        if i or d != der:
            out.append(d)
    if conn.session_reused():
        if len(out) == 1:
            return list(_CHAINS.get(der, out))
    elif len(out) > 1 or der in _CHAINS:
        if len(_CHAINS) >= _CHAINS_MAX:
            _CHAINS.pop(next(iter(_CHAINS)))
        _CHAINS[der] = tuple(out)
    return out
