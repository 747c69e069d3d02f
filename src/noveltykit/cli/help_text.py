"""What every command's `--help` shares: the formatter (defaults shown, examples' line breaks kept)
and the `--dataset` help. Nothing here imports the library, so `--help` stays instant."""
from __future__ import annotations

import argparse
import copy
import textwrap

# The names `data.load_dataset` knows (its DATASET_NAMES; a test keeps the two the same). Not
# imported from there: that would load torch for every `--help`.
DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10", "cifar10-jpeg")
DATASET_HELP = (f"{' | '.join(DATASET_NAMES)} | folder:PATH (your own images: PATH/train/ normal, "
                "PATH/test/normal/ and PATH/test/novel/; or MVTec AD's train/good/, test/good/, test/<defect>/, "
                "ground_truth/)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, also for an option without help text. No default is
    shown where there is nothing to show (None, a flag's False, an empty list) or where the help
    already says it ("(default ..."). In a description or an epilog each line is a paragraph,
    wrapped to the terminal, and an indented line (an example command) is kept as it is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(indent + line if not line or line[0].isspace()
                         else textwrap.fill(" ".join(line.split()), width, initial_indent=indent,
                                            subsequent_indent=indent, break_on_hyphens=False)
                         for line in text.splitlines())

    def _split_lines(self, text: str, width: int) -> list[str]:  # never "deep-" / "svdd"
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    @staticmethod
    def _default_text(action: argparse.Action) -> str | None:
        default = action.default
        if (default is None or default is argparse.SUPPRESS or isinstance(default, bool)
                or (isinstance(default, (list, tuple, str)) and not default)):
            return None
        if not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)):
            return None
        if isinstance(default, (list, tuple)):  # e.g. --seeds' [0] is typed as 0
            return ",".join(map(str, default)).replace("%", "%%")
        return "%(default)s"

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = self._default_text(action)
        if shown is None or "%(default)" in text or "(default" in text:
            return text
        return f"{text} (default: {shown})" if text else f"(default: {shown})"

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and self._default_text(action) is not None:  # argparse skips help-less options
            action = copy.copy(action)
            action.help = self._get_help_string(action)
        return super()._format_action(action)
