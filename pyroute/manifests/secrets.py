"""Secrets and ConfigMaps as Traefik's CRD provider reads them (TLS pairs, CA bundles)."""
import base64
import binascii

from .common import RefError

__all__ = ["SecretsMixin"]


class SecretsMixin:
    """Resolver part: decoded Secret data, certificate and CA blocks (kubernetes.go helpers)."""

    def secret_data(self, namespace, name):
        """The decoded data of Secret namespace/name (str -> str), or None if it doesn't exist."""
        obj = self.store.get("Secret", namespace, name)
        if obj is None:
            return None
        data = {}
        for k, v in (obj.body.get("data") or {}).items():
            try:
                # Kubernetes decodes Secret data with Go's base64.StdEncoding, which skips
                # '\r' and '\n' anywhere: a value wrapped over several lines is valid.
                raw = v.replace("\r", "").replace("\n", "")
                data[k] = base64.b64decode(raw.encode("ascii"), validate=True).decode("utf-8")
            except (binascii.Error, ValueError, UnicodeError):
                self.err(obj, "not valid base64 (Secret data values are base64-encoded; "
                              "use stringData for plain text)", ("data", k))
        for k, v in (obj.body.get("stringData") or {}).items():
            data[k] = v
        return data

    def secret_object(self, namespace, name):
        return self.store.get("Secret", namespace, name)

    def certificate_blocks(self, namespace, name):
        data = self.secret_data(namespace, name)
        if data is None:
            raise RefError("secret %s/%s does not exist" % (namespace, name))
        missing = [k for k in ("tls.crt", "tls.key") if k not in data]
        if missing:
            raise RefError("secret %s/%s is missing the following TLS data entries: %s"
                           % (namespace, name, ", ".join(missing)))
        empty = [k for k in ("tls.crt", "tls.key") if not data[k]]
        if empty:
            raise RefError("secret %s/%s contains the following empty TLS data entries: %s"
                           % (namespace, name, ", ".join(empty)))
        return data["tls.crt"], data["tls.key"]

    def ca_blocks(self, namespace, name):
        data = self.secret_data(namespace, name)
        if data is None:
            raise RefError("secret '%s/%s' not found" % (namespace, name))
        for key in ("tls.ca", "ca.crt"):
            if key in data:
                return data[key]
        if len(data) == 1:   # Traefik: backward compatibility, the only entry is the CA
            return next(iter(data.values()))
        raise RefError("secret '%s/%s' has no CA block: contains neither tls.ca nor ca.crt"
                       % (namespace, name))

    def ca_configmap(self, namespace, name):
        obj = self.store.get("ConfigMap", namespace, name)
        if obj is None:
            raise RefError("configMap '%s/%s' not found" % (namespace, name))
        data = obj.body.get("data") or {}
        for key in ("tls.ca", "ca.crt"):
            if key in data:
                return data[key]
        raise RefError("configMap '%s/%s' has no CA block" % (namespace, name))
