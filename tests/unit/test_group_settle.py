"""Settling in groups decides every payment exactly as settling them one by one would."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shared import accounts
from shared.audit import verify
from shared.engine import settle_payment, settle_pending
from shared.records import AccountStatus
from shared.store import Database
from shared.store.sqlite import SQLiteDatabase
from tests.unit.helpers import new_customer, pay

Outcome = tuple[str, str | None]


def _scenario(path: Path, seed: int) -> tuple[Database, list[str], list[str]]:
    """Six funded accounts, one frozen, and 150 random transfers among them, pending."""
    db = SQLiteDatabase(str(path))
    db.migrate()
    rng = random.Random(seed)
    people = [new_customer(db, f"P{n}", main=rng.randrange(0, 400)) for n in range(3)]
    pool = [account for person in people for account in (person.main, person.savings)]
    owner = {a.id: p.user.id for p in people for a in (p.main, p.savings)}
    frozen = rng.choice(pool)
    db.run(accounts.set_status, owner[frozen.id], frozen.id, AccountStatus.FROZEN)
    ids = []
    for _ in range(150):
        sender, receiver = rng.sample(pool, 2)
        ids.append(pay(db, sender, receiver, rng.randrange(1, 120)).id)
    return db, ids, [a.id for a in pool]


def _outcomes(
    db: Database, ids: list[str], account_ids: list[str]
) -> tuple[list[Outcome], list[int]]:
    conn = db.connection()
    outcomes = [
        (row["status"], row["failure_code"])
        for row in (
            conn.execute("SELECT status, failure_code FROM payments WHERE id = ?", (i,)).fetchone()
            for i in ids
        )
    ]
    balances = [
        conn.execute("SELECT balance FROM accounts WHERE id = ?", (a,)).fetchone()[0]
        for a in account_ids
    ]
    return outcomes, balances


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("group", [1, 7, 64, 256])
def test_groups_decide_exactly_as_one_by_one(tmp_path: Path, seed: int, group: int) -> None:
    alone, alone_ids, alone_accounts = _scenario(tmp_path / "alone.db", seed)
    grouped, grouped_ids, grouped_accounts = _scenario(tmp_path / "grouped.db", seed)
    try:
        for payment_id in alone_ids:
            settle_payment(alone, payment_id)
        while settle_pending(grouped, limit=group):
            pass

        expected = _outcomes(alone, alone_ids, alone_accounts)
        assert _outcomes(grouped, grouped_ids, grouped_accounts) == expected
        statuses = {status for status, _ in expected[0]}
        assert statuses == {"completed", "failed"}, "the scenario should exercise both"
        assert verify(grouped) == []
    finally:
        alone.close()
        grouped.close()
