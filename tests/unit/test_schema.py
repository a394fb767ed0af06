"""The database itself refuses what breaks the money invariants, even behind the engine."""

from __future__ import annotations

import pytest

from shared.accounts import get_account
from shared.audit import verify
from shared.clock import new_id, to_text, utcnow
from shared.engine import settle_payment
from shared.store import Database
from tests.unit.helpers import (
    Customer,
    balance_of,
    insert_deposit_row,
    insert_entry_row,
    insert_payment_row,
    ledger_rows,
    pay,
    refused,
    snapshot,
)


def test_a_negative_balance_is_refused(db: Database, alice: Customer) -> None:
    with refused(db, "CHECK"):
        db.connection().execute("UPDATE accounts SET balance = -1 WHERE id = ?", (alice.main.id,))

    assert balance_of(db, alice.main.id) == 1000


@pytest.mark.sqlite_only  # SQLite's typeof CHECKs; PostgreSQL's BIGINT is the type itself
@pytest.mark.parametrize("balance", [0.5, "many"])
def test_a_balance_that_is_not_an_integer_is_refused(
    db: Database, alice: Customer, balance: object
) -> None:
    with refused(db, "CHECK"):
        db.connection().execute(
            "UPDATE accounts SET balance = ? WHERE id = ?", (balance, alice.main.id)
        )


@pytest.mark.parametrize("amount", [0, -5])
def test_an_amount_that_is_not_positive_is_refused(
    db: Database, alice: Customer, bob: Customer, amount: int
) -> None:
    with refused(db, "CHECK"):
        insert_payment_row(db.connection(), alice.main, bob.main, amount=amount)
    with refused(db, "CHECK"):
        insert_deposit_row(db.connection(), alice.main.id, amount)


@pytest.mark.sqlite_only  # SQLite's typeof CHECKs; PostgreSQL's BIGINT is the type itself
@pytest.mark.parametrize(
    ("amount", "refusal"),
    [(1.5, "CHECK"), ("1.5", "CHECK"), ("ten", "CHECK"), (b"10", "CHECK"), (None, "NOT NULL")],
    ids=repr,
)
def test_an_amount_that_is_not_an_integer_is_refused(
    db: Database, alice: Customer, bob: Customer, amount: object, refusal: str
) -> None:
    before = snapshot(db)

    with refused(db, refusal):
        insert_payment_row(db.connection(), alice.main, bob.main, amount=amount)
    with refused(db, refusal):
        insert_deposit_row(db.connection(), alice.main.id, amount)

    assert snapshot(db) == before


@pytest.mark.sqlite_only  # SQLite's type affinity
def test_numeric_text_is_stored_as_the_integer_it_spells(
    db: Database, alice: Customer, bob: Customer
) -> None:
    # INTEGER affinity turns '10' into 10 before the CHECK runs: what is stored is an
    # integer, so the invariant holds; a client's "10" is refused at the API edge.
    payment_id = insert_payment_row(db.connection(), alice.main, bob.main, amount="10")

    row = (
        db.connection()
        .execute("SELECT amount, typeof(amount) FROM payments WHERE id = ?", (payment_id,))
        .fetchone()
    )
    assert tuple(row) == (10, "integer")


def test_ledger_entries_cannot_be_updated(db: Database, alice: Customer) -> None:
    before = ledger_rows(db, alice.main.id)

    with refused(db, "append-only"):
        db.connection().execute(
            "UPDATE ledger_entries SET amount = amount + 1 WHERE account_id = ?",
            (alice.main.id,),
        )

    assert ledger_rows(db, alice.main.id) == before


def test_ledger_entries_cannot_be_deleted(db: Database, alice: Customer) -> None:
    before = ledger_rows(db, alice.main.id)

    with refused(db, "append-only"):
        db.connection().execute("DELETE FROM ledger_entries WHERE account_id = ?", (alice.main.id,))

    assert ledger_rows(db, alice.main.id) == before


def test_an_entry_that_does_not_continue_the_running_balance_is_refused(
    db: Database, alice: Customer
) -> None:
    before = snapshot(db)

    def credit_10_claiming_1011() -> None:
        # The previous entry's 1000 plus 10 is 1010.
        with db.write() as conn:
            deposit_id = insert_deposit_row(conn, alice.main.id, 10)
            insert_entry_row(conn, alice.main.id, "credit", 10, 1011, deposit_id=deposit_id)

    with refused(db, "running balance"):
        credit_10_claiming_1011()

    assert snapshot(db) == before


def test_an_entry_moves_its_accounts_balance(db: Database, alice: Customer) -> None:
    # G3 by construction: the balance is always the newest entry's balance_after.
    with db.write() as conn:
        deposit_id = insert_deposit_row(conn, alice.main.id, 10)
        insert_entry_row(conn, alice.main.id, "credit", 10, 1010, deposit_id=deposit_id)

    *_, newest = ledger_rows(db, alice.main.id)
    account = get_account(db, alice.user.id, alice.main.id)
    assert (account.balance, newest["balance_after"]) == (1010, 1010)
    assert to_text(account.updated_at) == newest["created_at"]
    assert verify(db) == []


