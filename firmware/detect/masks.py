"""Privacy masks: site-configured polygons blanked in a sensor's frames before any detection.

A mask is rasterised once per sensor and image size. Thermal pixels under it take the median of
the unmasked pixels (so the blank adds no edge or hot spot); visible pixels take mid-grey. Frames
are never modified in place, and nothing here stores or sends them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import Polygon

from firmware.errors import ConfigError
from firmware.hal.base import ThermalFrame, VisibleFrame

if TYPE_CHECKING:
    from firmware.config.site import SiteConfig

logger = logging.getLogger(__name__)

VISIBLE_FILL = 128  # mid-grey
Sensor = Literal["thermal", "visible"]


def rasterise(polygons: list[list[list[float]]], width: int, height: int) -> npt.NDArray[np.bool_]:
    """Pixels whose centres lie inside (or on the edge of) any polygon, as a HxW boolean array."""
    covered = np.zeros((height, width), dtype=bool)
    for points in polygons:
        poly = Polygon(points)
        x0, y0, x1, y1 = poly.bounds
        # Only the polygon's bounding box is tested: pixel centres at (u + 0.5, v + 0.5).
        u0, v0 = max(0, int(np.floor(x0 - 0.5))), max(0, int(np.floor(y0 - 0.5)))
        u1, v1 = min(width, int(np.ceil(x1 + 0.5))), min(height, int(np.ceil(y1 + 0.5)))
        if u1 <= u0 or v1 <= v0:
            continue
        us, vs = np.meshgrid(np.arange(u0, u1) + 0.5, np.arange(v0, v1) + 0.5)
        inside = shapely.intersects_xy(poly, us, vs)
        covered[v0:v1, u0:u1] |= inside
    return covered


def _median(values: npt.NDArray[Any]) -> float:
    """``np.median`` of an array; of 16-bit thermal values over a modest range, from a histogram
    (the same value, at a fraction of the cost of sorting half the frame every frame)."""
    flat = values.ravel()
    if flat.dtype != np.uint16 or flat.size == 0:
        return float(np.median(flat))
    least = int(flat.min())
    if int(flat.max()) - least > 4 * flat.size:
        return float(np.median(flat))
    counts = np.bincount(flat - np.uint16(least)).cumsum()
    n = flat.size
    ranks = [n // 2 + 1] if n % 2 else [n // 2, n // 2 + 1]  # 1-based ranks of the middle
    middle = [int(v) + least for v in np.searchsorted(counts, ranks)]
    return sum(middle) / len(middle)


class PrivacyMask:
    """The masked pixels of one sensor; ``apply`` blanks them in a copy of a frame."""

    def __init__(self, sensor: Sensor, covered: npt.NDArray[np.bool_]) -> None:
        self.sensor = sensor
        self.covered = covered
        self.height, self.width = covered.shape
        self.empty = not bool(covered.any())
        self._all = bool(covered.all())
        self._open = ~covered

    @classmethod
    def for_sensor(cls, site: SiteConfig, sensor: Sensor, width: int, height: int) -> PrivacyMask:
        """The site's masks for one sensor, rasterised at that sensor's image size."""
        polygons = [m.polygon for m in site.masks.values() if m.sensor == sensor]
        mask = cls(sensor, rasterise(polygons, width, height))
        logger.info(
            "%s privacy mask: %d polygon(s), %d of %d pixels",
            sensor,
            len(polygons),
            int(mask.covered.sum()),
            width * height,
        )
        return mask

    def apply(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """A copy with masked pixels filled; the input itself when nothing is masked."""
        if array.shape[:2] != self.covered.shape:
            raise ConfigError(
                f"{self.sensor} privacy mask is {self.width}x{self.height} but the frame is "
                f"{array.shape[1]}x{array.shape[0]}: the board's {self.sensor} size is wrong"
            )
        if self.empty:
            return array
        out = array.copy()
        if self.sensor == "visible":
            out[self.covered] = VISIBLE_FILL
        else:
            source = array if self._all else array[self._open]
            out[self.covered] = np.rint(_median(source)).astype(array.dtype)
        return out

    @overload
    def apply_frame(self, frame: ThermalFrame) -> ThermalFrame: ...

    @overload
    def apply_frame(self, frame: VisibleFrame) -> VisibleFrame: ...

    def apply_frame(self, frame: ThermalFrame | VisibleFrame) -> ThermalFrame | VisibleFrame:
        """A copy of a thermal or visible frame with the mask applied."""
        kind = "thermal" if isinstance(frame, ThermalFrame) else "visible"
        if kind != self.sensor:
            raise ValueError(f"a {self.sensor} privacy mask cannot apply to a {kind} frame")
        # Frames are immutable: with nothing masked the frame itself stands for its copy.
        if isinstance(frame, ThermalFrame):
            data = self.apply(frame.data)
            return frame if data is frame.data else replace(frame, data=data)
        rgb = self.apply(frame.rgb)
        return frame if rgb is frame.rgb else replace(frame, rgb=rgb)
