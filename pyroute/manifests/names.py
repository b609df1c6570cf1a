"""Names exactly as Traefik derives them (provider.Normalize, makeID, makeServiceKey, ...)."""
import hashlib
import re

__all__ = ["PROVIDER", "normalize", "make_id", "make_service_key", "router_name", "qualified",
           "split_provider", "format_duration"]

PROVIDER = "kubernetescrd"      # Traefik: crd.providerName
SEPARATOR = "@"                 # Traefik: providerNamespaceSeparator

# Traefik provider.Normalize: runs of characters that are neither unicode letters nor numbers
# become one "-" (strings.FieldsFunc + Join, so no leading/trailing "-").
_NOT_ALNUM = re.compile(r"[\W_]+")


def normalize(name):
    return "-".join(p for p in _NOT_ALNUM.split(name) if p)


def make_id(namespace, name):
    """Traefik makeID: ``namespace-name``, or ``name`` when the namespace is empty."""
    return name if not namespace else namespace + "-" + name


def make_service_key(rule, ingress_name):
    """Traefik makeServiceKey: ``<ingress>-<first 10 bytes of sha256(rule), hex>``."""
    return "%s-%s" % (ingress_name, hashlib.sha256(rule.encode("utf-8")).hexdigest()[:20])


def router_name(namespace, ingress_name, rule):
    """The router name Traefik gives route ``rule`` of IngressRoute ``namespace/ingress_name``."""
    return normalize(make_id(namespace, make_service_key(rule, ingress_name)))


def qualified(name, provider=PROVIDER):
    """Traefik provider.GetQualifiedName: ``name@provider`` unless ``name`` already has one."""
    return name if SEPARATOR in name else name + SEPARATOR + provider


def split_provider(name):
    """``"a-b@file"`` -> ``("a-b", "file")``; ``"a-b"`` -> ``("a-b", "")``."""
    if SEPARATOR not in name:
        return name, ""
    base, _, provider = name.rpartition(SEPARATOR)
    return base, provider


def format_duration(seconds):
    """Go's time.Duration.String() for a number of seconds ("100ms", "1m30s", "0s")."""
    ns = int(round(seconds * 1e9))
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1000:
        return "%s%dns" % (sign, ns)
    if ns < 1000000:
        return sign + _frac(ns, 1000) + "\u00b5s"
    if ns < 1000000000:
        return sign + _frac(ns, 1000000) + "ms"
    h, rem = divmod(ns, 3600 * 10**9)
    m, rem = divmod(rem, 60 * 10**9)
    s = _frac(rem, 10**9)
    if h:
        return "%s%dh%dm%ss" % (sign, h, m, s)
    if m:
        return "%s%dm%ss" % (sign, m, s)
    return "%s%ss" % (sign, s)


def _frac(value, unit):
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return ("%d.%0*d" % (whole, digits, rest)).rstrip("0")
