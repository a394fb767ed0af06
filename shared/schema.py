"""The SQLite schema, as numbered migrations applied in order (``PRAGMA user_version``).

``shared.schema_postgres`` is the same schema, version for version, in PostgreSQL's words.

Money invariants live here too, not only in Python: balances and amounts are checked
integers, each idempotency scope and each payment's debit and credit are unique, the
ledger is append-only and every entry's running balance must continue the one before it.
"""

from __future__ import annotations

SQLITE_MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE users (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );

    CREATE TABLE api_keys (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id),
        key_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);

    CREATE TABLE accounts (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id),
        currency TEXT NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
        balance INTEGER NOT NULL DEFAULT 0
            CHECK (typeof(balance) = 'integer' AND balance >= 0),
        -- The sum of the account's pending outgoing payments, kept with them.
        pending_out INTEGER NOT NULL DEFAULT 0
            CHECK (typeof(pending_out) = 'integer' AND pending_out >= 0),
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen')),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX accounts_user ON accounts (user_id, seq);

    CREATE TABLE deposits (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        amount INTEGER NOT NULL CHECK (typeof(amount) = 'integer' AND amount > 0),
        description TEXT,
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (account_id, idempotency_key)
    );

    CREATE TABLE payments (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        from_account_id TEXT NOT NULL REFERENCES accounts (id),
        to_account_id TEXT NOT NULL REFERENCES accounts (id),
        from_user_id TEXT NOT NULL REFERENCES users (id),
        to_user_id TEXT NOT NULL REFERENCES users (id),
        amount INTEGER NOT NULL CHECK (typeof(amount) = 'integer' AND amount > 0),
        currency TEXT NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
        description TEXT,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'completed', 'failed')),
        failure_code TEXT
            CHECK (failure_code IN ('insufficient_funds', 'account_frozen',
                                    'account_not_found', 'balance_limit_exceeded')),
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
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        direction TEXT NOT NULL CHECK (direction IN ('debit', 'credit')),
        amount INTEGER NOT NULL CHECK (typeof(amount) = 'integer' AND amount > 0),
        balance_after INTEGER NOT NULL
            CHECK (typeof(balance_after) = 'integer' AND balance_after >= 0),
        payment_id TEXT REFERENCES payments (id),
        deposit_id TEXT UNIQUE REFERENCES deposits (id),
        created_at TEXT NOT NULL,
        CHECK ((payment_id IS NULL) <> (deposit_id IS NULL)),
        CHECK (deposit_id IS NULL OR direction = 'credit'),
        UNIQUE (payment_id, direction)
    );
    CREATE INDEX ledger_entries_account ON ledger_entries (account_id, seq);

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
    """,
    # 2: API keys listed newest first by keyset: on PostgreSQL an index on (user_id)
    # alone makes every page a sort, while SQLite's already ends in the rowid (seq).
    # Both schemas carry the same index so that they stay one design.
    """
    DROP INDEX api_keys_user;
    CREATE INDEX api_keys_user_seq ON api_keys (user_id, seq);
    """,
    # 3: G3 by construction: an entry that continues its account's running balance
    # writes that balance onto the account. Money then moves in one statement for a
    # whole group of entries, not two statements per entry.
    """
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
    """,
    # 4: signed requests. A key with signing: required keeps the secret its requests are
    # signed with; NULL is a key without signing. HMAC needs the secret itself, so it is
    # stored as issued, not hashed (docs/operations.md, API keys).
    """
    ALTER TABLE api_keys ADD COLUMN signing_secret TEXT;
    """,
)
