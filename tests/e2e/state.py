"""What the processes leave behind, read directly: the database (a SQLite file or a
PostgreSQL database) and Dramatiq's keys.

These readings are the tests' own, independent of the product's code: ``p2p verify`` is
checked against them, not trusted instead of them.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any

import psycopg
import redis
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker

_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ"


class _PostgresReader:
    """A psycopg connection taking the ``?`` placeholders these tests write."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, query: str, params: Sequence[object] = ()) -> Any:
        return self._conn.execute(query.replace("?", "%s"), params)


class AuditedDatabase:
    """The tests' own reading of the database, independent of ``p2p verify``: with
    ``sqlite3`` or ``psycopg`` directly, never through the product's store."""

    def __init__(self, url: str) -> None:
        self.url = url

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection | _PostgresReader]:
        if self.url.startswith("sqlite:///"):
            path = self.url.removeprefix("sqlite:///")
            with closing(sqlite3.connect(path, isolation_level=None, timeout=10)) as conn:
                yield conn
        else:
            with psycopg.connect(self.url, autocommit=True) as pg:
                yield _PostgresReader(pg)

    def scalar(self, query: str, *params: object) -> Any:
        with self.connect() as conn:
            return conn.execute(query, params).fetchone()[0]

    def status_counts(self) -> Counter[str]:
        with self.connect() as conn:
            rows = conn.execute("SELECT status, count(*) FROM payments GROUP BY status")
            return Counter({status: count for status, count in rows})

    def pending(self) -> int:
        return int(self.scalar("SELECT count(*) FROM payments WHERE status = 'pending'"))

    def other_sessions(self) -> int:
        """PostgreSQL sessions on this database besides the one asking."""
        return int(
            self.scalar(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )

    def deadlocks(self) -> int:
        """Deadlocks PostgreSQL has broken in this database, as its sessions reported them
        (a session reports when it ends, or after a while idle)."""
        return int(
            self.scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        )

    def pending_ids(self) -> set[str]:
        with self.connect() as conn:
            return {
                id_ for (id_,) in conn.execute("SELECT id FROM payments WHERE status = 'pending'")
            }

    def assert_invariants(self) -> None:
        """G2, G3 and G8, asked directly: one debit and one credit of what it moved per
        completed payment, none for any other, money conserved, nothing negative, every
        account's held the sum of its authorized payments, no capture above its
        authorization."""
        moved = "coalesce(p.captured_amount, p.amount)"
        debit = (
            "sum(CASE WHEN e.direction = 'debit' AND e.account_id = p.from_account_id"
            f" AND e.amount = {moved} THEN 1 ELSE 0 END)"
        )
        credit = (
            "sum(CASE WHEN e.direction = 'credit' AND e.account_id = p.to_account_id"
            f" AND e.amount = {moved} THEN 1 ELSE 0 END)"
        )
        with self.connect() as conn:
            conn.execute("BEGIN" if isinstance(conn, sqlite3.Connection) else _SNAPSHOT)
            wrong_pairs = conn.execute(
                f"""
                SELECT p.id, p.status, {debit}, {credit}, count(e.id)
                FROM payments AS p LEFT JOIN ledger_entries AS e ON e.payment_id = p.id
                GROUP BY p.id, p.status
                HAVING (p.status = 'completed'
                        AND NOT (count(e.id) = 2 AND {debit} = 1 AND {credit} = 1))
                    OR (p.status <> 'completed' AND count(e.id) <> 0)
                """
            ).fetchall()
            balances = conn.execute("SELECT coalesce(sum(balance), 0) FROM accounts").fetchone()
            deposits = conn.execute("SELECT coalesce(sum(amount), 0) FROM deposits").fetchone()
            negative = conn.execute(
                "SELECT id, balance, held FROM accounts WHERE balance < 0 OR balance < held"
            ).fetchall()
            wrong_held = conn.execute(
                """
                SELECT a.id, a.held, coalesce(sum(p.amount), 0) FROM accounts AS a
                LEFT JOIN payments AS p ON p.from_account_id = a.id AND p.status = 'authorized'
                GROUP BY a.id, a.held HAVING a.held <> coalesce(sum(p.amount), 0)
                """
            ).fetchall()
            over_captured = conn.execute(
                "SELECT id, captured_amount, amount FROM payments"
                " WHERE captured_amount < 1 OR captured_amount > amount"
            ).fetchall()
            conn.execute("COMMIT")
        assert wrong_pairs == [], f"payments without exactly their ledger pair: {wrong_pairs}"
        assert tuple(balances) == tuple(deposits), (
            f"sum of balances {balances} != sum of deposits {deposits}"
        )
        assert negative == [], f"negative balances or available: {negative}"
        assert wrong_held == [], f"held is not the sum of authorized payments: {wrong_held}"
        assert over_captured == [], f"captures above their authorization: {over_captured}"


class BrokerState:
    """What Dramatiq keeps in Redis for the ``payments`` queue, read and nudged directly."""

    QUEUE = "payments"

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url

    @contextmanager
    def client(self) -> Iterator[redis.Redis]:
        with redis.Redis.from_url(self.redis_url, socket_timeout=5.0) as client:
            yield client

    def unacked(self) -> dict[str, int]:
        """Per worker: messages it fetched and has not acknowledged."""
        with self.client() as client:
            return {
                key.decode(): int(client.scard(key))
                for key in client.scan_iter(f"dramatiq:__acks__.*.{self.QUEUE}")
            }

    def queued_payment_ids(self) -> set[str]:
        """The payments whose settle message Redis still holds, fetched or not."""
        with self.client() as client:
            messages: list[bytes] = client.hvals(f"dramatiq:{self.QUEUE}.msgs")  # type: ignore[assignment]
        return {json.loads(message)["args"][0] for message in messages}

    def redeliver_from_silent_workers(self, *, silent_for_ms: int) -> None:
        """Run Dramatiq's own maintenance pass now, with a heartbeat timeout of
        ``silent_for_ms``: every message held by a worker that has not been heard from
        for that long goes back to the queue, as it would after ~20 minutes."""
        with self.client() as client:
            broker = RedisBroker(  # type: ignore[no-untyped-call]
                client=client,
                heartbeat_timeout=silent_for_ms,
                maintenance_chance=MAINTENANCE_SCALE,
            )
            broker.do_qsize(self.QUEUE)
