"""``pyroute check [--config STATIC] [--dump] PATH...``: validate manifests, one problem a line.

Each problem is printed as ``file:line: Kind namespace/name: field.path: message`` (warnings
carry ``warning:`` before the message). Exit status 1 when there is at least one error.
``--dump`` prints the resolved configuration as JSON in the shape of Traefik's dynamic
configuration (problems then go to stderr). ``--compat`` adds one ``compat:`` line per Traefik
field the files use, with pyroute's status (pyroute.compat); ignored ones are warnings too.

The verdict is ``pyroute run``'s: the configuration is compiled as the server compiles it
(pyroute.verdict), so every router ``run`` would disable is reported, with the same message.
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
    parser.add_argument("--compat", action="store_true",
                        help="also print pyroute's status (supported / ignored / refused) of "
                             "every Traefik field these files use")


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
    from ..verdict import verdict
    from . import load
    from .analysis import analyse

    try:
        static = load_static(args.config, args=getattr(args, "traefik_flags", ()),
                             environ=os.environ, search=True)
        rc = load(args.paths, static)
        # the compilation `pyroute run` does: what it disables is disabled here too
        rc, _ = verdict(rc)
    except ConfigError as e:
        print(e.render(), file=sys.stderr)
        return 1
    problems = list(rc.errors) + analyse(rc)
    out = sys.stderr if args.dump else sys.stdout
    for e in problems:
        if e.severity == "warning" and args.no_warnings:
            continue
        print(render(e), file=out)
    if getattr(args, "compat", False):
        from .. import compat
        for line in compat.render_used(compat.used_fields(args.paths, static)):
            print("compat: " + line, file=out)
    if args.dump:
        json.dump(rc.dynamic, sys.stdout, indent=2)
        sys.stdout.write("\n")
    from ..normalize import encoded_characters_notice
    notice = encoded_characters_notice(rc.static)
    if notice and not args.no_warnings:
        print(notice, file=sys.stderr)
    n_err = sum(1 for e in problems if e.severity == "error")
    n_warn = len(problems) - n_err
    routers = rc.dynamic["http"]["routers"]
    disabled = sum(1 for r in routers.values() if r.get("status") != "enabled")
    print("%d error(s), %d warning(s) in %d file(s); %d router(s), %d disabled"
          % (n_err, n_warn, len(rc.sources), len(routers), disabled), file=sys.stderr)
    return 1 if n_err else 0
