"""`facemend` command line: one subcommand per pipeline stage.

Each subcommand lives in `facemend/commands/<name>.py` and exposes `HELP`, `add_arguments(parser)`
and `run(args) -> int`. The tuple below is the explicit list of every command (no registry).
Command modules import torch, dlib etc. inside `run`, so `facemend --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from facemend import __version__
from facemend.commands import (
    align,
    bench,
    degrade,
    embed,
    evaluate,
    export,
    info,
    pack,
    restore,
    serve,
    study,
    train,
)

COMMANDS: tuple[tuple[str, ModuleType], ...] = (
    ("restore", restore),
    ("align", align),
    ("train", train),
    ("pack", pack),
    ("degrade", degrade),
    ("evaluate", evaluate),
    ("embed", embed),
    ("info", info),
    ("bench", bench),
    ("export", export),
    ("serve", serve),
    ("study", study),
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="facemend", description="Face restoration (Rethinking Deep Face Restoration)."
    )
    parser.add_argument("--version", action="version", version=f"facemend {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS:
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run one subcommand; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
