"""The worker's metrics: counted on the settle path, collected at scrape time."""

from __future__ import annotations

import time

import dramatiq
import httpx
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from shared import accounts, payments, users
from shared.settings import Settings
from shared.store import Database
from tests.backends import poison
from tests.conftest import RedisServer, free_port
from worker.metrics import MetricsServer, WorkerMetrics
from worker.queue_depth import RedisQueueDepth
from worker.reconciler import Reconciler
from worker.runtime import WorkerRuntime


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        sweep_grace_s=0,
        sweep_interval_s=3600,
        reconcile_interval_s=3600,
        worker_timeout_ms=20,
    )


def _accept(db: Database, balance: int, amounts: list[int]) -> list[str]:
    user, _ = db.run(users.sign_up, "Ann", f"ann-{time.monotonic_ns()}@example.com")
    sender = db.run(accounts.open_account, user.id, "EUR")
    receiver = db.run(accounts.open_account, user.id, "EUR")
    db.run(
        accounts.deposit, user.id, sender.id, amount=balance, description=None, idempotency_key="s"
    )
    return [
        db.run(
            payments.submit_transfer,
            user.id,
            payments.Transfer(sender.id, receiver.id, amount, "EUR"),
            f"key-{i}",
        )[0].id
        for i, amount in enumerate(amounts)
    ]


def _sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_settled_payments_are_counted_by_outcome_and_timed(
    settings: Settings, db: Database
) -> None:
    # The sweep's first pass runs as the runtime starts, maybe after the payments are
    # accepted: a grace period keeps it off them, so that the messages settle them all.
    unswept = settings.model_copy(update={"sweep_grace_s": 3600})
    runtime = WorkerRuntime(unswept, StubBroker(), db)
    runtime.start()
    try:
        ids = _accept(db, 100, [60, 60, 30])  # the second lacks the funds
        for payment_id in ids:
            runtime.actor.send(payment_id)
        runtime.join()
    finally:
        runtime.stop()
    metrics = runtime.metrics

    assert _sample(metrics, "p2p_payments_settled_total", outcome="completed", code="") == 2
    insufficient = {"outcome": "failed", "code": "insufficient_funds"}
    assert _sample(metrics, "p2p_payments_settled_total", **insufficient) == 1
    frozen = {"outcome": "failed", "code": "account_frozen"}
    assert _sample(metrics, "p2p_payments_settled_total", **frozen) == 0
    assert _sample(metrics, "p2p_settle_latency_seconds_count") == 3
    assert _sample(metrics, "p2p_settle_messages_total", result="ok") == 3
    assert _sample(metrics, "p2p_settle_messages_total", result="error") == 0
    assert _sample(metrics, "p2p_sweep_settled_total") == 0
    assert _sample(metrics, "p2p_payments_pending") == 0
    assert _sample(metrics, "p2p_queue_messages", queue="payments", state="ready") == 0


def test_the_sweep_counts_what_it_settled(settings: Settings, db: Database) -> None:
    runtime = WorkerRuntime(settings, StubBroker(), db)  # not started: no messages consumed
    _accept(db, 100, [10, 10, 10, 10])

    runtime.sweeper.sweep_once()

    assert _sample(runtime.metrics, "p2p_sweep_settled_total") == 4
    assert _sample(runtime.metrics, "p2p_settle_latency_seconds_count") == 4


def test_pending_payments_and_the_age_of_the_oldest_are_read_at_scrape_time(
    settings: Settings, db: Database
) -> None:
    broker = StubBroker()
    runtime = WorkerRuntime(settings, broker, db)
    assert _sample(runtime.metrics, "p2p_oldest_pending_age_seconds") == 0
    ids = _accept(db, 100, [10, 10])
    for payment_id in ids:
        runtime.actor.send(payment_id)

    assert _sample(runtime.metrics, "p2p_payments_pending") == 2
    age = _sample(runtime.metrics, "p2p_oldest_pending_age_seconds")
    assert age is not None
    assert 0 < age < 60
    assert _sample(runtime.metrics, "p2p_queue_messages", queue="payments", state="ready") == 2


