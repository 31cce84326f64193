"""The thermal model's card (MODEL_CARD.md), written from the pipeline's metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from firmware.detect.thermal import DEFAULT_MODEL, RAW_PER_K, SPREAD_CAP_K, SPREAD_FLOOR_K
from models.thermal import dataset
from models.thermal.evaluate import SENSOR_TITLES, lying_rows, table_rows
from models.thermal.targets import OUT_HW, STRIDE
from models.thermal.train import NOISE_K, TEXTURE_K

COMMAND = "make models"
DIRECT = ".venv/bin/python -m models.thermal.pipeline"


def _verdict(result: dict[str, Any]) -> str:
    person = result["sensors"].get("lepton35", {}).get("classes", {}).get("person")
    if person is None:
        return "The Lepton 3.5 was not evaluated."
    p, r = person["precision"], person["recall"]
    ok = not (math.isnan(p) or math.isnan(r)) and p >= 0.90 and r >= 0.90
    return (
        f"Lepton 3.5 persons: precision {p:.3f}, recall {r:.3f} at score "
        f"{result['score_threshold']} and IoU 0.5: "
        + ("meets the >= 0.90 target." if ok else "**below the >= 0.90 target.**")
    )


def _missing(result: dict[str, Any]) -> str:
    absent = [f"`{k}`" for k in SENSOR_TITLES if k not in result["sensors"]]
    if not absent:
        return ""
    return (
        f"Not evaluated (and not in the training data): {', '.join(absent)}, which the simulator"
        " did not model when this model was trained; rerun `make models` once it does."
    )


def _version() -> str:
    """The model's version, from its file name (polewatch_thermal_v3.tflite: v3)."""
    return DEFAULT_MODEL.stem.rsplit("_", 1)[-1]


