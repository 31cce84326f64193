"""Visible-camera object detection with any standard TFLite detection model and a label map.

Its config model, ``[detection.visible]``, lives with the other detection tables in
:mod:`firmware.config.site` (re-exported here). Two output styles are decoded:
SSD with the TFLite detection post-process (boxes, classes, scores, count, in whichever order the
model lists them), and YOLO-style (one ``[1, N, 4+C]`` or ``[1, 4+C, N]`` tensor of cx, cy, w, h
and class scores, with per-class NMS here). Model labels map to polewatch classes through
``class_map``; unmapped labels are dropped. Frames are only read: nothing here stores or sends them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from firmware.config.site import VisibleDetection
from firmware.detect.base import Detection
from firmware.detect.labels import DEFAULT_CLASS_MAP, load_labels
from firmware.detect.runner import ModelRunner
from firmware.errors import HardwareError, ModelError
from firmware.hal.base import VisibleFrame

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CLASS_MAP",
    "VisibleDetection",
    "VisibleDetector",
    "decode_ssd",
    "decode_yolo",
    "nms",
]

LETTERBOX_FILL = 114  # the grey YOLO models are trained with around letterboxed images
Decoded = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.intp]]


# --- decoding -----------------------------------------------------------------------------------


def nms(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    iou_threshold: float,
    classes: npt.NDArray[np.intp] | None = None,
) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression (per class when ``classes`` is given); kept indices."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.intp)
    b = boxes.astype(np.float64)
    if classes is not None:
        # Shift each class far apart so that boxes of different classes never overlap.
        b = b + (classes.astype(np.float64) * (float(np.abs(b).max()) * 2 + 1))[:, None]
    areas = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = (np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0])).clip(0)
        h = (np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1])).clip(0)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def decode_yolo(
    output: npt.NDArray[np.float32],
    input_size: tuple[int, int],
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int = 100,
    num_classes: int | None = None,
    normalized: bool | None = None,
) -> Decoded:
    """Decode a YOLO-style output (already dequantised) to boxes in model-input pixels.

    ``output`` is ``[1, N, 4+C]`` or ``[1, 4+C, N]`` (``5+C`` with an objectness column when
    ``num_classes`` says so) of cx, cy, w, h and class scores. Box values up to 1.5 are taken
    as normalised unless ``normalized`` says. Returns (x0, y0, x1, y1) boxes, scores, classes.
    """
    if output.ndim != 3 or output.shape[0] != 1:
        raise ModelError(f"YOLO output must be [1, N, 4+C] or [1, 4+C, N], got {output.shape}")
    a = output[0]
    wanted = set() if num_classes is None else {4 + num_classes, 5 + num_classes}
    rows_match, cols_match = a.shape[0] in wanted, a.shape[1] in wanted
    if not cols_match and (rows_match or a.shape[0] < a.shape[1]):
        a = a.T  # channels first: [4+C, N]
    channels = a.shape[1]
    if channels < 5:
        raise ModelError(f"YOLO output {output.shape} has fewer than 5 values per candidate")
    objectness = num_classes is not None and channels == 5 + num_classes
    cls_scores = a[:, 5:] * a[:, 4:5] if objectness else a[:, 4:]
    classes = np.argmax(cls_scores, axis=1)
    scores = cls_scores[np.arange(len(a)), classes]
    keep = scores >= score_threshold
    cxcywh, scores, classes = a[keep, :4].astype(np.float32), scores[keep], classes[keep]
    if normalized is None:
        normalized = cxcywh.size == 0 or float(np.abs(cxcywh).max()) <= 1.5
    if normalized:
        cxcywh = cxcywh * np.asarray(input_size + input_size, dtype=np.float32)
    half = cxcywh[:, 2:] / 2
    boxes = np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)
    kept = nms(boxes, scores, iou_threshold, classes)[:max_detections]
    return boxes[kept], scores[kept].astype(np.float32), classes[kept].astype(np.intp)


def decode_ssd(
    boxes: npt.NDArray[np.float32],
    classes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    count: npt.NDArray[np.float32],
    input_size: tuple[int, int],
    *,
    score_threshold: float,
    max_detections: int = 100,
) -> Decoded:
    """Decode TFLite detection post-process outputs to boxes in model-input pixels."""
    n = min(int(count.reshape(-1)[0]), boxes.shape[1], max_detections)
    yxyx = boxes[0, :n].clip(0.0, 1.0)
    s, c = scores.reshape(-1)[:n], classes.reshape(-1)[:n]
    keep = s >= score_threshold
    w, h = input_size
    xyxy = yxyx[keep][:, [1, 0, 3, 2]] * np.asarray([w, h, w, h], dtype=np.float32)
    return xyxy.astype(np.float32), s[keep].astype(np.float32), np.rint(c[keep]).astype(np.intp)


def _integral(a: npt.NDArray[np.float32]) -> bool:
    return bool(np.all(a == np.rint(a)))


# --- the detector ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How frames of one size go into the model input (pre-computed once per size)."""

    index: npt.NDArray[np.intp]  # flat byte indices into the frame, for the resized region
    y0: int
    x0: int
    h: int
    w: int

    def to_frame(self, xyxy: npt.NDArray[np.float32], fw: int, fh: int) -> npt.NDArray[np.float32]:
        """Model-input pixel boxes to frame pixel boxes, clipped to the frame."""
        scale = np.asarray([fw / self.w, fh / self.h] * 2, dtype=np.float32)
        shift = np.asarray([self.x0, self.y0] * 2, dtype=np.float32)
        out = (xyxy - shift) * scale
        return out.clip(0, np.asarray([fw, fh, fw, fh], dtype=np.float32))


