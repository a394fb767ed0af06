"""The webhook sender's metrics, in the worker's registry: attempts by outcome and the
latency of deliveries counted as they are recorded; the backlog and the disabled
endpoints read from the database at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.clock import utcnow
from shared.enums import DeliveryStatus
from shared.store import Database
from shared.webhook_attempts import Outcome, Outgoing, Recorded, backlog

# From a quick receiver (tens of ms) through the retries (hours).
DELIVERY_LATENCY_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 36000.0,
    86400.0,
)  # fmt: skip

OUTCOMES = ("succeeded", "retrying", "failed")


class WebhookMetrics:
    def __init__(self, db: Database, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "p2p_webhook_deliveries",
            "Webhook delivery attempts, by outcome: succeeded, retrying (failed, another"
            " attempt is scheduled) or failed (failed, and the retries are spent).",
            ["outcome"],
            registry=registry,
        )
        self._by_status = {
            DeliveryStatus.SUCCEEDED: self.attempts.labels("succeeded"),
            DeliveryStatus.PENDING: self.attempts.labels("retrying"),
            DeliveryStatus.FAILED: self.attempts.labels("failed"),
        }
        self.latency = Histogram(
            "p2p_webhook_delivery_latency_seconds",
            "From an event's commit to its delivery's success, retries included.",
            buckets=DELIVERY_LATENCY_BUCKETS,
            registry=registry,
        )
        self.disabled = Counter(
            "p2p_webhook_endpoints_auto_disabled",
            "Endpoints this worker disabled because every attempt failed for"
            " P2P_WEBHOOK_DISABLE_AFTER_S.",
            registry=registry,
        )
        registry.register(_BacklogCollector(db))

    def observe(
        self, outgoing: Outgoing, outcome: Outcome, recorded: Recorded, now: datetime
    ) -> None:
        """The sender's observer: called once each attempt's outcome is recorded."""
        self._by_status[recorded.status].inc()
        if recorded.status is DeliveryStatus.SUCCEEDED:
            self.latency.observe(max(0.0, (now - outgoing.event_created_at).total_seconds()))
        if recorded.endpoint_disabled:
            self.disabled.inc()


class _BacklogCollector(Collector):
    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[Metric]:
        found = backlog(self._db)
        yield GaugeMetricFamily(
            "p2p_webhook_deliveries_pending",
            "Webhook deliveries not yet succeeded nor failed, to enabled endpoints.",
            value=found.pending,
        )
        age = 0.0
        if found.oldest_created_at is not None:
            age = max(0.0, (utcnow() - found.oldest_created_at).total_seconds())
        yield GaugeMetricFamily(
            "p2p_webhook_oldest_undelivered_age_seconds",
            "How long the oldest pending delivery to an enabled endpoint has waited;"
            " 0 when none is.",
            value=age,
        )
        yield GaugeMetricFamily(
            "p2p_webhook_endpoints_disabled",
            "Webhook endpoints disabled (by their owner, or for failing too long).",
            value=found.disabled_endpoints,
        )
