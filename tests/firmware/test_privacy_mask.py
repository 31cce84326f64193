"""Privacy masks: site config, cross-check against the board, rasterising, and filling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware.config.load import cross_check, load_board, validate_model
from firmware.config.site import SiteConfig
from firmware.detect.masks import VISIBLE_FILL, PrivacyMask, rasterise
from firmware.errors import ConfigError
from firmware.hal.base import ThermalFrame, VisibleFrame

REPO = Path(__file__).resolve().parents[2]


def site(masks: dict[str, Any], tmp_path: Path) -> SiteConfig:
    data = {"unit": {"id": "pole-1"}, "receiver": {"host": "127.0.0.1"}, "masks": masks}
    return validate_model(SiteConfig, data, tmp_path / "site.toml")


def test_rasterise_marks_pixel_centres_inside() -> None:
    covered = rasterise([[[2, 1], [6, 1], [6, 4], [2, 4]]], width=8, height=6)
    expected = np.zeros((6, 8), dtype=bool)
    expected[1:4, 2:6] = True
    np.testing.assert_array_equal(covered, expected)


def test_rasterise_triangle_and_clipping_at_the_edge() -> None:
    covered = rasterise([[[0, 0], [10, 0], [0, 10]]], width=10, height=10)
    # Pixel (u, v) has its centre inside when u + v + 1 < 10, or on the edge when equal.
    u, v = np.meshgrid(np.arange(10), np.arange(10))
    np.testing.assert_array_equal(covered, u + v + 1 <= 10)
    assert not rasterise([], 4, 3).any()


def test_thermal_mask_fills_with_the_median_of_unmasked_pixels(tmp_path: Path) -> None:
    cfg = site(
        {"house": {"sensor": "thermal", "polygon": [[0, 0], [4, 0], [4, 2], [0, 2]]}}, tmp_path
    )
    mask = PrivacyMask.for_sensor(cfg, "thermal", 8, 4)
    data = np.arange(32, dtype=np.uint16).reshape(4, 8) + 1000
    data[0:2, 0:4] = 30000  # a hot window behind the mask
    out = mask.apply(data)
    assert out is not data and out.dtype == np.uint16
    open_pixels = np.concatenate([data[0:2, 4:].ravel(), data[2:].ravel()])
    assert np.all(out[0:2, 0:4] == round(float(np.median(open_pixels))))
    np.testing.assert_array_equal(out[2:], data[2:])
    assert data[0, 0] == 30000  # the input is untouched
    frame = ThermalFrame(3, 1.5, data, radiometric=False)
    masked = mask.apply_frame(frame)
    assert (masked.index, masked.t, masked.radiometric) == (3, 1.5, False)
    np.testing.assert_array_equal(masked.data, out)


def test_visible_mask_fills_mid_grey_and_ignores_thermal_masks(tmp_path: Path) -> None:
    cfg = site(
        {
            "window": {"sensor": "visible", "polygon": [[10, 10], [30, 10], [30, 20], [10, 20]]},
            "other": {"sensor": "thermal", "polygon": [[0, 0], [5, 0], [5, 5]]},
        },
        tmp_path,
    )
    mask = PrivacyMask.for_sensor(cfg, "visible", 64, 48)
    assert int(mask.covered.sum()) == 20 * 10
    rgb = np.full((48, 64, 3), 250, dtype=np.uint8)
    out = mask.apply_frame(VisibleFrame(1, 0.0, rgb)).rgb
    assert np.all(out[10:20, 10:30] == VISIBLE_FILL)
    assert np.all(out[:10] == 250) and np.all(rgb == 250)
    with pytest.raises(ValueError, match="visible privacy mask cannot apply to a thermal frame"):
        mask.apply_frame(ThermalFrame(1, 0.0, np.zeros((48, 64), np.uint16), False))


def test_no_masks_leaves_frames_alone(tmp_path: Path) -> None:
    mask = PrivacyMask.for_sensor(site({}, tmp_path), "thermal", 160, 120)
    assert mask.empty
    data = np.ones((120, 160), dtype=np.uint16)
    assert mask.apply(data) is data


def test_frame_size_must_match_the_mask(tmp_path: Path) -> None:
    cfg = site({"a": {"sensor": "thermal", "polygon": [[0, 0], [5, 0], [5, 5]]}}, tmp_path)
    mask = PrivacyMask.for_sensor(cfg, "thermal", 160, 120)
    with pytest.raises(ConfigError, match="mask is 160x120 but the frame is 32x24"):
        mask.apply(np.zeros((24, 32), dtype=np.uint16))


def test_mask_config_errors_name_the_key(tmp_path: Path) -> None:
    bowtie = [[0, 0], [10, 10], [10, 0], [0, 10]]
    with pytest.raises(ConfigError, match=r"masks\.x\.polygon: polygon must be simple"):
        site({"x": {"sensor": "thermal", "polygon": bowtie}}, tmp_path)
    with pytest.raises(ConfigError, match=r"masks\.x\.sensor"):
        site({"x": {"sensor": "radar", "polygon": [[0, 0], [1, 0], [1, 1]]}}, tmp_path)
    with pytest.raises(ConfigError, match=r"masks\.x\.sensor: required key is missing"):
        site({"x": {"polygon": [[0, 0], [1, 0], [1, 1]]}}, tmp_path)
    with pytest.raises(ConfigError, match=r"masks\.x\.polygon"):
        site({"x": {"sensor": "thermal", "polygon": [[0, 0], [1, 0]]}}, tmp_path)


def test_masks_are_cross_checked_against_the_board_image(tmp_path: Path) -> None:
    boards = sorted((REPO / "board_configs").glob("*.toml"))
    board = next(
        (b for b in map(load_board, boards) if b.thermal is not None and b.visible is None), None
    )
    if board is None:
        pytest.skip("no board config with a thermal camera and no visible camera")
    assert board.thermal is not None
    w, h = board.thermal.width, board.thermal.height
    good = site({"a": {"sensor": "thermal", "polygon": [[0, 0], [w, 0], [w, h]]}}, tmp_path)
    cross_check(board, good, tmp_path / "site.toml")
    bad = site(
        {
            "a": {"sensor": "thermal", "polygon": [[0, 0], [w + 1, 0], [w, h]]},
            "b": {"sensor": "visible", "polygon": [[0, 0], [5, 0], [5, 5]]},
        },
        tmp_path,
    )
    with pytest.raises(ConfigError) as info:
        cross_check(board, bad, tmp_path / "site.toml")
    text = str(info.value)
    assert f"masks.a.polygon[1]: point ({w + 1.0}, 0.0) lies outside the {w}x{h} thermal" in text
    assert "masks.b.sensor: the board has no visible camera" in text
