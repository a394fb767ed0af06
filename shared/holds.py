"""Two-phase payments after the worker authorized them: capture, void and expiry.

The worker authorizes a payment with manual capture (``shared.engine``): its amount is
held on the sender. The owner of the receiving account then captures it (the captured
amount moves, with one debit and one credit entry) or voids it, answered at once,
since the money is reserved already; an authorization left past its ``expires_at`` is
expired by the worker. Whichever comes first ends it, and the whole hold is released.

Each of them ends an authorization in one transaction that locks the payment first,
then its accounts (in id order, as settling does), and finds it still ``authorized``:
on SQLite the one writer at a time, on PostgreSQL the row lock, make the second to come
find it ended, so exactly one of them ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from shared import failures
from shared.accounts import MAX_BALANCE, change_held
from shared.clock import from_text, to_text, utcnow
from shared.engine import insert_entries, lock_ledger_accounts, move
from shared.enums import EventType, PaymentActionKind
from shared.errors import (
    AccountFrozen,
    BalanceLimitExceeded,
    CaptureExceedsAuthorization,
    IdempotencyKeyReused,
    NotFound,
    PaymentNotAuthorized,
)
from shared.events import PaymentOwners, payment_events, record_events
from shared.idempotency import fingerprint
from shared.records import Payment, PaymentStatus
from shared.store import Connection, Database, Row, chunks, marks

Render = Callable[[Payment], str]
"""The answer's body (JSON) for the payment as its viewer reads it: stored with the
action, so that a replay answers exactly what was first sent."""


@dataclass(frozen=True, slots=True)
class ActionAnswer:
    """A capture's or a void's answer: the first one, or that one again (a replay)."""

    status_code: int
    body: str
    replayed: bool


def capture(
    conn: Connection,
    user_id: str,
    payment_id: str,
    *,
    amount: int | None,
    idempotency_key: str,
    render: Render,
) -> ActionAnswer:
    """Move ``amount`` (default: all that was authorized) of an authorized payment from
    its sender to its receiver and release the whole hold: ``completed``.

    Raises:
        NotFound: no such payment, or the caller does not own its receiving account.
        IdempotencyKeyReused: the key was used on this payment with another request.
        PaymentNotAuthorized: the payment is not authorized (or its hold has expired).
        CaptureExceedsAuthorization: ``amount`` is more than was authorized.
        AccountFrozen: the sender or the receiver is frozen (the hold stays).
        BalanceLimitExceeded: the receiver's balance would pass 2^63 - 1.
    """
    request_hash = fingerprint(kind=PaymentActionKind.CAPTURE.value, amount=amount)
    payment, replay = _authorization(conn, user_id, payment_id, idempotency_key, request_hash)
    if replay is not None:
        return replay
    captured = payment.amount if amount is None else amount
    if captured > payment.amount:
        raise CaptureExceedsAuthorization(
            f"a capture of {captured} is more than the {payment.amount} authorized"
        )
    accounts = lock_ledger_accounts(conn, {payment.from_account_id, payment.to_account_id})
    sender, receiver = accounts[payment.from_account_id], accounts[payment.to_account_id]
    for account in (sender, receiver):
        if account.frozen:
            raise AccountFrozen(failures.frozen(account.id))
    if receiver.balance > MAX_BALANCE - captured:
        raise BalanceLimitExceeded(failures.cannot_hold(receiver.id))
    now = to_text(utcnow())
    # The hold first: the debit may take the balance below what was held.
    change_held(conn, {sender.id: -payment.amount})
    sender.held -= payment.amount
    insert_entries(conn, move(sender, receiver, captured, payment.id, now))
    conn.execute(
        "UPDATE payments SET status = 'completed', captured_amount = ?, completed_at = ?"
        " WHERE id = ?",
        (captured, now, payment.id),
    )
    return _answered(
        conn, user_id, payment.id, PaymentActionKind.CAPTURE, idempotency_key, request_hash, render
    )


def void(
    conn: Connection,
    user_id: str,
    payment_id: str,
    *,
    idempotency_key: str,
    render: Render,
) -> ActionAnswer:
    """Release an authorized payment's hold without moving anything: ``voided``.

    Raises:
        NotFound: no such payment, or the caller does not own its receiving account.
        IdempotencyKeyReused: the key was used on this payment with another request.
        PaymentNotAuthorized: the payment is not authorized (or its hold has expired).
    """
    request_hash = fingerprint(kind=PaymentActionKind.VOID.value)
    payment, replay = _authorization(conn, user_id, payment_id, idempotency_key, request_hash)
    if replay is not None:
        return replay
    lock_ledger_accounts(conn, {payment.from_account_id})
    change_held(conn, {payment.from_account_id: -payment.amount})
    conn.execute(
        "UPDATE payments SET status = 'voided', completed_at = ? WHERE id = ?",
        (to_text(utcnow()), payment.id),
    )
    return _answered(
        conn, user_id, payment.id, PaymentActionKind.VOID, idempotency_key, request_hash, render
    )


def _authorization(
    conn: Connection, user_id: str, payment_id: str, idempotency_key: str, request_hash: str
) -> tuple[Payment, ActionAnswer | None]:
    """The payment, locked, if the caller may act on it now; or the answer its key had.

    Raises: NotFound, IdempotencyKeyReused, PaymentNotAuthorized (as ``capture``).
    """
    select = conn.engine.select_for_update("SELECT * FROM payments WHERE id = ?")
    row = conn.execute(select, (payment_id,)).fetchone()
    if row is None or row["to_user_id"] != user_id:
        raise NotFound(f"no payment {payment_id}")
    done = conn.execute(
        "SELECT request_hash, status_code, response FROM payment_actions"
        " WHERE payment_id = ? AND idempotency_key = ?",
        (payment_id, idempotency_key),
    ).fetchone()
    if done is not None:
        if done["request_hash"] != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used on this payment for a different request"
            )
        return Payment.from_row(row), ActionAnswer(done["status_code"], done["response"], True)
    payment = Payment.from_row(row)
    if payment.status is not PaymentStatus.AUTHORIZED:
        raise PaymentNotAuthorized(f"payment {payment_id} is {payment.status}, not authorized")
    assert payment.expires_at is not None  # the database holds it for authorized ones
    if payment.expires_at <= utcnow():
        raise PaymentNotAuthorized(
            f"the authorization of payment {payment_id} expired at {to_text(payment.expires_at)}"
        )
    return payment, None


def _answered(
    conn: Connection,
    user_id: str,
    payment_id: str,
    kind: PaymentActionKind,
    idempotency_key: str,
    request_hash: str,
    render: Render,
) -> ActionAnswer:
    """The answer to a capture or void that ended the authorization, kept for replays;
    last, the event of its ending for the owners of both sides."""
    row = conn.execute("SELECT * FROM payments WHERE id = ?", (payment_id,)).fetchone()
    body = render(_seen_by_receiver(row, user_id))
    conn.execute(
        "INSERT INTO payment_actions (payment_id, idempotency_key, request_hash, kind,"
        " status_code, response, created_at) VALUES (?, ?, ?, ?, 200, ?, ?)",
        (payment_id, idempotency_key, request_hash, kind.value, body, to_text(utcnow())),
    )
    event = (
        EventType.PAYMENT_COMPLETED
        if kind is PaymentActionKind.CAPTURE
        else EventType.PAYMENT_VOIDED
    )
    record_events(conn, payment_events(event, [_owners(row)]))
    return ActionAnswer(200, body, False)


def _owners(row: Row) -> PaymentOwners:
    return PaymentOwners(Payment.from_row(row), row["from_user_id"], row["to_user_id"])


def _seen_by_receiver(row: Row, user_id: str) -> Payment:
    return failures.as_seen_by(
        Payment.from_row(row), owns_sender=row["from_user_id"] == user_id, owns_receiver=True
    )


def expire_due(db: Database, *, limit: int, now: datetime | None = None) -> list[Payment]:
    """Expire the authorizations whose ``expires_at`` has come (at most ``limit``, the
    soonest first), in one transaction: ``expired``, their holds released. Returns them."""
    return db.run(_expire_due, limit=limit, now=now or utcnow())


def _expire_due(conn: Connection, *, limit: int, now: datetime) -> list[Payment]:
    stamp = to_text(now)
    # Claimed: on PostgreSQL one a capture or a void holds is passed over (it is theirs
    # to end), and one they ended meanwhile no longer matches once its lock is free.
    select = conn.engine.select_to_claim(
        "SELECT * FROM payments WHERE status = 'authorized' AND expires_at <= ?"
        " ORDER BY expires_at LIMIT ?"
    )
    rows = conn.execute(select, (stamp, limit)).fetchall()
    if not rows:
        return []
    due = [Payment.from_row(row) for row in rows]
    released: dict[str, int] = {}
    for payment in due:
        released[payment.from_account_id] = (
            released.get(payment.from_account_id, 0) - payment.amount
        )
    lock_ledger_accounts(conn, released)
    change_held(conn, released)
    for chunk in chunks([payment.id for payment in due]):
        conn.execute(
            "UPDATE payments SET status = 'expired', completed_at = ?"
            f" WHERE id IN ({marks(len(chunk))})",
            [stamp, *chunk],
        )
    ended = from_text(stamp)
    expired = [replace(p, status=PaymentStatus.EXPIRED, completed_at=ended) for p in due]
    record_events(
        conn,
        payment_events(
            EventType.PAYMENT_EXPIRED,
            [
                PaymentOwners(payment, row["from_user_id"], row["to_user_id"])
                for payment, row in zip(expired, rows, strict=True)
            ],
        ),
    )
    return expired
