"""G2 in the database (migration 4): a completed payment has exactly one debit of its
amount on the sender and one credit of its amount on the receiver, and no other payment
has an entry. Each way of breaking it, behind the engine's back, is refused by the
database itself; PostgreSQL refuses at commit, SQLite at the statement."""

from __future__ import annotations

import pytest

from shared.audit import verify
from shared.clock import to_text, utcnow
from shared.engine import settle_payment, settle_pending
from shared.records import Account, Payment, PaymentStatus
from shared.store import Connection, Database
from tests.unit.helpers import (
    Customer,
    entries_of_payment,
    insert_entry_row,
    insert_payment_row,
    pay,
    refused,
    snapshot,
)

UNPAIRED = "a completed payment has one debit and one credit of its amount"
NOT_COMPLETED = "a payment that is not completed has no ledger entries"


def _entry(conn: Connection, account: Account, direction: str, amount: int, payment: str) -> None:
    """An entry that continues the account's running balance (so only pairing objects)."""
    (balance,) = conn.execute("SELECT balance FROM accounts WHERE id = ?", (account.id,)).fetchone()
    after = balance + amount if direction == "credit" else balance - amount
    insert_entry_row(conn, account.id, direction, amount, after, payment_id=payment)


def _mark(conn: Connection, payment: Payment, status: str) -> None:
    conn.execute(
        "UPDATE payments SET status = ?, completed_at = ?, failure_code = ? WHERE id = ?",
        (
            status,
            to_text(utcnow()),
            "insufficient_funds" if status == "failed" else None,
            payment.id,
        ),
    )


def test_a_payment_marked_completed_without_its_entries_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 100)
    before = snapshot(db)

    with refused(db, UNPAIRED), db.write() as conn:
        _mark(conn, payment, "completed")

    assert snapshot(db) == before


def test_a_payment_written_as_completed_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    before = snapshot(db)

    with refused(db, UNPAIRED), db.write() as conn:
        insert_payment_row(conn, alice.main, bob.main, amount=100, status="completed")

    assert snapshot(db) == before


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([("sender", "debit", 100)], id="only the debit"),
        pytest.param([("receiver", "credit", 100)], id="only the credit"),
        pytest.param([("sender", "debit", 99), ("receiver", "credit", 99)], id="another amount"),
        pytest.param([("sender", "debit", 100), ("receiver", "credit", 99)], id="unequal legs"),
        pytest.param([("sender", "debit", 100), ("other", "credit", 100)], id="wrong receiver"),
        pytest.param([("other", "debit", 100), ("receiver", "credit", 100)], id="wrong sender"),
        pytest.param([("receiver", "debit", 100), ("sender", "credit", 100)], id="reversed"),
    ],
)
def test_a_payment_completed_without_exactly_its_pair_is_refused(
    db: Database,
    alice: Customer,
    bob: Customer,
    carol: Customer,
    entries: list[tuple[str, str, int]],
) -> None:
    payment = pay(db, alice.main, bob.main, 100)
    accounts = {"sender": alice.main, "receiver": bob.main, "other": carol.main}
    before = snapshot(db)

    with refused(db, UNPAIRED), db.write() as conn:
        for who, direction, amount in entries:
            _entry(conn, accounts[who], direction, amount, payment.id)
        _mark(conn, payment, "completed")

    assert snapshot(db) == before


def test_a_payment_with_its_pair_that_changes_its_amount_before_completing_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 100)
    before = snapshot(db)

    with refused(db, UNPAIRED), db.write() as conn:
        _entry(conn, alice.main, "debit", 100, payment.id)
        _entry(conn, bob.main, "credit", 100, payment.id)
        conn.execute("UPDATE payments SET amount = 200 WHERE id = ?", (payment.id,))
        _mark(conn, payment, "completed")

    assert snapshot(db) == before


def test_a_payment_failed_with_entries_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 100)
    before = snapshot(db)

    with refused(db, NOT_COMPLETED), db.write() as conn:
        _entry(conn, alice.main, "debit", 100, payment.id)
        _entry(conn, bob.main, "credit", 100, payment.id)
        _mark(conn, payment, "failed")

    assert snapshot(db) == before


@pytest.mark.parametrize("amount", [100, 10_000], ids=["completed", "failed"])
def test_an_entry_for_a_settled_payment_is_refused(
    db: Database, alice: Customer, bob: Customer, carol: Customer, amount: int
) -> None:
    payment = pay(db, alice.main, bob.main, amount)
    settle_payment(db, payment.id)
    before = snapshot(db)

    # On PostgreSQL a completed payment's second credit is the UNIQUE index's to refuse.
    with (
        refused(db, f"(?i)settled payment takes no more|{NOT_COMPLETED}|unique constraint"),
        db.write() as conn,
    ):
        _entry(conn, carol.main, "credit", amount, payment.id)

    assert snapshot(db) == before


def test_an_entry_of_a_completed_payment_cannot_be_deleted_or_changed(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 100)
    settle_payment(db, payment.id)
    before = snapshot(db)

    with refused(db, "append-only"):
        db.connection().execute("DELETE FROM ledger_entries WHERE payment_id = ?", (payment.id,))
    with refused(db, "append-only"):
        db.connection().execute(
            "UPDATE ledger_entries SET payment_id = NULL, deposit_id = NULL WHERE payment_id = ?",
            (payment.id,),
        )

    assert snapshot(db) == before


def test_a_completed_payment_cannot_leave_completed(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 100)
    settle_payment(db, payment.id)

    with refused(db, "settled payment cannot change"), db.write() as conn:
        _mark(conn, payment, "failed")


@pytest.mark.postgresql_only  # checked at commit; SQLite has no deferred triggers
def test_entries_for_a_payment_left_pending_are_refused_at_commit(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 100)
    before = snapshot(db)

    with refused(db, NOT_COMPLETED), db.write() as conn:
        _entry(conn, alice.main, "debit", 100, payment.id)
        _entry(conn, bob.main, "credit", 100, payment.id)

    assert snapshot(db) == before


@pytest.mark.sqlite_only
def test_on_sqlite_entries_for_a_payment_left_pending_are_the_audits_to_find(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 100)

    with db.write() as conn:
        _entry(conn, alice.main, "debit", 100, payment.id)
        _entry(conn, bob.main, "credit", 100, payment.id)

    assert [line.split(": ")[0] for line in verify(db)] == [
        "payment that is not completed has ledger entries"
    ]
    # And it can be settled neither way: its entries are there, the second pair refused.
    with refused(db, NOT_COMPLETED), db.write() as conn:
        _mark(conn, payment, "failed")


def test_a_settled_group_of_completed_and_failed_payments_is_accepted(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    payments = [
        pay(db, alice.main, bob.main, 300),
        pay(db, bob.main, carol.main, 1_200),  # funded by the one before it
        pay(db, carol.savings, alice.main, 10_000),  # insufficient funds
        pay(db, alice.main, carol.savings, 700),
    ]

    settled = settle_pending(db, limit=10)

    assert [p.status for p in settled] == [
        PaymentStatus.COMPLETED,
        PaymentStatus.COMPLETED,
        PaymentStatus.FAILED,
        PaymentStatus.COMPLETED,
    ]
    assert [len(entries_of_payment(db, p.id)) for p in payments] == [2, 2, 0, 2]
    assert verify(db) == []
