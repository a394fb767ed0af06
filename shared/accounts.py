"""Accounts: open, read, freeze and unfreeze, deposit, and the ledger."""

from __future__ import annotations

from collections.abc import Collection

from shared.clock import new_id, to_text, utcnow
from shared.errors import AccountFrozen, BalanceLimitExceeded, IdempotencyKeyReused, NotFound
from shared.events import account_event, deposit_event, record_events
from shared.idempotency import fingerprint
from shared.pages import newest_first
from shared.records import Account, AccountState, AccountStatus, Deposit, LedgerEntry, Page
from shared.store import Connection, Database, chunks, marks, rows

MAX_BALANCE = 2**63 - 1


def open_account(conn: Connection, user_id: str, currency: str) -> Account:
    now = to_text(utcnow())
    account_id = new_id("acc")
    conn.execute(
        "INSERT INTO accounts (id, user_id, currency, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (account_id, user_id, currency, now, now),
    )
    return _owned(conn, user_id, account_id)


def get_account(db: Database, user_id: str, account_id: str) -> Account:
    """Raises: NotFound: no such account, or another user's."""
    with db.read() as conn:
        return _owned(conn, user_id, account_id)


def list_accounts(db: Database, user_id: str, *, limit: int, cursor: str | None) -> Page[Account]:
    """Raises: InvalidCursor."""
    return newest_first(
        db.connection(),
        "accounts",
        "user_id",
        user_id,
        limit=limit,
        cursor=cursor,
        build=Account.from_row,
    )


def set_status(conn: Connection, user_id: str, account_id: str, status: AccountStatus) -> Account:
    """Freeze or unfreeze, with its ``account.updated`` event; setting the status it has
    already is a no-op, and tells nobody.

    Raises:
        NotFound: no such account, or another user's.
    """
    account = _owned(conn, user_id, account_id)
    if account.status is status:
        return account
    conn.execute(
        "UPDATE accounts SET status = ?, updated_at = ? WHERE id = ?",
        (status.value, to_text(utcnow()), account_id),
    )
    updated = _owned(conn, user_id, account_id)
    record_events(conn, [account_event(updated)])
    return updated


def deposit(
    conn: Connection,
    user_id: str,
    account_id: str,
    *,
    amount: int,
    description: str | None,
    idempotency_key: str,
) -> tuple[Deposit, bool]:
    """Money in from outside, at once, with its ``deposit.created`` event; returns the
    deposit and whether it is a replay.

    Raises:
        NotFound: no such account, or another user's.
        IdempotencyKeyReused: the key was used on this account with another body.
        AccountFrozen: the account is frozen.
        BalanceLimitExceeded: the balance would pass 2^63 - 1.
    """
    request_hash = fingerprint(amount=amount, description=description)
    # Locked first: the balance is read to be changed, and a concurrent deposit with
    # the same key (another API process) waits here, then finds this one and replays it.
    account = owned_account(conn, user_id, account_id, lock=True)
    existing = conn.execute(
        f"{_DEPOSIT_SELECT} WHERE deposits.account_id = ? AND deposits.idempotency_key = ?",
        (account_id, idempotency_key),
    ).fetchone()
    if existing is not None:
        if existing["request_hash"] != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a deposit with a different body"
            )
        return Deposit.from_row(existing), True
    if account.status is AccountStatus.FROZEN:
        raise AccountFrozen(f"account {account_id} is frozen")
    if account.balance > MAX_BALANCE - amount:
        raise BalanceLimitExceeded(f"account {account_id} cannot hold more money")
    now = to_text(utcnow())
    deposit_id = new_id("dep")
    conn.execute(
        "INSERT INTO deposits"
        " (id, account_id, amount, description, idempotency_key, request_hash, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (deposit_id, account_id, amount, description, idempotency_key, request_hash, now),
    )
    # The entry moves the account's balance (schema migration 3).
    conn.execute(
        "INSERT INTO ledger_entries"
        " (id, account_id, direction, amount, balance_after, deposit_id, created_at)"
        " VALUES (?, ?, 'credit', ?, ?, ?, ?)",
        (new_id("led"), account_id, amount, account.balance + amount, deposit_id, now),
    )
    row = conn.execute(f"{_DEPOSIT_SELECT} WHERE deposits.id = ?", (deposit_id,)).fetchone()
    made = Deposit.from_row(row)
    record_events(conn, [deposit_event(user_id, made)])
    return made, False


