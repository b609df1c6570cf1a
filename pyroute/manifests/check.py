"""``pyroute check [--config STATIC] [--dump] PATH...``: validate manifests, one problem a line.

Each problem is printed as ``file:line: Kind namespace/name: field.path: message`` (warnings
carry ``warning:`` before the message). Exit status 1 when there is at least one error.
``--dump`` prints the resolved configuration as JSON in the shape of Traefik's dynamic
configuration (problems then go to stderr).
"""
import json
import os
import sys


def add_arguments(parser):
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="manifest files or folders (recursively *.yaml, *.yml, *.json)")
    parser.add_argument("-c", "--config", metavar="STATIC",
                        help="Traefik's static configuration file (YAML or TOML); Traefik's "
                        "flags and TRAEFIK_* variables work too (see below)")
    parser.add_argument("--dump", action="store_true",
                        help="print the resolved dynamic configuration as JSON")
    parser.add_argument("--no-warnings", action="store_true", help="print errors only")


def render(error):
    """One line for a ConfigError, as ``pyroute check`` prints it."""
    if error.severity == "warning":
        saved = error.message
        error.message = "warning: " + saved
        try:
            return error.render()
        finally:
            error.message = saved
    return error.render()


def main(args):
    from ..errors import ConfigError
    from ..static import load_static
    from . import load
    from .analysis import analyse

    try:
        static = load_static(args.config, args=getattr(args, "traefik_flags", ()),
                             environ=os.environ, search=True)
        rc = load(args.paths, static)
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return 1
    problems = list(rc.errors) + analyse(rc)
    out = sys.stderr if args.dump else sys.stdout
    for e in problems:
        if e.severity == "warning" and args.no_warnings:
            continue
        print(render(e), file=out)
    if args.dump:
        json.dump(rc.dynamic, sys.stdout, indent=2)
        sys.stdout.write("\n")
    n_err = sum(1 for e in problems if e.severity == "error")
    n_warn = len(problems) - n_err
    routers = rc.dynamic["http"]["routers"]
    disabled = sum(1 for r in routers.values() if r.get("status") != "enabled")
    print("%d error(s), %d warning(s) in %d file(s); %d router(s), %d disabled"
          % (n_err, n_warn, len(rc.sources), len(routers), disabled), file=sys.stderr)
    return 1 if n_err else 0
