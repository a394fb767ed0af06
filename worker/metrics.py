"""The worker's Prometheus metrics, in a registry of its own, and the endpoint serving them.

Counting on the settle path is a counter and a histogram per payment, fed by the
engine's observer after each commit; everything that needs a query (pending payments,
the queue in Redis, reconciliation) is read by a collector when Prometheus scrapes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import dramatiq
from dramatiq.broker import MessageProxy
from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.audit import Scope
from shared.clock import utcnow
from shared.engine import pending_backlog
from shared.event_metrics import EventsWritten
from shared.records import FailureCode, Payment
from shared.settings import Settings
from shared.store import Database
from worker.queue_depth import QueueDepth
from worker.reconciler import Reconciler

log = logging.getLogger(__name__)

# From a few milliseconds (a quiet worker) to many minutes (a backlog, a worker down).
SETTLE_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0,
)  # fmt: skip


class WorkerMetrics:
    def __init__(
        self, db: Database, queue: QueueDepth | None, reconciler: Reconciler | None
    ) -> None:
        self.registry = CollectorRegistry()
        self.settled = Counter(
            "p2p_payments_settled",
            "Payments settled, by outcome (completed, failed) and failure code.",
            ["outcome", "code"],
            registry=self.registry,
        )
        # Every series exists from the start, so rate() and alerts see the first one.
        self._completed = self.settled.labels("completed", "")
        self._failed = {code: self.settled.labels("failed", code.value) for code in FailureCode}
        self.settle_latency = Histogram(
            "p2p_settle_latency_seconds",
            "From acceptance (created_at) to the commit that settled the payment.",
            buckets=SETTLE_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.swept = Counter(
            "p2p_sweep_settled",
            "Payments the sweep found stuck pending and settled itself (it never re-enqueues).",
            registry=self.registry,
        )
        self.messages = Counter(
            "p2p_settle_messages",
            "Settle messages handled, by result: ok, or error (raised; retried with backoff"
            " or, after the last retry, dead-lettered).",
            ["result"],
            registry=self.registry,
        )
        for result in ("ok", "error"):
            self.messages.labels(result)
        self.registry.register(_PendingCollector(db))
        self.registry.register(EventsWritten())
        if queue is not None:
            self.registry.register(_QueueCollector(queue))
        if reconciler is not None and reconciler.enabled:
            self.registry.register(_ReconciliationCollector(reconciler))

    def observe_settled(self, payments: Sequence[Payment]) -> None:
        """The engine's observer: called after each commit with what it settled."""
        now = utcnow()
        for payment in payments:
            code = payment.failure_code
            (self._completed if code is None else self._failed[code]).inc()
            self.settle_latency.observe((now - payment.created_at).total_seconds())

    def observe_swept(self, settled: int) -> None:
        self.swept.inc(settled)

    def middleware(self) -> dramatiq.Middleware:
        """Counts every settle message the Dramatiq worker handles."""
        return _MessageMetrics(self.messages)


class _MessageMetrics(dramatiq.Middleware):
    def __init__(self, messages: Counter) -> None:
        self._ok = messages.labels("ok")
        self._error = messages.labels("error")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        (self._ok if exception is None else self._error).inc()


class _PendingCollector(Collector):
    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[Metric]:
        backlog = pending_backlog(self._db)
        yield GaugeMetricFamily(
            "p2p_payments_pending", "Payments accepted and not yet settled.", value=backlog.count
        )
        age = 0.0
        if backlog.oldest_created_at is not None:
            age = max(0.0, (utcnow() - backlog.oldest_created_at).total_seconds())
        yield GaugeMetricFamily(
            "p2p_oldest_pending_age_seconds",
            "How long the oldest pending payment has waited; 0 when none is pending.",
            value=age,
        )


class _QueueCollector(Collector):
    def __init__(self, queue: QueueDepth) -> None:
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "p2p_broker_up", "1 if the broker answered this scrape's queue reads, else 0."
        )
        try:
            counts = self._queue.read()
        except Exception as error:
            log.warning("metrics: cannot read the queue: %s", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        messages = GaugeMetricFamily(
            "p2p_queue_messages",
            "Settle messages in the broker: ready (waiting to be fetched), delayed (retries"
            " in backoff), unacked (fetched by a worker, not yet acknowledged).",
            labels=["queue", "state"],
        )
        name = self._queue.queue_name
        messages.add_metric([name, "ready"], counts.ready)
        messages.add_metric([name, "delayed"], counts.delayed)
        if counts.unacked is not None:
            messages.add_metric([name, "unacked"], counts.unacked)
        yield messages
        dead = GaugeMetricFamily(
            "p2p_queue_dead_letters",
            "Settle messages dead-lettered after their last retry.",
            labels=["queue"],
        )
        dead.add_metric([name], counts.dead_letters)
        yield dead


class _ReconciliationCollector(Collector):
    def __init__(self, reconciler: Reconciler) -> None:
        self._reconciler = reconciler

    def collect(self) -> Iterator[Metric]:
        status = self._reconciler.status
        yield GaugeMetricFamily(
            "p2p_reconciliation_violations",
            "Ledger violations open: found by the latest check of their row. 0 while the"
            " ledger holds.",
            value=status.open_violations,
        )
        if status.last_run_at is not None:
            yield GaugeMetricFamily(
                "p2p_reconciliation_last_run_timestamp_seconds",
                "Unix time of the latest reconciliation run.",
                value=status.last_run_at,
            )
        if status.last_cycle_at is not None:
            yield GaugeMetricFamily(
                "p2p_reconciliation_last_cycle_timestamp_seconds",
                "Unix time at which reconciliation last finished a pass over every account.",
                value=status.last_cycle_at,
            )
        checked = CounterMetricFamily(
            "p2p_reconciliation_checked",
            "Rows reconciled since the worker started, by kind.",
            labels=["kind"],
        )
        for scope in (Scope.ACCOUNTS, Scope.PAYMENTS, Scope.DEPOSITS):
            checked.add_metric([scope.value], status.checked[scope])
        yield checked
        yield CounterMetricFamily(
            "p2p_reconciliation_failed_runs",
            "Reconciliation runs that raised (logged; retried next interval).",
            value=status.failed_runs,
        )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: " + format, *args)


class MetricsServer:
    """Serves a registry over HTTP from one thread: scrapes queue up, and every collector
    query runs on that thread's one database connection."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server = make_server(
            host, port, make_wsgi_app(registry), WSGIServer, handler_class=_QuietHandler
        )
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="p2p-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()  # waits for serve_forever: only once it runs
            self._thread.join()
        self._server.server_close()


def serve_metrics(registry: CollectorRegistry, settings: Settings) -> MetricsServer | None:
    """``p2p worker``'s endpoint, serving already; ``None`` when the port setting is 0.
    A port that is taken stops the start: better than a worker nobody can see."""
    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    if not port:
        return None
    try:
        server = MetricsServer(registry, host, port)
    except OSError as error:
        raise SystemExit(f"p2p worker: cannot serve metrics on {host}:{port}: {error}") from None
    server.start()
    log.info("worker metrics on http://%s:%d/metrics", host, server.port)
    return server
