"""The visible detector: the reference SSD model on real images, YOLO decoding, label maps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from firmware.config.load import validate_model
from firmware.config.site import DetectionConfig
from firmware.detect.base import Detection
from firmware.detect.runner import dequantize
from firmware.detect.visible import (
    DEFAULT_CLASS_MAP,
    VisibleDetection,
    VisibleDetector,
    decode_yolo,
    load_labels,
    nms,
)
from firmware.errors import ConfigError, HardwareError, ModelError
from firmware.hal.base import VisibleFrame

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MODEL_DIR = DATA / "models" / "ssd_mobilenet_v1_coco_quant"
IMAGES = DATA / "images"

needs_data = pytest.mark.skipif(
    not (MODEL_DIR / "detect.tflite").is_file() or not IMAGES.is_dir(),
    reason="reference model and images not found (../shared/data is absent)",
)


def ssd_config(**overrides: Any) -> VisibleDetection:
    return VisibleDetection(
        model=str(MODEL_DIR / "detect.tflite"), labels=str(MODEL_DIR / "labels.txt"), **overrides
    )


@pytest.fixture(scope="module")
def detector() -> VisibleDetector:
    if not (MODEL_DIR / "detect.tflite").is_file():
        pytest.skip("reference model not found (../shared/data is absent)")
    return VisibleDetector(ssd_config(score_threshold=0.4))


def frame(name: str) -> VisibleFrame:
    image = pytest.importorskip("PIL.Image")
    with image.open(IMAGES / name) as img:
        rgb = np.asarray(img.convert("RGB"))
    return VisibleFrame(index=1, t=0.0, rgb=rgb)


def inside(d: Detection, rgb: np.ndarray[Any, Any]) -> bool:
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = d.box
    return 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


# --- acceptance: the reference SSD model through the detector -------------------------------------


@needs_data
@pytest.mark.parametrize("name", ["grace_hopper.bmp", "squat.bmp"])
def test_persons_are_found(detector: VisibleDetector, name: str) -> None:
    f = frame(name)
    found = detector.detect(f)
    persons = [d for d in found if d.cls == "person"]
    assert persons, f"no person in {name}: {found}"
    best = max(persons, key=lambda d: d.score)
    assert best.sensor == "visible" and best.label is None and best.score >= 0.4
    assert inside(best, f.rgb)
    h, w = f.rgb.shape[:2]
    x0, y0, x1, y1 = best.box
    assert (x1 - x0) * (y1 - y0) > 0.2 * w * h  # the person fills much of these portraits
    # Labels the class map does not name (grace_hopper's tie) are dropped.
    assert {d.cls for d in found} <= {"person", "vehicle", "animal"}


@needs_data
def test_cars_are_found_as_vehicles(detector: VisibleDetector) -> None:
    f = frame("0001.bmp")
    cars = [d for d in detector.detect(f) if d.cls == "vehicle"]
    assert len(cars) >= 2
    assert all(d.label == "car" and inside(d, f.rgb) for d in cars)
    # The two cars are in different places.
    centres = sorted(d.bottom_centre[0] for d in cars)
    assert centres[-1] - centres[0] > 50


@needs_data
def test_unmapped_labels_come_through_a_custom_class_map() -> None:
    det = VisibleDetector(ssd_config(score_threshold=0.4, class_map={"kite": "animal"}))
    found = det.detect(frame("kite_and_cold.jpg"))
    assert found and all(d.cls == "animal" and d.label == "kite" for d in found)


@needs_data
def test_letterbox_maps_boxes_back_to_the_frame() -> None:
    stretch = VisibleDetector(ssd_config(score_threshold=0.4))
    letter = VisibleDetector(ssd_config(score_threshold=0.3, resize="letterbox"))
    assert letter.letterbox and not stretch.letterbox
    f = frame("squat.bmp")
    a = max(stretch.detect(f), key=lambda d: d.score)
    b = max(letter.detect(f), key=lambda d: d.score)
    assert a.cls == b.cls == "person" and inside(b, f.rgb)
    # The same person, wherever the padding put it in the model's input.
    ax, ay = a.bottom_centre
    bx, by = b.bottom_centre
    assert abs(ax - bx) < 40 and abs(ay - by) < 40


@needs_data
def test_detection_is_repeatable_and_frames_are_not_modified(detector: VisibleDetector) -> None:
    f = frame("0001.bmp")
    before = f.rgb.copy()
    assert detector.detect(f) == detector.detect(f)
    np.testing.assert_array_equal(f.rgb, before)


@needs_data
def test_bad_frames_and_mismatched_kind_are_refused(detector: VisibleDetector) -> None:
    with pytest.raises(HardwareError, match="HxWx3 uint8"):
        detector.detect(VisibleFrame(1, 0.0, np.zeros((10, 10), dtype=np.uint8)))
    with pytest.raises(ModelError, match="kind = 'yolo' but the outputs are not YOLO-style"):
        VisibleDetector(ssd_config(kind="yolo"))


@needs_data
def test_threads_come_from_config_or_the_board_default() -> None:
    assert VisibleDetector(ssd_config(), default_threads=2).runner.threads == 2
    assert VisibleDetector(ssd_config(threads=1), default_threads=2).runner.threads == 1


# --- config ------------------------------------------------------------------------------------


@needs_data
def test_config_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    rel_model = Path(os.path.relpath(MODEL_DIR / "detect.tflite", tmp_path))
    data = {"visible": {"model": str(rel_model), "labels": str(MODEL_DIR / "labels.txt")}}
    cfg = validate_model(DetectionConfig, data, site)
    assert cfg.visible is not None
    assert Path(cfg.visible.model) == (MODEL_DIR / "detect.tflite").resolve()
    assert cfg.visible.class_map == DEFAULT_CLASS_MAP
    assert cfg.visible.label_map[0] == "person"


@needs_data
def test_config_errors_name_the_key(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    (tmp_path / "bad.tflite").write_bytes(b"not a model at all")
    data = {
        "visible": {
            "model": "bad.tflite",
            "labels": str(MODEL_DIR / "labels.txt"),
            "class_map": {"persn": "person"},
        }
    }
    with pytest.raises(ConfigError) as info:
        validate_model(DetectionConfig, data, site)
    text = str(info.value)
    assert "visible.model:" in text and "not a TFLite model" in text
    assert "visible.class_map.persn: no such label" in text
    data = {"visible": {"model": "absent.tflite", "labels": "absent.txt", "kind": "rcnn"}}
    with pytest.raises(ConfigError, match=r"visible\.kind"):
        validate_model(DetectionConfig, data, site)
    off = VisibleDetection(enabled=False, model="absent.tflite", labels="absent.txt")
    assert Path(off.model).is_absolute() and off.label_map == {}
    with pytest.raises(ValidationError, match="no such model file"):
        VisibleDetection(
            model=str(tmp_path / "absent.tflite"), labels=str(MODEL_DIR / "labels.txt")
        )


# --- label maps ----------------------------------------------------------------------------------


def test_labels_one_per_line_with_placeholder(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("???\nperson\nbicycle\n???\ncar\n\n")
    assert load_labels(path) == {0: "person", 1: "bicycle", 3: "car"}
    assert load_labels(path, offset=0) == {1: "person", 2: "bicycle", 4: "car"}


def test_labels_one_per_line_without_placeholder(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("person\ncar\ndog\n")
    assert load_labels(path) == {0: "person", 1: "car", 2: "dog"}


def test_labels_id_label_format(tmp_path: Path) -> None:
    path = tmp_path / "coco_labels.txt"
    path.write_text("0  person\n1  bicycle\n2  car\n12  stop sign\n")
    assert load_labels(path) == {0: "person", 1: "bicycle", 2: "car", 12: "stop sign"}
    assert load_labels(path, offset=1) == {0: "bicycle", 1: "car", 11: "stop sign"}


def test_labels_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"absent\.txt: no such label file"):
        load_labels(tmp_path / "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ModelError, match="empty"):
        load_labels(empty)
    twice = tmp_path / "twice.txt"
    twice.write_text("0 person\n1 car\n1 bus\n")
    with pytest.raises(ModelError, match="line 3: id 1 is listed twice"):
        load_labels(twice)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00person")
    with pytest.raises(ModelError, match="not UTF-8"):
        load_labels(binary)


@needs_data
def test_reference_label_map() -> None:
    labels = load_labels(MODEL_DIR / "labels.txt")
    assert labels[0] == "person" and labels[2] == "car" and labels[15] == "bird"
    assert 11 not in labels  # a ??? line: no class


# --- YOLO decoding on arrays ----------------------------------------------------------------------


def yolo_rows(cands: list[tuple[float, float, float, float, int, float]], nc: int) -> np.ndarray:
    """Rows of cx, cy, w, h, class scores for a [1, N, 4+C] output."""
    out = np.zeros((1, len(cands), 4 + nc), dtype=np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(cands):
        out[0, i, :4] = (cx, cy, w, h)
        out[0, i, 4 + cls] = score
    return out


CANDS = [
    (100.0, 100.0, 40.0, 80.0, 0, 0.9),  # a person
    (102.0, 101.0, 40.0, 80.0, 0, 0.8),  # the same person again: suppressed
    (101.0, 100.0, 40.0, 80.0, 2, 0.7),  # a car in the same place: another class, kept
    (250.0, 200.0, 60.0, 30.0, 2, 0.6),  # another car
    (300.0, 300.0, 10.0, 10.0, 1, 0.1),  # below the threshold
]


def test_yolo_decode_rows_with_per_class_nms() -> None:
    boxes, scores, classes = decode_yolo(
        yolo_rows(CANDS, 3), (320, 320), score_threshold=0.25, iou_threshold=0.5, num_classes=3
    )
    assert classes.tolist() == [0, 2, 2]
    np.testing.assert_allclose(scores, [0.9, 0.7, 0.6])
    np.testing.assert_allclose(boxes[0], [80, 60, 120, 140])
    np.testing.assert_allclose(boxes[2], [220, 185, 280, 215])


def test_yolo_decode_channels_first_and_normalised() -> None:
    rows = yolo_rows(CANDS, 3)
    rows[0, :, :4] /= 320.0
    out = np.ascontiguousarray(rows.transpose(0, 2, 1))  # [1, 4+C, N]
    assert out.shape == (1, 7, 5)
    boxes, _, classes = decode_yolo(
        out, (320, 320), score_threshold=0.25, iou_threshold=0.5, num_classes=3
    )
    assert classes.tolist() == [0, 2, 2]
    np.testing.assert_allclose(boxes[0], [80, 60, 120, 140], atol=1e-4)


def test_yolo_decode_many_candidates_channels_first() -> None:
    rng = np.random.default_rng(3)
    out = np.zeros((1, 84, 8400), dtype=np.float32)
    out[0, :4] = rng.uniform(0, 640, (4, 8400))
    out[0, 4:] = rng.uniform(0, 0.2, (80, 8400))
    out[0, :4, 17] = (320, 320, 100, 200)
    out[0, 4 + 5, 17] = 0.95
    boxes, scores, classes = decode_yolo(out, (640, 640), score_threshold=0.5, iou_threshold=0.45)
    assert classes.tolist() == [5] and scores.tolist() == [pytest.approx(0.95)]
    np.testing.assert_allclose(boxes[0], [270, 220, 370, 420])


def test_yolo_decode_objectness_column() -> None:
    nc = 2
    out = np.zeros((1, 2, 5 + nc), dtype=np.float32)
    out[0, 0] = (50, 50, 20, 20, 0.9, 0.8, 0.1)  # 0.9 * 0.8 = 0.72
    out[0, 1] = (150, 50, 20, 20, 0.2, 0.1, 0.9)  # 0.2 * 0.9 = 0.18: under the threshold
    _, scores, classes = decode_yolo(
        out, (320, 320), score_threshold=0.25, iou_threshold=0.5, num_classes=nc
    )
    assert classes.tolist() == [0]
    np.testing.assert_allclose(scores, [0.72])


def test_yolo_decode_int8_quantised_output() -> None:
    real = yolo_rows(CANDS, 3)
    real[0, :, :4] /= 320.0  # one tensor holds normalised boxes and scores in 0..1
    scale, zero_point = 1 / 255, -128
    q = np.clip(np.rint(real / scale) + zero_point, -128, 127).astype(np.int8)
    boxes, scores, classes = decode_yolo(
        dequantize(q, scale, zero_point),
        (320, 320),
        score_threshold=0.25,
        iou_threshold=0.5,
        num_classes=3,
    )
    assert classes.tolist() == [0, 2, 2]
    np.testing.assert_allclose(scores, [0.9, 0.7, 0.6], atol=1 / 255)
    np.testing.assert_allclose(boxes[0], [80, 60, 120, 140], atol=2.0)


def test_yolo_decode_max_detections_and_bad_shape() -> None:
    boxes, _, _ = decode_yolo(
        yolo_rows(CANDS, 3), (320, 320), score_threshold=0.25, iou_threshold=0.5, max_detections=1
    )
    assert len(boxes) == 1
    with pytest.raises(ModelError, match="YOLO output must be"):
        decode_yolo(
            np.zeros((10, 84), np.float32), (640, 640), score_threshold=0.5, iou_threshold=0.5
        )
    empty = decode_yolo(
        np.zeros((1, 84, 100), np.float32), (640, 640), score_threshold=0.5, iou_threshold=0.5
    )
    assert all(len(a) == 0 for a in empty)


def test_nms_suppresses_overlaps_and_keeps_the_best() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.3], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.5, np.array([0, 0, 0, 1])).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.99).tolist() == [1, 2, 0, 3]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


# --- a tiny int8 YOLO-style model, end to end -----------------------------------------------------

YOLO_IN = (4, 7)  # input height, width: 4 * 7 * 3 = 84 values = 12 candidates of 4 + 3 values
YOLO_SCALE, YOLO_ZERO = 1 / 255, -128


def build_yolo_model(path: Path, int8: bool = True) -> Path:
    """An int8 (or float32) model whose output [1, 12, 7] is its input [1, 4, 7, 3] reshaped.

    Built with LiteRT's own flatbuffer schema (no TensorFlow): a frame whose bytes encode YOLO
    candidates then goes through the whole detector, int8 input and dequantised output included.
    """
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    flatbuffers = pytest.importorskip("flatbuffers")

    def tensor(name: str, shape: list[int], buffer: int) -> Any:
        t = schema.TensorT()
        t.name, t.shape, t.buffer = name, shape, buffer
        t.type = schema.TensorType.INT8 if int8 else schema.TensorType.FLOAT32
        if int8:
            t.quantization = schema.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [YOLO_SCALE], [YOLO_ZERO]
        return t

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RESHAPE
    code.version = 1
    options = schema.ReshapeOptionsT()
    options.newShape = [1, 12, 7]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.ReshapeOptions, options
    graph = schema.SubGraphT()
    graph.tensors = [tensor("images", [1, *YOLO_IN, 3], 1), tensor("output0", [1, 12, 7], 2)]
    graph.inputs, graph.outputs, graph.operators = [0], [1], [op]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [schema.BufferT() for _ in range(3)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
    return path


def yolo_frame(
    cands: list[tuple[float, float, float, float, int, float]], int8: bool = True
) -> np.ndarray:
    """An RGB frame whose pixels, through the model's input, are the YOLO output."""
    real = np.zeros((1, 12, 7), dtype=np.float32)  # unused candidates score 0
    real[:, : len(cands)] = yolo_rows(cands, 3)
    real[0, :, :4] /= np.array([YOLO_IN[1], YOLO_IN[0]] * 2, dtype=np.float32)  # normalised
    if not int8:
        return np.rint(real * 255).astype(np.uint8).reshape(*YOLO_IN, 3)  # input = pixel / 255
    q = np.clip(np.rint(real / YOLO_SCALE) + YOLO_ZERO, -128, 127).astype(np.int8)
    return (q.view(np.uint8) ^ 0x80).reshape(*YOLO_IN, 3)  # pixel - 128 is the int8 input


