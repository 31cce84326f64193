"""Operator commands arriving on acknowledgements: carried out once each, results sent back.

A command stays pending at the receiver until its result arrives, so it may come again; the ids
of commands already carried out are kept in the outbox database, so a restart does not repeat
one either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from firmware.clock import Clock
from firmware.uplink import protocol
from firmware.uplink.outbox import Outbox

logger = logging.getLogger(__name__)

RESULT_PRIORITY = 2

# Carries out one command: (op, arg) -> (status, detail).
Executor = Callable[[protocol.CommandOp, str | None], tuple[protocol.CommandStatus, str | None]]
# Commits a message built from a msg id, with a priority and a log reference.
Commit = Callable[[Callable[[int], protocol.Message], int, str], int]


class CommandHandler:
    """Runs each command once, and commits its result to the outbox."""

    def __init__(self, outbox: Outbox, clock: Clock, execute: Executor, commit: Commit) -> None:
        self.outbox, self.clock, self.execute, self.commit = outbox, clock, execute, commit

    async def handle(self, commands: tuple[protocol.Command, ...]) -> None:
        """Carry out the commands not seen before (in a thread: a relay bus may be slow)."""
        for cmd in commands:
            if not self.outbox.first_sight_of_command(cmd.command_id):
                logger.debug("command %d already carried out", cmd.command_id)
                continue
            now_s = round(self.clock.now())
            status: protocol.CommandStatus
            detail: str | None
            if cmd.ttl_s <= 0:
                status, detail = protocol.CommandStatus.EXPIRED, "arrived after its expiry"
            else:
                try:
                    status, detail = await asyncio.to_thread(self.execute, cmd.op, cmd.arg)
                except Exception as exc:  # a failed command must still be answered
                    logger.exception("command %d (%s) failed", cmd.command_id, cmd.op.name)
                    status, detail = protocol.CommandStatus.FAILED, str(exc)
            logger.info(
                "command %d (%s%s): %s%s",
                cmd.command_id,
                cmd.op.name.lower(),
                f" {cmd.arg}" if cmd.arg else "",
                status.name.lower(),
                f": {detail}" if detail else "",
            )
            self.commit(
                _result(cmd.command_id, status, detail, now_s),
                RESULT_PRIORITY,
                f"command {cmd.command_id}",
            )


def _result(
    command_id: int, status: protocol.CommandStatus, detail: str | None, time_s: int
) -> Callable[[int], protocol.Message]:
    def build(msg_id: int) -> protocol.Message:
        return protocol.CommandResult(
            msg_id=msg_id,
            time_s=time_s,
            command_id=command_id,
            status=status,
            detail=detail[:120] if detail else None,
        )

    return build
