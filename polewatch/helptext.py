"""``--help`` layout shared by the subcommands: the description wrapped, the examples as written."""

from __future__ import annotations

import argparse


class ExampleFormatter(argparse.HelpFormatter):
    """Wraps prose to the terminal; keeps an ``example:``/``examples:`` epilog line by line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.lstrip().lower().startswith("example"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)
