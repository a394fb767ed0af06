"""Batches: up to 1,000 transfers in one request, under one ``Idempotency-Key``, recorded
in one transaction.

Each item is checked by the code that checks a transfer submitted alone
(``shared.payments.judge_transfers``), in the batch's order, as if submitted one after
the other; one refused item refuses the whole batch with that item's problem
(``BatchItemRefused``, naming its index), and nothing is recorded. The batch's payments
are then inserted in one statement, so their ``seq`` follows the batch's order and the
worker settles them in it (``shared.engine``; an atomic batch whole: ``shared.batch_settling``).

A batch's key is scoped to its caller (``batches``' ``UNIQUE (user_id,
idempotency_key)``). Its items carry none of their own: each gets one derived from the
batch's key and its index, joined by a character no client's key may hold, so a batch's
payments never collide with the keys of transfers submitted alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared import failures
from shared.clock import from_text, new_id, to_text, utcnow
from shared.errors import BatchItemRefused, IdempotencyKeyReused, InvalidCursor, NotFound, P2PError
from shared.idempotency import fingerprint
from shared.pages import cursor_item, page_of
from shared.payments import Transfer, TransferRequest, judge_transfers
from shared.records import Batch, Page, Payment, PaymentStatus
from shared.store import Connection, Database, Row

MAX_ITEMS = 1_000

_ITEM_KEY_SEPARATOR = "\x1f"
"""ASCII's unit separator: a client's key is printable ASCII (``api.deps``), so a key
holding this one was derived here."""


def item_key(batch_key: str, index: int) -> str:
    """The ``Idempotency-Key`` the item at ``index`` of a batch is recorded under."""
    return f"{batch_key}{_ITEM_KEY_SEPARATOR}{index}"


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """A batch as the client asked for it, who asks, and under which key."""

    user_id: str
    atomic: bool
    transfers: Sequence[Transfer]
    idempotency_key: str

    def fingerprint(self) -> str:
        """The request's meaning, for its ``Idempotency-Key``: the mode and each item's,
        in one digest."""
        return fingerprint(atomic=self.atomic, transfers=[t.meaning() for t in self.transfers])


@dataclass(frozen=True, slots=True)
class BatchAccepted:
    """A batch and its payments, in the batch's order."""

    batch: Batch
    payments: list[Payment]


def submit_batch(conn: Connection, request: BatchRequest) -> tuple[BatchAccepted, bool]:
    """Record the batch and its payments, ``pending``; returns them and whether this is
    a replay (then they are as they are now).

    Raises:
        IdempotencyKeyReused: the caller used the key for a batch with another body.
        BatchItemRefused: an item is refused as ``submit_transfer`` would refuse it
            alone after the items before it; nothing is recorded.
    """
    request_hash = request.fingerprint()
    replay = _replay(conn, request, request_hash)
    if replay is not None:
        return replay, True
    batch_id = new_id("bat")
    judged = judge_transfers(
        conn,
        [
            TransferRequest(
                request.user_id,
                transfer,
                item_key(request.idempotency_key, index),
                (batch_id, index),
            )
            for index, transfer in enumerate(request.transfers)
        ],
    )
    if any(_key_taken(outcome) for outcome in judged.outcomes):
        # The same key's batch committed while this transaction waited for the
        # senders' locks (another API process): its items' keys are taken.
        replay = _replay(conn, request, request_hash)
        if replay is None:
            raise IdempotencyKeyReused("this Idempotency-Key was used for another batch")
        return replay, True
    for index, outcome in enumerate(judged.outcomes):
        if isinstance(outcome, P2PError):
            raise BatchItemRefused(index, outcome)
    created_at = to_text(utcnow())
    conn.execute(
        "INSERT INTO batches (id, user_id, atomic, size, idempotency_key, request_hash,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            batch_id,
            request.user_id,
            request.atomic,
            len(request.transfers),
            request.idempotency_key,
            request_hash,
            created_at,
        ),
    )
    judged.record(conn)
    payments = [outcome[0] for outcome in judged.outcomes if not isinstance(outcome, P2PError)]
    batch = Batch(
        id=batch_id,
        atomic=request.atomic,
        size=len(payments),
        created_at=from_text(created_at),
        settled_at=None,
        counts={status: 0 for status in PaymentStatus} | {PaymentStatus.PENDING: len(payments)},
    )
    return BatchAccepted(batch, payments), False


