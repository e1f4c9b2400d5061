"""The ``checkstream`` command line.

Each concern owns its sub-commands: a module listed in ``COMMAND_MODULES`` exposes
``add_commands(subparsers)``, which registers its parsers with ``set_defaults(func=...)``;
``func(args)`` returns the process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "checkstream.audit.cli",
    "checkstream.classifiers.cli",
    "checkstream.control.cli",
    "checkstream.policy.cli",
    "checkstream.proxy.cli",
    "checkstream.sidecar.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="checkstream", description=__doc__.splitlines()[0])
    from checkstream import __version__

    parser.add_argument("--version", action="version", version=f"checkstream {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    status: int = func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
