"""``p2p copy``: move a whole ledger from a SQLite file into an empty PostgreSQL database.

The tables, their columns and the order that keeps every foreign key satisfied are read
from the source database itself, so whatever a migration adds is copied too. The source
is read in one read transaction (one snapshot, however long the copy takes); the target
is written in one transaction: all of it, or nothing. Rows go in with ``COPY``, values as
they are (ids, amounts, times, ``seq``), with the tables' own triggers off for the copy:
the ledger's triggers would recompute what is copied (an entry writes its balance and
time onto its account), and the copy must be the source, exactly. Constraints and
foreign keys stay on; identity counters are moved past the copied rows; then ``p2p
verify``'s audit runs on the target.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg
from psycopg import sql

# The store, as this command uses it: open a database by URL, migrate it, audit it.
from shared.audit import verify
from shared.settings import Settings
from shared.store import Database
from shared.store.opening import open_store

PROGRESS_EVERY = 100_000
"""Rows between two progress lines of one table."""
LOCK_TIMEOUT = "10s"
# Bookkeeping of each engine's own, not the ledger's.
_TARGET_ONLY = frozenset({"schema_version"})


class CopyRefused(Exception):
    """The copy was not started: a URL, the source or the target is not fit for it."""


class CopyFailed(Exception):
    """The copy stopped part way; its transaction was rolled back, nothing was written."""


@dataclass(frozen=True)
class Table:
    """A source table, as the copy needs it."""

    name: str
    columns: tuple[str, ...]
    parents: frozenset[str]
    """The tables its foreign keys reference (itself left out)."""
    order_by: str
    rows: int
    counter: int
    """The highest rowid SQLite ever handed out (AUTOINCREMENT), 0 if it keeps none."""


@dataclass(frozen=True)
class Copied:
    tables: list[Table]
    schema_version: int
    nul_replaced: int
    """Text values that held NUL, which PostgreSQL text cannot: stored as U+FFFD, as
    the store does on PostgreSQL."""


def run(source_url: str, target_url: str, *, every: int = PROGRESS_EVERY) -> int:
    """The command: 0 copied and verified, 1 failed (nothing written) or the copy does
    not verify, 2 refused (nothing done)."""
    try:
        copied = copy_ledger(source_url, target_url, progress=sys.stderr, every=every)
    except CopyRefused as refusal:
        print(f"copy: refused: {refusal}", file=sys.stderr)
        return 2
    except CopyFailed as failure:
        print(f"copy: failed, nothing was written: {failure}", file=sys.stderr)
        return 1
    total = sum(table.rows for table in copied.tables)
    print(
        f"copy: {_shown(source_url)} -> {_shown(target_url)}: {total:,} rows in"
        f" {len(copied.tables)} tables, schema version {copied.schema_version}"
    )
    if copied.nul_replaced:
        print(f"copy: {copied.nul_replaced} text value(s) held NUL, stored as U+FFFD")
    return _verify(target_url)


def copy_ledger(source_url: str, target_url: str, *, progress: TextIO, every: int) -> Copied:
    """Copy every table of the SQLite ledger at ``source_url`` into the empty PostgreSQL
    database at ``target_url`` (migrated here to the code's schema version, as the
    source is). Raises ``CopyRefused`` before writing anything, ``CopyFailed`` if the
    copy's transaction rolled back."""
    _source_path(source_url)
    _target_url(target_url)
    with closing(_connect(target_url)) as pg:  # first: an unreachable server fails at once
        source = _open(source_url, "source")
        try:
            target = _open(target_url, "target")
            try:
                version = _same_schema_version(source, target)
            finally:
                target.close()
            with source.read() as conn:
                tables = _tables(conn)
                print(
                    f"copy: {_shown(source_url)}, schema version {version}, one snapshot:"
                    f" {sum(t.rows for t in tables):,} rows in {len(tables)} tables",
                    file=progress,
                )
                nul = _copy(conn, tables, pg, progress=progress, every=every)
        finally:
            source.close()
    return Copied(tables, version, nul)


def _source_path(url: str) -> None:
    if not url.startswith("sqlite:///"):
        raise CopyRefused(f"--from must be a SQLite database, sqlite:///<file>: {_shown(url)}")
    path = url.removeprefix("sqlite:///")
    if not path or path == ":memory:" or not os.path.isfile(path):
        raise CopyRefused(f"--from: no SQLite database at {path!r}")


