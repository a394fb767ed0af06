"""Settling ahead: a message that finds a backlog has the settler's own thread settle the
next group, and the messages reaching that group's first payment have it settle another."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence

import pytest

from shared import payments
from shared.engine import settle_pending
from shared.records import Payment, PaymentStatus
from shared.settings import Settings
from shared.store import Database
from tests.worker.test_worker import _count, _funded_pair, _submit
from worker import settler as settler_module
from worker.settler import Settler

GROUP = 4
WAIT_S = 10.0


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, settle_group=GROUP)


class Commits:
    """What each commit settled, as the settler tells its observer, in order."""

    def __init__(self) -> None:
        self._groups: queue.Queue[list[str]] = queue.Queue()

    def __call__(self, settled: Sequence[Payment]) -> None:
        self._groups.put([payment.id for payment in settled])

    def next(self) -> list[str]:
        return self._groups.get(timeout=WAIT_S)

    def none_yet(self) -> bool:
        return self._groups.empty()


@pytest.fixture
def commits() -> Commits:
    return Commits()


@pytest.fixture
def settler(db: Database, settings: Settings, commits: Commits) -> Iterator[Settler]:
    settler = Settler(db, settings, observe=commits)
    settler.start()
    yield settler
    settler.stop()


def _pending(db: Database) -> int:
    return _count(db, "SELECT count(*) FROM payments WHERE status = 'pending'")


def test_a_full_group_has_the_next_one_settled_ahead_and_no_further(
    db: Database, settler: Settler, commits: Commits
) -> None:
    user_id, sender, receiver = _funded_pair(db, 100)
    ids = _submit(db, user_id, sender, receiver, 3 * GROUP)

    settler.settle(ids[0])

    assert commits.next() == ids[:GROUP]  # the message's own group
    assert commits.next() == ids[GROUP : 2 * GROUP]  # ahead, without a message
    # Woken by nothing since: the third group waits for the messages to come nearer.
    assert _pending(db) == GROUP
    assert commits.none_yet()

    for payment_id in ids[1:GROUP]:
        settler.settle(payment_id)  # remembered: no database, no wake
    assert commits.none_yet()

    settler.settle(ids[GROUP])  # the first of the group settled ahead: the mark

    assert commits.next() == ids[2 * GROUP :]
    statuses = {payments.get_payment(db, user_id, i).status for i in ids}
    assert statuses == {PaymentStatus.COMPLETED}


def test_a_message_whose_payment_another_settler_got_to_first_has_the_next_group_settled(
    db: Database, settings: Settings, settler: Settler, commits: Commits
) -> None:
    # The messages have caught up with the sweep, or with another worker process.
    user_id, sender, receiver = _funded_pair(db, 100)
    ids = _submit(db, user_id, sender, receiver, 3 * GROUP)
    other = Settler(db, settings)
    other.settle(ids[0])

    settler.settle(ids[1])

    assert commits.next() == ids[GROUP : 2 * GROUP]  # ahead, without a message
    assert _pending(db) == GROUP


def test_a_group_that_is_not_full_leaves_nothing_to_settle_ahead(
    db: Database, settler: Settler, commits: Commits
) -> None:
    user_id, sender, receiver = _funded_pair(db, 100)
    ids = _submit(db, user_id, sender, receiver, GROUP - 1)

    settler.settle(ids[0])

    assert commits.next() == ids
    more, _ = db.run(
        payments.submit_transfer, user_id, payments.Transfer(sender, receiver, 1, "EUR"), "more"
    )
    settler.settle(ids[1])
    assert _pending(db) == 1, "nothing woke the settler's thread"
    settler.settle(more.id)
    assert commits.next() == [more.id]


def test_settling_ahead_that_fails_leaves_each_message_settling_its_own(
    db: Database,
    settler: Settler,
    commits: Commits,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user_id, sender, receiver = _funded_pair(db, 100)
    ids = _submit(db, user_id, sender, receiver, 3 * GROUP)
    failed: queue.Queue[str] = queue.Queue()

    def locked_for_the_thread_ahead(db: Database, **kwargs: object) -> list[Payment]:
        if threading.current_thread().name == "p2p-settle-ahead":
            failed.put("ahead")
            raise db.engine.infrastructure_error[0]("database is locked")
        return settle_pending(db, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(settler_module, "settle_pending", locked_for_the_thread_ahead)

    settler.settle(ids[0])
    assert commits.next() == ids[:GROUP]
    assert failed.get(timeout=WAIT_S) == "ahead"

    settler.settle(ids[GROUP])  # not settled ahead: this message settles its group
    assert commits.next() == ids[GROUP : 2 * GROUP]
    assert failed.get(timeout=WAIT_S) == "ahead"  # and wakes the thread again
    assert _pending(db) == GROUP
    settler.stop()  # the thread logs each failure after raising it: wait for every line
    failures = 2 + failed.qsize()  # it may have been woken again before it stopped
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["settling ahead failed"] * failures


def test_stop_ends_the_thread_and_a_stopped_settler_settles_messages_alone(
    db: Database, settings: Settings, commits: Commits
) -> None:
    settler = Settler(db, settings, observe=commits)
    settler.start()
    settler.stop()
    user_id, sender, receiver = _funded_pair(db, 100)
    ids = _submit(db, user_id, sender, receiver, 2 * GROUP)

    settler.settle(ids[0])

    assert commits.next() == ids[:GROUP]
    assert _pending(db) == GROUP
    assert not any(t.name == "p2p-settle-ahead" for t in threading.enumerate())
