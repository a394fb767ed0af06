"""Versioned migrations on both backends: a database made by the first schema version is
upgraded in place by ``p2p migrate``, its data untouched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cli.main import main
from shared import accounts
from shared.accounts import get_account
from shared.audit import verify
from shared.clock import from_text, new_id, to_text, utcnow
from shared.engine import settle_pending
from shared.payments import get_payment
from shared.records import Account, AccountStatus, CaptureMode, FailureCode, PaymentStatus
from shared.store import Database
from shared.store.postgres import POSTGRES
from shared.store.sqlite import SQLITE
from shared.users import authenticate, list_api_keys, sign_up
from tests.backends import open_database
from tests.unit.helpers import (
    Customer,
    balance_of,
    count_rows,
    fund,
    insert_deposit_row,
    insert_entry_row,
    insert_payment_row,
    new_customer,
    pay,
    refused,
    snapshot,
)


@pytest.fixture
def blank(blank_database_url: str) -> Iterator[Database]:
    database = open_database(blank_database_url)
    yield database
    database.close()


def _indexes(db: Database) -> set[str]:
    """The names of the indexes on ``api_keys`` (the table migration 2 changes)."""
    if db.engine.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'api_keys'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE tablename = 'api_keys'"
    return {name for (name,) in db.connection().execute(sql)}


def _p2p_migrate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> str:
    monkeypatch.setenv("P2P_DATABASE_URL", url)
    assert main(["migrate"]) == 0
    out: str = capsys.readouterr().out
    return out


def test_migrate_brings_a_blank_database_to_the_latest_version(blank: Database) -> None:
    assert blank.schema_version() == 0

    assert blank.migrate() == len(blank.engine.migrations)

    assert blank.schema_version() == len(blank.engine.migrations)
    assert count_rows(blank, "ledger_entries") == 0


def test_both_backends_have_the_same_schema_versions() -> None:

    assert len(SQLITE.migrations) == len(POSTGRES.migrations) == 9


def _deposit_as_version_1(db: Database, account: Account, amount: int) -> None:
    """Money in as version 1's code wrote it: the balance first, then the entry that
    continues the ledger and matches it (today's code needs migration 3). Versions 3
    and 4 take it as well: their trigger writes the same balance again."""
    with db.write() as conn:
        conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, account.id))
        deposit_id = insert_deposit_row(conn, account.id, amount)
        balance = conn.execute(
            "SELECT balance FROM accounts WHERE id = ?", (account.id,)
        ).fetchone()[0]
        insert_entry_row(conn, account.id, "credit", amount, balance, deposit_id=deposit_id)


def _customer_as_version_1(db: Database, name: str) -> Customer:
    """A user with two USD accounts, written as versions 1 to 7 wrote them (today's
    code reads columns they do not have)."""
    user, api_key = db.run(sign_up, name, f"{name.lower()}@example.com")
    main, savings = (_account_as_version_1(db, user.id) for _ in range(2))
    return Customer(user, api_key, main, savings)


def _account_as_version_1(db: Database, user_id: str) -> Account:
    now = to_text(utcnow())
    account_id = new_id("acc")
    db.connection().execute(
        "INSERT INTO accounts (id, user_id, currency, created_at, updated_at)"
        " VALUES (?, ?, 'USD', ?, ?)",
        (account_id, user_id, now, now),
    )
    return Account(
        account_id, user_id, "USD", 0, 0, AccountStatus.ACTIVE, from_text(now), from_text(now)
    )


def _pay_as_version_1(db: Database, sender: Account, receiver: Account, amount: int) -> str:
    """A transfer accepted as versions 1 to 7 did: pending, its amount in ``pending_out``."""
    with db.write() as conn:
        payment_id = insert_payment_row(conn, sender, receiver, amount=amount)
        conn.execute(
            "UPDATE accounts SET pending_out = pending_out + ? WHERE id = ?", (amount, sender.id)
        )
    return payment_id


def _settle_as_version_4(
    db: Database, payment_id: str, sender: Account, receiver: Account, amount: int
) -> None:
    """Settled as version 4's engine did: the pair of entries (each moves its balance)
    and ``completed``, or ``failed`` for want of funds."""
    now = to_text(utcnow())
    with db.write() as conn:
        conn.execute(
            "UPDATE accounts SET pending_out = pending_out - ? WHERE id = ?", (amount, sender.id)
        )
        (balance,) = conn.execute(
            "SELECT balance FROM accounts WHERE id = ?", (sender.id,)
        ).fetchone()
        if balance < amount:
            conn.execute(
                "UPDATE payments SET status = 'failed', failure_code = 'insufficient_funds',"
                " completed_at = ? WHERE id = ?",
                (now, payment_id),
            )
            return
        insert_entry_row(conn, sender.id, "debit", amount, balance - amount, payment_id=payment_id)
        (received,) = conn.execute(
            "SELECT balance FROM accounts WHERE id = ?", (receiver.id,)
        ).fetchone()
        insert_entry_row(
            conn, receiver.id, "credit", amount, received + amount, payment_id=payment_id
        )
        conn.execute(
            "UPDATE payments SET status = 'completed', completed_at = ? WHERE id = ?",
            (now, payment_id),
        )


_COLUMNS_BEFORE_8 = {
    "accounts": "seq, id, user_id, currency, balance, pending_out, status, created_at, updated_at",
    "deposits": "*",
    "payments": "seq, id, from_account_id, to_account_id, from_user_id, to_user_id, amount,"
    " currency, description, status, failure_code, failure_detail, idempotency_key,"
    " request_hash, created_at, completed_at",
    "ledger_entries": "*",
}


def _snapshot_before_8(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every money table, in the columns versions 1 to 7 had."""
    conn = db.connection()
    return {
        table: [tuple(row) for row in conn.execute(f"SELECT {columns} FROM {table} ORDER BY seq")]
        for table, columns in _COLUMNS_BEFORE_8.items()
    }


def test_p2p_migrate_upgrades_a_first_version_database_in_place(
    blank: Database,
    blank_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert blank.migrate(target=1) == 1
    assert "api_keys_user" in _indexes(blank)
    alice = _customer_as_version_1(blank, "Alice")
    bob = _customer_as_version_1(blank, "Bob")
    for account, amount in ((alice.main, 1000), (bob.main, 400), (bob.main, 100)):
        _deposit_as_version_1(blank, account, amount)
    pending = _pay_as_version_1(blank, bob.main, alice.savings, 200)
    before = _snapshot_before_8(blank)

    out = _p2p_migrate(monkeypatch, capsys, blank_database_url)

    assert "schema version 1 -> 9" in out
    assert blank.schema_version() == 9
    assert _snapshot_before_8(blank) == before
    assert "api_keys_user" not in _indexes(blank)
    assert "api_keys_user_seq" in _indexes(blank)
    # The upgraded database works as a new one does, its ledgers continued.
    assert authenticate(blank, alice.api_key) == alice.user
    assert len(list_api_keys(blank, bob.user.id, limit=10, cursor=None).data) == 1
    [done] = settle_pending(blank, limit=10)
    assert (done.id, done.status) == (pending, PaymentStatus.COMPLETED)
    fund(blank, bob.main, 50)
    assert (balance_of(blank, bob.main.id), balance_of(blank, alice.savings.id)) == (350, 200)
    assert verify(blank) == []
    blank.run(accounts.open_account, alice.user.id, "EUR")


def test_p2p_migrate_on_the_latest_version_changes_nothing(
    db: Database,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_customer(db, "Alice")
    before = snapshot(db)

    out = _p2p_migrate(monkeypatch, capsys, database_url)

    assert f"at schema version {len(db.engine.migrations)} already" in out
    assert snapshot(db) == before


def test_a_database_with_settled_payments_takes_migration_4_and_keeps_settling(
    blank: Database,
) -> None:
    assert blank.migrate(target=3) == 3
    alice = _customer_as_version_1(blank, "Alice")
    bob = _customer_as_version_1(blank, "Bob")
    _deposit_as_version_1(blank, alice.main, 1000)
    for amount in (300, 5000):  # the second: insufficient funds
        payment_id = _pay_as_version_1(blank, alice.main, bob.main, amount)
        _settle_as_version_4(blank, payment_id, alice.main, bob.main, amount)
    before = _snapshot_before_8(blank)

    assert blank.migrate(target=4) == 4

    assert _snapshot_before_8(blank) == before
    assert blank.migrate() == 9
    pending = pay(blank, bob.main, alice.savings, 200)
    [done] = settle_pending(blank, limit=10)
    assert (done.id, done.status) == (pending.id, PaymentStatus.COMPLETED)
    assert verify(blank) == []


def test_a_version_7_database_with_data_takes_migration_8_and_keeps_every_rule(
    blank: Database,
) -> None:
    assert blank.migrate(target=7) == 7
    alice = _customer_as_version_1(blank, "Alice")
    bob = _customer_as_version_1(blank, "Bob")
    _deposit_as_version_1(blank, alice.main, 1000)
    settled = []
    for amount in (300, 5000, 200):  # the second: insufficient funds
        payment_id = _pay_as_version_1(blank, alice.main, bob.main, amount)
        _settle_as_version_4(blank, payment_id, alice.main, bob.main, amount)
        settled.append(payment_id)
    pending = _pay_as_version_1(blank, bob.main, alice.savings, 100)
    before = _snapshot_before_8(blank)

    assert blank.migrate() == 9

    assert _snapshot_before_8(blank) == before
    assert verify(blank) == []
    [completed, failed, _] = [get_payment(blank, alice.user.id, p) for p in settled]
    assert (completed.status, completed.capture, completed.captured_amount) == (
        PaymentStatus.COMPLETED,
        CaptureMode.AUTOMATIC,
        None,
    )
    assert (completed.refunded_amount, completed.refund_of, completed.batch_id) == (0, None, None)
    assert failed.failure_code is FailureCode.INSUFFICIENT_FUNDS
    assert get_account(blank, alice.user.id, alice.main.id).held == 0
    # The rules of versions 1 to 7 hold on the table made again.
    with refused(blank, "settled payment cannot change"):
        blank.connection().execute("UPDATE payments SET amount = 1 WHERE id = ?", (completed.id,))
    with refused(blank, "append-only"):
        blank.connection().execute(
            "DELETE FROM ledger_entries WHERE payment_id = ?", (completed.id,)
        )
    with refused(blank, "FOREIGN KEY"), blank.write() as conn:
        insert_entry_row(conn, alice.main.id, "debit", 1, 499, payment_id="pay_missing")
    with refused(blank, "UNIQUE"):
        insert_payment_row(
            blank.connection(), alice.main, bob.main, key=_key_of(blank, completed.id)
        )
    # And the database keeps settling.
    [done] = settle_pending(blank, limit=10)
    assert (done.id, done.status) == (pending, PaymentStatus.COMPLETED)
    assert (balance_of(blank, bob.main.id), balance_of(blank, alice.savings.id)) == (400, 100)
    assert verify(blank) == []


def _key_of(db: Database, payment_id: str) -> str:
    key: str = (
        db.connection()
        .execute("SELECT idempotency_key FROM payments WHERE id = ?", (payment_id,))
        .fetchone()[0]
    )
    return key


def test_a_version_8_database_with_data_takes_migration_9_and_keeps_moving_balances(
    blank: Database,
) -> None:
    assert blank.migrate(target=8) == 8
    alice, bob = new_customer(blank, "Alice"), new_customer(blank, "Bob")
    settle_pending(blank, limit=10)
    settled = pay(blank, alice.main, bob.main, 300)
    settle_pending(blank, limit=10)
    before = snapshot(blank)

    assert blank.migrate() == 9

    assert snapshot(blank) == before
    for amount in (100, 50, 5000):  # the last: insufficient funds
        pay(blank, bob.main, alice.main, amount)
    [*_, failed] = settle_pending(blank, limit=10)
    assert failed.failure_code is FailureCode.INSUFFICIENT_FUNDS
    assert get_payment(blank, alice.user.id, settled.id).status is PaymentStatus.COMPLETED
    assert (balance_of(blank, alice.main.id), balance_of(blank, bob.main.id)) == (850, 1150)
    assert verify(blank) == []
