"""The diagnostics console's line protocol: one home for the wire format, used by both ends.

The unit (``firmware.diag.console``) and the technician's laptop (``host_tools.diag``) speak it
over a serial line. A request is one line of printable ASCII::

    [@TAG ]COMMAND [ARG...]            (ended by LF, CR or CR LF; at most 200 bytes)

and its reply is zero or more progress lines and exactly one final line::

    STEP[ @TAG] {"step": 1, "of": 6, ...}     progress of a long operation
    OK[ @TAG] {...}                           done: the result, one JSON object
    ERR[ @TAG] CODE: message                  not done: a code from ERROR_CODES and why

The optional tag (1-8 letters or digits) is echoed on every line of the reply, so a client can
tell its reply from a stale one. Commands and their arguments are declared once, in
:data:`COMMANDS`: the unit checks requests against them, the client builds its command line,
help and completion from them. See docs/diag.md.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from firmware.errors import ProtocolError

logger = logging.getLogger(__name__)

VERSION = 1
MAX_REQUEST = 200  # bytes of one request line, terminator excluded
MAX_REPLY = 1 << 20  # bytes of one reply line a client accepts (config show is the longest)
MAX_WORD = 64  # characters of one argument
MAX_SECONDS = 3600.0  # the most ``actuate`` accepts (the output's limits are usually lower)
MAX_LOG_LINES = 500
DEFAULT_TIMEOUT_S = 5.0  # how long a client waits for the next line of a reply

ERROR_CODES = (
    "bad-request",  # not a request line: too long, not printable ASCII, a malformed tag
    "unknown-command",  # no such command
    "bad-argument",  # wrong number of arguments, not a number, not one of the choices
    "refused",  # a deterrence limit (or the outputs' state) holds it back
    "unavailable",  # the unit cannot do it now (not running, restarting)
    "failed",  # it went wrong while being carried out; the unit's log says more
)
ErrorCode = Literal[
    "bad-request", "unknown-command", "bad-argument", "refused", "unavailable", "failed"
]
ReplyKind = Literal["STEP", "OK", "ERR"]

_TAG = re.compile(r"[A-Za-z0-9]{1,8}")
_NUMBER = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")
_COUNT = re.compile(r"[0-9]{1,6}")


class DiagError(ProtocolError):
    """A request the unit answers with ``ERR code: message``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = one_line(message)


# --- the commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One argument of a command."""

    name: str
    help: str
    kind: Literal["word", "number", "count", "choice", "rest"] = "word"
    choices: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class CommandSpec:
    """A command: its name (one or two words), arguments, help and an example."""

    name: str
    summary: str
    example: str
    params: tuple[Param, ...] = ()
    long: bool = False  # sends STEP lines while it runs
    timeout_s: float = DEFAULT_TIMEOUT_S  # a client's wait for the next line of the reply

    @property
    def usage(self) -> str:
        """``name ARG [OPTIONAL]`` as help shows it."""
        words = [self.name]
        for p in self.params:
            shown = "|".join(p.choices) if p.kind == "choice" else p.name.upper()
            if p.kind == "rest":
                shown += "..."
            words.append(f"[{shown}]" if p.optional else shown)
        return " ".join(words)

    def describe(self) -> dict[str, Any]:
        """The command as ``help`` sends it."""
        return {
            "name": self.name,
            "usage": self.usage,
            "summary": self.summary,
            "example": self.example,
            "params": [
                {"name": p.name, "help": p.help, "optional": p.optional}
                | ({"choices": list(p.choices)} if p.choices else {})
                for p in self.params
            ],
        }


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "help",
        "list the commands, or describe one",
        "help actuate",
        (Param("command", "a command's name", "rest", optional=True),),
    ),
    CommandSpec("status", "the unit: identity, mode, faults, outputs, frames, outbox", "status"),
    CommandSpec(
        "sensors",
        "live camera temperatures and frame rates, and the board's temperatures",
        "sensors",
    ),
    CommandSpec(
        "selftest",
        "frames from each camera, models, each output (with confirm), modem, uplink round trip",
        "selftest confirm",
        (
            Param(
                "confirm",
                "also switch each output on for a moment (sirens too, within the site's limits)",
                "choice",
                ("confirm",),
                optional=True,
            ),
        ),
        long=True,
        timeout_s=30.0,
    ),
    CommandSpec(
        "actuate",
        "switch an output on for SECONDS, within the site's deterrence limits",
        "actuate floodlight 5",
        (
            Param("output", "the output's name in the board config"),
            Param("seconds", f"how long, up to its max_on_s (at most {MAX_SECONDS:g})", "number"),
        ),
    ),
    CommandSpec(
        "uplink", "outbox depth, last acknowledgement, round-trip time, heartbeats", "uplink"
    ),
    CommandSpec("modem", "modem state, operator, signal, resets and recent transitions", "modem"),
    CommandSpec(
        "config show",
        "the running board and site config, as JSON",
        "config show site",
        (Param("which", "only the board or only the site", "choice", ("board", "site"), True),),
    ),
    CommandSpec(
        "config validate",
        "check the config files the unit would start from next time",
        "config validate",
    ),
    CommandSpec(
        "log tail",
        "the unit's latest log lines",
        "log tail 50",
        (Param("lines", f"how many (1-{MAX_LOG_LINES}, default 20)", "count", optional=True),),
    ),
    CommandSpec("reboot", "restart the unit's software (systemd starts it again)", "reboot"),
)
BY_NAME: dict[str, CommandSpec] = {c.name: c for c in COMMANDS}


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for spec in COMMANDS:
        if " " in spec.name:
            group, sub = spec.name.split(" ", 1)
            groups.setdefault(group, []).append(sub)
    return groups


