"""G11's second half: a consumer that keeps its cursor sees every event once and in
commit order, also on PostgreSQL with transactions that commit out of the order they
drew their numbers in, and with many threads and processes writing at once."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from shared import accounts
from shared.enums import EventType
from shared.event_feed import read_events
from shared.events import NewEvent, record_events
from shared.store import Connection, Database
from shared.store.postgres import PostgresEngine
from tests.backends import open_database
from tests.unit.helpers import Customer, new_key, reopened

DEADLINE_S = 30.0


@pytest.fixture
def other(db: Database) -> Iterator[Database]:
    """The same store, as another process would open it."""
    database = reopened(db)
    yield database
    database.close()


def _told(user_id: str, label: str) -> NewEvent:
    return NewEvent(user_id, EventType.ACCOUNT_UPDATED, {"label": label})


def _read_on(db: Database, user_id: str, after: str | None) -> tuple[list[str], str | None]:
    """What a consumer reads after its cursor, every page (each event's object id, or
    its label), and its cursor then."""
    seen: list[str] = []
    while True:
        page = read_events(db, user_id, after=after, limit=100)
        seen += [str(e.object.get("id", e.object.get("label"))) for e in page.data]
        after = page.next_cursor
        if not page.has_more:
            return seen, after


def _waiting_for_a_lock(db: Database) -> bool:
    """Whether a session of this database waits for an advisory lock now."""
    found = (
        db.connection()
        .execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        .fetchone()
    )
    return int(found[0]) > 0


def _commit_out_of_order(
    db: Database, other: Database, user_id: str
) -> tuple[list[str], list[str]]:
    """The first transaction records ``first`` and stays open; the second records
    ``second`` and commits as soon as it may; a consumer reads; then the first commits,
    and the consumer reads on from its cursor. Returns what it read each time."""
    recorded = threading.Event()
    release = threading.Event()

    def first() -> None:
        with db.write() as conn:
            record_events(conn, [_told(user_id, "first")])
            recorded.set()
            assert release.wait(DEADLINE_S)

    def second(conn: Connection) -> None:
        record_events(conn, [_told(user_id, "second")])

    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(first)
        assert recorded.wait(DEADLINE_S)
        two: Future[None] = pool.submit(other.run, second)
        deadline = time.monotonic() + DEADLINE_S
        while not two.done() and not _waiting_for_a_lock(db):
            assert time.monotonic() < deadline, "the second transaction neither waited nor ended"
        before, cursor = _read_on(db, user_id, None)
        release.set()
        one.result(DEADLINE_S)
        two.result(DEADLINE_S)
    after, _ = _read_on(db, user_id, cursor)
    return before, after


@pytest.mark.postgresql_only
def test_a_transaction_that_commits_late_is_not_overtaken_by_one_that_drew_after_it(
    db: Database, other: Database, alice: Customer
) -> None:
    user_id = alice.user.id
    db.connection().execute("DELETE FROM events")

    before, after = _commit_out_of_order(db, other, user_id)

    # The second waited for the first to commit: nothing to read until then, and
    # then both, in the order they committed.
    assert before == []
    assert after == ["first", "second"]


@pytest.mark.postgresql_only
def test_without_ordering_commits_the_consumer_would_skip_the_late_event(
    db: Database, other: Database, alice: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``Engine.order_commits`` prevents, so that the test above means something."""
    monkeypatch.setattr(PostgresEngine, "order_commits", lambda self, conn: None)
    user_id = alice.user.id
    db.connection().execute("DELETE FROM events")

    before, after = _commit_out_of_order(db, other, user_id)

    assert before == ["second"]
    assert after == []  # "first" committed behind the cursor: lost to this consumer


def _deposit_many(url: str, user_id: str, account_id: str, count: int) -> list[str]:
    """``count`` deposits into the account, one transaction each, on a ``Database`` of
    its own (in a child process: as another API process would); their ids in order."""
    db = open_database(url)
    try:
        made = []
        for amount in range(1, count + 1):
            deposit, _ = db.run(
                accounts.deposit,
                user_id,
                account_id,
                amount=amount,
                description=None,
                idempotency_key=new_key(),
            )
            made.append(deposit.id)
        return made
    finally:
        db.close()


def test_a_consumer_following_the_feed_while_threads_and_processes_write_sees_each_event_once_in_commit_order(  # noqa: E501
    db: Database, database_url: str, alice: Customer
) -> None:
    threads, processes, each = 4, 2, 40
    user_id = alice.user.id
    targets = [db.run(accounts.open_account, user_id, "USD") for _ in range(threads + processes)]
    kept, cursor = _read_on(db, user_id, None)
    seen: list[str] = []
    writing = threading.Event()
    writing.set()

    def consume() -> None:
        nonlocal cursor
        while True:
            still_writing = writing.is_set()
            page, cursor = _read_on(db, user_id, cursor)
            seen.extend(page)
            if not still_writing:
                return

    reader = threading.Thread(target=consume)
    reader.start()
    context = multiprocessing.get_context("spawn")
    try:
        with (
            ThreadPoolExecutor(threads) as pool,
            context.Pool(processes) as children,
        ):
            in_children = [
                children.apply_async(_deposit_many, (database_url, user_id, account.id, each))
                for account in targets[threads:]
            ]
            in_threads = [
                pool.submit(_deposit_many, database_url, user_id, account.id, each)
                for account in targets[:threads]
            ]
            by_writer = [f.result(DEADLINE_S * 4) for f in in_threads] + [
                r.get(DEADLINE_S * 4) for r in in_children
            ]
    finally:
        writing.clear()
        reader.join(DEADLINE_S)

    everything, _ = _read_on(db, user_id, None)
    # No gap, no duplicate, in the order the table holds them (commit order).
    assert everything == kept + seen
    assert sorted(seen) == sorted(d for made in by_writer for d in made)
    assert len(seen) == (threads + processes) * each
    # Each writer committed its deposits one after the other: that is their order.
    for made in by_writer:
        mine = set(made)
        assert [d for d in seen if d in mine] == made
