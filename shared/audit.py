"""Audits of G2 (atomicity), G3 (conservation), G8 (holds), G9 (refunds) and G10 (atomic
batches): all at once, or a slice at a time.

``verify`` (``p2p verify``) runs every check over the whole database. ``RollingAudit``
runs the same checks over a bounded slice per run (the next accounts, payments and
deposits by ``seq``, round-robin), so the worker can reconcile a large database
continuously; the checks are written once, over table expressions that are either the
whole table or a slice of it.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from shared.store import Connection, Database


class Scope(enum.Enum):
    """What a check's violations are about, and what a slice of the audit covers."""

    ACCOUNTS = "account"
    PAYMENTS = "payment"
    DEPOSITS = "deposit"
    DATABASE = "database"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: which check, about which row, and what is wrong."""

    check: str
    scope: Scope
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: {self.detail}"


# Each query yields one row per violation: (subject, detail). ``{accounts}``,
# ``{account_entries}`` (the ledger entries of those accounts), ``{payments}`` and
# ``{deposits}`` are the whole tables for ``verify`` and a slice for ``RollingAudit``.
# Sums are not done in SQL: SQLite's integers stop at 2^63 - 1, which one balance may
# reach; Python's do not.
_CHECKS: tuple[tuple[Scope, str, str], ...] = (
    (
        Scope.ACCOUNTS,
        "balance differs from its newest entry's balance_after",
        """
        SELECT accounts.id, 'balance ' || accounts.balance || ' but newest balance_after '
               || coalesce(newest.balance_after, 0)
        FROM {accounts} LEFT JOIN ledger_entries AS newest ON newest.seq = (
            SELECT max(seq) FROM ledger_entries WHERE account_id = accounts.id)
        WHERE accounts.balance <> coalesce(newest.balance_after, 0)
        """,
    ),
    (
        Scope.ACCOUNTS,
        "running balance broken",
        """
        SELECT account_id, 'entry ' || id || ' balance_after ' || balance_after
               || ' but previous ' || previous
               || (CASE direction WHEN 'credit' THEN ' + ' ELSE ' - ' END) || amount
        FROM (SELECT *, coalesce(lag(balance_after) OVER (
                  PARTITION BY account_id ORDER BY seq), 0) AS previous
              FROM {account_entries}) AS entries
        WHERE balance_after
              <> previous + CASE direction WHEN 'credit' THEN amount ELSE -amount END
        """,
    ),
    (
        Scope.ACCOUNTS,
        "negative balance",
        "SELECT id, 'balance ' || balance FROM {accounts} WHERE balance < 0",
    ),
    (
        Scope.ACCOUNTS,
        "negative available (held is more than the balance)",
        "SELECT id, 'balance ' || balance || ' but held ' || held FROM {accounts}"
        " WHERE held < 0 OR held > balance",
    ),
    (
        Scope.PAYMENTS,
        # Its amount: what it moved, the captured amount if it was captured.
        "completed payment without exactly one debit and one credit of its amount",
        """
        SELECT payments.id, count(ledger_entries.id) || ' entries'
        FROM {payments} LEFT JOIN ledger_entries ON ledger_entries.payment_id = payments.id
        WHERE payments.status = 'completed'
        GROUP BY payments.seq, payments.id, from_account_id, to_account_id, payments.amount,
                 payments.captured_amount
        HAVING count(ledger_entries.id) <> 2
            OR sum(CASE WHEN direction = 'debit' AND ledger_entries.account_id = from_account_id
                   AND ledger_entries.amount = coalesce(payments.captured_amount, payments.amount)
                   THEN 1 ELSE 0 END) <> 1
            OR sum(CASE WHEN direction = 'credit' AND ledger_entries.account_id = to_account_id
                   AND ledger_entries.amount = coalesce(payments.captured_amount, payments.amount)
                   THEN 1 ELSE 0 END) <> 1
        """,
    ),
    (
        Scope.PAYMENTS,
        "payment that is not completed has ledger entries",
        """
        SELECT payments.id, payments.status || ' with ' || count(*) || ' entries'
        FROM {payments} JOIN ledger_entries ON ledger_entries.payment_id = payments.id
        WHERE payments.status <> 'completed' GROUP BY payments.seq, payments.id, payments.status
        """,
    ),
    (
        Scope.PAYMENTS,
        "capture of more than was authorized",
        """
        SELECT id, 'captured ' || captured_amount || ' of ' || amount FROM {payments}
        WHERE captured_amount < 1 OR captured_amount > amount
        """,
    ),
    (
        Scope.PAYMENTS,
        # G10: an atomic batch's payments all fail, or none does.
        "failed payment of an atomic batch whose other payments did not fail",
        """
        SELECT payments.id, count(*) || ' of its batch ' || payments.batch_id || ' did not fail'
        FROM {payments} JOIN batches ON batches.id = payments.batch_id
        JOIN payments AS other ON other.batch_id = payments.batch_id AND other.status <> 'failed'
        WHERE payments.status = 'failed' AND batches.atomic
        GROUP BY payments.seq, payments.id, payments.batch_id
        """,
    ),
    (
        Scope.PAYMENTS,
        "refund of a payment that is not completed, of a refund, or not its reverse",
        """
        SELECT payments.id, 'refund of ' || originals.id || ' (' || originals.status
               || CASE WHEN originals.refund_of IS NULL THEN '' ELSE ', a refund' END || ')'
        FROM {payments} JOIN payments AS originals ON originals.id = payments.refund_of
        WHERE originals.status <> 'completed' OR originals.refund_of IS NOT NULL
           OR payments.from_account_id <> originals.to_account_id
           OR payments.to_account_id <> originals.from_account_id
           OR payments.currency <> originals.currency
        """,
    ),
    (
        Scope.DEPOSITS,
        "deposit without exactly one credit of its amount",
        """
        SELECT deposits.id, count(ledger_entries.id) || ' entries'
        FROM {deposits} LEFT JOIN ledger_entries ON ledger_entries.deposit_id = deposits.id
        GROUP BY deposits.seq, deposits.id, deposits.amount, deposits.account_id
        HAVING count(ledger_entries.id) <> 1
            OR sum(CASE WHEN ledger_entries.amount = deposits.amount
                   AND ledger_entries.account_id = deposits.account_id THEN 1 ELSE 0 END) <> 1
        """,
    ),
)

_WHOLE_TABLES = {
    "accounts": "accounts",
    "account_entries": "ledger_entries",
    "payments": "payments",
    "deposits": "deposits",
}

_SLICES = {
    "accounts": "(SELECT * FROM accounts WHERE seq > :accounts_after AND seq <= :accounts_upto)"
    " AS accounts",
    "account_entries": "(SELECT * FROM ledger_entries WHERE account_id IN (SELECT id FROM"
    " accounts WHERE seq > :accounts_after AND seq <= :accounts_upto)) AS ledger_entries",
    "payments": "(SELECT * FROM payments WHERE seq > :payments_after AND seq <= :payments_upto)"
    " AS payments",
    "deposits": "(SELECT * FROM deposits WHERE seq > :deposits_after AND seq <= :deposits_upto)"
    " AS deposits",
}

_TABLE_OF = {Scope.ACCOUNTS: "accounts", Scope.PAYMENTS: "payments", Scope.DEPOSITS: "deposits"}


def verify(db: Database) -> list[str]:
    """Every violation of G2, G3, G8, G9 and G10, one line each; empty when the ledger holds."""
    return [str(violation) for violation in audit(db)]


def audit(db: Database) -> list[Violation]:
    """Every violation of G2, G3, G8, G9 and G10 in the whole database, in one snapshot."""
    violations: list[Violation] = []
    with db.read() as conn:
        violations.extend(_run_checks(conn, _WHOLE_TABLES, {}, list(Scope)))
        # Whole-database only: it reads every row of every table, so the rolling audit
        # leaves it to ``verify``.
        violations.extend(
            Violation("foreign key broken", Scope.DATABASE, subject, detail)
            for subject, detail in conn.engine.broken_foreign_keys(conn)
        )
        violations.extend(_account_sums(conn, _WHOLE_TABLES, {}))
        violations.extend(_pending_out(conn, _WHOLE_TABLES, {}))
        violations.extend(_held(conn, _WHOLE_TABLES, {}))
        violations.extend(_refunded(conn, _WHOLE_TABLES, {}))
        violations.extend(_conservation(conn))
    return violations


@dataclass(frozen=True, slots=True)
class AuditRun:
    """What one run of the rolling audit checked and found."""

    found: list[Violation]
    checked: dict[Scope, int]
    cycle_complete: bool
    """Every account has been checked since the previous complete cycle; the sum of all
    balances was compared with the sum of all deposits in this run."""


@dataclass
class RollingAudit:
    """The checks of ``verify``, over the next ``batch`` accounts, payments and deposits
    per run, round-robin by ``seq``, each run in one snapshot.

    A run costs a bounded number of rows (plus each checked account's ledger entries and
    pending payments, read through their indexes), whatever the size of the database.
    The conservation check (sum of balances = sum of deposits) reads every account and
    deposit, so it runs once per cycle, when the accounts wrap around. ``open`` keeps
    what the latest check of each row found, so a violation stays reported until the
    row it concerns is checked again and found sound.
    """

    batch: int
    _after: dict[Scope, int] = field(
        default_factory=lambda: dict.fromkeys(_TABLE_OF, 0), init=False, repr=False
    )
    _open: dict[tuple[Scope, str, str], Violation] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def open(self) -> list[Violation]:
        """Violations not yet found mended by a later check of the same row."""
        return list(self._open.values())

    def run(self, db: Database) -> AuditRun:
        with db.read() as conn:
            params: dict[str, int] = {}
            slices: dict[Scope, list[str]] = {}
            for scope, table in _TABLE_OF.items():
                rows = conn.execute(
                    f"SELECT seq, id FROM {table} WHERE seq > ? ORDER BY seq LIMIT ?",
                    (self._after[scope], self.batch),
                ).fetchall()
                params[f"{table}_after"] = self._after[scope]
                params[f"{table}_upto"] = rows[-1]["seq"] if rows else self._after[scope]
                slices[scope] = [row["id"] for row in rows]
            found = list(_run_checks(conn, _SLICES, params, _TABLE_OF))
            found.extend(_account_sums(conn, _SLICES, params))
            found.extend(_pending_out(conn, _SLICES, params))
            found.extend(_held(conn, _SLICES, params))
            found.extend(_refunded(conn, _SLICES, params))
            cycle_complete = len(slices[Scope.ACCOUNTS]) < self.batch
            if cycle_complete:
                found.extend(_conservation(conn))
        for scope, ids in slices.items():
            self._after[scope] = 0 if len(ids) < self.batch else params[f"{_TABLE_OF[scope]}_upto"]
            self._forget(scope, set(ids))
        if cycle_complete:
            self._forget(Scope.DATABASE, None)
        for violation in found:
            self._open[(violation.scope, violation.subject, violation.check)] = violation
        return AuditRun(found, {scope: len(ids) for scope, ids in slices.items()}, cycle_complete)

    def _forget(self, scope: Scope, subjects: set[str] | None) -> None:
        for key in [key for key in self._open if key[0] is scope]:
            if subjects is None or key[1] in subjects:
                del self._open[key]


def _run_checks(
    conn: Connection,
    tables: dict[str, str],
    params: dict[str, int],
    scopes: Collection[Scope],
) -> Iterator[Violation]:
    for scope, what, query in _CHECKS:
        if scope in scopes:
            for subject, detail in conn.execute(query.format(**tables), params):
                yield Violation(what, scope, subject, detail)


def _account_sums(
    conn: Connection, tables: dict[str, str], params: dict[str, int]
) -> Iterator[Violation]:
    """Per account, balance = credits - debits."""
    net: defaultdict[str, int] = defaultdict(int)
    for account_id, direction, amount in conn.execute(
        "SELECT account_id, direction, amount FROM {account_entries}".format(**tables), params
    ):
        net[account_id] += amount if direction == "credit" else -amount
    for account_id, balance in conn.execute(
        "SELECT id, balance FROM {accounts}".format(**tables), params
    ):
        if balance != net[account_id]:
            yield Violation(
                "balance differs from its ledger",
                Scope.ACCOUNTS,
                account_id,
                f"balance {balance} but credits - debits = {net[account_id]}",
            )


def _pending_out(
    conn: Connection, tables: dict[str, str], params: dict[str, int]
) -> Iterator[Violation]:
    """Per account, pending_out = the sum of its pending payments."""
    return _sums_of_payments(conn, tables, params, column="pending_out", status="pending")


def _held(conn: Connection, tables: dict[str, str], params: dict[str, int]) -> Iterator[Violation]:
    """G8: per account, held = the sum of its authorized payments (read through the
    partial index of authorized payments)."""
    return _sums_of_payments(conn, tables, params, column="held", status="authorized")


def _sums_of_payments(
    conn: Connection,
    tables: dict[str, str],
    params: dict[str, int],
    *,
    column: str,
    status: str,
) -> Iterator[Violation]:
    """Per account, ``column`` = the sum of its outgoing payments in ``status``. Summed in
    Python: SQLite's ``total`` is a float, which cannot tell 2^62 + 1 from 2^62."""
    owed: defaultdict[str, int] = defaultdict(int)
    count: defaultdict[str, int] = defaultdict(int)
    for account_id, amount in conn.execute(
        f"SELECT from_account_id, amount FROM payments WHERE status = '{status}'"
        " AND from_account_id IN (SELECT id FROM {accounts})".format(**tables),
        params,
    ):
        owed[account_id] += amount
        count[account_id] += 1
    for account_id, value in conn.execute(
        f"SELECT id, {column} FROM {{accounts}}".format(**tables), params
    ):
        if value != owed[account_id]:
            yield Violation(
                f"{column} differs from the account's {status} payments",
                Scope.ACCOUNTS,
                account_id,
                f"{column} {value} but {count[account_id]} {status} payment(s)"
                f" of {owed[account_id]}",
            )