def _key_taken(outcome: tuple[Payment, bool] | P2PError) -> bool:
    """Whether an item's key was taken: it made a payment, or one with another body."""
    if isinstance(outcome, IdempotencyKeyReused):
        return True
    return not isinstance(outcome, P2PError) and outcome[1]


def _replay(conn: Connection, request: BatchRequest, request_hash: str) -> BatchAccepted | None:
    """The batch the caller's key made before, as it is now; ``None`` if none did.

    Raises:
        IdempotencyKeyReused: that batch was asked for with another body.
    """
    row = conn.execute(
        "SELECT * FROM batches WHERE user_id = ? AND idempotency_key = ?",
        (request.user_id, request.idempotency_key),
    ).fetchone()
    if row is None:
        return None
    if row["request_hash"] != request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a batch with a different body"
        )
    rows = conn.execute(
        "SELECT * FROM payments WHERE batch_id = ? ORDER BY batch_index", (row["id"],)
    ).fetchall()
    return BatchAccepted(
        _batch(conn, row), [_seen_by(payment, request.user_id) for payment in rows]
    )


def get_batch(db: Database, user_id: str, batch_id: str) -> Batch:
    """A batch, to the caller who submitted it.

    Raises:
        NotFound: no such batch, or not the caller's.
    """
    with db.read() as conn:
        return _batch(conn, _owned(conn, user_id, batch_id))


def batch_payments(
    db: Database, user_id: str, batch_id: str, *, limit: int, cursor: str | None
) -> Page[Payment]:
    """A batch's payments in the batch's order, to the caller who submitted it; a page
    is a keyset scan of ``(batch_id, batch_index)``.

    Raises:
        NotFound: no such batch, or not the caller's.
        InvalidCursor: the cursor was not handed out for this batch's payments.
    """
    with db.read() as conn:
        _owned(conn, user_id, batch_id)
        after = -1
        if cursor is not None:
            row = conn.execute(
                "SELECT batch_index FROM payments WHERE id = ? AND batch_id = ?",
                (cursor_item(cursor), batch_id),
            ).fetchone()
            if row is None:
                raise InvalidCursor("the cursor is not one this service handed out")
            after = row["batch_index"]
        rows = conn.execute(
            "SELECT * FROM payments WHERE batch_id = ? AND batch_index > ?"
            " ORDER BY batch_index LIMIT ?",
            (batch_id, after, limit + 1),
        ).fetchall()
    return page_of(rows, limit, lambda row: _seen_by(row, user_id))


def _owned(conn: Connection, user_id: str, batch_id: str) -> Row:
    row: Row | None = conn.execute(
        "SELECT * FROM batches WHERE id = ? AND user_id = ?", (batch_id, user_id)
    ).fetchone()
    if row is None:
        raise NotFound(f"no batch {batch_id}")
    return row


def _batch(conn: Connection, row: Row) -> Batch:
    counts = {
        PaymentStatus(status): count
        for status, count in conn.execute(
            "SELECT status, count(*) FROM payments WHERE batch_id = ? GROUP BY status",
            (row["id"],),
        )
    }
    return Batch.from_row(row, counts)


def _seen_by(row: Row, user_id: str) -> Payment:
    """A payment of the caller's batch: the caller owns its sender, maybe its receiver."""
    return failures.as_seen_by(
        Payment.from_row(row),
        owns_sender=row["from_user_id"] == user_id,
        owns_receiver=row["to_user_id"] == user_id,
    )
