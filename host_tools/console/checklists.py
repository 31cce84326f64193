"""Checklists per alarm kind: the project's defaults, overridden per receiver by a TOML file.

Validated strictly: an unknown kind, an unknown key or an item that is not short text is an
error naming the file and the key path.
"""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from firmware.errors import ConfigError
from firmware.uplink.protocol import EventKind

logger = logging.getLogger(__name__)

DEFAULTS = Path(__file__).with_name("checklists.toml")
OVERRIDE_NAME = "checklists.toml"  # looked for next to the receiver's database
KINDS = (*(k.name.lower() for k in EventKind), "fault", "offline", "default")
MAX_ITEMS = 20
MAX_ITEM_CHARS = 200


def parse_checklists(text: str, where: Path) -> dict[str, list[str]]:
    """The checklists in one TOML text; :class:`ConfigError` naming ``where`` and the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
    out: dict[str, list[str]] = {}
    problems: list[str] = []
    for kind, table in data.items():
        if kind not in KINDS:
            problems.append(
                f"{where}: {kind}: unknown alarm kind (expected one of {', '.join(KINDS)})"
            )
            continue
        if not isinstance(table, dict):
            problems.append(f"{where}: {kind}: expected a table with 'items'")
            continue
        extra = sorted(set(table) - {"items"})
        if extra:
            problems.append(f"{where}: {kind}.{extra[0]}: unknown key (only 'items')")
        items = table.get("items")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
            problems.append(f"{where}: {kind}.items: expected a list of 1..{MAX_ITEMS} texts")
            continue
        for i, item in enumerate(items):
            if not isinstance(item, str) or not 1 <= len(item.strip()) <= MAX_ITEM_CHARS:
                problems.append(
                    f"{where}: {kind}.items[{i}]: expected text of 1..{MAX_ITEM_CHARS} characters"
                )
        if len(set(items)) != len(items):
            problems.append(f"{where}: {kind}.items: the same item is listed twice")
        out[kind] = [str(i).strip() for i in items]
    if problems:
        raise ConfigError("\n".join(problems))
    return out


def load_checklists(override: Path | None = None) -> dict[str, list[str]]:
    """The defaults, with the kinds that ``override`` (if it exists) gives replaced."""
    lists = parse_checklists(DEFAULTS.read_text(encoding="utf-8"), DEFAULTS)
    if override is not None and override.exists():
        lists.update(parse_checklists(override.read_text(encoding="utf-8"), override))
        logger.info("checklists: defaults with %s", override)
    return lists
