"""Versioned migrations on both backends: a database made by the first schema version is
upgraded in place by ``p2p migrate``, its data untouched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import shared.accounts
import shared.engine
import shared.payments
from cli.main import main
from shared import accounts
from shared.audit import verify
from shared.engine import settle_pending
from shared.records import Account, PaymentStatus
from shared.store import Database
from shared.store.postgres import POSTGRES
from shared.store.sqlite import SQLITE
from shared.users import authenticate, list_api_keys
from tests.backends import open_database
from tests.unit.helpers import (
    balance_of,
    count_rows,
    fund,
    insert_deposit_row,
    insert_entry_row,
    new_customer,
    pay,
    snapshot,
)


@pytest.fixture
def blank(blank_database_url: str) -> Iterator[Database]:
    database = open_database(blank_database_url)
    yield database
    database.close()


@contextmanager
def _as_before_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Today's code as it wrote before the events table (migration 5): no events."""
    with monkeypatch.context() as patched:
        for module in (shared.accounts, shared.engine, shared.payments):
            patched.setattr(module, "record_events", lambda conn, events: [])
        yield


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

    assert len(SQLITE.migrations) == len(POSTGRES.migrations) == 7


def _deposit_as_version_1(db: Database, account: Account, amount: int) -> None:
    """Money in as version 1's code wrote it: the balance first, then the entry that
    continues the ledger and matches it (today's code needs migration 3)."""
    with db.write() as conn:
        conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, account.id))
        deposit_id = insert_deposit_row(conn, account.id, amount)
        balance = conn.execute(
            "SELECT balance FROM accounts WHERE id = ?", (account.id,)
        ).fetchone()[0]
        insert_entry_row(conn, account.id, "credit", amount, balance, deposit_id=deposit_id)


def test_p2p_migrate_upgrades_a_first_version_database_in_place(
    blank: Database,
    blank_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert blank.migrate(target=1) == 1
    assert "api_keys_user" in _indexes(blank)
    alice = new_customer(blank, "Alice", main=0, savings=0)
    bob = new_customer(blank, "Bob", main=0, savings=0)
    for account, amount in ((alice.main, 1000), (bob.main, 400), (bob.main, 100)):
        _deposit_as_version_1(blank, account, amount)
    with _as_before_events(monkeypatch):
        pending = pay(blank, bob.main, alice.savings, 200)
    before = snapshot(blank)

    out = _p2p_migrate(monkeypatch, capsys, blank_database_url)

    assert "schema version 1 -> 7" in out
    assert blank.schema_version() == 7
    assert snapshot(blank) == before
    assert "api_keys_user" not in _indexes(blank)
    assert "api_keys_user_seq" in _indexes(blank)
    # The upgraded database works as a new one does, its ledgers continued.
    assert authenticate(blank, alice.api_key) == alice.user
    assert len(list_api_keys(blank, bob.user.id, limit=10, cursor=None).data) == 1
    [done] = settle_pending(blank, limit=10)
    assert (done.id, done.status) == (pending.id, PaymentStatus.COMPLETED)
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
    blank: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert blank.migrate(target=3) == 3
    with _as_before_events(monkeypatch):
        alice = new_customer(blank, "Alice")
        bob = new_customer(blank, "Bob")
        pay(blank, alice.main, bob.main, 300)
        pay(blank, alice.main, bob.main, 5000)  # insufficient funds
        assert [p.status for p in settle_pending(blank, limit=10)] == [
            PaymentStatus.COMPLETED,
            PaymentStatus.FAILED,
        ]
    before = snapshot(blank)

    assert blank.migrate(target=4) == 4

    assert snapshot(blank) == before
    blank.migrate()
    pending = pay(blank, bob.main, alice.savings, 200)
    [done] = settle_pending(blank, limit=10)
    assert (done.id, done.status) == (pending.id, PaymentStatus.COMPLETED)
    assert verify(blank) == []
