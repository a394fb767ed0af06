"""The store's interface: a ``Database`` opens ``Connection``s for transactions, and its
``Engine`` says what the store's SQL must do differently on it; everything else is
written once, for both SQLite (``shared.store.sqlite``) and PostgreSQL
(``shared.store.postgres``).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")

Params = Sequence[Any] | Mapping[str, Any]
"""Bound values: a sequence for ``?`` placeholders, a mapping for ``:name`` ones."""

ROWS_PER_STATEMENT = 500
"""Rows one multi-row statement writes at most: well within either engine's limit on
bound values (15 a payment)."""

LOCKED_ACCOUNT_COLUMNS = "id, balance, held, status"
"""What ``Engine.lock_accounts`` reads of each account: what settling decides on."""

CONFLICT_ATTEMPTS = 3
"""Tries of a write that another transaction got in the way of (SQLite has no such)."""


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

    @property
    def engine(self) -> Engine:
        """What the SQL run on this connection must do differently."""

    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> object:
        """The statement once for each set of values, in order, without reading rows."""


LockedReads = Sequence[tuple[Collection[str], bool]]
"""Rows to read by id, one read after the other: (their ids, whether to lock them)."""


class Engine(ABC):
    """What SQLite and PostgreSQL do differently, as the store's code asks for it."""

    name: str
    migrations: tuple[str, ...]
    """The schema, one script per version, in this engine's SQL."""
    integrity_error: tuple[type[Exception], ...]
    """A constraint or a trigger refused the statement."""
    infrastructure_error: tuple[type[Exception], ...]
    """Locked, busy, disk, connection: the transaction rolled back, try it all again later."""
    conflict_error: tuple[type[Exception], ...]
    """Another transaction got in the way (deadlock, serialization): retry at once."""
    writes_share_transactions: bool
    """Whether any of the API's concurrent writes may share one transaction (group
    commit, ``shared.committer``). If not, a transaction carries one write, or one run of
    batched writes: a single call of their function, which takes every row lock it needs
    in one statement, in id order, before ``order_commits``. Such a transaction waits for
    a lock only while it holds none, or holds locks that are all before the one it waits
    for in the order every writer takes them (rows, then the commit order): it can never
    close a cycle of waits. Two writes of different kinds in one transaction could: the
    first's ``order_commits`` is held while the second waits for a row that a settling
    worker holds as it waits for ``order_commits``."""

    @abstractmethod
    def select_for_update(self, select: str) -> str:
        """``select``, made to lock the rows it reads until the transaction ends: rows
        the transaction reads in order to change them."""

    @abstractmethod
    def select_to_claim(self, select: str) -> str:
        """``select`` of pending payments, made to claim them for this transaction:
        locked, and passed over by other transactions claiming theirs."""

    @abstractmethod
    def locked_reads(self, ids: Collection[str], lock: Collection[str]) -> LockedReads:
        """How to read the rows of ``ids`` of which those in ``lock`` must stay locked
        until the transaction ends: the reads to run, in order."""

    @abstractmethod
    def lock_accounts(self, conn: Connection, account_ids: Collection[str]) -> list[Row]:
        """These accounts' rows (``LOCKED_ACCOUNT_COLUMNS``), locked until the
        transaction ends, always in one order, so that two settling transactions can
        never wait for each other."""

    @abstractmethod
    def broken_foreign_keys(self, conn: Connection) -> list[tuple[str, str]]:
        """Rows whose foreign key names a missing row, as (row, what is missing)."""

    @abstractmethod
    def order_commits(self, conn: Connection) -> None:
        """From here to its end, this transaction commits in the order of ``seq``s drawn
        after this call: another transaction that calls it waits until this one has
        committed (or rolled back) and is visible to every new snapshot. What a reader
        follows by ``seq`` (the events) is then never overtaken by a late commit.
        Called as a transaction's last writes: whoever calls it next waits for the
        commit."""


class Database(ABC):
    """Where the store lives. ``path`` names it in logs: the SQLite file, or the
    PostgreSQL URL without its password."""

    engine: Engine
    path: str

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

    def run(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(conn, *args, **kwargs)`` in a write transaction of its own; run again at
        once if another transaction got in its way (a deadlock PostgreSQL broke)."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                with self.write() as conn:
                    return fn(conn, *args, **kwargs)
            except self.engine.conflict_error:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    @abstractmethod
    async def fetch(self, sql: str, parameters: Params = (), /) -> Sequence[Row]:
        """The rows of one short statement, run in autocommit mode from an event loop
        without blocking it, inside ``event_loop_reads()``."""

    def event_loop_reads(self) -> AbstractAsyncContextManager[None]:
        """What ``fetch`` needs on the running event loop, open for the block (the
        app's lifespan): nothing, unless the engine says otherwise."""
        return nullcontext()

    async def read_from_event_loop(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(*args, **kwargs)``, a short read of this database, for an event loop: on
        a worker thread, so that the loop goes on while it waits for the server."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    def schema_version(self) -> int:
        """The number of migrations applied to this database (0: none, a blank one)."""
        with self.write() as conn:
            return self._schema_version(conn)

    def migrate(self, target: int | None = None) -> int:
        """Apply, in one transaction, the migrations this database has not seen, up to
        ``target`` (default: all of them); returns the schema version now."""
        migrations = self.engine.migrations
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
