"""PostgreSQL behind the store's ``Database``: a psycopg connection pool, the store's
placeholders translated once per SQL string into PostgreSQL's own, rows read by name and
by index.

Transactions are READ COMMITTED with explicit row locks (``PostgresEngine``); reads
that need one snapshot run REPEATABLE READ, READ ONLY. Connections are in autocommit
mode outside them, as SQLite's are, and go back to the pool after each transaction or
each statement run through ``connection()``.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, ClassVar, cast, overload

import psycopg
import psycopg.errors
from psycopg.abc import Buffer
from psycopg.rows import RowMaker
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from shared.schema import POSTGRES_MIGRATIONS
from shared.store.base import (
    LOCKED_ACCOUNT_COLUMNS,
    Connection,
    Database,
    Engine,
    LockedReads,
    Params,
    Row,
)

POOL_WAIT_S = 10.0

# Migrations from several processes starting at once run one after the other.
_MIGRATION_LOCK = 0x7032_7030_6D69_6772  # "p2p0migr"
# Transactions that write events commit one after the other (``order_commits``).
_COMMIT_ORDER_LOCK = 0x7032_7030_6576_7473  # "p2p0evts"


class PostgresEngine(Engine):
    """Writes are READ COMMITTED: each locks the rows it reads to change, always in one
    order, so that any number of processes write at once without lost updates."""

    name = "postgresql"
    migrations = POSTGRES_MIGRATIONS
    integrity_error = (psycopg.IntegrityError,)
    infrastructure_error = (psycopg.OperationalError,)
    conflict_error = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
    # Writes of different kinds in one transaction would take their row locks one after
    # the other, in the order the requests came, some after another's ``order_commits``:
    # they could deadlock with another process's. A run of batched transfers locks all
    # its senders in one ordered statement first, and so shares one commit safely.
    writes_share_transactions = False

    def select_for_update(self, select: str) -> str:
        # NO KEY UPDATE: ids never change, and so the KEY SHARE lock a foreign-key check
        # takes (a payment inserted to this account) never waits for these.
        return f"{select} FOR NO KEY UPDATE"

    def select_to_claim(self, select: str) -> str:
        # Workers never wait for each other's payments: each takes the oldest nobody holds.
        return f"{select} FOR NO KEY UPDATE SKIP LOCKED"

    def locked_reads(self, ids: Collection[str], lock: Collection[str]) -> LockedReads:
        # The locked first: a transaction then holds its locks before it reads the rest.
        return [(set(lock), True), (set(ids) - set(lock), False)]

    def lock_accounts(self, conn: Connection, account_ids: Collection[str]) -> list[Row]:
        return conn.execute(
            f"SELECT {LOCKED_ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY(?)"
            " ORDER BY id FOR NO KEY UPDATE",
            (sorted(account_ids),),
        ).fetchall()

    def order_commits(self, conn: Connection) -> None:
        # A sequence value drawn before another transaction's can commit after it, and a
        # reader past the later one would never see it. Held to the transaction's end:
        # PostgreSQL releases a transaction's locks only once its commit is visible, so
        # the next holder draws its numbers after this one's are all there to read.
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_COMMIT_ORDER_LOCK,))

    def broken_foreign_keys(self, conn: Connection) -> list[tuple[str, str]]:
        """None: PostgreSQL enforces foreign keys on every connection."""
        return []


POSTGRES = PostgresEngine()


class PgRow(tuple[Any, ...]):
    """A row readable by index and by column name, like ``sqlite3.Row``."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}

    @overload  # type: ignore[override]
    def __getitem__(self, key: int | str, /) -> Any: ...
    @overload
    def __getitem__(self, key: slice, /) -> tuple[Any, ...]: ...
    def __getitem__(self, key: int | str | slice, /) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=512)
def row_class(names: tuple[str, ...]) -> type[PgRow]:
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name, position)  # the first of two equal names, as sqlite3.Row
    return type("PgRow", (PgRow,), {"__slots__": (), "_index": index})


