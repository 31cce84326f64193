"""Evaluate the int8 model through the unit's own detector plugin; write metrics JSON and card.

Runs ``firmware.detect.thermal.ThermalDetector`` (the code path the unit runs: normalisation,
int8 LiteRT invoke, decoding) on every held-out test frame of each sensor. Needs no TensorFlow.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from firmware.detect.thermal import CLASSES, ThermalDetector, ThermalModelDetection
from firmware.hal.base import ThermalFrame
from models.thermal import metrics
from models.thermal.dataset import Frame

logger = logging.getLogger(__name__)

AP_SCORE_FLOOR = 0.05  # detections down to this score go into AP's precision-recall curve
SENSOR_TITLES = {
    "lepton35": "FLIR Lepton 3.5 (160x120, radiometric)",
    "lepton3": "FLIR Lepton 3 (160x120, raw counts)",
    "mlx90640": "Melexis MLX90640 (32x24, radiometric)",
}


def _matched(
    model_path: Path, frames: Sequence[Frame], threads: int = 1
) -> tuple[dict[str, dict[str, metrics.ClassResult]], dict[str, int]]:
    """Every detection down to AP_SCORE_FLOOR matched per sensor and class; frames per sensor."""
    detector = ThermalDetector(
        ThermalModelDetection(
            model=str(model_path), threads=threads, score_threshold=AP_SCORE_FLOOR
        )
    )
    results: dict[str, dict[str, metrics.ClassResult]] = {}
    counts: dict[str, int] = {}
    for i, frame in enumerate(frames):
        found = detector.detect(ThermalFrame(i, frame.t, frame.data, frame.radiometric))
        scored = [metrics.Scored(d.cls, d.score, d.box, d.lying) for d in found]
        per_class = results.setdefault(frame.sensor, {c: metrics.ClassResult() for c in CLASSES})
        counts[frame.sensor] = counts.get(frame.sensor, 0) + 1
        for cls in CLASSES:
            metrics.match_image(per_class[cls], cls, frame.truths, scored)
    return results, counts


def person_sweep(
    model_path: Path, frames: Sequence[Frame], scores: Sequence[float]
) -> list[tuple[float, float, float]]:
    """(score, precision, recall) of persons at each score, over frames of one sensor: what the
    operating score is chosen from, on a tuning split."""
    results, _ = _matched(model_path, frames)
    if len(results) != 1:
        raise ValueError(f"a sweep is over one sensor's frames, not {sorted(results)}")
    (per_class,) = results.values()
    return [(s, *metrics.precision_recall(per_class["person"], s)) for s in scores]


def evaluate(model_path: Path, frames: Sequence[Frame], threads: int = 1) -> dict[str, Any]:
    """Per sensor and class: precision and recall at the operating score, AP@0.5; lying accuracy."""
    operating = ThermalModelDetection().score_threshold
    results, counts = _matched(model_path, frames, threads)
    out: dict[str, Any] = {"score_threshold": operating, "iou": 0.5, "sensors": {}}
    for sensor, per_class in results.items():
        entry: dict[str, Any] = {"frames": counts[sensor], "classes": {}}
        for cls, res in per_class.items():
            p, r = metrics.precision_recall(res, operating)
            entry["classes"][cls] = {
                "objects": res.positives,
                "precision": p,
                "recall": r,
                "ap50": metrics.average_precision(res),
            }
        acc, n = metrics.lying_accuracy(per_class["person"], operating)
        entry["lying_accuracy"] = acc
        entry["lying_matched"] = n
        out["sensors"][sensor] = entry
    return out


def timing(model_path: Path, frames: Sequence[Frame], repeats: int = 3) -> dict[str, float]:
    """Median invoke and whole-pipeline (normalise, invoke, decode) times per frame, 1 thread."""
    detector = ThermalDetector(ThermalModelDetection(model=str(model_path), threads=1))
    thermal = [ThermalFrame(i, f.t, f.data, f.radiometric) for i, f in enumerate(frames)]
    inputs = [detector.prepare(f) for f in thermal]
    for x in inputs[:10]:
        detector.runner.invoke(x)
    invoke, pipeline = [], []
    for _ in range(repeats):
        for x in inputs:
            t0 = time.perf_counter()
            detector.runner.invoke(x)
            invoke.append(time.perf_counter() - t0)
        for f in thermal:
            t0 = time.perf_counter()
            detector.detect(f)
            pipeline.append(time.perf_counter() - t0)
    inv, pipe = statistics.median(invoke) * 1e3, statistics.median(pipeline) * 1e3
    return {"invoke_ms": inv, "pipeline_ms": pipe, "pipeline_over_invoke": pipe / inv}


def _fmt(x: float) -> str:
    return "n/a" if isinstance(x, float) and math.isnan(x) else f"{x:.3f}"


def table_rows(result: dict[str, Any]) -> list[str]:
    """The metrics table of the card, one Markdown row per sensor and class."""
    rows = [
        "| sensor | class | objects | precision | recall | AP@0.5 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for sensor, entry in result["sensors"].items():
        for cls, m in entry["classes"].items():
            rows.append(
                f"| {sensor} | {cls} | {m['objects']} | {_fmt(m['precision'])} | "
                f"{_fmt(m['recall'])} | {_fmt(m['ap50'])} |"
            )
    return rows


def lying_rows(result: dict[str, Any]) -> list[str]:
    """The lying-posture table of the card, one row per sensor."""
    rows = ["| sensor | matched persons | lying accuracy |", "|---|---:|---:|"]
    for sensor, entry in result["sensors"].items():
        rows.append(f"| {sensor} | {entry['lying_matched']} | {_fmt(entry['lying_accuracy'])} |")
    return rows


def write_json(result: dict[str, Any], path: Path) -> None:
    """Metrics as JSON (NaN written as null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(result), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Metrics JSON back, nulls as NaN."""

    def restore(value: Any) -> Any:
        if value is None:
            return float("nan")
        if isinstance(value, dict):
            return {k: restore(v) for k, v in value.items()}
        return value

    data: dict[str, Any] = restore(json.loads(path.read_text()))
    return data
