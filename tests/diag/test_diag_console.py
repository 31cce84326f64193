"""Every diagnostics command against a running simulated unit, over a real pty pair (pyserial on
both ends): replies, clear errors, actuation within the deterrence limits, the self-test, reboot."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from firmware.diag import protocol
from firmware.diag.protocol import ReplyLine
from firmware.hal.sim import SimOutput
from host_tools.diag.client import DiagClient

Until = Callable[..., Awaitable[None]]


async def ask(
    client: DiagClient, command: str, *args: str, steps: list[dict[str, Any]] | None = None
) -> ReplyLine:
    """One request from a worker thread, so that the unit's loop runs meanwhile."""
    on_step = steps.append if steps is not None else None
    return await asyncio.to_thread(client.request, command, list(args), on_step)


async def raw(client: DiagClient, text: str) -> ReplyLine:
    """A line as a technician would type it, unchecked by the client."""
    return await asyncio.to_thread(client.request_line, text)


def ok(reply: ReplyLine) -> dict[str, Any]:
    assert reply.kind == "OK", (reply.code, reply.message)
    return reply.data


def err(reply: ReplyLine, code: str, *words: str) -> str:
    assert reply.kind == "ERR", reply.data
    assert reply.code == code, (reply.code, reply.message)
    for word in words:
        assert word in reply.message, reply.message
    return reply.message


def output(unit: Any, name: str) -> SimOutput:
    out = unit.sim.runtime.devices.outputs[name]
    assert isinstance(out, SimOutput)
    return out


def switches(out: SimOutput) -> Sequence[str]:
    return [e.what for e in out.history.snapshot()]


async def test_reading_commands(diag_unit: Any, until: Until) -> None:
    runtime = diag_unit.sim.runtime
    with DiagClient(diag_unit.port) as client:
        names = [c["name"] for c in ok(await ask(client, "help"))["commands"]]
        assert names == [c.name for c in protocol.COMMANDS]
        one = ok(await ask(client, "help", "actuate"))["commands"]
        assert [c["usage"] for c in one] == ["actuate OUTPUT SECONDS"]
        group = ok(await raw(client, "help config"))["commands"]
        assert [c["name"] for c in group] == ["config show", "config validate"]

        status = ok(await ask(client, "status"))
        assert (status["unit"], status["board"], status["running"]) == ("pole-0001", "sim", True)
        assert status["outputs"]["floodlight"] == {"kind": "light", "on": False}
        assert set(status["outputs"]) == {"floodlight", "strobe", "siren"}
        assert status["cameras"] == ["thermal"] and status["armed"] is True

        await until(lambda: runtime.camera_stats["thermal"].count >= 10)
        thermal = ok(await ask(client, "sensors"))["cameras"]["thermal"]
        assert thermal["sensor"] == "lepton35" and thermal["resolution"] == "160x120"
        assert thermal["fps_nominal"] == 9.0 and 0 < thermal["fps"] <= 9.5
        assert thermal["frames"] >= 10 and thermal["radiometric"] is True
        # A November night at 2 °C with parked cars, one with a warm engine.
        assert -40 < thermal["min_c"] < thermal["mean_c"] < thermal["max_c"] < 80
        assert thermal["problems"] == []

        await until(lambda: runtime.sender.last_ack_at is not None)
        uplink = ok(await ask(client, "uplink"))
        assert uplink["receiver"] == runtime.sender.client.uri
        assert uplink["outbox_depth"] == runtime.outbox.depth()
        assert uplink["last_ack"] is not None and uplink["last_rtt_ms"] > 0
        assert uplink["heartbeats_acknowledged"] >= 1

        await until(lambda: runtime.modem is not None and runtime.modem.last is not None)
        modem = ok(await ask(client, "modem"))
        assert (modem["present"], modem["state"], modem["operator"]) == (
            True,
            "registered",
            "SIM-NET",
        )
        assert modem["rssi_dbm"] == -71 and modem["resets"] == 0
        assert modem["transitions"][0]["to"] == "registered"

        shown = ok(await ask(client, "config", "show"))
        assert shown["board"]["diag"]["port"] != diag_unit.port  # the unit's end of the line
        assert shown["site"]["deterrence"]["limits"]["floodlight"]["max_on_s"] == 120
        assert list(ok(await ask(client, "config show", "site"))) == ["site"]

        valid = ok(await ask(client, "config validate"))
        assert valid["valid"] is True and valid["problems"] == []
        assert valid["checked"] == [str(diag_unit.board_path), str(diag_unit.site_path)]
        assert valid["changed"] == {"board": False, "site": False}
        # A technician's typo in the site file is found before the next start.
        diag_unit.site_path.write_text(
            diag_unit.site_path.read_text().replace("max_on_s = 120", "max_on_s = -1")
        )
        broken = ok(await ask(client, "config validate"))
        assert broken["valid"] is False
        assert any("deterrence.limits.floodlight.max_on_s" in p for p in broken["problems"])

        lines = ok(await ask(client, "log tail", "200"))["lines"]
        assert any("diag console on" in line for line in lines)
        assert len(ok(await ask(client, "log", "tail", "3"))["lines"]) == 3


