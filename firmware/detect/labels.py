"""Label maps of detection models: one label a line, or ``id label`` lines; and class mapping."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from firmware.detect.base import ObjectClass
from firmware.errors import ModelError

logger = logging.getLogger(__name__)

DEFAULT_CLASS_MAP: dict[str, ObjectClass] = {
    "person": "person",
    **dict.fromkeys(("car", "truck", "bus", "motorcycle", "bicycle"), "vehicle"),
    **dict.fromkeys(("cat", "dog", "bird", "horse", "sheep", "cow"), "animal"),
}
PLACEHOLDER_LABELS = frozenset({"???", "background", "__background__"})
_ID_LABEL = re.compile(r"^(\d+)[\s:,]+(\S.*)$")

LabelMap = dict[int, str]  # model class index -> label


def load_labels(path: Path, offset: int | None = None) -> LabelMap:
    """Read a label map: one label a line (line number = index), or ``id label`` lines.

    Model class ``c`` gets the label at index ``c + offset``; with ``offset`` None, 1 when a
    one-per-line file starts with a placeholder (``???``, ``background``), else 0. Placeholder
    and empty lines name no class.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{path}: no such label file") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the label file: {exc.strerror}") from exc
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    filled = [line for line in lines if line]
    if not filled:
        raise ModelError(f"{path}: the label file is empty")
    by_index: dict[int, str] = {}
    if all(_ID_LABEL.match(line) for line in filled):
        for lineno, line in enumerate(lines, 1):
            match = _ID_LABEL.match(line)
            if match is None:
                continue
            idx = int(match.group(1))
            if idx in by_index:
                raise ModelError(f"{path}: line {lineno}: id {idx} is listed twice")
            by_index[idx] = match.group(2).strip()
        default_offset = 0
    else:
        by_index = dict(enumerate(lines))
        default_offset = 1 if lines[0].lower() in PLACEHOLDER_LABELS else 0
    shift = default_offset if offset is None else offset
    return {
        idx - shift: label
        for idx, label in by_index.items()
        if idx >= shift and label and label.lower() not in PLACEHOLDER_LABELS
    }
