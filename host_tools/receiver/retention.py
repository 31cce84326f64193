"""Retention: a scheduled job that deletes alarms and the records about them after a period.

The receiver does not hold the units' site configs (only the versions it pushed), so the periods
come from the receiver's forwarding file: a default for every unit, and sites that group units
under their own period. What is deleted: closed alarms whose last activity is older than the
period, with every row that references them (timeline, workflow, operator actions); stored
message ids (the dedupe record); finished operator commands; and, with the default period,
records that belong to no unit, such as the operators' audit log. Alarms still open are kept,
however old: they are still being worked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Annotated

from pydantic import Field, model_validator

from firmware.clock import Clock
from firmware.config.base import Strict
from firmware.errors import StorageError
from host_tools.receiver.store import ReceiverStore

logger = logging.getLogger(__name__)

DAY_S = 86400.0
Days = Annotated[float, Field(gt=0, le=36500)]


class SiteRetention(Strict):
    """A site's own period, and the units that belong to it."""

    days: Days
    units: list[str] = Field(min_length=1)


class RetentionConfig(Strict):
    """How long alarm records are kept: by default, and per site."""

    days: Days = 90.0
    every_s: Annotated[float, Field(gt=0, le=7 * DAY_S)] = 3600.0
    sites: dict[str, SiteRetention] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_site_per_unit(self) -> RetentionConfig:
        owner: dict[str, str] = {}
        problems = []
        for name, site in self.sites.items():
            for i, unit in enumerate(site.units):
                if unit in owner:
                    problems.append(
                        f"sites.{name}.units[{i}]: {unit!r} is already in site {owner[unit]!r}"
                    )
                owner.setdefault(unit, name)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def days_of(self, unit_id: str) -> float:
        """The retention period of a unit's records, in days."""
        for site in self.sites.values():
            if unit_id in site.units:
                return site.days
        return self.days


# Other records to age out with the default period (not per unit: e.g. the operators' audit
# log): a name, and a function that deletes what is older than a time and says how many went.
Purger = tuple[str, Callable[[float], int]]


def purge(
    store: ReceiverStore, config: RetentionConfig, now: float, also: Sequence[Purger] = ()
) -> dict[str, int]:
    """Delete what is past its period, site by site; return how many rows of each kind went."""
    total: dict[str, int] = {}
    in_sites: list[str] = []
    for name, site in config.sites.items():
        counts = store.delete_older_than(now - site.days * DAY_S, units=site.units)
        in_sites.extend(site.units)
        _add(total, counts)
        if any(counts.values()):
            logger.info("retention: site %s (%g days): deleted %s", name, site.days, counts)
    counts = store.delete_older_than(now - config.days * DAY_S, exclude=in_sites)
    _add(total, counts)
    if any(counts.values()):
        logger.info("retention: other units (%g days): deleted %s", config.days, counts)
    for name, delete in also:
        n = delete(now - config.days * DAY_S)
        total[name] = total.get(name, 0) + n
        if n:
            logger.info("retention: %s (%g days): deleted %d", name, config.days, n)
    return total


def _add(total: dict[str, int], counts: dict[str, int]) -> None:
    for k, n in counts.items():
        total[k] = total.get(k, 0) + n


async def run_retention(
    store: ReceiverStore, config: RetentionConfig, clock: Clock, also: Sequence[Purger] = ()
) -> None:
    """Purge now and then every ``config.every_s`` (real seconds), until cancelled."""
    while True:
        try:
            await asyncio.to_thread(purge, store, config, clock.now(), also)
        except StorageError as exc:
            logger.error("retention: %s", exc)
        await asyncio.sleep(config.every_s)
