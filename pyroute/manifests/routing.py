"""Which routers a connection can reach, and the TLS option / certificate for a server name.

Shared by ``pyroute explain`` and the server so that both see the same tables:

``route_entries(rc, entry_point, tls, parent=None)``
    ``[(router name, rule, priority, ruleSyntax)]`` for ``RouteTable``: the enabled routers on
    ``entry_point`` that serve TLS connections (``tls=True``: routers with a ``tls`` section) or
    plain ones (``tls=False``), top-level routers when ``parent`` is None, else the children
    (``parentRefs``) of router ``parent``.
``TLSHosts(rc, entry_point)``
    Traefik's Host -> TLS option association for one entry point (``option_for(server_name)``;
    a host named by routers with different options gets ``default``, as Traefik does) and the
    certificate a server name gets (``certificate_for(server_name)``).
"""
from .names import qualified
from .rulecheck import domains

__all__ = ["route_entries", "TLSHosts", "children_of"]

DEFAULT = "default"


def route_entries(rc, entry_point, tls, parent=None):
    out = []
    for name, r in rc.dynamic["http"]["routers"].items():
        if r.get("status") != "enabled":
            continue
        if ("tls" in r) != bool(tls):
            continue
        parents = r.get("parentRefs")
        if parent is None:
            if parents is not None or entry_point not in (r.get("entryPoints") or ()):
                continue
        elif parent not in (parents or ()):
            continue
        out.append((name, r["rule"], r.get("priority", 0), r.get("ruleSyntax", "")))
    return out


def children_of(rc, name):
    return [n for n, r in rc.dynamic["http"]["routers"].items()
            if name in (r.get("parentRefs") or ()) and r.get("status") == "enabled"]


def _host_match(pattern, name):
    if pattern == name:
        return True
    if pattern.startswith("*.") and "." in name:
        return name.split(".", 1)[1] == pattern[2:]
    return False


class TLSHosts:
    """Host -> TLS option for TLS routers of one entry point (Traefik's tlsOptionsForHost)."""

    def __init__(self, rc, entry_point):
        by_host = {}
        for name, r in rc.dynamic["http"]["routers"].items():
            if r.get("status") != "enabled" or "tls" not in r:
                continue
            if entry_point not in (r.get("entryPoints") or ()):
                continue
            opt = r["tls"].get("options") or DEFAULT
            opt = opt if opt == DEFAULT else qualified(opt)
            for host in domains(r["rule"], r.get("ruleSyntax", "")):
                by_host.setdefault(host, {}).setdefault(opt, []).append(name)
        self.conflicts = {h: opts for h, opts in by_host.items() if len(opts) > 1}
        # Traefik: a host mapped to two different options gets the default one.
        self.options = {h: (next(iter(opts)) if len(opts) == 1 else DEFAULT)
                        for h, opts in by_host.items()}
        self._certs = None
        self._rc = rc

    def option_for(self, server_name):
        """The TLS option name a connection for ``server_name`` uses ("default" if none)."""
        name = (server_name or "").lower().rstrip(".")
        if name in self.options:
            return self.options[name]
        for host, opt in self.options.items():
            if host.startswith("*.") and _host_match(host, name):
                return opt
        return DEFAULT

    def certificate_for(self, server_name):
        """(description, sans) of the certificate served for ``server_name``."""
        if self._certs is None:
            self._certs = _parse_certs(self._rc.dynamic["tls"])
        name = (server_name or "").lower()
        for desc, sans in self._certs:
            if any(_host_match(s, name) for s in sans):
                return desc, sans
        store = self._rc.dynamic["tls"]["stores"].get(DEFAULT, {})
        if "defaultCertificate" in store:
            sans = _sans(store["defaultCertificate"]["certFile"])
            return "the default TLSStore's defaultCertificate", sans
        return "pyroute's generated self-signed default certificate", []


def _sans(pem):
    try:
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(pem.encode())
    except Exception:   # not a certificate: shown as having no names
        return []
    names = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [n.lower() for n in ext.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    if not names:
        names = [a.value.lower() for a in cert.subject.get_attributes_for_oid(
            x509.oid.NameOID.COMMON_NAME)]
    return names


def _parse_certs(tls):
    out = []
    for i, c in enumerate(tls.get("certificates") or ()):
        sans = _sans(c["certFile"])
        out.append(("certificate #%d (%s)" % (i, ", ".join(sans) or "no names"), sans))
    return out
