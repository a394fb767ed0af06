"""The worker's edge: the actor, retries of infrastructure errors, and the sweep."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker

from shared import accounts, payments, users
from shared.records import PaymentStatus
from shared.settings import Settings
from shared.store import Database
from tests.backends import cure, poison
from worker.runtime import WorkerRuntime
from worker.settler import Settler
from worker.sweep import Sweeper


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        sweep_grace_s=0,
        sweep_batch=10,
        sweep_interval_s=3600,
        retry_min_backoff_ms=10,
        retry_max_backoff_ms=50,
        sqlite_busy_timeout_ms=50,
        worker_timeout_ms=20,
    )


def _funded_pair(db: Database, balance: int) -> tuple[str, str, str]:
    user, _ = db.run(users.sign_up, "Ann", "ann@example.com")
    sender = db.run(accounts.open_account, user.id, "EUR")
    receiver = db.run(accounts.open_account, user.id, "EUR")
    db.run(
        accounts.deposit,
        user.id,
        sender.id,
        amount=balance,
        description=None,
        idempotency_key="seed",
    )
    return user.id, sender.id, receiver.id


def _submit(db: Database, user_id: str, sender: str, receiver: str, n: int) -> list[str]:
    return [
        db.run(
            payments.submit_transfer,
            user_id,
            payments.Transfer(sender, receiver, 1, "EUR"),
            f"key-{i}",
        )[0].id
        for i in range(n)
    ]


def _count(db: Database, sql: str) -> int:
    value: int = db.connection().execute(sql).fetchone()[0]
    return value


def test_a_message_for_a_settled_payment_changes_nothing(settings: Settings, db: Database) -> None:
    broker = StubBroker()
    runtime = WorkerRuntime(settings, broker, db)
    runtime.start()
    try:
        user_id, sender, receiver = _funded_pair(db, 10)
        [payment_id] = _submit(db, user_id, sender, receiver, 1)
        for _ in range(3):
            runtime.actor.send(payment_id)
        runtime.join()
    finally:
        runtime.stop()
    assert payments.get_payment(db, user_id, payment_id).status is PaymentStatus.COMPLETED
    assert _count(db, "SELECT count(*) FROM ledger_entries WHERE payment_id IS NOT NULL") == 2
    assert accounts.get_account(db, user_id, sender).balance == 9


class _Failures(dramatiq.Middleware):
    """Records every exception an actor raised."""

    def __init__(self) -> None:
        self.seen: list[BaseException] = []
        self.first = threading.Event()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None:
            self.seen.append(exception)
            self.first.set()


@pytest.mark.sqlite_only  # another connection holds SQLite's write lock
def test_an_infrastructure_error_is_retried_until_it_settles(
    settings: Settings, db: Database
) -> None:
    user_id, sender, receiver = _funded_pair(db, 10)
    [payment_id] = _submit(db, user_id, sender, receiver, 1)
    broker = StubBroker()
    failures = _Failures()
    broker.add_middleware(failures)
    runtime = WorkerRuntime(settings, broker, db)
    blocker = sqlite3.connect(db.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock: settling must fail
    runtime.start()
    try:
        runtime.actor.send(payment_id)
        assert failures.first.wait(10), "the actor never hit the locked database"
        assert payments.get_payment(db, user_id, payment_id).status is PaymentStatus.PENDING
        blocker.execute("ROLLBACK")
        runtime.join()
    finally:
        blocker.close()
        runtime.stop()
    assert all(isinstance(error, sqlite3.OperationalError) for error in failures.seen)
    assert payments.get_payment(db, user_id, payment_id).status is PaymentStatus.COMPLETED


def test_a_business_failure_is_recorded_not_retried(settings: Settings, db: Database) -> None:
    user_id, sender, receiver = _funded_pair(db, 1)
    ids = _submit(db, user_id, sender, receiver, 2)
    broker = StubBroker()
    failures = _Failures()
    broker.add_middleware(failures)
    runtime = WorkerRuntime(settings, broker, db)
    runtime.start()
    try:
        for payment_id in ids:
            runtime.actor.send(payment_id)
        runtime.join()
    finally:
        runtime.stop()
    assert failures.seen == []
    second = payments.get_payment(db, user_id, ids[1])
    assert second.status is PaymentStatus.FAILED
    assert second.failure_code is not None
    assert second.failure_code.value == "insufficient_funds"


def test_the_sweep_settles_stuck_payments_oldest_first_in_bounded_batches(
    settings: Settings, db: Database
) -> None:
    user_id, sender, receiver = _funded_pair(db, 25)
    ids = _submit(db, user_id, sender, receiver, 25)
    sweeper = Sweeper(Settler(db, settings), settings)

    assert sweeper.sweep_once() == 10
    statuses = [payments.get_payment(db, user_id, i).status for i in ids]
    assert statuses[:10] == [PaymentStatus.COMPLETED] * 10
    assert statuses[10:] == [PaymentStatus.PENDING] * 15

    assert sweeper.sweep_once() == 10
    assert sweeper.sweep_once() == 5
    assert sweeper.sweep_once() == 0
    assert _count(db, "SELECT count(*) FROM payments WHERE status = 'pending'") == 0


def test_the_sweep_leaves_payments_younger_than_the_grace_period(
    settings: Settings, db: Database
) -> None:
    user_id, sender, receiver = _funded_pair(db, 5)
    _submit(db, user_id, sender, receiver, 5)
    patient = Sweeper(Settler(db, settings), settings.model_copy(update={"sweep_grace_s": 3600}))
    assert patient.sweep_once() == 0
    assert _count(db, "SELECT count(*) FROM payments WHERE status = 'pending'") == 5


def test_the_sweep_never_enqueues_so_a_backlog_is_not_flooded(
    settings: Settings, db: Database
) -> None:
    user_id, sender, receiver = _funded_pair(db, 30)
    _submit(db, user_id, sender, receiver, 30)
    broker = StubBroker()
    runtime = WorkerRuntime(settings, broker, db)  # declares the queue; not started
    runtime.sweeper.sweep_once()
    assert broker.queues[settings.queue_name].qsize() == 0
    assert _count(db, "SELECT count(*) FROM payments WHERE status = 'pending'") == 20


def test_the_sweep_thread_touches_the_heartbeat(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    heartbeat = tmp_path / "heartbeat"
    sweeper = Sweeper(
        Settler(db, settings), settings.model_copy(update={"heartbeat_path": str(heartbeat)})
    )
    sweeper.start()
    sweeper.stop()
    assert heartbeat.exists()


def test_a_payment_that_cannot_be_settled_does_not_hold_the_others_back(
    settings: Settings, db: Database
) -> None:
    user_id, sender, receiver = _funded_pair(db, 10)
    ids = _submit(db, user_id, sender, receiver, 5)
    poison(db, ids[0])
    settler = Settler(db, settings)

    settler.settle(ids[3])

    statuses = [payments.get_payment(db, user_id, i).status for i in ids]
    assert statuses == [PaymentStatus.PENDING] + [PaymentStatus.COMPLETED] * 4
    with pytest.raises(db.engine.integrity_error, match="poisoned row"):
        settler.settle(ids[0])  # its own message fails, and Dramatiq retries it

    cure(db)
    settler.settle(ids[0])
    assert payments.get_payment(db, user_id, ids[0]).status is PaymentStatus.COMPLETED
    assert _count(db, "SELECT count(*) FROM payments WHERE status = 'pending'") == 0


def test_the_sweep_sets_a_failing_payment_aside_and_settles_the_rest(
    settings: Settings, db: Database
) -> None:
    user_id, sender, receiver = _funded_pair(db, 10)
    ids = _submit(db, user_id, sender, receiver, 4)
    poison(db, ids[1])
    settler = Settler(db, settings)

    assert settler.sweep(older_than=timedelta(0), limit=10) == 3
    assert settler.sweep(older_than=timedelta(0), limit=10) == 0
    assert payments.get_payment(db, user_id, ids[1]).status is PaymentStatus.PENDING
