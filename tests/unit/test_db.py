from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.schema import SQLITE_MIGRATIONS as MIGRATIONS
from shared.settings import Settings
from shared.store import Database
from shared.store.opening import open_store
from shared.store.sqlite import SQLiteDatabase
from shared.users import sign_up
from tests.unit.helpers import count_rows

# SQLite's own: PRAGMAs, sqlite_master, per-thread connections (tests/unit/test_migrations.py
# covers migrating on both backends).
pytestmark = pytest.mark.sqlite_only


def _schema(db: Database) -> list[tuple[str, str, str]]:
    rows = (
        db.connection()
        .execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .fetchall()
    )
    return [(row["type"], row["name"], row["sql"]) for row in rows]


def _pragma(db: Database, name: str) -> object:
    value: object = db.connection().execute(f"PRAGMA {name}").fetchone()[0]
    return value


@pytest.fixture
def blank(tmp_path: Path) -> Iterator[Database]:
    """A database file nobody has migrated yet."""
    database = SQLiteDatabase(str(tmp_path / "blank.db"))
    yield database
    database.close()


def test_migrate_brings_a_new_file_to_the_latest_version(blank: Database) -> None:
    assert _pragma(blank, "user_version") == 0

    assert blank.migrate() == len(MIGRATIONS)

    assert _pragma(blank, "user_version") == len(MIGRATIONS)
    tables = {name for kind, name, _ in _schema(blank) if kind == "table"}
    assert {"users", "api_keys", "accounts", "deposits", "payments", "ledger_entries"} <= tables


def test_migrate_twice_changes_nothing(db: Database) -> None:
    db.run(sign_up, "Ada", "ada@example.com")
    schema = _schema(db)

    assert db.migrate() == len(MIGRATIONS)

    assert _schema(db) == schema
    assert _pragma(db, "user_version") == len(MIGRATIONS)
    assert count_rows(db, "users") == 1


def test_connections_use_wal_full_sync_and_foreign_keys(db: Database) -> None:
    assert _pragma(db, "journal_mode") == "wal"
    assert _pragma(db, "synchronous") == 2
    assert _pragma(db, "foreign_keys") == 1
    assert _pragma(db, "busy_timeout") == 5000


def test_open_store_opens_the_configured_file_and_sync_mode(tmp_path: Path) -> None:
    path = tmp_path / "configured.db"
    settings = Settings(
        database_url=f"sqlite:///{path}", sqlite_synchronous="NORMAL", sqlite_busy_timeout_ms=250
    )
    database = open_store(settings)
    try:
        database.migrate()
        assert database.path == str(path)
        assert path.exists()
        assert _pragma(database, "synchronous") == 1
        assert _pragma(database, "busy_timeout") == 250
    finally:
        database.close()


def test_a_write_that_raises_is_rolled_back(db: Database) -> None:
    def insert_then_fail() -> None:
        with db.write() as conn:
            conn.execute(
                "INSERT INTO users (id, name, email, email_key, created_at)"
                " VALUES ('usr_x', 'X', 'x@example.com', 'x@example.com', 'now')"
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()

    assert count_rows(db, "users") == 0
    conn = db.connection()
    assert isinstance(conn, sqlite3.Connection)
    assert not conn.in_transaction


def test_close_closes_every_connection_and_a_new_one_opens_on_use(db: Database) -> None:
    first = db.connection()

    db.close()

    with pytest.raises(sqlite3.ProgrammingError):
        first.execute("SELECT 1")
    second = db.connection()
    assert second is not first
    assert count_rows(db, "users") == 0
