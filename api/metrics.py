"""The API's Prometheus metrics, in a registry of its own per app."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from jobs.producer import SettlementQueue
from shared.event_metrics import EventsWritten


class _QueueCollector(Collector):
    def __init__(self, queue: SettlementQueue) -> None:
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "p2p_enqueue_failures",
            "Accepted payments whose message could not reach the broker (the sweep settles them).",
            value=self._queue.failures,
        )


class ApiMetrics:
    """``also`` is exposed on the same endpoint: the worker's registry in ``p2p dev``."""

    def __init__(self, queue: SettlementQueue, also: CollectorRegistry | None = None) -> None:
        self._also = also
        self.registry = CollectorRegistry()
        self.registry.register(_QueueCollector(queue))
        if also is None:  # else ``also`` (the worker's, in this process) counts them
            self.registry.register(EventsWritten())
        self.requests = Counter(
            "p2p_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "p2p_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "p2p_http_requests_in_flight",
            "HTTP requests received and not yet answered (this scrape included).",
            registry=self.registry,
        )
        self.payments_accepted = Counter(
            "p2p_payments_accepted",
            "Transfers accepted as pending (replays not counted).",
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        """The text format; may query the database (the worker's collectors): run it off
        the event loop."""
        text = generate_latest(self.registry)
        if self._also is not None:
            text += generate_latest(self._also)
        return text
