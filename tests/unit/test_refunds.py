"""Refunds in the core: the receiver's owner refunds a completed payment, reserved on the
original at submit, re-checked, completed or released at settle; never more than was
moved, however many are submitted at once, on both engines."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import accounts, holds
from shared.accounts import get_account
from shared.audit import RollingAudit, verify
from shared.clock import new_id, to_text, utcnow
from shared.engine import settle_payment, settle_pending
from shared.errors import (
    IdempotencyKeyReused,
    NotFound,
    P2PError,
    PaymentNotRefundable,
    RefundExceedsPayment,
)
from shared.payments import Transfer, get_payment, submit_transfer
from shared.records import (
    Account,
    AccountStatus,
    CaptureMode,
    FailureCode,
    Payment,
    PaymentStatus,
)
from shared.refunds import Refund, refund_key, submit_refund
from shared.store import Database
from tests.unit.helpers import (
    Customer,
    balance_of,
    entries_of_payment,
    new_key,
    pay,
    refused,
    reopened,
    snapshot,
)


def _completed(db: Database, sender: Account, receiver: Account, amount: int) -> Payment:
    payment = settle_payment(db, pay(db, sender, receiver, amount).id)
    assert payment is not None
    assert payment.status is PaymentStatus.COMPLETED, payment
    return payment


def _refund(
    db: Database,
    owner: Customer,
    payment: Payment,
    amount: int | None = None,
    *,
    key: str | None = None,
    description: str | None = None,
) -> Payment:
    refund, replayed = db.run(
        submit_refund, owner.user.id, payment.id, Refund(amount, description), key or new_key()
    )
    assert not replayed
    return refund


def _settled(db: Database, refund: Payment) -> Payment:
    settled = settle_payment(db, refund.id)
    assert settled is not None
    return settled


def _original(db: Database, payment: Payment) -> tuple[int, int]:
    """(refund_reserved, refunded_amount) of the original, as stored."""
    row = (
        db.connection()
        .execute(
            "SELECT refund_reserved, refunded_amount FROM payments WHERE id = ?", (payment.id,)
        )
        .fetchone()
    )
    return row["refund_reserved"], row["refunded_amount"]


def _pending_out(db: Database, account: Account) -> int:
    return get_account(db, account.user_id, account.id).pending_out


# Submit.


def test_a_refund_is_a_pending_payment_back_from_the_receiver_reserved_on_the_original(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)

    refund = _refund(db, bob, original, 120, description="returned goods")

    assert (refund.from_account_id, refund.to_account_id) == (bob.main.id, alice.main.id)
    assert (refund.amount, refund.currency, refund.refund_of) == (120, "USD", original.id)
    assert refund.status is PaymentStatus.PENDING
    assert refund.description == "returned goods"
    assert _original(db, original) == (120, 0)
    assert _pending_out(db, bob.main) == 120
    assert get_payment(db, alice.user.id, refund.id).refund_of == original.id
    assert verify(db) == []


def test_a_settled_refund_moves_the_money_back_and_counts_as_refunded(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)

    refund = _settled(db, _refund(db, bob, original, 120))

    assert refund.status is PaymentStatus.COMPLETED
    assert balance_of(db, alice.main.id) == 1000 - 300 + 120
    assert balance_of(db, bob.main.id) == 1000 + 300 - 120
    assert [
        (e["account_id"], e["direction"], e["amount"]) for e in entries_of_payment(db, refund.id)
    ] == [(bob.main.id, "debit", 120), (alice.main.id, "credit", 120)]
    assert _original(db, original) == (120, 120)
    assert get_payment(db, bob.user.id, original.id).refunded_amount == 120
    assert _pending_out(db, bob.main) == 0
    assert verify(db) == []


def test_a_partial_then_a_full_refund_leave_nothing_to_refund(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)

    first = _settled(db, _refund(db, bob, original, 100))
    rest = _refund(db, bob, original)  # what is left: 200
    before = snapshot(db)

    assert rest.amount == 200
    with pytest.raises(RefundExceedsPayment, match="refunded in full"):
        _refund(db, bob, original)
    with pytest.raises(RefundExceedsPayment):
        _refund(db, bob, original, 1)
    assert snapshot(db) == before
    assert _settled(db, rest).status is PaymentStatus.COMPLETED
    assert first.status is PaymentStatus.COMPLETED
    assert _original(db, original) == (300, 300)
    assert balance_of(db, alice.main.id) == 1000
    assert verify(db) == []


def test_the_default_amount_is_what_pending_refunds_leave(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    _refund(db, bob, original, 250)  # pending, reserved

    assert _refund(db, bob, original).amount == 50


def test_a_refund_above_what_is_left_is_refused_and_records_nothing(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    _refund(db, bob, original, 200)
    before = snapshot(db)

    with pytest.raises(RefundExceedsPayment, match="has 100 left to refund, not 101"):
        _refund(db, bob, original, 101)
    with pytest.raises(RefundExceedsPayment):
        _refund(db, bob, original, 301)

    assert snapshot(db) == before


def test_a_refund_of_a_captured_payment_is_limited_to_what_was_captured(
    db: Database, alice: Customer, bob: Customer
) -> None:
    submitted, _ = db.run(
        submit_transfer,
        alice.user.id,
        Transfer(alice.main.id, bob.main.id, 500, "USD", None, CaptureMode.MANUAL, 3600),
        new_key(),
    )
    assert _settled(db, submitted).status is PaymentStatus.AUTHORIZED
    db.run(
        holds.capture,
        bob.user.id,
        submitted.id,
        amount=200,
        idempotency_key="c",
        render=lambda payment: "{}",
    )
    captured = get_payment(db, bob.user.id, submitted.id)

    with pytest.raises(RefundExceedsPayment, match="200 left"):
        _refund(db, bob, captured, 201)
    assert _refund(db, bob, captured).amount == 200


@pytest.mark.parametrize("outcome", ["pending", "failed", "authorized", "voided"])
def test_only_a_completed_payment_can_be_refunded(
    db: Database, alice: Customer, bob: Customer, outcome: str
) -> None:
    manual = outcome in ("authorized", "voided")
    payment, _ = db.run(
        submit_transfer,
        alice.user.id,
        Transfer(
            alice.main.id,
            bob.main.id,
            5000 if outcome == "failed" else 100,
            "USD",
            None,
            CaptureMode.MANUAL if manual else CaptureMode.AUTOMATIC,
            3600 if manual else None,
        ),
        new_key(),
    )
    if outcome != "pending":
        payment = _settled(db, payment)
    if outcome == "voided":
        db.run(holds.void, bob.user.id, payment.id, idempotency_key="v", render=lambda p: "{}")
    assert get_payment(db, bob.user.id, payment.id).status.value == outcome
    before = snapshot(db)

    with pytest.raises(PaymentNotRefundable, match=f"is {outcome}"):
        _refund(db, bob, payment)
    assert snapshot(db) == before


def test_a_refund_cannot_be_refunded(db: Database, alice: Customer, bob: Customer) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    refund = _settled(db, _refund(db, bob, original, 100))
    before = snapshot(db)

    with pytest.raises(PaymentNotRefundable, match="is a refund"):
        _refund(db, alice, refund)
    assert snapshot(db) == before


def test_only_the_receivers_owner_may_refund(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    before = snapshot(db)

    for stranger in (alice, carol):  # the sender's owner, someone else
        with pytest.raises(NotFound):
            _refund(db, stranger, original)
    with pytest.raises(NotFound):
        db.run(submit_refund, bob.user.id, "pay_nope", Refund(), new_key())
    assert snapshot(db) == before


def test_a_payment_between_ones_own_accounts_is_refunded_by_its_owner(
    db: Database, alice: Customer
) -> None:
    original = _completed(db, alice.main, alice.savings, 300)

    refund = _settled(db, _refund(db, alice, original))

    assert (refund.from_account_id, refund.amount) == (alice.savings.id, 300)
    assert balance_of(db, alice.main.id) == 1000


# Idempotency.


def test_a_replay_answers_the_same_refund_and_reserves_nothing_more(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    first = _refund(db, bob, original, 100, key="r1")

    again, replayed = db.run(submit_refund, bob.user.id, original.id, Refund(100), "r1")

    assert replayed
    assert again.id == first.id
    assert _original(db, original) == (100, 0)
    # Still a replay once it settled, and once nothing is left to refund.
    _settled(db, first)
    _refund(db, bob, original)
    again, replayed = db.run(submit_refund, bob.user.id, original.id, Refund(100), "r1")
    assert replayed
    assert again.status is PaymentStatus.COMPLETED


def test_a_key_used_with_another_refund_of_the_payment_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    _refund(db, bob, original, 100, key="r1")
    before = snapshot(db)

    for other in (Refund(101), Refund(), Refund(100, "other")):
        with pytest.raises(IdempotencyKeyReused):
            db.run(submit_refund, bob.user.id, original.id, other, "r1")
    assert snapshot(db) == before


def test_a_refund_key_is_scoped_to_its_payment_and_apart_from_transfer_keys(
    db: Database, alice: Customer, bob: Customer
) -> None:
    first = _completed(db, alice.main, bob.main, 300)
    second = _completed(db, alice.main, bob.main, 300)

    one = _refund(db, bob, first, 10, key="same")
    two = _refund(db, bob, second, 10, key="same")
    transfer, replayed = db.run(
        submit_transfer,
        bob.user.id,
        Transfer(bob.main.id, alice.main.id, 10, "USD"),
        "same",
    )

    assert len({one.id, two.id, transfer.id}) == 3
    assert not replayed
    assert refund_key(first.id, "same") != "same"


# Settle.


def test_a_refund_the_receiver_cannot_pay_fails_and_releases_its_reservation(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    refund = _refund(db, bob, original, 300)
    _completed(db, bob.main, alice.savings, 1200)  # Bob spends it first

    failed = _settled(db, refund)

    assert (failed.status, failed.failure_code) == (
        PaymentStatus.FAILED,
        FailureCode.INSUFFICIENT_FUNDS,
    )
    assert _original(db, original) == (0, 0)
    assert _pending_out(db, bob.main) == 0
    # Released: it can be refunded again.
    assert _refund(db, bob, original).amount == 300
    assert verify(db) == []


def test_a_refund_from_a_frozen_account_fails_at_settle(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    refund = _refund(db, bob, original, 300)
    db.run(accounts.set_status, bob.user.id, bob.main.id, AccountStatus.FROZEN)

    failed = _settled(db, refund)

    assert failed.failure_code is FailureCode.ACCOUNT_FROZEN
    assert _original(db, original) == (0, 0)
    assert verify(db) == []


def test_a_group_settles_refunds_in_order_each_seeing_those_before(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    other = _completed(db, alice.main, bob.main, 50)
    refunds = [_refund(db, bob, original, 100) for _ in range(3)] + [_refund(db, bob, other)]

    settled = settle_pending(db, limit=10)

    assert [p.id for p in settled] == [r.id for r in refunds]
    assert all(p.status is PaymentStatus.COMPLETED for p in settled)
    assert _original(db, original) == (300, 300)
    assert _original(db, other) == (50, 50)
    assert balance_of(db, alice.main.id) == 1000
    assert verify(db) == []


def test_the_worker_fails_a_refund_that_would_cross_what_the_payment_moved(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    reserved = _refund(db, bob, original, 300)
    # A refund recorded without its reservation (not by this code): the worker's
    # re-check is what stops it.
    stray = new_id("pay")
    db.connection().execute(
        "INSERT INTO payments (id, from_account_id, to_account_id, from_user_id, to_user_id,"
        " amount, currency, idempotency_key, request_hash, created_at, refund_of)"
        " VALUES (?, ?, ?, ?, ?, 50, 'USD', ?, 'raw', ?, ?)",
        (
            stray,
            bob.main.id,
            alice.main.id,
            bob.user.id,
            alice.user.id,
            refund_key(original.id, "raw"),
            to_text(utcnow()),
            original.id,
        ),
    )
    db.run(accounts.change_pending_out, {bob.main.id: 50})

    settled = {p.id: p for p in settle_pending(db, limit=10)}

    assert settled[reserved.id].status is PaymentStatus.COMPLETED
    assert settled[stray].failure_code is FailureCode.REFUND_EXCEEDS_PAYMENT
    assert settled[stray].failure_detail == (
        f"payment {original.id} would have 350 refunded of the 300 it moved"
    )
    assert _original(db, original) == (300, 300)
    assert balance_of(db, alice.main.id) == 1000
    assert verify(db) == []


def test_the_database_refuses_reserving_more_than_was_moved(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)

    with refused(db, "CHECK"), db.write() as conn:
        conn.execute("UPDATE payments SET refund_reserved = 301 WHERE id = ?", (original.id,))


# Racing: never more than was moved.


def test_many_refunds_submitted_at_once_never_reserve_more_than_was_moved(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 1000)
    threads = 8
    pools = [reopened(db) for _ in range(threads)]
    start = threading.Barrier(threads)

    def submit(database: Database) -> list[str]:
        start.wait(10)
        outcomes = []
        for _ in range(5):
            try:
                _refund(database, bob, original, 70)
                outcomes.append("accepted")
            except P2PError as refusal:
                outcomes.append(refusal.code)
        return outcomes

    try:
        with ThreadPoolExecutor(threads + 1) as pool:
            # The worker settles while they submit.
            stop = threading.Event()

            def settle() -> None:
                while not stop.is_set():
                    settle_pending(pools[0], limit=5)

            settler = pool.submit(settle)
            outcomes = [o for f in [pool.submit(submit, d) for d in pools] for o in f.result()]
            stop.set()
            settler.result()
    finally:
        for database in pools:
            database.close()
    settle_pending(db, limit=100)

    assert outcomes.count("accepted") == 1000 // 70
    assert set(outcomes) == {"accepted", "refund_exceeds_payment"}
    assert _original(db, original) == (14 * 70, 14 * 70)
    assert balance_of(db, bob.main.id) == 1000 + 1000 - 14 * 70
    assert verify(db) == []


# The audit (G9).


def test_verify_finds_refunds_that_disagree_with_their_original(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)
    _settled(db, _refund(db, bob, original, 100))
    pending = _refund(db, bob, original, 50)
    # Behind the code's back, within the CHECKs: the original forgets the pending
    # refund's reservation and counts the completed one twice.
    db.connection().execute(
        "UPDATE payments SET refund_reserved = 200, refunded_amount = 200 WHERE id = ?",
        (original.id,),
    )

    found = verify(db)

    assert (
        "refund_reserved differs from the payment's refunds that are not failed:"
        f" {original.id}: refund_reserved 200 but refunds 150"
    ) in found
    assert (
        "refunded_amount differs from the payment's completed refunds:"
        f" {original.id}: refunded_amount 200 but completed refunds 100"
    ) in found
    rolling = RollingAudit(batch=100).run(db)
    assert {v.check for v in rolling.found} >= {
        "refund_reserved differs from the payment's refunds that are not failed",
        "refunded_amount differs from the payment's completed refunds",
    }
    assert pending.status is PaymentStatus.PENDING


def test_verify_finds_refunds_above_what_a_payment_moved_and_refunds_of_the_wrong_payment(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 100)
    failed = settle_payment(db, pay(db, alice.savings, bob.main, 5000).id)
    assert failed is not None
    assert failed.status is PaymentStatus.FAILED
    for refunded, amount in ((original, 150), (failed, 10)):
        db.connection().execute(
            "INSERT INTO payments (id, from_account_id, to_account_id, from_user_id,"
            " to_user_id, amount, currency, idempotency_key, request_hash, created_at,"
            " refund_of) VALUES (?, ?, ?, ?, ?, ?, 'USD', ?, 'raw', ?, ?)",
            (
                new_id("pay"),
                bob.main.id,
                alice.main.id,
                bob.user.id,
                alice.user.id,
                amount,
                new_key(),
                to_text(utcnow()),
                refunded.id,
            ),
        )

    found = verify(db)

    assert any(
        line.startswith(f"refunds of a payment above what it moved: {original.id}")
        for line in found
    ), found
    assert any(
        line.startswith("refund of a payment that is not completed") and failed.id in line
        for line in found
    ), found


def test_a_refund_writes_payment_created_for_both_owners_and_a_refusal_none(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 300)

    refund = _refund(db, bob, original, 100)
    with pytest.raises(RefundExceedsPayment):
        _refund(db, bob, original, 201)

    rows = (
        db.connection()
        .execute(
            "SELECT user_id, object FROM events WHERE type = 'payment.created'"
            " AND object LIKE ? ORDER BY seq",
            (f'%"refund_of":"{original.id}"%',),
        )
        .fetchall()
    )
    assert sorted(row["user_id"] for row in rows) == sorted([alice.user.id, bob.user.id])
    assert all(json.loads(row["object"])["id"] == refund.id for row in rows)
