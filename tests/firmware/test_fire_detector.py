"""The radiometric fire detector: threshold, minimum area and persistence, from config."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.config.site import FireDetection
from firmware.detect.fire import GAP_S, FireDetector
from firmware.hal.base import ThermalFrame


def frame(
    index: int,
    hot: list[tuple[int, int, int, int, float]],
    base_c: float = 5.0,
    shape: tuple[int, int] = (120, 160),
) -> ThermalFrame:
    temps = np.full(shape, base_c, dtype=np.float64)
    for u0, v0, u1, v1, t in hot:
        temps[v0 : v1 + 1, u0 : u1 + 1] = t
    data = np.round((temps + 273.15) * 100).astype(np.uint16)
    return ThermalFrame(index, 1000.0 + index / 9, data, True)


CONFIG = FireDetection(threshold_c=100.0, min_area_px=4, persistence_frames=3)


def test_confirms_after_persistence_frames_only() -> None:
    det = FireDetector(CONFIG)
    spot = (50, 60, 53, 63, 130.0)  # 4x4 px at 130 C
    assert det.process(frame(1, [spot])) == []
    assert det.process(frame(2, [spot])) == []
    found = det.process(frame(3, [spot]))
    assert len(found) == 1
    assert found[0].box == (50, 60, 53, 63)
    assert found[0].area_px == 16
    assert abs(found[0].max_temp_c - 130.0) < 0.01
    assert found[0].bottom_centre == (52.0, 64.0)


def test_a_short_flicker_is_bridged_and_a_long_gap_resets_persistence() -> None:
    det = FireDetector(CONFIG)
    spot = (50, 60, 53, 63, 130.0)
    det.process(frame(1, [spot]))
    det.process(frame(2, [spot]))
    assert det.process(frame(3, [])) == []  # not seen: nothing reported
    assert det.process(frame(4, [])) == []
    [confirmed] = det.process(frame(5, [spot]))  # a short gap: the same spot, third sighting
    assert confirmed.frames_seen == 3
    gap = int(GAP_S * 9) + 1  # frames are 1/9 s apart
    for i in range(6, 6 + gap):
        assert det.process(frame(i, [])) == []
    assert det.process(frame(6 + gap, [spot])) == []  # forgotten: counting starts again


def test_fragments_a_pixel_apart_are_one_spot() -> None:
    det = FireDetector(CONFIG)
    for i in range(3):
        spots = det.process(frame(i, [(50, 60, 53, 63, 300.0), (55, 60, 58, 63, 150.0)]))
    [spot] = spots
    assert spot.box == (50, 60, 58, 63)
    assert spot.area_px == 32
    assert spot.max_temp_c == pytest.approx(300.0, abs=0.01)


def test_below_threshold_and_too_small_are_ignored() -> None:
    det = FireDetector(CONFIG)
    for i in range(10):
        assert (
            det.process(
                frame(
                    i,
                    [
                        (10, 10, 20, 20, 99.0),  # warm but below threshold
                        (80, 80, 80, 82, 400.0),
                    ],
                )
            )
            == []
        )  # 3 px: below min area


def test_spot_keeps_its_id_while_it_moves_and_grows() -> None:
    det = FireDetector(CONFIG)
    ids = set()
    for i in range(8):
        spots = det.process(frame(i, [(50 + i // 2, 60, 53 + i, 63 + i, 200.0 + i)]))
        ids.update(s.spot_id for s in spots)
    assert len(ids) == 1


def test_two_separate_fires_are_two_spots() -> None:
    det = FireDetector(CONFIG)
    for i in range(3):
        spots = det.process(frame(i, [(10, 10, 13, 13, 300.0), (100, 90, 104, 95, 300.0)]))
    assert len({s.spot_id for s in spots}) == 2


def test_works_at_mlx90640_resolution() -> None:
    det = FireDetector(FireDetection(threshold_c=80.0, min_area_px=1, persistence_frames=2))
    hot = [(10, 10, 11, 11, 150.0)]
    det.process(frame(1, hot, shape=(24, 32)))
    assert len(det.process(frame(2, hot, shape=(24, 32)))) == 1


def test_persistence_of_one_confirms_at_once() -> None:
    det = FireDetector(FireDetection(threshold_c=100.0, min_area_px=1, persistence_frames=1))
    assert len(det.process(frame(1, [(5, 5, 6, 6, 150.0)]))) == 1
