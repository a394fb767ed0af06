"""Refunds: a completed payment's receiver gives some or all of it back.

A refund is a payment of its own, from the original's receiver to its sender, with
``refund_of`` naming the original; the worker settles it like any transfer. What the
refunds of a payment may add up to is kept on the original, in the database:
``refund_reserved`` (its refunds that are not ``failed``: a submit adds to it) and
``refunded_amount`` (its ``completed`` refunds: settling adds to it), and the schema's
``CHECK``s keep refunded_amount <= refund_reserved <= what the original moved. A submit
locks the original and reserves in the same transaction, so however many are submitted
at once, the refunds that are not failed never add up to more than was moved; settling
re-checks, completes (refunded) or fails (the reservation released) in its own
transaction (``RefundBook``).

Idempotency uses the payments table's own ``UNIQUE (from_account_id, idempotency_key)``:
a refund's sender is the original's receiver, so a refund's key is stored in a namespace
of its original (``refund_key``) that no key a client can send reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared import failures
from shared.accounts import MAX_BALANCE, change_pending_out, find_accounts
from shared.clock import from_text, new_id, to_text, utcnow
from shared.enums import EventType
from shared.errors import (
    BalanceLimitExceeded,
    IdempotencyKeyReused,
    NotFound,
    PaymentNotRefundable,
    RefundExceedsPayment,
)
from shared.events import PaymentOwners, payment_events, record_events
from shared.idempotency import fingerprint
from shared.records import FailureCode, Payment, PaymentStatus
from shared.store import Connection, Row, chunks, marks

REFUND_KEY_MARK = "\u21a9"
"""``↩``: starts every stored refund key. The API takes only printable ASCII keys, so no
key a client sends for a transfer is ever one of a refund."""


def refund_key(payment_id: str, idempotency_key: str) -> str:
    """The key a refund of ``payment_id`` is stored under: its scope is (payment, key)."""
    return f"{REFUND_KEY_MARK}{payment_id} {idempotency_key}"


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund as the client asked for it: ``amount`` ``None`` for all that is left."""

    amount: int | None = None
    description: str | None = None

    def fingerprint(self) -> str:
        return fingerprint(kind="refund", amount=self.amount, description=self.description)


def submit_refund(
    conn: Connection, user_id: str, payment_id: str, refund: Refund, idempotency_key: str
) -> tuple[Payment, bool]:
    """Record a refund of ``payment_id`` as ``pending`` and reserve its amount on the
    original; returns the refund and whether it is a replay.

    Raises:
        NotFound: no such payment, or the caller does not own its receiving account.
        IdempotencyKeyReused: the key was used on this payment with another request.
        PaymentNotRefundable: the payment is not completed, or is itself a refund.
        RefundExceedsPayment: nothing is left to refund, or ``amount`` is more than is.
        BalanceLimitExceeded: the refunding account's pending total would pass 2^63 - 1.
    """
    select = conn.engine.select_for_update("SELECT * FROM payments WHERE id = ?")
    row = conn.execute(select, (payment_id,)).fetchone()
    if row is None or row["to_user_id"] != user_id:
        raise NotFound(f"no payment {payment_id}")
    original = Payment.from_row(row)
    key = refund_key(original.id, idempotency_key)
    request_hash = refund.fingerprint()
    before = conn.execute(
        "SELECT * FROM payments WHERE from_account_id = ? AND idempotency_key = ?",
        (original.to_account_id, key),
    ).fetchone()
    if before is not None:
        if before["request_hash"] != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used on this payment for a different refund"
            )
        return _seen_by(before, user_id), True
    if original.refund_of is not None:
        raise PaymentNotRefundable(f"payment {original.id} is a refund: it cannot be refunded")
    if original.status is not PaymentStatus.COMPLETED:
        raise PaymentNotRefundable(
            f"payment {original.id} is {original.status}: only a completed one can be refunded"
        )
    left = original.moved - row["refund_reserved"]
    amount = left if refund.amount is None else refund.amount
    if left == 0 or amount > left:
        raise RefundExceedsPayment(
            f"payment {original.id} has {left} left to refund, not {amount}"
            if left
            else f"payment {original.id} is refunded in full (counting pending refunds)"
        )
    # The refund's sender is the original's receiver: locked, for its pending_out.
    sender = find_accounts(conn, [original.to_account_id], lock=[original.to_account_id])
    pending_out = sender[original.to_account_id].pending_out
    if pending_out > MAX_BALANCE - amount:
        raise BalanceLimitExceeded(
            f"account {original.to_account_id} has too much pending to accept a refund"
        )
    created_at = to_text(utcnow())
    refund_id = new_id("pay")
    conn.execute(
        "INSERT INTO payments (id, from_account_id, to_account_id, from_user_id, to_user_id,"
        " amount, currency, description, idempotency_key, request_hash, created_at, refund_of)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            refund_id,
            original.to_account_id,
            original.from_account_id,
            row["to_user_id"],
            row["from_user_id"],
            amount,
            original.currency,
            refund.description,
            key,
            request_hash,
            created_at,
            original.id,
        ),
    )
    # The CHECK refund_reserved <= what it moved refuses crossing, whatever raced here.
    conn.execute(
        "UPDATE payments SET refund_reserved = refund_reserved + ? WHERE id = ?",
        (amount, original.id),
    )
    change_pending_out(conn, {original.to_account_id: amount})
    made = Payment(
        id=refund_id,
        from_account_id=original.to_account_id,
        to_account_id=original.from_account_id,
        amount=amount,
        currency=original.currency,
        description=refund.description,
        status=PaymentStatus.PENDING,
        failure_code=None,
        failure_detail=None,
        created_at=from_text(created_at),
        completed_at=None,
        refund_of=original.id,
    )
    owners = PaymentOwners(made, row["to_user_id"], row["from_user_id"])
    record_events(conn, payment_events(EventType.PAYMENT_CREATED, [owners]))
    return made, False


