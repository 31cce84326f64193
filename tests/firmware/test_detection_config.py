"""The detection config tables: defaults, TOML values, and clear errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware.config.load import load_site
from firmware.config.site import DetectionConfig
from firmware.errors import ConfigError
from sim.camera_faults import CameraFault

SITE = """
[unit]
id = "pole-1"

[receiver]
host = "127.0.0.1"
"""


def site_file(tmp_path: Path, detection: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(SITE + detection)
    return path


def test_defaults_are_sensible() -> None:
    d = DetectionConfig()
    assert d.gathering.min_persons == 5 and d.gathering.hold_s == 10.0
    assert d.loitering.dwell_s == 60.0
    assert d.person_down.after_s == 10.0 and d.person_down.lying_threshold == 0.6
    assert d.tamper.learn_s + d.tamper.hold_s < 10.0  # raised well within 10 s
    assert d.sensor.frozen_s > 1.0  # longer than a Lepton flat-field pause
    assert d.fire.threshold_c == 100.0 and d.fire.growth_window_s == 2.0


def test_values_from_toml(tmp_path: Path) -> None:
    site = load_site(
        site_file(
            tmp_path,
            """
[detection.tracker]
confirm_hits = 5
max_missed_s = 3.5

[detection.loitering]
dwell_s = 120

[detection.gathering]
min_persons = 6
hold_s = 30.0

[detection.person_down]
after_s = 20
lying_threshold = 0.8

[detection.motion]
enabled = false

[detection.tamper]
hold_s = 2.0

[detection.sensor]
no_frames_s = 10
frozen_s = 8

[detection.fire]
threshold_c = 60
far_above_k = 40
""",
        )
    )
    d = site.detection
    assert d.tracker.confirm_hits == 5 and d.tracker.max_missed_s == 3.5
    assert d.loitering.dwell_s == 120 and d.gathering.min_persons == 6
    assert d.person_down.lying_threshold == 0.8 and not d.motion.enabled
    assert d.tamper.hold_s == 2.0 and d.sensor.frozen_s == 8
    assert d.fire.threshold_c == 60 and d.fire.far_above_k == 40


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[detection.gathering]\nmin_persons = 1\n", "detection.gathering.min_persons"),
        ("[detection.loitering]\ndwell_s = 0\n", "detection.loitering.dwell_s"),
        (
            "[detection.person_down]\nlying_threshold = 1.5\n",
            "detection.person_down.lying_threshold",
        ),
        ("[detection.person_down]\naspect_ratio = 0.8\n", "detection.person_down.aspect_ratio"),
        ("[detection.tracker]\nconfirm_hits = 0\n", "detection.tracker.confirm_hits"),
        ("[detection.tracker]\nsmoothing = 0\n", "detection.tracker.smoothing"),
        ("[detection.motion]\nsigma = -1\n", "detection.motion.sigma"),
        ("[detection.tamper]\ncovered_contrast = 1.0\n", "detection.tamper.covered_contrast"),
        ("[detection.sensor]\nfrozen_s = 1.0\n", "detection.sensor.frozen_s"),
        ("[detection.fire]\ngrowth_window_s = 0\n", "detection.fire.growth_window_s"),
        ("[detection.tamper]\nhold = 2\n", "detection.tamper.hold"),
        ('[detection.gathering]\nhold_s = "long"\n', "detection.gathering.hold_s"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, where: str) -> None:
    path = site_file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert f"{path}: {where}" in str(err.value)


def test_camera_fault_specs_are_checked() -> None:
    assert CameraFault(kind="cover", at_s=5).active(5.0)
    assert not CameraFault(kind="cover", at_s=5, until_s=6).active(6.0)
    with pytest.raises(ValueError, match="until_s"):
        CameraFault(kind="turn", at_s=5, until_s=5)
    with pytest.raises(ValueError, match="temp_c"):
        CameraFault(kind="turn", at_s=5, temp_c=30)
    with pytest.raises(ValueError, match="kind"):
        CameraFault.model_validate({"kind": "smash", "at_s": 5})
