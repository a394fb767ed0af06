"""Payments as the API sees them: accept a transfer, read one, list them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared import failures
from shared.accounts import MAX_BALANCE, change_pending_out, find_accounts, owned_account
from shared.clock import from_text, new_id, to_text, utcnow
from shared.enums import EventType
from shared.errors import (
    BalanceLimitExceeded,
    CurrencyMismatch,
    IdempotencyKeyReused,
    NotFound,
    P2PError,
    SameAccount,
)
from shared.events import PaymentOwners, payment_events, record_events
from shared.idempotency import fingerprint
from shared.pages import cursor_bound, page_of
from shared.records import AccountState, CaptureMode, Page, Payment, PaymentStatus
from shared.store import Connection, Database, Row, chunks, marks, rows


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer as the client asked for it."""

    from_account_id: str
    to_account_id: str
    amount: int
    currency: str
    description: str | None = None
    capture: CaptureMode = CaptureMode.AUTOMATIC
    hold_seconds: int | None = None
    """How long an authorization holds: set exactly when ``capture`` is manual."""

    def fingerprint(self) -> str:
        """The request's meaning, for its ``Idempotency-Key``. An automatic transfer's is
        the one it had before capture existed, so a key used then replays the same."""
        manual = (
            {"capture": self.capture.value, "hold_seconds": self.hold_seconds}
            if self.capture is CaptureMode.MANUAL
            else {}
        )
        return fingerprint(
            from_account_id=self.from_account_id,
            to_account_id=self.to_account_id,
            amount=self.amount,
            currency=self.currency,
            description=self.description,
            **manual,
        )


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """A transfer, who asks for it, and under which ``Idempotency-Key``."""

    user_id: str
    transfer: Transfer
    idempotency_key: str


Submitted = tuple[Payment, bool] | P2PError
"""A request's outcome: its payment and whether it is a replay, or its refusal."""


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
    (outcome,) = submit_transfers(conn, [TransferRequest(user_id, transfer, idempotency_key)])
    if isinstance(outcome, P2PError):
        raise outcome
    return outcome


def submit_transfers(conn: Connection, requests: Sequence[TransferRequest]) -> list[Submitted]:
    """``submit_transfer`` for each request, in order, as if one after the other: each
    outcome is the one it would have had alone after those before it (a refusal is
    returned, not raised, and writes nothing).

    However many requests, this is a few statements: the accounts read (the senders'
    locked), the payments their keys made before, then every new payment in one insert,
    the senders' ``pending_out`` in one update and the ``payment.created`` events in one
    insert.
    """
    if not requests:
        return []
    accounts = _accounts(conn, requests)
    made = _made_before(conn, requests)
    pending_out = {account.id: account.pending_out for account in accounts.values()}
    outcomes: list[Submitted] = []
    new: list[_New] = []
    for request in requests:
        try:
            outcome = _accept(request, accounts, made, pending_out)
        except P2PError as refusal:
            outcomes.append(refusal)
            continue
        if isinstance(outcome, _New):
            new.append(outcome)
            outcomes.append((outcome.payment, False))
        else:
            outcomes.append((outcome, True))
    _insert(conn, new)
    change_pending_out(
        conn,
        {
            account_id: total - accounts[account_id].pending_out
            for account_id, total in pending_out.items()
            if total != accounts[account_id].pending_out
        },
    )
    record_events(
        conn,
        payment_events(
            EventType.PAYMENT_CREATED,
            (PaymentOwners(n.payment, n.from_user_id, n.to_user_id) for n in new),
        ),
    )
    return outcomes


@dataclass(frozen=True, slots=True)
class _New:
    """A payment to insert, and what is stored of it beside what ``Payment`` holds."""

    payment: Payment
    from_user_id: str
    to_user_id: str
    idempotency_key: str
    request_hash: str
    created_at: str

    def values(self) -> tuple[str | int | None, ...]:
        """In ``_INSERT_COLUMNS`` order."""
        payment = self.payment
        return (
            payment.id,
            payment.from_account_id,
            payment.to_account_id,
            self.from_user_id,
            self.to_user_id,
            payment.amount,
            payment.currency,
            payment.description,
            self.idempotency_key,
            self.request_hash,
            self.created_at,
            payment.capture.value,
            payment.hold_seconds,
        )


_INSERT_COLUMNS = (
    "id, from_account_id, to_account_id, from_user_id, to_user_id, amount, currency,"
    " description, idempotency_key, request_hash, created_at, capture, hold_seconds"
)
_INSERT_WIDTH = len(_INSERT_COLUMNS.split(","))

_Made = dict[tuple[str, str], tuple[Payment, str]]
"""By sender and key: the payment a key made, and the fingerprint of its request."""


