"""The unit's end of the diagnostics console: a line protocol on a serial port (pyserial).

A reader thread cuts what arrives into request lines and hands them to the event loop, which
answers them one at a time (:mod:`firmware.diag.commands`); replies are written from a worker
thread. A port that cannot be opened (a USB adapter not plugged in yet) or that fails is retried:
the console never stops the unit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from firmware.config.board import DiagConfig
from firmware.diag import protocol
from firmware.diag.commands import DiagCommands
from firmware.diag.protocol import DiagError, LineBuffer, TooLong
from firmware.errors import HardwareError

if TYPE_CHECKING:
    import serial

    from firmware.runtime import UnitRuntime

logger = logging.getLogger(__name__)

RETRY_S = 5.0  # between attempts to open (or reopen) the port
READ_TIMEOUT_S = 0.1
WRITE_TIMEOUT_S = 2.0  # a reply nobody reads is dropped after this long

Send = Callable[[bytes], Awaitable[None]]
_Item = bytes | TooLong | HardwareError  # a line, an overlong line, or the port failed


class DiagConsole:
    """Serves the diagnostics protocol on the board's ``[diag]`` port."""

    def __init__(self, config: DiagConfig, runtime: UnitRuntime) -> None:
        self.config = config
        self.commands = DiagCommands(runtime)
        self.answered = 0
        self.open = False

    async def answer(self, line: bytes | TooLong, send: Send) -> None:
        """Answer one request line through ``send``: progress lines, then the final line.

        Never raises for anything in the line.
        """
        raw = line.head if isinstance(line, TooLong) else line
        tag = protocol.tag_of(raw)
        try:
            if isinstance(line, TooLong):
                raise DiagError("bad-request", f"request longer than {protocol.MAX_REQUEST} bytes")
            request = protocol.parse_request(line)
            if request is None:
                return  # a blank line: nothing asked, nothing answered
            logger.debug("diag: request %s %s", request.command, dict(request.args))

            async def step(data: Any) -> None:
                await send(protocol.format_step(data, tag))

            result = await self.commands.handle(request, step)
            reply = protocol.format_ok(result, tag)
        except DiagError as exc:
            reply = protocol.format_err(exc.code, exc.message, tag)
        except Exception as exc:  # a bug in one command must not take the console down
            logger.exception("diag: answering %r failed", raw[:60])
            reply = protocol.format_err("failed", f"{type(exc).__name__}: {exc}", tag)
        self.answered += 1
        await send(reply)

    async def run(self) -> None:
        """Serve until cancelled, reopening the port whenever it cannot be used."""
        said = False
        while True:
            try:
                port = await asyncio.to_thread(self._open)
            except HardwareError as exc:
                if not said:  # once per outage, not every few seconds all night
                    logger.error("diag console: %s; retrying every %g s", exc, RETRY_S)
                    said = True
                await asyncio.sleep(RETRY_S)
                continue
            said = False
            logger.info("diag console on %s at %d baud", self.config.port, self.config.baudrate)
            self.open = True
            try:
                await self._serve(port)
            except HardwareError as exc:
                logger.error("diag console: %s; reopening in %g s", exc, RETRY_S)
            finally:
                self.open = False
                port.close()
            await asyncio.sleep(RETRY_S)

    def _open(self) -> serial.Serial:
        import serial  # lazily: only boards with a [diag] table need it

        try:
            return serial.Serial(
                self.config.port,
                self.config.baudrate,
                timeout=READ_TIMEOUT_S,
                write_timeout=WRITE_TIMEOUT_S,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise HardwareError(f"cannot open {self.config.port}: {exc}") from exc

    async def _serve(self, port: serial.Serial) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        stop = threading.Event()

        def hand_over(item: _Item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop has closed: the unit is stopping
                stop.set()

        def reader() -> None:
            lines = LineBuffer()
            while not stop.is_set():
                try:
                    data = port.read(max(1, port.in_waiting))
                except (OSError, ValueError) as exc:  # SerialException is an OSError
                    hand_over(HardwareError(f"reading {self.config.port}: {exc}"))
                    return
                for line in lines.feed(data) if data else ():
                    hand_over(line)

        thread = threading.Thread(target=reader, name="diag-reader", daemon=True)
        thread.start()
        send = partial(self._send, port)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, HardwareError):
                    raise item
                await self.answer(item, send)
        finally:
            stop.set()
            thread.join(READ_TIMEOUT_S * 5)  # it notices within one read timeout

    async def _send(self, port: serial.Serial, data: bytes) -> None:
        await asyncio.to_thread(self._write, port, data)

    def _write(self, port: serial.Serial, data: bytes) -> None:
        import serial

        try:
            port.write(data)
        except serial.SerialTimeoutException:
            logger.warning("diag console: nobody reads %s; a reply was dropped", self.config.port)
        except (OSError, ValueError) as exc:
            raise HardwareError(f"writing {self.config.port}: {exc}") from exc
