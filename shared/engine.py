"""The transfer engine: settle pending payments in one write transaction.

Settling is idempotent: everything is re-read under the write lock, and a payment that
is no longer pending is left alone. That is what makes at-least-once delivery, the
sweep and a killed worker all safe. On SQLite the lock is ``BEGIN IMMEDIATE``'s; on
PostgreSQL a transaction locks the payments it claims (skipping those another worker
holds) and then every account they touch, in id order, so that any number of workers
settle at once without deadlocks, lost updates or a payment applied twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared import failures
from shared.accounts import MAX_BALANCE, change_held, change_pending_out
from shared.batch_settling import claim_whole_batches, mark_settled
from shared.clock import from_text, new_id, to_text, utcnow
from shared.enums import EventType
from shared.events import PaymentOwners, payment_events, record_events
from shared.records import AccountStatus, CaptureMode, FailureCode, Payment, PaymentStatus
from shared.refunds import RefundBook
from shared.store import Connection, Database, Row, chunks, marks, rows

log = logging.getLogger(__name__)

SettledObserver = Callable[[Sequence[Payment]], None]
"""Told, after the commit, of the payments one call settled (metrics hook in here)."""


def settle_payment(
    db: Database, payment_id: str, *, observe: SettledObserver | None = None
) -> Payment | None:
    """Settle one payment as ``completed`` or ``failed``; ``None`` if there is no such id.

    Business outcomes are recorded, never raised. Anything raised is an infrastructure
    error (the database is locked, the disk failed): the transaction rolled back and the
    caller may try again.
    """
    payment, settled = db.run(_settle_one, payment_id)
    if payment is None:
        log.warning("no payment %s to settle", payment_id, extra={"payment_id": payment_id})
    if observe is not None and settled:
        observe(settled)
    return payment


def _settle_one(conn: Connection, payment_id: str) -> tuple[Payment | None, list[Payment]]:
    """The payment as it is after this, and the payments this settled: it, and the
    rest of its batch if the batch is atomic."""
    select = conn.engine.select_for_update("SELECT * FROM payments WHERE id = ?")
    row = conn.execute(select, (payment_id,)).fetchone()
    if row is None:
        return None, []
    payment = Payment.from_row(row)
    if payment.status is not PaymentStatus.PENDING:
        return payment, []
    rows, atomic = claim_whole_batches(conn, [row])
    settled = _settle_all(conn, rows, utcnow(), atomic)
    return next((one for one in settled if one.id == payment_id), payment), settled


def settle_pending(
    db: Database,
    *,
    limit: int,
    older_than: timedelta | None = None,
    skip: Collection[str] = (),
    observe: SettledObserver | None = None,
) -> list[Payment]:
    """Settle the oldest pending payments, ``limit`` of them, in one transaction (more
    when the last ones belong to an atomic batch: it is settled whole).

    They are judged one after the other in acceptance order, each seeing what the ones
    before it did, so every outcome is the one it would have had alone; the group shares
    one commit. ``older_than`` leaves out payments accepted more recently than that;
    ``skip`` leaves out these payments (the ones that failed to settle alone);
    ``observe`` is told of the settled payments once they are committed.
    Returns the payments as settled, oldest first. Raises as ``settle_payment`` does.
    """
    settled = db.run(_settle_oldest, limit=limit, older_than=older_than, skip=skip)
    if observe is not None and settled:
        observe(settled)
    return settled


def _settle_oldest(
    conn: Connection, *, limit: int, older_than: timedelta | None, skip: Collection[str]
) -> list[Payment]:
    now = utcnow()
    rows = _oldest_pending(conn, limit=limit, older_than=older_than, skip=skip, now=now, claim=True)
    rows, atomic = claim_whole_batches(conn, rows)
    return _settle_all(conn, rows, now, atomic)


def pending_ids(
    db: Database,
    *,
    limit: int,
    older_than: timedelta | None = None,
    skip: Collection[str] = (),
) -> list[str]:
    """The ids ``settle_pending`` would settle now, oldest first, without settling them."""
    rows = _oldest_pending(
        db.connection(), limit=limit, older_than=older_than, skip=skip, now=utcnow()
    )
    return [row["id"] for row in rows]


def _oldest_pending(
    conn: Connection,
    *,
    limit: int,
    older_than: timedelta | None,
    skip: Collection[str],
    now: datetime,
    claim: bool = False,
) -> list[Row]:
    """``claim``: lock them for settling; on PostgreSQL, rows another transaction holds
    are skipped, so concurrent workers each take their own oldest."""
    cutoff = None if older_than is None else to_text(now - older_than)
    skipping = f" AND id NOT IN ({marks(len(skip))})" if skip else ""
    select = f"SELECT * FROM payments WHERE status = 'pending'{skipping} ORDER BY seq LIMIT ?"
    if claim:
        select = conn.engine.select_to_claim(select)
    rows = conn.execute(select, (*skip, limit)).fetchall()
    return [row for row in rows if cutoff is None or row["created_at"] <= cutoff]


@dataclass(frozen=True, slots=True)
class PendingBacklog:
    """How many payments are pending, and when the oldest of them was accepted."""

    count: int
    oldest_created_at: datetime | None


def pending_backlog(db: Database) -> PendingBacklog:
    """Read from the partial index of pending payments: a count of its entries and one
    lookup of the first, so it stays cheap however large the table grows."""
    conn = db.connection()
    (count,) = conn.execute("SELECT count(*) FROM payments WHERE status = 'pending'").fetchone()
    oldest = conn.execute(
        "SELECT created_at FROM payments WHERE status = 'pending' ORDER BY seq LIMIT 1"
    ).fetchone()
    return PendingBacklog(count, None if oldest is None else from_text(oldest["created_at"]))


def payment_status(db: Database, payment_id: str) -> PaymentStatus | None:
    """The payment's status as committed now, without taking the write lock."""
    row = (
        db.connection()
        .execute("SELECT status FROM payments WHERE id = ?", (payment_id,))
        .fetchone()
    )
    return None if row is None else PaymentStatus(row["status"])