def _pg_rows(cursor: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> RowMaker[PgRow]:
    names = tuple(column.name for column in cursor.description or ())
    return row_class(names)


class _TextDumper(StrDumperUnknown):
    """PostgreSQL text cannot hold NUL, which SQLite's can: NUL is stored as U+FFFD, so
    that an id with one in it is simply not found (404) on both, never a server error."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


class _BinaryTextDumper(StrBinaryDumper):
    __doc__ = _TextDumper.__doc__

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd"))


def _configure(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_dumper(str, _TextDumper)
    conn.adapters.register_dumper(str, _BinaryTextDumper)


async def _configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    _configure(conn)


_TOKEN = re.compile(r"'(?:[^']|'')*'|\?|(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class Statement:
    """Store SQL as PostgreSQL takes it: ``$1``, ``$2``… placeholders, and the names of
    ``:name`` ones in the order of their numbers (none for ``?``)."""

    sql: str
    names: tuple[str, ...]

    def values(self, parameters: Params) -> Sequence[Any]:
        """The bound values in placeholder order."""
        if isinstance(parameters, Mapping):
            return tuple(parameters[name] for name in self.names)
        return parameters


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> Statement:
    """The store's ``?`` and ``:name`` placeholders as PostgreSQL's own ``$n``, sent as
    they are by psycopg's raw cursors. With psycopg's ``%s`` the client parses the query
    again at every execute of a statement of more than 50 values (it caches only short
    ones), and a settled group's multi-row statements carry thousands. Cached here: the
    store's SQL strings are few."""
    names: list[str] = []
    count = 0

    def token(match: re.Match[str]) -> str:
        nonlocal count
        text = match[0]
        if text.startswith("'"):
            return text
        if text == "?":
            count += 1
            return f"${count}"
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    translated = _TOKEN.sub(token, sql)
    if count and names:
        raise ValueError(f"both ? and :name placeholders in {sql!r}")
    return Statement(translated, tuple(names))


class PostgresConnection:
    """One pooled connection, for the length of a transaction."""

    engine: Engine = POSTGRES

    def __init__(self, raw: psycopg.Connection[PgRow]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Params = (), /) -> psycopg.Cursor[PgRow]:
        statement = translate(sql)
        return self.raw.execute(statement.sql, statement.values(parameters))

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> None:
        # psycopg sends the whole batch in one pipeline: one round trip, not one each
        # (and one for none at all, which settling would pay for each empty kind).
        statement = translate(sql)
        values = [statement.values(one) for one in parameters]
        if values:
            self.raw.cursor().executemany(statement.sql, values)


class _Rows:
    """A statement's rows, fetched in full before its connection went back to the pool."""

    def __init__(self, rows: list[PgRow]) -> None:
        self._rows = iter(rows)

    def fetchone(self) -> PgRow | None:
        return next(self._rows, None)

    def fetchall(self) -> list[PgRow]:
        return list(self._rows)

    def __iter__(self) -> Iterator[PgRow]:
        return self._rows


class _Autocommit:
    """``Database.connection()``: each statement on whichever pooled connection is free."""

    engine: Engine = POSTGRES

    def __init__(self, pool: ConnectionPool[psycopg.Connection[PgRow]]) -> None:
        self._pool = pool

    def execute(self, sql: str, parameters: Params = (), /) -> _Rows:
        statement = translate(sql)
        with self._pool.connection() as raw:
            cursor = raw.execute(statement.sql, statement.values(parameters))
            return _Rows(cursor.fetchall() if cursor.description is not None else [])

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> None:
        statement = translate(sql)
        values = [statement.values(one) for one in parameters]
        if not values:
            return
        with self._pool.connection() as raw:
            raw.cursor().executemany(statement.sql, values)


class PostgresDatabase(Database):
    """A PostgreSQL database, through a pool of at most ``pool_size`` connections, and
    one of at most ``event_loop_pool_size`` on each event loop that reads through
    ``fetch`` (``event_loop_reads``)."""

    engine = POSTGRES

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        event_loop_pool_size: int = 4,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.path = shown_url(url)
        self._event_loop_pool_size = event_loop_pool_size
        self._connect_timeout_s = connect_timeout_s
        # An asyncio pool belongs to the loop it was opened on; each app serving this
        # database (tests run several at once, each on its own loop) opens its own.
        self._loop_pools: dict[
            asyncio.AbstractEventLoop, AsyncConnectionPool[psycopg.AsyncConnection[PgRow]]
        ] = {}
        self._pool: ConnectionPool[psycopg.Connection[PgRow]] = ConnectionPool(
            url,
            connection_class=cast(type[psycopg.Connection[PgRow]], psycopg.Connection),
            kwargs={
                "autocommit": True,
                "row_factory": _pg_rows,
                # $n placeholders, sent as they are (``translate``).
                "cursor_factory": psycopg.RawCursor,
            },
            configure=_configure,
            min_size=1,
            max_size=pool_size,
            # How long a statement waits for a free connection (or for a server that went
            # away to come back) before it fails: a readiness probe must answer in time.
            timeout=POOL_WAIT_S,
            name="p2p",
            open=False,
        )
        self._open(connect_timeout_s)
        self._autocommit = _Autocommit(self._pool)

    def connection(self) -> Connection:
        return self._autocommit

    def _open(self, timeout_s: float) -> None:
        """Fail at start, with the server's reason, when the database cannot be reached."""
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except PoolTimeout:
            self._pool.close()
            with psycopg.connect(self.url, connect_timeout=max(1, int(timeout_s))):
                pass  # raises psycopg.OperationalError, saying why
            raise

    @asynccontextmanager
    async def event_loop_reads(self) -> AsyncIterator[None]:
        """A pool of connections on the running loop for ``fetch``, opened and waited
        for as the synchronous pool is at start, closed at the end of the block."""
        loop = asyncio.get_running_loop()
        if loop in self._loop_pools:
            yield  # whoever opened it closes it
            return
        pool: AsyncConnectionPool[psycopg.AsyncConnection[PgRow]] = AsyncConnectionPool(
            self.url,
            connection_class=cast(type[psycopg.AsyncConnection[PgRow]], psycopg.AsyncConnection),
            kwargs={
                "autocommit": True,
                "row_factory": _pg_rows,
                "cursor_factory": psycopg.AsyncRawCursor,
            },
            configure=_configure_async,
            min_size=1,
            max_size=self._event_loop_pool_size,
            timeout=POOL_WAIT_S,
            name="p2p-event-loop",
            open=False,
        )
        await pool.open(wait=True, timeout=self._connect_timeout_s)
        self._loop_pools[loop] = pool
        try:
            yield
        finally:
            del self._loop_pools[loop]
            await pool.close()

    async def fetch(self, sql: str, parameters: Params = (), /) -> Sequence[Row]:
        """On a connection of this loop's pool, in autocommit mode: fetched in full, so
        no snapshot outlives the statement (a revoked key is refused at once)."""
        pool = self._loop_pools.get(asyncio.get_running_loop())
        if pool is None:
            raise RuntimeError("fetch outside event_loop_reads(): no pool on this loop")
        statement = translate(sql)
        async with pool.connection() as raw:
            cursor = await raw.execute(statement.sql, statement.values(parameters))
            return await cursor.fetchall()

    @contextmanager
    def write(self) -> Iterator[PostgresConnection]:
        """READ COMMITTED; the store locks the rows it will change
        (``Engine.select_for_update``)."""
        with self._transaction("BEGIN") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[PostgresConnection]:
        with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[PostgresConnection]:
        raw = self._pool.getconn()
        try:
            raw.execute(begin)
            try:
                yield PostgresConnection(raw)
            except BaseException:
                _rollback(raw)
                raise
            raw.execute("COMMIT")
        finally:
            self._pool.putconn(raw)

    def _prepare_migrations(self, conn: Connection) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")

    def _schema_version(self, conn: Connection) -> int:
        (table,) = conn.execute("SELECT to_regclass('schema_version')").fetchone()
        if table is None:
            return 0
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return 0 if row[0] is None else int(row[0])

    def _set_schema_version(self, conn: Connection, version: int) -> None:
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def _apply(self, conn: Connection, script: str) -> None:
        assert isinstance(conn, PostgresConnection)
        conn.raw.execute(script.encode())  # as it is: no placeholders, several statements


def _rollback(raw: psycopg.Connection[Any]) -> None:
    """Roll back, unless the connection is gone (the pool then drops it)."""
    with suppress(psycopg.Error):
        raw.execute("ROLLBACK")


def shown_url(url: str) -> str:
    """The URL as logs may show it."""
    scheme, _, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}@{location}"
