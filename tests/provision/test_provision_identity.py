"""``polewatch provision``: identity, OSCORE context and site config, checked before registering."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from firmware.config.load import load_pair
from firmware.errors import ConfigError
from host_tools.provision.identity import DEFAULT_TEMPLATE, SiteValues, render_site
from polewatch.cli import main
from tests.provision.provision_helpers import REPO, SIM_BOARD


def test_template_quotes_values_and_leaves_out_what_is_not_given() -> None:
    values = SiteValues("pole-7", "rx.example", 5684, name='Torget "Norr" – väst')
    text = render_site(DEFAULT_TEMPLATE, values)
    data = tomllib.loads(text)
    assert data["unit"]["name"] == 'Torget "Norr" – väst'
    assert data["receiver"] == {"host": "rx.example", "port": 5684}
    assert "latitude" not in data["unit"] and "longitude" not in data["unit"]
    values.latitude, values.longitude = 59.37, 16.51
    data = tomllib.loads(render_site(DEFAULT_TEMPLATE, values))
    assert (data["unit"]["latitude"], data["unit"]["longitude"]) == (59.37, 16.51)


def test_template_with_an_unknown_placeholder_is_an_error(tmp_path: Path) -> None:
    template = tmp_path / "t.toml.in"
    template.write_text("[unit]\nid = ${unit_id}\nfoo = ${nonsense}\n")
    with pytest.raises(ConfigError, match=r"t.toml.in:3: unknown placeholder\(s\) \['nonsense'\]"):
        render_site(template, SiteValues("pole-1", "127.0.0.1"))


def test_provision_cli_writes_context_and_site_and_prints_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unit = tmp_path / "pole-0300"
    rx = tmp_path / "rx"
    args = ["provision", "pole-0300", "--unit-dir", str(unit / "oscore"), "--receiver-keys"]
    args += [str(rx), "--site-out", str(unit / "site.toml"), "--receiver-host", "10.0.0.5"]
    args += ["--board", str(REPO / "board_configs/rpi5-mlx90640-modbus.toml")]
    args += ["--name", "Skolgården", "--latitude", "59.37", "--longitude", "16.51"]
    assert main(args) == 0
    out = capsys.readouterr()
    secret = (unit / "oscore" / "secret.json").read_text()
    assert secret.split('"')[3] not in out.out + out.err
    assert "OSCORE key id 0001" in out.out and "site config:" in out.out
    for path in (unit / "oscore", unit / "oscore" / "secret.json"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    site = tomllib.loads((unit / "site.toml").read_text())
    assert site["unit"]["id"] == "pole-0300" and site["receiver"]["host"] == "10.0.0.5"
    # the zone covers the board's sensor (MLX90640: 32x24), and the pair validates
    assert site["zones"]["view"]["polygon"][2] == [32, 24]
    load_pair(REPO / "board_configs/rpi5-mlx90640-modbus.toml", unit / "site.toml")
    # a second run refuses to overwrite anything
    assert main(args) == 2
    assert "already" in capsys.readouterr().err


def test_an_invalid_site_registers_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "bad.toml.in"
    template.write_text(
        DEFAULT_TEMPLATE.read_text().replace('zones = ["view"]', 'zones = ["nowhere"]')
    )
    rx = tmp_path / "rx"
    args = ["provision", "pole-0301", "--unit-dir", str(tmp_path / "oscore"), "--receiver-keys"]
    args += [str(rx), "--site-out", str(tmp_path / "site.toml"), "--receiver-host", "127.0.0.1"]
    args += ["--template", str(template), "--board", str(SIM_BOARD)]
    assert main(args) == 2
    assert "rules" in capsys.readouterr().err
    assert not (rx / "units").exists() and not (tmp_path / "oscore").exists()


def test_plain_provision_keeps_working(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The earlier form: only the OSCORE pair, with the receiver's key directory."""
    args = ["provision", "pole-0302", "--unit-dir", str(tmp_path / "u"), "--receiver-keys"]
    assert main([*args, str(tmp_path / "rx")]) == 0
    assert (tmp_path / "rx/units/pole-0302/oscore/secret.json").is_file()
    assert "registered with the receiver" in capsys.readouterr().out
