"""Installing a verified bundle into a unit's A/B slots: onto a root directory, or over SSH.

Onto a root (a mounted SD card, or ``/`` on the unit itself): the release is written into the
free slot (staged, then renamed into place), the systemd units are installed and enabled (as
``systemctl enable`` would, by links), the fleet's public key and, on a first install, the
unit's OSCORE context are put in place, and the ``current`` link is switched (see
:mod:`host_tools.provision.slots`). An update is on trial until its health check passes.

Over SSH the bundle is copied to the unit and installed there by the unit's own committed
``polewatch flash --root /``, which verifies it again with the fleet key stored on the unit;
then the unit is restarted onto it. A first install goes by SD card (the unit has no polewatch
yet to install with).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shlex
import shutil
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.errors import PolewatchError
from host_tools.provision.bundle import SYSTEMD_UNITS, BundleError, VerifiedBundle
from host_tools.provision.progress import Progress
from host_tools.provision.signing import SignatureError, public_pem, verify
from host_tools.provision.slots import (
    CURRENT,
    DATA,
    MAX_BOOTS,
    PREFIX,
    TRIAL_TIMEOUT_S,
    Slots,
)

logger = logging.getLogger(__name__)

SYSTEMD_DIR = Path("etc/systemd/system")
FLEET_KEY = Path("etc/polewatch/fleet-key.pub")
# Which target each unit is enabled under (its [Install] WantedBy=).
ENABLE = {"polewatch.service": "multi-user.target", "polewatch-health.timer": "timers.target"}
REMOTE_PYTHON = "/opt/polewatch/venv/bin/python"


class InstallError(PolewatchError, RuntimeError):
    """A bundle does not fit the target, or the target cannot take it."""


@dataclass
class Plan:
    """What an installation does, step by step; ``run`` is None where a step only informs."""

    slot: str
    steps: list[tuple[str, Callable[[], None] | None]] = field(default_factory=list)
    trial: bool = False

    def add(self, text: str, run: Callable[[], None] | None = None) -> None:
        """Append a step."""
        self.steps.append((text, run))


def plan_root_install(
    bundle: VerifiedBundle,
    root: Path,
    fleet_key: Ed25519PublicKey,
    *,
    expected_board: str | None = None,
    identity: Path | None = None,
    trial_timeout_s: float = TRIAL_TIMEOUT_S,
    max_boots: int = MAX_BOOTS,
    progress: Progress | None = None,
) -> Plan:
    """Check that the bundle fits the root's unit and plan its installation (nothing written)."""
    if not root.is_dir():
        raise InstallError(f"{root}: not a directory (mount the unit's SD card root first)")
    slots = Slots(root)
    if expected_board is not None and expected_board != bundle.board:
        raise InstallError(
            f"{bundle.path}: refused: built for board {bundle.board!r}, not {expected_board!r}"
        )
    trial = slots.state().get("trial")
    if trial:
        raise InstallError(
            f"{slots.base}: release {trial['release']} is still on trial; wait for its health "
            "check, or run 'polewatch slot commit' or 'polewatch slot rollback' first"
        )
    current = slots.link(CURRENT)
    installed = slots.manifest(current)
    if installed is not None:
        if installed.get("board") != bundle.board:
            raise InstallError(
                f"{bundle.path}: refused: built for board {bundle.board!r}, but the unit at "
                f"{root} runs board {installed.get('board')!r}"
            )
        if installed.get("unit") != bundle.unit:
            raise InstallError(
                f"{bundle.path}: refused: built for unit {bundle.unit!r}, but {root} is unit "
                f"{installed.get('unit')!r}"
            )
    slot = slots.free_slot()
    plan = Plan(slot)
    n = len(bundle.files)
    plan.add(
        f"write release {bundle.release} ({n} files, code unpacked from {bundle.wheel}) into "
        f"{PREFIX}/slots/{slot}",
        lambda: _write_slot(bundle, slots, slot, progress),
    )
    names = ", ".join(SYSTEMD_UNITS)
    plan.add(
        f"install {names} into {SYSTEMD_DIR} and enable them",
        lambda: _install_units(bundle, root),
    )
    plan.add(f"install the fleet's public key as {FLEET_KEY}", lambda: _put_key(root, fleet_key))
    oscore = root / DATA / "oscore"
    if (oscore / "secret.json").exists():
        ignored = f"; --identity {identity} not used" if identity is not None else ""
        plan.add(f"keep the unit's OSCORE context in {DATA}/oscore (identity, counters){ignored}")
    elif identity is not None:
        if not (identity / "secret.json").is_file():
            raise InstallError(f"{identity}: no OSCORE context (secret.json missing)")
        plan.add(
            f"install the unit's OSCORE context from {identity} into {DATA}/oscore (owner-only)",
            lambda: _put_identity(identity, oscore),
        )
    else:
        plan.add(
            f"WARNING: no OSCORE context in {DATA}/oscore and none given (--identity): the unit "
            "cannot report until it has one"
        )

    def activate() -> None:
        slots.activate(slot, trial_timeout_s=trial_timeout_s, max_boots=max_boots)

    if current is None:
        plan.add(f"make slot {slot} current and committed (first install)", activate)
    else:
        plan.trial = True
        plan.add(
            f"switch current to slot {slot} on trial (previous: slot {current}, release "
            f"{slots.release(current)}); rolled back unless healthy within {trial_timeout_s:.0f} s "
            f"or after {max_boots} failed starts",
            activate,
        )
    return plan


