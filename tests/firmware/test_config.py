"""Board and site configs: shipped files validate; bad ones are rejected naming file and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.config.load import load_board, load_pair, load_site, validate_files
from firmware.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BOARDS = sorted((REPO / "board_configs").glob("*.toml"))
SITE = REPO / "sim" / "sites" / "parking_lot.toml"


def test_the_four_shipped_boards_exist() -> None:
    names = {p.stem for p in BOARDS}
    assert {"sim", "rpi4-lepton35", "rpi5-mlx90640-modbus", "jetson-orin-nano"} <= names


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_shipped_boards_validate(path: Path) -> None:
    board = load_board(path)
    assert board.board.name == path.stem
    assert board.outputs, "every board has deterrent outputs"


def test_sim_board_and_parking_lot_site_agree() -> None:
    board, site = load_pair(REPO / "board_configs" / "sim.toml", SITE)
    assert site.rules[0].zones == ["lot"]
    assert set(site.deterrence.limits) <= set(board.outputs)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def board_text(extra: str = "", outputs: str = "") -> str:
    return f"""
[board]
name = "t"
platform = "sim"
{extra}
[thermal]
backend = "sim"
sensor = "lepton35"
width = 160
height = 120
fps = 9.0
radiometric = true
{outputs}
"""


def test_unknown_key_names_file_and_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.toml",
        board_text(
            outputs="""
[outputs.siren]
backend = "sim"
kind = "siren"
volume = 11
"""
        ),
    )
    with pytest.raises(ConfigError) as err:
        load_board(path)
    assert f"{path}: outputs.siren.volume: unknown key" in str(err.value)


def test_pin_used_twice_is_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.toml",
        board_text(
            outputs="""
[outputs.floodlight]
backend = "gpio"
kind = "light"
pin = 17
[outputs.siren]
backend = "gpio"
kind = "siren"
pin = 17
"""
        ),
    )
    with pytest.raises(ConfigError) as err:
        load_board(path)
    assert (
        f"{path}: outputs.siren.pin: GPIO pin 17 is already used by outputs.floodlight.pin"
        in str(err.value)
    )


def test_modem_power_key_pin_conflicts_with_an_output(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.toml",
        board_text(
            outputs="""
[outputs.floodlight]
backend = "gpio"
kind = "light"
pin = 26
[modem]
backend = "at"
port = "/dev/ttyUSB2"
power_key_pin = 26
"""
        ),
    )
    with pytest.raises(ConfigError, match=r"modem\.power_key_pin: GPIO pin 26"):
        load_board(path)


def test_modbus_output_needs_its_bus_and_unique_coils(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.toml",
        board_text(
            outputs="""
[modbus.relays]
transport = "tcp"
host = "127.0.0.1"
[outputs.a]
backend = "modbus"
kind = "light"
bus = "relays"
coil = 0
[outputs.b]
backend = "modbus"
kind = "siren"
bus = "relays"
coil = 0
[outputs.c]
backend = "modbus"
kind = "siren"
bus = "rs485"
coil = 1
"""
        ),
    )
    with pytest.raises(ConfigError) as err:
        load_board(path)
    text = str(err.value)
    assert "outputs.b.coil: coil 0 on bus 'relays' is already used by outputs.a.coil" in text
    assert "outputs.c.bus: no [modbus.rs485] (defined: relays)" in text


def test_wrong_type_and_out_of_range_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.toml",
        board_text().replace("fps = 9.0", 'fps = "fast"').replace("width = 160", "width = 2"),
    )
    with pytest.raises(ConfigError) as err:
        load_board(path)
    text = str(err.value)
    assert f"{path}: thermal.fps:" in text
    assert f"{path}: thermal.width: Input should be greater than or equal to 8" in text


def test_unknown_backend_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.toml",
        board_text(
            outputs="""
