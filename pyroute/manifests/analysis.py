"""Warnings Traefik does not give: routers that can never win, TLS option conflicts per host.

``analyse(rc)`` returns ConfigError warnings (it never changes ``rc``):

- a router can never win when, on the same entry point and kind of connection (TLS or not), a
  router of strictly higher priority matches every request it matches. This is decided for
  rules made of ``&&``-joined matchers where the winner uses only ``Host``, ``Path`` and
  ``PathPrefix`` (the loser may add anything: extra matchers only narrow it);
- a host named by TLS routers with different TLS options: Traefik drops both associations and
  serves the host with the ``default`` option.

It needs the rule engine for the effective priorities; without it, only the TLS check runs.
"""
import re

from .names import qualified
from .rulecheck import domains, rules_available
from .routing import route_entries

__all__ = ["analyse"]

_CALL = re.compile(r"\s*([A-Za-z]+)\((.*)\)\s*$", re.S)
_ARG = re.compile(r"\s*(?:`([^`]*)`|\"((?:[^\"\\]|\\.)*)\")\s*(?:,|$)")


def _args(text):
    out = []
    pos = 0
    while pos < len(text):
        m = _ARG.match(text, pos)
        if not m or m.end() == pos:
            return None
        out.append(m.group(1) if m.group(1) is not None else m.group(2))
        pos = m.end()
    return out


def _shape(rule):
    """(hosts or None, paths or None, pure) for an &&-only rule, or None if not analysable.

    ``paths`` is a list of ("path"|"prefix", value) alternatives (several arguments, v2);
    ``pure`` is True when the rule has nothing but Host/Path/PathPrefix.
    """
    if "||" in rule or "!" in rule.replace("!=", ""):
        return None
    parts = _split_and(rule)
    if parts is None:
        return None
    hosts = None
    paths = None
    pure = True
    for part in parts:
        m = _CALL.match(part)
        if not m:
            return None
        name, args = m.group(1), _args(m.group(2))
        if args is None or not args:
            return None
        if name in ("Host", "HostHeader"):
            if any(c in a for a in args for c in "*{}"):
                return None
            new = {a.lower() for a in args}
            hosts = new if hosts is None else hosts & new
        elif name in ("Path", "PathPrefix"):
            if paths is not None or any("{" in a for a in args):
                return None   # two path matchers ANDed: not analysed
            paths = [("path" if name == "Path" else "prefix", a) for a in args]
        else:
            pure = False
    return hosts, paths, pure


def _split_and(rule):
    parts, depth, quote, start = [], 0, None, 0
    i = 0
    while i < len(rule):
        c = rule[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "`\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "&" and rule.startswith("&&", i) and depth == 0:
            parts.append(rule[start:i])
            start = i + 2
            i += 2
            continue
        i += 1
    if depth != 0 or quote:
        return None
    parts.append(rule[start:])
    return parts


def _covers(winner, loser):
    """Whether every request the loser matches is matched by the winner."""
    w_hosts, w_paths, w_pure = winner
    l_hosts, l_paths, _ = loser
    if not w_pure:
        return False
    if w_hosts is not None and (l_hosts is None or not l_hosts <= w_hosts):
        return False
    if w_paths is None:
        return True
    if l_paths is None:
        return False
    for kind, value in l_paths:
        if not any((wk == "prefix" and value.startswith(wv)) or
                   (wk == "path" and kind == "path" and value == wv)
                   for wk, wv in w_paths):
            return False
    return True


def _never_wins(rc, out):
    from .. import rules
    for ep in rc.static.entry_points:
        for tls in (False, True):
            entries = route_entries(rc, ep, tls)
            if len(entries) < 2:
                continue
            ranked = []
            for name, rule, priority, syntax in entries:
                try:
                    compiled = rules.compile(rule, syntax or "v3")
                except rules.RuleSyntaxError:
                    continue
                shape = _shape(rule)
                if shape is not None:
                    ranked.append((int(priority or 0) or compiled.priority, name, rule, shape))
            by_host = {}
            anyhost = []
            for entry in ranked:
                hosts = entry[3][0]
                if hosts is None:
                    anyhost.append(entry)
                else:
                    for h in hosts:
                        by_host.setdefault(h, []).append(entry)
            for prio, name, rule, shape in ranked:
                hosts = shape[0]
                candidates = list(anyhost)
                if hosts is not None:
                    for h in hosts:
                        candidates += by_host.get(h, ())
                best = None
                for cand in candidates:
                    if cand[0] > prio and cand[1] != name and _covers(cand[3], shape):
                        if best is None or cand[:2] > best[:2]:
                            best = cand
                if best is not None:
                    out.append((name, "router %s can never win on entry point %s%s: router %s "
                                "(rule %s) matches every request it matches, with priority %d "
                                "> %d" % (name, ep, " (TLS)" if tls else "", best[1], best[2],
                                          best[0], prio)))


def analyse(rc):
    found = []
    if rules_available():
        _never_wins(rc, found)
    # a TLS option on a rule without Host: Traefik's own "no domain found in rule" message,
    # given where such a router becomes a conflicted copy (resolve.tls_conflicts)
    from ..tls import HostOptions
    routers = rc.tls_routers()      # Traefik's runtime routers: provider-dropped ones left out
    option_names = rc.dynamic.get("tls", {}).get("options") or {}
    for ep in rc.static.entry_points:
        # the association the server makes (pyroute.tls), disabled routers included as Traefik
        hosts = HostOptions(routers, ep, rc.static.default_entry_points(), option_names)
        for host, by_option in sorted(hosts.conflicts.items()):
            desc = "; ".join("%s by %s" % (opt, ", ".join(sorted(names)))
                             for opt, names in sorted(by_option.items()))
            for names in by_option.values():
                for name in names:
                    found.append((name, "host %r is served on entry point %s with different TLS "
                                  "options (%s): Traefik drops both and uses the default TLS "
                                  "option for it" % (host, ep, desc)))
    out = []
    seen = set()
    for name, message in found:
        if (name, message) in seen:
            continue
        seen.add((name, message))
        src = rc.router_sources.get(qualified(name))
        if src is None:
            continue
        out.append(src.obj.error(message, src.path + ("match",), severity="warning"))
    return out
