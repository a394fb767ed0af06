"""The worker process: a Dramatiq worker consuming settle and webhook messages, the
sweep, the expiry of authorizations, the webhook sender and its sweep, the
reconciliation, the pruning of old events, and (``p2p worker``) the metrics endpoint."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.stub import StubBroker

from jobs.broker import enqueue_all, redis_broker, unique_ids
from jobs.contract import webhook_message
from shared.clock import utcnow
from shared.settings import Settings
from shared.store import Database
from shared.store.opening import open_store
from shared.webhook_attempts import Claimed
from shared.webhook_urls import Resolver, resolve
from worker.actors import SettleActor, WebhookActor, declare_settle_actor, declare_webhook_actor
from worker.expiry import Expirer
from worker.log_fields import add_message_log_fields
from worker.metrics import WorkerMetrics, serve_metrics
from worker.pruner import EventPruner
from worker.queue_depth import QueueDepth, RedisQueueDepth, queue_depth_of
from worker.reconciler import Reconciler
from worker.settler import Settler
from worker.sweep import Sweeper
from worker.webhook_dispatch import Dispatcher
from worker.webhook_metrics import WebhookMetrics
from worker.webhook_sender import Clock, WebhookSender, WebhookSweep

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
        clock: Clock = utcnow,
        resolver: Resolver = resolve,
    ) -> None:
        """``queue_depth`` reads the queue for the metrics; by default through the
        broker's own client. ``clock`` is the webhook sender's and the expiry's,
        ``resolver`` the webhook sender's (tests move time, and make names resolve where
        they choose)."""
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
        self.expirer = Expirer(db, settings, clock=clock)
        self.pruner = EventPruner(db, settings)
        self.webhook_metrics = WebhookMetrics(db, self.metrics.registry)
        self.webhook_sender = WebhookSender(
            db, settings, clock=clock, resolver=resolver, observe=self.webhook_metrics.observe
        )
        self.dispatcher = Dispatcher(
            self.webhook_sender.attempt,
            threads=settings.webhook_concurrency,
            per_endpoint=settings.webhook_endpoint_concurrency,
        )
        self.webhook_actor: WebhookActor = declare_webhook_actor(
            broker, self._hand_to_sender, settings
        )
        self._webhook_queue_name = settings.webhook_queue_name
        self.webhook_sweep = WebhookSweep(db, settings, self._hand_out, clock=clock)

    def start(self) -> None:
        self.broker.emit_after("process_boot")
        self.settler.start()
        self._worker.start()
        self.sweeper.start()
        self.expirer.start()
        self.reconciler.start()
        self.pruner.start()
        self.webhook_sweep.start()

    def join(self) -> None:
        """Wait until every message sent so far is processed (in-process broker only)."""
        assert isinstance(self.broker, StubBroker), "join needs the in-process broker"
        self.broker.join(self._queue_name)
        self.broker.join(self._webhook_queue_name)
        self._worker.join()

    def deliver_due(self, *, timeout: float = 30.0) -> int:
        """Hand out the deliveries due now and wait until their attempts are recorded
        (in-process broker only); returns how many were handed out."""
        handed = self.webhook_sweep.sweep_once()
        self.join()
        if not self.dispatcher.wait_idle(timeout):
            raise TimeoutError(f"webhook attempts still running after {timeout} s")
        return handed

    def stop(self) -> None:
        """Finish what is in hand, hand prefetched messages back, and stop."""
        self.webhook_sweep.stop()
        self.pruner.stop()
        self.reconciler.stop()
        self.expirer.stop()
        self.sweeper.stop()
        self._worker.stop()
        self.dispatcher.close()
        self.settler.stop()
        self.broker.close()

    def _hand_out(self, claimed: Sequence[Claimed]) -> None:
        """The webhook sweep's: one message each on the webhook queue; this process's
        own sender takes them when the broker cannot."""
        messages = [
            webhook_message(
                self._webhook_queue_name, one.delivery_id, one.endpoint_id, one.attempts, id_
            )
            for one, id_ in zip(claimed, unique_ids(len(claimed)), strict=True)
        ]
        try:
            enqueue_all(self.broker, messages)
        except Exception as error:
            log.warning(
                "could not enqueue %d webhook deliveries (%s); sending them from here",
                len(claimed),
                error,
            )
            for one in claimed:
                self.dispatcher.submit(one)

    def _hand_to_sender(self, delivery_id: str, endpoint_id: str, attempts: int) -> None:
        self.dispatcher.submit(Claimed(delivery_id, endpoint_id, attempts))


def run_worker(settings: Settings, *, clock: Clock = utcnow) -> None:
    """``p2p worker``: run until SIGTERM or SIGINT (``clock`` as ``WorkerRuntime``'s)."""
    db = open_store(settings)
    db.migrate()
    broker = redis_broker(settings.redis_url, timeout_s=WORKER_REDIS_TIMEOUT_S)
    # A scrape reads the queue on a client of its own that gives up quickly.
    queue_depth = RedisQueueDepth.from_url(
        settings.redis_url, settings.queue_name, timeout_s=settings.redis_timeout_s
    )
    runtime = WorkerRuntime(settings, broker, db, queue_depth=queue_depth, clock=clock)
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
