"""``polewatch diag`` on the laptop: one-shot commands (text and ``--json``) through the CLI's main
function, the interactive shell, completion, every command's ``--help``, and what a technician
sees when nothing answers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.diag import protocol
from host_tools.diag.client import DiagClient
from host_tools.diag.shell import Shell, completions
from polewatch.cli import build_parser, main


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() sets up logging for the process; give the tests' own set-up back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def run_main(*argv: str) -> int:
    """The CLI in a worker thread, so that the unit's loop answers meanwhile."""
    return await asyncio.to_thread(main, list(argv))


async def test_one_shot_json_for_scripts(
    diag_unit: Any, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    port = diag_unit.port
    assert await run_main("diag", "--port", port, "--json", "status") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["unit"] == "pole-0001" and status["running"] is True

    assert await run_main("diag", "--port", port, "--json", "actuate", "floodlight", "500") == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["error"] == "refused" and "max_on_s of 120 s" in refused["message"]

    # (main() sets up this process's logging afresh, so the unit's ring has only just begun.)
    assert await run_main("diag", "--port", port, "--json", "log", "tail", "5") == 0
    lines = json.loads(capsys.readouterr().out)["lines"]
    assert 1 <= len(lines) <= 5 and all(isinstance(line, str) for line in lines)

    assert await run_main("diag", "--port", port, "--json", "config", "validate") == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


async def test_one_shot_text_with_progress(
    diag_unit: Any, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    port = diag_unit.port
    assert await run_main("diag", "--port", port, "status") == 0
    out = capsys.readouterr().out
    assert "unit" in out and "pole-0001" in out and "floodlight (light) off" in out

    # Without a terminal to ask on, the self-test leaves the outputs alone; it passes.
    assert await run_main("diag", "--port", port, "selftest") == 0
    captured = capsys.readouterr()
    assert "[1/8] camera thermal: pass" in captured.err  # progress, as each check ends
    assert "[3/8] output floodlight: skip" in captured.err
    assert "self-test PASSED: 5 pass, 0 fail, 3 skipped" in captured.out

    assert await run_main("diag", "--port", port, "actuate", "siren", "5") == 1
    assert "error (refused): siren: quiet hours" in capsys.readouterr().err

    assert await run_main("diag", "--port", port, "help", "config", "show") == 0
    out = capsys.readouterr().out
    assert "config show [board|site]" in out and "example: config show site" in out


def test_no_answer_is_a_clear_error(
    pty_pair: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:  # fmt: skip
    _, laptop_end = pty_pair  # nobody listens at the unit's end
    assert main(["diag", "--port", laptop_end, "--timeout", "0.3", "status"]) == 2
    err = capsys.readouterr().err
    assert "no reply from" in err and "within 0.3 s" in err and "115200 baud" in err
    assert main(["diag", "--port", str(tmp_path / "ttyNONE"), "status"]) == 2
    assert "cannot open" in capsys.readouterr().err
    assert main(["diag", "--port", laptop_end, "--json"]) == 2  # --json needs a command


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    for argv, example in [
        (["diag"], "polewatch diag --port /dev/ttyUSB0 status"),
        *[(["diag", "--port", "P", *c.name.split(" ")], c.example) for c in protocol.COMMANDS],
        (["diag", "--port", "P", "config"], "config validate"),
    ]:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([*argv, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "example" in text and example in text, (argv, text)


def test_client_checks_a_request_before_sending_it(pty_pair: tuple[str, str]) -> None:
    with DiagClient(pty_pair[1], timeout_s=0.2) as client:
        with pytest.raises(protocol.DiagError, match="seconds is missing"):
            client.request("actuate", ["floodlight"])
        with pytest.raises(protocol.DiagError, match="no command 'dance'"):
            client.request("dance")


def test_completion() -> None:
    outputs = ["floodlight", "siren", "strobe"]
    assert completions("", outputs) == [f"{c} " for c in [
        "actuate", "config", "help", "log", "modem", "reboot", "selftest", "sensors", "status",
        "uplink", "quit", "exit",
    ]]  # fmt: skip
    assert completions("se", outputs) == ["selftest ", "sensors "]
    assert completions("config ", outputs) == ["show ", "validate "]
    assert completions("config show ", outputs) == ["board ", "site "]
    assert completions("actuate s", outputs) == ["siren ", "strobe "]
    assert completions("actuate siren ", outputs) == []  # seconds: nothing to offer
    assert completions("selftest ", outputs) == ["confirm "]
    assert completions("log ", outputs) == ["tail "]
    assert completions("help con", outputs) == ["config "]
    assert completions("help config v", outputs) == ["validate "]
    assert completions("help actuate ", outputs) == []
    assert completions("dance ", outputs) == []


async def test_interactive_shell(diag_unit: Any) -> None:
    typed = iter(
        [
            "help",
            "",
            "stauts",
            "actuate floodlight 2",
            "actuate floodlight 500",
            "selftest",  # asked whether to cycle the outputs: no
            "reboot",  # asked whether to restart: no
            "config show board",
            "quit",
            "status",  # never reached
        ]
    )
    asked: list[str] = []

    def read_line(prompt: str) -> str:
        return next(typed)

    def ask(question: str) -> bool:
        asked.append(question)
        return False

    out = io.StringIO()
    with DiagClient(diag_unit.port) as client:
        shell = Shell(client, out=out, read_line=read_line, ask=ask)
        assert await asyncio.to_thread(shell.run) == 0
    text = out.getvalue()
    assert "connected to unit pole-0001 (board sim)" in text
    assert shell.outputs == ["floodlight", "siren", "strobe"]  # for completion
    assert "actuate OUTPUT SECONDS" in text and "log tail [LINES]" in text
    assert "error (unknown-command): no command 'stauts'" in text
    assert "floodlight on for 2 s; its limits: max_on_s 120 s, cool-down 60 s" in text
    assert "error (refused): floodlight:" in text
    assert "[1/8] camera thermal: pass" in text and "self-test PASSED" in text
    assert '"diag": {' in text  # config show: the JSON itself
    assert len(asked) == 2 and not diag_unit.sim.runtime.restart_requested
    assert next(typed) == "status"
