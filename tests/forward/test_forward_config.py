"""The forwarding file: a good one loads; each mistake is reported with the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.errors import ConfigError
from host_tools.forward.config import load_forward_config
from polewatch.cli import main

GOOD = """
queue = "fwd.sqlite"

[[dc09]]
name = "arc"
host = "arc.example.net"
port = 12000
account = "12ab"
receiver = "1"
line = "2"
key = "00112233445566778899AABBCCDDEEFF"
accounts = { "pole-7" = "5678" }
ack_timeout_s = 5

[[webhook]]
name = "police"
url = "https://hooks.example.net/polewatch"
secret = "at least sixteen characters"

[retention]
days = 30
sites.station = { days = 7, units = ["pole-1", "pole-2"] }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "forward.toml"
    path.write_text(text)
    return path


def test_good_file_loads(tmp_path: Path) -> None:
    cfg = load_forward_config(write(tmp_path, GOOD))
    arc = cfg.dc09[0]
    assert arc.account == "12AB" and arc.account_of("pole-7") == "5678"
    assert arc.key_bytes == bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert arc.ack_timeout_s == 5.0
    assert cfg.webhook[0].name == "police"
    assert cfg.queue == str(tmp_path / "fwd.sqlite")  # relative to the file
    assert cfg.retention.days_of("pole-2") == 7 and cfg.retention.days_of("pole-9") == 30
    assert [t.name for t in cfg.targets] == ["arc", "police"]


def test_empty_file_forwards_nothing_and_keeps_90_days(tmp_path: Path) -> None:
    cfg = load_forward_config(write(tmp_path, ""))
    assert cfg.targets == [] and cfg.retention.days == 90


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('key = "0011', 'key = "0011FF'), "dc09[0].key: an AES key of 16, 24 or 32 bytes"),
        (('account = "12ab"', 'account = "12"'), "dc09[0].account: an account must be 3-16 hex"),
        (('account = "12ab"', 'account = "12xz"'), "dc09[0].account: an account must be 3-16"),
        (('"pole-7" = "5678"', '"pole-7" = "56"'), "dc09[0].accounts: account of pole-7 must"),
        (('receiver = "1"', 'receiver = "1234567"'), "dc09[0].receiver: a receiver number"),
        (("port = 12000", "port = 70000"), "dc09[0].port: Input should be less than or equal"),
        (("port = 12000", 'port = "12000"'), "dc09[0].port: Input should be a valid integer"),
        (('host = "arc.example.net"', 'hots = "arc.example.net"'), "dc09[0].hots: unknown key"),
        (('host = "arc.example.net"\n', ""), "dc09[0].host: required key is missing"),
        (('url = "https://', 'url = "ftp://'), "webhook[0].url: must be an http or https URL"),
        (('secret = "at least', 'secret = "short"\n#'), "webhook[0].secret: String should have"),
        (('name = "police"', 'name = "arc"'), "webhook[0].name: 'arc' is also dc09[0]'s name"),
        (('name = "arc"', 'name = "a r c"'), "dc09[0].name: must be 1-40 letters"),
        (("ack_timeout_s = 5", "ack_timeout_s = 0"), "dc09[0].ack_timeout_s: Input should be"),
        (("days = 30", "days = -1"), "retention.days: Input should be greater than 0"),
        (
            ('"pole-2"] }', '"pole-2"] }\nsites.other = { days = 9, units = ["pole-1"] }'),
            "retention.sites.other.units[0]: 'pole-1' is already in site 'station'",
        ),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_forward_config(path)
    assert f"{path}: {expected}" in str(info.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_forward_config(write(tmp_path, "[[dc09]\n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_forward_config(tmp_path / "nope.toml")


def test_receiver_command_refuses_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.replace("port = 12000", "port = 0"))
    status = main(["receiver", "--db", str(tmp_path / "r.sqlite"), "--forward", str(path)])
    assert status == 2
    assert "dc09[0].port: Input should be greater than or equal to 1" in capsys.readouterr().err
