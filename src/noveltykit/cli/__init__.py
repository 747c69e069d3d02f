"""Command line: argument parsing, exit statuses and messages. Each command is a module here
(`cmd_*.py`: its subparser next to a `run(args)` that calls one library function and prints);
the work, and every decision about results, is in the library, where Python users call it too."""
from __future__ import annotations

import argparse
import sys
import warnings

from ..allocator import keep_freed_memory
from . import (cmd_bench, cmd_data, cmd_detectors, cmd_distill, cmd_export, cmd_fit, cmd_linear_gan, cmd_probe,
               cmd_profile, cmd_report, cmd_score, cmd_serve, cmd_sweep)
from .help_text import HelpFormatter

# Exit statuses (documented in the README and `noveltykit --help`): a script can tell them apart.
EXIT_OK, EXIT_CELLS_FAILED, EXIT_USAGE, EXIT_DATA, EXIT_DIVERGED, EXIT_MODEL, EXIT_PACKAGE = range(7)
EXIT_HELP = """exit status:
  0  done
  1  bench/distill: cells failed in different ways (each error is listed; the other cells are
     saved); when every failed cell failed the same known way, that way's status below
  2  bad arguments or input (a parameter, a path, an image); score: also a path that does
     not exist, after the rows of the other files are written
  3  a dataset could not be found or fetched
  4  training diverged (NaN or inf loss; the message names the last good checkpoint)
  5  a saved model or exported file that cannot be loaded
  6  an optional package or the pretrained weights are not installed
--debug shows the traceback of any of these."""

# The subcommands, in the order `noveltykit --help` lists them (export also adds set-threshold). Each
# gives its parser a description and an `example:` epilog; build_parser gives every one HelpFormatter.
COMMANDS = (cmd_data, cmd_bench, cmd_sweep, cmd_report, cmd_profile, cmd_distill, cmd_export, cmd_probe,
            cmd_linear_gan, cmd_fit, cmd_score, cmd_serve, cmd_detectors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noveltykit", description="One-class novelty detection on images",
                                     epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a known failure too")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    for command_parser in sub.choices.values():  # every command's --help: its defaults, its examples' lines
        command_parser.formatter_class = HelpFormatter
    return parser


def _exit_status(exc: BaseException) -> int | None:
    """The documented status of a known failure; None for a bug (shown with its traceback)."""
    from ..data import DataUnavailableError
    from ..detectors import ModelFileError
    from ..experiments.bench import BenchFailed
    from ..features.weights import PretrainedWeightsMismatch
    from ..train.stabilisers import TrainingDiverged

    if isinstance(exc, BenchFailed):  # every cell failed the same known way: that way's status
        kinds = {_exit_status(cause) for cause in exc.causes}
        return kinds.pop() if len(kinds) == 1 and None not in kinds else EXIT_CELLS_FAILED
    for kind, status in ((DataUnavailableError, EXIT_DATA),
                         (TrainingDiverged, EXIT_DIVERGED),
                         ((ModelFileError, PretrainedWeightsMismatch), EXIT_MODEL),
                         (ImportError, EXIT_PACKAGE), ((ValueError, FileNotFoundError), EXIT_USAGE)):
        if isinstance(exc, kind):
            return status
    return None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    kind = "" if category is UserWarning else f" ({category.__name__})"
    print(f"noveltykit: warning{kind}: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    args.argv, args.debug = argv, debug  # argv is recorded with results, so each says how it was made
    keep_freed_memory()  # every command: no page-fault storm in the forward passes
    if not debug:  # a warning reads as a message, not as the library line that raised it
        warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except Exception as exc:
        status = _exit_status(exc)
        if status is None or args.debug:
            raise
        # A known failure gets its message, not a traceback.
        print(f"noveltykit: error: {exc}", file=sys.stderr)
        return status
