"""The receiver's unit registration API, for ``polewatch provision --receiver-url``.

``POST /api/units`` with ``{"unit_id": "pole-0003"}`` registers a new unit: the receiver
allocates its OSCORE key id, creates the context pair, keeps its own side in its key directory
(where the running receiver finds it on the unit's first request, without a restart), and
answers ``201`` with the unit's side, once::

    {"unit_id": "pole-0003", "kid_hex": "0003",
     "oscore": {"sender_id_hex": "0003", "recipient_id_hex": "", "secret_hex": "...",
                "salt_hex": "...", "algorithm": "AES-CCM-16-64-128"}}

As with cloud IoT registries that create a device's credentials and return its private part only
in the creating call, the receiver is the one place that allocates key ids (two technicians
cannot collide) and the secret is never stored anywhere else; it is never logged, and the answer
is ``Cache-Control: no-store``. ``409`` if the unit exists, ``400``/``415`` for a bad request,
``503`` when no key id is left. The route is part of the console (``create_app(...,
keys_dir=...)``): it needs a login with the ``config`` permission (technician, supervisor) and the
session's CSRF token, and every registration, done or refused, is in the audit log with the unit's
id (never its secret). Serve it over HTTPS when not on loopback; the JSON content type also keeps
cross-site form posts out.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from firmware.uplink.security import ALGORITHM
from host_tools.console.auth import requires
from host_tools.console.state import CONSOLE
from host_tools.provision.identity import UNIT_ID_RE
from host_tools.provision.oscore import ProvisionError, register_unit

logger = logging.getLogger(__name__)

_KEYS_DIR = web.AppKey("registration_keys_dir", Path)
MAX_BODY = 4096


def add_registration_routes(app: web.Application, keys_dir: Path) -> None:
    """Serve ``POST /api/units`` on ``app``, registering units in the receiver's ``keys_dir``."""
    app[_KEYS_DIR] = keys_dir
    app.router.add_post("/api/units", _register)


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": message}, status=status, headers={"Cache-Control": "no-store"}
    )


@requires("config")
async def _register(request: web.Request) -> web.Response:
    """``POST /api/units`` with JSON ``{"unit_id": ...}``: register a new unit (see above)."""
    console = request.app[CONSOLE]

    async def refuse(status: int, message: str, target: str | None = None) -> web.Response:
        outcome = "failed" if status >= 500 else "refused" if status == 409 else "invalid"
        detail = {"status": status, "error": message}
        await console.record(
            request, "unit.register", target=target, outcome=outcome, detail=detail
        )
        return _error(status, message)

    if request.content_type != "application/json":
        return await refuse(415, "send application/json")
    if request.content_length is not None and request.content_length > MAX_BODY:
        return await refuse(413, "request too large")
    try:
        body = await request.json()
    except ValueError:
        return await refuse(400, "the body is not JSON")
    unit_id = body.get("unit_id") if isinstance(body, dict) else None
    if not isinstance(unit_id, str) or not UNIT_ID_RE.match(unit_id):
        return await refuse(400, "unit_id: letters, digits, '.', '_', '-' (1 to 64)")
    try:
        unit = await asyncio.to_thread(register_unit, unit_id, request.app[_KEYS_DIR])
    except FileExistsError:
        return await refuse(409, f"unit {unit_id} is already registered", unit_id)
    except ProvisionError as exc:
        logger.error("registration of %s failed: %s", unit_id, exc)
        return await refuse(503, "no key id left on this receiver", unit_id)
    logger.info(
        "unit %s registered over the API from %s (key id %s)",
        unit_id,
        request.remote,
        unit.kid.hex(),
    )
    await console.record(
        request, "unit.register", target=unit_id, detail={"kid_hex": unit.kid.hex()}
    )
    answer = {
        "unit_id": unit.unit_id,
        "kid_hex": unit.kid.hex(),
        "oscore": {
            "sender_id_hex": unit.kid.hex(),
            "recipient_id_hex": "",
            "secret_hex": unit.secret.hex(),
            "salt_hex": unit.salt.hex(),
            "algorithm": ALGORITHM,
        },
    }
    return web.json_response(answer, status=201, headers={"Cache-Control": "no-store"})
