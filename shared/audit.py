"""``p2p verify``: audit the whole database against G2 (atomicity) and G3 (conservation)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterator

from shared.db import Database

# Each query yields one row per violation: (what, detail). Sums are not done in SQL:
# SQLite's integers stop at 2^63 - 1, which one balance may reach; Python's do not.
_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "balance differs from its newest entry's balance_after",
        """
        SELECT accounts.id, 'balance ' || accounts.balance || ' but newest balance_after '
               || coalesce(newest.balance_after, 0)
        FROM accounts LEFT JOIN ledger_entries AS newest ON newest.seq = (
            SELECT max(seq) FROM ledger_entries WHERE account_id = accounts.id)
        WHERE accounts.balance <> coalesce(newest.balance_after, 0)
        """,
    ),
    (
        "running balance broken",
        """
        SELECT id, 'entry balance_after ' || balance_after || ' but previous '
               || previous || (CASE direction WHEN 'credit' THEN ' + ' ELSE ' - ' END) || amount
        FROM (SELECT *, coalesce(lag(balance_after) OVER (
                  PARTITION BY account_id ORDER BY seq), 0) AS previous
              FROM ledger_entries)
        WHERE balance_after
              <> previous + CASE direction WHEN 'credit' THEN amount ELSE -amount END
        """,
    ),
    (
        "negative balance",
        "SELECT id, 'balance ' || balance FROM accounts WHERE balance < 0",
    ),
    (
        "completed payment without exactly one debit and one credit of its amount",
        """
        SELECT payments.id, count(ledger_entries.id) || ' entries'
        FROM payments LEFT JOIN ledger_entries ON ledger_entries.payment_id = payments.id
        WHERE payments.status = 'completed'
        GROUP BY payments.id
        HAVING count(ledger_entries.id) <> 2
            OR sum(direction = 'debit' AND ledger_entries.account_id = from_account_id
                   AND ledger_entries.amount = payments.amount) <> 1
            OR sum(direction = 'credit' AND ledger_entries.account_id = to_account_id
                   AND ledger_entries.amount = payments.amount) <> 1
        """,
    ),
    (
        "payment that is not completed has ledger entries",
        """
        SELECT payments.id, payments.status || ' with ' || count(*) || ' entries'
        FROM payments JOIN ledger_entries ON ledger_entries.payment_id = payments.id
        WHERE payments.status <> 'completed' GROUP BY payments.id
        """,
    ),
    (
        "deposit without exactly one credit of its amount",
        """
        SELECT deposits.id, count(ledger_entries.id) || ' entries'
        FROM deposits LEFT JOIN ledger_entries ON ledger_entries.deposit_id = deposits.id
        GROUP BY deposits.id
        HAVING count(ledger_entries.id) <> 1
            OR sum(ledger_entries.amount = deposits.amount
                   AND ledger_entries.account_id = deposits.account_id) <> 1
        """,
    ),
    (
        "foreign key broken",
        "SELECT \"table\" || ' row ' || rowid, 'references missing ' || parent"
        " FROM pragma_foreign_key_check",
    ),
)


def verify(db: Database) -> list[str]:
    """Every violation of G2 and G3, one line each; empty when the ledger holds."""
    violations: list[str] = []
    with db.read() as conn:
        for what, query in _CHECKS:
            violations.extend(
                f"{what}: {subject}: {detail}" for subject, detail in conn.execute(query)
            )
        violations.extend(_sums(conn))
        violations.extend(_pending_out(conn))
    return violations


def _sums(conn: sqlite3.Connection) -> Iterator[str]:
    """Per account, balance = credits - debits; overall, balances = deposits."""
    net: defaultdict[str, int] = defaultdict(int)
    for account_id, direction, amount in conn.execute(
        "SELECT account_id, direction, amount FROM ledger_entries"
    ):
        net[account_id] += amount if direction == "credit" else -amount
    balances = 0
    for account_id, balance in conn.execute("SELECT id, balance FROM accounts"):
        balances += balance
        if balance != net[account_id]:
            yield (
                f"balance differs from its ledger: {account_id}: balance {balance}"
                f" but credits - debits = {net[account_id]}"
            )
    deposits = sum(amount for (amount,) in conn.execute("SELECT amount FROM deposits"))
    if balances != deposits:
        yield (
            "sum of balances differs from sum of deposits: all accounts:"
            f" balances {balances} but deposits {deposits}"
        )


def _pending_out(conn: sqlite3.Connection) -> Iterator[str]:
    """Per account, pending_out = the sum of its pending payments. In Python: SQLite's
    ``total`` is a float, which cannot tell 2^62 + 1 from 2^62."""
    pending: defaultdict[str, int] = defaultdict(int)
    count: defaultdict[str, int] = defaultdict(int)
    for account_id, amount in conn.execute(
        "SELECT from_account_id, amount FROM payments WHERE status = 'pending'"
    ):
        pending[account_id] += amount
        count[account_id] += 1
    for account_id, pending_out in conn.execute("SELECT id, pending_out FROM accounts"):
        if pending_out != pending[account_id]:
            yield (
                f"pending_out differs from the account's pending payments: {account_id}:"
                f" pending_out {pending_out} but {count[account_id]} pending payment(s)"
            )