def write_card(result: dict[str, Any], path: Path) -> None:
    """Render the card from a metrics result (the same dict the metrics JSON holds)."""
    info = result.get("data", {})
    timing = result.get("timing", {})
    objects = info.get("objects", {})
    lines = [
        f"# polewatch thermal detector {_version()} (`{DEFAULT_MODEL.name}`)",
        "",
        "Finds persons, vehicles and animals in thermal frames of a pole-mounted camera, and says",
        "whether a person is lying down. Fully int8 (input, weights, activations, outputs);",
        f"{result.get('model_bytes', 0)} bytes; labels in `labels.txt` (person, vehicle, animal).",
        "Run on the unit by `firmware/detect/thermal.py` (`ThermalDetector`).",
        "",
        "## Result",
        "",
        _verdict(result),
        "",
        f"Held-out simulated test split, score >= {result['score_threshold']}, IoU >= 0.5;",
        "AP@0.5 is VOC all-point interpolated over detections scoring >= 0.05.",
        "Run as the unit runs it by default: each frame and its mirror image, heads averaged",
        "(`flip_test`). The operating score is where person precision and recall meet on a",
        "tuning split of its own (seed + 1, 300 worlds: `--tune`), not on this one.",
        "",
        *table_rows(result),
        "",
        "Lying posture (persons matched at the operating score; lying when its output > 0.5):",
        "",
        *lying_rows(result),
        "",
        "Sensors: "
        + "; ".join(f"`{k}` {v}" for k, v in SENSOR_TITLES.items() if k in result["sensors"])
        + ".",
        _missing(result),
        "",
        "Speed on the 2-core x86-64 development machine, ai-edge-litert, 1 thread, median over",
        "Lepton 3.5 test frames: invoke "
        f"{timing.get('invoke_ms', float('nan')):.2f} ms; whole detector (normalise, invoke, "
        f"decode) {timing.get('pipeline_ms', float('nan')):.2f} ms "
        f"({timing.get('pipeline_over_invoke', float('nan')):.2f}x invoke).",
        "",
        "## Model",
        "",
        "CenterNet-style (objects as points): input 120x160x1 int8; a backbone of a plain 3x3",
        "convolution pair then depthwise-separable blocks to stride 16, upsampled back to",
        f"stride {STRIDE} with skip connections; heads at stride {STRIDE} ({OUT_HW[0]}x{OUT_HW[1]}"
        " cells, fine enough",
        "that people standing side by side get a cell each): per-class centre heatmap,",
        "box regression (centre offset in the cell, log width and height in cells) and person",
        f"lying probability. {info.get('params', '?')} parameters. Chosen over an SSD-style head",
        "because it needs no anchors and no detection post-processing op: every layer quantises",
        "to int8, and decoding is a 3x3 peak test, a gather and a small NMS in numpy.",
        "",
        "Input normalisation (shared code with the unit, `firmware.detect.thermal.normalize`):",
        "subtract the frame's median, divide by its 10th-90th percentile spread held between",
        f"{SPREAD_FLOOR_K:g} K and {SPREAD_CAP_K:g} K (raw counts are taken as about "
        f"{RAW_PER_K:g} counts/K for",
        "those two only), clip to [-2, 6], resize bilinearly to 160x120. So radiometric and",
        "raw-count sensors, and the 32x24 MLX90640, share one model. The cap keeps a person a",
        "few kelvin off sunlit asphalt visible in a scene that spreads over 10-40 K.",
        "",
        "## Data",
        "",
        "All simulated (`sim/`): random seeded parking-lot worlds, camera 4-8 m high pitched down",
        "15-40 deg at any yaw; ambient -10..25 deg C, clear to cloudy sky; 0-8 persons (standing,",
        "sitting, lying, walking; some children; clothing from ambient+3 to ambient+15 deg C),",
        "sometimes a gathering group of 2-7, 0-3 animals (cats, dogs, foxes, hedgehogs), 0-6 cars",
        "(a third with a warm",
        "engine), occasionally a car fire (not a class: it must be called nothing). In",
        f"{dataset.NEAR_ANIMAL_SHARE:.0%} of the training worlds (not validation or test), one or",
        "two more animals near the camera, where an animal is as large as a distant person lying",
        "down. Each world is rendered at",
        f"{dataset.FRAMES_PER_WORLD['train']} instant per training world and "
        f"{dataset.FRAMES_PER_WORLD['test']} per validation or test world (the frames of a "
        "world share its camera, weather and cars, so training takes more worlds instead), "
        "and captured by the sensor models:",
        f"training and validation frames from {info.get('train_sensors', '?')}, test frames from",
        f"{info.get('sensors', '?')}.",
        "Splits are disjoint by world seed.",
        "",
        f"Seed {info.get('seed', '?')}; worlds {info.get('worlds', {})}; frames (all sensors) "
        f"{info.get('frames', {})}.",
        f"Labelled objects per split: {objects}.",
        "",
        "Labels are the simulator's ground truth boxes (tight box of the visible pixels). An",
        "object is ignored (neither taught nor scored, like VOC 'difficult') when under",
        f"{dataset.MIN_VISIBLE:.0%} of it is visible (the 'reasonable' setting of the Caltech and",
        "CityPersons pedestrian benchmarks) or its box is under "
        f"{dataset.MIN_BOX_PX:g} sensor pixels tall. A detection",
        "with most of its area inside an ignored object's box counts neither way (Caltech's",
        "rule for ignore regions).",
        "",
        "## Training",
        "",
        "TensorFlow/Keras (the `train` extra), CPU, deterministic ops, fixed seed; Adam, cosine",
        "decay from 2e-3, batch 32, random left-right flips; half of each batch gets a random",
        f"smooth ground texture (blobs and thin streaks, up to {TEXTURE_K:g} K) and pixel noise",
        f"(up to {NOISE_K:g} K), which the simulator's clean surfaces lack and real grass or",
        "patched asphalt has; width multiplier 1.5 over the first version; losses: CenterNet",
        "focal loss on the",
        "heatmap; at centre cells, L1 on the box plus 1 - IoU of the predicted and true box",
        "(weight 2 together: a thin person's box must be tight to reach IoU 0.5), binary",
        "cross-entropy on lying at person centres (weight 0.5).",
        f"{info.get('epochs', '?')} epochs, {info.get('train_seconds', 0):.0f} s of training.",
        "Full-integer post-training quantisation with 300 training frames as representative data.",
        "All metrics above are of the int8 model, run through the unit's detector code.",
        "",
        "## Known limits",
        "",
        "- Trained and tested on simulated frames only: the simulator's bodies, cars and noise are",
        "  simple; expect lower figures on real cameras until checked against recorded clips.",
        "  The one real clip in the tests (a hedgehog on a lawn, Lepton 3, from a trail camera at",
        "  knee height) is a person lying down to the model alone: its best person box scores at",
        "  least 0.4 in 97 of 100 frames. The unit's size check, given the camera's calibration,",
        "  measures it at a quarter of a metre and relabels it an animal.",
        "- Small objects: persons under about 10 pixels tall (far away, or on the 32x24",
        "  MLX90640) are found less reliably; the MLX90640's figures cover only objects at least",
        f"  {dataset.MIN_BOX_PX:g} of its pixels tall.",
        "- The Lepton 3 (raw counts) has no absolute temperature; it relies on relative contrast",
        "  alone, which a scene with a large hot object (a fire) compresses.",
        "- Vehicles are told by shape and by the cold glass/warm engine pattern; a cold car at the",
        "  ambient temperature on cold asphalt has little contrast.",
        "- Lying is a posture estimate per frame; person-down needs it to persist (the rules do).",
        "",
        "## Reproduce",
        "",
        f"`{COMMAND}` (installs the `train` extra, then runs `{DIRECT}`): generates the",
        "data (cached in `build/models/thermal/`), trains, quantises, evaluates, and rewrites",
        "this card, `metrics.json`, `labels.txt` and the model. To re-evaluate the committed model",
        f"without TensorFlow: `{DIRECT} --eval-only`.",
        "",
    ]
    path.write_text("\n".join(lines))
