"""``pyroute run [--config STATIC] [PATH...] [--workers N]``: serve manifests.

Without a static config and without paths it serves the bundled demo: the IngressRoutes in
``pyroute/demo`` and echo backends on 127.0.0.1:18081-18083, and prints URLs to try.
"""
import dataclasses
import os
import signal
import sys

from ..errors import ConfigError
from .log import configure as configure_log, log, set_level

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo")


def add_arguments(parser):
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="manifest files or folders (default: the bundled demo)")
    parser.add_argument("-c", "--config", metavar="STATIC",
                        help="Traefik's static configuration file (YAML or TOML); Traefik's "
                        "flags and TRAEFIK_* variables work too (see below)")
    parser.add_argument("-w", "--workers", type=int, default=0,
                        help="worker processes (default: the number of CPUs)")


def load_static_config(static_path, flags=()):
    """The static configuration as Traefik picks it: ``-c``/``--configFile``, else Traefik's
    default file locations, else the flags, else TRAEFIK_* variables, else the defaults."""
    from ..static import load_static
    return load_static(static_path, args=flags, environ=os.environ, search=True)


def load_config(static_path, paths, flags=()):
    """Load and compile-check a configuration; raises ConfigError when it cannot serve."""
    from ..manifests import load
    from ..verdict import verdict
    static = load_static_config(static_path, flags)
    config = load(paths, static)
    # compiling here (route tables, middlewares, services) validates what workers will build;
    # the routers it cannot build are marked disabled, with the errors `pyroute check` prints
    config, _ = verdict(config)
    return dataclasses.replace(config, router_sources={})


class ReloadRefused(Exception):
    """A reload that must not be applied; ``errors``: the ConfigErrors that say why."""

    def __init__(self, message, errors, level="error"):
        super().__init__(message)
        self.errors = tuple(errors)
        self.level = level


def reload_config(static_path, paths, flags=()):
    """``load_config`` for a reload: a manifest path that cannot be read or parsed (missing,
    unreadable, invalid YAML, over the expansion limits) refuses the whole reload, so the
    previous configuration keeps serving — Traefik's file provider keeps its previous
    configuration when a file fails to parse (and when its path is gone)."""
    from ..manifests.source import SourceError
    config = load_config(static_path, paths, flags)
    bad = [e for e in config.errors if isinstance(e, SourceError)]
    if bad:
        missing = all(e.message == "no such file or directory" for e in bad)
        raise ReloadRefused("%d manifest path(s) cannot be %s" % (
            len(bad), "found" if missing else "read or parsed"), bad,
            level="warn" if missing else "error")
    return config


def missing_paths(config):
    """The manifest paths (given, or from providers.kubernetesCRD.paths) that do not exist."""
    return [p for p in getattr(config, "paths", ()) or () if not os.path.exists(p)]


def describe(config):
    routers = config.dynamic.get("http", {}).get("routers", {})
    services = config.dynamic.get("http", {}).get("services", {})
    enabled = sum(1 for r in routers.values() if r.get("status", "enabled") == "enabled")
    errors = sum(1 for e in config.errors if getattr(e, "severity", "error") == "error")
    warnings = len(config.errors) - errors
    return "%d router(s) (%d enabled), %d service(s), %d error(s), %d warning(s)" % (
        len(routers), enabled, len(services), errors, warnings)


def served_routers(config, entry_point):
    """``(plain, tls)``: how many enabled routers an entry point serves over plain HTTP and
    over TLS. Both kinds share the entry point's port, told apart by the first byte of each
    connection, as Traefik does."""
    routers = config.dynamic.get("http", {}).get("routers", {})
    default_eps = config.static.default_entry_points()
    plain = tls = 0
    for router in routers.values():
        if not isinstance(router, dict) or router.get("status", "enabled") != "enabled":
            continue
        if entry_point not in (router.get("entryPoints") or default_eps):
            continue
        if router.get("tls") is not None:
            tls += 1
        else:
            plain += 1
    return plain, tls


def listening_line(config, name, address):
    """What ``pyroute run`` says an entry point serves: http:// always (a request no plain
    router matches gets 404), https:// too when TLS routers are on it."""
    plain, tls = served_routers(config, name)
    if not tls:
        return "pyroute: entry point %s listening on http://%s" % (name, address)
    return ("pyroute: entry point %s listening on http://%s and https://%s "
            "(%d plain router(s), %d TLS router(s))" % (name, address, address, plain, tls))


def _print_errors(config):
    from ..manifests.check import render
    for e in config.errors:
        try:
            print(render(e), file=sys.stderr)
        except Exception:
            print(str(e), file=sys.stderr)