[outputs.a]
backend = "usb"
kind = "light"
"""
        ),
    )
    with pytest.raises(ConfigError, match=r"outputs\.a: .*'usb'.*'sim', 'gpio', 'modbus'"):
        load_board(path)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "b.toml", "[board\nname=")
    with pytest.raises(ConfigError, match=rf"{path}: not valid TOML"):
        load_board(path)


def site_with(**replace: str) -> str:
    text = SITE.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


def test_rule_naming_a_missing_zone(tmp_path: Path) -> None:
    path = write(tmp_path, "s.toml", site_with(**{'zones = ["lot"]': 'zones = ["roof"]'}))
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert f"{path}: rules[0].zones[0]: no zone 'roof' (defined: lot)" in str(err.value)


def test_rule_naming_a_missing_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "s.toml", site_with(**{'profile = "fire"': 'profile = "panic"'}))
    with pytest.raises(ConfigError, match=r"rules\[0\]\.profile: no deterrence profile 'panic'"):
        load_site(path)


def test_profile_output_the_board_lacks(tmp_path: Path) -> None:
    text = site_with(
        **{
            "[deterrence.limits.siren]": "[deterrence.limits.horn]",
            '{ output = "siren", at_s = 0 }': '{ output = "horn", at_s = 0 }',
        }
    )
    path = write(tmp_path, "s.toml", text)
    with pytest.raises(ConfigError) as err:
        load_pair(REPO / "board_configs" / "sim.toml", path)
    assert (
        f"{path}: deterrence.profiles.fire.steps[1].output: the board has no output 'horn'"
        in str(err.value)
    )


def test_step_longer_than_the_limit(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.toml",
        site_with(
            **{'{ output = "siren", at_s = 0 }': '{ output = "siren", at_s = 0, for_s = 90 }'}
        ),
    )
    with pytest.raises(ConfigError, match=r"steps\[1\]\.for_s: 90.0 s exceeds .* 60.0 s"):
        load_site(path)


def test_bad_time_zone_and_self_intersecting_zone(tmp_path: Path) -> None:
    text = site_with(
        **{
            'timezone = "Europe/Stockholm"': 'timezone = "Europe/Eskilstuna"',
            "polygon = [[0, 30], [160, 30], [160, 120], [0, 120]]": (
                "polygon = [[0, 30], [160, 120], [160, 30], [0, 120]]"
            ),
        }
    )
    path = write(tmp_path, "s.toml", text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert "unit.timezone: unknown IANA time zone 'Europe/Eskilstuna'" in str(err.value)
    assert "zones.lot.polygon: polygon must be simple" in str(err.value)


def test_validate_files_cross_checks_pairs_and_reports_each_file(tmp_path: Path) -> None:
    assert validate_files([*BOARDS[:0], REPO / "board_configs" / "sim.toml", SITE]) == []
    mlx = REPO / "board_configs" / "rpi5-mlx90640-modbus.toml"
    problems = validate_files([mlx, SITE])
    assert any(
        "zones.lot.polygon[1]: point (160.0, 30.0) lies outside the 32x24" in p for p in problems
    )
    neither = write(tmp_path, "x.toml", "a = 1\n")
    assert validate_files([neither]) == [
        f"{neither}: (top level): neither a board config (no [board] table) nor a site config "
        "(no [unit] table)"
    ]


def test_sun_relative_schedule_without_coordinates(tmp_path: Path) -> None:
    text = site_with(**{"latitude = 59.37\n": "", "longitude = 16.51\n": ""})
    path = write(tmp_path, "s.toml", text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert (
        f"{path}: schedules.dark.windows[0]: times relative to the sun need unit.latitude "
        "and unit.longitude"
    ) in str(err.value)


def test_rule_and_quiet_hours_naming_unknown_schedules(tmp_path: Path) -> None:
    text = site_with(
        **{
            'quiet_hours = "quiet"': 'quiet_hours = "silence"',
            'profile = "fire"': 'profile = "fire"\nschedule = "weekends"',
        }
    )
    path = write(tmp_path, "s.toml", text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert f"{path}: deterrence.quiet_hours: no schedule 'silence' (defined: dark, quiet)" in str(
        err.value
    )
    assert f"{path}: rules[0].schedule: no schedule 'weekends' (defined: dark, quiet)" in str(
        err.value
    )


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ('{ start = "25:00", end = "05:00" }', "windows[0].start: '25:00' is not a time of day"),
        ('{ start = "sunset+8h", end = "05:00" }', "windows[0].start: 'sunset+8h': an offset"),
        ('{ start = "22:00", end = "22:00" }', "windows[0].end: the window would be empty"),
        ('{ days = ["fri", "fri"], start = "22:00", end = "05:00" }', "windows[0].days: a day"),
        ('{ days = ["friday"], start = "22:00", end = "05:00" }', "windows[0].days[0]: Input"),
    ],
)
def test_bad_schedule_windows(tmp_path: Path, window: str, message: str) -> None:
    text = site_with(**{'windows = [{ start = "23:00", end = "06:00" }]': f"windows = [{window}]"})
    path = write(tmp_path, "s.toml", text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert f"{path}: schedules.quiet.{message}" in str(err.value)


def test_voice_clips_are_checked_when_the_config_loads(
    tmp_path: Path, make_wav: Callable[..., Path]
) -> None:
    make_wav("leave.wav", seconds=2.0)
    good = '{ voice = "leave.wav", at_s = 5, repeat = 2 }'
    siren = '{ output = "siren", at_s = 0 },'
    text = site_with(**{siren: f"{siren}\n  {good},"})
    site = load_site(write(tmp_path, "s.toml", text))
    step = site.deterrence.profiles["fire"].steps[2]
    assert step.voice == str((tmp_path / "leave.wav").resolve()) and step.voice_s == 5.0
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    for clip, message in [
        ("missing.wav", "no such clip"),
        ("broken.wav", "broken.wav is not a PCM WAV file"),
    ]:
        bad = text.replace("leave.wav", clip)
        path = write(tmp_path, "bad.toml", bad)
        with pytest.raises(ConfigError) as err:
            load_site(path)
        assert f"{path}: deterrence.profiles.fire.steps[2].voice: {message}" in str(err.value)
    too_long = write(tmp_path, "long.toml", text.replace("repeat = 2", "repeat = 40"))
    with pytest.raises(ConfigError, match=r"steps\[2\]\.repeat: Input should be less than"):
        load_site(too_long)
    limit = text.replace("[deterrence]\n", "[deterrence]\nvoice = { max_on_s = 4 }\n")
    with pytest.raises(ConfigError, match=r"steps\[2\]\.voice: plays 5 s .*max_on_s of 4 s"):
        load_site(write(tmp_path, "limit.toml", limit))
    sim_board = (REPO / "board_configs" / "sim.toml").read_text()
    mute = write(tmp_path, "b.toml", sim_board.replace('[audio]\nbackend = "sim"\n', ""))
    with pytest.raises(ConfigError, match=r"steps\[2\]\.voice: the board has no \[audio\]"):
        load_pair(mute, write(tmp_path, "ok.toml", text))


def test_a_step_is_an_output_or_a_voice_clip(tmp_path: Path) -> None:
    text = site_with(**{'{ output = "siren", at_s = 0 }': '{ output = "siren", voice = "x.wav" }'})
    with pytest.raises(ConfigError, match=r"steps\[1\]\.output: a step has exactly one"):
        load_site(write(tmp_path, "s.toml", text))
    text = site_with(**{'{ output = "siren", at_s = 0 }': '{ output = "siren", repeat = 2 }'})
    with pytest.raises(ConfigError, match=r"steps\[1\]\.repeat: only for voice steps"):
        load_site(write(tmp_path, "s.toml", text))


def test_pwm_is_for_lights_and_jetson_pins_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.toml",
        board_text(
            outputs="""
