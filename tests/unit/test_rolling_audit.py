from __future__ import annotations

import itertools

from shared.audit import RollingAudit, Scope, audit, verify
from shared.engine import settle_pending
from shared.store import Database
from tests.unit.helpers import (
    Customer,
    count_rows,
    insert_deposit_row,
    insert_payment_row,
    new_customer,
    pay,
    unguarded_write,
)


def _traffic(db: Database, customers: list[Customer]) -> None:
    for sender, receiver in itertools.pairwise(customers):
        pay(db, sender.main, receiver.main, 300)
        pay(db, sender.savings, receiver.savings, 5_000)  # insufficient funds
    settle_pending(db, limit=1_000)
    pay(db, customers[0].main, customers[1].savings, 1)  # stays pending


def _corrupt_balance(db: Database, account_id: str) -> None:
    db.connection().execute("UPDATE accounts SET balance = balance + 1 WHERE id = ?", (account_id,))


def _full_cycle(rolling: RollingAudit, db: Database) -> list[str]:
    found: list[str] = []
    while True:
        run = rolling.run(db)
        found.extend(str(violation) for violation in run.found)
        if run.cycle_complete:
            return found


def test_a_healthy_database_reconciles_clean_in_bounded_batches(db: Database) -> None:
    customers = [new_customer(db, f"User{i}") for i in range(4)]  # 8 accounts
    _traffic(db, customers)
    rolling = RollingAudit(batch=3)

    runs = [rolling.run(db) for _ in range(3)]

    assert [run.checked[Scope.ACCOUNTS] for run in runs] == [3, 3, 2]
    assert [run.cycle_complete for run in runs] == [False, False, True]
    assert all(run.found == [] for run in runs)
    assert rolling.open == []
    # The next run starts over at the first account.
    assert rolling.run(db).checked[Scope.ACCOUNTS] == 3


def test_payments_and_deposits_are_checked_round_robin_too(db: Database) -> None:
    customers = [new_customer(db, f"User{i}") for i in range(3)]
    _traffic(db, customers)
    payments, deposits = count_rows(db, "payments"), count_rows(db, "deposits")
    rolling = RollingAudit(batch=2)

    checked = [rolling.run(db).checked for _ in range(4)]

    assert payments == 5
    assert sum(c[Scope.PAYMENTS] for c in checked[:3]) == payments
    assert sum(c[Scope.DEPOSITS] for c in checked[:3]) == deposits == 6
    assert checked[3][Scope.DEPOSITS] == 0  # wrapped: the run after the last slice


def test_a_corrupted_balance_is_found_when_its_batch_comes_round_and_stays_open(
    db: Database,
) -> None:
    customers = [new_customer(db, f"User{i}") for i in range(4)]
    _traffic(db, customers)
    victim = customers[3].main  # in the third batch of 3
    _corrupt_balance(db, victim.id)
    rolling = RollingAudit(batch=3)

    first, second, third = (rolling.run(db) for _ in range(3))

    assert first.found == second.found == []
    assert {(v.check, v.subject) for v in third.found} == {
        ("balance differs from its newest entry's balance_after", victim.id),
        ("balance differs from its ledger", victim.id),
        ("sum of balances differs from sum of deposits", "all accounts"),
    }
    # Other accounts' batches do not clear it: it stays open until its row is rechecked.
    assert rolling.run(db).found == []
    assert len(rolling.open) == 3

    db.connection().execute("UPDATE accounts SET balance = balance - 1 WHERE id = ?", (victim.id,))
    rolling.run(db)  # accounts 4 to 6
    assert len(rolling.open) == 3  # not yet rechecked
    rolling.run(db)  # accounts 7 and 8, the victim's, and the totals
    assert rolling.open == []


def test_a_full_cycle_finds_what_verify_finds_but_foreign_keys(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    _traffic(db, [alice, bob, carol])
    _corrupt_balance(db, bob.savings.id)
    db.connection().execute(
        "UPDATE accounts SET pending_out = pending_out + 7 WHERE id = ?", (carol.main.id,)
    )
    with unguarded_write(db) as conn:
        insert_payment_row(conn, alice.main, bob.main, status="completed")
    insert_deposit_row(db.connection(), carol.savings.id, 50)

    found = _full_cycle(RollingAudit(batch=2), db)

    kinds = {line.split(": ", 1)[0] for line in found}
    assert kinds == {
        "balance differs from its newest entry's balance_after",
        "balance differs from its ledger",
        "pending_out differs from the account's pending payments",
        "completed payment without exactly one debit and one credit of its amount",
        "deposit without exactly one credit of its amount",
        "sum of balances differs from sum of deposits",
    }
    assert sorted(found) == sorted(verify(db))
    assert {v.scope for v in audit(db)} == {
        Scope.ACCOUNTS,
        Scope.PAYMENTS,
        Scope.DEPOSITS,
        Scope.DATABASE,
    }


def test_an_empty_database_reconciles_clean(db: Database) -> None:
    run = RollingAudit(batch=10).run(db)

    assert run.found == []
    assert run.cycle_complete
    assert run.checked == dict.fromkeys((Scope.ACCOUNTS, Scope.PAYMENTS, Scope.DEPOSITS), 0)