async def test_wrong_commands_get_clear_errors(diag_unit: Any) -> None:
    with DiagClient(diag_unit.port) as client:
        err(await raw(client, "stauts"), "unknown-command", "'stauts'", "help")
        err(await raw(client, "config"), "bad-argument", "show, validate")
        err(await raw(client, "config drop"), "bad-argument", "show, validate", "'drop'")
        err(await raw(client, "config show everything"), "bad-argument", "board or site")
        err(await raw(client, "status now"), "bad-argument", "too many arguments")
        err(await raw(client, "actuate"), "bad-argument", "output is missing", "usage")
        err(await raw(client, "actuate floodlight"), "bad-argument", "seconds is missing")
        err(await raw(client, "actuate floodlight ten"), "bad-argument", "'ten'", "seconds")
        err(await raw(client, "actuate floodlight -5"), "bad-argument", "'-5'")
        err(await raw(client, "actuate floodlight 5000"), "bad-argument", "3600")
        err(await raw(client, "actuate fog 5"), "bad-argument", "no output 'fog'", "floodlight")
        err(await raw(client, "log tail 0"), "bad-argument", "1-500")
        err(await raw(client, "selftest now"), "bad-argument", "confirm")
        err(await raw(client, "help dance"), "bad-argument", "no command 'dance'")
        err(await raw(client, "x" * 300), "bad-request", "longer than 200")
        # The console answers the next request as well as ever.
        assert ok(await ask(client, "status"))["unit"] == "pole-0001"
        # Upper case is forgiven; a blank line is no request at all.
        assert ok(await raw(client, "STATUS"))["unit"] == "pole-0001"
    assert diag_unit.sim.runtime.diag.answered >= 16


async def test_actuate_stays_within_the_limits(diag_unit: Any, until: Until) -> None:
    runtime = diag_unit.sim.runtime
    flood, siren, strobe = (output(diag_unit, n) for n in ("floodlight", "siren", "strobe"))
    with DiagClient(diag_unit.port) as client:
        # Over the floodlight's max_on_s of 120 s: refused, not shortened, nothing switched.
        err(await ask(client, "actuate", "floodlight", "500"), "refused", "max_on_s of 120 s")
        assert switches(flood) == []

        done = ok(await ask(client, "actuate", "floodlight", "2"))
        assert done["output"] == "floodlight" and done["seconds"] == 2
        assert done["switched_on"] is True and done["max_on_s"] == 120
        # While it is on, or in its 60 s cool-down, a second test is held back.
        again = err(await ask(client, "actuate", "floodlight", "2"), "refused", "floodlight:")
        assert "already on" in again or "cool-down" in again
        await until(lambda: switches(flood) == ["on", "off"])
        err(await ask(client, "actuate", "floodlight", "2"), "refused", "cool-down")
        times = [e.t for e in flood.history.snapshot()]
        assert 1.5 < times[1] - times[0] < 4.0  # simulated seconds: on for its 2 s, then off

        # 23:00 is inside the site's quiet hours: the siren stays silent, whoever asks.
        err(await ask(client, "actuate", "siren", "5"), "refused", "quiet hours")
        assert switches(siren) == []

        ok(await ask(client, "actuate", "strobe", "1"))
        await until(lambda: switches(strobe) == ["on", "off"])
    assert runtime.deterrence.active_outputs() == []


