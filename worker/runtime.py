"""The worker process: a Dramatiq worker consuming settle messages, the sweep, the
expiry of authorizations, the reconciliation, the pruning of old events, and (``p2p
worker``) the metrics endpoint."""

from __future__ import annotations

import logging
import signal
import threading

import dramatiq
from dramatiq.brokers.stub import StubBroker

from jobs.broker import redis_broker
from shared.settings import Settings
from shared.store import Database
from shared.store.opening import open_store
from worker.actors import SettleActor, declare_settle_actor
from worker.expiry import Expirer
from worker.log_fields import add_message_log_fields
from worker.metrics import WorkerMetrics, serve_metrics
from worker.pruner import EventPruner
from worker.queue_depth import QueueDepth, RedisQueueDepth, queue_depth_of
from worker.reconciler import Reconciler
from worker.settler import Settler
from worker.sweep import Sweeper

log = logging.getLogger(__name__)

# The worker's own Redis commands may wait longer than a submit may.
WORKER_REDIS_TIMEOUT_S = 5.0


class WorkerRuntime:
    """Everything ``p2p worker`` runs, startable and stoppable in one process."""

    def __init__(
        self,
        settings: Settings,
        broker: dramatiq.Broker,
        db: Database,
        *,
        queue_depth: QueueDepth | None = None,
    ) -> None:
        """``queue_depth`` reads the queue for the metrics; by default through the
        broker's own client."""
        self.db = db
        self.broker = broker
        add_message_log_fields(broker)
        self.reconciler = Reconciler(db, settings)
        self.metrics = WorkerMetrics(
            db, queue_depth or queue_depth_of(broker, settings.queue_name), self.reconciler
        )
        broker.add_middleware(self.metrics.middleware())
        self.settler = Settler(db, settings, observe=self.metrics.observe_settled)
        self.actor: SettleActor = declare_settle_actor(broker, self.settler.settle, settings)
        self._queue_name = settings.queue_name
        self._worker = dramatiq.Worker(
            broker,
            worker_threads=settings.worker_threads,
            worker_timeout=settings.worker_timeout_ms,
        )
        self._worker.queue_prefetch = settings.worker_prefetch
        self.sweeper = Sweeper(self.settler, settings, on_swept=self.metrics.observe_swept)
        self.expirer = Expirer(db, settings)
        self.pruner = EventPruner(db, settings)

    def start(self) -> None:
        self.broker.emit_after("process_boot")
        self.settler.start()
        self._worker.start()
        self.sweeper.start()
        self.expirer.start()
        self.reconciler.start()
        self.pruner.start()

    def join(self) -> None:
        """Wait until every message sent so far is processed (in-process broker only)."""
        assert isinstance(self.broker, StubBroker), "join needs the in-process broker"
        self.broker.join(self._queue_name)
        self._worker.join()

    def stop(self) -> None:
        """Finish what is in hand, hand prefetched messages back, and stop."""
        self.pruner.stop()
        self.reconciler.stop()
        self.expirer.stop()
        self.sweeper.stop()
        self._worker.stop()
        self.settler.stop()
        self.broker.close()


def run_worker(settings: Settings) -> None:
    """``p2p worker``: run until SIGTERM or SIGINT."""
    db = open_store(settings)
    db.migrate()
    broker = redis_broker(settings.redis_url, timeout_s=WORKER_REDIS_TIMEOUT_S)
    # A scrape reads the queue on a client of its own that gives up quickly.
    queue_depth = RedisQueueDepth.from_url(
        settings.redis_url, settings.queue_name, timeout_s=settings.redis_timeout_s
    )
    runtime = WorkerRuntime(settings, broker, db, queue_depth=queue_depth)
    metrics_server = serve_metrics(runtime.metrics.registry, settings)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    runtime.start()
    # The broker id names this process's keys in Redis (``dramatiq:__acks__.<id>.*``).
    log.info(
        "worker started: queue %r, database %s",
        settings.queue_name,
        db.path,
        extra={"broker_id": broker.broker_id},
    )
    while not stopping.wait(1.0):
        pass
    log.info("worker stopping")
    runtime.stop()
    if metrics_server is not None:
        metrics_server.stop()
    queue_depth.close()
    db.close()
