"""The schema, as numbered migrations applied in order, written once for both engines.

``SQLITE_MIGRATIONS`` and ``POSTGRES_MIGRATIONS`` carry the same numbers. Tables,
columns, uniques, checks and indexes are one text; ``_Engine`` fills in what the two
spell differently: money is an ``INTEGER`` whose ``typeof`` is checked in SQLite and a
``BIGINT`` in PostgreSQL (the type itself refuses what ``typeof`` refuses), ``seq`` is
the rowid or an identity column, a currency code is matched by ``GLOB`` or ``~``.
Triggers are written per engine: SQL bodies in SQLite, PL/pgSQL functions raising
SQLSTATE 23000 (integrity_constraint_violation) in PostgreSQL, so that a refused write
is an integrity error on both. Timestamps are fixed-width text on both, which ids,
cursors and ordering rely on. The lists of statuses and failure codes that ``CHECK``s
allow are rendered from ``shared.enums``.

Money invariants live here, not only in Python: balances and amounts are checked
integers, each idempotency scope and each payment's debit and credit are unique, the
ledger is append-only, every entry's running balance continues the one before it, a
completed payment has exactly its debit and its credit of what it moved (migrations 4
and 8), held money never passes the balance, a payment's status only moves forward
(pending, then authorized, then final), and refunds never pass what a payment moved
(migration 8).

A migration that has run somewhere never changes: ``tests/unit/test_schema_history.py``
pins each one's text. Adding a member to an enum therefore takes a new migration that
widens the ``CHECK``, and migration 1 keeps rendering the members it had.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from shared.enums import (
    AccountStatus,
    CaptureMode,
    DeliveryStatus,
    Direction,
    EventType,
    FailureCode,
    PaymentActionKind,
    PaymentStatus,
    WebhookEndpointStatus,
)

_WIDTH = 88
"""Where a rendered line wraps (the width the scripts were first written to)."""


@dataclass(frozen=True, slots=True)
class _Engine:
    """How one engine spells what the shared tables say the same."""

    seq: str
    """The ``seq`` column: the order rows were written in, and their keyset cursor."""
    integer: str
    """The money type."""
    checks_type: bool
    """Whether a money column needs a ``CHECK`` of its type (SQLite's columns take any)."""
    currency_check: str
    """The ``CHECK`` of a three-letter currency code, of ``{column}``."""
    flag: str
    """A ``NOT NULL`` true-or-false column, of ``{column}``."""

    def money(self, column: str, rule: str, *, default: int | None = None) -> str:
        """A ``NOT NULL`` integer column checked by ``rule`` (``> 0``, ``>= 0``)."""
        head = f"{column} {self.integer} NOT NULL"
        if default is not None:
            head += f" DEFAULT {default}"
        typed = f"typeof({column}) = 'integer' AND " if self.checks_type else ""
        check = f"CHECK ({typed}{column} {rule})"
        if len(f"        {head} {check},") > _WIDTH:
            return f"{head}\n            {check}"
        return f"{head} {check}"

    def optional_money(self, column: str, rule: str) -> str:
        """An integer column that is ``NULL`` or checked by ``rule``."""
        typed = f"typeof({column}) = 'integer' AND " if self.checks_type else ""
        return f"{column} {self.integer} CHECK ({column} IS NULL OR ({typed}{column} {rule}))"

    def currency(self, column: str) -> str:
        return self.currency_check.format(column=column)

    def boolean(self, column: str) -> str:
        return self.flag.format(column=column)


_SQLITE = _Engine(
    seq="INTEGER PRIMARY KEY",
    integer="INTEGER",
    checks_type=True,
    currency_check="CHECK ({column} GLOB '[A-Z][A-Z][A-Z]')",
    flag="{column} INTEGER NOT NULL CHECK ({column} IN (0, 1))",
)
_POSTGRES = _Engine(
    seq="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    integer="BIGINT",
    checks_type=False,
    currency_check="CHECK ({column} ~ '^[A-Z]{{3}}$')",
    flag="{column} BOOLEAN NOT NULL",
)


def _quoted(value: enum.StrEnum) -> str:
    return f"'{value}'"


def _check_in(column: str, values: Iterable[enum.StrEnum], *, at: int) -> str:
    """``CHECK (column IN ('a', 'b'))``, starting at character ``at`` of its line and
    wrapped under its first value before the line would pass ``_WIDTH``."""
    head = f"CHECK ({column} IN ("
    first, *rest = [_quoted(value) for value in values]
    lines, line = [], head + first
    for item in rest:
        if at + len(f"{line}, {item}))") + 1 > _WIDTH:
            lines.append(f"{line},")
            line = " " * len(head) + item
        else:
            line = f"{line}, {item}"
    lines.append(f"{line}))")
    return ("\n" + " " * at).join(lines)


# 1: the first schema. Tables and indexes are shared; the triggers follow per engine.
# The payment statuses and failure codes it knew, as it rendered them: later members are
# a later migration's.
_STATUSES_1 = (PaymentStatus.PENDING, PaymentStatus.COMPLETED, PaymentStatus.FAILED)
_FAILURE_CODES_1 = (
    FailureCode.INSUFFICIENT_FUNDS,
    FailureCode.ACCOUNT_FROZEN,
    FailureCode.ACCOUNT_NOT_FOUND,
    FailureCode.BALANCE_LIMIT_EXCEEDED,
)


def _tables(e: _Engine) -> str:
    account_statuses = _check_in("status", AccountStatus, at=46)
    payment_statuses = _check_in("status", _STATUSES_1, at=12)
    failure_codes = _check_in("failure_code", _FAILURE_CODES_1, at=12)
    directions = _check_in("direction", Direction, at=32)
    return f"""
    CREATE TABLE users (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );

    CREATE TABLE api_keys (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id),
        key_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);

    CREATE TABLE accounts (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id),
        currency TEXT NOT NULL {e.currency("currency")},
        {e.money("balance", ">= 0", default=0)},
        -- The sum of the account's pending outgoing payments, kept with them.
        {e.money("pending_out", ">= 0", default=0)},
        status TEXT NOT NULL DEFAULT {_quoted(AccountStatus.ACTIVE)} {account_statuses},
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX accounts_user ON accounts (user_id, seq);

    CREATE TABLE deposits (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        {e.money("amount", "> 0")},
        description TEXT,
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (account_id, idempotency_key)
    );

    CREATE TABLE payments (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        from_account_id TEXT NOT NULL REFERENCES accounts (id),
        to_account_id TEXT NOT NULL REFERENCES accounts (id),
        from_user_id TEXT NOT NULL REFERENCES users (id),
        to_user_id TEXT NOT NULL REFERENCES users (id),
        {e.money("amount", "> 0")},
        currency TEXT NOT NULL {e.currency("currency")},
        description TEXT,
        status TEXT NOT NULL DEFAULT {_quoted(PaymentStatus.PENDING)}
            {payment_statuses},
        failure_code TEXT
            {failure_codes},
        failure_detail TEXT,
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        completed_at TEXT,
        UNIQUE (from_account_id, idempotency_key),
        CHECK (from_account_id <> to_account_id),
        CHECK ((status = 'pending') = (completed_at IS NULL)),
        CHECK ((status = 'failed') = (failure_code IS NOT NULL))
    );
    CREATE INDEX payments_pending ON payments (seq) WHERE status = 'pending';
    CREATE INDEX payments_from_account ON payments (from_account_id, seq);
    CREATE INDEX payments_to_account ON payments (to_account_id, seq);
    CREATE INDEX payments_from_user ON payments (from_user_id, seq);
    CREATE INDEX payments_to_user ON payments (to_user_id, seq);

    CREATE TABLE ledger_entries (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        direction TEXT NOT NULL {directions},
        {e.money("amount", "> 0")},
        {e.money("balance_after", ">= 0")},
        payment_id TEXT REFERENCES payments (id),
        deposit_id TEXT UNIQUE REFERENCES deposits (id),
        created_at TEXT NOT NULL,
        CHECK ((payment_id IS NULL) <> (deposit_id IS NULL)),
        CHECK (deposit_id IS NULL OR direction = 'credit'),
        UNIQUE (payment_id, direction)
    );
    CREATE INDEX ledger_entries_account ON ledger_entries (account_id, seq);
"""


_SQLITE_TRIGGERS_1 = """
    -- The ledger is append-only.
    CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
    CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
    BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;

    -- G3: an entry continues its account's running balance and matches the balance the
    -- same transaction wrote on the account.
    CREATE TRIGGER ledger_entries_running_balance BEFORE INSERT ON ledger_entries
    WHEN NEW.balance_after <> coalesce(
            (SELECT balance_after FROM ledger_entries
             WHERE account_id = NEW.account_id ORDER BY seq DESC LIMIT 1), 0)
         + CASE NEW.direction WHEN 'credit' THEN NEW.amount ELSE -NEW.amount END
      OR NEW.balance_after <> (SELECT balance FROM accounts WHERE id = NEW.account_id)
    BEGIN SELECT RAISE(ABORT, 'ledger entry does not continue the running balance'); END;

    -- A settled payment stays settled.
    CREATE TRIGGER payments_final BEFORE UPDATE ON payments
    WHEN OLD.status <> 'pending'
    BEGIN SELECT RAISE(ABORT, 'a settled payment cannot change'); END;
    """

_POSTGRES_TRIGGERS_1 = """
    -- The ledger is append-only.
    CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger entries are append-only'
            USING ERRCODE = 'integrity_constraint_violation';
    END $$;
    CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
    CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
    CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();

    -- G3: an entry continues its account's running balance and matches the balance the
    -- same transaction wrote on the account. (Writers hold the account's row lock, so
    -- the newest entry read here cannot change underneath.) Numeric, so that corrupt
    -- data is refused rather than overflowing.
    CREATE FUNCTION ledger_entries_running_balance() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        previous NUMERIC;
        expected NUMERIC;
        account_balance BIGINT;
    BEGIN
        SELECT balance_after INTO previous FROM ledger_entries
            WHERE account_id = NEW.account_id ORDER BY seq DESC LIMIT 1;
        SELECT balance INTO account_balance FROM accounts WHERE id = NEW.account_id;
        expected := coalesce(previous, 0)
            + CASE NEW.direction WHEN 'credit' THEN NEW.amount ELSE -NEW.amount END;
        IF NEW.balance_after <> expected OR NEW.balance_after <> account_balance THEN
            RAISE EXCEPTION 'ledger entry does not continue the running balance'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER ledger_entries_running_balance BEFORE INSERT ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_running_balance();

    -- A settled payment stays settled.
    CREATE FUNCTION payments_final() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.status <> 'pending' THEN
            RAISE EXCEPTION 'a settled payment cannot change'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER payments_final BEFORE UPDATE ON payments
        FOR EACH ROW EXECUTE FUNCTION payments_final();
    """

# 2: API keys listed newest first by keyset: on PostgreSQL an index on (user_id) alone
# makes every page a sort, while SQLite's already ends in the rowid (seq). Both engines
# carry the same index so that they stay one design.
_API_KEYS_BY_USER_AND_SEQ = """
    DROP INDEX api_keys_user;
    CREATE INDEX api_keys_user_seq ON api_keys (user_id, seq);
    """

# 3: G3 by construction: an entry that continues its account's running balance writes
# that balance onto the account. Money then moves in one statement for a whole group of
# entries, not two statements per entry.
_SQLITE_ENTRIES_MOVE_BALANCES = """
    DROP TRIGGER ledger_entries_running_balance;
    CREATE TRIGGER ledger_entries_running_balance BEFORE INSERT ON ledger_entries
    WHEN NEW.balance_after <> coalesce(
            (SELECT balance_after FROM ledger_entries
             WHERE account_id = NEW.account_id ORDER BY seq DESC LIMIT 1), 0)
         + CASE NEW.direction WHEN 'credit' THEN NEW.amount ELSE -NEW.amount END
    BEGIN SELECT RAISE(ABORT, 'ledger entry does not continue the running balance'); END;
    CREATE TRIGGER ledger_entries_move_balance AFTER INSERT ON ledger_entries
    BEGIN
        UPDATE accounts SET balance = NEW.balance_after, updated_at = NEW.created_at
        WHERE id = NEW.account_id;
    END;
    """

# PostgreSQL runs row-level AFTER triggers at the end of the statement, in row order,
# so the newest entry of an account is the last to write its balance.
_POSTGRES_ENTRIES_MOVE_BALANCES = """
    CREATE OR REPLACE FUNCTION ledger_entries_running_balance() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        previous NUMERIC;
        expected NUMERIC;
    BEGIN
        SELECT balance_after INTO previous FROM ledger_entries
            WHERE account_id = NEW.account_id ORDER BY seq DESC LIMIT 1;
        expected := coalesce(previous, 0)
            + CASE NEW.direction WHEN 'credit' THEN NEW.amount ELSE -NEW.amount END;
        IF NEW.balance_after <> expected THEN
            RAISE EXCEPTION 'ledger entry does not continue the running balance'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$;
    CREATE FUNCTION ledger_entries_move_balance() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE accounts SET balance = NEW.balance_after, updated_at = NEW.created_at
            WHERE id = NEW.account_id;
        RETURN NULL;
    END $$;
    CREATE TRIGGER ledger_entries_move_balance AFTER INSERT ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_move_balance();
    """

# 4: G2 in the database: a completed payment has exactly one debit of its amount on the
# sender and one credit of its amount on the receiver; any other payment has no entry.
# A payment's entries are at most one debit and one credit (UNIQUE (payment_id,
# direction)), so two that match are exactly the pair. Settling writes a payment's
# entries while it is still pending, then marks it completed (shared.engine).
#
# SQLite has no deferred triggers, so each step is refused as it happens: a payment
# that becomes (or is written as) completed without its pair, or settled otherwise with
# entries; an entry for a payment already settled. Entries are append-only and a settled
# payment final (migration 1), so the pair cannot be undone after. Left to the audit:
# entries for a payment that a transaction leaves pending (nothing runs at commit).
_UNPAIRED = "a completed payment has one debit and one credit of its amount"
_NOT_COMPLETED = "a payment that is not completed has no ledger entries"
_SETTLED = "a settled payment takes no more ledger entries"

_SQLITE_WITHOUT_PAIR = """NEW.status = 'completed' AND (
        SELECT count(*) FROM ledger_entries
        WHERE payment_id = NEW.id AND amount = NEW.amount
          AND account_id = CASE direction
              WHEN 'debit' THEN NEW.from_account_id ELSE NEW.to_account_id END) <> 2"""
_SQLITE_WITH_ENTRIES = """NEW.status <> 'completed'
     AND EXISTS (SELECT 1 FROM ledger_entries WHERE payment_id = NEW.id)"""

# (A payment settled already is payments_final's to refuse.)
_SQLITE_PAIRING = f"""
    CREATE TRIGGER payments_completed_paired BEFORE UPDATE OF status ON payments
    WHEN OLD.status = 'pending' AND {_SQLITE_WITHOUT_PAIR}
    BEGIN SELECT RAISE(ABORT, '{_UNPAIRED}'); END;
    CREATE TRIGGER payments_inserted_paired BEFORE INSERT ON payments
    WHEN {_SQLITE_WITHOUT_PAIR}
    BEGIN SELECT RAISE(ABORT, '{_UNPAIRED}'); END;
    CREATE TRIGGER payments_failed_unpaired BEFORE UPDATE OF status ON payments
    WHEN OLD.status = 'pending' AND {_SQLITE_WITH_ENTRIES}
    BEGIN SELECT RAISE(ABORT, '{_NOT_COMPLETED}'); END;
    CREATE TRIGGER payments_inserted_unpaired BEFORE INSERT ON payments
    WHEN {_SQLITE_WITH_ENTRIES}
    BEGIN SELECT RAISE(ABORT, '{_NOT_COMPLETED}'); END;
    CREATE TRIGGER ledger_entries_of_pending_payments BEFORE INSERT ON ledger_entries
    WHEN NEW.payment_id IS NOT NULL
     AND (SELECT status FROM payments WHERE id = NEW.payment_id) <> 'pending'
    BEGIN SELECT RAISE(ABORT, '{_SETTLED}'); END;
    """

# PostgreSQL checks at commit, once the transaction has written all it will: deferred
# constraint triggers, one query each. A payment settled checks its entries. An entry
# checks only that its payment is completed: that payment's own check (at this commit,
# or at the one that completed it) saw its pair, and no third entry fits beside it.
_POSTGRES_PAIRING = f"""
    CREATE FUNCTION payments_paired() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        payment_status TEXT;
        entries BIGINT;
        paired BIGINT;
    BEGIN
        SELECT payments.status, count(ledger_entries.id), count(ledger_entries.id) FILTER (
                WHERE ledger_entries.amount = payments.amount
                  AND ledger_entries.account_id = CASE ledger_entries.direction
                      WHEN 'debit' THEN payments.from_account_id
                      ELSE payments.to_account_id END)
            INTO payment_status, entries, paired
            FROM payments LEFT JOIN ledger_entries ON ledger_entries.payment_id = payments.id
            WHERE payments.id = NEW.id GROUP BY payments.seq;
        IF payment_status = 'completed' AND paired <> 2 THEN
            RAISE EXCEPTION '{_UNPAIRED}'
                USING ERRCODE = 'integrity_constraint_violation';
        ELSIF payment_status <> 'completed' AND entries <> 0 THEN
            RAISE EXCEPTION '{_NOT_COMPLETED}'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER payments_paired AFTER INSERT OR UPDATE OF status ON payments
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        WHEN (NEW.status <> 'pending') EXECUTE FUNCTION payments_paired();

    CREATE FUNCTION ledger_entries_paired() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT status FROM payments WHERE id = NEW.payment_id) <> 'completed' THEN
            RAISE EXCEPTION '{_NOT_COMPLETED}'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER ledger_entries_paired AFTER INSERT ON ledger_entries
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        WHEN (NEW.payment_id IS NOT NULL) EXECUTE FUNCTION ledger_entries_paired();
    """

# 5: signed requests. A key with signing: required keeps the secret its requests are
# signed with; NULL is a key without signing. HMAC needs the secret itself, so it is
# stored as issued, not hashed (docs/operations.md, API keys).
_API_KEYS_SIGNING = """
    ALTER TABLE api_keys ADD COLUMN signing_secret TEXT;
    """


# 6: events, the outbox (shared.events): each written in the transaction of the change
# it tells of, one row per user who may read it, holding the object as that user reads
# it. ``seq`` is the feed's order and must be commit order and never reused: SQLite's
# AUTOINCREMENT never hands out a number again, even once the newest rows are pruned
# (a plain rowid would), and one writer at a time makes its order commit order;
# PostgreSQL's identity column is drawn under a lock held until the commit
# (``Engine.order_commits``). A user's feed is one range scan of ``events_user``.
def _events(seq: str) -> str:
    types = _check_in("type", EventType, at=27)
    return f"""
    CREATE TABLE events (
        seq {seq},
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id),
        type TEXT NOT NULL {types},
        object TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX events_user ON events (user_id, seq);
    """


# 7: webhooks (shared.webhooks): a user's endpoints, and one delivery per endpoint and
# event, written in the event's transaction (shared.webhook_outbox). A delivery is
# ``pending`` exactly while it has a next attempt; the worker's sweep finds due ones by
# ``webhook_deliveries_due``. An endpoint keeps its secret as issued (HMAC needs it) and,
# for a while after a rotation, the one before. Deliveries go with their endpoint, and
# with their event when the event is pruned.
def _webhooks(e: _Engine) -> str:
    endpoint_statuses = _check_in("status", WebhookEndpointStatus, at=12)
    delivery_statuses = _check_in("status", DeliveryStatus, at=12)
    return f"""
    CREATE TABLE webhook_endpoints (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id),
        url TEXT NOT NULL CHECK (length(url) <= 2048),
        description TEXT,
        -- A JSON array of event types; NULL: every type, those added later too.
        event_types TEXT,
        status TEXT NOT NULL DEFAULT {_quoted(WebhookEndpointStatus.ENABLED)}
            {endpoint_statuses},
        secret TEXT NOT NULL,
        previous_secret TEXT,
        previous_secret_until TEXT,
        -- The first failed attempt since the last success: what disables it in time.
        failing_since TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL))
    );
    CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id, seq);

    CREATE TABLE webhook_deliveries (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
        event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        event_type TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT {_quoted(DeliveryStatus.PENDING)}
            {delivery_statuses},
        {e.money("attempts", ">= 0", default=0)},
        next_attempt_at TEXT,
        last_attempt_at TEXT,
        last_status_code INTEGER,
        last_error TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (event_id, endpoint_id),
        CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
    );
    CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE status = 'pending';
    """


# 8: holds, refunds and batches. Accounts gain ``held`` (the sum of their authorized
# payments), which never passes the balance, so that available = balance - held is never
# negative. Payments gain how they are captured, what an authorization reserved and
# captured, what their refunds reserved and moved, and their place in a batch; statuses
# ``authorized``, ``voided`` and ``expired``. A payment's life is enforced here:
#
#   pending ──▶ completed | failed | authorized
#   authorized ──▶ completed (captured) | voided | expired
#
# completed_at is NULL exactly while a payment is pending or authorized; once final,
# nothing of it changes but what its refunds reserved and moved; an authorization ends
# with nothing but its status, captured amount and completed_at changed. A completed
# payment's pair of entries is of what it moved: captured_amount if set, else amount.
_OPEN_STATUSES = (PaymentStatus.PENDING, PaymentStatus.AUTHORIZED)
_AUTHORIZATION_ENDS = (PaymentStatus.COMPLETED, PaymentStatus.VOIDED, PaymentStatus.EXPIRED)
_PENDING_ENDS = (
    PaymentStatus.PENDING,
    PaymentStatus.COMPLETED,
    PaymentStatus.FAILED,
    PaymentStatus.AUTHORIZED,
)
_HOLD_STATUSES = (PaymentStatus.AUTHORIZED, PaymentStatus.VOIDED, PaymentStatus.EXPIRED)


def _in(values: Iterable[enum.StrEnum]) -> str:
    """``('a', 'b')``: an SQL list of these values."""
    return f"({', '.join(_quoted(value) for value in values)})"


_PAYMENT_COLUMNS_1 = (
    "seq, id, from_account_id, to_account_id, from_user_id, to_user_id, amount, currency,"
    " description, status, failure_code, failure_detail, idempotency_key, request_hash,"
    " created_at, completed_at"
)
_PAYMENT_COLUMNS_8 = (
    *_PAYMENT_COLUMNS_1.split(", "),
    "capture",
    "hold_seconds",
    "expires_at",
    "captured_amount",
    "refund_of",
    "refunded_amount",
    "refund_reserved",
    "batch_id",
    "batch_index",
)
_REFUND_COLUMNS = ("refunded_amount", "refund_reserved")
_CAPTURE_COLUMNS = ("status", "captured_amount", "completed_at")


def _payment_columns_8(e: _Engine) -> list[str]:
    """The columns migration 8 adds to ``payments``."""
    return [
        f"capture TEXT NOT NULL DEFAULT {_quoted(CaptureMode.AUTOMATIC)}"
        f" CHECK (capture IN {_in(CaptureMode)})",
        e.optional_money("hold_seconds", "> 0"),
        "expires_at TEXT",
        e.optional_money("captured_amount", "> 0"),
        "refund_of TEXT REFERENCES payments (id)",
        e.money("refunded_amount", ">= 0", default=0),
        e.money("refund_reserved", ">= 0", default=0),
        "batch_id TEXT REFERENCES batches (id)",
        e.optional_money("batch_index", ">= 0"),
    ]


_PAYMENT_CHECKS_8 = {
    "payments_status_check": f"status IN {_in(PaymentStatus)}",
    "payments_failure_code_check": f"failure_code IN {_in(FailureCode)}",
    "payments_completed_at_once_final": (
        f"(status IN {_in(_OPEN_STATUSES)}) = (completed_at IS NULL)"
    ),
    "payments_held_only_if_manual": (
        f"status NOT IN {_in(_HOLD_STATUSES)} OR capture = {_quoted(CaptureMode.MANUAL)}"
    ),
    "payments_hold_seconds_if_manual": (
        f"(capture = {_quoted(CaptureMode.MANUAL)}) = (hold_seconds IS NOT NULL)"
    ),
    "payments_expires_when_authorized": (
        "(status <> 'authorized' OR expires_at IS NOT NULL)"
        f" AND (expires_at IS NULL OR capture = {_quoted(CaptureMode.MANUAL)})"
    ),
    "payments_captured_when_completed": (
        f"(capture = {_quoted(CaptureMode.MANUAL)} AND status = 'completed')"
        " = (captured_amount IS NOT NULL)"
    ),
    "payments_capture_within_authorization": (
        "captured_amount IS NULL OR captured_amount <= amount"
    ),
    "payments_refund_is_automatic": (
        f"refund_of IS NULL OR (refund_of <> id AND capture = {_quoted(CaptureMode.AUTOMATIC)})"
    ),
    "payments_refunded_within_reserved": "refunded_amount <= refund_reserved",
    "payments_refunds_within_payment": "refund_reserved <= coalesce(captured_amount, amount)",
    "payments_batch_position": "(batch_id IS NULL) = (batch_index IS NULL)",
}


def _changed(columns: Iterable[str], *, differ: str) -> str:
    """Whether an update changes any of these columns (``differ``: the engine's
    NULL-safe "is not")."""
    tests = [f"NEW.{column} {differ} OLD.{column}" for column in columns]
    lines = [" OR ".join(tests[at : at + 3]) for at in range(0, len(tests), 3)]
    return "\n           OR ".join(lines)


def _final_changed(differ: str) -> str:
    return _changed([c for c in _PAYMENT_COLUMNS_8 if c not in _REFUND_COLUMNS], differ=differ)


def _authorization_changed(differ: str) -> str:
    return _changed([c for c in _PAYMENT_COLUMNS_8 if c not in _CAPTURE_COLUMNS], differ=differ)


_SETTLED_CHANGES = "a settled payment cannot change"
_AUTHORIZATION_ENDS_ONLY = "an authorization ends captured, voided or expired, and only so"
_PENDING_ENDS_ONLY = "a pending payment becomes completed, failed or authorized"
_UNPAIRED_8 = "a completed payment has one debit and one credit of what it moved"


def _accounts_and_tables_8(e: _Engine) -> str:
    """What both engines add the same way: ``batches``, ``payment_actions``."""
    return f"""
    CREATE TABLE batches (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id),
        {e.boolean("atomic")},
        size {e.integer} NOT NULL CHECK (size > 0),
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        settled_at TEXT,
        UNIQUE (user_id, idempotency_key)
    );
    """


def _payment_actions_8(e: _Engine) -> str:
    """A capture's or a void's first answer, replayed to its ``Idempotency-Key``."""
    return f"""
    CREATE TABLE payment_actions (
        seq {e.seq},
        payment_id TEXT NOT NULL REFERENCES payments (id),
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN {_in(PaymentActionKind)}),
        status_code {e.integer} NOT NULL CHECK (status_code >= 100 AND status_code <= 599),
        response TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (payment_id, idempotency_key)
    );

    CREATE INDEX payments_authorized ON payments (expires_at) WHERE status = 'authorized';
    CREATE INDEX payments_refunds ON payments (refund_of) WHERE refund_of IS NOT NULL;
    """


def _sqlite_payments_8() -> str:
    """SQLite cannot change a ``CHECK``: ``payments`` is made again. Its rows are kept
    aside, the table dropped and made anew under its own name, and the rows put back:
    the ledger's entries then reference the new table, and the foreign keys they broke
    for a moment (deferred to the commit) hold again once their payments are back."""
    e = _SQLITE
    columns = ",\n        ".join(_payment_columns_8(e))
    checks = ",\n        ".join(
        f"CONSTRAINT {name} CHECK ({rule})" for name, rule in _PAYMENT_CHECKS_8.items()
    )
    return f"""
    ALTER TABLE accounts ADD COLUMN {e.money("held", ">= 0", default=0)}
        CONSTRAINT accounts_held_within_balance CHECK (held <= balance);
    {_accounts_and_tables_8(e)}
    PRAGMA defer_foreign_keys = ON;
    DROP TRIGGER ledger_entries_of_pending_payments;
    CREATE TEMP TABLE payments_before AS SELECT * FROM payments;
    DROP TABLE payments;
    CREATE TABLE payments (
        seq {e.seq},
        id TEXT NOT NULL UNIQUE,
        from_account_id TEXT NOT NULL REFERENCES accounts (id),
        to_account_id TEXT NOT NULL REFERENCES accounts (id),
        from_user_id TEXT NOT NULL REFERENCES users (id),
        to_user_id TEXT NOT NULL REFERENCES users (id),
        {e.money("amount", "> 0")},
        currency TEXT NOT NULL {e.currency("currency")},
        description TEXT,
        status TEXT NOT NULL DEFAULT {_quoted(PaymentStatus.PENDING)},
        failure_code TEXT,
        failure_detail TEXT,
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        completed_at TEXT,
        {columns},
        UNIQUE (from_account_id, idempotency_key),
        UNIQUE (batch_id, batch_index),
        CHECK (from_account_id <> to_account_id),
        CHECK ((status = 'failed') = (failure_code IS NOT NULL)),
        {checks}
    );
    INSERT INTO payments ({_PAYMENT_COLUMNS_1})
        SELECT {_PAYMENT_COLUMNS_1} FROM temp.payments_before ORDER BY seq;
    DROP TABLE temp.payments_before;
    CREATE INDEX payments_pending ON payments (seq) WHERE status = 'pending';
    CREATE INDEX payments_from_account ON payments (from_account_id, seq);
    CREATE INDEX payments_to_account ON payments (to_account_id, seq);
    CREATE INDEX payments_from_user ON payments (from_user_id, seq);
    CREATE INDEX payments_to_user ON payments (to_user_id, seq);
    {_payment_actions_8(e)}
    -- A payment's life (see above).
    CREATE TRIGGER payments_final BEFORE UPDATE ON payments
    WHEN OLD.status NOT IN {_in(_OPEN_STATUSES)} AND ({_final_changed("IS NOT")})
    BEGIN SELECT RAISE(ABORT, '{_SETTLED_CHANGES}'); END;
    CREATE TRIGGER payments_authorization_ends BEFORE UPDATE ON payments
    WHEN OLD.status = 'authorized' AND (NEW.status NOT IN {_in(_AUTHORIZATION_ENDS)}
        OR {_authorization_changed("IS NOT")})
    BEGIN SELECT RAISE(ABORT, '{_AUTHORIZATION_ENDS_ONLY}'); END;
    CREATE TRIGGER payments_pending_ends BEFORE UPDATE ON payments
    WHEN OLD.status = 'pending' AND NEW.status NOT IN {_in(_PENDING_ENDS)}
    BEGIN SELECT RAISE(ABORT, '{_PENDING_ENDS_ONLY}'); END;
    {_SQLITE_PAIRING_8}"""


_SQLITE_WITHOUT_PAIR_8 = """NEW.status = 'completed' AND (
        SELECT count(*) FROM ledger_entries
        WHERE payment_id = NEW.id AND amount = coalesce(NEW.captured_amount, NEW.amount)
          AND account_id = CASE direction
              WHEN 'debit' THEN NEW.from_account_id ELSE NEW.to_account_id END) <> 2"""

# Migration 4's triggers, by the same names, for the new table and the new statuses:
# entries are written while a payment is pending or authorized, then it is completed.
_SQLITE_PAIRING_8 = f"""
    CREATE TRIGGER payments_completed_paired BEFORE UPDATE OF status ON payments
    WHEN OLD.status IN {_in(_OPEN_STATUSES)} AND {_SQLITE_WITHOUT_PAIR_8}
    BEGIN SELECT RAISE(ABORT, '{_UNPAIRED_8}'); END;
    CREATE TRIGGER payments_inserted_paired BEFORE INSERT ON payments
    WHEN {_SQLITE_WITHOUT_PAIR_8}
    BEGIN SELECT RAISE(ABORT, '{_UNPAIRED_8}'); END;
    CREATE TRIGGER payments_failed_unpaired BEFORE UPDATE OF status ON payments
    WHEN OLD.status IN {_in(_OPEN_STATUSES)} AND {_SQLITE_WITH_ENTRIES}
    BEGIN SELECT RAISE(ABORT, '{_NOT_COMPLETED}'); END;
    CREATE TRIGGER payments_inserted_unpaired BEFORE INSERT ON payments
    WHEN {_SQLITE_WITH_ENTRIES}
    BEGIN SELECT RAISE(ABORT, '{_NOT_COMPLETED}'); END;
    CREATE TRIGGER ledger_entries_of_pending_payments BEFORE INSERT ON ledger_entries
    WHEN NEW.payment_id IS NOT NULL
     AND (SELECT status FROM payments WHERE id = NEW.payment_id) NOT IN {_in(_OPEN_STATUSES)}
    BEGIN SELECT RAISE(ABORT, '{_SETTLED}'); END;
    """


def _postgres_payments_8() -> str:
    """PostgreSQL changes ``payments`` in place; its triggers keep their functions' names."""
    e = _POSTGRES
    added = ",\n        ".join(
        [f"ADD COLUMN {column}" for column in _payment_columns_8(e)]
        + [f"ADD CONSTRAINT {name} CHECK ({rule})" for name, rule in _PAYMENT_CHECKS_8.items()]
    )
    return f"""
    ALTER TABLE accounts ADD COLUMN {e.money("held", ">= 0", default=0)},
        ADD CONSTRAINT accounts_held_within_balance CHECK (held <= balance);
    {_accounts_and_tables_8(e)}
    ALTER TABLE payments
        DROP CONSTRAINT payments_status_check,
        DROP CONSTRAINT payments_failure_code_check,
        DROP CONSTRAINT payments_check1,
        {added},
        ADD UNIQUE (batch_id, batch_index);
    {_payment_actions_8(e)}
    -- A payment's life (see above).
    CREATE OR REPLACE FUNCTION payments_final() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.status NOT IN {_in(_OPEN_STATUSES)}
           AND ({_final_changed("IS DISTINCT FROM")}) THEN
            RAISE EXCEPTION '{_SETTLED_CHANGES}'
                USING ERRCODE = 'integrity_constraint_violation';
        ELSIF OLD.status = 'authorized' AND (NEW.status NOT IN {_in(_AUTHORIZATION_ENDS)}
           OR {_authorization_changed("IS DISTINCT FROM")}) THEN
            RAISE EXCEPTION '{_AUTHORIZATION_ENDS_ONLY}'
                USING ERRCODE = 'integrity_constraint_violation';
        ELSIF OLD.status = 'pending' AND NEW.status NOT IN {_in(_PENDING_ENDS)} THEN
            RAISE EXCEPTION '{_PENDING_ENDS_ONLY}'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$;

    CREATE OR REPLACE FUNCTION payments_paired() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        payment_status TEXT;
        entries BIGINT;
        paired BIGINT;
    BEGIN
        SELECT payments.status, count(ledger_entries.id), count(ledger_entries.id) FILTER (
                WHERE ledger_entries.amount
                      = coalesce(payments.captured_amount, payments.amount)
                  AND ledger_entries.account_id = CASE ledger_entries.direction
                      WHEN 'debit' THEN payments.from_account_id
                      ELSE payments.to_account_id END)
            INTO payment_status, entries, paired
            FROM payments LEFT JOIN ledger_entries ON ledger_entries.payment_id = payments.id
            WHERE payments.id = NEW.id GROUP BY payments.seq;
        IF payment_status = 'completed' AND paired <> 2 THEN
            RAISE EXCEPTION '{_UNPAIRED_8}'
                USING ERRCODE = 'integrity_constraint_violation';
        ELSIF payment_status <> 'completed' AND entries <> 0 THEN
            RAISE EXCEPTION '{_NOT_COMPLETED}'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NULL;
    END $$;
    """


# 9: PostgreSQL moves each account's balance once a statement, to its newest entry's
# balance_after, instead of once an entry: a settled group's 512 entries made 512
# updates of about 100 account rows, each a new row version, and most of the server's
# CPU a payment. The transition table holds the statement's entries; an AFTER trigger
# runs at the statement's end, where the row triggers ran. Each entry's balance is
# still checked against the money held on its account (the accounts' own CHECK sees
# only the newest). SQLite's triggers have no statement-level form with the rows: its
# migration 9 changes nothing.
_SQLITE_BALANCES_ONCE_A_STATEMENT = ""

_POSTGRES_BALANCES_ONCE_A_STATEMENT = """
    DROP TRIGGER ledger_entries_move_balance ON ledger_entries;
    DROP FUNCTION ledger_entries_move_balance();
    CREATE FUNCTION ledger_entries_move_balances() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM new_entries JOIN accounts ON accounts.id = new_entries.account_id
                   WHERE new_entries.balance_after < accounts.held) THEN
            RAISE EXCEPTION 'an entry violates check constraint accounts_held_within_balance'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_held_within_balance';
        END IF;
        UPDATE accounts SET balance = newest.balance_after, updated_at = newest.created_at
            FROM (SELECT DISTINCT ON (account_id) account_id, balance_after, created_at
                  FROM new_entries ORDER BY account_id, seq DESC) AS newest
            WHERE accounts.id = newest.account_id;
        RETURN NULL;
    END $$;
    CREATE TRIGGER ledger_entries_move_balances AFTER INSERT ON ledger_entries
        REFERENCING NEW TABLE AS new_entries
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_move_balances();
    """


SQLITE_MIGRATIONS: tuple[str, ...] = (
    _tables(_SQLITE) + _SQLITE_TRIGGERS_1,
    _API_KEYS_BY_USER_AND_SEQ,
    _SQLITE_ENTRIES_MOVE_BALANCES,
    _SQLITE_PAIRING,
    _API_KEYS_SIGNING,
    _events("INTEGER PRIMARY KEY AUTOINCREMENT"),
    _webhooks(_SQLITE),
    _sqlite_payments_8(),
    _SQLITE_BALANCES_ONCE_A_STATEMENT,
)
"""SQLite's migrations; the version is kept in ``PRAGMA user_version``."""

POSTGRES_MIGRATIONS: tuple[str, ...] = (
    _tables(_POSTGRES) + _POSTGRES_TRIGGERS_1,
    _API_KEYS_BY_USER_AND_SEQ,
    _POSTGRES_ENTRIES_MOVE_BALANCES,
    _POSTGRES_PAIRING,
    _API_KEYS_SIGNING,
    _events(_POSTGRES.seq),
    _webhooks(_POSTGRES),
    _postgres_payments_8(),
    _POSTGRES_BALANCES_ONCE_A_STATEMENT,
)
"""PostgreSQL's migrations; the version is kept in the ``schema_version`` table."""
