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
from collections.abc import Sequence
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
DEFAULT_MODEL = (
    Path(__file__).resolve().parents[2] / "models" / "thermal" / "polewatch_thermal_v4.tflite"
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


def _nms(boxes: F32, scores: F32, iou: float, limit: int) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best first."""
    order: list[int] = np.argsort(-scores, kind="stable").tolist()
    if iou >= 1.0:
        return order[:limit]
    # Every pair's overlap at once (the same float32 arithmetic as pair by pair), then the greedy
    # pass in plain Python: there are a few dozen peaks at most.
    size = boxes[:, 2:] - boxes[:, :2]
    areas = size[:, 0] * size[:, 1]
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    overlap = np.maximum(hi - lo, 0)
    inter = overlap[..., 0] * overlap[..., 1]
    union = areas[:, None] + areas[None, :] - inter
    apart: list[list[bool]] = (inter <= iou * np.maximum(union, 1e-9)).tolist()
    keep: list[int] = []
    while order and len(keep) < limit:
        i = order[0]
        keep.append(i)
        row = apart[i]
        order = [j for j in order[1:] if row[j]]
    return keep


def _peaks(heat: F32, score_threshold: float) -> tuple[npt.NDArray[np.intp], ...]:
    """Row, column and class of the cells at or above the threshold that are a local maximum of
    their class's heatmap in a 3x3 window (cells outside the map count as -1), in C order."""
    rows, cols, classes = heat.shape
    ys, xs, cs = np.nonzero(heat >= score_threshold)
    if ys.size == 0:
        return ys, xs, cs
    padded = np.full((rows + 2, cols + 2, classes), -1.0, dtype=heat.dtype)
    padded[1:-1, 1:-1] = heat
    row_step, col_step, offsets = _neighbours(cols, classes)
    centre = (ys + 1) * row_step + (xs + 1) * col_step + cs
    flat = padded.ravel()
    peak = flat[centre] >= flat[centre[:, None] + offsets].max(axis=1)
    return ys[peak], xs[peak], cs[peak]


@lru_cache(maxsize=8)
def _neighbours(cols: int, classes: int) -> tuple[int, int, npt.NDArray[np.intp]]:
    """Row and column strides of a padded (rows + 2, cols + 2, classes) map, and the offsets of
    a cell's 8 neighbours in it, flattened."""
    row_step, col_step = (cols + 2) * classes, classes
    offsets = np.array(
        [dy * row_step + dx * col_step for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx],
        dtype=np.intp,
    )
    offsets.setflags(write=False)
    return row_step, col_step, offsets


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
    ys, xs, cs = _peaks(heat, score_threshold)
    if ys.size == 0:
        return []
    scores = heat[ys, xs, cs]
    reg = heads.reg[ys, xs]
    # x and y side by side, in output cells (the model's stride cancels out), then frame pixels.
    centre = np.stack([xs, ys], axis=1) + reg[:, :2]
    half = np.exp(reg[:, 2:]) * 0.5
    scale = np.array([frame_hw[1] / cols, frame_hw[0] / rows])
    limit = np.array([frame_hw[1], frame_hw[0]], dtype=np.float64)
    boxes = np.concatenate(
        [
            np.minimum(np.maximum((centre - half) * scale, 0), limit),
            np.minimum(np.maximum((centre + half) * scale, 0), limit),
        ],
        axis=1,
    ).astype(np.float32)
    keep = _nms(boxes, scores.astype(np.float32), nms_iou, max_detections)
    box_list: list[list[float]] = boxes.tolist()
    score_list: list[float] = scores.tolist()
    lying: list[float] = heads.lying[ys, xs, 0].tolist()
    classes: list[int] = cs.tolist()
    found: list[Detection] = []
    for i in keep:
        cls = CLASSES[classes[i]]
        x0, y0, x1, y1 = box_list[i]
        found.append(
            Detection(
                cls=cls,
                score=score_list[i],
                box=(x0, y0, x1, y1),
                sensor="thermal",
                lying=lying[i] if cls == "person" else None,
            )
        )
    return found


def output_stride(
    input_hw: tuple[int, int], shapes: Sequence[Sequence[int]], path: Path | str = "model"
) -> int:
    """Input pixels per output cell: the heads must share one grid at a whole-number stride of
    the input, the same both ways (v3 has 4; later models may have a finer grid)."""
    grids = {tuple(int(d) for d in s[:3]) for s in shapes}
    if len(grids) == 1:
        _, rows, cols = next(iter(grids))
        if rows > 0 and cols > 0 and input_hw[0] % rows == 0 and input_hw[1] % cols == 0:
            stride = input_hw[0] // rows
            if input_hw[1] // cols == stride:
                return stride
    raise ModelError(
        f"{path}: output shapes {[tuple(s) for s in shapes]} are not one grid at a whole-number "
        f"stride of the input {input_hw}"
    )


class ThermalDetector:
    """Runs the thermal object model on thermal frames of any size, radiometric or raw."""

    def __init__(self, config: ThermalModelDetection) -> None:
        self.config = config
        self.path = Path(config.model) if config.model is not None else DEFAULT_MODEL
        self.runner = ModelRunner(self.path, threads=config.threads)
        self.runner.expect_input(channels=1, dtypes=("int8", "uint8", "float32"))
        self.input_hw = (int(self.runner.input_shape[1]), int(self.runner.input_shape[2]))
        shapes = [o.shape for o in self.runner.outputs]
        output_stride(self.input_hw, shapes, self.path)  # refuses heads off one grid
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
