"""Thermal object detector plugin: the project's own int8 model (person, vehicle, animal).

One file holds the backend's config model (``ThermalModelDetection``) and its runtime class
(``ThermalDetector``). The model is a small CenterNet-style network trained on simulator frames by
the pipeline in ``models/thermal``; that pipeline imports :func:`normalize` and :func:`decode` from
here, so training, evaluation and the unit see the very same pre- and post-processing.

Input normalisation makes radiometric (centi-kelvin) and raw-count frames alike: subtract the
frame's median, divide by a robust spread (10th to 90th percentile) with a floor, clip. Frames of
another size (the MLX90640's 32x24) are resized bilinearly to the model input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from firmware.config.base import Strict
from firmware.detect.base import Detection
from firmware.detect.runner import ModelRunner
from firmware.errors import ModelError
from firmware.hal.base import ThermalFrame

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

CLASSES: tuple[str, ...] = ("person", "vehicle", "animal")
INPUT_HW = (120, 160)  # model input rows, columns
STRIDE = 4  # model input pixels per output cell
DEFAULT_MODEL = (
    Path(__file__).resolve().parents[2] / "models" / "thermal" / "polewatch_thermal_v1.tflite"
)

# Normalisation: (data - median) / max(p90 - p10, floor), clipped to [CLIP_LO, CLIP_HI].
CLIP_LO, CLIP_HI = -2.0, 6.0
RADIOMETRIC_PER_K = 100.0  # centi-kelvin
RAW_PER_K = 20.0  # a raw-count sensor's counts per kelvin, roughly (Lepton 3 high gain)
SPREAD_FLOOR_K = 3.0  # an empty, uniform scene is not stretched until its noise looks like objects
_SAMPLE_STEP = 4  # statistics from every 4th pixel each way: 1/16 of the cost, same answer


class ThermalModelDetection(Strict):
    """``[detection.thermal_model]``: the int8 thermal object detector (person, vehicle, animal)."""

    enabled: bool = True
    model: Annotated[str, Field(min_length=1)] | None = None  # None: the committed model
    threads: Annotated[int, Field(ge=1, le=8)] = 1
    score_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.4
    nms_iou: Annotated[float, Field(gt=0, le=1)] = 0.6  # class-agnostic; 1 disables it
    max_detections: Annotated[int, Field(ge=1, le=200)] = 50


@lru_cache(maxsize=8)
def _resize_matrix(n_out: int, n_in: int) -> F32:
    """Bilinear interpolation as a matrix (n_out, n_in), pixel centres aligned, edges clamped."""
    pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1.0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    w = (pos - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    m[rows, lo] += 1.0 - w
    m[rows, hi] += w
    m.setflags(write=False)
    return m


def resize(img: F32, hw: tuple[int, int] = INPUT_HW) -> F32:
    """Bilinear resize of a 2-D float image to (rows, columns) = hw."""
    if img.shape == hw:
        return img
    out = _resize_matrix(hw[0], img.shape[0]) @ img @ _resize_matrix(hw[1], img.shape[1]).T
    return np.asarray(out, dtype=np.float32)


def normalize(data: npt.NDArray[Any], radiometric: bool, hw: tuple[int, int] = INPUT_HW) -> F32:
    """A thermal frame (uint16) as the model's relative-contrast image, float32 (rows, cols)."""
    if data.ndim != 2 or data.shape[0] < 2 or data.shape[1] < 2:
        raise ValueError(f"a thermal frame must be a 2-D image, got shape {data.shape}")
    step = _SAMPLE_STEP if min(data.shape) >= 8 * _SAMPLE_STEP else 1
    sample = data[::step, ::step].ravel()
    n = sample.size
    k10, k50, k90 = n // 10, n // 2, (9 * n) // 10
    part = np.partition(sample, (k10, k50, k90))
    p10, median, p90 = float(part[k10]), float(part[k50]), float(part[k90])
    floor = SPREAD_FLOOR_K * (RADIOMETRIC_PER_K if radiometric else RAW_PER_K)
    scale = 1.0 / max(p90 - p10, floor)
    img = data.astype(np.float32)
    img -= np.float32(median)
    img *= np.float32(scale)
    np.clip(img, CLIP_LO, CLIP_HI, out=img)
    return resize(img, hw)


@dataclass(frozen=True)
class Heads:
    """The model's outputs for one image, identified by their channel counts."""

    heat: F32  # (rows, cols, classes) centre probability per class
    reg: F32  # (rows, cols, 4): centre offset x, y within the cell; log width, log height in cells
    lying: F32  # (rows, cols, 1) probability that a person centred there is lying