[outputs.siren]
backend = "gpio"
kind = "siren"
pin = 13
pwm = true
[outputs.floodlight]
backend = "gpio"
kind = "light"
pin = 12
brightness = 0.5
[outputs.strobe]
backend = "jetson"
kind = "strobe"
pin = 41
"""
        ),
    )
    with pytest.raises(ConfigError) as err:
        load_board(path)
    text = str(err.value)
    assert f'{path}: outputs.siren.pwm: PWM dimming is for kind = "light"' in text
    assert f"{path}: outputs.floodlight.brightness: only with pwm = true" in text
    assert f"{path}: outputs.strobe.pin: Input should be less than or equal to 40" in text


def test_no_output_may_be_called_voice(tmp_path: Path) -> None:
    path = write(
        tmp_path, "b.toml", board_text(outputs='[outputs.voice]\nbackend = "sim"\nkind = "relay"')
    )
    with pytest.raises(
        ConfigError, match=r"outputs\.voice: the name 'voice' is kept for voice clips"
    ):
        load_board(path)


def test_jetson_pin_used_twice(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.toml",
        board_text(
            outputs="""
[outputs.a]
backend = "jetson"
kind = "light"
pin = 33
[outputs.b]
backend = "jetson"
kind = "siren"
pin = 33
"""
        ),
    )
    with pytest.raises(ConfigError, match=r"outputs\.b\.pin: Jetson board pin 33 is already used"):
        load_board(path)


def test_new_limits_and_rule_keys_load(tmp_path: Path) -> None:
    site = load_site(SITE)
    assert site.deterrence.quiet_hours == "quiet"
    assert site.deterrence.limits["siren"].max_s_per_hour == 180
    assert site.schedules["dark"].windows[0].start == "sunset+30min"
    text = site_with(**{'profile = "fire"': 'profile = "fire"\nmin_duration_s = 2\nmin_count = 2'})
    rule = load_site(write(tmp_path, "s.toml", text)).rules[0]
    assert (rule.min_duration_s, rule.min_count, rule.classes) == (2, 2, [])
    bad = site_with(**{'profile = "fire"': 'profile = "fire"\nclasses = ["person"]'})
    with pytest.raises(ConfigError, match=r"rules\[0\]\.classes: fire events have no classes"):
        load_site(write(tmp_path, "s.toml", bad))


def test_steps_on_one_output_must_not_overlap(tmp_path: Path) -> None:
    text = site_with(**{'{ output = "siren", at_s = 0 }': '{ output = "floodlight", at_s = 60 }'})
    with pytest.raises(ConfigError, match=r"steps\[1\]\.at_s: overlaps steps\[0\] on floodlight"):
        load_site(write(tmp_path, "s.toml", text))
    text = site_with(**{'{ output = "siren", at_s = 0 }': '{ output = "floodlight", at_s = 120 }'})
    assert len(load_site(write(tmp_path, "s.toml", text)).deterrence.profiles["fire"].steps) == 2
