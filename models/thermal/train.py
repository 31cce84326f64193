"""Build, train and fully int8-quantise the thermal detector (needs the ``train`` extra).

The network is CenterNet-style ("objects as points"): a small strided backbone of depthwise-
separable convolutions to stride 16, upsampling steps back to ``targets.STRIDE`` (2), each joined
with the skip features of its resolution, and three heads there: per-class centre heatmap, box
regression (centre offset, log size), and person lying posture. It has no anchors and no
detection post-processing op, so every layer quantises to int8 and the decoding stays a few
vectorised numpy lines on the unit.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from firmware.detect.thermal import CLASSES, INPUT_HW
from models.thermal.targets import STRIDE

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
HEAT_PRIOR = 0.01  # initial heatmap probability (focal-loss paper's prior)
BOX_WEIGHT = 2.0  # box regression against heatmap loss: boxes must reach IoU 0.5
AUGMENT_SHARE = 0.5  # images of a batch given texture and noise
# At most, in kelvin. v4's were in normalised units (0.6 and 0.08 of the frame's spread), which in
# a sunlit lot with a 20 K spread painted 12 K of texture over persons 3 K off the asphalt.
TEXTURE_K = 3.0
NOISE_K = 0.25
IOU_WEIGHT = 1.0  # 1 - IoU at centre cells besides the L1: thin persons need tight boxes
WIDTH = 1.5  # channel multiplier: v1's 1.0 underfitted (train and val loss both high)


def _tf() -> Any:
    """TensorFlow, set up for reproducible CPU training."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    tf = importlib.import_module("tensorflow")
    tf.config.experimental.enable_op_determinism()
    return tf


def _channels(base: int) -> int:
    """A layer's channel count at WIDTH, rounded to a multiple of 8 (what int8 kernels like)."""
    return max(8, round(base * WIDTH / 8.0) * 8)


