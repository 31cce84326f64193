"""Loading config files: TOML parsing, strict validation, and errors that name file and key path."""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from firmware.config.board import BoardConfig
from firmware.config.site import SiteConfig
from firmware.errors import ConfigError

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error becomes a :class:`ConfigError`."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc


def _path_of(loc: Sequence[int | str], data: Any) -> str:
    """Render a pydantic error location as a TOML key path, dropping union tags."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        if (
            isinstance(node, dict)
            and item not in node
            and node.get("backend", node.get("transport")) == item
        ):
            continue  # a discriminated union's tag, not a key the user wrote
        parts.append(("." if parts else "") + item)
        node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def format_errors(path: Path, exc: ValidationError, data: Any) -> list[str]:
    """One line per problem: ``file: key.path: what is wrong``."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        key = _path_of(err["loc"], data)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "union_tag_invalid":
            msg = msg.replace("does not match any of the expected tags", "is not one of")
        if err["type"] == "value_error" and ":" in msg:
            # Cross-checks report several problems, each as "relative.path: message".
            for line in msg.splitlines():
                rel, _, text = line.partition(": ")
                full = rel if key == "(top level)" else f"{key}.{rel}"
                lines.append(f"{path}: {full}: {text}")
            continue
        value = ""
        if err["type"] not in ("missing", "value_error") and "input" in err:
            shown = repr(err["input"])
            value = f" (got {shown[:60]})" if not isinstance(err["input"], dict) else ""
        lines.append(f"{path}: {key}: {msg}{value}")
    return lines


def validate_model(model: type[M], data: dict[str, Any], path: Path) -> M:
    """Validate parsed data against a model; raise :class:`ConfigError` listing every problem."""
    try:
        # Files a config names (voice clips) are relative to the config's folder.
        return model.model_validate(data, context={"config_dir": path.parent})
    except ValidationError as exc:
        raise ConfigError("\n".join(format_errors(path, exc, data))) from None


def load_board(path: Path) -> BoardConfig:
    """Load and validate a board config file."""
    return validate_model(BoardConfig, read_toml(path), path)


def load_site(path: Path) -> SiteConfig:
    """Load and validate a site config file."""
    return validate_model(SiteConfig, read_toml(path), path)


def cross_check(board: BoardConfig, site: SiteConfig, site_path: Path) -> None:
    """Check a site config against the board it runs on; raise naming the site's keys."""
    errors: list[str] = []
    outputs = ", ".join(sorted(board.outputs)) or "none"
    for name in site.deterrence.limits:
        if name not in board.outputs:
            errors.append(
                f"deterrence.limits.{name}: the board has no output {name!r} (it has: {outputs})"
            )
    for pname, profile in site.deterrence.profiles.items():
        for j, step in enumerate(profile.steps):
            if step.output is None:
                if board.audio is None:
                    errors.append(
                        f"deterrence.profiles.{pname}.steps[{j}].voice: the board has no "
                        "[audio] player for voice clips"
                    )
            elif step.output not in board.outputs:
                errors.append(
                    f"deterrence.profiles.{pname}.steps[{j}].output: the board has no "
                    f"output {step.output!r} (it has: {outputs})"
                )
    for zname, zone in site.zones.items():
        sensor = board.thermal if zone.sensor == "thermal" else board.visible
        if sensor is None:
            errors.append(f"zones.{zname}.sensor: the board has no {zone.sensor} camera")
            continue
        for j, (u, v) in enumerate(zone.polygon):
            if not (0 <= u <= sensor.width and 0 <= v <= sensor.height):
                errors.append(
                    f"zones.{zname}.polygon[{j}]: point ({u}, {v}) lies outside the "
                    f"{sensor.width}x{sensor.height} {zone.sensor} image"
                )
    for mname, mask in site.masks.items():
        camera = board.thermal if mask.sensor == "thermal" else board.visible
        if camera is None:
            errors.append(f"masks.{mname}.sensor: the board has no {mask.sensor} camera")
            continue
        for j, (u, v) in enumerate(mask.polygon):
            if not (0 <= u <= camera.width and 0 <= v <= camera.height):
                errors.append(
                    f"masks.{mname}.polygon[{j}]: point ({u}, {v}) lies outside the "
                    f"{camera.width}x{camera.height} {mask.sensor} image"
                )
    visible = site.detection.visible
    if visible is not None and visible.enabled and board.visible is None:
        errors.append("detection.visible: the board has no visible camera")
    if errors:
        raise ConfigError("\n".join(f"{site_path}: {e}" for e in errors))


def load_pair(board_path: Path, site_path: Path) -> tuple[BoardConfig, SiteConfig]:
    """Load a board and a site config and check them against each other."""
    board = load_board(board_path)
    site = load_site(site_path)
    cross_check(board, site, site_path)
    return board, site


def config_kind(data: dict[str, Any]) -> str | None:
    """Tell a board config (``[board]``) from a site config (``[unit]``) by its tables."""
    if "board" in data:
        return "board"
    if "unit" in data:
        return "site"
    return None


def validate_files(paths: Sequence[Path]) -> list[str]:
    """Validate each file; when boards and sites are given together, cross-check every pair.

    Returns the list of problems (empty when everything is valid).
    """
    problems: list[str] = []
    boards: list[tuple[Path, BoardConfig]] = []
    sites: list[tuple[Path, SiteConfig]] = []
    for path in paths:
        try:
            data = read_toml(path)
            kind = config_kind(data)
            if kind == "board":
                boards.append((path, validate_model(BoardConfig, data, path)))
            elif kind == "site":
                sites.append((path, validate_model(SiteConfig, data, path)))
            else:
                problems.append(
                    f"{path}: (top level): neither a board config (no [board] table) "
                    "nor a site config (no [unit] table)"
                )
        except ConfigError as exc:
            problems.extend(str(exc).splitlines())
    for _, board in boards:
        for site_path, site in sites:
            try:
                cross_check(board, site, site_path)
            except ConfigError as exc:
                problems.extend(
                    f"{line} [with board {board.board.name!r}]" for line in str(exc).splitlines()
                )
    return problems