def main(args):
    from .master import Master
    from .worker import worker_main
    flags = list(getattr(args, "traefik_flags", ()) or ())
    try:
        static = load_static_config(args.config, flags)
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return 1
    demo = not args.paths and static.origin == "default"
    paths = [DEMO_DIR] if demo else list(args.paths)
    try:
        config = load_config(args.config, paths, flags)
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return 1
    configure_log(config.static.log)
    _print_errors(config)
    missing = missing_paths(config)
    if missing:
        # serving nothing from a mistyped path, forever, helps nobody: refuse to start
        print("pyroute: no such file or directory: %s (manifest paths must exist at start)"
              % ", ".join(missing), file=sys.stderr)
        return 1
    workers = args.workers or os.cpu_count() or 1
    demo_pid = 0
    if demo:
        # before the listeners exist: the demo's forked process must not hold copies of them
        from .demo import start_demo_backends
        demo_pid = start_demo_backends()
    # One instance per port: the master probes and binds every worker's socket before any
    # worker exists (pyroute.server.listeners), and says "listening" only once it has them
    from .listeners import ListenError, Listeners
    listeners = Listeners(config.static.entry_points, workers)
    try:
        listeners.open()
    except ListenError as e:
        print("pyroute: %s" % e, file=sys.stderr, flush=True)
        if demo_pid:
            _stop_demo(demo_pid)
        return 1
    for name, ep in config.static.entry_points.items():
        print(listening_line(config, name, ep.address), flush=True)
    print("pyroute: serving %s with %d worker(s)" % (describe(config), workers), flush=True)
    if demo:
        ep = next(iter(config.static.entry_points.values()))
        base = "http://%s" % ep.address
        print("pyroute: demo backends on 127.0.0.1:18081-18083; try:\n"
              "  curl -H 'Host: demo.localhost' %s/\n"
              "  curl -H 'Host: demo.localhost' %s/api/users\n"
              "  curl -H 'Host: demo.localhost' %s/split\n"
              "  curl -i -H 'Host: secure.localhost' %s/" % (base, base, base, base), flush=True)
    # files read, plus every folder searched (a new manifest there counts too), plus the
    # static configuration itself
    watch = list(config.sources) + list(getattr(config, "paths", ()) or ()) + \
        [p for p in paths if os.path.isdir(p)] + ([static.source] if static.source else [])
    grace = max([ep.grace_timeout for ep in config.static.entry_points.values()] or [10.0])
    master = Master(config, lambda: reload_config(args.config, paths, flags), worker_main,
                    workers, grace, watch_paths=watch, describe=describe, listeners=listeners)
    from .. import api as api_mod
    if api_mod.needed(config.static):
        # the socket api@internal, ping@internal and prometheus@internal route to (workers
        # compile it)
        api_mod.prepare()
    try:
        api, endpoints, api_servers = api_mod.start(config, master.metrics)
    except OSError as e:
        print("pyroute: cannot listen on the API's internal sockets: %s"
              % (e.strerror or e), file=sys.stderr)
        listeners.close()
        if demo_pid:
            _stop_demo(demo_pid)
        return 1
    if api is not None:
        master.attach_api(api)
    if endpoints is not None:
        master.endpoints = endpoints
    if config.static.api is not None and config.static.api.insecure:
        print("pyroute: API on entry point %s: http://%s%s/api/%s" % (
            config.static.api.entry_point.name, config.static.api.entry_point.address,
            api.base, (", dashboard on http://%s%s/dashboard/" % (
                config.static.api.entry_point.address, api.base))
            if config.static.api.dashboard else ""), flush=True)
    pusher = None
    otlp = getattr(getattr(config.static, "metrics", None), "otlp", None)
    if otlp is not None and master.metrics is not None:
        pusher = _otlp_pusher(master.metrics, otlp)
    try:
        return master.run()
    finally:
        listeners.close()
        if pusher is not None:
            pusher.stop()       # the last counts go out (Traefik's MeterProvider.Shutdown)
        for server in api_servers:
            server.stop()
        api_mod.cleanup()
        if demo_pid:
            _stop_demo(demo_pid)


def _otlp_pusher(store, otlp):
    """metrics.otlp's exporting thread, or None when the OpenTelemetry SDK is not installed
    (reported; pyroute serves anyway)."""
    try:
        from ..observability.otlp import Pusher
        import opentelemetry.sdk.metrics.export  # noqa: F401
    except ImportError as e:
        log("error", "metrics.otlp needs the OpenTelemetry SDK (pip install pyroute[otlp]): "
            "no OTLP metrics are exported", error=str(e))
        return None
    log("info", "metrics.otlp: pushing to the collector", endpoint=otlp.endpoint,
        protocol=otlp.protocol, pushInterval="%gs" % otlp.push_interval)
    return Pusher(store, otlp, log).start()


def _stop_demo(pid):
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except OSError:
        pass
