"""End to end with one seed: generate data, train, quantise to int8, evaluate, write the card.

Run from the repository root: ``python -m models.thermal.pipeline`` (``make models`` does, after
installing the ``train`` extra). Generated frames are cached under ``build/models/thermal``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from firmware.detect.thermal import (
    CLASSES,
    DEFAULT_MODEL,
    counts_per_kelvin,
    frame_scale,
    normalize,
)
from models.thermal import dataset, evaluate
from models.thermal.card import write_card
from models.thermal.targets import encode

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = DEFAULT_MODEL.parent
CACHE_DIR = ROOT / "build" / "models" / "thermal"
CHECKPOINT_DIR = CACHE_DIR / "checkpoint"  # an interrupted training run resumes from here
SEED = 20240611
WORLDS = {"train": 18000, "val": 50, "test": 200}
TUNE_WORLDS = 300  # the tuning split: test-like worlds of seed + 1, for the operating score
EPOCHS = 24
# Training on the Lepton 3.5 alone keeps `make models` near 135 minutes on 2 cores; the other
# sensors share the normalisation and are evaluated on their own test frames.
TRAIN_SENSORS = ("lepton35",)


def arrays(frames: Sequence[dataset.Frame]) -> dict[str, npt.NDArray[Any]]:
    """Normalised images, the kelvin per unit of each, and training targets of frames, stacked."""
    xs, kelvins, heats, regs, lyings, weights = [], [], [], [], [], []
    for f in frames:
        xs.append(normalize(f.data, f.radiometric).astype(np.float16))
        kelvins.append(frame_scale(f.data, f.radiometric)[1] / counts_per_kelvin(f.radiometric))
        heat, reg, lying, weight = encode(f.truths, f.data.shape)
        heats.append(heat.astype(np.float16))
        regs.append(reg)
        lyings.append(lying.astype(np.float16))
        weights.append(weight.astype(np.float16))
    return {
        "x": np.stack(xs),
        "kelvin": np.asarray(kelvins, dtype=np.float32),
        "heat": np.stack(heats),
        "reg": np.stack(regs),
        "lying": np.stack(lyings),
        "weight": np.stack(weights),
    }


def _data_info(
    args: argparse.Namespace,
    sensors: list[str],
    trained_on: list[str],
    splits: dict[str, list[dataset.Frame]],
) -> dict[str, Any]:
    """What the card says of the data: seed, sensors, worlds, frames and objects per split."""
    return {
        "seed": args.seed,
        "sensors": sensors,
        "train_sensors": trained_on,
        "worlds": {"train": args.train_worlds, "val": args.val_worlds, "test": args.test_worlds},
        "frames": {k: len(v) for k, v in splits.items()},
        "objects": {
            k: {
                c: sum(1 for f in v for g in f.truths if g.cls == c and not g.ignore)
                for c in CLASSES
            }
            for k, v in splits.items()
        },
    }


def _with_training_info(info: dict[str, Any], metrics_path: Path) -> dict[str, Any]:
    """info on top of the data and training figures of the run that wrote metrics_path."""
    if not metrics_path.exists():
        logger.warning("%s is absent: the card will lack the training figures", metrics_path)
        return info
    kept: dict[str, Any] = evaluate.read_json(metrics_path).get("data", {})
    merged = {**kept, **{k: v for k, v in info.items() if k not in ("frames", "objects")}}
    for key in ("frames", "objects"):
        merged[key] = {**kept.get(key, {}), **info[key]}
    merged["worlds"] = {**kept.get("worlds", {}), "test": info["worlds"]["test"]}
    return merged


def tune(args: argparse.Namespace) -> int:
    """Print the tuning split's person precision and recall per score; return 0."""
    frames = dataset.cached(
        CACHE_DIR, "test", TUNE_WORLDS, args.seed + 1, list(TRAIN_SENSORS), args.workers
    )
    scores = [round(0.20 + 0.01 * i, 2) for i in range(31)]
    sweep = evaluate.person_sweep(args.out / DEFAULT_MODEL.name, frames, scores)
    print("| score | precision | recall |\n|---:|---:|---:|")
    for score, precision, recall in sweep:
        print(f"| {score:.2f} | {precision:.3f} | {recall:.3f} |")
    # Precision rises and recall falls with the score: they meet where precision first
    # reaches recall.
    meet = next((row for row in sweep if row[1] >= row[2]), sweep[-1])
    print(f"precision and recall meet at score {meet[0]:.2f} ({meet[1]:.3f} / {meet[2]:.3f})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--train-worlds", type=int, default=WORLDS["train"])
    parser.add_argument("--val-worlds", type=int, default=WORLDS["val"])
    parser.add_argument("--test-worlds", type=int, default=WORLDS["test"])
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument(
        "--train-sensors",
        default=",".join(TRAIN_SENSORS),
        help="comma-separated sensors whose frames train the model (the test split has all)",
    )
    parser.add_argument("--eval-only", action="store_true", help="evaluate the model in --out")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="person precision and recall of the model in --out per score on the tuning split "
        f"({TUNE_WORLDS} worlds of seed + 1, Lepton 3.5), and the score where they meet",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.tune:
        return tune(args)
    started = time.perf_counter()
    sensors = dataset.available_sensors()
    trained_on = [s for s in args.train_sensors.split(",") if s in sensors]
    # Re-evaluating needs the test split only; the training figures stay those of the run that
    # made the model (kept from its metrics.json).
    wanted = ("test",) if args.eval_only else ("train", "val", "test")
    splits = {
        name: dataset.cached(CACHE_DIR, name, n, args.seed, use, args.workers)
        for name, n, use in (
            ("train", args.train_worlds, trained_on),
            ("val", args.val_worlds, trained_on),
            ("test", args.test_worlds, sensors),
        )
        if name in wanted
    }
    model_path = args.out / DEFAULT_MODEL.name
    info = _data_info(args, sensors, trained_on, splits)
    if args.eval_only:
        info = _with_training_info(info, args.out / "metrics.json")
    else:
        from models.thermal import train  # TensorFlow only here: the rest runs without it

        data = arrays(splits["train"])
        val = arrays(splits["val"])
        model, history = train.train(
            data, val, args.seed, args.epochs, checkpoint_dir=CHECKPOINT_DIR
        )
        rng = np.random.default_rng(args.seed)
        # 300 frames as representative data, or all of a smaller training set.
        n_rep = min(300, len(data["x"]))
        rep = data["x"][rng.choice(len(data["x"]), n_rep, replace=False)].astype(np.float32)
        build_path = CACHE_DIR / DEFAULT_MODEL.name
        train.quantize(model, rep, build_path)
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_path, model_path)
        train.clear_checkpoint(CHECKPOINT_DIR)  # done: a rerun starts afresh
        (args.out / "labels.txt").write_text("\n".join(CLASSES) + "\n")
        info["epochs"] = args.epochs
        info["train_seconds"] = sum(h["seconds"] for h in history)
        info["history"] = history
        info["params"] = int(model.count_params())
    result = evaluate.evaluate(model_path, splits["test"])
    lepton = [f for f in splits["test"] if f.sensor == sensors[0]][:200]
    result["timing"] = evaluate.timing(model_path, lepton)
    result["model_bytes"] = model_path.stat().st_size
    result["data"] = info
    evaluate.write_json(result, args.out / "metrics.json")
    write_card(result, args.out / "MODEL_CARD.md")
    for row in evaluate.table_rows(result):
        print(row)
    logger.info("pipeline done in %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
