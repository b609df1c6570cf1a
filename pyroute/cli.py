"""The ``pyroute`` command: ``run``, ``check``, ``explain``, ``version``.

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
    ("version", "pyroute.cli", "print pyroute's version"),
)

DESCRIPTION = """\
pyroute routes HTTP(S) exactly as Traefik v3 does for Kubernetes IngressRoute manifests.

  pyroute run                      serve a bundled demo (routes + echo backends)
  pyroute run -c static.yaml DIR   serve the manifests in DIR
  pyroute check DIR                validate manifests, one problem per line
  pyroute explain DIR GET URL      show which router a request reaches, and why
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
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module, _name=name)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if any(name == "run" for name, _, _ in COMMANDS):
            # `pyroute` alone runs the embedded demo, like `pyroute run`.
            args = parser.parse_args(["run"] + list(argv or []))
        else:
            parser.print_help()
            return 0
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