GROUPS = _groups()  # the two-word commands by their first word: "config" -> ["show", "validate"]


@dataclass(frozen=True)
class Request:
    """A parsed request: the command, its arguments by name, and the tag to echo."""

    command: str
    args: Mapping[str, Any] = field(default_factory=dict)
    tag: str | None = None


# --- text helpers -------------------------------------------------------------------------------


def one_line(text: str, limit: int = 300) -> str:
    """Text fit for an ``ERR`` line: printable ASCII, one line, bounded."""
    flat = " ".join(text.split())
    clean = "".join(ch if " " <= ch <= "~" else "?" for ch in flat)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _shown(word: str) -> str:
    return repr(word if len(word) <= 24 else word[:21] + "...")


def clean_json(value: Any) -> Any:
    """A value JSON can carry: floats rounded, NaN and infinities as null, tuples as lists."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return str(value)


# --- unit side: lines in, requests out --------------------------------------------------------


@dataclass(frozen=True)
class TooLong:
    """A request line longer than MAX_REQUEST; ``head`` is its start (its tag is answered)."""

    head: bytes


class LineBuffer:
    """Cuts a byte stream into request lines; a line longer than MAX_REQUEST becomes a
    :class:`TooLong`.

    Bytes after an overlong line's first MAX_REQUEST are dropped up to its terminator, so one
    garbled line costs one error, not one per chunk.
    """

    def __init__(self, limit: int = MAX_REQUEST) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes | TooLong]:
        """Add received bytes; return the complete lines."""
        out: list[bytes | TooLong] = []
        for line, complete in _split(data):
            if self._overflow:
                if complete:
                    self._overflow = False
                continue
            self._buf += line
            if len(self._buf) > self.limit:
                out.append(TooLong(bytes(self._buf[: self.limit])))
                self._buf.clear()
                self._overflow = not complete
                continue
            if complete:
                out.append(bytes(self._buf))
                self._buf.clear()
        return out


def _split(data: bytes) -> Iterator[tuple[bytes, bool]]:
    """Pieces of ``data`` between terminators, and whether each is ended by one."""
    start = 0
    for i, byte in enumerate(data):
        if byte in (0x0A, 0x0D):  # LF or CR: terminal programs send CR, scripts LF or CR LF
            yield data[start:i], True
            start = i + 1
    yield data[start:], False


def parse_request(line: bytes) -> Request | None:
    """Parse one request line; None for a blank one. Raises :class:`DiagError` when it is bad."""
    if len(line) > MAX_REQUEST:
        raise DiagError("bad-request", f"request longer than {MAX_REQUEST} bytes")
    if any(not (0x20 <= b <= 0x7E or b == 0x09) for b in line):
        raise DiagError("bad-request", "requests are printable ASCII text")
    words = line.decode("ascii").split()
    if not words:
        return None
    tag = None
    if words[0].startswith("@"):
        tag = words.pop(0)[1:]
        if not _TAG.fullmatch(tag):
            raise DiagError("bad-request", "a tag is @ and 1-8 letters or digits, e.g. @7")
        if not words:
            raise DiagError("bad-request", "a tag and no command")
    return parse_words(words, tag)


def tag_of(line: bytes) -> str | None:
    """The tag of a request line, if it has a well-formed one (for answering a bad request)."""
    first = line.split(maxsplit=1)[:1]
    if first and first[0].startswith(b"@"):
        text = first[0][1:].decode("ascii", "replace")
        if _TAG.fullmatch(text):
            return text
    return None


def parse_words(words: Sequence[str], tag: str | None = None) -> Request:
    """Match words to a command and check its arguments against its :class:`Param` list."""
    head = words[0].lower()
    if head in GROUPS:
        subs = GROUPS[head]
        if len(words) < 2 or words[1].lower() not in subs:
            got = f"not {_shown(words[1])}" if len(words) > 1 else "nothing"
            raise DiagError("bad-argument", f"{head} needs one of {', '.join(subs)} ({got})")
        name, rest = f"{head} {words[1].lower()}", list(words[2:])
    else:
        name, rest = head, list(words[1:])
    spec = BY_NAME.get(name)
    if spec is None:
        raise DiagError(
            "unknown-command", f"no command {_shown(words[0])}; 'help' lists the commands"
        )
    return Request(spec.name, check_args(spec, rest), tag)


def check_args(spec: CommandSpec, words: list[str]) -> dict[str, Any]:
    """The arguments by name, checked and converted; :class:`DiagError` names what is wrong."""
    args: dict[str, Any] = {}
    usage = f"usage: {spec.usage}"
    for i, param in enumerate(spec.params):
        if param.kind == "rest":
            if i < len(words):
                args[param.name] = " ".join(w.lower() for w in words[i:])
            return args
        if i >= len(words):
            if not param.optional:
                raise DiagError("bad-argument", f"{spec.name}: {param.name} is missing; {usage}")
            continue
        args[param.name] = _convert(spec, param, words[i], usage)
    if len(words) > len(spec.params):
        extra = " ".join(words[len(spec.params) :])
        raise DiagError("bad-argument", f"{spec.name}: too many arguments ({extra}); {usage}")
    return args


def _convert(spec: CommandSpec, param: Param, word: str, usage: str) -> Any:
    where = f"{spec.name}: {param.name}"
    if len(word) > MAX_WORD:
        raise DiagError("bad-argument", f"{where}: longer than {MAX_WORD} characters")
    if param.kind == "choice":
        if word.lower() not in param.choices:
            raise DiagError(
                "bad-argument", f"{where}: {_shown(word)} is not {' or '.join(param.choices)}"
            )
        return word.lower()
    if param.kind == "number":
        if not _NUMBER.fullmatch(word) or not 0 < float(word) <= MAX_SECONDS:
            raise DiagError(
                "bad-argument",
                f"{where}: {_shown(word)} is not a number of seconds above 0 and up to "
                f"{MAX_SECONDS:g}; {usage}",
            )
        return float(word)
    if param.kind == "count":
        if not _COUNT.fullmatch(word) or not 1 <= int(word) <= MAX_LOG_LINES:
            raise DiagError(
                "bad-argument", f"{where}: {_shown(word)} is not a whole number 1-{MAX_LOG_LINES}"
            )
        return int(word)
    return word


# --- unit side: replies out -------------------------------------------------------------------


def _tagged(kind: str, tag: str | None) -> str:
    return f"{kind} @{tag}" if tag else kind


def _dump(data: Mapping[str, Any]) -> str:
    return json.dumps(clean_json(data), separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def format_ok(data: Mapping[str, Any], tag: str | None = None) -> bytes:
    """The final line of a reply that succeeded."""
    return f"{_tagged('OK', tag)} {_dump(data)}\n".encode("ascii")


def format_err(code: ErrorCode, message: str, tag: str | None = None) -> bytes:
    """The final line of a reply that did not succeed."""
    return f"{_tagged('ERR', tag)} {code}: {one_line(message)}\n".encode("ascii")


def format_step(data: Mapping[str, Any], tag: str | None = None) -> bytes:
    """A progress line of a long operation."""
    return f"{_tagged('STEP', tag)} {_dump(data)}\n".encode("ascii")


# --- client side: lines in --------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyLine:
    """One line of a reply, parsed."""

    kind: ReplyKind
    tag: str | None
    data: dict[str, Any] = field(default_factory=dict)  # STEP and OK
    code: str | None = None  # ERR
    message: str = ""  # ERR

    @property
    def final(self) -> bool:
        """Whether it ends the reply."""
        return self.kind != "STEP"


def parse_reply(line: bytes) -> ReplyLine:
    """Parse one line from the unit; raises :class:`DiagError` (``bad-request``) when it is not
    a reply line (noise on the serial line, a boot message)."""
    text = line.rstrip(b"\r\n")
    if len(text) > MAX_REPLY:
        raise DiagError("bad-request", f"reply line longer than {MAX_REPLY} bytes")
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        raise DiagError("bad-request", "reply line is not ASCII") from None
    kind, _, rest = decoded.partition(" ")
    if kind not in ("STEP", "OK", "ERR"):
        raise DiagError("bad-request", f"not a reply line: {one_line(decoded, 60)!r}")
    tag = None
    if rest.startswith("@"):
        word, _, rest = rest.partition(" ")
        tag = word[1:]
        if not _TAG.fullmatch(tag):
            raise DiagError("bad-request", f"bad tag in reply line: {one_line(word, 20)!r}")
    if kind == "ERR":
        code, sep, message = rest.partition(": ")
        if not sep or code not in ERROR_CODES:
            raise DiagError("bad-request", f"bad ERR line: {one_line(decoded, 60)!r}")
        return ReplyLine("ERR", tag, code=code, message=message)
    try:
        data = json.loads(rest)
    except (ValueError, RecursionError):
        raise DiagError("bad-request", f"{kind} line without a JSON object") from None
    if not isinstance(data, dict):
        raise DiagError("bad-request", f"{kind} line without a JSON object")
    return ReplyLine("STEP" if kind == "STEP" else "OK", tag, data)


def format_request(command: str, args: Sequence[str] = (), tag: str | None = None) -> bytes:
    """A request line, checked as the unit will check it (raises :class:`DiagError`)."""
    words = [f"@{tag}"] if tag else []
    words += [command, *args]
    try:
        line = " ".join(words).encode("ascii")
    except UnicodeEncodeError:
        raise DiagError("bad-request", "requests are printable ASCII text") from None
    request = parse_request(line)
    if request is None:
        raise DiagError("bad-request", "an empty request")
    return line + b"\n"