def _refunded(
    conn: Connection, tables: dict[str, str], params: dict[str, int]
) -> Iterator[Violation]:
    """G9: per payment, its refunds that are not failed add up to ``refund_reserved``,
    never more than it moved, and its completed ones to ``refunded_amount`` (the refunds
    read through the index of refunds by ``refund_of``)."""
    reserved: defaultdict[str, int] = defaultdict(int)
    refunded: defaultdict[str, int] = defaultdict(int)
    for refund_of, status, amount in conn.execute(
        "SELECT refund_of, status, amount FROM payments WHERE refund_of IN"
        " (SELECT id FROM {payments})".format(**tables),
        params,
    ):
        if status != "failed":
            reserved[refund_of] += amount
        if status == "completed":
            refunded[refund_of] += amount
    for payment_id, moved, refund_reserved, refunded_amount in conn.execute(
        "SELECT id, coalesce(captured_amount, amount), refund_reserved, refunded_amount"
        " FROM {payments} WHERE refund_reserved <> 0 OR refunded_amount <> 0"
        " OR EXISTS (SELECT 1 FROM payments AS refunds WHERE refunds.refund_of = payments.id"
        " AND refunds.status <> 'failed')".format(**tables),
        params,
    ):
        if reserved[payment_id] > moved:
            yield Violation(
                "refunds of a payment above what it moved",
                Scope.PAYMENTS,
                payment_id,
                f"refunds not failed {reserved[payment_id]} but it moved {moved}",
            )
        if refund_reserved != reserved[payment_id]:
            yield Violation(
                "refund_reserved differs from the payment's refunds that are not failed",
                Scope.PAYMENTS,
                payment_id,
                f"refund_reserved {refund_reserved} but refunds {reserved[payment_id]}",
            )
        if refunded_amount != refunded[payment_id]:
            yield Violation(
                "refunded_amount differs from the payment's completed refunds",
                Scope.PAYMENTS,
                payment_id,
                f"refunded_amount {refunded_amount} but completed refunds {refunded[payment_id]}",
            )


def _conservation(conn: Connection) -> Iterator[Violation]:
    """The sum of all balances equals the sum of all deposits."""
    balances = sum(balance for (balance,) in conn.execute("SELECT balance FROM accounts"))
    deposits = sum(amount for (amount,) in conn.execute("SELECT amount FROM deposits"))
    if balances != deposits:
        yield Violation(
            "sum of balances differs from sum of deposits",
            Scope.DATABASE,
            "all accounts",
            f"balances {balances} but deposits {deposits}",
        )
