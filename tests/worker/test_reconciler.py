"""The worker's continuous reconciliation: runs on its own, logs each violation."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from shared import accounts, users
from shared.audit import Scope
from shared.settings import Settings
from shared.store import Database
from worker.reconciler import Reconciler


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, reconcile_batch=10)


def _funded_account(db: Database, amount: int) -> str:
    user, _ = db.run(users.sign_up, "Ann", "ann@example.com")
    account = db.run(accounts.open_account, user.id, "EUR")
    db.run(
        accounts.deposit, user.id, account.id, amount=amount, description=None, idempotency_key="k"
    )
    return account.id


def test_each_violation_is_logged_as_an_error_naming_its_account(
    settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    account_id = _funded_account(db, 100)
    db.connection().execute("UPDATE accounts SET balance = 101 WHERE id = ?", (account_id,))
    reconciler = Reconciler(db, settings)

    with caplog.at_level(logging.ERROR, logger="worker.reconciler"):
        reconciler.reconcile_once()

    about_the_account = [r for r in caplog.records if getattr(r, "account_id", None) == account_id]
    assert {r.__dict__["violation"] for r in about_the_account} == {
        "balance differs from its newest entry's balance_after",
        "balance differs from its ledger",
    }
    assert all(r.levelno == logging.ERROR for r in caplog.records)
    assert any("balance 101 but credits - debits = 100" in r.getMessage() for r in caplog.records)
    assert len(caplog.records) == 3  # and the sum of balances against the deposits
    assert reconciler.status.open_violations == 3


def test_a_healthy_ledger_logs_nothing_and_counts_what_it_checked(
    settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    _funded_account(db, 100)
    reconciler = Reconciler(db, settings)

    with caplog.at_level(logging.ERROR):
        reconciler.reconcile_once()
        reconciler.reconcile_once()

    assert caplog.records == []
    status = reconciler.status
    assert status.open_violations == 0
    assert status.last_run_at is not None
    assert status.last_cycle_at == status.last_run_at
    assert status.checked[Scope.ACCOUNTS] == 2
    assert status.checked[Scope.PAYMENTS] == 0
    assert status.checked[Scope.DEPOSITS] == 2


@pytest.mark.sqlite_only  # PostgreSQL would not drop a table others reference
def test_the_thread_runs_at_once_counts_a_failed_run_and_stops_cleanly(
    settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    db.connection().execute("DROP TABLE deposits")  # every run raises
    reconciler = Reconciler(db, settings.model_copy(update={"reconcile_interval_s": 3600}))

    with caplog.at_level(logging.ERROR):
        reconciler.start()
        deadline = time.monotonic() + 10
        while reconciler.status.failed_runs == 0 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        reconciler.stop()  # returns at once: it waits on an event, not a sleep

    assert reconciler.status.failed_runs == 1
    assert "reconciliation run failed" in caplog.text


def test_an_interval_of_zero_turns_it_off(settings: Settings, db: Database) -> None:
    reconciler = Reconciler(db, settings.model_copy(update={"reconcile_interval_s": 0}))

    reconciler.start()
    reconciler.stop()

    assert not reconciler.enabled
    assert reconciler.status.last_run_at is None