@pytest.mark.parametrize("int8", [True, False], ids=["int8", "float32"])
def test_yolo_model_end_to_end(tmp_path: Path, int8: bool) -> None:
    model = build_yolo_model(tmp_path / "yolo.tflite", int8)
    labels = tmp_path / "labels.txt"
    labels.write_text("person\ncar\ndog\n")
    det = VisibleDetector(
        VisibleDetection(model=str(model), labels=str(labels), score_threshold=0.3)
    )
    assert det.kind == "yolo" and det.letterbox
    assert det.runner.input_dtype == (np.int8 if int8 else np.float32)
    cands = [
        (3.5, 2.0, 2.8, 2.4, 0, 0.9),  # a person, in model-input pixels
        (3.6, 2.0, 2.8, 2.4, 0, 0.8),  # the same person again: suppressed
        (1.0, 1.0, 1.4, 1.2, 1, 0.2),  # a car under the threshold
        (5.5, 3.0, 2.0, 1.6, 2, 0.7),  # a dog
    ]
    rgb = yolo_frame(cands, int8)
    found = det.detect(VisibleFrame(1, 0.0, rgb))
    assert [(d.cls, d.label) for d in found] == [("person", None), ("animal", "dog")]
    assert found[0].score == pytest.approx(0.9, abs=1 / 255)
    np.testing.assert_allclose(found[0].box, (2.1, 0.8, 4.9, 3.2), atol=0.05)
    np.testing.assert_allclose(found[1].box, (4.5, 2.2, 6.5, 3.8), atol=0.05)
    # A frame twice the size: resized into the model, and boxes scaled back to the frame.
    big = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)
    found2 = det.detect(VisibleFrame(2, 0.0, big))
    assert [d.cls for d in found2] == ["person", "animal"]
    np.testing.assert_allclose(found2[0].box, (4.2, 1.6, 9.8, 6.4), atol=0.1)
    with pytest.raises(ModelError, match="kind = 'ssd' but the outputs are not SSD-style"):
        VisibleDetector(VisibleDetection(model=str(model), labels=str(labels), kind="ssd"))
