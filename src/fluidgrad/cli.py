"""The ``fluidgrad`` command line (``fluidgrad --help``).

Exit codes: 0 success, 2 bad input (one-line message), 1 failure while running,
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from . import __version__


def bundled_scenarios() -> dict:
    """Name -> path of the scenarios shipped inside the package."""
    try:
        folder = resources.files("fluidgrad") / "scenarios"
        return {p.name[:-5]: p for p in folder.iterdir() if p.name.endswith(".yaml")}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _list(args) -> int:
    scenarios = bundled_scenarios()
    if not scenarios:
        print("no scenarios yet")
    for name in sorted(scenarios):
        print(name)
    return 0


def _needs_scenario(args) -> int:
    if args.scenario not in bundled_scenarios():
        print(f"fluidgrad {args.command}: unknown scenario {args.scenario!r} "
              f"(no scenarios yet; see 'fluidgrad list')", file=sys.stderr)
        return 2
    print(f"fluidgrad {args.command}: scenario support is not built yet", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fluidgrad",
                                     description="A differentiable Navier-Stokes fluid simulator.")
    parser.add_argument("--version", action="version", version=f"fluidgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="the bundled scenarios").set_defaults(handler=_list)
    for name, text in [("run", "simulate a scenario"), ("optimize", "optimize a scenario"),
                       ("gradcheck", "check a scenario's gradients"),
                       ("check", "validate a scenario")]:
        p = sub.add_parser(name, help=text)
        p.add_argument("scenario", help="a YAML file or the name of a bundled scenario")
        p.set_defaults(handler=_needs_scenario)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
