"""The worker's lines about a payment carry its id: settled, swept, set aside, retried."""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from shared import accounts, payments, users
from shared.records import PaymentStatus
from shared.settings import Settings
from shared.store import Database
from tests.backends import poison
from tests.log_capture import capture_logs
from worker.log_fields import MessageLogFields
from worker.runtime import WorkerRuntime
from worker.settler import Settler
from worker.sweep import Sweeper


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        sweep_grace_s=3600,  # the runtime's sweep leaves everything to the messages
        sweep_interval_s=3600,
        retry_min_backoff_ms=10,
        retry_max_backoff_ms=50,
        sqlite_busy_timeout_ms=50,
        worker_timeout_ms=20,
    )


def _submitted(db: Database, balance: int, amounts: list[int]) -> tuple[str, list[str]]:
    user, _ = db.run(users.sign_up, "Ann", "ann@example.com")
    sender = db.run(accounts.open_account, user.id, "EUR")
    receiver = db.run(accounts.open_account, user.id, "EUR")
    db.run(
        accounts.deposit, user.id, sender.id, amount=balance, description=None, idempotency_key="k"
    )
    ids = [
        db.run(
            payments.submit_transfer,
            user.id,
            payments.Transfer(sender.id, receiver.id, amount, "EUR"),
            f"key-{i}",
        )[0].id
        for i, amount in enumerate(amounts)
    ]
    return user.id, ids


def test_every_settled_payment_is_logged_with_its_outcome(settings: Settings, db: Database) -> None:
    _, ids = _submitted(db, 10, [10, 1])
    runtime = WorkerRuntime(settings, StubBroker(), db)
    runtime.start()
    try:
        with capture_logs() as captured:
            runtime.actor.send(ids[1])
            runtime.join()
    finally:
        runtime.stop()

    settled = {line["payment_id"]: line for line in captured.with_message("payment settled")}
    assert settled.keys() == set(ids)
    assert settled[ids[0]]["status"] == "completed"
    assert "failure_code" not in settled[ids[0]]
    assert settled[ids[1]]["status"] == "failed"
    assert settled[ids[1]]["failure_code"] == "insufficient_funds"
    assert {line["by"] for line in settled.values()} == {"message"}
    assert {line["logger"] for line in settled.values()} == {"worker.settler"}


def test_payments_settled_by_the_sweep_say_so(settings: Settings, db: Database) -> None:
    _, ids = _submitted(db, 10, [1, 1, 1])
    sweeper = Sweeper(Settler(db, settings), settings.model_copy(update={"sweep_grace_s": 0}))

    with capture_logs() as captured:
        assert sweeper.sweep_once() == 3

    settled = captured.with_message("payment settled")
    assert [line["payment_id"] for line in settled] == ids
    assert {line["by"] for line in settled} == {"sweep"}
    [summary] = captured.with_message("sweep settled 3 stuck payment(s)")
    assert summary["settled"] == 3


def test_a_payment_set_aside_is_logged_with_its_id_and_error(
    settings: Settings, db: Database
) -> None:
    _, ids = _submitted(db, 10, [1, 1])
    poison(db, ids[0])

    with capture_logs() as captured:
        Settler(db, settings).sweep(older_than=timedelta(0), limit=10)

    [aside] = [line for line in captured.lines() if "set aside" in line["message"]]
    assert aside["payment_id"] == ids[0]
    assert aside["level"] == "error"
    assert "poisoned row" in aside["exception"]
    [settled] = captured.with_message("payment settled")
    assert settled["payment_id"] == ids[1]


class _FirstFailure(dramatiq.Middleware):
    def __init__(self) -> None:
        self.seen = threading.Event()

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is not None:
            self.seen.set()


@pytest.mark.sqlite_only  # another connection holds SQLite's write lock
def test_dramatiq_lines_about_a_failed_and_retried_message_carry_the_payment_id(
    settings: Settings, db: Database
) -> None:
    user_id, [payment_id] = _submitted(db, 10, [1])
    broker = StubBroker()
    failed = _FirstFailure()
    broker.add_middleware(failed)
    runtime = WorkerRuntime(settings, broker, db)
    blocker = sqlite3.connect(db.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock: settling must fail
    runtime.start()
    try:
        with capture_logs() as captured:
            message = runtime.actor.send(payment_id)
            assert failed.seen.wait(10), "the actor never hit the locked database"
            blocker.execute("ROLLBACK")
            runtime.join()
    finally:
        blocker.close()
        runtime.stop()

    assert payments.get_payment(db, user_id, payment_id).status is PaymentStatus.COMPLETED
    dramatiq_lines = [line for line in captured.lines() if line["logger"].startswith("dramatiq")]
    failures = [line for line in dramatiq_lines if line["message"].startswith("Failed to process")]
    retries = [line for line in dramatiq_lines if line["message"].startswith("Retrying message")]
    assert failures
    assert retries
    for line in failures + retries:
        assert line["payment_id"] == payment_id
        assert line["message_id"] == message.message_id
    assert "database is locked" in failures[0]["exception"]


def test_the_message_fields_end_with_the_message() -> None:
    middleware = MessageLogFields()
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="q", actor_name="settle_payment", args=("pay_1",), kwargs={}, options={}
    )
    with capture_logs() as captured:
        middleware.before_process_message(StubBroker(), message)
        logging.getLogger("p2p.test").info("during")
        middleware.after_process_message(StubBroker(), message)
        logging.getLogger("p2p.test").info("after")

    during, after = captured.lines()
    assert (during["payment_id"], during["message_id"]) == ("pay_1", message.message_id)
    assert "payment_id" not in after
    assert "message_id" not in after