def list_ledger(
    db: Database, user_id: str, account_id: str, *, limit: int, cursor: str | None
) -> Page[LedgerEntry]:
    """Raises: NotFound: no such account, or another user's. InvalidCursor."""
    with db.read() as conn:
        owned_account(conn, user_id, account_id)
        return newest_first(
            conn,
            "ledger_entries",
            "account_id",
            account_id,
            limit=limit,
            cursor=cursor,
            build=LedgerEntry.from_row,
        )


def change_pending_out(conn: Connection, changes: dict[str, int]) -> None:
    """Add ``changes[id]`` to each account's ``pending_out`` (negative to release)."""
    _add_to(conn, "pending_out", changes)


def change_held(conn: Connection, changes: dict[str, int]) -> None:
    """Add ``changes[id]`` to each account's ``held`` (negative to release a hold)."""
    _add_to(conn, "held", changes)


def _add_to(conn: Connection, column: str, changes: dict[str, int]) -> None:
    """``column`` (a constant of this module, never input) of each account, changed."""
    changes = {account_id: amount for account_id, amount in changes.items() if amount}
    if not changes:
        return
    # One account (a deposit, a refund, a group of transfers from one sender): the
    # one-row form costs the server less CPU than the VALUES list a group needs.
    if len(changes) == 1:
        ((account_id, amount),) = changes.items()
        conn.execute(
            f"UPDATE accounts SET {column} = {column} + ? WHERE id = ?", (amount, account_id)
        )
        return
    for chunk in chunks(list(changes.items())):
        conn.execute(
            f"WITH changed (account_id, amount) AS (VALUES {rows(len(chunk), 2)})"
            f" UPDATE accounts SET {column} = {column}"
            " + (SELECT amount FROM changed WHERE account_id = accounts.id)"
            " WHERE id IN (SELECT account_id FROM changed)",
            [value for pair in chunk for value in pair],
        )


_STATE = "SELECT id, user_id, currency, balance, pending_out, status, held FROM accounts"
"""What ``AccountState`` is read from."""


def find_account(conn: Connection, account_id: str, *, lock: bool = False) -> AccountState | None:
    """``lock``: hold the row until the transaction ends, for a write that reads then
    changes it."""
    select = f"{_STATE} WHERE id = ?"
    if lock:
        select = conn.engine.select_for_update(select)
    row = conn.execute(select, (account_id,)).fetchone()
    return None if row is None else AccountState.from_row(row)


def find_accounts(
    conn: Connection, account_ids: Collection[str], *, lock: Collection[str] = ()
) -> dict[str, AccountState]:
    """Those of these accounts that exist, by id. Those in ``lock`` are held as
    ``find_account`` holds one, locked in id order, so that two writers locking several
    never wait for each other."""
    found: dict[str, AccountState] = {}
    for ids, locking in conn.engine.locked_reads(account_ids, lock):
        for chunk in chunks(sorted(ids)):
            select = f"{_STATE} WHERE id IN ({marks(len(chunk))})"
            if locking:
                select = conn.engine.select_for_update(f"{select} ORDER BY id")
            for row in conn.execute(select, chunk):
                found[row["id"]] = AccountState.from_row(row)
    return found


def owned_account(
    conn: Connection, user_id: str, account_id: str, *, lock: bool = False
) -> AccountState:
    """Raises: NotFound: no such account, or another user's."""
    account = find_account(conn, account_id, lock=lock)
    if account is None or account.user_id != user_id:
        raise NotFound(f"no account {account_id}")
    return account


def _owned(conn: Connection, user_id: str, account_id: str) -> Account:
    """The full view, ``pending_out`` included. Raises: NotFound."""
    row = conn.execute(
        "SELECT * FROM accounts WHERE id = ? AND user_id = ?",
        (account_id, user_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no account {account_id}")
    return Account.from_row(row)


_DEPOSIT_SELECT = """
    SELECT deposits.*, ledger_entries.balance_after FROM deposits
    JOIN ledger_entries ON ledger_entries.deposit_id = deposits.id
"""
