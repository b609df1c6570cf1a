"""``pyroute healthcheck [-c STATIC] [--ping ...]``: Traefik's ``traefik healthcheck``.

HEAD /ping on the entry point ``ping.entryPoint`` names (cmd/healthcheck: plain HTTP, a 5 s
timeout, no proxy); exit 0 on 200, 1 otherwise — for Docker HEALTHCHECK and Kubernetes exec
probes. The static configuration is read as ``pyroute run`` reads it (file, Traefik's flags,
TRAEFIK_* variables).
"""
import http.client
import sys

TIMEOUT = 5.0


def add_arguments(parser):
    parser.add_argument("-c", "--config", metavar="STATIC",
                        help="Traefik's static configuration file (YAML or TOML); Traefik's "
                        "flags (--ping, --ping.entryPoint=...) and TRAEFIK_* variables too")


def entry_point(static):
    """(EntryPoint, None) for the ping entry point, or (None, error message) as Traefik's
    healthcheck.Do says it."""
    from ..static import INTERNAL_ENTRY_POINT
    ping = getattr(static, "ping", None)
    if ping is None:
        return None, "please enable `ping` to use health check"
    name = ping.entry_point or INTERNAL_ENTRY_POINT
    ep = static.entry_points.get(name)
    if ep is None:
        return None, "ping: missing %s entry point" % name
    return ep, None


def main(args):
    from ..errors import ConfigError
    from ..server.run import load_static_config
    try:
        static = load_static_config(args.config, list(getattr(args, "traefik_flags", ())))
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return 1
    ep, error = entry_point(static)
    if error:
        print("Error calling healthcheck: %s" % error)
        return 1
    # Go dials ":8080" as the local host
    host = ep.host or "127.0.0.1"
    url = "http://%s/ping" % ep.address
    try:
        conn = http.client.HTTPConnection(host, ep.port, timeout=TIMEOUT)
        try:
            conn.request("HEAD", "/ping")
            resp = conn.getresponse()
            status, reason = resp.status, resp.reason
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        print("Error calling healthcheck: Head %r: %s" % (url, e))
        return 1
    if status != 200:
        print("Bad healthcheck status: %d %s" % (status, reason))
        return 1
    print("OK: %s" % url)
    return 0
