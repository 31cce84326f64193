"""Thermal object detector plugin: the project's own int8 model (person, vehicle, animal).

One file holds the backend's config model (``ThermalModelDetection``) and its runtime class
(``ThermalDetector``). The model is a small CenterNet-style network trained on simulator frames by
the pipeline in ``models/thermal``; that pipeline imports :func:`normalize` and :func:`decode` from
here, so training, evaluation and the unit see the very same pre- and post-processing.

Input normalisation makes radiometric (centi-kelvin) and raw-count frames alike: subtract the
frame's median, divide by a robust spread (10th to 90th percentile) held between a floor and a
cap, clip. Frames of another size (the MLX90640's 32x24) are resized bilinearly to the model input.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from firmware.config.base import Strict
from firmware.detect.base import Detection
from firmware.detect.runner import ModelRunner, dequantize
from firmware.errors import ModelError
from firmware.hal.base import ThermalFrame

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

CLASSES: tuple[str, ...] = ("person", "vehicle", "animal")
INPUT_HW = (120, 160)  # model input rows, columns
DEFAULT_MODEL = (
    Path(__file__).resolve().parents[2] / "models" / "thermal" / "polewatch_thermal_v7.tflite"
)

# Normalisation: (data - median) / spread, clipped to [CLIP_LO, CLIP_HI], where the spread is
# p90 - p10 held between SPREAD_FLOOR_K and SPREAD_CAP_K.
CLIP_LO, CLIP_HI = -2.0, 6.0
RADIOMETRIC_PER_K = 100.0  # centi-kelvin
RAW_PER_K = 20.0  # a raw-count sensor's counts per kelvin, roughly (Lepton 3 high gain)
SPREAD_FLOOR_K = 3.0  # an empty, uniform scene is not stretched until its noise looks like objects
# A sunlit lot spreads over 10-40 K (hot asphalt and roofs, cold sky): divided by all of it, a
# person 3 K off the asphalt was a few int8 steps of the input, and v4 found 61 % of the persons
# in daytime scenes against 87 % at night. Night scenes (a 1-8 K spread) are not changed.
SPREAD_CAP_K = 8.0
_SAMPLE_STEP = 4  # statistics from every 4th pixel each way: 1/16 of the cost, same answer


class ThermalModelDetection(Strict):
    """``[detection.thermal_model]``: the int8 thermal object detector (person, vehicle, animal)."""

    enabled: bool = True
    model: Annotated[str, Field(min_length=1)] | None = None  # None: the committed model
    threads: Annotated[int, Field(ge=1, le=8)] = 1
    # The score where person precision and recall meet on a tuning split of their own (seed + 1,
    # 300 worlds, flip test on); models/thermal/MODEL_CARD.md reports the test split there.
    score_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.32
    nms_iou: Annotated[float, Field(gt=0, le=1)] = 0.6  # class-agnostic; 1 disables it
    max_detections: Annotated[int, Field(ge=1, le=200)] = 50
    # Also run the model on the mirrored frame and average the two (CenterNet's flip test):
    # fewer false persons at the same recall, for twice the model's time.
    flip_test: bool = True


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


def counts_per_kelvin(radiometric: bool) -> float:
    """A sensor's counts per kelvin: exact for centi-kelvin, a typical gain for raw counts."""
    return RADIOMETRIC_PER_K if radiometric else RAW_PER_K


def frame_scale(data: npt.NDArray[Any], radiometric: bool) -> tuple[float, float]:
    """The frame's median and the spread normalisation divides by, both in the frame's counts."""
    if data.ndim != 2 or data.shape[0] < 2 or data.shape[1] < 2:
        raise ValueError(f"a thermal frame must be a 2-D image, got shape {data.shape}")
    step = _SAMPLE_STEP if min(data.shape) >= 8 * _SAMPLE_STEP else 1
    sample = data[::step, ::step].ravel()
    n = sample.size
    k10, k50, k90 = n // 10, n // 2, (9 * n) // 10
    part = np.partition(sample, (k10, k50, k90))
    p10, median, p90 = float(part[k10]), float(part[k50]), float(part[k90])
    per_k = counts_per_kelvin(radiometric)
    return median, min(max(p90 - p10, SPREAD_FLOOR_K * per_k), SPREAD_CAP_K * per_k)


def normalize(data: npt.NDArray[Any], radiometric: bool, hw: tuple[int, int] = INPUT_HW) -> F32:
    """A thermal frame (uint16) as the model's relative-contrast image, float32 (rows, cols)."""
    median, spread = frame_scale(data, radiometric)
    img = data.astype(np.float32)
    img -= np.float32(median)
    img *= np.float32(1.0 / spread)
    np.clip(img, CLIP_LO, CLIP_HI, out=img)
    return resize(img, hw)


