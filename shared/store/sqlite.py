"""SQLite behind the store's ``Database``: a file in WAL mode, one connection per thread,
one writer at a time (``BEGIN IMMEDIATE``, behind a file lock all our processes share).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from shared.schema import SQLITE_MIGRATIONS
from shared.store.base import (
    LOCKED_ACCOUNT_COLUMNS,
    Connection,
    Database,
    Engine,
    LockedReads,
    Params,
    Row,
    marks,
)

P = ParamSpec("P")
T = TypeVar("T")


class SQLiteEngine(Engine):
    """A write transaction (``BEGIN IMMEDIATE``) holds the whole database: no row needs
    a lock of its own, and no two writers can get in each other's way."""

    name = "sqlite"
    migrations = SQLITE_MIGRATIONS
    integrity_error = (sqlite3.IntegrityError,)
    infrastructure_error = (sqlite3.OperationalError,)
    conflict_error = ()
    # One writer at a time, holding the whole database: no row lock to wait for, and
    # concurrent writes go faster in one transaction, one fsync.
    writes_share_transactions = True

    def select_for_update(self, select: str) -> str:
        return select

    def select_to_claim(self, select: str) -> str:
        return select

    def locked_reads(self, ids: Collection[str], lock: Collection[str]) -> LockedReads:
        return [({*ids, *lock}, False)]

    def lock_accounts(self, conn: Connection, account_ids: Collection[str]) -> list[Row]:
        ids = list(account_ids)
        return conn.execute(
            f"SELECT {LOCKED_ACCOUNT_COLUMNS} FROM accounts WHERE id IN ({marks(len(ids))})",
            ids,
        ).fetchall()

    def order_commits(self, conn: Connection) -> None:
        """Nothing to do: one writer at a time already commits in the order it writes."""

    def broken_foreign_keys(self, conn: Connection) -> list[tuple[str, str]]:
        # Enforced only on connections that turn it on: a file may have been written
        # by one that did not.
        return [
            (subject, detail)
            for subject, detail in conn.execute(
                "SELECT \"table\" || ' row ' || rowid, 'references missing ' || parent"
                " FROM pragma_foreign_key_check"
            )
        ]


SQLITE = SQLiteEngine()


class SQLiteConnection(sqlite3.Connection):
    """A ``sqlite3.Connection`` that says which engine it is, for the store's SQL."""

    engine: Engine = SQLITE


class SQLiteDatabase(Database):
    """A SQLite file in WAL mode, opened lazily once per thread that uses it."""

    engine = SQLITE

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000):
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []
        self._writer = _WriterLock(f"{path}.writer-lock")

    def connection(self) -> SQLiteConnection:
        """This thread's connection, in autocommit mode: transactions are explicit."""
        conn: SQLiteConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, factory=SQLiteConnection
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            self._use_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL (the mode is stored in the file: once is enough).

        The switch takes the file's exclusive lock. Two connections switching at once
        would each hold the shared lock the other must see go, and SQLite fails one of
        them at once with "database is locked", whatever the busy timeout: that is what
        an API and a worker starting together on a new file did. So the switch is made
        under the writer lock, one process after the other; the next one finds WAL.
        """
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        with self._writer:
            conn.execute("PRAGMA journal_mode = WAL")

    @contextmanager
    def write(self) -> Iterator[SQLiteConnection]:
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
    def read(self) -> Iterator[SQLiteConnection]:
        """A read transaction: every query inside sees one snapshot."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    async def read_from_event_loop(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Right here: a read of a local file in WAL mode never waits for a writer, and
        costs less than handing it to a thread."""
        return fn(*args, **kwargs)

    async def fetch(self, sql: str, parameters: Params = (), /) -> Sequence[Row]:
        """Right here, as ``read_from_event_loop``."""
        rows: Sequence[Row] = self.connection().execute(sql, parameters).fetchall()
        return rows

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