def _accept(
    request: TransferRequest,
    accounts: dict[str, AccountState],
    made: _Made,
    pending_out: dict[str, int],
) -> Payment | _New:
    """One request, judged as ``submit_transfer`` documents, against what the requests
    before it left (``made`` and ``pending_out`` take in a new payment): the payment its
    key made before (a replay), or a new one."""
    transfer, key = request.transfer, request.idempotency_key
    if transfer.from_account_id == transfer.to_account_id:
        raise SameAccount("a transfer needs two different accounts")
    request_hash = transfer.fingerprint()
    sender = accounts.get(transfer.from_account_id)
    if sender is None or sender.user_id != request.user_id:
        raise NotFound(f"no account {transfer.from_account_id}")
    existing = made.get((sender.id, key))
    if existing is not None:
        payment, existing_hash = existing
        if existing_hash != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a transfer with a different body"
            )
        return payment
    receiver = accounts.get(transfer.to_account_id)
    if receiver is None:
        raise NotFound(f"no account {transfer.to_account_id}")
    for account in (sender, receiver):
        if account.currency != transfer.currency:
            if account.user_id != request.user_id:
                # Which currency another user's account holds is theirs to know.
                raise CurrencyMismatch("the receiving account does not hold this currency")
            raise CurrencyMismatch(
                f"account {account.id} holds {account.currency}, not {transfer.currency}"
            )
    if pending_out[sender.id] > MAX_BALANCE - transfer.amount:
        raise BalanceLimitExceeded(
            f"account {sender.id} has too much pending to accept another transfer"
        )
    pending_out[sender.id] += transfer.amount
    created_at = to_text(utcnow())
    payment = Payment(
        id=new_id("pay"),
        from_account_id=sender.id,
        to_account_id=receiver.id,
        amount=transfer.amount,
        currency=transfer.currency,
        description=transfer.description,
        status=PaymentStatus.PENDING,
        failure_code=None,
        failure_detail=None,
        created_at=from_text(created_at),
        completed_at=None,
        capture=transfer.capture,
        hold_seconds=transfer.hold_seconds,
    )
    made[(sender.id, key)] = (payment, request_hash)
    return _New(payment, sender.user_id, receiver.user_id, key, request_hash, created_at)


def _accounts(conn: Connection, requests: Sequence[TransferRequest]) -> dict[str, AccountState]:
    """The accounts of both sides, by id. The senders' are locked, always in id order,
    so that two writers never wait for each other: their ``pending_out`` is read to be
    changed, and a concurrent transfer with the same key (another API process) waits
    here, then replays the one that got in first. The receivers' are only read."""
    senders = {request.transfer.from_account_id for request in requests}
    receivers = {request.transfer.to_account_id for request in requests}
    return find_accounts(conn, senders | receivers, lock=senders)


def _made_before(conn: Connection, requests: Sequence[TransferRequest]) -> _Made:
    """The payments the requests' keys made in earlier transactions."""
    wanted = list({(r.transfer.from_account_id, r.idempotency_key) for r in requests})
    made: _Made = {}
    for chunk in chunks(wanted):
        if len(chunk) == 1:  # one key: the one-row form, as in ``change_pending_out``
            found = conn.execute(
                "SELECT * FROM payments WHERE from_account_id = ? AND idempotency_key = ?",
                chunk[0],
            )
        else:
            found = conn.execute(
                f"WITH wanted (from_account_id, idempotency_key) AS"
                f" (VALUES {rows(len(chunk), 2)})"
                " SELECT payments.* FROM wanted JOIN payments"
                " ON payments.from_account_id = wanted.from_account_id"
                " AND payments.idempotency_key = wanted.idempotency_key",
                [value for pair in chunk for value in pair],
            )
        for row in found:
            # A replay is answered to the sender's owner: the one who may use its key.
            made[(row["from_account_id"], row["idempotency_key"])] = (
                _seen_by(row, row["from_user_id"]),
                row["request_hash"],
            )
    return made


def _insert(conn: Connection, new: Sequence[_New]) -> None:
    """In order: their ``seq`` is their acceptance order. The schema's defaults (status
    ``pending``, no outcome) are what ``_accept`` built their ``Payment`` with."""
    for chunk in chunks(new):
        conn.execute(
            f"INSERT INTO payments ({_INSERT_COLUMNS}) VALUES {rows(len(chunk), _INSERT_WIDTH)}",
            [value for payment in chunk for value in payment.values()],
        )


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
    return _seen_by(row, user_id)


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
        InvalidCursor: the cursor was not handed out for the caller's payments.
    """
    with db.read() as conn:
        if account_id is None:
            column, owner = "user_id", user_id
        else:
            owned_account(conn, user_id, account_id)
            column, owner = "account_id", account_id
        before = cursor_bound(
            conn, cursor, "payments", "from_user_id = ? OR to_user_id = ?", user_id, user_id
        )
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
    return page_of(rows, limit, lambda row: _seen_by(row, user_id))


def _seen_by(row: Row, user_id: str) -> Payment:
    """The payment as ``user_id``, the owner of one side or both, may read it."""
    return failures.as_seen_by(
        Payment.from_row(row),
        owns_sender=row["from_user_id"] == user_id,
        owns_receiver=row["to_user_id"] == user_id,
    )
