"""Payments as the API sees them: accept a transfer, read one, list them."""

from __future__ import annotations

from dataclasses import dataclass

from shared.accounts import MAX_BALANCE, find_account, owned_account
from shared.clock import new_id, to_text, utcnow
from shared.db import Database
from shared.dialect import Connection, marks
from shared.errors import (
    BalanceLimitExceeded,
    CurrencyMismatch,
    IdempotencyKeyReused,
    NotFound,
    SameAccount,
)
from shared.idempotency import fingerprint
from shared.pages import cursor_bound, page_of
from shared.records import Page, Payment, PaymentStatus


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer as the client asked for it."""

    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    description: str | None = None


def submit_transfer(
    conn: Connection, user_id: str, transfer: Transfer, idempotency_key: str
) -> tuple[Payment, bool]:
    """Record a transfer as ``pending``; returns the payment and whether it is a replay.

    Only what can never change is checked here; funds and frozen accounts are the
    worker's to judge when it settles.

    Raises:
        SameAccount: sender and receiver are one account.
        NotFound: the sender is unknown or not the caller's, or the receiver is unknown.
        IdempotencyKeyReused: the key was used on this sender with another body.
        CurrencyMismatch: either account holds another currency.
        BalanceLimitExceeded: the sender's pending total would pass 2^63 - 1.
    """
    if transfer.from_account_id == transfer.to_account_id:
        raise SameAccount("a transfer needs two different accounts")
    request_hash = fingerprint(
        from_account_id=transfer.from_account_id,
        to_account_id=transfer.to_account_id,
        amount=transfer.amount,
        currency=transfer.currency,
        description=transfer.description,
    )
    # The sender is locked first: its pending_out is read to be changed, and a concurrent
    # transfer with the same key (another API process) waits here, then replays this one.
    sender = owned_account(conn, user_id, transfer.from_account_id, lock=True)
    existing = conn.execute(
        "SELECT * FROM payments WHERE from_account_id = ? AND idempotency_key = ?",
        (transfer.from_account_id, idempotency_key),
    ).fetchone()
    if existing is not None:
        if existing["request_hash"] != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a transfer with a different body"
            )
        return Payment.from_row(existing), True
    receiver = find_account(conn, transfer.to_account_id)
    if receiver is None:
        raise NotFound(f"no account {transfer.to_account_id}")
    for account in (sender, receiver):
        if account.currency != transfer.currency:
            raise CurrencyMismatch(f"account {account.id} does not hold {transfer.currency}")
    if sender.pending_out > MAX_BALANCE - transfer.amount:
        raise BalanceLimitExceeded(
            f"account {sender.id} has too much pending to accept another transfer"
        )
    row = conn.execute(
        "INSERT INTO payments (id, from_account_id, to_account_id, from_user_id,"
        " to_user_id, amount, currency, description, idempotency_key, request_hash,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        (
            new_id("pay"),
            sender.id,
            receiver.id,
            sender.user_id,
            receiver.user_id,
            transfer.amount,
            transfer.currency,
            transfer.description,
            idempotency_key,
            request_hash,
            to_text(utcnow()),
        ),
    ).fetchone()
    conn.execute(
        "UPDATE accounts SET pending_out = pending_out + ? WHERE id = ?",
        (transfer.amount, sender.id),
    )
    return Payment.from_row(row), False


def get_payment(db: Database, user_id: str, payment_id: str) -> Payment:
    """A payment, to the owner of its sender or of its receiver.

    Raises:
        NotFound: no such payment, or none of the caller's.
    """
    row = (
        db.connection()
        .execute(
            "SELECT * FROM payments WHERE id = ? AND (from_user_id = ? OR to_user_id = ?)",
            (payment_id, user_id, user_id),
        )
        .fetchone()
    )
    if row is None:
        raise NotFound(f"no payment {payment_id}")
    return Payment.from_row(row)


def settled_among(db: Database, payment_ids: list[str]) -> list[Payment]:
    """Those of ``payment_ids`` that are no longer pending (for long-polls)."""
    if not payment_ids:
        return []
    rows = (
        db.connection()
        .execute(
            f"SELECT * FROM payments WHERE id IN ({marks(len(payment_ids))})"
            " AND status <> 'pending'",
            payment_ids,
        )
        .fetchall()
    )
    return [Payment.from_row(row) for row in rows]


def list_payments(
    db: Database,
    user_id: str,
    *,
    account_id: str | None,
    status: PaymentStatus | None,
    limit: int,
    cursor: str | None,
) -> Page[Payment]:
    """The caller's payments, sent or received, newest first; optionally of one account.

    Each side is a keyset scan of its own index, so a page costs the same at any depth.

    Raises:
        NotFound: ``account_id`` is not one of the caller's accounts.
        InvalidCursor: the cursor was not handed out by this service.
    """
    before = cursor_bound(cursor)
    with db.read() as conn:
        if account_id is None:
            column, owner = "user_id", user_id
        else:
            owned_account(conn, user_id, account_id)
            column, owner = "account_id", account_id
        status_clause = "" if status is None else "AND status = :status"
        rows = conn.execute(
            f"""
            SELECT * FROM (
                SELECT * FROM payments WHERE from_{column} = :owner AND seq < :before
                {status_clause} ORDER BY seq DESC LIMIT :n) AS sent
            UNION ALL
            SELECT * FROM (
                SELECT * FROM payments WHERE to_{column} = :owner AND seq < :before
                AND from_{column} <> :owner {status_clause} ORDER BY seq DESC LIMIT :n) AS received
            ORDER BY seq DESC LIMIT :n
            """,
            {"owner": owner, "before": before, "n": limit + 1, "status": status},
        ).fetchall()
    return page_of(rows, limit, Payment.from_row)
