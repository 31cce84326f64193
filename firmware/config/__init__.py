"""Board and site configuration: strict models, loading, and cross-checks.

The names below are imported lazily, so that a module needing only ``firmware.config.base`` (a
detector's config model) does not pull in the site config, which imports the detectors.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BoardConfig": "firmware.config.board",
    "SiteConfig": "firmware.config.site",
    "load_board": "firmware.config.load",
    "load_pair": "firmware.config.load",
    "load_site": "firmware.config.load",
    "validate_files": "firmware.config.load",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
