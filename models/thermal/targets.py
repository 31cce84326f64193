"""Training targets of the CenterNet-style detector, from labelled boxes (no TensorFlow needed).

Per output cell: a class heatmap (a Gaussian peak of 1 at each object's centre cell), the box
regression at centre cells (offset of the centre within the cell, log width and height in cells),
whether a person centred there lies, and weights: heatmap cells inside ignored objects' boxes are
left out of the loss, so an object too small or hidden to label is neither taught as one nor as
background.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from firmware.detect.thermal import CLASSES, INPUT_HW
from models.thermal.metrics import GroundTruth

F32 = npt.NDArray[np.float32]
# Model input pixels per output cell. v3's 4 put two people standing side by side into
# neighbouring cells, where the 3x3 peak test keeps one of them and its box spans both.
STRIDE = 2
OUT_HW = (INPUT_HW[0] // STRIDE, INPUT_HW[1] // STRIDE)
REG_CHANNELS = 5  # dx, dy, log w, log h, mask
LYING_CHANNELS = 2  # lying, mask


def encode(truths: Sequence[GroundTruth], frame_hw: tuple[int, int]) -> tuple[F32, F32, F32, F32]:
    """Heatmap (rows, cols, classes), regression (.., 5), lying (.., 2), heat weight (.., 1)."""
    rows, cols = OUT_HW
    heat = np.zeros((rows, cols, len(CLASSES)), dtype=np.float32)
    reg = np.zeros((rows, cols, REG_CHANNELS), dtype=np.float32)
    lying = np.zeros((rows, cols, LYING_CHANNELS), dtype=np.float32)
    weight = np.ones((rows, cols, 1), dtype=np.float32)
    # Frame pixels to output cells.
    sx = cols / frame_hw[1]
    sy = rows / frame_hw[0]
    yy = np.arange(rows, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(cols, dtype=np.float32)[None, :] + 0.5
    for gt in truths:
        x0, y0, x1, y1 = gt.box[0] * sx, gt.box[1] * sy, gt.box[2] * sx, gt.box[3] * sy
        if gt.ignore:
            c0, r0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
            c1, r1 = min(math.ceil(x1), cols), min(math.ceil(y1), rows)
            weight[r0:r1, c0:c1] = 0.0
            continue
        w, h = max(x1 - x0, 0.25), max(y1 - y0, 0.25)
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        col = min(max(int(cx), 0), cols - 1)
        row = min(max(int(cy), 0), rows - 1)
        # Elliptic Gaussian sized to the box (as TTFNet), at least half a cell wide.
        sig_x, sig_y = max(0.54 * w / 6.0, 0.5), max(0.54 * h / 6.0, 0.5)
        g = np.exp(-((xx - cx) ** 2) / (2 * sig_x**2) - ((yy - cy) ** 2) / (2 * sig_y**2))
        k = CLASSES.index(gt.cls)
        np.maximum(heat[:, :, k], g.astype(np.float32), out=heat[:, :, k])
        heat[row, col, k] = 1.0
        reg[row, col] = (cx - col, cy - row, math.log(w), math.log(h), 1.0)
        if gt.cls == "person" and gt.lying is not None:
            lying[row, col] = (1.0 if gt.lying else 0.0, 1.0)
    # An ignored box never hides a counted object's own centre.
    weight[heat.max(axis=-1, keepdims=True) >= 1.0] = 1.0
    return heat, reg, lying, weight
