"""The two backends the suite runs on: a SQLite file per test, or a PostgreSQL database
per test on the server named by ``P2P_TEST_POSTGRES_URL``.

A test that takes ``backend`` (directly or through ``database_url``, ``db``,
``settings``…) runs once per backend; ``@pytest.mark.sqlite_only`` keeps one that reads
SQLite itself to SQLite, ``@pytest.mark.postgresql_only`` one about what only PostgreSQL
does to PostgreSQL. Each PostgreSQL test gets a database nobody else uses, copied from a
template migrated once per session; once the test is over its rows are deleted and it
is handed to the next test (cheaper than creating and dropping one), or dropped if its
schema was changed or anything still holds on to it. Without a server the PostgreSQL
tests fail under ``CI=true`` and are skipped elsewhere, with the reason.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from shared.settings import Settings
from shared.store import Database
from shared.store.opening import open_store
from shared.store.postgres import PostgresDatabase
from shared.store.sqlite import SQLiteDatabase

BACKENDS = ("sqlite", "postgresql")
# Children before parents.
_TABLES = (
    "events",
    "ledger_entries",
    "payment_actions",
    "payments",
    "batches",
    "deposits",
    "accounts",
    "api_keys",
    "users",
)
E2E_DIR = Path(__file__).parent / "e2e"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class PostgresServer:
    """A server the suite makes databases on; their names carry this process's id."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._prefix = f"p2p_test_{os.getpid()}"
        self.template = f"{self._prefix}_template"
        self._serial = itertools.count(1)
        self._clean: list[str] = []
        self._made: set[str] = set()
        self._template_schema = ""

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
        with psycopg.connect(self.url_for(self.template), autocommit=True) as conn:
            self._template_schema = _schema_of(conn)

    def new_database(self, *, migrated: bool = True) -> str:
        """A fresh database's name: migrated (a copy of the template) or blank."""
        name = f"{self._prefix}_{next(self._serial)}"
        template = self.template if migrated else "template0"
        self.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def drop(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._made.discard(name)

    def acquire(self) -> str:
        """A migrated database without a row in it, for one test."""
        if self._clean:
            return self._clean.pop()
        name = self.new_database()
        self._made.add(name)
        return name

    def release(self, name: str) -> None:
        """Empty the test's database for the next one; drop it if that cannot be done
        at once (a connection still holds a lock) or the schema was changed."""
        try:
            with psycopg.connect(self.url_for(name), autocommit=True, connect_timeout=5) as conn:
                conn.execute("SET lock_timeout = '1s'")
                # replica: no trigger fires, the append-only ledger's neither.
                conn.execute("SET session_replication_role = replica")
                conn.execute("BEGIN")
                for table in _TABLES:
                    conn.execute(f"DELETE FROM {table}".encode())
                conn.execute("COMMIT")
                schema = _schema_of(conn)
        except psycopg.Error:
            self.drop(name)
            return
        if schema == self._template_schema:
            self._clean.append(name)
        else:  # a test changed the schema (a poisoned trigger, say): nobody else gets it
            self.drop(name)

    def drop_abandoned(self) -> None:
        """Drop what runs that were killed left behind (their process is gone)."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            names = [
                name
                for (name,) in conn.execute(
                    r"SELECT datname FROM pg_database WHERE datname LIKE 'p2p\_test\_%'"
                )
            ]
        for name in names:
            pid = name.split("_")[2]
            if pid.isdigit() and not _alive(int(pid)):
                self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def drop_all(self) -> None:
        for name in [*self._made, self.template]:
            self.drop(name)
        self._clean.clear()


_SCHEMA = """
    SELECT coalesce(md5(string_agg(item, ',' ORDER BY item)), '') FROM (
        SELECT 'relation ' || relname || ' ' || relkind::text FROM pg_class
        WHERE relnamespace = 'public'::regnamespace
        UNION ALL SELECT 'column ' || attrelid::regclass || '.' || attname || ' ' || atttypid::text
        FROM pg_attribute JOIN pg_class ON pg_class.oid = attrelid
        WHERE relnamespace = 'public'::regnamespace AND attnum > 0 AND NOT attisdropped
        UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL SELECT 'function ' || proname || md5(prosrc) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace
        UNION ALL SELECT 'constraint ' || conname FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
        UNION ALL SELECT 'version ' || version FROM schema_version
    ) AS schema (item)
"""


def _schema_of(conn: psycopg.Connection[Any]) -> str:
    """A digest of every table, column, index, trigger, function and constraint."""
    row = conn.execute(_SCHEMA.encode()).fetchone()
    return "" if row is None else str(row[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def poison(db: Database, payment_id: str) -> None:
    """Make settling this one payment raise ``poisoned row``, as a row no code expected
    would: a trigger, in the database's own dialect. ``cure`` removes it."""
    if db.engine.name == "sqlite":
        db.connection().execute(
            "CREATE TRIGGER poison BEFORE UPDATE ON payments"
            f" WHEN NEW.id = '{payment_id}' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        )
        return
    db.connection().execute(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.id = '{payment_id}' THEN RAISE EXCEPTION 'poisoned row'"
        " USING ERRCODE = 'integrity_constraint_violation'; END IF; RETURN NEW; END $$"
    )
    db.connection().execute(
        "CREATE TRIGGER poison BEFORE UPDATE ON payments FOR EACH ROW EXECUTE FUNCTION poison()"
    )


def cure(db: Database) -> None:
    """Remove what ``poison`` made."""
    if db.engine.name == "sqlite":
        db.connection().execute("DROP TRIGGER poison")
        return
    db.connection().execute("DROP TRIGGER poison ON payments")
    db.connection().execute("DROP FUNCTION poison()")


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
    server.drop_abandoned()
    server.create_template()
    yield server
    server.drop_all()


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
    name = server.acquire()
    try:
        yield server.url_for(name)
    finally:
        server.release(name)


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


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The database the test's ``settings`` name (the API and worker suites each define
    ``settings``), migrated, closed after. The unit suite has its own, from
    ``database_url`` alone."""
    database = open_store(settings)
    database.migrate()
    yield database
    database.close()


def open_database(url: str) -> Database:
    """The ``Database`` a URL names, as ``open_store`` would open it."""
    if url.startswith("sqlite:///"):
        return SQLiteDatabase(url.removeprefix("sqlite:///"))
    return PostgresDatabase(url, pool_size=4)


def parametrize_backends(metafunc: pytest.Metafunc) -> None:
    """Every unit and API test that takes ``backend`` runs on both, unless it is
    ``sqlite_only``. An end-to-end scenario starts real processes, so it runs on
    PostgreSQL too only when marked ``postgresql``: those cover what differs."""
    if "backend" in metafunc.fixturenames:
        definition = metafunc.definition
        end_to_end = E2E_DIR in definition.path.parents
        only_sqlite = definition.get_closest_marker("sqlite_only") is not None or (
            end_to_end and definition.get_closest_marker("postgresql") is None
        )
        only_postgres = definition.get_closest_marker("postgresql_only") is not None
        backends = ["postgresql"] if only_postgres else ["sqlite"] if only_sqlite else BACKENDS
        metafunc.parametrize("backend", list(backends), indirect=True)
