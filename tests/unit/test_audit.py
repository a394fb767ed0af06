from __future__ import annotations

from shared import accounts
from shared.accounts import MAX_BALANCE
from shared.audit import verify
from shared.engine import settle_payment
from shared.records import AccountStatus, PaymentStatus
from shared.store import Database
from shared.users import sign_up
from tests.unit.helpers import (
    Customer,
    fund,
    insert_deposit_row,
    insert_entry_row,
    insert_payment_row,
    pay,
    unguarded_write,
)

TOTALS = "sum of balances differs from sum of deposits"


def _kinds(violations: list[str]) -> set[str]:
    return {line.split(": ", 1)[0] for line in violations}


def test_verify_is_clean_on_an_empty_database(db: Database) -> None:
    assert verify(db) == []


def test_verify_is_clean_after_deposits_and_completed_and_failed_transfers(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    fund(db, bob.savings, 42)
    outcomes: list[PaymentStatus] = []
    for payment in (
        pay(db, alice.main, bob.main, 300),
        pay(db, bob.main, alice.savings, 1299),
        pay(db, alice.savings, alice.main, 10),
        pay(db, carol.main, bob.main, 5000),  # insufficient funds
        pay(db, alice.main, carol.savings, 1),  # carol.savings is frozen by then
    ):
        if payment.to_account_id == carol.savings.id:
            db.run(accounts.set_status, carol.user.id, carol.savings.id, AccountStatus.FROZEN)
        settled = settle_payment(db, payment.id)
        assert settled is not None
        outcomes.append(settled.status)
    pay(db, bob.main, carol.main, 1)  # still pending

    assert outcomes.count(PaymentStatus.COMPLETED) == 3
    assert outcomes.count(PaymentStatus.FAILED) == 2
    assert verify(db) == []


def test_verify_reports_a_balance_changed_behind_the_engines_back(
    db: Database, alice: Customer, bob: Customer
) -> None:
    settle_payment(db, pay(db, alice.main, bob.main, 300).id)
    db.connection().execute(
        "UPDATE accounts SET balance = balance + 1 WHERE id = ?", (bob.main.id,)
    )

    violations = verify(db)

    assert _kinds(violations) == {
        "balance differs from its ledger",
        "balance differs from its newest entry's balance_after",
        TOTALS,
    }
    for line in violations:
        if line.startswith(TOTALS):
            assert "balances 3001 but deposits 3000" in line
        else:
            assert bob.main.id in line
            assert "1301" in line


def test_verify_reports_a_completed_payment_without_ledger_entries(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with unguarded_write(db) as conn:
        payment_id = insert_payment_row(conn, alice.main, bob.main, status="completed")

    violations = verify(db)

    assert len(violations) == 1
    assert violations[0].startswith("completed payment without exactly one debit and one credit")
    assert payment_id in violations[0]
    assert "0 entries" in violations[0]


def test_verify_reports_money_credited_without_a_debit(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with unguarded_write(db) as conn:
        payment_id = insert_payment_row(conn, alice.main, bob.main, amount=10, status="completed")
        conn.execute("UPDATE accounts SET balance = 1010 WHERE id = ?", (bob.main.id,))
        insert_entry_row(conn, bob.main.id, "credit", 10, 1010, payment_id=payment_id)

    violations = verify(db)

    assert _kinds(violations) == {
        "completed payment without exactly one debit and one credit of its amount",
        TOTALS,
    }
    assert any(payment_id in line and "1 entries" in line for line in violations)
    assert any("balances 3010 but deposits 3000" in line for line in violations)


def test_verify_reports_a_credit_to_the_wrong_account(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    with unguarded_write(db) as conn:
        payment_id = insert_payment_row(conn, alice.main, bob.main, amount=10, status="completed")
        conn.execute("UPDATE accounts SET balance = 990 WHERE id = ?", (alice.main.id,))
        insert_entry_row(conn, alice.main.id, "debit", 10, 990, payment_id=payment_id)
        conn.execute("UPDATE accounts SET balance = 1010 WHERE id = ?", (carol.main.id,))
        insert_entry_row(conn, carol.main.id, "credit", 10, 1010, payment_id=payment_id)

    violations = verify(db)

    assert len(violations) == 1
    assert payment_id in violations[0]


def test_verify_reports_ledger_entries_on_a_failed_payment(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with unguarded_write(db) as conn:
        payment_id = insert_payment_row(
            conn,
            alice.main,
            bob.main,
            amount=10,
            status="failed",
            failure_code="insufficient_funds",
        )
        conn.execute("UPDATE accounts SET balance = 990 WHERE id = ?", (alice.main.id,))
        insert_entry_row(conn, alice.main.id, "debit", 10, 990, payment_id=payment_id)
        conn.execute("UPDATE accounts SET balance = 1010 WHERE id = ?", (bob.main.id,))
        insert_entry_row(conn, bob.main.id, "credit", 10, 1010, payment_id=payment_id)

    violations = verify(db)

    assert violations == [
        f"payment that is not completed has ledger entries: {payment_id}: failed with 2 entries"
    ]


def test_verify_reports_a_deposit_that_never_reached_the_ledger(
    db: Database, alice: Customer
) -> None:
    deposit_id = insert_deposit_row(db.connection(), alice.main.id, 25)

    violations = verify(db)

    assert _kinds(violations) == {"deposit without exactly one credit of its amount", TOTALS}
    assert any(deposit_id in line for line in violations)


def test_verify_holds_when_the_balances_add_up_past_the_largest_integer(
    db: Database, alice: Customer
) -> None:
    # One account may hold up to 2^63 - 1 (BalanceLimitExceeded is only raised past it),
    # so the sum of all balances, and of all deposits, can pass it.
    whale, _ = db.run(sign_up, "Whale", "whale@example.com")
    full = db.run(accounts.open_account, whale.id, "USD")
    fund(db, full, MAX_BALANCE)

    assert verify(db) == []


def test_verify_reports_a_pending_out_that_drifted_from_the_pending_payments(
    db: Database, alice: Customer, bob: Customer
) -> None:
    pay(db, alice.main, bob.main, 300)
    assert verify(db) == []
    db.connection().execute(
        "UPDATE accounts SET pending_out = pending_out + 7 WHERE id = ?", (alice.main.id,)
    )

    violations = verify(db)

    assert _kinds(violations) == {"pending_out differs from the account's pending payments"}
    assert alice.main.id in violations[0]
    assert "pending_out 307" in violations[0]


def test_settling_either_way_releases_pending_out(
    db: Database, alice: Customer, bob: Customer
) -> None:
    settle_payment(db, pay(db, alice.main, bob.main, 300).id)
    settle_payment(db, pay(db, alice.main, bob.main, 10**9).id)

    assert accounts.get_account(db, alice.user.id, alice.main.id).pending_out == 0
    assert verify(db) == []


def test_verify_counts_a_pending_out_past_2_to_the_53_exactly(
    db: Database, alice: Customer, bob: Customer
) -> None:
    """Found by the stateful test: SQLite's ``total`` is a float, so a pending transfer of
    2^62 - 1 (a float rounds it to 2^62) was reported as a drifted ``pending_out``."""
    pay(db, alice.main, bob.main, 2**62 - 1)

    assert accounts.get_account(db, alice.user.id, alice.main.id).pending_out == 2**62 - 1
    assert verify(db) == []