def split_outputs(outputs: list[F32], path: Path | str = "model") -> Heads:
    """Pick the heatmap, regression and lying outputs by channel count (their order may vary)."""
    by_channels: dict[int, F32] = {}
    for out in outputs:
        arr = out[0] if out.ndim == 4 else out
        if arr.ndim != 3:
            raise ModelError(f"{path}: output of shape {out.shape} is not (1, rows, cols, ch)")
        by_channels[arr.shape[-1]] = arr
    need = {len(CLASSES): "heatmap", 4: "box regression", 1: "lying"}
    missing = [name for ch, name in need.items() if ch not in by_channels]
    if missing or len(outputs) != 3:
        shapes = [tuple(o.shape) for o in outputs]
        raise ModelError(
            f"{path}: outputs {shapes} are not this detector's (heatmap with {len(CLASSES)} "
            f"channels, box regression with 4, lying with 1); missing: {', '.join(missing)}"
        )
    return Heads(by_channels[len(CLASSES)], by_channels[4], by_channels[1])


def _nms(boxes: F32, scores: F32, iou: float, limit: int) -> npt.NDArray[np.intp]:
    """Indices kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    if iou >= 1.0:
        return order[:limit]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size and len(keep) < limit:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        ix0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        iy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        ix1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        iy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(ix1 - ix0, 0) * np.maximum(iy1 - iy0, 0)
        union = areas[i] + areas[rest] - inter
        order = rest[inter <= iou * np.maximum(union, 1e-9)]
    return np.asarray(keep, dtype=np.intp)


def decode(
    heads: Heads,
    frame_hw: tuple[int, int],
    score_threshold: float,
    nms_iou: float = 0.6,
    max_detections: int = 50,
) -> list[Detection]:
    """Detections in a frame of frame_hw (rows, cols) pixels from the model's heads."""
    heat = heads.heat
    rows, cols, _ = heat.shape
    ys, xs, cs = np.nonzero(heat >= score_threshold)
    if ys.size == 0:
        return []
    # A peak is a local maximum of its class's heatmap in a 3x3 window.
    padded = np.pad(heat, ((1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    scores = heat[ys, xs, cs]
    peak = np.ones(ys.size, dtype=bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                peak &= scores >= padded[ys + dy, xs + dx, cs]
    ys, xs, cs, scores = ys[peak], xs[peak], cs[peak], scores[peak]
    reg = heads.reg[ys, xs]
    cx = (xs + reg[:, 0]) * STRIDE
    cy = (ys + reg[:, 1]) * STRIDE
    half_w = np.exp(reg[:, 2]) * (STRIDE / 2.0)
    half_h = np.exp(reg[:, 3]) * (STRIDE / 2.0)
    sx = frame_hw[1] / (cols * STRIDE)
    sy = frame_hw[0] / (rows * STRIDE)
    boxes = np.stack(
        [
            np.clip((cx - half_w) * sx, 0, frame_hw[1]),
            np.clip((cy - half_h) * sy, 0, frame_hw[0]),
            np.clip((cx + half_w) * sx, 0, frame_hw[1]),
            np.clip((cy + half_h) * sy, 0, frame_hw[0]),
        ],
        axis=1,
    ).astype(np.float32)
    keep = _nms(boxes, scores.astype(np.float32), nms_iou, max_detections)
    lying = heads.lying[ys, xs, 0]
    found: list[Detection] = []
    for i in keep:
        cls = CLASSES[int(cs[i])]
        found.append(
            Detection(
                cls=cls,
                score=float(scores[i]),
                box=(
                    float(boxes[i, 0]),
                    float(boxes[i, 1]),
                    float(boxes[i, 2]),
                    float(boxes[i, 3]),
                ),
                sensor="thermal",
                lying=float(lying[i]) if cls == "person" else None,
            )
        )
    return found


class ThermalDetector:
    """Runs the thermal object model on thermal frames of any size, radiometric or raw."""

    def __init__(self, config: ThermalModelDetection) -> None:
        self.config = config
        self.path = Path(config.model) if config.model is not None else DEFAULT_MODEL
        self.runner = ModelRunner(self.path, threads=config.threads)
        self.runner.expect_input(channels=1, dtypes=("int8", "uint8", "float32"))
        self.input_hw = (int(self.runner.input_shape[1]), int(self.runner.input_shape[2]))
        shapes = [o.shape for o in self.runner.outputs]
        expected = (1, self.input_hw[0] // STRIDE, self.input_hw[1] // STRIDE)
        if any(tuple(s[:3]) != expected for s in shapes):
            raise ModelError(
                f"{self.path}: output shapes {shapes} do not match stride {STRIDE} on input "
                f"{self.runner.input_shape}"
            )
        split_outputs([np.zeros(s, dtype=np.float32) for s in shapes], self.path)

    def prepare(self, frame: ThermalFrame) -> npt.NDArray[Any]:
        """The frame as the model's input tensor (1, rows, cols, 1) in the model's type."""
        img = normalize(frame.data, frame.radiometric, self.input_hw)
        return self.runner.quantize(img[None, :, :, None])

    def detect(self, frame: ThermalFrame) -> list[Detection]:
        """Persons, vehicles and animals in one frame, boxes in the frame's pixels."""
        outputs = self.runner.invoke(self.prepare(frame))
        heads = split_outputs(outputs, self.path)
        return decode(
            heads,
            (int(frame.data.shape[0]), int(frame.data.shape[1])),
            self.config.score_threshold,
            self.config.nms_iou,
            self.config.max_detections,
        )