def _target_url(url: str) -> None:
    if not url.startswith(("postgresql://", "postgres://")) or not url.partition("://")[2]:
        raise CopyRefused(
            f"--to must be a PostgreSQL database, postgresql://user@host:port/database: "
            f"{_shown(url)}"
        )


def _open(url: str, which: str) -> Database:
    """The database, migrated to the code's schema version (as every command does)."""
    try:
        database = open_store(Settings(database_url=url))
    except (ValueError, psycopg.Error, sqlite3.Error) as error:
        raise CopyRefused(f"cannot open the {which} {_shown(url)}: {error}") from error
    try:
        database.migrate()
    except (psycopg.Error, sqlite3.Error) as error:
        database.close()
        raise CopyRefused(f"cannot migrate the {which} {_shown(url)}: {error}") from error
    return database


def _same_schema_version(source: Database, target: Database) -> int:
    versions = source.schema_version(), target.schema_version()
    if versions[0] != versions[1]:
        raise CopyRefused(
            f"schema versions differ: source {versions[0]}, target {versions[1]}"
            " (run this command with the code that wrote the source)"
        )
    return versions[0]


def _connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as error:
        raise CopyRefused(f"cannot connect to the target {_shown(url)}: {error}") from error


def _tables(conn: Any) -> list[Table]:
    """The source's tables, parents before children, read in the copy's snapshot."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
        )
    ]
    counters: dict[str, int] = {}
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        counters = {row[0]: int(row[1]) for row in conn.execute("SELECT * FROM sqlite_sequence")}
    found: list[Table] = []
    for name in names:
        info = list(conn.execute("SELECT name, pk FROM pragma_table_info(?)", (name,)))
        keys = [row[0] for row in sorted(info, key=lambda row: row[1]) if row[1]]
        references = conn.execute('SELECT "table" FROM pragma_foreign_key_list(?)', (name,))
        parents = {row[0] for row in references}
        (rows,) = conn.execute(f"SELECT count(*) FROM {_quoted(name)}").fetchone()
        found.append(
            Table(
                name=name,
                columns=tuple(row[0] for row in info),
                parents=frozenset(parents - {name}),
                order_by=", ".join(map(_quoted, keys)) or "rowid",
                rows=int(rows),
                counter=counters.get(name, 0),
            )
        )
    return _parents_first(found)


def _parents_first(tables: Sequence[Table]) -> list[Table]:
    ordered: list[Table] = []
    done: set[str] = set()
    waiting = list(tables)
    while waiting:
        ready = next((t for t in waiting if t.parents <= done), None)
        if ready is None:
            cycle = ", ".join(sorted(t.name for t in waiting))
            raise CopyRefused(f"the foreign keys of these tables form a cycle: {cycle}")
        ordered.append(ready)
        done.add(ready.name)
        waiting.remove(ready)
    return ordered


def _copy(
    source: Any,
    tables: list[Table],
    pg: psycopg.Connection[tuple[Any, ...]],
    *,
    progress: TextIO,
    every: int,
) -> int:
    """Everything in one transaction on the target; returns the NUL values replaced."""
    try:
        with pg.transaction():
            _check_target(pg, tables)
            for table in tables:
                pg.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(_ident(table)))
            nul = sum(_copy_table(source, table, pg, progress, every) for table in tables)
            for table in tables:
                _continue_counters(pg, table)
                pg.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(_ident(table)))
                (count,) = _one(pg, sql.SQL("SELECT count(*) FROM {}").format(_ident(table)))
                if count != table.rows:
                    raise CopyFailed(f"{table.name}: {count} rows in the target, {table.rows} read")
            return nul
    except psycopg.Error as error:
        raise CopyFailed(f"{type(error).__name__}: {error}") from error


def _check_target(pg: psycopg.Connection[tuple[Any, ...]], tables: list[Table]) -> None:
    """The target has the source's tables and columns, and not one row: refused else."""
    present = {
        name: tuple(columns)
        for name, columns in pg.execute(
            "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position)"
            " FROM information_schema.columns WHERE table_schema = current_schema()"
            " GROUP BY table_name"
        )
    }
    expected = {table.name for table in tables}
    if set(present) - _TARGET_ONLY != expected:
        raise CopyRefused(
            f"the target's tables {sorted(set(present) - _TARGET_ONLY)} are not the source's"
            f" {sorted(expected)}"
        )
    for table in tables:
        if set(present[table.name]) != set(table.columns):
            raise CopyRefused(
                f"{table.name}: the target's columns {list(present[table.name])}"
                f" are not the source's {list(table.columns)}"
            )
    pg.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
    try:
        pg.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(map(_ident, tables))
            )
        )
    except psycopg.errors.LockNotAvailable as error:
        raise CopyRefused("the target is in use: stop every process that uses it") from error
    filled = [
        table.name
        for table in tables
        if _one(pg, sql.SQL("SELECT EXISTS (SELECT FROM {})").format(_ident(table)))[0]
    ]
    if filled:
        raise CopyRefused(
            f"the target is not empty (rows in {', '.join(filled)}): copy into a new database"
        )


