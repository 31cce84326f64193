"""Reports: time to acknowledge and to dispatch per priority, false alarms per unit and rule.

Figures are computed from the workflow's timestamps: time to acknowledge is acknowledged_at minus
the alarm's first receipt at the receiver, time to dispatch the first dispatch minus the same.
Alarms from units in test mode, and alarms resolved with the outcome "test", are left out.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import logging
import statistics
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from host_tools.console.auth import requires
from host_tools.console.forms import InputError, error_response
from host_tools.console.state import CONSOLE
from host_tools.receiver.database import Connection
from host_tools.receiver.store import ReceiverStore

logger = logging.getLogger(__name__)

REPORT_TZ = ZoneInfo("Europe/Stockholm")  # days in the report's range are this zone's days
RESPONSE_COLUMNS = (
    "priority",
    "alarms",
    "acknowledged",
    "tta_mean_s",
    "tta_median_s",
    "tta_max_s",
    "dispatched",
    "ttd_mean_s",
    "ttd_median_s",
    "ttd_max_s",
)
FALSE_COLUMNS = ("group", "name", "resolved", "real", "false", "test", "false_rate")


def _stats(values: list[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    return (
        round(statistics.fmean(values), 3),
        round(statistics.median(values), 3),
        round(max(values), 3),
    )


def response_times(store: ReceiverStore, since: float, until: float) -> list[dict[str, Any]]:
    """Per priority: alarms received in [since, until), and their acknowledge/dispatch times."""

    def query(db: Connection) -> list[Any]:
        return db.execute(
            "SELECT a.priority, a.received_at, w.acknowledged_at, w.dispatched_at "
            "FROM alarms a LEFT JOIN alarm_workflow w ON w.alarm = a.id "
            "WHERE a.test = 0 AND COALESCE(w.outcome, '') != 'test' "
            "AND a.received_at >= ? AND a.received_at < ? ORDER BY a.priority",
            (since, until),
        ).fetchall()

    rows = store.read(query)
    out = []
    for priority in sorted({int(r["priority"]) for r in rows}):
        mine = [r for r in rows if r["priority"] == priority]
        tta = [r["acknowledged_at"] - r["received_at"] for r in mine if r["acknowledged_at"]]
        ttd = [r["dispatched_at"] - r["received_at"] for r in mine if r["dispatched_at"]]
        t_mean, t_median, t_max = _stats(tta)
        d_mean, d_median, d_max = _stats(ttd)
        out.append(
            {
                "priority": priority,
                "alarms": len(mine),
                "acknowledged": len(tta),
                "tta_mean_s": t_mean,
                "tta_median_s": t_median,
                "tta_max_s": t_max,
                "dispatched": len(ttd),
                "ttd_mean_s": d_mean,
                "ttd_median_s": d_median,
                "ttd_max_s": d_max,
            }
        )
    return out


def false_alarms(store: ReceiverStore, since: float, until: float) -> dict[str, Any]:
    """Outcomes of the alarms resolved in [since, until), per unit and per rule."""

    def query(db: Connection) -> list[Any]:
        return db.execute(
            "SELECT a.unit_id, COALESCE(a.rule, a.event) AS rule, w.outcome "
            "FROM alarms a JOIN alarm_workflow w ON w.alarm = a.id "
            "WHERE a.test = 0 AND a.state = 'resolved' AND w.resolved_at >= ? "
            "AND w.resolved_at < ?",
            (since, until),
        ).fetchall()

    rows = store.read(query)

    def group(key: str) -> list[dict[str, Any]]:
        out = []
        for name in sorted({str(r[key]) for r in rows}):
            outcomes = [r["outcome"] for r in rows if str(r[key]) == name]
            real, false = outcomes.count("real"), outcomes.count("false")
            out.append(
                {
                    key: name,
                    "resolved": len(outcomes),
                    "real": real,
                    "false": false,
                    "test": outcomes.count("test"),
                    # test outcomes say nothing about the detector: not in the rate
                    "false_rate": round(false / (real + false), 4) if real + false else None,
                }
            )
        return out

    return {"by_unit": group("unit_id"), "by_rule": group("rule")}


def parse_range(query: Any) -> tuple[float, float]:
    """``from`` and ``to`` (inclusive days, YYYY-MM-DD, in the report zone) as [since, until)."""
    since, until = 0.0, float("inf")
    for field in ("from", "to"):
        raw = query.get(field)
        if raw in (None, ""):
            continue
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            raise InputError(field, f"expected a date YYYY-MM-DD, got {raw[:20]!r}") from None
        if field == "to":
            day += dt.timedelta(days=1)
        start = dt.datetime.combine(day, dt.time(), REPORT_TZ).timestamp()
        if field == "from":
            since = start
        else:
            until = start
    if since >= until:
        raise InputError("to", "must not be before from")
    return since, until


def _csv(columns: tuple[str, ...], rows: list[dict[str, Any]], filename: str) -> web.Response:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return web.Response(
        text=buf.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # A spreadsheet would run a cell starting with these as a formula (CSV injection).
    if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


@requires("reports")
async def response_report(request: web.Request) -> web.Response:
    """``GET /api/reports/response[.csv]?from=&to=``."""
    try:
        since, until = parse_range(request.query)
    except InputError as exc:
        return error_response(exc)
    console = request.app[CONSOLE]
    rows = await asyncio.to_thread(response_times, console.store, since, until)
    if request.path.endswith(".csv"):
        await console.record(
            request, "report.export", target="response", detail=dict(request.query)
        )
        return _csv(RESPONSE_COLUMNS, rows, "polewatch-response-times.csv")
    return web.json_response({"rows": rows})


@requires("reports")
async def false_alarm_report(request: web.Request) -> web.Response:
    """``GET /api/reports/false-alarms[.csv]?from=&to=``."""
    try:
        since, until = parse_range(request.query)
    except InputError as exc:
        return error_response(exc)
    console = request.app[CONSOLE]
    data = await asyncio.to_thread(false_alarms, console.store, since, until)
    if request.path.endswith(".csv"):
        await console.record(
            request, "report.export", target="false-alarms", detail=dict(request.query)
        )
        rows = [{"group": "unit", "name": r["unit_id"], **r} for r in data["by_unit"]]
        rows += [{"group": "rule", "name": r["rule"], **r} for r in data["by_rule"]]
        return _csv(FALSE_COLUMNS, rows, "polewatch-false-alarms.csv")
    return web.json_response(data)


def add_routes(app: web.Application) -> None:
    """Add the report routes."""
    app.router.add_get("/api/reports/response", response_report)
    app.router.add_get("/api/reports/response.csv", response_report)
    app.router.add_get("/api/reports/false-alarms", false_alarm_report)
    app.router.add_get("/api/reports/false-alarms.csv", false_alarm_report)
