"""The bench's own database: a fresh one per run, on either backend, gone at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.database import PostgresBench, SqliteBench, bench_database
from tests.backends import PostgresServer


def test_without_a_url_the_bench_gets_a_fresh_sqlite_file_in_its_directory(
    tmp_path: Path,
) -> None:
    database = bench_database(None, tmp_path)

    assert isinstance(database, SqliteBench)
    assert database.url == f"sqlite:///{tmp_path / 'bench.db'}"
    assert database.rows("SELECT 1, NULL, 'x'") == [("1", None, "x")]


def test_a_postgresql_url_gets_a_database_of_its_own_dropped_at_the_end(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = bench_database(postgres_server.admin_url, tmp_path)
    assert isinstance(database, PostgresBench)
    admin = PostgresBench(postgres_server.admin_url, "postgres")
    try:
        assert database.url.endswith(f"/{database.name}")
        assert database.name.startswith("p2p_bench_")
        database.rows("CREATE TABLE t (n integer, s text)")
        database.rows("INSERT INTO t VALUES (1, NULL), (2, 'two')")
        assert database.rows("SELECT n, s FROM t ORDER BY n") == [("1", None), ("2", "two")]
    finally:
        database.drop()
    query = f"SELECT count(*) FROM pg_database WHERE datname = '{database.name}'"
    assert admin.rows(query) == [("0",)]


def test_a_url_of_another_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="postgresql"):
        bench_database("mysql://localhost/db", tmp_path)
