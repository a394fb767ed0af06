"""Group commit: shared transactions, failures rolled back alone, answers only when durable."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from shared import accounts, payments
from shared.committer import GroupCommitter
from shared.errors import NotFound
from shared.records import Payment
from shared.store import Connection, Database
from tests.unit.helpers import Customer, reopened


@pytest.fixture
def writer(db: Database) -> Iterator[GroupCommitter]:
    committer = GroupCommitter(db)
    yield committer
    committer.close()


def _submit(
    writer: GroupCommitter, sender: Customer, receiver: Customer, key: str, amount: int = 1
) -> Future[tuple[Payment, bool]]:
    transfer = payments.Transfer(sender.main.id, receiver.main.id, amount, "USD")
    return writer.submit(payments.submit_transfer, sender.user.id, transfer, key)


def _count(db: Database, sql: str) -> int:
    """Read on a connection of another ``Database``: only what is committed shows."""
    other = reopened(db)
    try:
        value: int = other.connection().execute(sql).fetchone()[0]
    finally:
        other.close()
    return value


def test_writes_queued_together_share_one_transaction_where_the_engine_lets_them(
    db: Database, writer: GroupCommitter, alice: Customer, bob: Customer
) -> None:
    gate = threading.Event()
    # Hold the writer inside a first write, so the next ones queue up behind it.
    blocked = writer.submit(lambda conn: gate.wait(10))
    futures = [_submit(writer, alice, bob, f"key-{n}") for n in range(20)]
    gate.set()

    assert blocked.result(10) is True
    ids = {future.result(10)[0].id for future in futures}

    assert len(ids) == 20
    assert _count(db, "SELECT count(*) FROM payments") == 20
    if db.engine.writes_share_transactions:
        assert writer.groups <= 2  # the blocker's group, then (at most) one for all twenty
    else:
        assert writer.groups == 21  # plain writes, not batched: each in its own


def test_a_failing_write_is_rolled_back_alone(
    db: Database, writer: GroupCommitter, alice: Customer, bob: Customer
) -> None:
    gate = threading.Event()
    writer.submit(lambda conn: gate.wait(10))
    good = _submit(writer, alice, bob, "good")

    def half_then_fail(conn: Connection) -> None:
        conn.execute("UPDATE accounts SET balance = balance + 5 WHERE id = ?", (alice.main.id,))
        raise NotFound("the write changed something, then failed")

    bad = writer.submit(half_then_fail)
    also_good = _submit(writer, alice, bob, "also-good")
    gate.set()

    assert good.result(10)[1] is False
    assert also_good.result(10)[1] is False
    with pytest.raises(NotFound):
        bad.result(10)
    assert accounts.get_account(db, alice.user.id, alice.main.id).balance == 1000
    assert _count(db, "SELECT count(*) FROM payments") == 2


def test_a_result_is_handed_out_only_once_it_is_committed(
    db: Database, writer: GroupCommitter, alice: Customer, bob: Customer
) -> None:
    payment, _ = _submit(writer, alice, bob, "durable").result(10)

    # Another connection sees it: the transaction that holds it has committed.
    assert _count(db, f"SELECT count(*) FROM payments WHERE id = '{payment.id}'") == 1


def test_a_replay_inside_the_same_group_returns_the_first_payment(
    writer: GroupCommitter, alice: Customer, bob: Customer
) -> None:
    gate = threading.Event()
    writer.submit(lambda conn: gate.wait(10))
    first, second = _submit(writer, alice, bob, "same"), _submit(writer, alice, bob, "same")
    gate.set()

    (one, replayed_one), (two, replayed_two) = first.result(10), second.result(10)
    assert one.id == two.id
    assert (replayed_one, replayed_two) == (False, True)


def test_close_commits_what_is_queued(db: Database, alice: Customer, bob: Customer) -> None:
    committer = GroupCommitter(db)
    futures = [_submit(committer, alice, bob, f"late-{n}") for n in range(5)]
    committer.close()

    assert all(future.done() for future in futures)
    assert _count(db, "SELECT count(*) FROM payments") == 5


def test_writes_from_a_loop_are_resolved_on_it_in_one_call_per_commit(
    db: Database, writer: GroupCommitter, alice: Customer, bob: Customer
) -> None:
    async def main() -> tuple[list[tuple[Payment, bool]], list[int], int]:
        loop = asyncio.get_running_loop()
        calls: list[int] = []
        original = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            if getattr(args[0], "__name__", "") == "_resolve":  # the committer's
                calls.append(len(args[1]))
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
        gate = threading.Event()
        blocked = writer.submit(lambda conn: gate.wait(10))
        transfer = payments.Transfer(alice.main.id, bob.main.id, 1, "USD")
        futures = [
            writer.submit_batched_async(
                payments.submit_transfers,
                payments.TransferRequest(alice.user.id, transfer, f"loop-{n}"),
            )
            for n in range(10)
        ]
        gate.set()
        results = await asyncio.gather(*futures)
        assert blocked.result(10) is True
        return results, calls, writer.groups

    results, calls, groups = asyncio.run(main())

    assert len({payment.id for payment, _ in results}) == 10
    assert _count(db, "SELECT count(*) FROM payments") == 10
    # The ten writes shared one commit (the blocker's, or the next), and one call onto
    # the loop resolved all ten.
    assert groups <= 2
    assert calls == [10]


def test_then_runs_after_the_commit_and_its_failure_is_not_the_writes(
    db: Database, writer: GroupCommitter, alice: Customer, bob: Customer
) -> None:
    seen: list[int] = []

    def count_committed(result: tuple[Payment, bool]) -> None:
        # Runs once the payment is committed: another connection sees it.
        seen.append(_count(db, f"SELECT count(*) FROM payments WHERE id = '{result[0].id}'"))

    def broken(result: tuple[Payment, bool]) -> None:
        raise RuntimeError("the hand-off failed")

    def request(key: str) -> payments.TransferRequest:
        one = payments.Transfer(alice.main.id, bob.main.id, 1, "USD")
        return payments.TransferRequest(alice.user.id, one, key)

    async def main() -> tuple[tuple[Payment, bool], tuple[Payment, bool]]:
        first = await writer.submit_batched_async(
            payments.submit_transfers, request("then-1"), then=count_committed
        )
        second = await writer.submit_batched_async(
            payments.submit_transfers, request("then-2"), then=broken
        )
        return first, second

    first, second = asyncio.run(main())

    assert seen == [1]
    assert first[1] is False
    assert second[1] is False
    assert _count(db, "SELECT count(*) FROM payments") == 2


def test_then_is_not_run_for_a_write_that_failed(writer: GroupCommitter) -> None:
    called: list[object] = []

    def fail(conn: Connection, items: list[str]) -> list[Exception | None]:
        return [NotFound("nothing to write") for _ in items]

    async def main() -> None:
        with pytest.raises(NotFound):
            await writer.submit_batched_async(fail, "item", then=called.append)

    asyncio.run(main())
    assert called == []


def test_batched_writes_of_one_commit_are_run_by_one_call_in_order(
    db: Database, writer: GroupCommitter
) -> None:
    calls: list[list[int] | str] = []

    def record(conn: Connection, items: list[int]) -> list[int | Exception]:
        calls.append(list(items))
        return [item * 10 if item != 3 else NotFound("three") for item in items]

    def plain_write(conn: Connection) -> str:
        calls.append("plain")
        return "plain"

    async def main() -> list[object]:
        gate = threading.Event()
        blocked = writer.submit(lambda conn: gate.wait(10))
        futures: list[asyncio.Future[Any]] = [
            writer.submit_batched_async(record, n) for n in range(5)
        ]
        plain = writer.submit_async(plain_write)
        futures += [writer.submit_batched_async(record, n) for n in range(5, 7)]
        gate.set()
        results: list[object] = await asyncio.gather(*futures, plain, return_exceptions=True)
        assert blocked.result(10) is True
        return results

    results = asyncio.run(main())

    # One call for the run before the plain write, one for the run after it: in the
    # order they were submitted, whether or not they shared a transaction.
    assert calls == [[0, 1, 2, 3, 4], "plain", [5, 6]]
    assert results[:3] + results[4:7] == [0, 10, 20, 40, 50, 60]
    assert isinstance(results[3], NotFound)
    assert results[7] == "plain"
    if db.engine.writes_share_transactions:
        assert writer.groups <= 2  # the blocker's, then (at most) one for the rest
    else:
        assert writer.groups == 4  # the blocker, the first run, the plain write, the run


def test_a_batch_that_fails_is_undone_and_each_write_runs_alone(
    db: Database, writer: GroupCommitter, alice: Customer, bob: Customer
) -> None:
    """Should the set-based call itself fail (here: the insert of a payment that names a
    user who does not exist), only the write at fault fails."""

    def open_for(conn: Connection, owners: list[str]) -> list[str | Exception]:
        return [accounts.open_account(conn, owner, "USD").id for owner in owners]

    async def main() -> list[str | BaseException]:
        gate = threading.Event()
        blocked = writer.submit(lambda conn: gate.wait(10))
        owners = [alice.user.id, "usr_nobody", bob.user.id]
        futures = [writer.submit_batched_async(open_for, owner) for owner in owners]
        gate.set()
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert blocked.result(10) is True
        return results

    first, bad, last = asyncio.run(main())

    assert isinstance(bad, db.engine.integrity_error)
    assert isinstance(first, str)
    assert isinstance(last, str)
    opened = {row[0] for row in db.connection().execute("SELECT id FROM accounts")}
    assert {first, last} <= opened
    assert _count(db, "SELECT count(*) FROM accounts") == 6  # two each for alice, bob
    if db.engine.writes_share_transactions:
        assert writer.groups <= 2  # the blocker's, then (at most) one for the three
    else:
        assert writer.groups == 4  # the blocker, then each write in a transaction of its own
