"""``p2p copy`` moves a ledger made by real traffic from SQLite onto PostgreSQL: every row
exactly, ``p2p verify`` passing on the copy, and the payments still pending settled once
by a worker on PostgreSQL; a non-empty target and wrong URLs are refused."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.backends import PostgresServer
from tests.conftest import RedisServer
from tests.e2e.harness import P2P, ApiClient, Customer, Stack, transfer

COPY_TIMEOUT_S = 120
PENDING = 4


@pytest.fixture
def target_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A PostgreSQL database nobody has migrated: ``p2p copy`` migrates it."""
    name = postgres_server.new_database(migrated=False)
    try:
        yield postgres_server.url_for(name)
    finally:
        postgres_server.drop(name)


def copy(source: str, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [P2P, "copy", "--from", source, "--to", target, *extra],
        capture_output=True,
        text=True,
        timeout=COPY_TIMEOUT_S,
        check=False,
    )


def _ledger_with_pending_payments(stack: Stack) -> tuple[Customer, Customer, list[str]]:
    """Traffic through the real API and worker on SQLite: payments completed and failed,
    a frozen account, then ``PENDING`` payments accepted with no worker left to settle
    them (their messages wait in Redis). Every writer is stopped at the end."""
    worker = stack.start_worker(wait_started=True)
    api = stack.start_api()
    with ApiClient(api.url) as client:
        payer, payee = client.customer(deposit=1_000), client.customer()
        frozen = client.customer(deposit=50)
        settled = [client.accepted(transfer(payer, payee, 100))["id"] for _ in range(3)]
        settled.append(client.accepted(transfer(payer, payee, 5_000))["id"])  # fails
        settled.append(client.accepted(transfer(frozen, payee, 20))["id"])
        finals = client.wait_all_final([(payer, p) for p in settled[:4]] + [(frozen, settled[4])])
        assert [p["status"] for p in finals] == [*["completed"] * 3, "failed", "completed"]
        response = httpx.patch(
            f"{api.url}/accounts/{frozen.account_id}",
            json={"status": "frozen"},
            headers=frozen.headers,
        )
        assert response.status_code == 200, response.text
        assert worker.terminate(timeout=30) == 0
        pending = [client.accepted(transfer(payer, payee, 10))["id"] for _ in range(PENDING)]
    assert api.process.terminate(timeout=30) == 0
    return payer, payee, pending


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table, by ``seq``, from either engine."""
    tables = (
        "users",
        "api_keys",
        "accounts",
        "deposits",
        "batches",
        "payments",
        "ledger_entries",
        "payment_actions",
        "events",
    )
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return {t: conn.execute(f"SELECT * FROM {t} ORDER BY seq").fetchall() for t in tables}
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY seq").fetchall() for t in tables}


def _entries_by_payment(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        found: dict[str, list[str]] = {}
        for payment_id, direction in conn.execute(
            "SELECT payment_id, direction FROM ledger_entries WHERE payment_id IS NOT NULL"
            " ORDER BY seq"
        ):
            found.setdefault(payment_id, []).append(direction)
        return found


def test_a_ledger_with_pending_payments_is_copied_exactly_verified_and_settled_once_on_postgresql(
    stack: Stack, redis_server: RedisServer, target_url: str, tmp_path: Path
) -> None:
    payer, payee, pending = _ledger_with_pending_payments(stack)
    before = _rows(stack.database_url)

    result = copy(stack.database_url, target_url, "--progress-every", "2")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "the ledger holds" in result.stdout
    total = sum(map(len, before.values()))
    assert f"{total} rows in 9 tables, schema version" in result.stdout
    for table, rows in before.items():  # progress on stderr, table by table, parents first
        assert f"copy: {table}: {len(rows)} rows copied" in result.stderr
    assert f"copy: payments: 2 / {len(before['payments'])} rows" in result.stderr
    assert result.stderr.index("copy: users:") < result.stderr.index("copy: ledger_entries:")
    assert _rows(target_url) == before  # ids, amounts, times, seq: as they were

    (tmp_path / "postgresql").mkdir()
    on_postgres = Stack(tmp_path / "postgresql", redis_server.url, target_url)
    try:
        on_postgres.start_worker(wait_started=True)
        api = on_postgres.start_api()
        with ApiClient(api.url) as client:  # the old API keys work on the copy
            settled = client.wait_all_final([(payer, payment_id) for payment_id in pending])
            assert [payment["status"] for payment in settled] == ["completed"] * PENDING
            new = client.accepted(transfer(payer, payee, 1))["id"]  # counters moved on
            assert client.wait_final(payer, new)["status"] == "completed"
            assert client.account(payer)["balance"] == 1_000 - 300 - PENDING * 10 - 1
        on_postgres.assert_ledger_holds()
    finally:
        on_postgres.close()
    entries = _entries_by_payment(target_url)
    for payment_id in [*pending, new]:
        assert entries[payment_id] == ["debit", "credit"], payment_id
    after = _rows(target_url)
    assert after["payments"][: len(before["payments"]) - PENDING] == before["payments"][:-PENDING]


def test_a_target_with_rows_in_it_is_refused_and_left_as_it_was(
    stack: Stack, target_url: str
) -> None:
    _ledger_with_pending_payments(stack)
    assert copy(stack.database_url, target_url).returncode == 0
    copied = _rows(target_url)

    again = copy(stack.database_url, target_url)

    assert again.returncode == 2
    assert "refused: the target is not empty (rows in users," in again.stderr
    assert _rows(target_url) == copied


@pytest.mark.parametrize(
    ("source", "target", "said"),
    [
        ("{postgres}", "{postgres}", "--from must be a SQLite database"),
        ("sqlite:///{missing}", "{postgres}", "--from: no SQLite database at"),
        ("{sqlite}", "sqlite:///{tmp}/other.db", "--to must be a PostgreSQL database"),
        ("{sqlite}", "mysql://root@127.0.0.1/p2p", "--to must be a PostgreSQL database"),
        ("{sqlite}", "postgresql://postgres@127.0.0.1:1/p2p", "cannot connect to the target"),
    ],
)
def test_wrong_urls_are_refused_before_anything_is_written(
    target_url: str, tmp_path: Path, source: str, target: str, said: str
) -> None:
    sqlite_file = tmp_path / "p2p.db"
    sqlite_file.touch()
    places = {
        "postgres": target_url,
        "sqlite": f"sqlite:///{sqlite_file}",
        "missing": str(tmp_path / "missing.db"),
        "tmp": str(tmp_path),
    }
    result = copy(source.format(**places), target.format(**places))

    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stderr
    assert sqlite_file.stat().st_size == 0  # not even migrated
    assert not (tmp_path / "missing.db").exists()
    assert not (tmp_path / "other.db").exists()
    with psycopg.connect(target_url) as conn:  # not even migrated
        assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)


def test_a_copy_taken_while_the_source_is_written_is_one_consistent_snapshot(
    stack: Stack, target_url: str
) -> None:
    stack.start_worker(wait_started=True)
    api = stack.start_api()
    stop = threading.Event()
    with ApiClient(api.url) as client:
        payer, payee = client.customer(deposit=10_000_000), client.customer()

        def traffic() -> None:
            with ApiClient(api.url) as writer:
                while not stop.is_set():
                    writer.accepted(transfer(payer, payee, 7))

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            result = copy(stack.database_url, target_url)
        finally:
            stop.set()
            thread.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the ledger holds" in result.stdout


def test_a_copy_the_target_refuses_part_way_leaves_it_empty(
    stack: Stack, postgres_server: PostgresServer
) -> None:
    _ledger_with_pending_payments(stack)
    name = postgres_server.new_database(migrated=True)
    target = postgres_server.url_for(name)
    try:
        with psycopg.connect(target, autocommit=True) as conn:  # refuses the 100-cent payments
            conn.execute("ALTER TABLE payments ADD CONSTRAINT small CHECK (amount < 100)")

        result = copy(stack.database_url, target)

        assert result.returncode == 1, result.stdout + result.stderr
        assert "copy: failed, nothing was written: CheckViolation" in result.stderr
        assert "copy: users: " in result.stderr  # the tables before it were copied, then undone
        assert all(rows == [] for rows in _rows(target).values())
        with psycopg.connect(target) as conn:  # and the ledger's triggers are on again
            (disabled,) = conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'"
            ).fetchone() or (None,)
        assert disabled == 0
    finally:
        postgres_server.drop(name)
