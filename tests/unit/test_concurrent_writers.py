"""Several processes writing at once, each with a ``Database`` of its own (its own
connections; on SQLite its own writer lock): the races PostgreSQL lets happen, with any
number of API and worker processes, end as they do on one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

import pytest

from shared import accounts
from shared.audit import verify
from shared.committer import GroupCommitter
from shared.engine import settle_pending
from shared.errors import EmailTaken, LastApiKey, TooManyApiKeys
from shared.payments import Transfer, submit_transfer
from shared.records import Deposit, PaymentStatus
from shared.store import Connection, Database
from shared.users import create_api_key, key_id_of, revoke_api_key, sign_up
from tests.unit.helpers import Customer, balance_of, count_rows, pay, reopened

P = ParamSpec("P")
T = TypeVar("T")

DEADLINE_S = 30.0


@pytest.fixture
def other(db: Database) -> Iterator[Database]:
    """The same store, as another process would open it."""
    database = reopened(db)
    yield database
    database.close()


def _race(
    first: Database,
    second: Database,
    fn: Callable[Concatenate[Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> tuple[T, T]:
    """``fn`` in a transaction on ``first`` held open until ``second`` has started the
    same write (and, with a lock, waits for it); then both commit."""
    entered = threading.Event()
    release = threading.Event()

    def held() -> T:
        with first.write() as conn:
            value = fn(conn, *args, **kwargs)
            entered.set()
            assert release.wait(DEADLINE_S)
            return value

    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(held)
        assert entered.wait(DEADLINE_S)
        two: Future[T] = pool.submit(second.run, fn, *args, **kwargs)
        # The second blocks on the first's lock: on SQLite the writer lock, on PostgreSQL
        # the sender's (or the email's) row. It cannot finish before the first commits.
        with pytest.raises(TimeoutError):
            two.result(timeout=0.3)
        release.set()
        return one.result(DEADLINE_S), two.result(DEADLINE_S)


def test_concurrent_transfers_with_one_key_make_one_payment(
    db: Database, other: Database, alice: Customer, bob: Customer
) -> None:
    transfer = Transfer(alice.main.id, bob.main.id, 100, "USD")

    (first, replayed_first), (second, replayed_second) = _race(
        db, other, submit_transfer, alice.user.id, transfer, "same-key"
    )

    assert (replayed_first, replayed_second) == (False, True)
    assert second == first
    assert count_rows(db, "payments") == 1
    assert verify(db) == []


def test_concurrent_deposits_with_one_key_make_one_deposit(
    db: Database, other: Database, alice: Customer
) -> None:
    def deposit(conn: Any) -> tuple[Any, bool]:
        return accounts.deposit(
            conn, alice.user.id, alice.main.id, amount=25, description=None, idempotency_key="k"
        )

    (first, replayed_first), (second, replayed_second) = _race(db, other, deposit)

    assert (replayed_first, replayed_second) == (False, True)
    assert second == first
    assert balance_of(db, alice.main.id) == 1025
    assert verify(db) == []


def test_concurrent_sign_ups_with_one_email_make_one_user(db: Database, other: Database) -> None:
    def sign_up_twice() -> None:
        _race(db, other, sign_up, "Ada", "ada@example.com")

    with pytest.raises(EmailTaken):
        sign_up_twice()

    assert count_rows(db, "users") == 1


def test_concurrent_key_creations_never_pass_the_cap(db: Database, other: Database) -> None:
    user, _ = db.run(sign_up, "Ada", "ada@example.com")

    with pytest.raises(TooManyApiKeys):
        _race(db, other, create_api_key, user.id, max_keys=2)

    assert _live_keys(db, user.id) == 2


def test_concurrent_revocations_never_revoke_the_last_key(db: Database, other: Database) -> None:
    user, first = db.run(sign_up, "Ada", "ada@example.com")
    second = db.run(create_api_key, user.id, max_keys=10).api_key

    def revoke_the_other(conn: Any, mine: str) -> object:
        # Each revokes the key that is not "its own": only the first may pass.
        other_key = second if mine == first else first
        return revoke_api_key(conn, user.id, key_id_of(other_key))

    entered = threading.Event()
    release = threading.Event()

    def held() -> object:
        with db.write() as conn:
            revoked = revoke_the_other(conn, first)
            entered.set()
            assert release.wait(DEADLINE_S)
            return revoked

    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(held)
        assert entered.wait(DEADLINE_S)
        two = pool.submit(other.run, revoke_the_other, second)
        with pytest.raises(TimeoutError):
            two.result(timeout=0.3)
        release.set()
        one.result(DEADLINE_S)
        with pytest.raises(LastApiKey):
            two.result(DEADLINE_S)

    assert _live_keys(db, user.id) == 1


def test_three_hundred_key_creations_at_once_stop_at_the_cap(db: Database) -> None:
    user, _ = db.run(sign_up, "Ada", "ada@example.com")
    stores = [reopened(db) for _ in range(4)]

    def create(n: int) -> bool:
        try:
            stores[n % len(stores)].run(create_api_key, user.id, max_keys=10)
        except TooManyApiKeys:
            return False
        return True

    try:
        with ThreadPoolExecutor(8) as pool:
            created = list(pool.map(create, range(300)))
    finally:
        for store in stores:
            store.close()

    assert sum(created) == 9
    assert _live_keys(db, user.id) == 10


def _live_keys(db: Database, user_id: str) -> int:
    live: int = (
        db.connection()
        .execute(
            "SELECT count(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL", (user_id,)
        )
        .fetchone()[0]
    )
    return live


def test_workers_settling_at_once_settle_each_payment_exactly_once(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    customers = (alice, bob, carol)
    # Every account pays every other, over and over: groups of different workers share
    # accounts, so their locks would cross if they were not taken in one order.
    submitted = [
        pay(db, sender.main, receiver.main, 7 + n)
        for n in range(20)
        for sender in customers
        for receiver in customers
        if sender is not receiver
    ]
    workers = [reopened(db) for _ in range(4)]

    def work(worker: Database) -> list[str]:
        settled: list[str] = []
        while batch := settle_pending(worker, limit=5):
            settled.extend(payment.id for payment in batch)
        return settled

    try:
        with ThreadPoolExecutor(len(workers)) as pool:
            results = [f.result(DEADLINE_S * 4) for f in [pool.submit(work, w) for w in workers]]
    finally:
        for worker in workers:
            worker.close()

    settled = [payment_id for result in results for payment_id in result]
    assert sorted(settled) == sorted(payment.id for payment in submitted)  # each exactly once
    statuses = {
        row["status"] for row in db.connection().execute("SELECT status FROM payments").fetchall()
    }
    assert statuses <= {PaymentStatus.COMPLETED.value, PaymentStatus.FAILED.value}
    assert sum(balance_of(db, c.main.id) for c in customers) == 3 * 1000
    assert verify(db) == []


@pytest.mark.postgresql_only  # SQLite has one writer at a time: it cannot deadlock
def test_api_writes_from_two_processes_locking_in_opposite_orders_never_deadlock(
    db: Database, other: Database, alice: Customer, bob: Customer
) -> None:
    """Two API processes each get a write to account A then B, and to B then A, at once.
    Shared in one transaction, they would deadlock (PostgreSQL aborts one after a second);
    on PostgreSQL each write is a transaction of its own, holding one account's lock."""
    both_hold_one = threading.Barrier(2)

    def lock(account_id: str, *, then_wait: bool = False) -> Callable[[Any], str]:
        def work(conn: Any) -> str:
            conn.execute("UPDATE accounts SET updated_at = updated_at WHERE id = ?", (account_id,))
            if then_wait:
                both_hold_one.wait(DEADLINE_S)
            return account_id

        return work

    one, two = GroupCommitter(db), GroupCommitter(other)
    try:
        gates = [threading.Event(), threading.Event()]
        for writer, gate in zip((one, two), gates, strict=True):
            writer.submit(_wait_for, gate)  # queue the next two
        futures = [
            one.submit(lock(alice.main.id, then_wait=True)),
            one.submit(lock(bob.main.id)),
            two.submit(lock(bob.main.id, then_wait=True)),
            two.submit(lock(alice.main.id)),
        ]
        for gate in gates:
            gate.set()
        results = [future.result(DEADLINE_S) for future in futures]
    finally:
        one.close()
        two.close()

    assert results == [alice.main.id, bob.main.id, bob.main.id, alice.main.id]
    assert (one.groups, two.groups) == (3, 3)  # the gate, then each write alone


