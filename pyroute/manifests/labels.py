"""Kubernetes label selectors, for ``providers.kubernetesCRD.labelSelector``.

The selector grammar is Kubernetes' (k8s.io/apimachinery/pkg/labels): comma-separated
requirements, each ``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``,
``key in (a,b)`` or ``key notin (a,b)``; all must hold.
"""
import re

__all__ = ["parse_selector", "matches"]

_REQ = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[A-Za-z0-9._/-]+)"
    r"|(?P<key>[A-Za-z0-9._/-]+)\s*(?:(?P<op>==|=|!=)\s*(?P<val>[A-Za-z0-9._-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?)\s*(?:,|$)")


def parse_selector(text):
    """A tuple of (op, key, values) requirements; raises ValueError on bad syntax."""
    reqs = []
    pos = 0
    text = text or ""
    if not text.strip():
        return ()
    while pos < len(text):
        m = _REQ.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError("invalid label selector %r at position %d" % (text, pos))
        if m.group("not"):
            reqs.append(("!", m.group("nkey"), ()))
        elif m.group("op"):
            op = "!=" if m.group("op") == "!=" else "="
            reqs.append((op, m.group("key"), (m.group("val"),)))
        elif m.group("setop"):
            values = tuple(v.strip() for v in m.group("set").split(",") if v.strip())
            reqs.append((m.group("setop"), m.group("key"), values))
        else:
            reqs.append(("exists", m.group("key"), ()))
        pos = m.end()
    return tuple(reqs)


def matches(requirements, labels):
    """Whether a label mapping satisfies every requirement."""
    labels = labels or {}
    for op, key, values in requirements:
        present = key in labels
        value = labels.get(key)
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
        if op == "=" and value != values[0]:
            return False
        if op == "!=" and present and value == values[0]:
            return False
        if op == "in" and (not present or value not in values):
            return False
        if op == "notin" and present and value in values:
            return False
    return True
