"""TLSOption, TLSStore and certificates -> ``tls.options``, ``tls.stores``, ``tls.certificates``.

Mirrors kubernetes.go buildTLSOptions / buildTLSStores / getTLSConfig, plus Traefik's
mergeConfiguration: the ``default`` option and store keep their name, others are qualified,
and Traefik's DefaultTLSOptions apply when no ``default`` TLSOption exists.
"""
from .common import RefError
from .names import make_id, qualified

__all__ = ["TLSMixin", "DEFAULT_TLS", "ALPN_DEFAULT"]

DEFAULT_TLS = "default"
ALPN_DEFAULT = ["h2", "http/1.1", "acme-tls/1"]
# cipherSuites: Traefik's Options.SetDefaults fills in Go's crypto/tls CipherSuites() when a
# TLSOption leaves the field out. pyroute deliberately does not: an option without
# cipherSuites is served with Mozilla's "intermediate" TLS 1.2 list (pyroute.tls
# DEFAULT_CIPHERS; Go's list adds the ECDHE CBC-SHA suites), and the field stays absent here so
# that an option which lists suites, Go's own list included, gets exactly those.


class TLSMixin:
    """Resolver part: the ``tls`` section."""

    def tls_options(self):
        defaults_in = []
        for obj in sorted(self.store.all("TLSOption"), key=lambda o: (o.namespace, o.name)):
            spec = obj.spec
            cas = []
            ca_auth = spec.get("clientAuth") or {}
            for k, secret in enumerate(ca_auth.get("secretNames") or ()):
                if self.store.get("Secret", obj.namespace, secret) is None:
                    self.err(obj, "Secret %s/%s does not exist" % (obj.namespace, secret),
                             ("spec", "clientAuth", "secretNames", k), "warning")
                    continue
                try:
                    cas.append(self.ca_blocks(obj.namespace, secret))
                except RefError as e:
                    self.err(obj, "Failed to extract CA from secret: " + e.message,
                             ("spec", "clientAuth", "secretNames", k))
            oid = make_id(obj.namespace, obj.name)
            if obj.name == DEFAULT_TLS:
                oid = DEFAULT_TLS
                defaults_in.append(obj)
            opt = {"alpnProtocols": list(spec.get("alpnProtocols") or ALPN_DEFAULT)}
            if spec.get("cipherSuites") is not None:
                opt["cipherSuites"] = list(spec["cipherSuites"])
            for key in ("minVersion", "maxVersion", "curvePreferences", "sniStrict",
                        "disableSessionTickets"):
                if spec.get(key) not in (None, "", False, []):
                    opt[key] = spec[key]
            client_auth = {}
            if cas:
                client_auth["caFiles"] = cas
            if ca_auth.get("clientAuthType"):
                client_auth["clientAuthType"] = ca_auth["clientAuthType"]
            if client_auth:
                opt["clientAuth"] = client_auth
            self.tls["options"][oid if oid == DEFAULT_TLS else qualified(oid)] = opt
        if len(defaults_in) > 1:
            del self.tls["options"][DEFAULT_TLS]
            for obj in defaults_in:
                self.err(obj, "Default TLS Options defined in multiple namespaces: %s; none of "
                         "them is used" % ", ".join(o.namespace for o in defaults_in),
                         ("metadata", "name"))
        if DEFAULT_TLS not in self.tls["options"] and len(defaults_in) <= 1:
            # Traefik mergeConfiguration: DefaultTLSOptions when no provider defines "default".
            self.tls["options"][DEFAULT_TLS] = {"alpnProtocols": list(ALPN_DEFAULT),
                                                "minVersion": "VersionTLS12"}

    def tls_stores(self):
        defaults_in = []
        for obj in sorted(self.store.all("TLSStore"), key=lambda o: (o.namespace, o.name)):
            spec = obj.spec
            sid = make_id(obj.namespace, obj.name)
            if obj.name == DEFAULT_TLS:
                sid = DEFAULT_TLS
                defaults_in.append(obj)
            store = {}
            dc = spec.get("defaultCertificate")
            if dc is not None:
                try:
                    c, k = self.certificate_blocks(obj.namespace, dc.get("secretName", ""))
                except RefError as e:
                    self.err(obj, e.message, ("spec", "defaultCertificate", "secretName"))
                    continue
                store["defaultCertificate"] = {"certFile": c, "keyFile": k}
            if spec.get("defaultGeneratedCert") is not None:
                store["defaultGeneratedCert"] = spec["defaultGeneratedCert"]
            for k, cert in enumerate(spec.get("certificates") or ()):
                # Traefik v3.7 buildCertificates: a certificate that cannot be read is skipped,
                # the store and its other certificates still load
                key = obj.namespace + "/" + cert.get("secretName", "")
                if key in self.tls_configs:
                    continue
                try:
                    c, pk = self.certificate_blocks(obj.namespace, cert.get("secretName", ""))
                except RefError as e:
                    self.err(obj, "Unable to read certificate secret %s, skipping: %s"
                             % (key, e.message), ("spec", "certificates", k, "secretName"))
                    continue
                self.tls_configs[key] = {"certFile": c, "keyFile": pk, "stores": [sid]}
            self.tls["stores"][sid if sid == DEFAULT_TLS else qualified(sid)] = store
        if len(defaults_in) > 1:
            del self.tls["stores"][DEFAULT_TLS]
            for obj in defaults_in:
                self.err(obj, "Default TLS Stores defined in multiple namespaces: %s; none of "
                         "them is used" % ", ".join(o.namespace for o in defaults_in),
                         ("metadata", "name"))

    def certificates(self):
        self.tls["certificates"] = [self.tls_configs[k] for k in sorted(self.tls_configs)]