def _wait_for(conn: Connection, gate: threading.Event) -> bool:
    return gate.wait(DEADLINE_S)


@pytest.mark.postgresql_only  # SQLite has one writer at a time: it cannot deadlock
def test_a_deposit_and_a_transfer_queued_together_never_deadlock_with_a_settle(
    db: Database, other: Database, alice: Customer, bob: Customer
) -> None:
    """A settling worker (another process) holds bob's account and is about to take the
    commit order, while the API has a deposit to alice and a transfer from bob queued.
    In one transaction, the deposit's events would hold the commit order while the
    transfer waits for bob: a deadlock, which PostgreSQL breaks after a second by
    aborting one side (the committer's would be run again, the deposit with it). Each
    in a transaction of its own, the deposit commits, then the transfer waits for bob."""
    settle_holds_bob, transfer_waits = threading.Event(), threading.Event()
    deposits_run: list[str] = []

    def settle(conn: Connection) -> None:
        conn.engine.lock_accounts(conn, [bob.main.id])
        settle_holds_bob.set()
        assert transfer_waits.wait(DEADLINE_S)
        conn.engine.order_commits(conn)

    def deposit(conn: Connection) -> tuple[Deposit, bool]:
        deposits_run.append(alice.main.id)
        return accounts.deposit(
            conn, alice.user.id, alice.main.id, amount=5, description=None, idempotency_key="d"
        )

    writer = GroupCommitter(db)
    try:
        with ThreadPoolExecutor(1) as pool:
            settling = pool.submit(_in_one_transaction, other, settle)  # never run again
            assert settle_holds_bob.wait(DEADLINE_S)
            gate = threading.Event()
            writer.submit(_wait_for, gate)  # queue the next two behind it
            deposited = writer.submit(deposit)
            transfer = Transfer(bob.main.id, alice.main.id, 7, "USD")
            submitted = writer.submit(submit_transfer, bob.user.id, transfer, "t")
            gate.set()
            _wait_for_a_lock_wait(db)
            transfer_waits.set()
            settling.result(DEADLINE_S)
        assert deposited.result(DEADLINE_S)[1] is False
        assert submitted.result(DEADLINE_S)[1] is False
    finally:
        writer.close()

    assert deposits_run == [alice.main.id]
    assert writer.groups == 3  # the gate, the deposit, the transfer
    assert balance_of(db, alice.main.id) == 1005
    assert verify(db) == []


def _in_one_transaction(db: Database, fn: Callable[[Connection], T]) -> T:
    """``fn`` in one write transaction, not run again if PostgreSQL aborts it."""
    with db.write() as conn:
        return fn(conn)


def _wait_for_a_lock_wait(db: Database) -> None:
    """Until a session on the database waits for a lock another holds."""
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + DEADLINE_S
    while not db.connection().execute(query).fetchone()[0]:
        assert time.monotonic() < deadline, "no session ever waited for a lock"
        threading.Event().wait(0.01)
