"""The database a benchmark run owns: a fresh SQLite file, or a fresh PostgreSQL database
created on a server (``--database-url postgresql://…``) and dropped at the end.

The bench reads the database directly (pending counts, settlement times) with the same
few queries on both, and gets every value as text, as either engine would print it.
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg

Row = tuple[str | None, ...]


class BenchDatabase(Protocol):
    url: str
    """What the bench's processes get as ``P2P_DATABASE_URL``."""
    engine: str
    """``sqlite`` or ``postgresql``."""

    def rows(self, query: str) -> list[Row]: ...

    def drop(self) -> None: ...


def bench_database(server_url: str | None, directory: Path) -> BenchDatabase:
    """A fresh database: a file in ``directory``, or one created on ``server_url``.

    Raises ``ValueError`` for a URL that is neither ``sqlite:///`` nor ``postgresql://``.
    """
    if server_url is None or engine_of(server_url) == "sqlite":
        return SqliteBench(directory / "bench.db")
    return PostgresBench.create(server_url)


def engine_of(server_url: str | None) -> str:
    """``sqlite`` (no URL, or ``sqlite:///…``) or ``postgresql``.

    Raises ``ValueError`` for a URL that is neither.
    """
    if server_url is None or server_url.startswith("sqlite:///"):
        return "sqlite"
    if server_url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    raise ValueError(f"--database-url: sqlite:///… or postgresql://…, not {server_url!r}")


class SqliteBench:
    """A new file for every run (a ``sqlite:///`` URL given names only the kind)."""

    engine = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def rows(self, query: str) -> list[Row]:
        with sqlite3.connect(self.path, timeout=30) as db:
            return [tuple(_text(value) for value in row) for row in db.execute(query)]

    def drop(self) -> None:
        """The file goes with the run's directory."""


class PostgresBench:
    """``p2p_bench_<random>`` on the server of ``server_url``, created through its
    ``postgres`` database and dropped (``WITH (FORCE)``) at the end."""

    engine = "postgresql"

    def __init__(self, server_url: str, name: str) -> None:
        self._admin_url = _with_database(server_url, "postgres")
        self.name = name
        self.url = _with_database(server_url, name)

    @classmethod
    def create(cls, server_url: str) -> PostgresBench:
        bench = cls(server_url, f"p2p_bench_{secrets.token_hex(4)}")
        _execute(bench._admin_url, f'CREATE DATABASE "{bench.name}"')
        return bench

    def rows(self, query: str) -> list[Row]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            cursor = conn.execute(query.encode())
            if cursor.description is None:  # a statement that returns no rows
                return []
            return [tuple(_text(value) for value in row) for row in cursor.fetchall()]

    def drop(self) -> None:
        _execute(self._admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement.encode())
