"""A/B release slots on a unit's root: switch, boot count, health check, commit and rollback.

Layout under the root (a mounted SD card in tests and at the bench, ``/`` on the unit)::

    opt/polewatch/slots/a/, slots/b/   one release each: the code (the wheel unpacked), config/,
                                       models/, systemd/, requirements.txt, manifest.json + .sig
    opt/polewatch/current   -> slots/X  what polewatch.service runs (PYTHONPATH)
    opt/polewatch/previous  -> slots/Y  what ran before the last switch: the rollback target
    opt/polewatch/committed -> slots/Z  the last release that passed its health check; the
                                        health check and boot counter run its code, never the
                                        code they judge
    opt/polewatch/state.json            the release on trial (slot, since, deadline, boots),
                                        the last failure, and a short history
    var/lib/polewatch/                  data: outbox, oscore/ (never replaced by an update),
                                        health.json (written by the running unit)

Links are switched atomically (a new link renamed over the old one). state.json is written
before the links move, so a power cut in between leaves a trial whose health check finds the
old code running and rolls back to it, never an unchecked release.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.errors import PolewatchError
from firmware.systemd import HEALTH_FILE, read_health

logger = logging.getLogger(__name__)

PREFIX = Path("opt/polewatch")
DATA = Path("var/lib/polewatch")
SLOTS = ("a", "b")
CURRENT, PREVIOUS, COMMITTED = "current", "previous", "committed"
STATE = "state.json"
TRIAL_TIMEOUT_S = 300.0  # a new release must prove itself within this after the switch
MAX_BOOTS = 3  # starts of a release on trial before it is rolled back without waiting
STALE_S = 120.0  # a health report older than this means the unit process is hung or gone
HISTORY = 20


class SlotError(PolewatchError, RuntimeError):
    """The A/B slots cannot do what was asked (nothing to roll back to, a trial is pending)."""


@dataclass(frozen=True)
class Verdict:
    """What a health check found and did."""

    outcome: str  # "steady", "waiting", "committed", "rolled-back"
    detail: str

    @property
    def rolled_back(self) -> bool:
        """Whether the check switched back to the previous release."""
        return self.outcome == "rolled-back"


class Slots:
    """The A/B slots of one root directory."""

    def __init__(self, root: Path, prefix: Path = PREFIX, data: Path = DATA) -> None:
        self.root = root
        self.base = root / prefix
        self.data_dir = root / data

    # --- reading -------------------------------------------------------------------------------

    def slot_dir(self, slot: str) -> Path:
        """A slot's folder."""
        return self.base / "slots" / slot

    def link(self, name: str) -> str | None:
        """The slot a link points to, or None."""
        try:
            target = os.readlink(self.base / name)
        except (FileNotFoundError, OSError):
            return None
        slot = Path(target).name
        return slot if slot in SLOTS else None

    def manifest(self, slot: str | None) -> dict[str, Any] | None:
        """A slot's release manifest, or None."""
        if slot is None:
            return None
        try:
            data = json.loads((self.slot_dir(slot) / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def release(self, slot: str | None) -> str:
        """A slot's release label (or a dash)."""
        m = self.manifest(slot)
        return str(m.get("release", "?")) if m else "-"

    def state(self) -> dict[str, Any]:
        """The state file's content (empty when there is none)."""
        try:
            data = json.loads((self.base / STATE).read_text())
        except FileNotFoundError:
            return {"trial": None, "history": []}
        except ValueError as exc:
            raise SlotError(f"{self.base / STATE}: unreadable: {exc}") from exc
        return data if isinstance(data, dict) else {"trial": None, "history": []}

    def free_slot(self) -> str:
        """The slot a new release goes into: the one not running."""
        current = self.link(CURRENT)
        return "a" if current != "a" else "b"

    def status(self) -> dict[str, Any]:
        """Links, releases, trial and last failure, for ``polewatch slot status``."""
        st = self.state()
        return {
            name: {"slot": self.link(name), "release": self.release(self.link(name))}
            for name in (CURRENT, PREVIOUS, COMMITTED)
        } | {"trial": st.get("trial"), "failed": st.get("failed")}

    # --- changing ------------------------------------------------------------------------------

    def activate(
        self,
        slot: str,
        now: float | None = None,
        trial_timeout_s: float = TRIAL_TIMEOUT_S,
        max_boots: int = MAX_BOOTS,
    ) -> bool:
        """Make a freshly written slot current; True if it is on trial (an older one exists)."""
        now = time.time() if now is None else now
        if slot not in SLOTS or self.manifest(slot) is None:
            raise SlotError(f"{self.slot_dir(slot)}: not an installed release")
        st = self.state()
        if st.get("trial"):
            raise SlotError(f"{self.base}: release {st['trial']['release']} is still on trial")
        old = self.link(CURRENT)
        release = self.release(slot)
        if old is None or old == slot:
            self._event(st, now, "installed", slot, "first release: nothing to fall back to")
            self._save(st)
            self._set_link(CURRENT, slot)
            self._set_link(COMMITTED, slot)
            return False
        st["trial"] = {
            "slot": slot,
            "previous": old,
            "release": release,
            "since_s": now,
            "deadline_s": now + trial_timeout_s,
            "boots": 0,
            "max_boots": max_boots,
        }
        self._event(st, now, "switched", slot, f"on trial; falls back to {old}")
        self._save(st)  # before the links: see the module's docstring
        self._set_link(PREVIOUS, old)
        self._set_link(CURRENT, slot)
        logger.info("switched to slot %s (release %s) on trial; previous %s", slot, release, old)
        return True

    def boot(self, now: float | None = None) -> str:
        """Count a start of the unit (ExecStartPre); roll back a trial that keeps failing."""
        now = time.time() if now is None else now
        st = self.state()
        trial = st.get("trial")
        if not trial:
            return f"starting release {self.release(self.link(CURRENT))} (committed)"
        trial["boots"] = int(trial.get("boots", 0)) + 1
        if trial["boots"] > int(trial.get("max_boots", MAX_BOOTS)):
            reason = f"started {trial['boots'] - 1} times without passing its health check"
            self._save(st)
            target = self.rollback(reason, now)
            return f"release {trial['release']} rolled back to slot {target}: {reason}"
        self._save(st)
        return f"starting release {trial['release']} on trial (start {trial['boots']})"

    def health_check(self, now: float | None = None) -> Verdict:
        """Commit a trial that proved itself, roll back one whose time is up, or wait."""
        now = time.time() if now is None else now
        trial = self.state().get("trial")
        health = read_health(self.data_dir / HEALTH_FILE)
        if not trial:
            current = self.link(CURRENT)
            problem = self._problem(current, 0.0, health, now)
            detail = f"release {self.release(current)} in slot {current}"
            return Verdict("steady", f"{detail}: {problem or 'healthy'}")
        problem = self._problem(trial["slot"], float(trial["since_s"]), health, now)
        if problem is None:
            self.commit(now)
            return Verdict("committed", f"release {trial['release']} passed its health check")
        if now >= float(trial["deadline_s"]):
            target = self.rollback(f"health check failed: {problem}", now)
            return Verdict(
                "rolled-back", f"release {trial['release']} failed ({problem}); back to {target}"
            )
        left = float(trial["deadline_s"]) - now
        return Verdict("waiting", f"release {trial['release']}: {problem} ({left:.0f} s left)")

    def _problem(
        self, slot: str | None, since_s: float, health: dict[str, Any] | None, now: float
    ) -> str | None:
        """Why the unit is not (yet) healthy on ``slot``, or None."""
        if health is None:
            return "no health report from the unit"
        code = Path(str(health.get("code", "")))
        if code.parent.name != "slots" or code.name != slot:
            return f"the unit runs {code}, not slot {slot}"
        if float(health.get("started_s", 0)) < since_s:
            return "the unit has not restarted onto it"
        if now - float(health.get("updated_s", 0)) > STALE_S:
            return "the unit's health report is stale (hung or stopped)"
        if int(health.get("heartbeats_acknowledged", 0)) < 1:
            return "no heartbeat acknowledged by the receiver yet"
        return None

    def commit(self, now: float | None = None) -> str:
        """Keep the release on trial: it becomes the committed one."""
        now = time.time() if now is None else now
        st = self.state()
        trial = st.get("trial")
        if not trial:
            raise SlotError(f"{self.base}: no release is on trial")
        st["trial"] = None
        self._event(st, now, "committed", trial["slot"], "")
        self._save(st)
        self._set_link(COMMITTED, trial["slot"])
        logger.info("release %s in slot %s committed", trial["release"], trial["slot"])
        return str(trial["slot"])

    def rollback(self, reason: str, now: float | None = None) -> str:
        """Switch back to the previous release; return its slot."""
        now = time.time() if now is None else now
        st = self.state()
        trial = st.get("trial")
        if trial:
            target, failed = str(trial["previous"]), str(trial["slot"])
        else:
            target_link, failed_link = self.link(PREVIOUS), self.link(CURRENT)
            if target_link is None or failed_link is None or target_link == failed_link:
                raise SlotError(f"{self.base}: there is no previous release to roll back to")
            target, failed = target_link, failed_link
        if self.manifest(target) is None:
            raise SlotError(f"{self.slot_dir(target)}: the previous release is not there")
        st["trial"] = None
        st["failed"] = {
            "slot": failed,
            "release": self.release(failed),
            "reason": reason,
            "at_s": now,
        }
        self._event(st, now, "rolled back", failed, reason)
        self._save(st)
        self._set_link(CURRENT, target)
        self._set_link(PREVIOUS, failed)
        self._set_link(COMMITTED, target)
        logger.warning(
            "release %s (slot %s) rolled back to slot %s: %s",
            self.release(failed),
            failed,
            target,
            reason,
        )
        return target

    # --- files ---------------------------------------------------------------------------------

    def _event(self, st: dict[str, Any], now: float, what: str, slot: str, detail: str) -> None:
        history = list(st.get("history", []))
        history.append(
            {
                "at_s": now,
                "event": what,
                "slot": slot,
                "release": self.release(slot),
                "detail": detail,
            }
        )
        st["history"] = history[-HISTORY:]

    def _save(self, st: dict[str, Any]) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        path = self.base / STATE
        tmp = path.with_name(f".{STATE}.{os.getpid()}")
        with tmp.open("w") as f:
            json.dump(st, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.base)

    def _set_link(self, name: str, slot: str) -> None:
        """Point a link at a slot, atomically (relative: right on the card and on the unit)."""
        tmp = self.base / f".{name}.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(f"slots/{slot}", tmp)
        os.replace(tmp, self.base / name)
        _fsync_dir(self.base)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
