from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from threading import Barrier

import pytest

from shared import accounts, payments
from shared.accounts import MAX_BALANCE
from shared.engine import settle_payment, settle_pending
from shared.records import AccountStatus, FailureCode, Payment, PaymentStatus
from shared.store import Database
from shared.users import sign_up
from tests.unit.helpers import (
    Customer,
    balance_of,
    entries_of_payment,
    fund,
    ledger_rows,
    pay,
    snapshot,
)


def _settled(db: Database, payment_id: str) -> Payment:
    payment = settle_payment(db, payment_id)
    assert payment is not None
    return payment


def test_settling_moves_the_money_with_one_debit_and_one_credit(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 300)

    settled = _settled(db, payment.id)

    assert settled.status is PaymentStatus.COMPLETED
    assert settled.failure_code is None
    assert settled.completed_at is not None
    assert settled.completed_at >= settled.created_at
    assert (balance_of(db, alice.main.id), balance_of(db, bob.main.id)) == (700, 1300)
    entries = [
        (row["account_id"], row["direction"], row["amount"], row["balance_after"])
        for row in entries_of_payment(db, payment.id)
    ]
    assert entries == [
        (alice.main.id, "debit", 300, 700),
        (bob.main.id, "credit", 300, 1300),
    ]
    assert all(row["deposit_id"] is None for row in entries_of_payment(db, payment.id))


def test_running_balances_continue_across_several_payments(
    db: Database, alice: Customer, bob: Customer
) -> None:
    for amount in (100, 250, 50):
        _settled(db, pay(db, alice.main, bob.main, amount).id)
    _settled(db, pay(db, bob.main, alice.main, 75).id)

    assert [row["balance_after"] for row in ledger_rows(db, alice.main.id)] == [
        1000,
        900,
        650,
        600,
        675,
    ]
    assert [row["balance_after"] for row in ledger_rows(db, bob.main.id)] == [
        1000,
        1100,
        1350,
        1400,
        1325,
    ]


def test_a_payment_beyond_the_balance_fails_with_insufficient_funds_and_moves_nothing(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 1001)
    ledger_before = (ledger_rows(db, alice.main.id), ledger_rows(db, bob.main.id))

    settled = _settled(db, payment.id)

    assert settled.status is PaymentStatus.FAILED
    assert settled.failure_code is FailureCode.INSUFFICIENT_FUNDS
    assert settled.failure_detail
    assert settled.completed_at is not None
    assert entries_of_payment(db, payment.id) == []
    assert (balance_of(db, alice.main.id), balance_of(db, bob.main.id)) == (1000, 1000)
    assert (ledger_rows(db, alice.main.id), ledger_rows(db, bob.main.id)) == ledger_before


def test_a_payment_of_the_whole_balance_completes(
    db: Database, alice: Customer, bob: Customer
) -> None:
    settled = _settled(db, pay(db, alice.main, bob.main, 1000).id)

    assert settled.status is PaymentStatus.COMPLETED
    assert balance_of(db, alice.main.id) == 0


@pytest.mark.parametrize("frozen", ["sender", "receiver"])
def test_a_payment_touching_a_frozen_account_fails_with_account_frozen(
    db: Database, alice: Customer, bob: Customer, frozen: str
) -> None:
    payment = pay(db, alice.main, bob.main, 10)
    account = alice.main if frozen == "sender" else bob.main
    db.run(accounts.set_status, account.user_id, account.id, AccountStatus.FROZEN)

    settled = _settled(db, payment.id)

    assert settled.status is PaymentStatus.FAILED
    assert settled.failure_code is FailureCode.ACCOUNT_FROZEN
    assert account.id in (settled.failure_detail or "")
    assert entries_of_payment(db, payment.id) == []
    assert (balance_of(db, alice.main.id), balance_of(db, bob.main.id)) == (1000, 1000)


def test_a_payment_that_would_overfill_the_receiver_fails(db: Database, alice: Customer) -> None:
    whale, _ = db.run(sign_up, "Whale", "whale@example.com")
    full = db.run(accounts.open_account, whale.id, "USD")
    fund(db, full, MAX_BALANCE)
    payment = pay(db, alice.main, full, 1)

    settled = _settled(db, payment.id)

    assert settled.status is PaymentStatus.FAILED
    assert settled.failure_code is FailureCode.BALANCE_LIMIT_EXCEEDED
    assert entries_of_payment(db, payment.id) == []
    assert (balance_of(db, alice.main.id), balance_of(db, full.id)) == (1000, MAX_BALANCE)


