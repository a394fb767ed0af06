"""What the store's SQL needs of a connection, and the few things SQLite and PostgreSQL
do differently: everything else is written once.

The store runs on ``Connection``: ``sqlite3.Connection`` is one as it is, and
``shared.postgres`` wraps a psycopg connection into one. A ``Dialect`` holds the
differences: how rows are locked for a write, the errors that mean "retry the whole
transaction", and the schema's migrations for that engine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from shared.schema import SQLITE_MIGRATIONS

LOCKED_ACCOUNT_COLUMNS = "id, balance, status"
"""What ``Dialect.lock_accounts`` reads of each account: what settling decides on."""

Params = Sequence[Any] | Mapping[str, Any]
"""Bound values: a sequence for ``?`` placeholders, a mapping for ``:name`` ones."""


ROWS_PER_STATEMENT = 500
"""Rows one multi-row statement writes at most: well within either engine's limit on
bound values (11 a payment)."""

T = TypeVar("T")


def marks(count: int) -> str:
    """``?, ?, ?``: the placeholders of ``count`` values, for ``IN (…)`` and ``VALUES (…)``."""
    return ", ".join("?" * count)


def rows(count: int, width: int) -> str:
    """``(?, ?), (?, ?)``: placeholders for ``count`` rows of ``width`` values."""
    return ", ".join([f"({marks(width)})"] * count)


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in runs of at most ``ROWS_PER_STATEMENT``, in order."""
    for start in range(0, len(items), ROWS_PER_STATEMENT):
        yield items[start : start + ROWS_PER_STATEMENT]


class Row(Protocol):
    """A result row, read by column name or by index (``sqlite3.Row`` is one)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __len__(self) -> int: ...


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The store's SQL runs on this: ``?`` and ``:name`` placeholders, in autocommit mode
    unless inside ``Database.write()`` or ``Database.read()``."""

    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> object:
        """The statement once for each set of values, in order, without reading rows."""


class Dialect:
    """SQLite's ways; ``shared.postgres.PostgresDialect`` overrides what differs."""

    name = "sqlite"
    migrations: tuple[str, ...] = SQLITE_MIGRATIONS
    for_update = ""
    """Appended to a SELECT of rows the transaction will change. SQLite needs nothing:
    ``BEGIN IMMEDIATE`` already holds the one write lock."""
    claim = ""
    """Appended to the SELECT that claims pending payments for settling."""
    integrity_error: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
    """A constraint or a trigger refused the statement."""
    infrastructure_error: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
    """Locked, busy, disk, connection: the transaction rolled back, try it all again later."""
    conflict_error: tuple[type[Exception], ...] = ()
    """Another transaction got in the way (deadlock, serialization): retry at once."""
    shares_write_transactions = True
    """Whether the API's group commit puts concurrent writes in one transaction."""
    local_reads = True
    """Whether a point read is a local file read that never waits (WAL readers do not
    wait for the writer): cheap enough for the API's event loop, no thread hop needed."""

    def lock_accounts(self, conn: Connection, account_ids: Collection[str]) -> list[Row]:
        """These accounts' rows (``id``, ``balance``, ``status``), locked
        until the transaction ends, always in one order, so that two settling
        transactions can never wait for each other. (SQLite's ``BEGIN IMMEDIATE``
        already holds every row.)"""
        ids = list(account_ids)
        return conn.execute(
            f"SELECT {LOCKED_ACCOUNT_COLUMNS} FROM accounts WHERE id IN ({marks(len(ids))})",
            ids,
        ).fetchall()


SQLITE = Dialect()


def dialect_of(conn: Connection) -> Dialect:
    """The dialect of a connection the store was handed (a raw sqlite3 one has none)."""
    dialect: Dialect = getattr(conn, "dialect", SQLITE)
    return dialect