Quantization = tuple[float, int]  # an int8 output's scale and zero point


@dataclass(frozen=True)
class Heads:
    """The model's outputs for one image, identified by their channel counts.

    The arrays are real values, or the model's raw integers with the (scale, zero point) of each
    in ``quantization``: decoding then compares integers and dequantises only the cells it keeps,
    not the whole maps (about a twentieth of the model's time on every frame).
    """

    heat: npt.NDArray[Any]  # (rows, cols, classes) centre probability per class
    reg: npt.NDArray[Any]  # (rows, cols, 4): centre offset x, y in the cell; log width, height
    lying: npt.NDArray[Any]  # (rows, cols, 1) probability that a person centred there is lying
    quantization: tuple[Quantization, Quantization, Quantization] | None = None


def _real(values: npt.NDArray[Any], quantization: Quantization | None) -> npt.NDArray[Any]:
    """Picked output values as real numbers."""
    if quantization is None:
        return values
    return dequantize(values, *quantization)


@lru_cache(maxsize=16)
def _raw_at_least(threshold: float, scale: float, zero_point: int, dtype: str) -> int:
    """The smallest integer of dtype whose dequantised value is at least threshold (one past
    the largest when none is): comparing integers then keeps exactly the cells that comparing
    dequantised values would."""
    info = np.iinfo(dtype)
    levels = dequantize(np.arange(info.min, info.max + 1), scale, zero_point)
    return int(info.min) + int(np.searchsorted(levels, np.float32(threshold), side="left"))


def split_outputs(
    outputs: Sequence[npt.NDArray[Any]],
    path: Path | str = "model",
    quantization: Sequence[Quantization | None] | None = None,
) -> Heads:
    """Pick the heatmap, regression and lying outputs by channel count (their order may vary).

    With ``quantization`` (one entry per output, None for a float one), the outputs are the
    model's raw values and the heads keep them so; without, they are real values.
    """
    by_channels: dict[int, tuple[npt.NDArray[Any], Quantization | None]] = {}
    for i, out in enumerate(outputs):
        arr = out[0] if out.ndim == 4 else out
        if arr.ndim != 3:
            raise ModelError(f"{path}: output of shape {out.shape} is not (1, rows, cols, ch)")
        by_channels[arr.shape[-1]] = (arr, quantization[i] if quantization else None)
    need = {len(CLASSES): "heatmap", 4: "box regression", 1: "lying"}
    missing = [name for ch, name in need.items() if ch not in by_channels]
    if missing or len(outputs) != 3:
        shapes = [tuple(o.shape) for o in outputs]
        raise ModelError(
            f"{path}: outputs {shapes} are not this detector's (heatmap with {len(CLASSES)} "
            f"channels, box regression with 4, lying with 1); missing: {', '.join(missing)}"
        )
    (heat, hq), (reg, rq), (lying, lq) = (by_channels[ch] for ch in (len(CLASSES), 4, 1))
    if hq is None and rq is None and lq is None:
        return Heads(heat, reg, lying)
    # A float output among quantised ones reads as scale 1, zero point 0 would not: keep it real.
    if hq is None or rq is None or lq is None:
        return Heads(_real(heat, hq), _real(reg, rq), _real(lying, lq))
    return Heads(heat, reg, lying, (hq, rq, lq))


def mirror_average(heads: Heads, mirrored: Heads) -> Heads:
    """The real-valued mean of a frame's heads and those of its mirror image, flipped back.

    A centre at column c with in-cell offset o is, in the mirror image, at column cols - 1 - c
    with offset 1 - o; sizes and probabilities need only the flip.
    """
    h1, r1, l1 = _real_heads(heads)
    h2, r2, l2 = _real_heads(mirrored)
    reg = r2[:, ::-1].copy()
    reg[..., 0] = 1.0 - reg[..., 0]
    return Heads(
        (h1 + h2[:, ::-1]) * np.float32(0.5),
        (r1 + reg) * np.float32(0.5),
        (l1 + l2[:, ::-1]) * np.float32(0.5),
    )


def _real_heads(heads: Heads) -> tuple[F32, F32, F32]:
    """The heatmap, regression and lying maps as real values."""
    hq, rq, lq = heads.quantization or (None, None, None)
    return (
        np.asarray(_real(heads.heat, hq), dtype=np.float32),
        np.asarray(_real(heads.reg, rq), dtype=np.float32),
        np.asarray(_real(heads.lying, lq), dtype=np.float32),
    )


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


