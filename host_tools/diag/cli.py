"""``polewatch diag``: the unit's diagnostics console from a technician's laptop.

Without a command it is an interactive shell (history, Tab completion); with one it runs it once
and exits: 0 done, 1 refused or failed (a failed self-test, an invalid config), 2 no answer.
``--json`` prints the unit's reply as one JSON object, for scripts. The commands' arguments come
from the command table the unit itself checks requests against (firmware/diag/protocol.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from firmware.diag import protocol
from host_tools.diag.client import DEFAULT_BAUDRATE, DiagClient
from host_tools.diag.render import render, render_step, verdict
from polewatch.helptext import ExampleFormatter

logger = logging.getLogger(__name__)

PORT_EXAMPLE = "/dev/ttyUSB0"
DIAG_EXAMPLE = f"""examples:
  polewatch diag --port {PORT_EXAMPLE}                     # interactive: history, Tab completion
  polewatch diag --port {PORT_EXAMPLE} status
  polewatch diag --port {PORT_EXAMPLE} actuate floodlight 5
  polewatch diag --port {PORT_EXAMPLE} selftest confirm    # also cycles every output
  polewatch diag --port {PORT_EXAMPLE} --json sensors | jq .cameras.thermal.fps

exit status: 0 done; 1 refused, failed, a failed self-test or an invalid config; 2 no answer.
'polewatch diag COMMAND --help' describes each command; see docs/diag.md for the protocol.
"""
BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


def _dest(param: protocol.Param) -> str:
    return f"arg_{param.name}"  # not to clash with the parsers' own names (``command``)


def _add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    word: str,
    spec: protocol.CommandSpec,
) -> None:
    p = sub.add_parser(
        word,
        help=spec.summary,
        description=f"{spec.summary}.",
        epilog=f"example:\n  polewatch diag --port {PORT_EXAMPLE} {spec.example}\n",
        formatter_class=ExampleFormatter,
    )
    for param in spec.params:
        kwargs: dict[str, Any] = {"help": param.help, "metavar": param.name.upper()}
        if param.kind == "choice":
            kwargs |= {"choices": param.choices, "metavar": "|".join(param.choices)}
        if param.kind == "rest":
            kwargs["nargs"] = "*"
        elif param.optional:
            kwargs["nargs"] = "?"
        p.add_argument(_dest(param), **kwargs)
    p.set_defaults(diag_command=spec.name)


def add_diag_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``diag`` subcommand, with a sub-subcommand per console command."""
    p = sub.add_parser(
        "diag",
        help="talk to a unit's serial diagnostics console (interactive, or one command)",
        description="Talk to a pole unit's diagnostics console over a serial cable: status, "
        "sensors, self-test, output test, uplink and modem state, config, logs, restart. "
        "Without COMMAND it is an interactive shell with history and Tab completion.",
        epilog=DIAG_EXAMPLE,
        formatter_class=ExampleFormatter,
    )
    p.add_argument("--port", required=True, help=f"the serial device, e.g. {PORT_EXAMPLE}")
    p.add_argument(
        "--baudrate",
        type=int,
        choices=BAUDRATES,
        default=DEFAULT_BAUDRATE,
        metavar="N",
        help=f"the console's baud rate, as the board's [diag] table says (default "
        f"{DEFAULT_BAUDRATE})",
    )
    p.add_argument("--json", action="store_true", help="print the unit's reply as one JSON object")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds to wait for each line of a reply (default: 5; selftest 30)",
    )
    p.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what to log on stderr (default WARNING; DEBUG shows the lines on the wire)",
    )
    p.add_argument("--log-file", type=Path, help="also write every INFO line to this file")
    p.set_defaults(diag_command=None)
    commands = p.add_subparsers(metavar="COMMAND", title="commands")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for spec in protocol.COMMANDS:
        if " " not in spec.name:
            _add_command(commands, spec.name, spec)
            continue
        group, word = spec.name.split(" ", 1)
        if group not in groups:
            subs = protocol.GROUPS[group]
            examples = [protocol.BY_NAME[f"{group} {s}"].example for s in subs]
            gp = commands.add_parser(
                group,
                help=f"{group} {'|'.join(subs)}",
                description=f"{group} commands: {', '.join(subs)}.",
                epilog="example:\n"
                + "".join(f"  polewatch diag --port {PORT_EXAMPLE} {ex}\n" for ex in examples),
                formatter_class=ExampleFormatter,
            )
            groups[group] = gp.add_subparsers(metavar="ACTION", title="actions", required=True)
        _add_command(groups[group], word, spec)


def _words(args: argparse.Namespace, spec: protocol.CommandSpec) -> list[str]:
    words: list[str] = []
    for param in spec.params:
        value = getattr(args, _dest(param), None)
        if isinstance(value, list):
            words += [str(v) for v in value]
        elif value is not None:
            words.append(str(value))
    return words


def cmd_diag(args: argparse.Namespace) -> int:
    """``diag``: one command, or the interactive shell."""
    from host_tools.diag.shell import Shell

    if args.diag_command is None and args.json:
        print("polewatch diag: --json needs a COMMAND (it is for scripts)", file=sys.stderr)
        return 2
    with DiagClient(args.port, args.baudrate, args.timeout) as client:
        if args.diag_command is None:
            shell = Shell(client)
            shell.setup_readline()
            return shell.run()
        spec = protocol.BY_NAME[args.diag_command]
        words = _words(args, spec)
        interactive = sys.stdin.isatty() and not args.json
        if spec.name == "selftest" and not words and interactive:
            answer = input("Also switch each output on for a moment (sirens too)? [y/N] ")
            if answer.strip().lower() in ("y", "yes"):
                words.append("confirm")

        def step(data: dict[str, Any]) -> None:
            if data.get("state") != "running":
                print(render_step(data), file=sys.stderr, flush=True)

        reply = client.request(spec.name, words, on_step=step)
    if args.json:
        shown = (
            reply.data if reply.kind == "OK" else {"error": reply.code, "message": reply.message}
        )
        print(json.dumps(shown, ensure_ascii=False))
    else:
        text = render(spec.name, reply, progress_shown=sys.stderr.isatty())
        print(text, file=sys.stdout if reply.kind == "OK" else sys.stderr)
    return verdict(spec.name, reply)
