"""The board config's ``[diag]`` table: checked as strictly as the rest of the board."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.config.load import load_board
from firmware.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SIM = (REPO / "board_configs" / "sim.toml").read_text()


def board(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "board.toml"
    path.write_text(SIM + extra)
    return path


def test_diag_table_is_optional_and_has_defaults(tmp_path: Path) -> None:
    assert load_board(REPO / "board_configs" / "sim.toml").diag is None
    diag = load_board(board(tmp_path, '\n[diag]\nport = "/dev/ttyGS0"\n')).diag
    assert diag is not None and (diag.port, diag.baudrate) == ("/dev/ttyGS0", 115200)
    shipped = load_board(REPO / "board_configs" / "rpi4-lepton35.toml").diag
    assert shipped is not None and shipped.port == "/dev/serial0"


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('\n[diag]\nport = "/dev/ttyGS0"\nbaud = 9600\n', "diag.baud: unknown key"),
        ('\n[diag]\nport = "/dev/ttyGS0"\nbaudrate = 1234\n', "diag.baudrate: Input should be"),
        ("\n[diag]\nbaudrate = 9600\n", "diag.port: required key is missing"),
        ('\n[diag]\nport = ""\n', "diag.port: String should have at least 1 character"),
        ("\n[diag]\nport = 3\n", "diag.port: Input should be a valid string"),
    ],
)
def test_bad_diag_tables_name_the_key(tmp_path: Path, extra: str, problem: str) -> None:
    path = board(tmp_path, extra)
    with pytest.raises(ConfigError) as caught:
        load_board(path)
    assert f"{path}: {problem}" in str(caught.value)


def test_diag_port_is_not_shared_with_another_serial_device(tmp_path: Path) -> None:
    text = SIM.replace('[modem]\nbackend = "sim"', '[modem]\nbackend = "at"\nport = "/dev/ttyUSB2"')
    path = tmp_path / "board.toml"
    path.write_text(text + '\n[diag]\nport = "/dev/ttyUSB2"\n')
    with pytest.raises(ConfigError) as caught:
        load_board(path)
    assert "diag.port: serial port '/dev/ttyUSB2' is already used by modem.port" in str(
        caught.value
    )
