"""Small typed builders the unit tests share: customers, deposits, transfers, raw reads."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from shared import accounts
from shared.clock import new_id, to_text, utcnow
from shared.payments import Transfer, submit_transfer
from shared.records import Account, Deposit, Payment, User
from shared.schema import SQLITE_MIGRATIONS
from shared.store import Connection, Database, Row
from shared.store.postgres import PostgresDatabase
from shared.store.sqlite import SQLiteDatabase
from shared.users import sign_up

_serial = itertools.count(1)

# What each engine says when a constraint refuses a row ("CHECK constraint failed",
# "violates check constraint …").
_REFUSALS = {
    "CHECK": "(?i)check constraint",
    "UNIQUE": "(?i)unique constraint",
    "FOREIGN KEY": "(?i)foreign key constraint",
    "NOT NULL": "(?i)not[ -]null constraint",
}


def refused(db: Database, what: str) -> pytest.RaisesExc[Exception]:
    """Expect the database to refuse a statement: a constraint (``CHECK``, ``UNIQUE``,
    ``FOREIGN KEY``, ``NOT NULL``) or a trigger's message."""
    return pytest.raises(db.engine.integrity_error, match=_REFUSALS.get(what, what))


@dataclass(frozen=True, slots=True)
class Customer:
    """A signed-up user with two USD accounts, ``main`` and ``savings``."""

    user: User
    api_key: str
    main: Account
    savings: Account


def new_key() -> str:
    """An Idempotency-Key nobody has used yet."""
    return f"key-{next(_serial)}"


def new_customer(db: Database, name: str, *, main: int = 1000, savings: int = 500) -> Customer:
    """Sign ``name`` up and open two USD accounts funded with ``main`` and ``savings``."""
    user, api_key = db.run(sign_up, name, f"{name.lower()}@example.com")
    first = db.run(accounts.open_account, user.id, "USD")
    second = db.run(accounts.open_account, user.id, "USD")
    for account, amount in ((first, main), (second, savings)):
        if amount:
            fund(db, account, amount)
    return Customer(user, api_key, first, second)


def fund(db: Database, account: Account, amount: int) -> Deposit:
    deposit, replayed = db.run(
        accounts.deposit,
        account.user_id,
        account.id,
        amount=amount,
        description=None,
        idempotency_key=new_key(),
    )
    assert not replayed
    return deposit


def pay(db: Database, sender: Account, receiver: Account, amount: int) -> Payment:
    """Submit a transfer in the sender's currency under a fresh key."""
    payment, replayed = db.run(
        submit_transfer,
        sender.user_id,
        Transfer(sender.id, receiver.id, amount, sender.currency),
        new_key(),
    )
    assert not replayed
    return payment


def reopened(db: Database) -> Database:
    """Another ``Database`` on the same store: its own connections, its own pool."""
    if isinstance(db, SQLiteDatabase):
        return SQLiteDatabase(db.path)
    assert isinstance(db, PostgresDatabase)
    return PostgresDatabase(db.url, pool_size=2)


def balance_of(db: Database, account_id: str) -> int:
    row = db.connection().execute("SELECT balance FROM accounts WHERE id = ?", (account_id,))
    balance: int = row.fetchone()[0]
    return balance


def count_rows(db: Database, table: str) -> int:
    """Rows in ``table`` (a constant name from the schema, never user input)."""
    number: int = db.connection().execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return number


def ledger_rows(db: Database, account_id: str) -> list[Row]:
    """The account's ledger entries, oldest first."""
    return (
        db.connection()
        .execute("SELECT * FROM ledger_entries WHERE account_id = ? ORDER BY seq", (account_id,))
        .fetchall()
    )


def entries_of_payment(db: Database, payment_id: str) -> list[Row]:
    return (
        db.connection()
        .execute("SELECT * FROM ledger_entries WHERE payment_id = ? ORDER BY seq", (payment_id,))
        .fetchall()
    )


def snapshot(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every money table, to show that nothing changed."""
    tables = ("accounts", "deposits", "payments", "ledger_entries")
    conn = db.connection()
    return {
        table: [tuple(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY seq")]
        for table in tables
    }


def insert_payment_row(
    conn: Connection,
    sender: Account,
    receiver: Account,
    *,
    amount: object = 10,
    key: str | None = None,
    status: str = "pending",
    failure_code: str | None = None,
) -> str:
    """A payment written with raw SQL, behind the engine's back; returns its id."""
    payment_id = new_id("pay")
    now = to_text(utcnow())
    conn.execute(
        "INSERT INTO payments (id, from_account_id, to_account_id, from_user_id, to_user_id,"
        " amount, currency, status, failure_code, idempotency_key, request_hash, created_at,"
        " completed_at) VALUES (?, ?, ?, ?, ?, ?, 'USD', ?, ?, ?, 'raw', ?, ?)",
        (
            payment_id,
            sender.id,
            receiver.id,
            sender.user_id,
            receiver.user_id,
            amount,
            status,
            failure_code,
            key or new_key(),
            now,
            None if status == "pending" else now,
        ),
    )
    return payment_id


def insert_entry_row(
    conn: Connection,
    account_id: str,
    direction: str,
    amount: object,
    balance_after: object,
    *,
    payment_id: str | None = None,
    deposit_id: str | None = None,
) -> None:
    """A ledger entry written with raw SQL, behind the engine's back."""
    conn.execute(
        "INSERT INTO ledger_entries (id, account_id, direction, amount, balance_after,"
        " payment_id, deposit_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id("led"),
            account_id,
            direction,
            amount,
            balance_after,
            payment_id,
            deposit_id,
            to_text(utcnow()),
        ),
    )


def insert_deposit_row(conn: Connection, account_id: str, amount: object) -> str:
    """A deposit written with raw SQL (no ledger entry, no balance change); returns its id."""
    deposit_id = new_id("dep")
    conn.execute(
        "INSERT INTO deposits (id, account_id, amount, idempotency_key, request_hash,"
        " created_at) VALUES (?, ?, ?, ?, 'raw', ?)",
        (deposit_id, account_id, amount, new_key(), to_text(utcnow())),
    )
    return deposit_id


_PAIRING_TRIGGERS = re.findall(r"CREATE TRIGGER (\w+)", SQLITE_MIGRATIONS[3])
"""SQLite's triggers of migration 4: a completed payment has exactly its pair."""


@contextmanager
def unguarded_write(db: Database) -> Iterator[Connection]:
    """A write transaction in which the pairing of a payment's entries (migration 4) is
    not enforced: to plant what only a database older than it, or corrupted outside the
    product, can hold, for the audit to find. SQLite drops those triggers and makes them
    again before the commit; PostgreSQL fires no trigger in it (``replica``)."""
    with db.write() as conn:
        if db.engine.name != "sqlite":
            conn.execute("SET LOCAL session_replication_role = replica")
            yield conn
            return
        made = [
            conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)
            ).fetchone()[0]
            for name in _PAIRING_TRIGGERS
        ]
        for name in _PAIRING_TRIGGERS:
            conn.execute(f"DROP TRIGGER {name}")
        yield conn
        for sql in made:
            conn.execute(sql)