@pytest.mark.parametrize("amount", [10, 10_000], ids=["completes", "fails"])
def test_settling_twice_changes_nothing_the_second_time(
    db: Database, alice: Customer, bob: Customer, amount: int
) -> None:
    payment = pay(db, alice.main, bob.main, amount)
    first = _settled(db, payment.id)
    after_first = snapshot(db)

    second = _settled(db, payment.id)

    assert second == first
    assert snapshot(db) == after_first


def test_concurrent_settles_of_one_payment_move_the_money_once(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 100)
    workers = 8
    start = Barrier(workers)

    def settle() -> Payment | None:
        start.wait(timeout=5)
        return settle_payment(db, payment.id)

    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(lambda _: settle(), range(workers)))

    assert {outcome.status if outcome else None for outcome in outcomes} == {
        PaymentStatus.COMPLETED
    }
    assert len(entries_of_payment(db, payment.id)) == 2
    assert (balance_of(db, alice.main.id), balance_of(db, bob.main.id)) == (900, 1100)


def test_a_failed_payment_stays_failed_when_money_arrives_later(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 1500)
    failed = _settled(db, payment.id)
    fund(db, alice.main, 1000)

    again = _settled(db, payment.id)

    assert again == failed
    assert again.failure_code is FailureCode.INSUFFICIENT_FUNDS
    assert entries_of_payment(db, payment.id) == []
    assert balance_of(db, alice.main.id) == 2000


def test_settling_an_unknown_payment_returns_none(db: Database, alice: Customer) -> None:
    before = snapshot(db)

    assert settle_payment(db, "pay_nothing") is None
    assert snapshot(db) == before


def test_payments_settled_in_acceptance_order_decide_who_gets_the_funds(
    db: Database, alice: Customer, bob: Customer
) -> None:
    poor = db.run(accounts.open_account, alice.user.id, "USD")
    fund(db, poor, 100)
    accepted = [pay(db, poor, bob.main, 60) for _ in range(3)]

    outcomes = settle_pending(db, limit=10)

    assert [payment.id for payment in outcomes] == [payment.id for payment in accepted]
    assert [payment.status for payment in outcomes] == [
        PaymentStatus.COMPLETED,
        PaymentStatus.FAILED,
        PaymentStatus.FAILED,
    ]
    assert [payment.failure_code for payment in outcomes[1:]] == [
        FailureCode.INSUFFICIENT_FUNDS
    ] * 2
    assert balance_of(db, poor.id) == 40
    assert balance_of(db, bob.main.id) == 1060


def _submitted_at(
    monkeypatch: pytest.MonkeyPatch, moment: datetime, db: Database, sender: Customer, to: Customer
) -> Payment:
    with monkeypatch.context() as patch:
        patch.setattr(payments, "utcnow", lambda: moment)
        return pay(db, sender.main, to.main, 1)


def test_a_sweep_settles_only_payments_older_than_its_cutoff_oldest_first(
    db: Database, alice: Customer, bob: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    oldest = _submitted_at(monkeypatch, now - timedelta(minutes=30), db, alice, bob)
    settled = _submitted_at(monkeypatch, now - timedelta(minutes=20), db, alice, bob)
    older = _submitted_at(monkeypatch, now - timedelta(minutes=10), db, bob, alice)
    _submitted_at(monkeypatch, now - timedelta(seconds=30), db, alice, bob)
    pay(db, alice.main, bob.main, 1)
    _settled(db, settled.id)

    def swept(older_than: timedelta) -> list[str]:
        return [p.id for p in settle_pending(db, limit=100, older_than=older_than)]

    assert swept(timedelta(hours=1)) == []
    assert swept(timedelta(minutes=15)) == [oldest.id]
    assert swept(timedelta(minutes=1)) == [older.id]
    assert swept(timedelta(minutes=1)) == []


def test_a_group_is_bounded_by_its_limit(
    db: Database, alice: Customer, bob: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    old = [
        _submitted_at(monkeypatch, now - timedelta(minutes=60 - minute), db, alice, bob).id
        for minute in range(5)
    ]

    def group(limit: int) -> list[str]:
        return [p.id for p in settle_pending(db, limit=limit, older_than=timedelta(minutes=1))]

    assert group(2) == old[:2]
    assert group(2) == old[2:4]
    assert group(5) == old[4:]
    assert group(5) == []