def run_plan(plan: Plan, dry_run: bool, progress: Progress | None = None) -> None:
    """Carry a plan out (or, dry, only show it)."""
    for text, run in plan.steps:
        if progress:
            progress.step(("would " if dry_run else "") + text)
        else:
            logger.info("%s%s", "would " if dry_run else "", text)
        if run is not None and not dry_run:
            run()
    if progress:
        progress.close()


def _write_slot(bundle: VerifiedBundle, slots: Slots, slot: str, progress: Progress | None) -> None:
    """Write the release into a staging folder, then rename it into the slot."""
    final = slots.slot_dir(slot)
    stage = final.with_name(f".{slot}.partial")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True, mode=0o755)
    total = sum(int(f["size"]) for f in bundle.files.values())
    if progress:
        progress.note(f"copying {len(bundle.files)} files")
        progress.expect(total)
    for name in [*bundle.files, "manifest.json", "manifest.sig"]:
        dest = stage / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as f:
            if name == "manifest.json":
                f.write(bundle.manifest_bytes)
            elif name == "manifest.sig":
                f.write(base64.b64encode(bundle.signature) + b"\n")
            else:
                bundle.copy(name, f, progress)
    _unpack_wheel(stage / bundle.wheel, stage)
    if final.exists():
        shutil.rmtree(final)  # the older of the two releases: never the running one
    os.rename(stage, final)
    logger.info("release %s written into %s", bundle.release, final)


def verify_installed(slot_dir: Path, key: Ed25519PublicKey) -> dict[str, Any]:
    """Check an installed slot against its signed manifest; return the manifest."""
    try:
        manifest_bytes = (slot_dir / "manifest.json").read_bytes()
        signature = base64.b64decode((slot_dir / "manifest.sig").read_bytes().strip())
    except (OSError, ValueError) as exc:
        raise InstallError(f"{slot_dir}: no readable signed manifest: {exc}") from exc
    try:
        verify(manifest_bytes, signature, key, str(slot_dir / "manifest.json"))
    except SignatureError as exc:
        raise InstallError(str(exc)) from None
    manifest: dict[str, Any] = json.loads(manifest_bytes)
    for meta in manifest["files"]:
        path = slot_dir / meta["path"]
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            raise InstallError(f"{path}: missing from the installed release") from None
        if digest != meta["sha256"]:
            raise InstallError(f"{path}: SHA-256 does not match the signed manifest")
    return manifest


def _unpack_wheel(wheel: Path, dest: Path) -> None:
    """Unpack the code at the slot's root (so the slot is a PYTHONPATH entry)."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            pure = PurePosixPath(info.filename)
            if pure.is_absolute() or ".." in pure.parts:
                raise BundleError(f"{wheel}: unsafe name {info.filename!r} in the wheel")
            if info.is_dir() or ".data" in pure.parts[0]:
                continue
            target = dest / pure
            if target.exists():
                raise BundleError(f"{wheel}: {info.filename} collides with a bundle file")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)


def _install_units(bundle: VerifiedBundle, root: Path) -> None:
    """Copy the systemd units and enable them, by links as ``systemctl enable`` makes."""
    unit_dir = root / SYSTEMD_DIR
    unit_dir.mkdir(parents=True, exist_ok=True)
    for unit in SYSTEMD_UNITS:
        tmp = unit_dir / f".{unit}.new"
        tmp.write_bytes(bundle.read(f"systemd/{unit}"))
        tmp.chmod(0o644)
        os.replace(tmp, unit_dir / unit)
    for unit, target in ENABLE.items():
        wants = unit_dir / f"{target}.wants"
        wants.mkdir(exist_ok=True)
        link = wants / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(f"/{SYSTEMD_DIR}/{unit}", link)


def _put_key(root: Path, key: Ed25519PublicKey) -> None:
    path = root / FLEET_KEY
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(public_pem(key))


def _put_identity(src: Path, dest: Path) -> None:
    """Copy an OSCORE context, owner-only, with its counters (never over an existing one)."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(dest.parent, 0o700)
    dest.mkdir(mode=0o700)
    for item in sorted(src.iterdir()):
        if item.is_file() and item.suffix == ".json":  # not aiocoap's lock file
            fd = os.open(dest / item.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(item.read_bytes())
    for path in (dest, *dest.iterdir()):
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InstallError(f"{path}: not owner-only after copying")


# --- over SSH -----------------------------------------------------------------------------------


def ssh_commands(
    bundle: Path,
    target: str,
    *,
    ssh_options: tuple[str, ...] = (),
    remote_dir: str = "/var/tmp",
    trial_timeout_s: float = TRIAL_TIMEOUT_S,
    expected_board: str | None = None,
    restart: bool = True,
) -> list[list[str]]:
    """The commands that install ``bundle`` on ``target`` (``user@host``) over SSH."""
    remote = f"{remote_dir.rstrip('/')}/{bundle.name}"
    install = [
        "sudo",
        "env",
        "PYTHONPATH=/opt/polewatch/committed",
        REMOTE_PYTHON,
        "-m",
        "polewatch",
        "flash",
        remote,
        "--root",
        "/",
        "--fleet-key",
        f"/{FLEET_KEY}",
        "--trial-timeout",
        f"{trial_timeout_s:g}",
    ]
    if expected_board is not None:
        install += ["--board", expected_board]
    commands = [
        ["scp", *ssh_options, str(bundle), f"{target}:{remote}"],
        [
            "ssh",
            *ssh_options,
            target,
            shlex.join(install) + f"; s=$?; rm -f {shlex.quote(remote)}; exit $s",
        ],
    ]
    if restart:
        restart_cmd = "sudo systemctl daemon-reload && sudo systemctl restart polewatch.service"
        commands.append(["ssh", *ssh_options, target, restart_cmd])
    return commands
