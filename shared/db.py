"""SQLite access: one connection per thread, explicit transactions, migrations."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from shared.schema import MIGRATIONS
from shared.settings import Settings

T = TypeVar("T")


class Database:
    """A SQLite file in WAL mode, opened lazily once per thread that uses it."""

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000):
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []
        self._writer = _WriterLock(f"{path}.writer-lock")

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.sqlite_path,
            synchronous=settings.sqlite_synchronous,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )

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

    def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(conn, *args, **kwargs)`` in a write transaction of its own."""
        with self.write() as conn:
            return fn(conn, *args, **kwargs)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one snapshot."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def migrate(self) -> int:
        """Apply the migrations this file has not seen; returns the schema version."""
        with self.write() as conn:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            return len(MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
        self._local = threading.local()
        self._writer.close()


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