def _peaks(heat: npt.NDArray[Any], threshold: float | int) -> tuple[npt.NDArray[np.intp], ...]:
    """Row, column and class of the cells at or above the threshold that are a local maximum of
    their class's heatmap in a 3x3 window (cells outside the map count as below every cell), in
    C order; heat is real probabilities, or the raw integers with an integer threshold."""
    rows, cols, classes = heat.shape
    # Flat indices split by hand: np.nonzero on the 3-D map costs six times as much.
    flat = np.flatnonzero(heat >= threshold)
    ys, rest = np.divmod(flat, cols * classes)
    xs, cs = np.divmod(rest, classes)
    if flat.size == 0:
        return ys, xs, cs
    outside = np.iinfo(heat.dtype).min if heat.dtype.kind in "iu" else -1.0
    padded = np.full((rows + 2, cols + 2, classes), outside, dtype=heat.dtype)
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


@lru_cache(maxsize=8)
def _pixel_scale(
    frame_hw: tuple[int, int], rows: int, cols: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Frame pixels per output cell and the frame's size, as (x, y, x, y) rows."""
    scale = np.array([frame_hw[1] / cols, frame_hw[0] / rows] * 2)
    limit = np.array([frame_hw[1], frame_hw[0]] * 2, dtype=np.float64)
    scale.setflags(write=False)
    limit.setflags(write=False)
    return scale, limit


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
    hq, rq, lq = heads.quantization or (None, None, None)
    threshold: float | int = score_threshold
    if hq is not None:
        threshold = _raw_at_least(score_threshold, *hq, heat.dtype.name)
    ys, xs, cs = _peaks(heat, threshold)
    if ys.size == 0:
        return []
    scores = _real(heat[ys, xs, cs], hq)
    reg = _real(heads.reg[ys, xs], rq)
    # x and y side by side, in output cells (the model's stride cancels out), then frame pixels.
    centre = np.stack([xs, ys], axis=1) + reg[:, :2]
    half = np.exp(reg[:, 2:]) * 0.5
    corners = np.empty((centre.shape[0], 4))
    corners[:, :2] = centre - half
    corners[:, 2:] = centre + half
    scale, limit = _pixel_scale(frame_hw, rows, cols)
    corners *= scale
    np.clip(corners, 0.0, limit, out=corners)
    boxes = corners.astype(np.float32)
    keep = _nms(boxes, scores.astype(np.float32), nms_iou, max_detections)
    box_list: list[list[float]] = boxes.tolist()
    score_list: list[float] = scores.tolist()
    lying: list[float] = _real(heads.lying[ys, xs, 0], lq).tolist()
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
        self._quantization = [
            (o.scale, o.zero_point) if o.quantized else None for o in self.runner.outputs
        ]
        self._invoker: ThreadPoolExecutor | None = None  # the model's thread, for start()
        self._running: Future[list[npt.NDArray[Any]]] | None = None

    def prepare(self, frame: ThermalFrame) -> npt.NDArray[Any]:
        """The frame as the model's input tensor (1, rows, cols, 1) in the model's type."""
        img = normalize(frame.data, frame.radiometric, self.input_hw)
        return self.runner.quantize(img[None, :, :, None])

    def detect(self, frame: ThermalFrame) -> list[Detection]:
        """Persons, vehicles and animals in one frame, boxes in the frame's pixels."""
        return self.finish(frame, self.run(self.prepare(frame)))

    def run(self, x: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        """The model's raw outputs for a prepared input; with ``flip_test``, those of its mirror
        image follow."""
        self.runner.set_input(x)
        outputs = self.runner.run_raw()
        if self.config.flip_test:
            self.runner.set_input(np.ascontiguousarray(x[:, :, ::-1]))
            outputs += self.runner.run_raw()
        return outputs

    def start(self, frame: ThermalFrame) -> Future[list[npt.NDArray[Any]]]:
        """Invoke the model on the frame on the model's own thread.

        LiteRT releases the GIL while it invokes, so the caller can work on the same frame
        meanwhile (tamper, fire, motion); it then passes the future's result to :meth:`finish`.
        """
        if self._running is not None:
            self._running.exception()  # one invoke at a time: a caller that gave up on the last
        x = self.prepare(frame)
        if self._invoker is None:
            self._invoker = ThreadPoolExecutor(1, thread_name_prefix="thermal-model")
        self._running = self._invoker.submit(self.run, x)
        return self._running

    def finish(self, frame: ThermalFrame, outputs: Sequence[npt.NDArray[Any]]) -> list[Detection]:
        """The detections of the model's raw outputs for frame (from :meth:`run`)."""
        self._running = None
        n = len(self.runner.outputs)
        heads = split_outputs(outputs[:n], self.path, self._quantization)
        if len(outputs) == 2 * n:
            heads = mirror_average(heads, split_outputs(outputs[n:], self.path, self._quantization))
        return decode(
            heads,
            (int(frame.data.shape[0]), int(frame.data.shape[1])),
            self.config.score_threshold,
            self.config.nms_iou,
            self.config.max_detections,
        )
