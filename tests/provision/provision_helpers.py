"""Shared by the provisioning tests: paths, a site config, console users (not fixtures)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from host_tools.console.users import Users
from host_tools.provision.identity import DEFAULT_TEMPLATE, SiteValues, check_site, render_site
from host_tools.receiver.store import ReceiverStore
from tests.host_tools.console_helpers import PASSWORD

REPO = Path(__file__).resolve().parents[2]
SIM_BOARD = REPO / "board_configs" / "sim.toml"

MakeBundle = Callable[..., Path]


def add_console_user(store: ReceiverStore, role: str, name: str | None = None) -> str:
    """Make a console user of ``role`` with the test password (:data:`PASSWORD`); its name."""
    name = name or role
    Users(store).add(name, role, PASSWORD, time.time())
    return name


def write_site(path: Path, unit_id: str = "pole-0042", port: int = 5683) -> Path:
    """A site config from the default template, for the sim board."""
    text = render_site(DEFAULT_TEMPLATE, SiteValues(unit_id, "127.0.0.1", port))
    check_site(text, path, SIM_BOARD)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