def test_an_error_in_the_actor_is_counted_and_dead_letters_are_read(
    settings: Settings, db: Database
) -> None:
    broker = StubBroker()
    runtime = WorkerRuntime(settings.model_copy(update={"retry_max": 0}), broker, db)
    runtime.start()
    try:
        [payment_id] = _accept(db, 100, [10])
        poison(db, payment_id)
        runtime.actor.send(payment_id)
        with pytest.raises(db.engine.integrity_error, match="poisoned row"):
            runtime.join()
    finally:
        runtime.stop()

    assert _sample(runtime.metrics, "p2p_settle_messages_total", result="error") == 1
    assert _sample(runtime.metrics, "p2p_queue_dead_letters", queue="payments") == 1


def test_the_queue_is_read_from_dramatiqs_redis_keys(redis_server: RedisServer) -> None:
    redis_server.flushall()
    broker = RedisBroker(url=redis_server.url)  # type: ignore[no-untyped-call]
    queue = "metrics-test"
    broker.declare_queue(queue)
    depth = RedisQueueDepth.from_url(redis_server.url, queue, timeout_s=1.0)
    try:

        def message() -> dramatiq.Message[None]:
            return dramatiq.Message(queue, "noop", (), {}, {})

        for _ in range(4):
            broker.enqueue(message())
        broker.enqueue(message(), delay=60_000)
        assert depth.read().ready == 4
        assert depth.read().delayed == 1

        consumer = broker.consume(queue, prefetch=2, timeout=1000)
        fetched = next(consumer)
        assert fetched is not None
        counts = depth.read()
        assert (counts.ready, counts.unacked) == (2, 2)

        consumer.nack(fetched)
        counts = depth.read()
        assert (counts.ready, counts.unacked, counts.dead_letters) == (2, 1, 1)
        consumer.close()
    finally:
        depth.close()
        broker.close()


def test_an_unreachable_redis_is_a_zero_not_a_failed_scrape(db: Database) -> None:
    depth = RedisQueueDepth.from_url(f"redis://127.0.0.1:{free_port()}/0", "q", timeout_s=0.2)
    metrics = WorkerMetrics(db, depth, None)
    started = time.monotonic()

    assert metrics.registry.get_sample_value("p2p_broker_up") == 0
    assert metrics.registry.get_sample_value("p2p_queue_messages", {"queue": "q"}) is None
    assert time.monotonic() - started < 2
    depth.close()


def test_the_endpoint_serves_the_registry_over_http(db: Database) -> None:
    metrics = WorkerMetrics(db, None, None)
    server = MetricsServer(metrics.registry, "127.0.0.1", 0)
    server.start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    finally:
        server.stop()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "p2p_payments_pending 0.0" in response.text


def test_reconciliation_is_exported_only_when_it_runs(settings: Settings, db: Database) -> None:
    off = Reconciler(db, settings.model_copy(update={"reconcile_interval_s": 0}))
    assert (
        WorkerMetrics(db, None, off).registry.get_sample_value("p2p_reconciliation_violations")
        is None
    )

    on = Reconciler(db, settings)
    metrics = WorkerMetrics(db, None, on)
    assert metrics.registry.get_sample_value("p2p_reconciliation_violations") == 0
    assert (
        metrics.registry.get_sample_value("p2p_reconciliation_last_run_timestamp_seconds") is None
    )

    _accept(db, 100, [10])
    on.reconcile_once()

    assert metrics.registry.get_sample_value("p2p_reconciliation_last_run_timestamp_seconds")
    checked = metrics.registry.get_sample_value(
        "p2p_reconciliation_checked_total", {"kind": "account"}
    )
    assert checked == 2


def test_a_metrics_port_that_is_taken_is_refused_at_start(settings: Settings, db: Database) -> None:
    holder = MetricsServer(WorkerMetrics(db, None, None).registry, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="in use"):
            MetricsServer(WorkerMetrics(db, None, None).registry, "127.0.0.1", holder.port)
    finally:
        holder.stop()


def test_a_redis_scrape_client_gives_up_at_once_when_refused() -> None:
    depth = RedisQueueDepth.from_url(f"redis://127.0.0.1:{free_port()}/0", "q", timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        depth.read()
    assert time.monotonic() - started < 1
    depth.close()
