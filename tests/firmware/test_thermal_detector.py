"""The thermal object detector plugin with the committed int8 model, on simulated frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from firmware.detect.base import Detection
from firmware.detect.runner import dequantize
from firmware.detect.thermal import (
    CLASSES,
    DEFAULT_MODEL,
    INPUT_HW,
    SPREAD_CAP_K,
    Heads,
    ThermalDetector,
    ThermalModelDetection,
    decode,
    mirror_average,
    normalize,
    output_stride,
    split_outputs,
)
from firmware.errors import ModelError
from firmware.hal.base import ThermalFrame
from sim import actors, world
from sim.sensors import sensor_for

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CAMERA = world.CameraPose(height_m=6.0, pitch_deg=25.0, yaw_deg=0.0)
# The model is below its target on the MLX90640 (see models/thermal/MODEL_CARD.md): marked checks
# say what it must do and fail today. Strict, so that a better model makes them pass and the mark
# must go.
BELOW_TARGET = pytest.mark.xfail(strict=True, reason="thermal model below target (issue 4)")


@pytest.fixture(scope="module")
def detector() -> ThermalDetector:
    return ThermalDetector(ThermalModelDetection())


def _frame(
    spec: world.WorldSpec, sensor: str, seed: int, t: float = 1.0
) -> tuple[ThermalFrame, list[actors.Truth]]:
    scene = world.ParkingLotWorld(spec, 160, 120, seed)
    rows, cols = (24, 32) if sensor == "mlx90640" else (120, 160)
    try:
        model = sensor_for(sensor, seed, width=cols, height=rows)
    except ValueError as exc:
        pytest.skip(f"the simulator does not model {sensor}: {exc}")
    data = model.capture(scene.scene_c(t), t)
    return ThermalFrame(0, t, data, bool(model.radiometric)), list(scene.truth(t))


def _pixels(truth: actors.Truth, frame: ThermalFrame) -> tuple[float, float, float, float]:
    rows, cols = frame.data.shape
    x0, y0, x1, y1 = truth.box
    return (x0 * cols, y0 * rows, x1 * cols, y1 * rows)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _best(found: list[Detection], box: tuple[float, ...], cls: str) -> Detection | None:
    same = [d for d in found if d.cls == cls and _iou(d.box, box) >= 0.5]
    return max(same, key=lambda d: d.score) if same else None


def _person(posture: actors.Posture, x: float = 0.5, y: float = 11.0) -> world.WorldSpec:
    person = actors.Person(
        name="p", path=[(0.0, x, y)], postures=[(0.0, posture)], heading_deg=80.0
    )
    return world.WorldSpec(ambient_c=5.0, sky_c=-25.0, camera=CAMERA, persons=[person])


@pytest.mark.parametrize("seed", [3, 11, 29])
@pytest.mark.parametrize("sensor", ["lepton35", "lepton3"])
def test_finds_a_standing_person_where_they_are(
    detector: ThermalDetector, seed: int, sensor: str
) -> None:
    frame, truth = _frame(_person("standing", x=-1.0 + seed / 10), sensor, seed)
    (person,) = truth
    found = detector.detect(frame)
    best = _best(found, _pixels(person, frame), "person")
    assert best is not None, f"no person at {_pixels(person, frame)}: {found}"
    assert best.lying is not None and best.lying < 0.5
    assert best.sensor == "thermal"


@pytest.mark.parametrize("seed", [5, 17])
def test_a_lying_person_is_lying(detector: ThermalDetector, seed: int) -> None:
    frame, truth = _frame(_person("lying", x=seed / 10), "lepton35", seed)
    (person,) = truth
    best = _best(detector.detect(frame), _pixels(person, frame), "person")
    assert best is not None
    assert best.lying is not None and best.lying > 0.5


@pytest.mark.parametrize("seed", [2, 8, 13])
def test_a_cat_is_not_a_person(detector: ThermalDetector, seed: int) -> None:
    cat = actors.Animal(
        name="cat", species="cat", path=[(0.0, -2.0, 8.0), (10.0, 2.0, 9.0)], body_c=30.0
    )
    spec = world.WorldSpec(ambient_c=2.0, sky_c=-25.0, camera=CAMERA, animals=[cat])
    for t in (1.0, 4.0, 7.0):
        frame, _ = _frame(spec, "lepton35", seed, t)
        found = detector.detect(frame)
        assert [d for d in found if d.cls == "person"] == []


@BELOW_TARGET
def test_boxes_are_in_the_frames_own_pixels_for_the_mlx90640(detector: ThermalDetector) -> None:
    spec = _person("standing", y=7.0)
    frame, truth = _frame(spec, "mlx90640", 4)
    assert frame.data.shape == (24, 32)
    found = detector.detect(frame)
    for d in found:
        assert 0 <= d.box[0] < d.box[2] <= 32 and 0 <= d.box[1] < d.box[3] <= 24
    assert _best(found, _pixels(truth[0], frame), "person") is not None


def test_normalisation_treats_centikelvin_and_raw_counts_alike() -> None:
    rng = np.random.default_rng(0)
    temps_k = 275.0 + rng.normal(0.0, 0.3, (120, 160))
    temps_k[40:80, 70:78] = 300.0  # a warm body
    temps_k[:30] = 270.0  # cooler sky: a 5 K spread, between the floor and the cap
    centi = np.round(temps_k * 100).astype(np.uint16)
    # Another linear count scale (the floor and cap in counts assume about 20 counts/K, so the
    # spread must stay inside them in both units).
    raw = np.round(8000 + (temps_k - 275.0) * 25).astype(np.uint16)
    a, b = normalize(centi, True), normalize(raw, False)
    assert a.shape == b.shape == INPUT_HW
    assert np.abs(a - b).max() < 0.05
    assert a[60, 74] > 0.9 > 0.1 > abs(a[100, 20])
    # A wide spread (a cold sky, sunlit asphalt) is capped, so a person keeps their contrast.
    temps_k[:30] = 250.0
    wide = normalize(np.round(temps_k * 100).astype(np.uint16), True)
    assert wide[60, 74] == pytest.approx(25.0 / SPREAD_CAP_K, abs=0.1)
    # An empty, uniform scene is not stretched until its noise looks like objects.
    flat = np.round((275.0 + rng.normal(0.0, 0.05, (120, 160))) * 100).astype(np.uint16)
    assert np.abs(normalize(flat, True)).max() < 0.2
    small = normalize(centi[::5, ::5], True)
    assert small.shape == INPUT_HW and small[40:80, 66:82].max() > 0.9


def test_missing_or_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model file"):
        ThermalDetector(ThermalModelDetection(model=str(tmp_path / "absent.tflite")))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match=r"bad\.tflite"):
        ThermalDetector(ThermalModelDetection(model=str(bad)))
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(DEFAULT_MODEL.read_bytes()[:2000])
    with pytest.raises(ModelError, match=r"cut\.tflite"):
        ThermalDetector(ThermalModelDetection(model=str(cut)))


def test_a_model_of_another_shape_is_refused() -> None:
    ssd = SHARED / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite"
    if not ssd.exists():
        pytest.skip(f"reference model absent: {ssd}")
    with pytest.raises(ModelError, match="channel"):
        ThermalDetector(ThermalModelDetection(model=str(ssd)))


def test_the_output_grid_gives_the_stride_and_a_bad_grid_is_refused() -> None:
    assert output_stride(INPUT_HW, [(1, 30, 40, 3), (1, 30, 40, 4), (1, 30, 40, 1)]) == 4
    assert output_stride(INPUT_HW, [(1, 60, 80, 3), (1, 60, 80, 4), (1, 60, 80, 1)]) == 2
    for shapes in (
        [(1, 60, 80, 3), (1, 30, 40, 4), (1, 60, 80, 1)],  # heads on two grids
        [(1, 7, 40, 3), (1, 7, 40, 4), (1, 7, 40, 1)],  # 120 rows do not divide into 7
        [(1, 60, 40, 3), (1, 60, 40, 4), (1, 60, 40, 1)],  # stride 2 down, 4 across
        [(1, 0, 40, 3), (1, 0, 40, 4), (1, 0, 40, 1)],
    ):
        with pytest.raises(ModelError, match=r"odd\.tflite: output shapes .* not one grid"):
            output_stride(INPUT_HW, shapes, "odd.tflite")


def test_config_is_strict() -> None:
    with pytest.raises(ValueError, match="score_threshold"):
        ThermalModelDetection(score_threshold=1.5)
    with pytest.raises(ValueError, match="extra"):
        ThermalModelDetection.model_validate({"treshold": 0.5})


def _decode_pair_by_pair(
    heads: Heads, frame_hw: tuple[int, int], threshold: float, iou: float, limit: int
) -> list[tuple[str, float, tuple[float, ...], float | None]]:
    """The decoding rules written out plainly: local 3x3 peaks, boxes, greedy NMS in float32."""
    heat = heads.heat
    rows, cols, classes = heat.shape
    cells = []
    for y in range(rows):
        for x in range(cols):
            for c in range(classes):
                s = heat[y, x, c]
                if s < threshold:
                    continue
                around = [
                    heat[y + dy, x + dx, c]
                    for dy in (-1, 0, 1)
                    for dx in (-1, 0, 1)
                    if (dy or dx) and 0 <= y + dy < rows and 0 <= x + dx < cols
                ]
                if all(s >= a for a in around):
                    cells.append((y, x, c))
    found = []
    for y, x, c in cells:
        r = heads.reg[y, x]
        # In output cells, then the frame's pixels per cell.
        half = np.exp(r[2:]) * np.float32(0.5)
        centre = np.array([x, y], dtype=np.float64) + r[:2]
        scale = np.array([frame_hw[1] / cols, frame_hw[0] / rows])
        top = np.array([frame_hw[1], frame_hw[0]], dtype=np.float64)
        lo = np.clip((centre - half) * scale, 0, top).astype(np.float32)
        hi = np.clip((centre + half) * scale, 0, top).astype(np.float32)
        found.append(
            (heat[y, x, c], (lo[0], lo[1], hi[0], hi[1]), CLASSES[c], heads.lying[y, x, 0])
        )
    order = sorted(range(len(found)), key=lambda i: -found[i][0])  # stable: C order on ties
    keep: list[int] = []
    while order and len(keep) < limit:
        i, order = order[0], order[1:]
        keep.append(i)
        if iou >= 1.0:
            continue
        a = found[i][1]
        area_a = (a[2] - a[0]) * (a[3] - a[1])
        rest = []
        for j in order:
            b = found[j][1]
            w = max(min(a[2], b[2]) - max(a[0], b[0]), np.float32(0))
            h = max(min(a[3], b[3]) - max(a[1], b[1]), np.float32(0))
            inter = w * h
            union = area_a + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if inter <= np.float32(iou) * max(union, np.float32(1e-9)):
                rest.append(j)
        order = rest
    return [
        (
            found[i][2],
            float(found[i][0]),
            tuple(float(v) for v in found[i][1]),
            float(found[i][3]) if found[i][2] == "person" else None,
        )
        for i in keep
    ]


@pytest.mark.parametrize("seed", range(6))
def test_decode_is_the_plain_rules_on_quantised_heads_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    step = np.float32(1 / 255)  # int8 outputs: many equal scores, so ties and plateaus
    grid = (30, 40) if seed % 2 else (60, 80)  # stride 4 (v3) and stride 2

    def levels(shape: tuple[int, ...]) -> np.ndarray:
        return (rng.integers(0, 256, shape).astype(np.float32) * step).astype(np.float32)

    heat = (levels((*grid, 3)) ** (1 + seed % 3 * 4)).astype(np.float32)
    reg = rng.integers(-128, 128, (*grid, 4)).astype(np.float32) * np.float32(0.02)
    heads = Heads(heat, reg, levels((*grid, 1)))
    for frame_hw, threshold, iou, limit in [
        ((120, 160), 0.4, 0.6, 50),
        ((24, 32), 0.1, 0.3, 5),
        ((120, 160), 0.2, 1.0, 50),
    ]:
        found = [
            (d.cls, d.score, d.box, d.lying) for d in decode(heads, frame_hw, threshold, iou, limit)
        ]
        assert found == _decode_pair_by_pair(heads, frame_hw, threshold, iou, limit)


@pytest.mark.parametrize("seed", range(4))
def test_decoding_the_raw_int8_heads_finds_what_the_dequantised_heads_give(seed: int) -> None:
    """The unit compares integers and dequantises only the cells it keeps: same detections."""
    rng = np.random.default_rng(seed)
    grid = (60, 80)
    # Zero points and scales as a sigmoid output, a regression and odd ones have them.
    quant = ((1 / 256, -128), (0.03 + 0.01 * seed, 5 - seed), (1 / 255 + 1e-5 * seed, -128 + seed))
    raw = [rng.integers(-128, 128, (*grid, ch), dtype=np.int64).astype(np.int8) for ch in (3, 4, 1)]
    raw[0] = np.minimum(raw[0], rng.integers(-128, 128, (*grid, 3))).astype(np.int8)  # sparse
    quantised = Heads(raw[0], raw[1], raw[2], quant)
    real = Heads(
        dequantize(raw[0], *quant[0]), dequantize(raw[1], *quant[1]), dequantize(raw[2], *quant[2])
    )
    for frame_hw, threshold, iou, limit in [
        ((120, 160), 0.4, 0.6, 50),
        ((24, 32), 0.1, 0.3, 5),
        ((120, 160), 0.5 + 0.5 / 256, 1.0, 50),  # between two levels
        ((120, 160), 0.75, 0.6, 50),  # on a level
        ((120, 160), 0.999, 0.6, 50),  # above every level
    ]:
        found = decode(quantised, frame_hw, threshold, iou, limit)
        assert found == decode(real, frame_hw, threshold, iou, limit)
        assert found or threshold > 0.99


@pytest.mark.parametrize("flip_test", [False, True])
def test_the_unit_decodes_the_model_s_raw_outputs_as_the_dequantised_ones(
    detector: ThermalDetector, flip_test: bool
) -> None:
    spec = world.WorldSpec(
        camera=CAMERA,
        persons=[actors.Person(name="p", path=[(0.0, 0.0, 12.0)])],
        cars=[world.Car(name="c", x_m=3.0, y_m=15.0)],
    )
    frame, _ = _frame(spec, "lepton35", seed=4)
    config = ThermalModelDetection(flip_test=flip_test)
    found = ThermalDetector(config).detect(frame)
    x = detector.prepare(frame)
    heads = split_outputs(detector.runner.invoke(x), "model")
    if flip_test:
        mirrored = split_outputs(detector.runner.invoke(np.ascontiguousarray(x[:, :, ::-1])), "m")
        heads = mirror_average(heads, mirrored)
    again = decode(heads, (120, 160), config.score_threshold, 0.6, 50)
    assert found and found == pytest.approx(again)
    raw = detector.runner.run_raw()
    assert {r.dtype.name for r in raw} == {"int8"}


def test_the_flip_test_sees_a_mirrored_frame_as_the_mirror_of_the_frame() -> None:
    """With flip_test the model sees each frame both ways: a frame and its mirror image give
    mirrored detections, and the person is found in both. (Not to the bit: the normalisation's
    statistics sample every 4th pixel, other pixels of a mirrored frame.)"""
    flipping = ThermalDetector(ThermalModelDetection(flip_test=True))
    spec = world.WorldSpec(
        camera=CAMERA,
        persons=[actors.Person(name="p", path=[(0.0, -2.0, 12.0)])],
        cars=[world.Car(name="c", x_m=3.0, y_m=15.0)],
    )
    frame, truth = _frame(spec, "lepton35", seed=4)
    mirrored = ThermalFrame(1, frame.t, np.ascontiguousarray(frame.data[:, ::-1]), True)
    found, found_mirrored = flipping.detect(frame), flipping.detect(mirrored)
    (person,) = [t for t in truth if t.cls == "person"]
    assert _best(found, _pixels(person, frame), "person") is not None
    assert len(found) == len(found_mirrored)
    width = frame.data.shape[1]
    left_first = sorted(found, key=lambda d: d.box)
    right_first = sorted(found_mirrored, key=lambda d: -d.box[2])
    for a, b in zip(left_first, right_first, strict=True):
        assert (a.cls, a.score) == (b.cls, pytest.approx(b.score, abs=0.02))
        mirror = (width - b.box[2], b.box[1], width - b.box[0], b.box[3])
        assert a.box == pytest.approx(mirror, abs=0.5)  # a cell is 2 pixels