def _settle_all(
    conn: Connection,
    payment_rows: Sequence[Row],
    now: datetime,
    atomic: Collection[str] = frozenset(),
) -> list[Payment]:
    """Settle these pending payments (their rows), judged one after the other in this
    order.

    The accounts are read once, locked; each payment is judged against them as the
    payments before it left them, so every outcome is the one it would have had alone.
    A payment with manual capture that passes is authorized: its amount is held on the
    sender (spent from ``available`` like a transfer), and nothing moves yet. Then a few
    statements write the whole group: its ledger entries in order (each moves its
    account's balance, and the database checks it continues the one before), the new
    holds, the senders' ``pending_out`` released, the payments' outcomes, and last their
    events.

    The payments of a batch in ``atomic`` (all of its pending ones, together) are first
    judged on a scratch copy of the accounts (``_rehearse``): if one of them fails, they
    all fail and none moves money. A batch none of whose payments is pending any more
    is marked settled.
    """
    if not payment_rows:
        return []  # an idle sweep or settler-ahead pass: no statement at all
    payments = [Payment.from_row(row) for row in payment_rows]
    refunds = RefundBook(conn, payments)
    accounts = lock_ledger_accounts(
        conn,
        {payment.from_account_id for payment in payments}
        | {payment.to_account_id for payment in payments},
    )
    stamp = to_text(now)
    completed_at = from_text(stamp)
    entries: list[Entry] = []
    released: dict[str, int] = {}
    held: dict[str, int] = {}
    completed: list[str] = []
    authorized: list[tuple[str, str]] = []
    failed: list[tuple[str, str, str, str]] = []
    settled: list[Payment] = []
    verdicts: dict[str, tuple[FailureCode, str]] = {}
    rehearsed: set[str] = set()
    for payment in payments:
        sender = accounts.get(payment.from_account_id)
        receiver = accounts.get(payment.to_account_id)
        batch_id = payment.batch_id
        if batch_id is not None and batch_id in atomic and batch_id not in rehearsed:
            rehearsed.add(batch_id)
            batch = [one for one in payments if one.batch_id == batch_id]
            verdicts |= _rehearse(batch, accounts)
        failure = (
            verdicts.get(payment.id) or refunds.judge(payment) or _judge(payment, sender, receiver)
        )
        if sender is not None:
            released[sender.id] = released.get(sender.id, 0) - payment.amount
        if failure is not None:
            code, detail = failure
            failed.append((code.value, detail, stamp, payment.id))
            refunds.failed(payment)
            outcome = replace(
                payment,
                status=PaymentStatus.FAILED,
                failure_code=code,
                failure_detail=detail,
                completed_at=completed_at,
            )
        elif payment.capture is CaptureMode.MANUAL:
            sender = accounts[payment.from_account_id]
            sender.held += payment.amount
            held[sender.id] = held.get(sender.id, 0) + payment.amount
            assert payment.hold_seconds is not None  # the database holds it for manual ones
            expires_at = to_text(now + timedelta(seconds=payment.hold_seconds))
            authorized.append((expires_at, payment.id))
            outcome = replace(
                payment, status=PaymentStatus.AUTHORIZED, expires_at=from_text(expires_at)
            )
        else:
            sender, receiver = accounts[payment.from_account_id], accounts[payment.to_account_id]
            entries.extend(move(sender, receiver, payment.amount, payment.id, stamp))
            completed.append(payment.id)
            refunds.completed(payment)
            outcome = replace(payment, status=PaymentStatus.COMPLETED, completed_at=completed_at)
        settled.append(outcome)
    # Entries before holds: each entry's balance is one the judging saw, never below the
    # holds made before it, so no step passes the database's held <= balance.
    insert_entries(conn, entries)
    change_held(conn, held)
    change_pending_out(conn, released)
    _mark_completed(conn, completed, stamp)
    refunds.write(conn)
    conn.executemany(
        "UPDATE payments SET status = 'authorized', expires_at = ? WHERE id = ?", authorized
    )
    conn.executemany(
        "UPDATE payments SET status = 'failed', failure_code = ?, failure_detail = ?,"
        " completed_at = ? WHERE id = ?",
        failed,
    )
    record_events(
        conn,
        [
            event
            for payment, row in zip(settled, payment_rows, strict=True)
            for event in payment_events(
                _SETTLED_AS[payment.status],
                [PaymentOwners(payment, row["from_user_id"], row["to_user_id"])],
            )
        ],
    )
    mark_settled(conn, {p.batch_id for p in payments if p.batch_id is not None}, stamp)
    return settled


