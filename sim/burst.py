"""``python -m sim.burst``: an uplink-only unit that raises a burst of alarms and delivers them.

Used by crash tests: it can be killed at any moment and started again on the same data
directory; it carries on where it stopped. After each alarm is committed it appends the alarm's
reference to ``DATA_DIR/committed.log`` (flushed and synced), so a test knows which alarms the
unit had on disk; the reference of each acknowledged message goes to ``acknowledged.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from firmware.clock import SystemClock
from firmware.config.site import ReceiverEndpoint
from sim.fleet import LightUnit

logger = logging.getLogger(__name__)


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


async def burst(unit_id: str, data_dir: Path, receiver: ReceiverEndpoint, total: int,
                interval_s: float) -> None:  # fmt: skip
    """Raise alarms until ``total`` have been committed (over all runs), then drain."""
    unit = LightUnit(unit_id, data_dir, receiver, SystemClock())
    unit.uplink.sender.on_acknowledged = lambda ref, _: _append(data_dir / "acknowledged.log", ref)
    unit.start()
    try:
        log = data_dir / "committed.log"
        done = len(log.read_text().splitlines()) if log.exists() else 0
        for _ in range(done, total):
            _append(log, unit.raise_alarm())
            await asyncio.sleep(interval_s)
        await unit.uplink.drain(120)
    finally:
        await unit.stop()


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(prog="python -m sim.burst", description=__doc__)
    p.add_argument("--unit", default="pole-0001")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--receiver", required=True, help="HOST:PORT")
    p.add_argument("--total", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.005, help="seconds between alarms")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    host, _, port = args.receiver.rpartition(":")
    endpoint = ReceiverEndpoint(host=host, port=int(port))
    asyncio.run(burst(args.unit, args.data_dir, endpoint, args.total, args.interval))


if __name__ == "__main__":
    main()
