from __future__ import annotations

from collections.abc import Sequence

import pytest

from shared.engine import pending_backlog, settle_payment, settle_pending
from shared.records import FailureCode, Payment, PaymentStatus
from shared.store import Database
from tests.backends import poison
from tests.unit.helpers import Customer, pay


class Observed:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls: list[list[Payment]] = []

    def __call__(self, payments: Sequence[Payment]) -> None:
        # Told after the commit: another connection already sees the outcome.
        for payment in payments:
            row = self.db.connection().execute(
                "SELECT status FROM payments WHERE id = ?", (payment.id,)
            )
            assert row.fetchone()[0] == payment.status
        self.calls.append(list(payments))


def test_a_group_is_observed_once_after_its_commit_with_every_outcome(
    db: Database, alice: Customer, bob: Customer
) -> None:
    observed = Observed(db)
    ids = [pay(db, alice.main, bob.main, 400).id for _ in range(3)]  # 1000: the third fails

    settle_pending(db, limit=10, observe=observed)

    [group] = observed.calls
    assert [payment.id for payment in group] == ids
    assert [payment.failure_code for payment in group] == [
        None,
        None,
        FailureCode.INSUFFICIENT_FUNDS,
    ]


def test_nothing_is_observed_when_nothing_was_pending(db: Database) -> None:
    observed = Observed(db)

    settle_pending(db, limit=10, observe=observed)

    assert observed.calls == []


def test_a_payment_settled_before_is_not_observed_again(
    db: Database, alice: Customer, bob: Customer
) -> None:
    observed = Observed(db)
    payment = pay(db, alice.main, bob.main, 10)

    settle_payment(db, payment.id, observe=observed)
    again = settle_payment(db, payment.id, observe=observed)

    assert again is not None
    assert again.status is PaymentStatus.COMPLETED
    assert [[p.id for p in call] for call in observed.calls] == [[payment.id]]


def test_a_rolled_back_settle_is_not_observed(db: Database, alice: Customer, bob: Customer) -> None:
    observed = Observed(db)
    payment = pay(db, alice.main, bob.main, 10)
    poison(db, payment.id)

    with pytest.raises(db.engine.integrity_error, match="poisoned row"):
        settle_payment(db, payment.id, observe=observed)

    assert observed.calls == []


def test_the_pending_backlog_counts_and_dates_the_oldest(
    db: Database, alice: Customer, bob: Customer
) -> None:
    assert pending_backlog(db).count == 0
    assert pending_backlog(db).oldest_created_at is None
    first = pay(db, alice.main, bob.main, 10)
    pay(db, bob.main, alice.main, 10)

    backlog = pending_backlog(db)

    assert backlog.count == 2
    assert backlog.oldest_created_at == first.created_at
    settle_pending(db, limit=1)
    assert pending_backlog(db).count == 1
    assert pending_backlog(db).oldest_created_at != first.created_at