async def test_selftest_reports_every_check(diag_unit: Any) -> None:
    with DiagClient(diag_unit.port) as client:
        steps: list[dict[str, Any]] = []
        report = ok(await ask(client, "selftest", "confirm", steps=steps))
    checks = {c["name"]: (c["result"], c["detail"]) for c in report["checks"]}
    assert list(checks) == [
        "camera thermal",
        "model thermal",
        "output floodlight",
        "output strobe",
        "output siren",
        "modem",
        "uplink round trip",
        "storage",
    ]
    assert checks["camera thermal"][0] == "pass" and "new frames" in checks["camera thermal"][1]
    assert checks["model thermal"][0] == "pass"
    assert "polewatch_thermal" in checks["model thermal"][1]
    assert checks["output floodlight"][0] == "pass" and checks["output strobe"][0] == "pass"
    assert checks["output siren"] == (
        "skip",
        "held back by the site's limits: quiet hours (quiet)",
    )
    assert checks["modem"][0] == "pass" and "SIM-NET" in checks["modem"][1]
    assert checks["uplink round trip"][0] == "pass"
    assert diag_unit.sim.runtime.sender.client.uri in checks["uplink round trip"][1]
    assert checks["storage"][0] == "pass"
    assert report["passed"] is True and report["outputs_cycled"] is True
    assert report["counts"] == {"pass": 7, "fail": 0, "skip": 1}
    # Progress: each check announced, then its result, numbered out of the whole.
    assert [s["state"] for s in steps[:2]] == ["running", "pass"]
    assert len(steps) == 2 * len(checks) and {s["of"] for s in steps} == {len(checks)}
    for name in ("floodlight", "strobe"):
        assert switches(output(diag_unit, name)) == ["on", "off"]
    assert switches(output(diag_unit, "siren")) == []


async def test_selftest_without_confirmation_switches_nothing(diag_unit: Any) -> None:
    runtime = diag_unit.sim.runtime
    diag_unit.sim.runtime.devices.others["modem"].registered = False  # out of coverage
    with DiagClient(diag_unit.port) as client:
        report = ok(await ask(client, "selftest"))
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("floodlight", "strobe", "siren"):
        assert checks[f"output {name}"]["result"] == "skip"
        assert "selftest confirm" in checks[f"output {name}"]["detail"]
        assert switches(output(diag_unit, name)) == []
    assert checks["modem"]["result"] == "fail" and "not registered" in checks["modem"]["detail"]
    assert report["passed"] is False and report["outputs_cycled"] is False
    assert runtime.restart_requested is False


async def test_reboot_requests_a_restart(diag_unit: Any, until: Until) -> None:
    runtime = diag_unit.sim.runtime
    with DiagClient(diag_unit.port) as client:
        assert ok(await ask(client, "reboot")) == {"restarting": True, "already": False}
        assert runtime.restart_requested
        # Until it goes, it says so rather than starting anything new.
        err(await ask(client, "actuate", "floodlight", "2"), "unavailable", "restarting")
    await until(lambda: not runtime.running)  # the unit stopped by itself, to be restarted
    assert output(diag_unit, "floodlight").history.snapshot() == []
