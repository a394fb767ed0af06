"""Two-phase payments in the core: only available money is spent or held, the worker
authorizes, the receiver's owner captures or voids, the worker expires; each ends an
authorization once, on both engines, racing or not."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from shared import accounts, holds
from shared.accounts import get_account
from shared.audit import verify
from shared.clock import utcnow
from shared.engine import settle_payment, settle_pending
from shared.errors import (
    AccountFrozen,
    CaptureExceedsAuthorization,
    IdempotencyKeyReused,
    NotFound,
    PaymentNotAuthorized,
)
from shared.holds import ActionAnswer, expire_due
from shared.payments import Transfer, get_payment, submit_transfer
from shared.records import (
    Account,
    AccountStatus,
    CaptureMode,
    FailureCode,
    Payment,
    PaymentStatus,
)
from shared.store import Database
from tests.unit.helpers import (
    Customer,
    balance_of,
    entries_of_payment,
    new_key,
    pay,
    reopened,
    snapshot,
)

HOUR = 3600


def _submit_manual(
    db: Database, sender: Account, receiver: Account, amount: int, hold_seconds: int = HOUR
) -> Payment:
    payment, replayed = db.run(
        submit_transfer,
        sender.user_id,
        Transfer(sender.id, receiver.id, amount, "USD", None, CaptureMode.MANUAL, hold_seconds),
        new_key(),
    )
    assert not replayed
    return payment


def _authorized(
    db: Database, sender: Account, receiver: Account, amount: int, hold_seconds: int = HOUR
) -> Payment:
    """A manual payment, judged by the worker: authorized."""
    payment = settle_payment(db, _submit_manual(db, sender, receiver, amount, hold_seconds).id)
    assert payment is not None
    assert payment.status is PaymentStatus.AUTHORIZED, payment
    return payment


def _render(payment: Payment) -> str:
    return json.dumps(
        {"id": payment.id, "status": payment.status, "captured": payment.captured_amount}
    )


def _capture(
    db: Database, owner: Customer, payment: Payment, amount: int | None = None, key: str = "c1"
) -> ActionAnswer:
    return db.run(
        holds.capture,
        owner.user.id,
        payment.id,
        amount=amount,
        idempotency_key=key,
        render=_render,
    )


def _void(db: Database, owner: Customer, payment: Payment, key: str = "v1") -> ActionAnswer:
    return db.run(holds.void, owner.user.id, payment.id, idempotency_key=key, render=_render)


def _held(db: Database, account: Account) -> tuple[int, int, int]:
    """(balance, held, available)."""
    seen = get_account(db, account.user_id, account.id)
    return seen.balance, seen.held, seen.available


def _now(db: Database, payment: Payment) -> Payment:
    return get_payment(db, _owner_of(db, payment), payment.id)


def _owner_of(db: Database, payment: Payment) -> str:
    (user_id,) = (
        db.connection()
        .execute("SELECT from_user_id FROM payments WHERE id = ?", (payment.id,))
        .fetchone()
    )
    return str(user_id)


# Judging: only available money.


def test_an_authorization_holds_the_amount_and_moves_nothing(
    db: Database, alice: Customer, bob: Customer
) -> None:
    submitted = _submit_manual(db, alice.main, bob.main, 300, hold_seconds=600)
    assert get_account(db, alice.user.id, alice.main.id).pending_out == 300

    before = utcnow()
    payment = settle_payment(db, submitted.id)

    assert payment is not None
    assert (payment.status, payment.completed_at, payment.captured_amount) == (
        PaymentStatus.AUTHORIZED,
        None,
        None,
    )
    assert payment.expires_at is not None
    assert before + timedelta(seconds=600) <= payment.expires_at
    assert payment.expires_at <= utcnow() + timedelta(seconds=600)
    assert _now(db, payment) == payment
    assert _held(db, alice.main) == (1000, 300, 700)
    assert get_account(db, alice.user.id, alice.main.id).pending_out == 0
    assert balance_of(db, bob.main.id) == 1000
    assert entries_of_payment(db, payment.id) == []
    assert verify(db) == []


def test_held_money_cannot_be_spent_by_a_transfer(
    db: Database, alice: Customer, bob: Customer
) -> None:
    _authorized(db, alice.main, bob.main, 800)

    payment = settle_payment(db, pay(db, alice.main, bob.main, 201).id)

    assert payment is not None
    assert payment.failure_code is FailureCode.INSUFFICIENT_FUNDS
    assert _held(db, alice.main) == (1000, 800, 200)
    paid = settle_payment(db, pay(db, alice.main, bob.main, 200).id)
    assert paid is not None
    assert paid.status is PaymentStatus.COMPLETED
    assert _held(db, alice.main) == (800, 800, 0)
    assert verify(db) == []


def test_held_money_cannot_be_held_twice(db: Database, alice: Customer, bob: Customer) -> None:
    _authorized(db, alice.main, bob.main, 600)

    second = settle_payment(db, _submit_manual(db, alice.main, bob.main, 401).id)

    assert second is not None
    assert (second.status, second.failure_code) == (
        PaymentStatus.FAILED,
        FailureCode.INSUFFICIENT_FUNDS,
    )
    assert (second.expires_at, second.completed_at is not None) == (None, True)
    assert _held(db, alice.main) == (1000, 600, 400)


def test_a_group_judges_each_payment_against_the_holds_before_it(
    db: Database, alice: Customer, bob: Customer
) -> None:
    hold = _submit_manual(db, alice.main, bob.main, 700)
    too_much = pay(db, alice.main, bob.main, 400)
    fits = pay(db, alice.main, bob.main, 300)
    funded_by_bob = _submit_manual(db, bob.main, alice.main, 1300)  # after bob gets 300

    settled = settle_pending(db, limit=10)

    assert [(p.id, p.status) for p in settled] == [
        (hold.id, PaymentStatus.AUTHORIZED),
        (too_much.id, PaymentStatus.FAILED),
        (fits.id, PaymentStatus.COMPLETED),
        (funded_by_bob.id, PaymentStatus.AUTHORIZED),
    ]
    assert _held(db, alice.main) == (700, 700, 0)
    assert _held(db, bob.main) == (1300, 1300, 0)
    assert verify(db) == []


def test_an_authorization_of_a_frozen_account_fails(
    db: Database, alice: Customer, bob: Customer
) -> None:
    db.run(accounts.set_status, bob.user.id, bob.main.id, AccountStatus.FROZEN)

    payment = settle_payment(db, _submit_manual(db, alice.main, bob.main, 100).id)

    assert payment is not None
    assert payment.failure_code is FailureCode.ACCOUNT_FROZEN
    assert _held(db, alice.main) == (1000, 0, 1000)


# Capture.


def test_a_full_capture_moves_the_amount_and_releases_the_hold(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = _authorized(db, alice.main, bob.main, 300)

    answer = _capture(db, bob, payment)

    assert (answer.status_code, answer.replayed) == (200, False)
    assert json.loads(answer.body) == {"id": payment.id, "status": "completed", "captured": 300}
    captured = _now(db, payment)
    assert (captured.status, captured.captured_amount) == (PaymentStatus.COMPLETED, 300)
    assert captured.completed_at is not None
    assert _held(db, alice.main) == (700, 0, 700)
    assert balance_of(db, bob.main.id) == 1300
    entries = [
        (row["account_id"], row["direction"], row["amount"], row["balance_after"])
        for row in entries_of_payment(db, payment.id)
    ]
    assert entries == [(alice.main.id, "debit", 300, 700), (bob.main.id, "credit", 300, 1300)]
    assert verify(db) == []


def test_a_partial_capture_moves_part_and_releases_the_whole_hold(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = _authorized(db, alice.main, bob.main, 1000)

    _capture(db, bob, payment, 250)

    captured = _now(db, payment)
    assert (captured.amount, captured.captured_amount, captured.moved) == (1000, 250, 250)
    assert _held(db, alice.main) == (750, 0, 750)
    assert [row["amount"] for row in entries_of_payment(db, payment.id)] == [250, 250]
    assert verify(db) == []


def test_a_capture_of_more_than_was_authorized_is_refused_and_changes_nothing(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = _authorized(db, alice.main, bob.main, 300)
    before = snapshot(db)

    with pytest.raises(CaptureExceedsAuthorization):
        _capture(db, bob, payment, 301)

    assert snapshot(db) == before


@pytest.mark.parametrize("who", ["sender", "stranger"])
def test_only_the_receivers_owner_may_capture_or_void(
    db: Database, alice: Customer, bob: Customer, carol: Customer, who: str
) -> None:
    payment = _authorized(db, alice.main, bob.main, 300)
    caller = alice if who == "sender" else carol
    before = snapshot(db)

    with pytest.raises(NotFound):
        _capture(db, caller, payment)
    with pytest.raises(NotFound):
        _void(db, caller, payment)

    assert snapshot(db) == before


def test_a_payment_to_ones_own_other_account_is_captured_by_its_owner(
    db: Database, alice: Customer
) -> None:
    payment = _authorized(db, alice.main, alice.savings, 300)

    _capture(db, alice, payment)

    assert _held(db, alice.main) == (700, 0, 700)
    assert balance_of(db, alice.savings.id) == 800


def test_an_unknown_payment_is_not_found(db: Database, bob: Customer) -> None:
    with pytest.raises(NotFound):
        db.run(
            holds.capture, bob.user.id, "pay_nope", amount=None, idempotency_key="k", render=_render
        )


@pytest.mark.parametrize("state", ["pending", "failed", "completed", "captured", "voided"])
def test_a_payment_that_is_not_authorized_cannot_be_captured_or_voided(
    db: Database, alice: Customer, bob: Customer, state: str
) -> None:
    if state == "pending":
        payment = _submit_manual(db, alice.main, bob.main, 300)
    elif state == "failed":
        payment = _submit_manual(db, alice.main, bob.main, 5000)
        settle_payment(db, payment.id)
    elif state == "completed":
        payment = pay(db, alice.main, bob.main, 300)
        settle_payment(db, payment.id)
    else:
        payment = _authorized(db, alice.main, bob.main, 300)
        _capture(db, bob, payment) if state == "captured" else _void(db, bob, payment)
    before = snapshot(db)

    with pytest.raises(PaymentNotAuthorized):
        _capture(db, bob, payment, key="another")
    with pytest.raises(PaymentNotAuthorized):
        _void(db, bob, payment, key="another")

    assert snapshot(db) == before


@pytest.mark.parametrize("frozen", ["sender", "receiver"])
def test_a_capture_while_either_account_is_frozen_is_refused_and_the_hold_stays(
    db: Database, alice: Customer, bob: Customer, frozen: str
) -> None:
    payment = _authorized(db, alice.main, bob.main, 300)
    owner, account = (alice, alice.main) if frozen == "sender" else (bob, bob.main)
    db.run(accounts.set_status, owner.user.id, account.id, AccountStatus.FROZEN)
    before = snapshot(db)

    with pytest.raises(AccountFrozen):
        _capture(db, bob, payment)

    assert snapshot(db) == before
    db.run(accounts.set_status, owner.user.id, account.id, AccountStatus.ACTIVE)
    _capture(db, bob, payment)  # the same key: the refusal was not kept
    assert _held(db, alice.main) == (700, 0, 700)


# Void.


def test_a_void_releases_the_hold_and_moves_nothing(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = _authorized(db, alice.main, bob.main, 300)

    answer = _void(db, bob, payment)

    assert json.loads(answer.body) == {"id": payment.id, "status": "voided", "captured": None}
    voided = _now(db, payment)
    assert (voided.status, voided.completed_at is not None) == (PaymentStatus.VOIDED, True)
    assert _held(db, alice.main) == (1000, 0, 1000)
    assert entries_of_payment(db, payment.id) == []
    assert verify(db) == []


# Idempotency.


def test_a_replay_answers_the_first_answer_again(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = _authorized(db, alice.main, bob.main, 300)
    first = _capture(db, bob, payment, 100, key="k")
    after = snapshot(db)

    again = _capture(db, bob, payment, 100, key="k")

    assert (again.status_code, again.body, again.replayed) == (200, first.body, True)
    assert snapshot(db) == after


def test_a_key_used_with_another_request_on_the_payment_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment = _authorized(db, alice.main, bob.main, 300)
    _capture(db, bob, payment, 100, key="k")

    with pytest.raises(IdempotencyKeyReused):
        _capture(db, bob, payment, 200, key="k")
    with pytest.raises(IdempotencyKeyReused):
        _void(db, bob, payment, key="k")


def test_a_key_is_scoped_to_its_payment(db: Database, alice: Customer, bob: Customer) -> None:
    first = _authorized(db, alice.main, bob.main, 300)
    second = _authorized(db, alice.main, bob.main, 300)

    _void(db, bob, first, key="same")
    answer = _void(db, bob, second, key="same")

    assert not answer.replayed
    assert _now(db, second).status is PaymentStatus.VOIDED


# Expiry.


def test_the_expiry_pass_ends_authorizations_that_are_due_and_only_those(
    db: Database, alice: Customer, bob: Customer
) -> None:
    soon = _authorized(db, alice.main, bob.main, 100, hold_seconds=60)
    later = _authorized(db, alice.main, bob.main, 200, hold_seconds=HOUR)
    assert soon.expires_at is not None

    assert expire_due(db, limit=10, now=soon.expires_at - timedelta(seconds=1)) == []
    [expired] = expire_due(db, limit=10, now=soon.expires_at)

    assert (expired.id, expired.status) == (soon.id, PaymentStatus.EXPIRED)
    assert _now(db, soon).status is PaymentStatus.EXPIRED
    assert _now(db, later).status is PaymentStatus.AUTHORIZED
    assert _held(db, alice.main) == (1000, 200, 800)
    assert entries_of_payment(db, soon.id) == []
    with pytest.raises(PaymentNotAuthorized):
        _capture(db, bob, soon)
    assert verify(db) == []


def test_an_authorization_past_its_expiry_cannot_be_captured_before_the_pass_ends_it(
    db: Database, alice: Customer, bob: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment = _authorized(db, alice.main, bob.main, 100, hold_seconds=60)
    assert payment.expires_at is not None
    late = payment.expires_at
    monkeypatch.setattr(holds, "utcnow", lambda: late)

    with pytest.raises(PaymentNotAuthorized, match="expired"):
        _capture(db, bob, payment)
    with pytest.raises(PaymentNotAuthorized, match="expired"):
        _void(db, bob, payment)


def test_the_expiry_pass_takes_a_bounded_batch_soonest_first(
    db: Database, alice: Customer, bob: Customer
) -> None:
    made = [_authorized(db, alice.main, bob.main, 10, hold_seconds=60 + i) for i in range(5)]

    far = utcnow() + timedelta(days=1)
    first = expire_due(db, limit=3, now=far)
    rest = expire_due(db, limit=3, now=far)

    assert [p.id for p in first + rest] == [p.id for p in made]
    assert _held(db, alice.main) == (1000, 0, 1000)


# Racing: exactly one ends an authorization.


@pytest.fixture
def other(db: Database) -> Iterator[Database]:
    """A second connection pool on the same database: another process, as far as locks go."""
    database = reopened(db)
    yield database
    database.close()


def test_capture_void_and_expiry_racing_end_each_authorization_exactly_once(
    db: Database, other: Database, alice: Customer, bob: Customer
) -> None:
    # Each due a second after the one before: when one is raced, it is the only one due
    # (the expiry pass takes no other, even one it must pass over while it is locked).
    made = [_authorized(db, alice.main, bob.main, 50, hold_seconds=60 + i) for i in range(8)]
    third = reopened(db)
    try:
        for payment in made:
            start = threading.Barrier(3)
            assert payment.expires_at is not None
            due = payment.expires_at

            def capture(payment: Payment = payment, start: threading.Barrier = start) -> str:
                start.wait(10)
                try:
                    _capture(db, bob, payment, 30)
                except PaymentNotAuthorized:
                    return "lost"
                return "captured"

            def void(payment: Payment = payment, start: threading.Barrier = start) -> str:
                start.wait(10)
                try:
                    _void(other, bob, payment)
                except PaymentNotAuthorized:
                    return "lost"
                return "voided"

            def expire(start: threading.Barrier = start, due: datetime = due) -> str:
                start.wait(10)
                return "expired" if expire_due(third, limit=1, now=due) else "lost"

            with ThreadPoolExecutor(3) as pool:
                outcomes = [
                    f.result()
                    for f in [pool.submit(capture), pool.submit(void), pool.submit(expire)]
                ]

            won = [outcome for outcome in outcomes if outcome != "lost"]
            assert len(won) == 1, outcomes
            assert _now(db, payment).status.value == won[0].replace("captured", "completed")
    finally:
        third.close()

    assert _held(db, alice.main)[1] == 0
    captured = sum(_now(db, p).status is PaymentStatus.COMPLETED for p in made)
    assert _held(db, alice.main)[0] == 1000 - 30 * captured
    assert verify(db) == []


def test_each_step_of_an_authorization_writes_its_event_for_both_owners(
    db: Database, alice: Customer, bob: Customer
) -> None:
    captured = _authorized(db, alice.main, bob.main, 100)
    voided = _authorized(db, alice.main, bob.main, 100)
    expiring = _authorized(db, alice.main, bob.main, 100, hold_seconds=60)
    _capture(db, bob, captured, 40)
    _void(db, bob, voided)
    assert expiring.expires_at is not None
    expire_due(db, limit=10, now=expiring.expires_at)

    rows = db.connection().execute(
        "SELECT user_id, type, object FROM events WHERE type LIKE 'payment.%' ORDER BY seq"
    )
    told: dict[tuple[str, str], list[str]] = {}
    for user_id, event_type, text in rows:
        body = json.loads(text)
        told.setdefault((body["id"], user_id), []).append(f"{event_type} {body['status']}")
    for owner in (alice, bob):
        assert told[(captured.id, owner.user.id)][-2:] == [
            "payment.authorized authorized",
            "payment.completed completed",
        ]
        assert told[(voided.id, owner.user.id)][-1] == "payment.voided voided"
        assert told[(expiring.id, owner.user.id)][-1] == "payment.expired expired"
