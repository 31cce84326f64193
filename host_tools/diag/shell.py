"""The interactive diagnostics shell: readline history and Tab completion over the unit's commands.

Completion knows the commands and their choices (from the shared command table) and the unit's
output names (asked once with ``status``). Commands that switch outputs or restart the unit ask
first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from firmware.diag import protocol
from firmware.diag.protocol import DiagError
from firmware.errors import HardwareError
from host_tools.diag.client import DiagClient
from host_tools.diag.render import render, render_step

logger = logging.getLogger(__name__)

LOCAL = ("quit", "exit")
HISTORY_LINES = 1000
PROMPT = "diag> "


def history_file() -> Path:
    """Where the shell keeps its history (XDG state directory)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "polewatch" / "diag_history"


def command_of(words: list[str]) -> str | None:
    """The command a line's words name (one or two words), if any."""
    lowered = [w.lower() for w in words[:2]]
    for n in (2, 1):
        if " ".join(lowered[:n]) in protocol.BY_NAME:
            return " ".join(lowered[:n])
    return None


def completions(before: str, outputs: list[str]) -> list[str]:
    """Completions of the word being typed, given the line up to the cursor."""
    words = before.split()
    current = words.pop() if before and not before[-1].isspace() else ""
    heads = sorted({c.name.split(" ")[0] for c in protocol.COMMANDS})
    if not words:
        return [f"{h} " for h in [*heads, *LOCAL] if h.startswith(current)]
    head, for_help = words[0].lower(), False
    if head == "help":  # help completes a command's name
        words, for_help = words[1:], True
        if not words:
            return [f"{h} " for h in heads if h.startswith(current)]
        head = words[0].lower()
    if head in protocol.GROUPS and len(words) == 1:
        return [f"{s} " for s in protocol.GROUPS[head] if s.startswith(current)]
    name = command_of(words)
    if name is None or for_help:
        return []
    spec = protocol.BY_NAME[name]
    index = len(words) - len(name.split(" "))
    if index >= len(spec.params):
        return []
    param = spec.params[index]
    if param.kind == "choice":
        options = list(param.choices)
    elif spec.name == "actuate" and param.name == "output":
        options = outputs
    else:
        return []
    return [f"{o} " for o in options if o.startswith(current)]


class Shell:
    """Reads commands, sends them, prints the replies."""

    def __init__(
        self,
        client: DiagClient,
        out: IO[str] | None = None,
        read_line: Callable[[str], str] = input,
        ask: Callable[[str], bool] | None = None,
    ) -> None:
        self.client = client
        self.out = out or sys.stdout
        self.read_line = read_line
        self.ask = ask or self._ask
        self.outputs: list[str] = []

    def _ask(self, question: str) -> bool:
        try:
            return self.read_line(f"{question} [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:
            return False

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _step(self, data: dict[str, Any]) -> None:
        if data.get("state") != "running":
            self._print(render_step(data))

    def setup_readline(self) -> None:
        """History from and to the history file; Tab completes."""
        try:
            import readline
        except ImportError:  # not on every platform: the shell works without it
            return
        path = history_file()
        with contextlib.suppress(OSError):  # no history yet
            readline.read_history_file(path)
        readline.set_history_length(HISTORY_LINES)
        readline.set_completer_delims(" \t")
        readline.parse_and_bind("tab: complete")

        def complete(text: str, state: int) -> str | None:
            before = readline.get_line_buffer()[: readline.get_endidx()]
            found = completions(before, self.outputs)
            return found[state] if state < len(found) else None

        readline.set_completer(complete)

        def save() -> None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                readline.write_history_file(path)
            except OSError as exc:
                logger.warning("history not saved to %s: %s", path, exc)

        import atexit

        atexit.register(save)

    def greet(self) -> None:
        """Say which unit answers, and learn its outputs for completion."""
        reply = self.client.request("status")
        if reply.kind == "OK":
            self.outputs = sorted(reply.data.get("outputs", {}))
            self._print(
                f"connected to unit {reply.data.get('unit')} (board {reply.data.get('board')}) "
                f"on {self.client.port}; 'help' lists the commands, 'quit' leaves"
            )

    def handle(self, line: str) -> bool:
        """Carry out one typed line; False when the shell should end."""
        words = line.split()
        if not words:
            return True
        if words[0].lower() in LOCAL:
            return False
        name = command_of(words)
        confirm = "Also switch each output on for a moment (sirens too, within limits)?"
        if name == "selftest" and len(words) == 1 and self.ask(confirm):
            words.append("confirm")
        if name == "reboot" and not self.ask("Restart the unit's software?"):
            return True
        try:
            reply = self.client.request_line(" ".join(words), on_step=self._step)
        except DiagError as exc:
            self._print(f"error ({exc.code}): {exc.message}")
            return True
        self._print(render(name or "", reply, progress_shown=True))
        return True

    def run(self) -> int:
        """Read and carry out lines until ``quit`` or end of input."""
        try:
            self.greet()
        except HardwareError as exc:
            self._print(f"error: {exc}")
            return 2
        while True:
            try:
                line = self.read_line(PROMPT)
            except EOFError:
                self._print("")
                return 0
            except KeyboardInterrupt:
                self._print("")
                continue
            try:
                if not self.handle(line):
                    return 0
            except HardwareError as exc:  # a timeout: say so and carry on (a cable may be loose)
                self._print(f"error: {exc}")
