"""The database a benchmark run owns: a fresh SQLite file, or a fresh PostgreSQL database
created on a server (``--database-url postgresql://…``) and dropped at the end.

The bench reads the database directly (pending counts, settlement times) with the same
few queries on both. PostgreSQL is reached through the ``psql`` client, so that the
bench needs no driver of its own; a poll every 100 ms costs a process start, which is
far below what it measures.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

Row = tuple[str | None, ...]


class BenchDatabase(Protocol):
    url: str
    """What the bench's processes get as ``P2P_DATABASE_URL``."""

    def rows(self, query: str) -> list[Row]: ...

    def drop(self) -> None: ...


def bench_database(server_url: str | None, directory: Path) -> BenchDatabase:
    """A fresh database: a file in ``directory``, or one created on ``server_url``.

    Raises ``ValueError`` for a URL that is neither ``sqlite:///`` nor ``postgresql://``.
    """
    if server_url is None or server_url.startswith("sqlite:///"):
        return SqliteBench(directory / "bench.db")
    if server_url.startswith(("postgresql://", "postgres://")):
        return PostgresBench.create(server_url)
    raise ValueError(f"--database-url: sqlite:///… or postgresql://…, not {server_url!r}")


class SqliteBench:
    """A new file for every run (a ``sqlite:///`` URL given names only the kind)."""

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

    def __init__(self, server_url: str, name: str) -> None:
        self._admin_url = _with_database(server_url, "postgres")
        self.name = name
        self.url = _with_database(server_url, name)

    @classmethod
    def create(cls, server_url: str) -> PostgresBench:
        bench = cls(server_url, f"p2p_bench_{secrets.token_hex(4)}")
        _psql(bench._admin_url, f'CREATE DATABASE "{bench.name}"')
        return bench

    def rows(self, query: str) -> list[Row]:
        out = _psql(self.url, query)
        return [
            tuple(None if value == "" else value for value in line.split("\t"))
            for line in out.splitlines()
        ]

    def drop(self) -> None:
        _psql(self._admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _psql_argv(executable: str) -> list[str]:
    # No psqlrc, quiet, unaligned tab-separated rows without headers, stop at an error.
    return [executable, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"]


def _psql(url: str, command: str) -> str:
    executable = shutil.which("psql")
    if executable is None:
        raise RuntimeError("psql is not on PATH: the bench reaches PostgreSQL through it")
    done = subprocess.run(
        [*_psql_argv(executable), "-d", url, "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"psql: {command!r}: {done.stderr.strip()}")
    return done.stdout
