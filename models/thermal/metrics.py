"""Detection metrics: matching at an IoU, precision and recall at a score, VOC-style AP.

Ground-truth objects marked ``ignore`` (too small or mostly hidden to label fairly, like VOC's
"difficult") count neither as misses nor, when a detection lands on one, as false positives. As
in the Caltech pedestrian benchmark's protocol, a detection lands on an ignored object when most
of the detection lies inside the object's box (intersection over the detection's area): by IoU,
a loose box on a person 2 pixels tall and mostly hidden would count against the detector.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class GroundTruth:
    """One labelled object of one image."""

    cls: str
    box: Box
    ignore: bool = False
    lying: bool | None = None  # persons: whether the label's posture is lying


@dataclass(frozen=True)
class Scored:
    """One detection of one image, as the metrics need it."""

    cls: str
    score: float
    box: Box
    lying: float | None = None


@dataclass
class ClassResult:
    """Matches of one class over a set of images."""

    positives: int = 0  # ground-truth objects that count
    scores: list[float] = field(default_factory=list)  # every counted detection
    hits: list[bool] = field(default_factory=list)  # whether it matched a counted object
    lying_pairs: list[tuple[float, bool]] = field(default_factory=list)  # (lying prob, truth)
    lying_scores: list[float] = field(default_factory=list)  # detection score of each pair


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def inside_share(det: Box, region: Box) -> float:
    """The share of det's area that lies inside region."""
    iw = min(det[2], region[2]) - max(det[0], region[0])
    ih = min(det[3], region[3]) - max(det[1], region[1])
    area = (det[2] - det[0]) * (det[3] - det[1])
    if iw <= 0 or ih <= 0 or area <= 0:
        return 0.0
    return iw * ih / area


def match_image(
    result: ClassResult,
    cls: str,
    truths: Sequence[GroundTruth],
    detections: Sequence[Scored],
    iou_threshold: float = 0.5,
) -> None:
    """Add one image's detections of cls to result, matched greedily by score: to a counted
    object by IoU first, else to an ignored one that holds most of it."""
    gts = [g for g in truths if g.cls == cls]
    dets = sorted((d for d in detections if d.cls == cls), key=lambda d: -d.score)
    result.positives += sum(not g.ignore for g in gts)
    taken = [False] * len(gts)
    for det in dets:
        best, best_iou = -1, iou_threshold
        for j, gt in enumerate(gts):
            if gt.ignore or taken[j]:
                continue
            overlap = iou(det.box, gt.box)
            if overlap >= best_iou:
                best, best_iou = j, overlap
        if best < 0 and any(
            gt.ignore and inside_share(det.box, gt.box) >= iou_threshold for gt in gts
        ):
            continue  # on an ignored object: neither right nor wrong
        result.scores.append(det.score)
        result.hits.append(best >= 0)
        if best >= 0:
            taken[best] = True
            truth_lying = gts[best].lying
            if det.lying is not None and truth_lying is not None:
                result.lying_pairs.append((det.lying, truth_lying))
                result.lying_scores.append(det.score)


def average_precision(result: ClassResult) -> float:
    """VOC all-point interpolated AP (area under the precision envelope); nan with no objects."""
    if result.positives == 0:
        return float("nan")
    if not result.scores:
        return 0.0
    order = np.argsort(-np.asarray(result.scores), kind="stable")
    hits = np.asarray(result.hits, dtype=np.float64)[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(1.0 - hits)
    recall = np.concatenate([[0.0], tp / result.positives, [1.0]])
    precision = np.concatenate([[0.0], tp / np.maximum(tp + fp, 1e-12), [0.0]])
    envelope: npt.NDArray[np.float64] = np.maximum.accumulate(precision[::-1])[::-1]
    changes = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[changes + 1] - recall[changes]) * envelope[changes + 1]))


def precision_recall(result: ClassResult, score_threshold: float) -> tuple[float, float]:
    """Precision and recall of the detections scoring at least score_threshold."""
    hits = [h for s, h in zip(result.scores, result.hits, strict=True) if s >= score_threshold]
    tp = sum(hits)
    precision = tp / len(hits) if hits else (1.0 if result.positives == 0 else 0.0)
    recall = tp / result.positives if result.positives else float("nan")
    return precision, recall


def lying_accuracy(result: ClassResult, score_threshold: float) -> tuple[float, int]:
    """Share of matched persons (at the score) whose lying probability is right about 0.5."""
    pairs = [
        p
        for p, s in zip(result.lying_pairs, result.lying_scores, strict=True)
        if s >= score_threshold
    ]
    if not pairs:
        return float("nan"), 0
    right = sum((prob > 0.5) == truth for prob, truth in pairs)
    return right / len(pairs), len(pairs)