def build_model(seed: int) -> Any:
    """The detector as a Keras model: input (rows, cols, 1), outputs heatmap, regression, lying."""
    tf = _tf()
    keras = tf.keras
    keras.utils.set_random_seed(seed)
    layers = keras.layers

    def conv(x: Any, ch: int, stride: int = 1, sep: bool = True) -> Any:
        ch = _channels(ch)
        if sep:
            x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU(6.0)(x)
            x = layers.Conv2D(ch, 1, use_bias=False)(x)
        else:
            x = layers.Conv2D(ch, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(x)

    inp = keras.Input((INPUT_HW[0], INPUT_HW[1], 1), name="thermal")
    x = conv(inp, 16, 2, sep=False)  # /2
    x = s2 = conv(x, 24, 1, sep=False)
    x = conv(x, 32, 2)  # /4
    s4 = conv(x, 32)
    x = conv(s4, 64, 2)  # /8
    s8 = conv(x, 64)
    # 120 rows are 15 at /8: pad to an even count for /16 and crop back after upsampling.
    pad_rows = (-(INPUT_HW[0] // 8)) % 2
    x = layers.ZeroPadding2D(((0, pad_rows), (0, 0)))(s8) if pad_rows else s8
    x = conv(x, 96, 2)  # /16
    x = conv(x, 96)
    x = conv(x, 96)

    def up(x: Any, skip: Any, ch: int, crop_rows: int = 0) -> Any:
        """Twice the resolution, joined with the skip features of that resolution."""
        x = layers.UpSampling2D(2, interpolation="nearest")(x)
        if crop_rows:
            x = layers.Cropping2D(((0, crop_rows), (0, 0)))(x)
        x = layers.Conv2D(_channels(ch), 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU(6.0)(layers.Add()([x, skip]))

    x = conv(up(x, s8, 64, pad_rows), 64)  # /8
    feat = conv(up(x, s4, 32), 48)  # /4
    head = 48
    if STRIDE == 2:
        # One more step up, joined with the stride-2 features; narrower heads keep the cost.
        feat = conv(up(feat, s2, 24), 24)  # /2
        head = 24

    bias = float(-np.log((1.0 - HEAT_PRIOR) / HEAT_PRIOR))
    h = conv(feat, head)
    heat = layers.Conv2D(
        len(CLASSES),
        1,
        activation="sigmoid",
        bias_initializer=keras.initializers.Constant(bias),
        name="heatmap",
    )(h)
    r = conv(feat, head)
    reg = layers.Conv2D(4, 1, name="box")(r)
    lying = layers.Conv2D(1, 1, activation="sigmoid", name="lying")(h)
    return keras.Model(inp, [heat, reg, lying], name="polewatch_thermal")


def _box_iou(tf: Any, reg: Any, target: Any) -> Any:
    """IoU of predicted and target boxes (offset, log size) of the same cell, in cell units."""

    def edges(r: Any) -> tuple[Any, Any, Any, Any]:
        w = tf.exp(tf.clip_by_value(r[..., 2], -4.0, 5.0))
        h = tf.exp(tf.clip_by_value(r[..., 3], -4.0, 5.0))
        return r[..., 0] - w / 2, r[..., 1] - h / 2, r[..., 0] + w / 2, r[..., 1] + h / 2

    px0, py0, px1, py1 = edges(reg)
    tx0, ty0, tx1, ty1 = edges(target)
    iw = tf.nn.relu(tf.minimum(px1, tx1) - tf.maximum(px0, tx0))
    ih = tf.nn.relu(tf.minimum(py1, ty1) - tf.maximum(py0, ty0))
    inter = iw * ih
    union = (px1 - px0) * (py1 - py0) + (tx1 - tx0) * (ty1 - ty0) - inter
    return inter / tf.maximum(union, 1e-6)


def _losses(tf: Any, outputs: list[Any], batch: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Focal heatmap loss, L1 and IoU box loss at centres, BCE lying loss at person centres."""
    heat, reg, lying = outputs
    gt, w = batch["heat"], batch["weight"]
    p = tf.clip_by_value(heat, 1e-4, 1.0 - 1e-4)
    pos = tf.cast(gt >= 1.0, tf.float32)
    pos_loss = -tf.math.log(p) * (1.0 - p) ** 2 * pos
    neg_loss = -tf.math.log(1.0 - p) * p**2 * (1.0 - gt) ** 4 * (1.0 - pos) * w
    n_pos = tf.maximum(tf.reduce_sum(pos), 1.0)
    heat_loss = (tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)) / n_pos
    rt = batch["reg"]
    mask = rt[..., 4:5]
    err = tf.abs(reg - rt[..., :4]) * tf.constant([1.0, 1.0, 0.5, 0.5])
    n_box = tf.maximum(tf.reduce_sum(mask), 1.0)
    iou_err = (1.0 - _box_iou(tf, reg, rt))[..., None]
    box_loss = (tf.reduce_sum(err * mask) + IOU_WEIGHT * tf.reduce_sum(iou_err * mask)) / n_box
    lt = batch["lying"]
    lmask = lt[..., 1:2]
    lp = tf.clip_by_value(lying, 1e-4, 1.0 - 1e-4)
    bce = -(lt[..., 0:1] * tf.math.log(lp) + (1.0 - lt[..., 0:1]) * tf.math.log(1.0 - lp))
    lying_loss = tf.reduce_sum(bce * lmask) / tf.maximum(tf.reduce_sum(lmask), 1.0)
    return heat_loss, box_loss, lying_loss


def _texture(rng: np.random.Generator, n: int) -> F32:
    """Smooth random fields (n, rows, cols) of unit scale: ground texture real scenes have
    (grass, patched asphalt, puddles) and the simulator's clean surfaces lack."""
    rows, cols = INPUT_HW
    out = np.zeros((n, rows, cols), dtype=np.float32)
    # Blobs of several sizes, and tall thin streaks (grass, kerbs, poles seen from above).
    for cell_r, cell_c in ((4, 4), (8, 8), (16, 16), (12, 2)):
        coarse = rng.standard_normal((n, rows // cell_r + 2, cols // cell_c + 2))
        blocks = np.repeat(np.repeat(coarse, cell_r, axis=1), cell_c, axis=2)[:, :rows, :cols]
        out += blocks.astype(np.float32) / 2.0
    # A 3x3 box blur takes the blocks' edges off.
    pad = np.pad(out, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return (
        sum(  # type: ignore[return-value]
            pad[:, i : i + rows, j : j + cols] for i in range(3) for j in range(3)
        )
        / np.float32(9.0)
    )


def _augment(x: F32, kelvin: F32, rng: np.random.Generator) -> F32:
    """Ground texture and pixel noise on half of a batch's images (targets are unchanged); kelvin
    is each image's kelvin per normalised unit."""
    pick = rng.random(len(x)) < AUGMENT_SHARE
    n = int(pick.sum())
    if n:
        per_unit = 1.0 / kelvin[pick][:, None, None]
        amp = (rng.uniform(0.0, TEXTURE_K, (n, 1, 1)) * per_unit).astype(np.float32)
        noise = (rng.uniform(0.0, NOISE_K, (n, 1, 1)) * per_unit).astype(np.float32)
        x[pick] += amp * _texture(rng, n) + noise * rng.standard_normal(x[pick].shape).astype(
            np.float32
        )
        np.clip(x, -2.0, 6.0, out=x)
    return x


def _batches(
    data: dict[str, npt.NDArray[Any]], batch_size: int, rng: np.random.Generator
) -> Iterator[dict[str, npt.NDArray[Any]]]:
    """Shuffled batches, each image flipped left-right with probability 1/2, some textured."""
    n = len(data["x"])
    order = rng.permutation(n)
    for start in range(0, n - batch_size + 1, batch_size):
        idx = np.sort(order[start : start + batch_size])
        flip = rng.random(batch_size) < 0.5
        batch = {k: v[idx].astype(np.float32) for k, v in data.items()}
        if flip.any():
            for k in ("x", "heat", "weight", "lying"):
                batch[k][flip] = batch[k][flip][:, :, ::-1]
            reg = batch["reg"][flip][:, :, ::-1].copy()
            # The centre's cell mirrors; its offset within the cell becomes 1 - offset.
            reg[..., 0] = np.where(reg[..., 4] > 0, 1.0 - reg[..., 0], 0.0)
            batch["reg"][flip] = reg
        batch["x"] = _augment(batch["x"], batch.pop("kelvin"), rng)[..., None]
        yield batch


CHECKPOINT_ARRAYS = "checkpoint.npz"
CHECKPOINT_STATE = "checkpoint.json"  # written last: its presence says the arrays are complete


class Checkpoint:
    """Where an interrupted training run resumes: after its last finished epoch.

    Saved after every epoch: the model's weights (batch-norm statistics included), the
    optimizer's state (step count and moments), the shuffling generator's state and the history,
    with the run's settings. A run resumes only a checkpoint of the very same settings, so the
    resumed model is the one an uninterrupted run makes (TensorFlow's ops are deterministic here).
    """

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.folder = folder
        self.settings = settings
        self._arrays = folder / CHECKPOINT_ARRAYS
        self._state = folder / CHECKPOINT_STATE

    def save(
        self, model: Any, opt: Any, rng: np.random.Generator, history: list[dict[str, float]]
    ) -> None:
        """The run's state after the epochs in history; written whole or not at all."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        arrays.update({f"o{i}": v.numpy() for i, v in enumerate(opt.variables)})
        partial = self._arrays.with_suffix(".partial.npz")
        np.savez(partial, **arrays)
        state = {"settings": self.settings, "rng": rng.bit_generator.state, "history": history}
        partial_state = self._state.with_suffix(".partial")
        partial_state.write_text(json.dumps(state))
        partial.replace(self._arrays)
        partial_state.replace(self._state)  # last: its presence says the arrays are complete

    def restore(self, model: Any, opt: Any, rng: np.random.Generator) -> list[dict[str, float]]:
        """The history of a checkpoint of these settings, with model, optimizer and generator
        set to where it was; [] (nothing changed) when there is none."""
        if not self._state.exists() or not self._arrays.exists():
            return []
        state = json.loads(self._state.read_text())
        if state.get("settings") != self.settings:
            logger.info("%s is of other settings: training from the start", self._state)
            return []
        with np.load(self._arrays) as arrays:
            weights = [arrays[f"w{i}"] for i in range(len(model.get_weights()))]
            opt.build(model.trainable_variables)
            moments = [arrays[f"o{i}"] for i in range(len(opt.variables))]
        model.set_weights(weights)
        for var, value in zip(opt.variables, moments, strict=True):
            var.assign(value)
        rng.bit_generator.state = state["rng"]
        history: list[dict[str, float]] = state["history"]
        logger.info("resuming after epoch %d from %s", len(history), self.folder)
        return history


def clear_checkpoint(folder: Path) -> None:
    """Forget the run saved in folder: the next one starts from the beginning."""
    (folder / CHECKPOINT_STATE).unlink(missing_ok=True)
    (folder / CHECKPOINT_ARRAYS).unlink(missing_ok=True)


def train(
    data: dict[str, npt.NDArray[Any]],
    val: dict[str, npt.NDArray[Any]],
    seed: int,
    epochs: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    checkpoint_dir: Path | None = None,
) -> tuple[Any, list[dict[str, float]]]:
    """Train on data (x, kelvin, heat, reg, lying, weight arrays); return the model and epoch
    history. With checkpoint_dir, every epoch is saved there and a run of the same settings
    resumes after the last one saved."""
    tf = _tf()
    model = build_model(seed)
    steps = epochs * (len(data["x"]) // batch_size)
    schedule = tf.keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.02)
    opt = tf.keras.optimizers.Adam(schedule)

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
    def step(batch: dict[str, Any]) -> Any:
        with tf.GradientTape() as tape:
            outputs = model(batch["x"], training=True)
            hl, bl, ll = _losses(tf, outputs, batch)
            loss = hl + BOX_WEIGHT * bl + 0.5 * ll
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return tf.stack([loss, hl, bl, ll])

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
    def evaluate(batch: dict[str, Any]) -> Any:
        hl, bl, ll = _losses(tf, model(batch["x"], training=False), batch)
        return tf.stack([hl + BOX_WEIGHT * bl + 0.5 * ll, hl, bl, ll])

    rng = np.random.default_rng(seed)
    checkpoint = None
    if checkpoint_dir is not None:
        settings = {
            "seed": seed,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "train_images": len(data["x"]),
            "val_images": len(val["x"]),
            "params": int(model.count_params()),
            # A sample of the images: other data of the same size is another run.
            "data": hashlib.sha256(np.ascontiguousarray(data["x"][::97]).tobytes()).hexdigest(),
        }
        checkpoint = Checkpoint(checkpoint_dir, settings)
    history = checkpoint.restore(model, opt, rng) if checkpoint is not None else []
    for epoch in range(len(history), epochs):
        started = time.perf_counter()
        sums = np.zeros(4)
        count = 0
        for batch in _batches(data, batch_size, rng):
            sums += step({k: tf.constant(v) for k, v in batch.items()}).numpy()
            count += 1
        vsums = np.zeros(4)
        vcount = 0
        for start in range(0, len(val["x"]), 64):
            vb = {
                k: v[start : start + 64].astype(np.float32) for k, v in val.items() if k != "kelvin"
            }
            vb["x"] = vb["x"][..., None]
            vsums += evaluate({k: tf.constant(v) for k, v in vb.items()}).numpy()
            vcount += 1
        t, v = sums / max(count, 1), vsums / max(vcount, 1)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(t[0]),
                "val_loss": float(v[0]),
                "val_heat": float(v[1]),
                "val_box": float(v[2]),
                "val_lying": float(v[3]),
                "seconds": time.perf_counter() - started,
            }
        )
        logger.info(
            "epoch %d/%d: loss %.3f (heat %.3f box %.3f lying %.3f), val %.3f "
            "(heat %.3f box %.3f lying %.3f), %.0f s",
            epoch + 1,
            epochs,
            *t,
            *v,
            history[-1]["seconds"],
        )
        if checkpoint is not None:
            checkpoint.save(model, opt, rng, history)
    return model, history


def quantize(model: Any, representative: F32, path: Path) -> int:
    """Convert to a fully int8 .tflite (int8 input and outputs) at path; return its size."""
    tf = _tf()

    def frames() -> Iterator[list[F32]]:
        for img in representative:
            yield [img[None, :, :, None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = frames
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    blob = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    logger.info("wrote %s (%d bytes)", path, len(blob))
    return len(blob)
