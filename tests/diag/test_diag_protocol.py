"""The diagnostics line protocol: framing, request parsing and reply lines, with property tests
(arbitrary bytes never crash the unit's parser or console, and every answer is a well-formed
reply the client can read)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.config.board import DiagConfig
from firmware.diag import protocol
from firmware.diag.console import DiagConsole
from firmware.diag.protocol import (
    DiagError,
    LineBuffer,
    ReplyLine,
    Request,
    TooLong,
    format_err,
    format_ok,
    format_request,
    format_step,
    parse_reply,
    parse_request,
)
from firmware.runtime import UnitRuntime
from sim.runner import build_sim_unit
from sim.scenario import resolve

PRINTABLE = {chr(c) for c in range(0x20, 0x7F)}
VOCABULARY = sorted(
    {w for c in protocol.COMMANDS for w in c.name.split(" ")}
    | {ch for c in protocol.COMMANDS for p in c.params for ch in p.choices}
    | {"floodlight", "siren", "strobe", "fog", "0", "1", "2.5", "500", "3601", "-1", "nan", "1e3"}
)


def assert_clean_error(exc: DiagError) -> None:
    assert exc.code in protocol.ERROR_CODES
    assert exc.message and set(exc.message) <= PRINTABLE


# --- framing ----------------------------------------------------------------------------------


def test_lines_and_terminators() -> None:
    buf = LineBuffer()
    assert buf.feed(b"stat") == []
    assert buf.feed(b"us\r\nhelp\rsensors\n\n") == [b"status", b"", b"help", b"sensors", b""]
    assert buf.feed(b"x" * 250 + b" still the same line") == [TooLong(b"x" * 200)]
    assert buf.feed(b" more\nstatus\n") == [b"status"]  # the rest of the long line is dropped


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_framing_never_fails_and_does_not_depend_on_chunks(chunks: list[bytes]) -> None:
    whole, pieces = LineBuffer(), LineBuffer()
    at_once = whole.feed(b"".join(chunks))
    in_pieces = [item for chunk in chunks for item in pieces.feed(chunk)]
    assert at_once == in_pieces
    for item in at_once:
        if isinstance(item, TooLong):
            assert len(item.head) == protocol.MAX_REQUEST
        else:
            assert len(item) <= protocol.MAX_REQUEST and b"\n" not in item and b"\r" not in item


# --- requests ---------------------------------------------------------------------------------


def test_requests_parse_to_commands_and_checked_arguments() -> None:
    assert parse_request(b"  ") is None
    assert parse_request(b"@7 actuate floodlight 2.5") == Request(
        "actuate", {"output": "floodlight", "seconds": 2.5}, "7"
    )
    assert parse_request(b"CONFIG Show site") == Request("config show", {"which": "site"})
    assert parse_request(b"log tail") == Request("log tail", {})
    assert parse_request(b"help config show") == Request("help", {"command": "config show"})
    assert format_request("selftest", ["confirm"], "A1") == b"@A1 selftest confirm\n"
    for line, code, words in [
        (b"@ status", "bad-request", "tag"),
        (b"@toolongtag status", "bad-request", "tag"),
        (b"@7", "bad-request", "no command"),
        (b"status\x00", "bad-request", "printable"),
        ("modem \u00e5".encode(), "bad-request", "printable"),
        (b"actuate floodlight nan", "bad-argument", "'nan'"),
        (b"actuate floodlight 1e3", "bad-argument", "'1e3'"),
        (b"actuate floodlight 0", "bad-argument", "above 0"),
        (b"actuate " + b"f" * 70 + b" 2", "bad-argument", "longer than 64"),
        (b"log tail 501", "bad-argument", "1-500"),
        (b"log", "bad-argument", "needs one of tail"),
    ]:
        with pytest.raises(DiagError, match=words) as caught:
            parse_request(line)
        assert caught.value.code == code


@given(st.binary(max_size=260))
def test_arbitrary_bytes_never_crash_the_request_parser(line: bytes) -> None:
    try:
        request = parse_request(line)
    except DiagError as exc:
        assert_clean_error(exc)
        return
    assert request is None or request.command in protocol.BY_NAME


@given(st.lists(st.sampled_from(VOCABULARY) | st.text(PRINTABLE, max_size=8), max_size=5))
def test_word_salad_gets_a_command_or_a_clear_error(words: list[str]) -> None:
    line = " ".join(words).encode()
    try:
        request = parse_request(line)
    except DiagError as exc:
        assert_clean_error(exc)
        return
    if request is None:
        return
    spec = protocol.BY_NAME[request.command]
    assert set(request.args) <= {p.name for p in spec.params}
    if "seconds" in request.args:
        assert 0 < request.args["seconds"] <= protocol.MAX_SECONDS


# --- replies ----------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
TAGS = st.none() | st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)


@given(st.dictionaries(st.text(max_size=8), JSON, max_size=6), TAGS)
def test_ok_and_step_lines_round_trip(data: dict[str, Any], tag: str | None) -> None:
    for line, kind in ((format_ok(data, tag), "OK"), (format_step(data, tag), "STEP")):
        assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
        reply = parse_reply(line)
        assert (reply.kind, reply.tag) == (kind, tag)
        assert reply.data == json.loads(json.dumps(protocol.clean_json(data)))


@given(st.sampled_from(protocol.ERROR_CODES), st.text(max_size=400), TAGS)
def test_err_lines_stay_one_readable_line(code: Any, message: str, tag: str | None) -> None:
    line = format_err(code, message, tag)
    assert line.count(b"\n") == 1 and line.isascii()
    reply = parse_reply(line)
    assert (reply.kind, reply.code, reply.tag) == ("ERR", code, tag)
    assert reply.message == protocol.one_line(message)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_reply_parser(line: bytes) -> None:
    try:
        reply = parse_reply(line)
    except DiagError as exc:
        assert exc.code == "bad-request"
        return
    assert isinstance(reply, ReplyLine) and reply.kind in ("OK", "ERR", "STEP")


# --- the console's answers ----------------------------------------------------------------------


@pytest.fixture
def idle_runtime(tmp_path: Path) -> Iterator[UnitRuntime]:
    """A simulated unit built but not started: the console still answers, and acts on nothing."""
    unit = build_sim_unit(resolve("quiet_lot"), tmp_path / "unit", speed=0)
    yield unit.runtime
    asyncio.run(unit.runtime.uplink.close())
    unit.runtime.devices.close()


def answers(console: DiagConsole, line: bytes | TooLong) -> list[bytes]:
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    asyncio.run(console.answer(line, send))
    return sent


def test_console_answers_arbitrary_input_with_one_final_line(idle_runtime: UnitRuntime) -> None:
    console = DiagConsole(DiagConfig(port="unused"), idle_runtime)

    @settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.binary(max_size=220)
        | st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=4).map(
            lambda ws: " ".join(ws).encode()
        )
    )
    def check(line: bytes) -> None:
        sent = answers(console, line)
        if not sent:  # a blank line asks nothing
            assert parse_request(line) is None
            return
        replies = [parse_reply(s) for s in sent]
        assert [r.final for r in replies] == [False] * (len(replies) - 1) + [True]
        assert {r.tag for r in replies} == {protocol.tag_of(line)}
        if replies[-1].kind == "ERR":
            assert replies[-1].code != "failed", replies[-1].message  # no command crashed

    check()
    # Nothing was switched or restarted by a unit that is not running.
    assert all(not out.is_on for out in idle_runtime.devices.outputs.values())
    assert not idle_runtime.restart_requested
    err = parse_reply(answers(console, b"reboot")[0])
    assert (err.code, err.message) == ("unavailable", "reboot: the unit is not running")
    too_long = parse_reply(answers(console, TooLong(b"@9 " + b"x" * 197))[0])
    assert (too_long.code, too_long.tag) == ("bad-request", "9")
