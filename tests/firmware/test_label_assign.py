"""The unit's labelling (cc3d) and assignment (lap) give what scipy gave, which the unit no longer
imports (scipy stays for the simulator and these tests)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from firmware.config.site import MotionDetection
from firmware.detect.base import label_8_connected
from firmware.detect.fire import Box, FireDetector, dilate_8_connected
from firmware.detect.motion import MotionDetector
from firmware.detect.tracker import _INFEASIBLE, assign

EIGHT = np.ones((3, 3), dtype=bool)


def masks(seed: int, count: int, max_side: int = 40) -> list[npt.NDArray[np.bool_]]:
    """Random masks of every density, odd and even sizes, some made of blobs."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        h, w = (int(n) for n in rng.integers(1, max_side, 2))
        mask = rng.random((h, w)) < rng.random()
        if i % 3 == 0:
            mask = ndimage.binary_dilation(mask & (rng.random((h, w)) < 0.1))
        out.append(mask)
    return out


def test_label_8_connected_is_scipys_labelling() -> None:
    # cc3d's binary path got this wrong for odd widths (a background pixel labelled).
    for mask in masks(1, 3000):
        expected, _ = ndimage.label(mask, structure=EIGHT)
        assert np.array_equal(label_8_connected(mask), expected), mask.astype(int)


def test_label_8_connected_on_a_crop_of_a_frame() -> None:
    # The detectors label views into a frame (not contiguous).
    rng = np.random.default_rng(2)
    frame = rng.random((120, 160)) < 0.3
    for v0, v1, u0, u1 in [(0, 120, 0, 160), (7, 50, 13, 98), (30, 31, 5, 160), (3, 90, 77, 78)]:
        crop = frame[v0:v1, u0:u1]
        expected, _ = ndimage.label(crop, structure=EIGHT)
        assert np.array_equal(label_8_connected(crop), expected)


def test_dilate_8_connected_is_scipys_dilation() -> None:
    for mask in masks(3, 1000):
        assert np.array_equal(dilate_8_connected(mask), ndimage.binary_dilation(mask, EIGHT))


def scipy_fire_blobs(
    mask: npt.NDArray[np.bool_], temps: npt.NDArray[np.float32]
) -> list[tuple[Box, int, float]]:
    """The fire detector's grouping as it was written with scipy.ndimage."""
    grouped = ndimage.binary_dilation(mask, structure=EIGHT)
    labels, count = ndimage.label(grouped, structure=EIGHT)
    core = np.where(mask, labels, 0)
    areas = np.bincount(core.ravel(), minlength=count + 1)[1:]
    found = []
    for k, sl in enumerate(ndimage.find_objects(core), start=1):
        if sl is not None:
            box = (sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
            found.append((box, int(areas[k - 1]), float(temps[core == k].max())))
    return found


def test_fire_blobs_are_scipys() -> None:
    rng = np.random.default_rng(4)
    for i in range(400):
        mask = np.zeros((120, 160), dtype=bool)
        for _ in range(int(rng.integers(1, 8))):
            v, u = int(rng.integers(0, 120)), int(rng.integers(0, 160))
            h, w = (int(n) for n in rng.integers(1, 12, 2))
            mask[v : v + h, u : u + w] |= rng.random((h, w))[: 120 - v, : 160 - u] < 0.6
        if i % 2:
            mask |= rng.random(mask.shape) < 0.002  # single hot pixels, some at the edges
        if not mask.any():
            continue
        temps = rng.uniform(0, 400, mask.shape).astype(np.float32)
        assert FireDetector._blobs(mask, temps) == scipy_fire_blobs(mask, temps)


def test_motion_blobs_are_scipys() -> None:
    config = MotionDetection()
    rng = np.random.default_rng(5)
    for _ in range(300):
        mask = np.zeros((120, 160), dtype=bool)
        for _ in range(int(rng.integers(1, 6))):
            v, u = int(rng.integers(0, 120)), int(rng.integers(0, 160))
            h, w = (int(n) for n in rng.integers(1, 30, 2))
            mask[v : v + h, u : u + w] |= rng.random((h, w))[: 120 - v, : 160 - u] < 0.8
        mask |= rng.random(mask.shape) < 0.01
        labels, count = ndimage.label(mask, structure=EIGHT)
        areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        min_area = max(2, math.ceil(config.min_area_frac * mask.size))
        expected = [
            ((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop), int(area))
            for area, sl in zip(areas, ndimage.find_objects(labels), strict=True)
            if area >= min_area
        ]
        found = MotionDetector(config)._blobs_of(mask)
        assert [(b.box, b.area_px) for b in found] == expected


def scipy_assign(cost: npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 1e5]


def tracker_costs(rng: np.random.Generator, ties: bool) -> npt.NDArray[np.float64]:
    """A cost matrix as the tracker builds one: 1 - IoU, 1 + centre distance, + 0.5 for another
    class, infeasible pairs at _INFEASIBLE."""
    n, m = (int(k) for k in rng.integers(1, 16, 2))
    if ties:
        cost = rng.integers(0, 8, (n, m)) * 0.5
    else:
        cost = np.where(
            rng.random((n, m)) < 0.5, 1 - rng.random((n, m)), 1 + 2 * rng.random((n, m))
        )
        cost += (rng.random((n, m)) < 0.2) * 0.5
    cost[rng.random((n, m)) < rng.random()] = _INFEASIBLE
    return np.asarray(cost, dtype=np.float64)


def test_assign_is_scipys_matching() -> None:
    rng = np.random.default_rng(6)
    for _ in range(3000):
        cost = tracker_costs(rng, ties=False)
        assert sorted(assign(cost)) == sorted(scipy_assign(cost)), cost


@pytest.mark.parametrize("seed", [7, 8])
def test_assign_finds_scipys_optimum_among_ties(seed: int) -> None:
    # With equal costs either solver may pick another of the equally good matchings.
    rng = np.random.default_rng(seed)
    for _ in range(3000):
        cost = tracker_costs(rng, ties=True)
        pairs, expected = assign(cost), scipy_assign(cost)
        assert len(pairs) == len(expected)
        assert sum(cost[p] for p in pairs) == pytest.approx(sum(cost[p] for p in expected))
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)


def test_assign_without_a_cost_limit_would_miss_a_pair() -> None:
    # lapjv given only the infeasible entries left (4, 0) out of this matrix's optimum.
    cost = np.full((7, 9), _INFEASIBLE)
    for (r, c), value in {
        (0, 7): 2.352,
        (2, 6): 2.313,
        (4, 0): 1.768,
        (5, 7): 0.524,
        (6, 7): 0.996,
    }.items():
        cost[r, c] = value
    assert sorted(assign(cost)) == [(2, 6), (4, 0), (5, 7)] == sorted(scipy_assign(cost))
    assert assign(np.full((3, 2), _INFEASIBLE)) == []


def test_the_detection_pipeline_does_not_import_scipy() -> None:
    # scipy.ndimage and scipy.optimize cost a unit about 50 MB of memory.
    code = (
        "import sys, firmware.detect.pipeline, firmware.runtime\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'scipy'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