class VisibleDetector:
    """Finds persons, vehicles and animals in visible frames with a TFLite model."""

    def __init__(self, config: VisibleDetection, default_threads: int = 1) -> None:
        self.config = config
        threads = config.threads if config.threads is not None else default_threads
        self.runner = ModelRunner(config.model, threads=threads)
        self.runner.expect_input(rank=4, channels=3)
        _, self.in_h, self.in_w, _ = self.runner.input_shape
        self.labels = config.label_map or load_labels(Path(config.labels), config.label_offset)
        self.kind = self._detect_kind()
        resize = config.resize
        self.letterbox = (resize == "auto" and self.kind == "yolo") or resize == "letterbox"
        self._plans: dict[tuple[int, int], _Plan] = {}
        self._ssd_roles = self._find_ssd_roles() if self.kind == "ssd" else None
        self._ssd_roles_sure = False
        logger.info(
            "visible detector: %s model %s, input %dx%d %s, %d labels, %s resize",
            self.kind,
            config.model,
            self.in_w,
            self.in_h,
            self.runner.input_dtype.name,
            len(self.labels),
            "letterbox" if self.letterbox else "stretch",
        )

    # --- model shape ---------------------------------------------------------------------------

    def _outputs_text(self) -> str:
        return ", ".join(f"{o.name} {list(o.shape)}" for o in self.runner.outputs)

    def _is_ssd(self) -> bool:
        outs = self.runner.outputs
        return len(outs) == 4 and any(len(o.shape) == 3 and o.shape[-1] == 4 for o in outs)

    def _detect_kind(self) -> Literal["ssd", "yolo"]:
        outs, path = self.runner.outputs, self.runner.path
        ssd = self._is_ssd()
        yolo = len(outs) == 1 and len(outs[0].shape) == 3
        kind = self.config.kind
        if (kind == "ssd" and not ssd) or (kind == "yolo" and not yolo):
            raise ModelError(
                f"{path}: kind = {kind!r} but the outputs are not {kind.upper()}-style: "
                f"{self._outputs_text()}"
            )
        if ssd:
            return "ssd"
        if yolo:
            return "yolo"
        raise ModelError(
            f"{path}: outputs are neither SSD post-process (boxes, classes, scores, count) nor "
            f"YOLO-style (one [1, N, 4+C] tensor): {self._outputs_text()}"
        )

    def _find_ssd_roles(self) -> tuple[int, int, int, int]:
        """Output positions of (boxes, classes, scores, count), from shapes and names."""
        outs = self.runner.outputs
        boxes = next(i for i, o in enumerate(outs) if len(o.shape) == 3 and o.shape[-1] == 4)
        sizes = [int(np.prod(o.shape)) for o in outs]
        count = next((i for i, s in enumerate(sizes) if s == 1 and i != boxes), None)
        rest = [i for i in range(4) if i not in (boxes, count)]
        if count is None or len(rest) != 2:
            raise ModelError(
                f"{self.runner.path}: cannot tell the SSD outputs apart: {self._outputs_text()}"
            )
        # The TFLite post-process names its outputs name, name:1 (classes), name:2 (scores), ...
        suffix = {i: outs[i].name.rpartition(":")[2] for i in rest}
        if suffix[rest[0]] == "2" and suffix[rest[1]] == "1":
            rest.reverse()
        return boxes, rest[0], rest[1], count

    def _ssd_outputs(self, outs: list[npt.NDArray[np.float32]]) -> Decoded:
        assert self._ssd_roles is not None
        ib, ic, i_s, i_n = self._ssd_roles
        classes, scores = outs[ic], outs[i_s]
        if not self._ssd_roles_sure:
            # Names vary between exporters: confirm from values once a frame tells them apart.
            n = min(int(outs[i_n].reshape(-1)[0]), classes.size)
            c, s = classes.reshape(-1)[:n], scores.reshape(-1)[:n]
            if n and _integral(c) != _integral(s):
                if _integral(s):
                    self._ssd_roles = (ib, i_s, ic, i_n)
                    classes, scores = scores, classes
                    logger.info("%s: SSD classes/scores order taken from values", self.runner.path)
                self._ssd_roles_sure = True
        return decode_ssd(
            outs[ib],
            classes,
            scores,
            outs[i_n],
            (self.in_w, self.in_h),
            score_threshold=self.config.score_threshold,
            max_detections=self.config.max_detections,
        )

    # --- pre-processing ------------------------------------------------------------------------

    def _plan(self, fh: int, fw: int) -> _Plan:
        plan = self._plans.get((fh, fw))
        if plan is not None:
            return plan
        if self.letterbox:
            s = min(self.in_w / fw, self.in_h / fh)
            w, h = max(1, round(fw * s)), max(1, round(fh * s))
        else:
            w, h = self.in_w, self.in_h
        y0, x0 = (self.in_h - h) // 2, (self.in_w - w) // 2
        # Nearest-neighbour source pixel of each target pixel's centre.
        rows = np.minimum(((np.arange(h) + 0.5) * (fh / h)).astype(np.intp), fh - 1)
        cols = np.minimum(((np.arange(w) + 0.5) * (fw / w)).astype(np.intp), fw - 1)
        pixel = rows[:, None] * fw + cols[None, :]
        index = (pixel[..., None] * 3 + np.arange(3)).reshape(-1)
        plan = _Plan(index, y0, x0, h, w)
        self._plans[(fh, fw)] = plan
        return plan

    def preprocess(self, rgb: npt.NDArray[np.uint8]) -> _Plan:
        """Resize a frame into the model's input tensor; returns the plan that maps boxes back."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise HardwareError(
                f"visible frame must be HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}"
            )
        fh, fw = rgb.shape[:2]
        plan = self._plan(fh, fw)
        src = np.ascontiguousarray(rgb).reshape(-1)
        dtype = self.runner.input_dtype
        full = plan.h == self.in_h and plan.w == self.in_w
        if dtype == np.uint8 and full:
            buf = self.runner.input_buffer()
            np.take(src, plan.index, out=buf.reshape(-1), mode="clip")
            del buf
            return plan
        region = np.take(src, plan.index, mode="clip").reshape(plan.h, plan.w, 3)
        tensor = np.empty((self.in_h, self.in_w, 3), dtype=dtype)
        if dtype == np.uint8:
            tensor[...] = LETTERBOX_FILL
            tensor[plan.y0 : plan.y0 + plan.h, plan.x0 : plan.x0 + plan.w] = region
        elif dtype == np.int8:
            # The integer range spans the pixel range: q = pixel - 128 (a model's usual scaling).
            tensor[...] = LETTERBOX_FILL - 128
            tensor[plan.y0 : plan.y0 + plan.h, plan.x0 : plan.x0 + plan.w] = (
                region ^ np.uint8(0x80)
            ).view(np.int8)
        else:
            tensor[...] = LETTERBOX_FILL / 255.0
            tensor[plan.y0 : plan.y0 + plan.h, plan.x0 : plan.x0 + plan.w] = region * np.float32(
                1 / 255.0
            )
        self.runner.set_input(tensor[None])
        return plan

    # --- detection -----------------------------------------------------------------------------

    def decode(self, outs: list[npt.NDArray[np.float32]]) -> Decoded:
        """The model's outputs as boxes in model-input pixels, scores and class indices."""
        if self.kind == "ssd":
            return self._ssd_outputs(outs)
        return decode_yolo(
            outs[0],
            (self.in_w, self.in_h),
            score_threshold=self.config.score_threshold,
            iou_threshold=self.config.iou_threshold,
            max_detections=self.config.max_detections,
            num_classes=max(self.labels) + 1 if self.labels else None,
        )

    def detect(self, frame: VisibleFrame) -> list[Detection]:
        """Objects in one frame, in the frame's pixel coordinates, best first."""
        plan = self.preprocess(frame.rgb)
        boxes, scores, classes = self.decode(self.runner.run())
        fh, fw = frame.rgb.shape[:2]
        frame_boxes = plan.to_frame(boxes, fw, fh)
        found: list[Detection] = []
        for box, score, cls_id in zip(
            frame_boxes.tolist(), scores.tolist(), classes.tolist(), strict=True
        ):
            label = self.labels.get(cls_id)
            mapped = self.config.class_map.get(label) if label is not None else None
            if mapped is None or box[2] <= box[0] or box[3] <= box[1]:
                continue
            found.append(
                Detection(
                    cls=mapped,
                    score=float(score),
                    box=(box[0], box[1], box[2], box[3]),
                    sensor="visible",
                    label=label if label != mapped else None,
                )
            )
        return found

    def describe(self) -> dict[str, Any]:
        """What is loaded, for logs and the bench."""
        return {
            "model": self.config.model,
            "backend": self.runner.backend,
            "kind": self.kind,
            "input": list(self.runner.input_shape),
            "input_dtype": self.runner.input_dtype.name,
            "threads": self.runner.threads,
            "letterbox": self.letterbox,
        }
