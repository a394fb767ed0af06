"""The schema of ``shared.schema`` in PostgreSQL's words, migration for migration.

Same tables, columns, uniques and checks; money is ``BIGINT`` (so the types themselves
refuse what SQLite's ``typeof`` checks refuse), ``seq`` is an identity column, and
timestamps stay the fixed-width text that ids, cursors and ordering rely on. The
triggers are the same invariants in PL/pgSQL; each raises SQLSTATE 23000
(integrity_constraint_violation), so a refused write is an integrity error on both.
The version is kept in ``schema_version`` (SQLite keeps it in ``PRAGMA user_version``).
"""

from __future__ import annotations

POSTGRES_MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE users (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );

    CREATE TABLE api_keys (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id),
        key_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE INDEX api_keys_user ON api_keys (user_id);

    CREATE TABLE accounts (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id),
        currency TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        balance BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
        -- The sum of the account's pending outgoing payments, kept with them.
        pending_out BIGINT NOT NULL DEFAULT 0 CHECK (pending_out >= 0),
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen')),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX accounts_user ON accounts (user_id, seq);

    CREATE TABLE deposits (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        amount BIGINT NOT NULL CHECK (amount > 0),
        description TEXT,
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (account_id, idempotency_key)
    );

    CREATE TABLE payments (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        from_account_id TEXT NOT NULL REFERENCES accounts (id),
        to_account_id TEXT NOT NULL REFERENCES accounts (id),
        from_user_id TEXT NOT NULL REFERENCES users (id),
        to_user_id TEXT NOT NULL REFERENCES users (id),
        amount BIGINT NOT NULL CHECK (amount > 0),
        currency TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
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
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL REFERENCES accounts (id),
        direction TEXT NOT NULL CHECK (direction IN ('debit', 'credit')),
        amount BIGINT NOT NULL CHECK (amount > 0),
        balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
        payment_id TEXT REFERENCES payments (id),
        deposit_id TEXT UNIQUE REFERENCES deposits (id),
        created_at TEXT NOT NULL,
        CHECK ((payment_id IS NULL) <> (deposit_id IS NULL)),
        CHECK (deposit_id IS NULL OR direction = 'credit'),
        UNIQUE (payment_id, direction)
    );
    CREATE INDEX ledger_entries_account ON ledger_entries (account_id, seq);

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
    """,
    # 2: see shared.schema.
    """
    DROP INDEX api_keys_user;
    CREATE INDEX api_keys_user_seq ON api_keys (user_id, seq);
    """,
    # 3: see shared.schema. Row-level AFTER triggers run at the end of the statement, in
    # row order, so the newest entry of an account is the last to write its balance.
    """
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
    """,
    # 4: see shared.schema.
    """
    ALTER TABLE api_keys ADD COLUMN signing_secret TEXT;
    """,
)
