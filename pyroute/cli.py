"""The ``pyroute`` command: ``run``, ``check``, ``explain``, ``healthcheck``, ``version``.

Each subcommand lives in the module that owns its concern; that module provides
``add_arguments(parser)`` and ``main(args) -> int``. This file only wires them together.
"""
import argparse
import importlib
import os
import sys

from ._version import __version__

# (name, module, one-line help). Modules are imported when the parser is built, so keep
# their top-level imports light.
COMMANDS = (
    ("run", "pyroute.server.run", "serve manifests (no arguments: a bundled demo)"),
    ("check", "pyroute.manifests.check", "validate manifests, one problem per line"),
    ("explain", "pyroute.manifests.explain", "show which router a request reaches, and why"),
    ("healthcheck", "pyroute.observability.healthcheck",
     "HEAD /ping on the ping entry point: exit 0 when it answers 200 (traefik healthcheck)"),
    ("version", "pyroute.cli", "print pyroute's version"),
)

DESCRIPTION = """\
pyroute routes HTTP(S) exactly as Traefik v3 does for Kubernetes IngressRoute manifests.

  pyroute run                      serve a bundled demo (routes + echo backends)
  pyroute run -c static.yaml DIR   serve the manifests in DIR
  pyroute run --entryPoints.web.address=:8000 --providers.kubernetescrd DIR
                                   the same, with Traefik's flags (or TRAEFIK_* variables)
  pyroute check DIR                validate manifests, one problem per line
  pyroute explain DIR GET URL      show which router a request reaches, and why
  pyroute healthcheck -c static.yaml   exit 0 when /ping answers 200 (needs ping)
"""


def add_arguments(parser):
    """``pyroute version`` takes no arguments."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pyroute", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="pyroute " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname, help_text in COMMANDS:
        module = importlib.import_module(modname)
        epilog = None
        if name in TRAEFIK_FLAG_COMMANDS:
            from .static import traefik_flags_help
            epilog = traefik_flags_help()
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module, _name=name)
    return parser


# commands that read Traefik's static configuration from flags, as `traefik` does
TRAEFIK_FLAG_COMMANDS = ("run", "check", "healthcheck")


def split_traefik_flags(argv):
    """(pyroute's own arguments, Traefik flags): ``--entryPoints.web.address=:80``,
    ``--providers.kubernetescrd``, ``--log.level DEBUG`` (value in the next argument unless
    the key is a boolean or a section), ``--configFile=FILE``."""
    from .static import _flat_segments, _key_type, is_traefik_flag
    own, flags = [], []
    argv = list(argv)
    while argv:
        arg = argv.pop(0)
        if arg == "--":
            own.append(arg)
            own.extend(argv)
            break
        if not is_traefik_flag(arg):
            own.append(arg)
            continue
        flags.append(arg)
        name = arg.lstrip("-")
        if "=" not in name:
            _, typ = _key_type(_flat_segments(name))
            if typ not in ("bool", "section") and argv:
                flags.append(argv.pop(0))
    return own, flags


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    names = [name for name, _, _ in COMMANDS]
    if argv and argv[0] not in names and argv[0].startswith("-") and argv[0] not in (
            "-h", "--help", "--version"):
        argv = ["run"] + argv      # `pyroute --entryPoints.web.address=:80 ...`, as `traefik`
    flags = []
    if argv and argv[0] in TRAEFIK_FLAG_COMMANDS:
        own, flags = split_traefik_flags(argv[1:])
        argv = [argv[0]] + own
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if any(name == "run" for name, _, _ in COMMANDS):
            # `pyroute` alone runs the embedded demo, like `pyroute run`.
            args = parser.parse_args(["run"] + list(argv or []))
        else:
            parser.print_help()
            return 0
    args.traefik_flags = flags
    if args._name == "version":
        print("pyroute " + __version__)
        return 0
    try:
        return args._module.main(args)
    except BrokenPipeError:   # `pyroute check ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
