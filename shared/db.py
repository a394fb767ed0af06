"""The store's connections and transactions: one interface, SQLite or PostgreSQL behind it.

``Database.from_settings`` opens what ``P2P_DATABASE_URL`` names. Store code gets a
``Connection`` from ``write()`` (a write transaction), ``read()`` (one snapshot) or
``connection()`` (autocommit, one statement at a time) and writes its SQL once; what the
engines do differently is in ``shared.dialect``.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from shared.dialect import SQLITE, Connection, Dialect
from shared.settings import Settings

T = TypeVar("T")

CONFLICT_ATTEMPTS = 3
"""Tries of a write that another transaction got in the way of (SQLite has no such)."""


class Database(ABC):
    """Where the store lives. ``path`` names it in logs: the SQLite file, or the
    PostgreSQL URL without its password."""

    dialect: Dialect
    path: str

    @staticmethod
    def from_settings(settings: Settings) -> Database:
        if settings.postgres_url is not None:
            from shared.postgres import PostgresDatabase  # psycopg only when it is used

            return PostgresDatabase(settings.postgres_url, pool_size=settings.postgres_pool_size)
        return SQLiteDatabase(
            settings.sqlite_path,
            synchronous=settings.sqlite_synchronous,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )

    @abstractmethod
    def connection(self) -> Connection:
        """A connection in autocommit mode, for statements that need no transaction
        (on PostgreSQL each may run on another pooled connection)."""

    @abstractmethod
    def write(self) -> AbstractContextManager[Connection]:
        """A write transaction: committed at the end of the block, rolled back on error."""

    @abstractmethod
    def read(self) -> AbstractContextManager[Connection]:
        """A read transaction: every query inside sees one snapshot."""

    @abstractmethod
    def close(self) -> None: ...

    def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` in a write transaction of its own; run again at
        once if another transaction got in its way (a deadlock PostgreSQL broke)."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                with self.write() as conn:
                    return fn(conn, *args, **kwargs)
            except self.dialect.conflict_error:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def schema_version(self) -> int:
        """The number of migrations applied to this database (0: none, a blank one)."""
        with self.write() as conn:
            return self._schema_version(conn)

    def migrate(self, target: int | None = None) -> int:
        """Apply, in one transaction, the migrations this database has not seen, up to
        ``target`` (default: all of them); returns the schema version now."""
        migrations = self.dialect.migrations
        target = len(migrations) if target is None else target
        with self.write() as conn:
            self._prepare_migrations(conn)
            version = self._schema_version(conn)
            for number in range(version + 1, target + 1):
                self._apply(conn, migrations[number - 1])
                self._set_schema_version(conn, number)
            return max(version, target)

    @abstractmethod
    def _prepare_migrations(self, conn: Connection) -> None:
        """Make sure the version can be read, and that no other process migrates now."""

    @abstractmethod
    def _schema_version(self, conn: Connection) -> int: ...

    @abstractmethod
    def _set_schema_version(self, conn: Connection, version: int) -> None: ...

    @abstractmethod
    def _apply(self, conn: Connection, script: str) -> None: ...


class SQLiteDatabase(Database):
    """A SQLite file in WAL mode, opened lazily once per thread that uses it."""

    dialect = SQLITE

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000):
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []
        self._writer = _WriterLock(f"{path}.writer-lock")

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, in autocommit mode: transactions are explicit."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE``: take the write lock first, so what is read stays true."""
        conn = self.connection()
        with self._writer:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one snapshot."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
        self._local = threading.local()
        self._writer.close()

    def _prepare_migrations(self, conn: Connection) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` holds the one write lock already."""

    def _schema_version(self, conn: Connection) -> int:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        return version

    def _set_schema_version(self, conn: Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def _apply(self, conn: Connection, script: str) -> None:
        for statement in _statements(script):
            conn.execute(statement)


class _WriterLock:
    """Writers of every process queue here before SQLite's own lock.

    SQLite lets one writer in at a time; the others poll with growing sleeps (1, 2, 5 …
    100 ms), so under steady writes from two processes a waiter can starve. An advisory
    lock on a file beside the database blocks in the kernel instead and wakes a waiter
    the moment the writer is done. The busy timeout still guards any writer that does
    not take it.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._threads = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements; ``executescript`` would commit our transaction."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending.strip()
            pending = ""
    if pending.strip() and not pending.strip().startswith("--"):
        raise ValueError(f"incomplete SQL statement: {pending.strip()[:80]}")
