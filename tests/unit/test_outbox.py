"""G11's first half: every change the contract names writes its event in the same
transaction, for each user who may read it, with the object as that user reads it; a
change that does not commit leaves no event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import accounts
from shared.engine import settle_payment, settle_pending
from shared.errors import AccountFrozen, SameAccount
from shared.events import public
from shared.payments import (
    Transfer,
    TransferRequest,
    get_payment,
    submit_transfer,
    submit_transfers,
)
from shared.records import AccountStatus, Payment
from shared.store import Database
from tests.backends import cure, poison
from tests.unit.helpers import Customer, count_rows, fund, new_key, pay

Seen = tuple[str, dict[str, Any]]


def events_of(db: Database, user_id: str) -> list[Seen]:
    """The user's events, oldest first: (type, object)."""
    found = db.connection().execute(
        "SELECT type, object FROM events WHERE user_id = ? ORDER BY seq", (user_id,)
    )
    return [(row["type"], json.loads(row["object"])) for row in found]


def as_read_by(db: Database, user_id: str, payment: Payment) -> dict[str, Any]:
    """The payment as ``GET /payments/{id}`` shows it to ``user_id`` now."""
    return public(get_payment(db, user_id, payment.id))


def test_a_transfer_tells_both_owners_it_was_created(
    db: Database, alice: Customer, bob: Customer
) -> None:
    before = {c.user.id: events_of(db, c.user.id) for c in (alice, bob)}

    payment = pay(db, alice.main, bob.main, 300)

    for customer in (alice, bob):
        assert events_of(db, customer.user.id)[len(before[customer.user.id]) :] == [
            ("payment.created", as_read_by(db, customer.user.id, payment))
        ]


def test_a_transfer_between_ones_own_accounts_is_told_once(db: Database, alice: Customer) -> None:
    payment = pay(db, alice.main, alice.savings, 300)
    settle_payment(db, payment.id)

    told = [e for e in events_of(db, alice.user.id) if e[1]["id"] == payment.id]
    assert [event_type for event_type, _ in told] == ["payment.created", "payment.completed"]


def test_settling_tells_both_owners_the_outcome_as_each_reads_it(
    db: Database, alice: Customer, bob: Customer
) -> None:
    done = pay(db, alice.main, bob.main, 300)
    short = pay(db, alice.main, bob.main, 5000)

    settle_pending(db, limit=10)

    for customer in (alice, bob):
        told = events_of(db, customer.user.id)[-2:]
        assert told == [
            ("payment.completed", as_read_by(db, customer.user.id, done)),
            ("payment.failed", as_read_by(db, customer.user.id, short)),
        ]
    # The failure is about Alice's account: Bob reads no more than the code.
    alice_reads = events_of(db, alice.user.id)[-1][1]["failure_detail"]
    bob_reads = events_of(db, bob.user.id)[-1][1]["failure_detail"]
    assert alice.main.id in alice_reads
    assert alice.main.id not in bob_reads
    assert bob_reads == "the sending account lacks the funds for this payment"


def test_a_deposit_tells_its_owner(db: Database, alice: Customer, bob: Customer) -> None:
    bobs = events_of(db, bob.user.id)

    deposit = fund(db, alice.main, 250)

    assert events_of(db, alice.user.id)[-1] == ("deposit.created", public(deposit))
    assert events_of(db, bob.user.id) == bobs


def test_freezing_and_unfreezing_tell_the_owner_once_each(db: Database, alice: Customer) -> None:
    for status in (AccountStatus.FROZEN, AccountStatus.FROZEN, AccountStatus.ACTIVE):
        db.run(accounts.set_status, alice.user.id, alice.main.id, status)

    told = [e for e in events_of(db, alice.user.id) if e[0] == "account.updated"]
    assert [obj["status"] for _, obj in told] == ["frozen", "active"]
    assert told[-1][1] == public(accounts.get_account(db, alice.user.id, alice.main.id))


def test_a_settle_that_rolls_back_writes_no_event(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 300)
    before = count_rows(db, "events")
    poison(db, payment.id)

    with pytest.raises(db.engine.integrity_error, match="poisoned row"):
        settle_payment(db, payment.id)

    assert count_rows(db, "events") == before
    cure(db)
    settle_payment(db, payment.id)
    assert count_rows(db, "events") == before + 2


def test_refused_writes_record_no_event(db: Database, alice: Customer, bob: Customer) -> None:
    before = count_rows(db, "events")
    db.run(accounts.set_status, alice.user.id, alice.savings.id, AccountStatus.FROZEN)
    before += 1

    with pytest.raises(SameAccount):
        db.run(
            submit_transfer, alice.user.id, Transfer(alice.main.id, alice.main.id, 1, "USD"), "k"
        )
    with pytest.raises(AccountFrozen):
        fund(db, alice.savings, 10)

    assert count_rows(db, "events") == before


def test_every_payment_and_deposit_has_its_events(
    db: Database, alice: Customer, bob: Customer
) -> None:
    requests = [
        TransferRequest(
            alice.user.id, Transfer(alice.main.id, bob.main.id, 10 + n, "USD"), new_key()
        )
        for n in range(40)
    ]
    db.run(submit_transfers, requests)
    settle_pending(db, limit=100)

    conn = db.connection()
    # Each payment between Alice and Bob: created and settled, for each of them.
    unmatched = conn.execute(
        "SELECT payments.id FROM payments WHERE (SELECT count(*) FROM events"
        " WHERE events.object LIKE '%' || payments.id || '%') <> 4"
    ).fetchall()
    assert unmatched == []
    deposits = conn.execute(
        "SELECT deposits.id FROM deposits WHERE NOT EXISTS (SELECT 1 FROM events"
        " WHERE type = 'deposit.created' AND events.object LIKE '%' || deposits.id || '%')"
    ).fetchall()
    assert deposits == []
