"""Processes that start together on a new database (``docker compose up`` on a new
volume: an API and a worker): all of them start, whichever comes first migrates, and
the others wait for it."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from tests.backends import open_database

PROCESSES = 4
SQLITE_ROUNDS = 300
"""New files each set of processes opens at once. Before SQLite's switch to WAL was
made under the writer lock, about one round in fifty failed with "database is locked"."""
DEADLINE_S = 60.0


def _start(urls: list[str], barrier: Barrier, errors: Queue[list[str]]) -> None:
    """As ``p2p api`` and ``p2p worker`` start: open the database, migrate it."""
    failed: list[str] = []
    for url in urls:
        db = open_database(url)
        try:
            barrier.wait(DEADLINE_S)
            db.migrate()
        except Exception as error:
            failed.append(f"{url}: {error!r}")
        finally:
            db.close()
    errors.put(failed)


def _start_together(urls: list[str]) -> list[str]:
    """Every failure of ``PROCESSES`` processes opening and migrating each of ``urls``
    at the same moment, one database after the other."""
    # Forked from a server process of their own: no thread of the test process is copied.
    context = multiprocessing.get_context("forkserver")
    barrier = context.Barrier(PROCESSES)
    errors: Queue[list[str]] = context.Queue()
    processes = [
        context.Process(target=_start, args=(urls, barrier, errors)) for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        return [failure for _ in processes for failure in errors.get(timeout=DEADLINE_S)]
    finally:
        for process in processes:
            process.join(DEADLINE_S)


@pytest.fixture
def new_files_dir(tmp_path: Path) -> Iterator[Path]:
    """Where the new SQLite files go: memory where there is some (``/dev/shm``), since a
    new file's switch to WAL is an fsync, tens of milliseconds a round on a disk."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="p2p-start-") as memory:
        yield Path(memory)


@pytest.mark.sqlite_only
def test_processes_opening_a_new_sqlite_file_at_once_all_start(new_files_dir: Path) -> None:
    urls = [f"sqlite:///{new_files_dir / f'p2p-{n}.db'}" for n in range(SQLITE_ROUNDS)]

    assert _start_together(urls) == []

    for url in urls[:: SQLITE_ROUNDS // 10]:
        db = open_database(url)
        try:
            assert db.schema_version() == len(db.engine.migrations)
            assert db.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            db.close()


@pytest.mark.postgresql_only  # SQLite: the test above, with many more rounds
def test_processes_migrating_a_blank_database_at_once_all_start(
    blank_database_url: str,
) -> None:
    assert _start_together([blank_database_url]) == []

    db = open_database(blank_database_url)
    try:
        assert db.schema_version() == len(db.engine.migrations)
        assert db.migrate() == len(db.engine.migrations)
    finally:
        db.close()
