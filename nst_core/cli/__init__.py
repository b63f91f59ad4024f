"""The `nst` command: one subcommand group per module, each exposing `register(subparsers)`.

Errors never end in a traceback: a ``UserError`` or ``OSError`` is one line ``nst: error: ...``
and exit code 2; anything else is one line naming the exception, a hint to rerun with
``--debug`` (which prints the traceback), and exit code 1.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import traceback
import warnings

from nst_core.core.errors import UserError, first_line
from nst_core.model.weights import RandomWeightsWarning

from . import finetune, hub, prune, release, scan, stylize

# Each module adds its subcommands; order here is the order in `nst --help`.
COMMAND_MODULES = (stylize, prune, scan, finetune, release, hub)
DEBUG_HELP = "show the full traceback of an unexpected error"
# 128 + SIGPIPE: what a shell reports for a program whose reader (`| head`) went away.
EXIT_BROKEN_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    """The `nst` parser with every subcommand registered (each also accepts ``--debug``)."""
    parser = argparse.ArgumentParser(
        prog="nst",
        description=(
            "Neural style transfer with a pruned VGG-19: stylize, prune, scan, fine-tune, and share checkpoints."
        ),
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    for sub in _leaf_parsers(parser):
        # SUPPRESS: a subcommand without the flag must not reset the top level's `nst --debug ...`.
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser`` that runs a command (has no subcommands of its own)."""
    action = _subcommands(parser)
    if action is None:
        return [parser]
    leaves = []
    for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
        leaves.extend(_leaf_parsers(sub))
    return leaves


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest subcommand parser ``args`` selected (the one whose usage fits an error)."""
    action = _subcommands(parser)
    chosen = getattr(args, action.dest, None) if action is not None else None
    if action is None or action.choices is None or chosen is None or chosen not in action.choices:
        return parser
    return _chosen_parser(action.choices[chosen], args)


def _unknown_arguments(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """argparse's "unrecognized arguments" message, with the closest option of ``parser`` suggested."""
    options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    message = f"unrecognized arguments: {' '.join(extras)}"
    for extra in extras:
        if extra.startswith("-"):
            close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=1, cutoff=0.6)
            if close:
                return f"{message} (did you mean {close[0]}?)"
    return message


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that an unknown option is reported by the subcommand it was given to."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        chosen = _chosen_parser(parser, args)
        chosen.error(_unknown_arguments(chosen, extras))
    return args


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Run `nst` with ``argv`` (default: the command line); returns the exit code (see the module docstring).

    >>> main(["scan", "merge", "runs/scan"])   # doctest: +SKIP
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # known before parsing, so an error while parsing honours it too
    try:
        with warnings.catch_warnings():
            # Every command prints its own one-line random-weights warning (cli.common.RANDOM_WARNING).
            warnings.simplefilter("ignore", RandomWeightsWarning)
            code = _run(argv)
        sys.stdout.flush()  # inside the try: a reader that went away is reported here, not at exit
        return code
    except KeyboardInterrupt:
        print("nst: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (UserError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print(f"nst: error: {first_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if debug:
            traceback.print_exc()
            return 1
        print(
            f"nst: error: {type(exc).__name__}: {first_line(exc)} (run with --debug for the traceback)", file=sys.stderr
        )
        return 1


def _run(argv: list[str]) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
