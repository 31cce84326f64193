"""Reading what browsers and API clients post: JSON objects or HTML form fields, checked strictly.

Every problem becomes :class:`InputError` naming the field, which the console answers with 400.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from firmware.errors import PolewatchError

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class InputError(PolewatchError, ValueError):
    """A request field that is missing or malformed; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


async def read_body(request: web.Request, allowed: Sequence[str]) -> dict[str, Any]:
    """The posted fields (JSON object or form), refusing any field not in ``allowed``."""
    if (request.content_length or 0) > MAX_BODY:
        raise InputError("body", f"at most {MAX_BODY} bytes")
    data: dict[str, Any]
    if request.content_type == "application/json":
        try:
            raw = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise InputError("body", "not valid JSON") from None
        if not isinstance(raw, dict):
            raise InputError("body", "expected a JSON object")
        data = raw
    elif request.content_type in FORM_TYPES:
        form = await request.post()
        data = {}
        for key in form:
            values = form.getall(key)
            if len(values) != 1 or not isinstance(values[0], str):
                raise InputError(key, "give it once, as text")
            data[key] = values[0]
    elif not await request.read():
        data = {}
    else:
        raise InputError("body", "send application/json or a form")
    data.pop("csrf_token", None)  # checked by the CSRF middleware already
    for key in data:
        if key not in allowed:
            expected = ", ".join(allowed) if allowed else "no fields"
            raise InputError(str(key)[:40], f"unknown field (expected {expected})")
    return data


def text(
    data: dict[str, Any], field: str, *, required: bool = True, max_len: int = 500
) -> str | None:
    """A text field of 1..``max_len`` characters (None when optional and absent or empty)."""
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise InputError(field, "required")
        return None
    if not isinstance(value, str):
        raise InputError(field, "expected text")
    value = value.strip()
    if not 1 <= len(value) <= max_len:
        raise InputError(field, f"expected 1..{max_len} characters")
    return value


def choice(
    data: dict[str, Any], field: str, options: Sequence[str], *, required: bool = True
) -> str | None:
    """One of ``options``."""
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise InputError(field, f"required: one of {', '.join(options)}")
        return None
    if value not in options:
        raise InputError(field, f"expected one of {', '.join(options)}")
    return str(value)


def integer(data: dict[str, Any], field: str, low: int, high: int) -> int:
    """An integer in ``low..high``; forms give it as text."""
    value = data.get(field)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(field, f"expected an integer {low}..{high}")
    return value


def flag(data: dict[str, Any], field: str, default: bool = False) -> bool:
    """A boolean; forms give it as true/false, 1/0, on/off."""
    value = data.get(field, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "on", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "off", "no"):
        return False
    raise InputError(field, "expected true or false")


def error_response(exc: InputError) -> web.Response:
    """400 naming the field."""
    return web.json_response({"error": str(exc), "field": exc.field}, status=400)


def dumps(data: Any) -> str:
    """Compact JSON."""
    return json.dumps(data, separators=(",", ":"))
