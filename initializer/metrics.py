"""The initializer's own metrics (``ft_initializer_*``, ``ft_feed_*``), served on its
``metrics_port``: invokers by health as this initializer sees them, where it placed work, what
came back to it, and how far behind the queue feeds it runs are."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bus.broker import Broker
from initializer.feeds import FeedManager
from initializer.health import DOWN, UNHEALTHY, UNRESPONSIVE, UP
from initializer.registry import InvokerRegistry

log = logging.getLogger(__name__)

FEED_LAG_INTERVAL_S = 5.0


class InvokerHealthCollector(Collector):
    def __init__(self, registry: InvokerRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        counts = dict.fromkeys((UP, UNHEALTHY, UNRESPONSIVE, DOWN), 0)
        for state in self.registry.statuses().values():
            counts[state] = counts.get(state, 0) + 1
        invokers = GaugeMetricFamily("ft_initializer_invokers", "Invokers by health",
                                     labels=["state"])
        for state, count in counts.items():
            invokers.add_metric([state], count)
        yield invokers


class InitializerMetrics:
    def __init__(self, registry: CollectorRegistry, invokers: InvokerRegistry) -> None:
        registry.register(InvokerHealthCollector(invokers))
        self.placements = Counter(
            "ft_initializer_placements", "Activations placed, by invoker", ["invoker"],
            registry=registry)
        self.redeliveries = Counter(
            "ft_initializer_redeliveries",
            "Messages the broker delivered again (an earlier consumer died before its ack)",
            ["queue"], registry=registry)
        self.error_records = Counter(
            "ft_initializer_error_records",
            "Error records written for activations that could not run or were never answered",
            ["reason"], registry=registry)
        self.feed_waiting = Gauge(
            "ft_feed_messages_waiting", "Messages waiting in a queue feed's queue",
            ["namespace", "trigger"], registry=registry)
        self.feed_dead_letters = Gauge(
            "ft_feed_dead_letters", "Messages in a queue feed's dead-letter queue",
            ["namespace", "trigger"], registry=registry)

    async def follow_feeds(self, feeds: FeedManager, broker: Broker) -> None:
        """Every few seconds, the depth of the queues of the feeds this initializer runs (each
        feed is run by one initializer, so each is reported once)."""
        while True:
            await asyncio.sleep(FEED_LAG_INTERVAL_S)
            depths: dict[tuple[str, str], tuple[int, int]] = {}
            for runner in list(feeds.runners.values()):
                with contextlib.suppress(Exception):
                    depths[runner.doc.namespace, runner.doc.trigger] = (
                        await broker.backlog(runner.queue_name),
                        await broker.backlog(runner.dead_letter_queue))
            # Replaced at once, so a scrape never sees them half gone.
            for gauge in (self.feed_waiting, self.feed_dead_letters):
                gauge.clear()
            for labels, (waiting, dead) in depths.items():
                self.feed_waiting.labels(*labels).set(waiting)
                self.feed_dead_letters.labels(*labels).set(dead)
