"""Replies as a technician reads them: one renderer per command, plain text."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from firmware.diag.protocol import ReplyLine

logger = logging.getLogger(__name__)


def _num(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _pairs(rows: list[tuple[str, Any]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {'-' if v is None else v}" for k, v in rows)


def _help(d: dict[str, Any]) -> str:
    cmds = d.get("commands", [])
    width = max((len(c["usage"]) for c in cmds), default=0)
    lines = [f"{c['usage']:<{width}}  {c['summary']}" for c in cmds]
    if len(cmds) == 1:
        c = cmds[0]
        lines += [f"  {p['name']}: {p['help']}" for p in c.get("params", [])]
        lines.append(f"example: {c['example']}")
    return "\n".join(lines)


def _status(d: dict[str, Any]) -> str:
    faults = ", ".join(f"{f['code']} {f['subject']}" for f in d.get("faults", [])) or "none"
    outputs = ", ".join(
        f"{name} ({o['kind']}) {'ON' if o['on'] else 'off'}"
        for name, o in d.get("outputs", {}).items()
    )
    return _pairs(
        [
            ("unit", d.get("unit")),
            ("board", f"{d.get('board')} ({d.get('platform')})"),
            ("time", d.get("time")),
            ("uptime", _num(d.get("uptime_s"), " s", 0)),
            ("armed", d.get("armed")),
            ("test mode", d.get("test_mode")),
            ("faults", faults),
            ("outputs", outputs or "none"),
            ("cameras", ", ".join(d.get("cameras", [])) or "none"),
            ("frames", f"{d.get('frames_processed')} processed, {d.get('frames_dropped')} dropped"),
            ("outbox", f"{d.get('outbox_depth')} waiting"),
            ("restarting", d.get("restart_requested")),
        ]
    )


def _sensors(d: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, cam in d.get("cameras", {}).items():
        head = (
            f"{name}: {cam.get('sensor', cam.get('backend'))} {cam.get('resolution')}, "
            f"{_num(cam.get('fps'))} fps (nominal {cam.get('fps_nominal')}), "
            f"{cam.get('frames')} frames, last {_num(cam.get('last_frame_age_s'), ' s', 2)} ago"
        )
        lines.append(head)
        if "min_c" in cam:
            lines.append(
                f"  min {_num(cam['min_c'], ' °C')}  max {_num(cam['max_c'], ' °C')}  "
                f"mean {_num(cam['mean_c'], ' °C')}  centre {_num(cam['centre_c'], ' °C')}"
            )
        elif "min_counts" in cam:
            lines.append(
                f"  raw counts: min {cam['min_counts']}  max {cam['max_counts']}  "
                f"mean {_num(cam['mean_counts'])}"
            )
        elif "brightness_mean" in cam:
            lines.append(f"  mean brightness {_num(cam['brightness_mean'])} / 255")
        lines += [f"  problem: {p}" for p in cam.get("problems", [])]
    board = d.get("board_c", {})
    if board:
        lines.append("board: " + ", ".join(f"{k} {_num(v, ' °C')}" for k, v in board.items()))
    return "\n".join(lines) or "no cameras"


def _selftest(d: dict[str, Any], shown: bool = False) -> str:
    checks = [] if shown else d.get("checks", [])  # shown: the progress lines said it all
    lines = [f"{c['result'].upper():<4}  {c['name']}: {c['detail']}" for c in checks]
    counts = d.get("counts", {})
    verdict = "PASSED" if d.get("passed") else "FAILED"
    lines.append(
        f"self-test {verdict}: {counts.get('pass', 0)} pass, {counts.get('fail', 0)} fail, "
        f"{counts.get('skip', 0)} skipped"
    )
    return "\n".join(lines)


def _actuate(d: dict[str, Any]) -> str:
    text = f"{d['output']} on for {d['seconds']:g} s"
    if d.get("limited"):
        text += f" (shortened: {d['limited']})"
    if not d.get("switched_on"):
        text += "; not seen on (check its wiring, or 'log tail')"
    return f"{text}; its limits: max_on_s {d['max_on_s']:g} s, cool-down {d['cooldown_s']:g} s"


def _uplink(d: dict[str, Any]) -> str:
    return _pairs(
        [
            ("receiver", d.get("receiver")),
            ("outbox", f"{d.get('outbox_depth')} waiting"),
            ("next attempt in", _num(d.get("next_attempt_in_s"), " s")),
            ("delivered", d.get("delivered")),
            ("last ack", f"{d.get('last_ack')} ({_num(d.get('last_ack_age_s'), ' s')} ago)"),
            ("round trip", _num(d.get("last_rtt_ms"), " ms", 0)),
            ("clock drift", _num(d.get("clock_drift_s"), " s")),
            (
                "heartbeats",
                f"{d.get('heartbeats_acknowledged')}/{d.get('heartbeats_sent')} acknowledged, "
                f"every {_num(d.get('heartbeat_interval_s'), ' s', 0)}",
            ),
            ("open faults", d.get("open_faults")),
        ]
    )


def _modem(d: dict[str, Any]) -> str:
    if not d.get("present"):
        return "no modem on this board"
    text = _pairs(
        [
            ("state", d.get("state")),
            ("SIM", d.get("sim")),
            ("operator", d.get("operator")),
            ("registration", d.get("registration")),
            ("technology", d.get("technology")),
            ("RSSI", _num(d.get("rssi_dbm"), " dBm")),
            ("RSRP", _num(d.get("rsrp_dbm"), " dBm")),
            ("RSRQ", _num(d.get("rsrq_db"), " dB")),
            ("resets", f"{d.get('resets')} ({d.get('resets_held_back')} held back)"),
        ]
    )
    moves = [f"  {t['at']} {t['from']} -> {t['to']}: {t['reason']}" for t in d["transitions"]]
    resets = [
        f"  {r['at']} {'hard' if r['hard'] else 'soft'}: {r['reason']}" for r in d["recent_resets"]
    ]
    return "\n".join(
        [
            text,
            *(["transitions:", *moves] if moves else []),
            *(["resets:", *resets] if resets else []),
        ]
    )


def _validate(d: dict[str, Any]) -> str:
    lines = [f"checked: {p}" for p in d.get("checked", [])]
    lines += d.get("problems", [])
    lines += [f"note: {n}" for n in d.get("notes", [])]
    lines.append("valid" if d.get("valid") else f"{len(d.get('problems', []))} problem(s)")
    return "\n".join(lines)


def _log(d: dict[str, Any]) -> str:
    return "\n".join(d.get("lines", [])) or "(no log lines kept)"


def _reboot(d: dict[str, Any]) -> str:
    return "already restarting" if d.get("already") else "the unit is restarting"


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "help": _help,
    "status": _status,
    "sensors": _sensors,
    "selftest": _selftest,
    "actuate": _actuate,
    "uplink": _uplink,
    "modem": _modem,
    "config validate": _validate,
    "log tail": _log,
    "reboot": _reboot,
}


def render(command: str, reply: ReplyLine, progress_shown: bool = False) -> str:
    """A final reply line as text (a self-test's verdict only, when its progress was shown)."""
    if reply.kind == "ERR":
        return f"error ({reply.code}): {reply.message}"
    if command == "selftest" and progress_shown:
        return _selftest(reply.data, shown=True)
    renderer = RENDERERS.get(command)
    if renderer is None:
        return json.dumps(reply.data, indent=2, ensure_ascii=False)
    try:
        return renderer(reply.data)
    except (KeyError, TypeError, ValueError, AttributeError):  # a newer unit's reply shape
        logger.debug("no text form for this %s reply; showing JSON", command)
        return json.dumps(reply.data, indent=2, ensure_ascii=False)


def render_step(data: dict[str, Any]) -> str:
    """A progress line as text."""
    where = f"[{data.get('step')}/{data.get('of')}] {data.get('check', '')}"
    state = data.get("state", "")
    if state == "running":
        return f"{where} ..."
    detail = data.get("detail")
    return f"{where}: {state}" + (f" - {detail}" if detail else "")


def verdict(command: str, reply: ReplyLine) -> int:
    """The exit status a reply stands for: 0 done, 1 refused or failed (a failed self-test, an
    invalid config)."""
    if reply.kind == "ERR":
        return 1
    if command == "selftest" and not reply.data.get("passed", False):
        return 1
    if command == "config validate" and not reply.data.get("valid", False):
        return 1
    return 0
