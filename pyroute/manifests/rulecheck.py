"""The few things the manifests layer needs from the rule engine (``pyroute.rules``).

Kept in one place so the loader depends on the rule engine's API at a single spot:
``check_rule`` (does a router's rule compile?) and ``domains`` (the Host names of a rule, for the
TLS option mapping).
"""
from ..errors import RuleSyntaxError

__all__ = ["check_rule", "check_priority", "domains", "rules_available"]

SYNTAXES = ("", "v2", "v3", "default")


_module = []


def _rules():
    # Looked up once: a failed import is not cached by Python and costs ~0.1 ms per rule.
    if not _module:
        try:
            from .. import rules
        except ImportError:   # the rule engine has not landed on this branch yet
            rules = None
        _module.append(rules)
    return _module[0]


def rules_available():
    return _rules() is not None


def check_rule(rule, syntax=""):
    """None if ``rule`` compiles under ``syntax``, else the message saying why not."""
    if syntax not in SYNTAXES:
        return "invalid rule syntax %r (expected \"v3\" or \"v2\")" % syntax
    rules = _rules()
    if rules is None:
        return None
    try:
        rules.compile(rule, syntax or "v3")
    except RuleSyntaxError as e:
        return "invalid rule: %s" % e.message + (" (at position %d)" % e.pos)
    return None


def check_priority(priority):
    """None if a router may have ``priority``, else why not (Traefik keeps the top for itself)."""
    rules = _rules()
    if rules is None or not priority:
        return None
    if priority > rules.MAX_USER_PRIORITY:
        return ("the router priority %d exceeds the max user-defined priority %d"
                % (priority, rules.MAX_USER_PRIORITY))
    return None


def domains(rule, syntax=""):
    """Lower-cased Host names of ``rule`` (Traefik httpmuxer.ParseDomains); [] if unknown."""
    rules = _rules()
    if rules is None:
        return []
    try:
        return list(rules.parse_domains(rule, syntax or "v3"))
    except (RuleSyntaxError, TypeError):
        return []
