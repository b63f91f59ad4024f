"""The `nst` command: one subcommand group per module, each exposing `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from . import finetune, hub, prune, scan, stylize

# Each module adds its subcommands; order here is the order in `nst --help`.
COMMAND_MODULES = (stylize, prune, scan, finetune, hub)


def build_parser() -> argparse.ArgumentParser:
    """The `nst` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="nst",
        description="Neural style transfer with a pruned VGG-19: stylize, prune, scan, fine-tune, and share checkpoints.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `nst` with ``argv`` (default: the command line); a user error is one line on stderr and exit code 2.

    >>> main(["scan", "merge", "runs/scan"])   # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"nst: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nst: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
