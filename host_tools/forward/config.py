"""The receiver's forwarding file (``polewatch receiver --forward FILE``): targets and retention.

```toml
[[dc09]]                      # an alarm receiving centre, SIA DC-09 over TCP
name = "arc"
host = "arc.example.net"
port = 12000
account = "1234"              # 3-16 hex digits
receiver = "1"                # Rrcvr, 1-6 hex digits
line = "1"                    # Lpref, 1-6 hex digits
key = "00112233445566778899AABBCCDDEEFF"  # optional: AES key as hex, 16/24/32 bytes
accounts = { "pole-7" = "5678" }          # optional: another account for some units
link_test_s = 60              # optional: a NULL link test after this long idle (0 = off)

[[webhook]]
name = "police"
url = "https://hooks.example.net/polewatch"
secret = "at least sixteen characters"

[retention]
days = 90
sites = { station = { days = 30, units = ["pole-1", "pole-2"] } }
```
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from firmware.config.base import Strict
from firmware.config.load import read_toml, validate_model
from host_tools.receiver.retention import RetentionConfig

logger = logging.getLogger(__name__)

_HEX = re.compile(r"[0-9A-Fa-f]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")

Seconds = Annotated[float, Field(gt=0, le=86400)]
LINK_TEST_MIN_S = 10.0  # DC-09 link tests: 0 (off) or this..LINK_TEST_MAX_S
LINK_TEST_MAX_S = 86400.0


def _hex(value: str, what: str, lo: int, hi: int) -> str:
    if not (lo <= len(value) <= hi and _HEX.fullmatch(value)):
        raise ValueError(f"{what} must be {lo}-{hi} hex digits (got {value!r})")
    return value.upper()


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"must be 1-40 letters, digits, '.', '_' or '-' (got {value!r})")
    return value


class Retry(Strict):
    """A target's name, and how it is retried: exponential backoff with jitter."""

    name: str
    retry_initial_s: Seconds = 1.0
    retry_max_s: Seconds = 60.0

    @model_validator(mode="after")
    def _bounds(self) -> Retry:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s: must not be less than retry_initial_s")
        return self

    _check_name = field_validator("name")(_name)


class Dc09Target(Retry):
    """An alarm receiving centre reached by SIA DC-09 over TCP."""

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    account: str
    receiver: str = "0"
    line: str = "0"
    key: str | None = None
    accounts: dict[str, str] = Field(default_factory=dict)
    ack_timeout_s: Seconds = 10.0
    connect_timeout_s: Seconds = 10.0
    link_test_s: float = 0.0  # a NULL message after this long without a frame; 0: off

    @field_validator("account")
    @classmethod
    def _account(cls, v: str) -> str:
        return _hex(v, "an account", 3, 16)

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, v: dict[str, str]) -> dict[str, str]:
        return {unit: _hex(acct, f"account of {unit}", 3, 16) for unit, acct in v.items()}

    @field_validator("receiver", "line")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _hex(v, "a receiver number or line prefix", 1, 6)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None and (len(v) not in (32, 48, 64) or not _HEX.fullmatch(v)):
            raise ValueError(
                f"an AES key of 16, 24 or 32 bytes, as 32, 48 or 64 hex digits (got {len(v)} "
                "characters)"
            )
        return v

    @field_validator("link_test_s")
    @classmethod
    def _link_test(cls, v: float) -> float:
        if v != 0 and not LINK_TEST_MIN_S <= v <= LINK_TEST_MAX_S:
            raise ValueError(
                f"must be 0 (no link tests) or {LINK_TEST_MIN_S:g}-{LINK_TEST_MAX_S:g} seconds "
                f"(got {v:g})"
            )
        return v

    @property
    def key_bytes(self) -> bytes | None:
        """The AES key, when the link is encrypted."""
        return bytes.fromhex(self.key) if self.key else None

    def account_of(self, unit_id: str) -> str:
        """The DC-09 account a unit's alarms are sent under."""
        return self.accounts.get(unit_id, self.account)


class WebhookTarget(Retry):
    """An HTTP(S) endpoint that receives each alarm as JSON, signed with HMAC-SHA256."""

    url: str
    secret: str = Field(min_length=16)
    timeout_s: Seconds = 10.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http or https URL with a host name")
        return v


class ForwardConfig(Strict):
    """Everything the ``--forward`` file may hold."""

    dc09: list[Dc09Target] = Field(default_factory=list)
    webhook: list[WebhookTarget] = Field(default_factory=list)
    queue: str | None = None  # the queue's SQLite file; default: beside the receiver database
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> ForwardConfig:
        seen: dict[str, str] = {}
        problems = []
        for table, targets in (("dc09", self.dc09), ("webhook", self.webhook)):
            for i, target in enumerate(targets):
                if target.name in seen:
                    first = seen[target.name]
                    problems.append(f"{table}[{i}].name: {target.name!r} is also {first}'s name")
                seen.setdefault(target.name, f"{table}[{i}]")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def targets(self) -> list[Dc09Target | WebhookTarget]:
        """Every target, DC-09 first."""
        return [*self.dc09, *self.webhook]


def load_forward_config(path: Path) -> ForwardConfig:
    """Load and validate a forwarding file; errors name the file and the key."""
    config = validate_model(ForwardConfig, read_toml(path), path)
    if config.queue is not None and not Path(config.queue).is_absolute():
        config = config.model_copy(update={"queue": str(path.parent / config.queue)})
    return config