def test_entries_written_in_one_statement_leave_the_newest_balance(
    db: Database, alice: Customer
) -> None:
    # How settling writes a group: on PostgreSQL the balance moves once, at the end of
    # the statement, to the newest entry's.
    deposits = [insert_deposit_row(db.connection(), alice.main.id, 10) for _ in range(3)]
    rows = [
        (new_id("led"), alice.main.id, "credit", 10, 1000 + 10 * n, deposit_id, to_text(utcnow()))
        for n, deposit_id in enumerate(deposits, start=1)
    ]
    db.connection().execute(
        "INSERT INTO ledger_entries"
        " (id, account_id, direction, amount, balance_after, deposit_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)",
        [value for row in rows for value in row],
    )

    assert balance_of(db, alice.main.id) == 1030
    *_, newest = ledger_rows(db, alice.main.id)
    account = get_account(db, alice.user.id, alice.main.id)
    assert to_text(account.updated_at) == newest["created_at"] == rows[-1][-1]
    assert verify(db) == []


def test_a_second_debit_for_one_payment_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 100)
    settle_payment(db, payment.id)
    before = snapshot(db)

    def debit_again() -> None:
        # The balance moves with the entry, so only the one-debit-per-payment rule
        # objects (on SQLite, the trigger that takes no entry for a settled payment first).
        with db.write() as conn:
            conn.execute("UPDATE accounts SET balance = 800 WHERE id = ?", (alice.main.id,))
            insert_entry_row(conn, alice.main.id, "debit", 100, 800, payment_id=payment.id)

    with refused(db, "(?i)unique constraint|settled payment takes no more ledger entries"):
        debit_again()

    assert snapshot(db) == before


def test_a_second_credit_for_one_deposit_is_refused(db: Database, alice: Customer) -> None:
    deposit_id = ledger_rows(db, alice.main.id)[0]["deposit_id"]

    def credit_again() -> None:
        with db.write() as conn:
            conn.execute("UPDATE accounts SET balance = 2000 WHERE id = ?", (alice.main.id,))
            insert_entry_row(conn, alice.main.id, "credit", 1000, 2000, deposit_id=deposit_id)

    with refused(db, "UNIQUE"):
        credit_again()

    assert balance_of(db, alice.main.id) == 1000


@pytest.mark.parametrize("amount", [100, 10_000], ids=["completed", "failed"])
def test_a_settled_payment_cannot_go_back_to_pending(
    db: Database, alice: Customer, bob: Customer, amount: int
) -> None:
    payment = pay(db, alice.main, bob.main, amount)
    settle_payment(db, payment.id)
    before = snapshot(db)

    with refused(db, "settled payment"):
        db.connection().execute(
            "UPDATE payments SET status = 'pending', completed_at = NULL, failure_code = NULL,"
            " failure_detail = NULL WHERE id = ?",
            (payment.id,),
        )
    with refused(db, "settled payment"):
        db.connection().execute("UPDATE payments SET amount = 1 WHERE id = ?", (payment.id,))

    assert snapshot(db) == before


def test_a_payment_between_one_account_is_refused(db: Database, alice: Customer) -> None:
    with refused(db, "CHECK"):
        insert_payment_row(db.connection(), alice.main, alice.main)


def test_a_failed_payment_needs_a_failure_code(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with refused(db, "CHECK"):
        insert_payment_row(db.connection(), alice.main, bob.main, status="failed")


def test_foreign_keys_are_enforced(db: Database, alice: Customer, bob: Customer) -> None:
    conn = db.connection()
    before = snapshot(db)

    with refused(db, "FOREIGN KEY"):
        conn.execute(
            "INSERT INTO accounts (id, user_id, currency, created_at, updated_at)"
            " VALUES ('acc_orphan', 'usr_nobody', 'USD', 'now', 'now')"
        )
    with refused(db, "FOREIGN KEY"):
        insert_deposit_row(conn, "acc_nothing", 10)
    with refused(db, "FOREIGN KEY"):
        insert_entry_row(conn, "acc_nothing", "credit", 10, 10, deposit_id="dep_nothing")
    with refused(db, "FOREIGN KEY"):
        conn.execute("DELETE FROM users WHERE id = ?", (alice.user.id,))
    with refused(db, "FOREIGN KEY"):
        conn.execute("DELETE FROM accounts WHERE id = ?", (bob.savings.id,))

    assert snapshot(db) == before


def test_a_duplicate_transfer_key_on_one_sender_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    insert_payment_row(db.connection(), alice.main, bob.main, key="k")

    with refused(db, "UNIQUE"):
        insert_payment_row(db.connection(), alice.main, bob.savings, key="k", amount=20)

    insert_payment_row(db.connection(), alice.savings, bob.main, key="k")


def test_a_duplicate_deposit_key_on_one_account_is_refused(db: Database, alice: Customer) -> None:
    conn = db.connection()
    sql = (
        "INSERT INTO deposits (id, account_id, amount, idempotency_key, request_hash, created_at)"
        " VALUES (?, ?, 5, 'k', 'h', 'now')"
    )
    conn.execute(sql, ("dep_one", alice.main.id))

    with refused(db, "UNIQUE"):
        conn.execute(sql, ("dep_two", alice.main.id))

    conn.execute(sql, ("dep_three", alice.savings.id))