def _seen_by(row: Row, user_id: str) -> Payment:
    return failures.as_seen_by(
        Payment.from_row(row),
        owns_sender=row["from_user_id"] == user_id,
        owns_receiver=row["to_user_id"] == user_id,
    )


@dataclass(slots=True)
class _Original:
    """What settling a refund reads and changes of the payment it refunds."""

    moved: int
    refunded: int
    reserved: int
    refunded_change: int = 0
    reserved_change: int = 0


class RefundBook:
    """What a settling transaction's refunds do to their originals: read and locked
    once, judged refund after refund, then written in one statement per change.

    The originals are locked before the accounts, as a refund's submit locks its
    original before its account, so that the two never wait for each other.
    """

    def __init__(self, conn: Connection, payments: Sequence[Payment]) -> None:
        self._originals: dict[str, _Original] = {}
        ids = sorted({p.refund_of for p in payments if p.refund_of is not None})
        for chunk in chunks(ids):
            select = conn.engine.select_for_update(
                "SELECT id, amount, captured_amount, refunded_amount, refund_reserved"
                f" FROM payments WHERE id IN ({marks(len(chunk))}) ORDER BY id"
            )
            for row in conn.execute(select, chunk):
                moved = row["amount"] if row["captured_amount"] is None else row["captured_amount"]
                self._originals[row["id"]] = _Original(
                    moved, row["refunded_amount"], row["refund_reserved"]
                )

    def judge(self, refund: Payment) -> tuple[FailureCode, str] | None:
        """Whether the refund would take the original's completed refunds past what it
        moved, or past what its refunds reserved (a refund recorded without its
        reservation): then it fails ``refund_exceeds_payment``."""
        if refund.refund_of is None:
            return None
        original = self._originals.get(refund.refund_of)
        if original is None:
            return FailureCode.REFUND_EXCEEDS_PAYMENT, f"payment {refund.refund_of} is gone"
        refunded = original.refunded + original.refunded_change + refund.amount
        if refunded > min(original.moved, original.reserved + original.reserved_change):
            return FailureCode.REFUND_EXCEEDS_PAYMENT, (
                f"payment {refund.refund_of} would have {refunded} refunded"
                f" of the {original.moved} it moved"
            )
        return None

    def completed(self, refund: Payment) -> None:
        """The refund moved its money: it counts as refunded on its original."""
        if refund.refund_of is not None:
            self._originals[refund.refund_of].refunded_change += refund.amount

    def failed(self, refund: Payment) -> None:
        """The refund failed: its reservation is released, as far as it was made (never
        below what its original has refunded)."""
        original = self._originals.get(refund.refund_of or "")
        if original is None:
            return
        reserved = original.reserved + original.reserved_change
        refunded = original.refunded + original.refunded_change
        original.reserved_change -= min(refund.amount, reserved - refunded)

    def write(self, conn: Connection) -> None:
        changes = [
            (original.refunded_change, original.reserved_change, payment_id)
            for payment_id, original in self._originals.items()
            if original.refunded_change or original.reserved_change
        ]
        conn.executemany(
            "UPDATE payments SET refunded_amount = refunded_amount + ?,"
            " refund_reserved = refund_reserved + ? WHERE id = ?",
            changes,
        )