def _copy_table(
    source: Any, table: Table, pg: psycopg.Connection[tuple[Any, ...]], progress: TextIO, every: int
) -> int:
    columns = ", ".join(map(_quoted, table.columns))
    rows = source.execute(f"SELECT {columns} FROM {_quoted(table.name)} ORDER BY {table.order_by}")
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        _ident(table), sql.SQL(", ").join(map(sql.Identifier, table.columns))
    )
    started = time.monotonic()
    copied = nul = 0
    with pg.cursor().copy(statement) as copy:
        for row, replaced in _pg_values(rows):
            copy.write_row(row)
            copied += 1
            nul += replaced
            if copied % every == 0 and copied < table.rows:
                print(f"copy: {table.name}: {copied:,} / {table.rows:,} rows", file=progress)
    elapsed = time.monotonic() - started
    print(f"copy: {table.name}: {copied:,} rows copied ({elapsed:.1f} s)", file=progress)
    if copied != table.rows:
        raise CopyFailed(f"{table.name}: read {copied} rows, counted {table.rows}")
    return nul


def _pg_values(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[tuple[Any, ...], int]]:
    """Each row as PostgreSQL takes it, with how many of its values held NUL."""
    for row in rows:
        values = tuple(row)
        if any(isinstance(value, str) and "\x00" in value for value in values):
            replaced = tuple(
                value.replace("\x00", "\ufffd") if isinstance(value, str) else value
                for value in values
            )
            yield replaced, sum(a != b for a, b in zip(values, replaced, strict=True))
        else:
            yield values, 0


def _continue_counters(pg: psycopg.Connection[tuple[Any, ...]], table: Table) -> None:
    """Identity and serial columns hand out values above every copied one."""
    for (column,) in pg.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s"
        " AND (is_identity = 'YES' OR column_default LIKE 'nextval(%%')",
        (table.name,),
    ).fetchall():
        (highest,) = _one(
            pg,
            sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
                sql.Identifier(column), _ident(table)
            ),
        )
        highest = max(int(highest), table.counter)
        pg.execute(
            "SELECT setval(pg_get_serial_sequence(%s, %s), %s, %s)",
            (sql.Identifier(table.name).as_string(pg), column, max(highest, 1), highest > 0),
        )


def _verify(target_url: str) -> int:
    target = open_store(Settings(database_url=target_url))
    try:
        violations = verify(target)
    finally:
        target.close()
    if violations:
        print(f"verify: {_shown(target_url)}: {len(violations)} violation(s)")
        for line in violations:
            print(f"  {line}")
        return 1
    print(
        f"verify: {_shown(target_url)}: the ledger holds"
        " (G2 atomicity, G3 conservation, G8 holds, G9 refunds)"
    )
    return 0


def _one(pg: psycopg.Connection[tuple[Any, ...]], query: sql.Composed) -> tuple[Any, ...]:
    row = pg.execute(query).fetchone()
    assert row is not None
    return row


def _ident(table: Table) -> sql.Identifier:
    return sql.Identifier(table.name)


def _quoted(name: str) -> str:
    """A SQLite identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def _shown(url: str) -> str:
    """The URL as output may show it: no password."""
    scheme, _, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    return f"{scheme}://{credentials.partition(':')[0]}@{location}"
