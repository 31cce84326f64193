"""Site config updates on the unit: check a new config against the board, store it, and at start
pick the stored one, falling back to the provisioned one when the stored one is not valid.

A unit applies a new config by restarting (as Frigate does): every part is then built from one
consistent config, and a unit whose new config turns out bad runs on its last good one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from firmware.config.board import BoardConfig
from firmware.config.load import cross_check, load_site
from firmware.config.site import SiteConfig
from firmware.errors import ConfigError

logger = logging.getLogger(__name__)

STORED = "site.toml"  # in the unit's data directory


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_and_store(
    board: BoardConfig, current: SiteConfig, text: str, data_dir: Path, version: str
) -> SiteConfig:
    """Check a new site config as the unit would load it; store it only if it is good."""
    candidate = data_dir / f"site-v{version}.toml"
    _write_atomically(candidate, text)
    try:
        site = load_site(candidate)
        cross_check(board, site, candidate)
        if site.unit.id != current.unit.id:
            raise ConfigError(
                f"{candidate}: unit.id: is {site.unit.id!r}, this unit is {current.unit.id!r}"
            )
    except ConfigError as exc:
        candidate.unlink()
        # Name it by its version: the operator knows "v3", not the unit's temporary file.
        raise ConfigError(str(exc).replace(str(candidate), f"site config v{version}")) from exc
    os.replace(candidate, data_dir / STORED)
    logger.info("site config v%s checked and stored in %s", version, data_dir / STORED)
    return site


def effective_site(
    board: BoardConfig, provisioned: Path, data_dir: Path
) -> tuple[SiteConfig, Path, str | None]:
    """The config to run on, where it came from, and what was wrong with a stored update."""
    stored = data_dir / STORED
    if stored.exists():
        try:
            site = load_site(stored)
            cross_check(board, site, stored)
            return site, stored, None
        except ConfigError as exc:
            logger.error("stored site config refused, running on %s: %s", provisioned, exc)
            problem = str(exc).splitlines()[0]
    else:
        problem = None
    site = load_site(provisioned)
    cross_check(board, site, provisioned)
    return site, provisioned, problem