_SETTLED_AS = {
    PaymentStatus.COMPLETED: EventType.PAYMENT_COMPLETED,
    PaymentStatus.FAILED: EventType.PAYMENT_FAILED,
    PaymentStatus.AUTHORIZED: EventType.PAYMENT_AUTHORIZED,
}


def _rehearse(
    batch: Sequence[Payment], accounts: Mapping[str, LedgerAccount]
) -> dict[str, tuple[FailureCode, str]]:
    """An atomic batch's payments judged in order on a scratch copy of the accounts as
    the group has left them: nothing when every one passes; else every payment's
    failure, its own for the ones at fault and ``linked_payment_failed`` for the others."""
    involved = {p.from_account_id for p in batch} | {p.to_account_id for p in batch}
    scratch = {id_: replace(accounts[id_]) for id_ in involved if id_ in accounts}
    faults: dict[str, tuple[FailureCode, str]] = {}
    for payment in batch:
        failure = _judge(
            payment, scratch.get(payment.from_account_id), scratch.get(payment.to_account_id)
        )
        if failure is not None:
            faults[payment.id] = failure
        elif payment.capture is CaptureMode.MANUAL:
            scratch[payment.from_account_id].held += payment.amount
        else:
            sender, receiver = scratch[payment.from_account_id], scratch[payment.to_account_id]
            move(sender, receiver, payment.amount, payment.id, "")
    if not faults:
        return {}
    linked = (FailureCode.LINKED_PAYMENT_FAILED, failures.linked(next(iter(faults))))
    return {payment.id: faults.get(payment.id, linked) for payment in batch}


Entry = tuple[str, str, str, int, int, str, str]


def move(
    sender: LedgerAccount, receiver: LedgerAccount, amount: int, payment_id: str, now: str
) -> tuple[Entry, Entry]:
    """A payment's debit and credit of ``amount``, each on its account as it leaves it
    (the accounts' balances are moved here, as the entries will move them)."""
    sender.balance -= amount
    debit = (new_id("led"), sender.id, "debit", amount, sender.balance, payment_id, now)
    receiver.balance += amount
    credit = (new_id("led"), receiver.id, "credit", amount, receiver.balance, payment_id, now)
    return debit, credit


def insert_entries(conn: Connection, entries: Sequence[Entry]) -> None:
    """In order, in one statement per chunk: each entry moves its account's balance."""
    for chunk in chunks(entries):
        conn.execute(
            "INSERT INTO ledger_entries"
            " (id, account_id, direction, amount, balance_after, payment_id, created_at)"
            f" VALUES {rows(len(chunk), 7)}",
            [value for entry in chunk for value in entry],
        )


def _mark_completed(conn: Connection, payment_ids: Sequence[str], now: str) -> None:
    for chunk in chunks(payment_ids):
        conn.execute(
            "UPDATE payments SET status = 'completed', completed_at = ?"
            f" WHERE id IN ({marks(len(chunk))})",
            [now, *chunk],
        )


@dataclass(slots=True)
class LedgerAccount:
    """An account as a transaction's settling leaves it, payment after payment."""

    id: str
    balance: int
    held: int
    frozen: bool

    @property
    def available(self) -> int:
        return self.balance - self.held


def lock_ledger_accounts(
    conn: Connection, account_ids: Collection[str]
) -> dict[str, LedgerAccount]:
    """These accounts, read and locked for the transaction (in one order: see
    ``Engine.lock_accounts``), by id; a missing one is left out."""
    rows = conn.engine.lock_accounts(conn, account_ids)
    return {
        row["id"]: LedgerAccount(
            row["id"],
            row["balance"],
            row["held"],
            AccountStatus(row["status"]) is AccountStatus.FROZEN,
        )
        for row in rows
    }


def _judge(
    payment: Payment, sender: LedgerAccount | None, receiver: LedgerAccount | None
) -> tuple[FailureCode, str] | None:
    """The failure and its detail, which names the account it is about
    (``shared.failures`` shows it to that account's owner only). Only what the sender
    has available (its balance less its holds) can be spent or held."""
    if sender is None or receiver is None:
        missing = payment.from_account_id if sender is None else payment.to_account_id
        return FailureCode.ACCOUNT_NOT_FOUND, failures.missing(missing)
    for account in (sender, receiver):
        if account.frozen:
            return FailureCode.ACCOUNT_FROZEN, failures.frozen(account.id)
    if sender.available < payment.amount:
        return FailureCode.INSUFFICIENT_FUNDS, failures.lacks_funds(sender.id, payment.amount)
    if receiver.balance > MAX_BALANCE - payment.amount:
        return FailureCode.BALANCE_LIMIT_EXCEEDED, failures.cannot_hold(receiver.id)
    return None
