"""The sweep leaves a backlog to the messages settling it, and takes over once they stop."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.settings import Settings
from shared.store import Database
from tests.worker.test_worker import _count, _funded_pair, _submit
from worker.settler import Settler

GROUP = 4


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, settle_group=GROUP)


@pytest.fixture
def settler(db: Database, settings: Settings) -> Settler:
    return Settler(db, settings)  # not started: nothing is settled ahead


def _sweep(settler: Settler) -> int:
    """One pass over everything pending, however new."""
    return settler.sweep(older_than=timedelta(0), limit=100)


def _pending(db: Database) -> int:
    return _count(db, "SELECT count(*) FROM payments WHERE status = 'pending'")


def test_a_pass_right_after_messages_settled_a_group_is_skipped(
    db: Database, settler: Settler
) -> None:
    user_id, sender, receiver = _funded_pair(db, 100)
    ids = _submit(db, user_id, sender, receiver, 3 * GROUP)

    settler.settle(ids[0])  # a message: its group is the oldest four
    assert _pending(db) == 2 * GROUP

    assert _sweep(settler) == 0
    assert _pending(db) == 2 * GROUP

    settler.settle(ids[GROUP])  # messages still settling: the next pass is skipped too
    assert _sweep(settler) == 0
    assert _pending(db) == GROUP

    # No group since the last pass: the sweep settles what the messages left.
    assert _sweep(settler) == GROUP
    assert _pending(db) == 0


def test_messages_whose_payments_are_settled_already_do_not_hold_the_sweep_off(
    db: Database, settler: Settler
) -> None:
    user_id, sender, receiver = _funded_pair(db, 100)
    ids = _submit(db, user_id, sender, receiver, 2 * GROUP)
    settler.settle(ids[0])
    assert _sweep(settler) == 0

    for payment_id in ids[1:GROUP]:
        settler.settle(payment_id)  # settled by the first group: no group of their own

    assert _sweep(settler) == GROUP
    assert _pending(db) == 0


def test_a_payment_whose_message_was_lost_is_settled_by_the_next_message(
    db: Database, settler: Settler
) -> None:
    user_id, sender, receiver = _funded_pair(db, 100)
    lost, delivered = _submit(db, user_id, sender, receiver, 2)

    settler.settle(delivered)

    status = db.connection().execute("SELECT status FROM payments WHERE id = ?", (lost,))
    assert status.fetchone()[0] == "completed"
