"""Prometheus metrics of the receiver at ``GET /metrics``, in the text exposition format.

A custom collector reads the store and the receiver's counters at each scrape, so the numbers
are the database's, not a copy kept beside it:

- ``polewatch_alarms{state,unit_state}``: queue entries by workflow state and unit state;
- ``polewatch_messages_ingested_total{kind}`` and ``polewatch_messages_duplicate_total``:
  messages committed since the receiver started (``rate()`` of it is the ingest rate);
- ``polewatch_messages_stored``: message ids held for deduplication;
- ``polewatch_units{online}``: units online and offline; ``polewatch_unit_last_heard_seconds``;
- ``polewatch_rejected_total{reason}``: requests refused (unprotected, forged, malformed...);
- ``polewatch_forward_queue_depth{target}``, ``polewatch_forward_dead_letters{target}``,
  ``polewatch_forward_delivered_total{target}``, ``polewatch_forward_failures_total{target}``,
  ``polewatch_forward_up{target}``: the onward delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from host_tools.receiver.server import Receiver

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"


class ReceiverCollector(Collector):
    """Reads one receiver's store, counters and forward queue at each scrape."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def collect(self) -> Iterator[Metric]:
        """The metric families, read now."""
        rcv = self.receiver
        alarms = GaugeMetricFamily(
            "polewatch_alarms",
            "Alarm queue entries by operator workflow state and by the unit's state",
            labels=["state", "unit_state"],
        )
        units = GaugeMetricFamily(
            "polewatch_units", "Units by supervision state", labels=["online"]
        )
        heard = GaugeMetricFamily(
            "polewatch_unit_last_heard_seconds",
            "When each unit was last heard from (receiver clock, Unix seconds)",
            labels=["unit"],
        )
        stored = GaugeMetricFamily(
            "polewatch_messages_stored", "Message ids held for deduplication"
        )
        store = rcv.store
        if store is not None:
            for (state, unit_state), n in sorted(store.alarm_counts().items()):
                alarms.add_metric([state, unit_state], n)
            rows = store.units()
            online = sum(1 for u in rows if u["online"])
            units.add_metric(["true"], online)
            units.add_metric(["false"], len(rows) - online)
            for u in rows:
                heard.add_metric([u["unit_id"]], u["last_heard"])
            stored.add_metric([], store.message_count())
        yield from (alarms, units, heard, stored)

        ingested = CounterMetricFamily(
            "polewatch_messages_ingested",
            "Messages committed since the receiver started, by kind",
            labels=["kind"],
        )
        for kind, n in sorted(rcv.ingested.items()):
            ingested.add_metric([kind], n)
        yield ingested
        yield CounterMetricFamily(
            "polewatch_messages_duplicate",
            "Messages received again and acknowledged without storing them",
            value=rcv.duplicates,
        )
        rejected = CounterMetricFamily(
            "polewatch_rejected", "Requests refused since start, by reason", labels=["reason"]
        )
        for reason, n in sorted(rcv.rejects.counts.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield from self._forwarding()

    def _forwarding(self) -> Iterator[Metric]:
        forwarder = self.receiver.forwarder
        depth = GaugeMetricFamily(
            "polewatch_forward_queue_depth", "Items waiting for delivery", labels=["target"]
        )
        dead = GaugeMetricFamily(
            "polewatch_forward_dead_letters", "Items a target refused for good", labels=["target"]
        )
        delivered = CounterMetricFamily(
            "polewatch_forward_delivered", "Items delivered since start", labels=["target"]
        )
        failures = CounterMetricFamily(
            "polewatch_forward_failures", "Failed attempts since start", labels=["target"]
        )
        up = GaugeMetricFamily(
            "polewatch_forward_up",
            "1 when the last attempt reached the target, 0 when it did not",
            labels=["target"],
        )
        if forwarder is not None and forwarder.queue is not None:
            counts = forwarder.depths()
            for name, worker in sorted(forwarder.workers.items()):
                depth.add_metric([name], counts.get((name, "queued"), 0))
                dead.add_metric([name], counts.get((name, "dead"), 0))
                delivered.add_metric([name], worker.delivered)
                failures.add_metric([name], worker.failures)
                if worker.up is not None:
                    up.add_metric([name], 1 if worker.up else 0)
        yield from (depth, dead, delivered, failures, up)


_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


def registry_for(receiver: Receiver) -> CollectorRegistry:
    """A registry holding only this receiver's collector (not the process-wide default)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReceiverCollector(receiver))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition of a registry."""
    return generate_latest(registry)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text format (read in a thread: it queries the store)."""
    body = await asyncio.to_thread(render, request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def add_metrics_route(app: web.Application, receiver: Receiver) -> None:
    """Serve ``receiver``'s metrics at ``/metrics`` on ``app``."""
    app[_REGISTRY] = registry_for(receiver)
    app.router.add_get(METRICS_PATH, metrics_handler)
