"""The two backends the suite runs on: a SQLite file per test, or a PostgreSQL database
per test on the server named by ``P2P_TEST_POSTGRES_URL``.

A test that takes ``backend`` (directly or through ``database_url``, ``db``,
``settings``…) runs once per backend; ``@pytest.mark.sqlite_only`` keeps one that reads
SQLite itself to SQLite. Each PostgreSQL test gets a database of its own, copied from a
template migrated once per session, and dropped afterwards. Without a server the
PostgreSQL tests fail under ``CI=true`` and are skipped elsewhere, with the reason.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from shared.db import Database, SQLiteDatabase
from shared.postgres import PostgresDatabase

BACKENDS = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresServer:
    """A server the suite makes databases on; their names carry this process's id."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._prefix = f"p2p_test_{os.getpid()}"
        self.template = f"{self._prefix}_template"
        self._serial = itertools.count(1)

    def url_for(self, database: str) -> str:
        """The admin URL, naming ``database`` instead (its query string kept)."""
        base, _, query = self.admin_url.partition("?")
        head, _, _ = base.rpartition("/")
        return f"{head}/{database}" + (f"?{query}" if query else "")

    def execute(self, statement: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement.encode())

    def create_template(self) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)")
        self.execute(f"CREATE DATABASE {self.template}")
        database = PostgresDatabase(self.url_for(self.template), pool_size=1)
        try:
            database.migrate()
        finally:
            database.close()

    def new_database(self, *, migrated: bool = True) -> str:
        """A fresh database's name: migrated (a copy of the template) or blank."""
        name = f"{self._prefix}_{next(self._serial)}"
        template = self.template if migrated else "template0"
        self.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def drop(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_unreachable(reason: str) -> None:
    """Fail under CI, where no test may be skipped for want of a server; skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: PostgreSQL tests are never skipped in CI")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("P2P_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    server = PostgresServer(url)
    try:
        server.execute("SELECT 1")
    except psycopg.OperationalError as error:
        postgres_unreachable(
            f"no PostgreSQL at P2P_TEST_POSTGRES_URL={server.url_for('')}… ({error})".strip()
        )
    server.create_template()
    yield server
    server.drop(server.template)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql``: the suite parametrizes it (tests/conftest.py)."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database of this test's own, as ``P2P_DATABASE_URL`` names it."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'p2p.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.new_database()
    try:
        yield server.url_for(name)
    finally:
        server.drop(name)


@pytest.fixture
def blank_database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A database of this test's own that nobody has migrated: no tables at all."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.new_database(migrated=False)
    try:
        yield server.url_for(name)
    finally:
        server.drop(name)


def open_database(url: str) -> Database:
    """The ``Database`` a URL names, as ``Database.from_settings`` would open it."""
    if url.startswith("sqlite:///"):
        return SQLiteDatabase(url.removeprefix("sqlite:///"))
    return PostgresDatabase(url, pool_size=4)


def parametrize_backends(metafunc: pytest.Metafunc) -> None:
    """Every test that takes ``backend`` runs on both, unless it is ``sqlite_only``."""
    if "backend" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize(
            "backend", ["sqlite"] if only_sqlite else list(BACKENDS), indirect=True
        )
