"""``pyroute explain``: where a request would go, and why.

    pyroute explain [-c STATIC] PATH... [METHOD] URL [-H 'Name: value']... [--client-ip IP]
                    [--entrypoint NAME] [--sni NAME] [--json]
    pyroute explain [-c STATIC] PATH... --requests FILE      (JSON lines in, JSON lines out)

The request goes through the entry point's normalisation first (pyroute.normalize: fragment
refused, percent-encodings normalised, path sanitised, ';' in queries, X-Forwarded-* dropped
from untrusted peers), then the route table of its entry point (TLS routers for https URLs,
the others for http), exactly as the server builds them (pyroute.manifests.routing).
"""
import json
import sys

from .trace import Explainer

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


def add_arguments(parser):
    parser.add_argument("args", nargs="*", metavar="PATH... [METHOD] URL",
                        help="manifest files or folders, then an optional method and the URL "
                             "(http://host/path, https://host/path or /path with -H Host:)")
    parser.add_argument("-c", "--config", metavar="STATIC", help="static configuration (YAML)")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'",
                        help="request header (repeatable)")
    parser.add_argument("--client-ip", default="127.0.0.1", help="peer address (default "
                        "127.0.0.1)")
    parser.add_argument("--entrypoint", help="entry point the request arrives on (default: the "
                        "one whose port the URL names, else the first default entry point)")
    parser.add_argument("--sni", help="TLS server name (default: the URL's host)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--requests", metavar="FILE",
                        help="JSON lines {method, url, headers, client_ip, entrypoint, sni}; "
                             "one JSON line out per request")


def _parse_header(text):
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError("header %r is not 'Name: value'" % text)
    return name.strip(), value.strip()


def render_text(res):
    lines = []
    add = lines.append
    add("entry point  %s" % res["entrypoint"])
    add("host         %s" % (res.get("host") if res.get("host") is not None else
                             "(no Host header)"))
    if res.get("path") is not None:
        q = res.get("query")
        add("request      %s%s" % (res["path"], "" if q is None else "?" + q))
    if res["tls"]:
        t = res["tls"]
        add("tls          sni %r -> option %s; certificate: %s" % (
            t["sni"], t["option"], t["certificate"]))
    if res["router"]:
        add("router       %s" % res["router"])
        add("  rule       %s" % res["rule"])
        add("  priority   %s" % res["priority"])
    for m in res["matched"]:
        if m["router"] != res["router"]:
            add("also matched %s (priority %s, rule %s): %s" % (
                m["router"], m["priority"], m["rule"], m["why"]))
    if res["router"]:
        if res["middlewares"]:
            add("middlewares")
            for i, m in enumerate(res["middlewares"], 1):
                cfg = m.get("config")
                add("  %d. %s  %s%s" % (i, m["name"], m["type"] or m.get("status"),
                                        " " + json.dumps(cfg, sort_keys=True) if cfg else ""))
        if res["service"]:
            add("service")
            _render_tree(res["service"], "  ", add)
    for note in res.get("notes", ()):
        add("note         %s" % note)
    add("status       %s" % (res["status"] if res["status"] is not None else
                             "forwarded to the service (the backend answers)"))
    return "\n".join(lines)


def _render_tree(node, indent, add):
    label = node["name"]
    extra = []
    if "weight" in node:
        extra.append("weight %s" % node["weight"])
    if "role" in node:
        extra.append(node["role"])
    if node.get("status"):
        extra.append(node["status"])
    add("%s%s  %s%s" % (indent, label, node["type"], ("  (" + ", ".join(extra) + ")")
                        if extra else ""))
    for m in node.get("middlewares") or ():
        add("%s  middleware %s (service-level, after the router's)" % (indent, m))
    hc = node.get("healthCheck")
    if hc is not None:
        add("%s  healthCheck %s" % (indent, _health(hc, node["type"])))
    for s in node["servers"]:
        add("%s  %s  weight %s" % (indent, s["url"], s["weight"]))
    if node["type"] == "loadBalancer" and not node["servers"]:
        add("%s  (no servers)" % indent)
    for child in node["children"]:
        _render_tree(child, indent + "  ", add)


def _health(hc, kind):
    """One line for a service's health-check settings (Traefik's defaults filled in)."""
    if kind != "loadBalancer":
        return "{} (children report their status; this service reports its own upwards)"
    parts = ["%s %s" % ((hc.get("method") or "GET").upper(), hc.get("path") or "/")]
    for key in ("scheme", "port", "hostname"):
        if hc.get(key):
            parts.append("%s %s" % (key, hc[key]))
    parts.append("expect %s" % (hc.get("status") or "200-399"))
    parts.append("every %s (unhealthy: %s), timeout %s" % (
        hc.get("interval"), hc.get("unhealthyInterval"), hc.get("timeout")))
    if hc.get("headers"):
        parts.append("headers %s" % ", ".join("%s: %s" % kv for kv in
                                             sorted(hc["headers"].items())))
    if hc.get("followRedirects") is False:
        parts.append("redirects not followed")
    return "; ".join(parts)


def _public(res):
    return {k: res.get(k) for k in ("status", "entrypoint", "host", "router", "rule", "priority",
                                "middlewares", "service", "tls", "matched", "notes")}


def main(args):
    from ..errors import ConfigError
    from ..static import load_static
    from . import load

    positional = list(args.args)
    method, url = "GET", None
    if not args.requests:
        if not positional:
            print("pyroute explain: give manifest paths and a URL", file=sys.stderr)
            return 2
        url = positional.pop()
        if positional and positional[-1].upper() in METHODS:
            method = positional.pop().upper()
    try:
        headers = [_parse_header(h) for h in args.header]
    except ValueError as e:
        print("pyroute explain: %s" % e, file=sys.stderr)
        return 2
    try:
        rc = load(positional, load_static(args.config))
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return 1
    n_err = sum(1 for e in rc.errors if e.severity == "error")
    if n_err:
        print("pyroute explain: the configuration has %d error(s) (see pyroute check); "
              "explaining with the rest" % n_err, file=sys.stderr)
    ex = Explainer(rc)
    if args.requests:
        src = sys.stdin if args.requests == "-" else open(args.requests)
        with src:
            for line in src:
                if not line.strip():
                    continue
                req = json.loads(line)
                hdrs = req.get("headers") or []
                if isinstance(hdrs, dict):
                    hdrs = list(hdrs.items())
                res = ex.explain(req.get("method", "GET"), req["url"], [tuple(h) for h in hdrs],
                                 req.get("client_ip", "127.0.0.1"), req.get("entrypoint"),
                                 req.get("sni"))
                sys.stdout.write(json.dumps(_public(res)) + "\n")
        return 0
    res = ex.explain(method, url, headers, args.client_ip, args.entrypoint, args.sni)
    if args.json:
        print(json.dumps(_public(res), indent=2))
    else:
        print(render_text(res))
    return 0
