"""Every technician command explains itself with an example (argparse epilog, kept as written)."""

from __future__ import annotations

import pytest

from polewatch.cli import main


@pytest.mark.parametrize("command", ["provision", "bundle", "flash", "slot"])
def test_help_has_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n" in text
    example = text.split("examples:\n", 1)[1]
    # ExampleFormatter keeps each example on its own line, as written
    assert f"  polewatch {command} " in example
    assert any(line.rstrip().endswith("\\") for line in example.splitlines()) or command == "slot"


def test_flash_without_a_target_says_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flash", "x.pwb", "--fleet-key", "k.pub"]) == 2
    assert "--root DIR or --ssh USER@HOST" in capsys.readouterr().err
