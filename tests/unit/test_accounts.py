from __future__ import annotations

import pytest

from shared import accounts
from shared.accounts import MAX_BALANCE
from shared.engine import settle_payment
from shared.errors import AccountFrozen, BalanceLimitExceeded, IdempotencyKeyReused, NotFound
from shared.records import AccountStatus, Deposit, Direction
from shared.store import Database
from shared.users import sign_up
from tests.unit.helpers import (
    Customer,
    balance_of,
    count_rows,
    fund,
    ledger_rows,
    new_key,
    pay,
    snapshot,
)


def test_an_opened_account_is_active_and_empty(db: Database) -> None:
    user, _ = db.run(sign_up, "Ada", "ada@example.com")

    account = db.run(accounts.open_account, user.id, "EUR")

    assert account.user_id == user.id
    assert account.currency == "EUR"
    assert (account.balance, account.pending_out) == (0, 0)
    assert account.status is AccountStatus.ACTIVE
    assert account.id.startswith("acc_")
    assert accounts.get_account(db, user.id, account.id) == account


def test_another_users_account_is_not_found(db: Database, alice: Customer, bob: Customer) -> None:
    theirs = bob.main.id
    before = snapshot(db)

    with pytest.raises(NotFound):
        accounts.get_account(db, alice.user.id, theirs)
    with pytest.raises(NotFound):
        db.run(accounts.set_status, alice.user.id, theirs, AccountStatus.FROZEN)
    with pytest.raises(NotFound):
        db.run(
            accounts.deposit,
            alice.user.id,
            theirs,
            amount=1,
            description=None,
            idempotency_key=new_key(),
        )
    with pytest.raises(NotFound):
        accounts.list_ledger(db, alice.user.id, theirs, limit=10, cursor=None)

    assert snapshot(db) == before


def test_an_unknown_account_is_not_found(db: Database, alice: Customer) -> None:
    with pytest.raises(NotFound):
        accounts.get_account(db, alice.user.id, "acc_nothing")


def test_list_accounts_pages_newest_first_without_duplicates_or_misses(db: Database) -> None:
    user, _ = db.run(sign_up, "Ada", "ada@example.com")
    opened = [db.run(accounts.open_account, user.id, "USD").id for _ in range(7)]
    other, _ = db.run(sign_up, "Bea", "bea@example.com")
    db.run(accounts.open_account, other.id, "USD")

    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = accounts.list_accounts(db, user.id, limit=3, cursor=cursor)
        seen += [account.id for account in page.data]
        sizes.append(len(page.data))
        if not page.has_more:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor

    assert sizes == [3, 3, 1]
    assert seen == opened[::-1]


def test_list_accounts_of_a_user_without_accounts_is_empty(db: Database, alice: Customer) -> None:
    user, _ = db.run(sign_up, "Ada", "ada@example.com")

    page = accounts.list_accounts(db, user.id, limit=10, cursor=None)

    assert page.data == []
    assert not page.has_more


def test_set_status_freezes_and_unfreezes(db: Database, alice: Customer) -> None:
    frozen = db.run(accounts.set_status, alice.user.id, alice.main.id, AccountStatus.FROZEN)
    assert frozen.status is AccountStatus.FROZEN
    assert accounts.get_account(db, alice.user.id, alice.main.id).status is AccountStatus.FROZEN

    again = db.run(accounts.set_status, alice.user.id, alice.main.id, AccountStatus.FROZEN)
    assert again == frozen

    active = db.run(accounts.set_status, alice.user.id, alice.main.id, AccountStatus.ACTIVE)
    assert active.status is AccountStatus.ACTIVE
    assert active.updated_at >= frozen.updated_at
    assert accounts.get_account(db, alice.user.id, alice.main.id).status is AccountStatus.ACTIVE


def test_deposit_credits_the_balance_and_the_ledger(db: Database) -> None:
    user, _ = db.run(sign_up, "Ada", "ada@example.com")
    account = db.run(accounts.open_account, user.id, "USD")

    first, replayed = db.run(
        accounts.deposit,
        user.id,
        account.id,
        amount=250,
        description="salary",
        idempotency_key="k1",
    )
    second, _ = db.run(
        accounts.deposit, user.id, account.id, amount=100, description=None, idempotency_key="k2"
    )

    assert not replayed
    assert (first.account_id, first.amount, first.balance_after) == (account.id, 250, 250)
    assert first.description == "salary"
    assert (second.amount, second.balance_after) == (100, 350)
    assert accounts.get_account(db, user.id, account.id).balance == 350
    entries = ledger_rows(db, account.id)
    assert [
        (row["direction"], row["amount"], row["balance_after"], row["deposit_id"])
        for row in entries
    ] == [("credit", 250, 250, first.id), ("credit", 100, 350, second.id)]
    assert all(row["payment_id"] is None for row in entries)


def test_list_ledger_pages_entries_newest_first(db: Database, alice: Customer) -> None:
    for amount in (1, 2, 3, 4):
        fund(db, alice.main, amount)

    first = accounts.list_ledger(db, alice.user.id, alice.main.id, limit=3, cursor=None)
    rest = accounts.list_ledger(db, alice.user.id, alice.main.id, limit=3, cursor=first.next_cursor)

    assert [entry.amount for entry in first.data] == [4, 3, 2]
    assert [entry.amount for entry in rest.data] == [1, 1000]
    assert [entry.balance_after for entry in first.data + rest.data] == [
        1010,
        1006,
        1003,
        1001,
        1000,
    ]
    assert all(entry.direction is Direction.CREDIT for entry in first.data + rest.data)
    assert not rest.has_more


def test_replayed_deposit_key_returns_the_same_deposit(db: Database, alice: Customer) -> None:
    def send() -> tuple[Deposit, bool]:
        return db.run(
            accounts.deposit,
            alice.user.id,
            alice.main.id,
            amount=70,
            description="gift",
            idempotency_key="d1",
        )

    first, first_replayed = send()
    again, replayed = send()

    assert (first_replayed, replayed) == (False, True)
    assert again == first
    assert balance_of(db, alice.main.id) == 1070
    assert len(ledger_rows(db, alice.main.id)) == 2


@pytest.mark.parametrize(
    ("amount", "description"), [(71, "gift"), (70, "other"), (70, None)], ids=str
)
def test_deposit_key_reused_with_another_body_is_refused_and_records_nothing(
    db: Database, alice: Customer, amount: int, description: str | None
) -> None:
    db.run(
        accounts.deposit,
        alice.user.id,
        alice.main.id,
        amount=70,
        description="gift",
        idempotency_key="d1",
    )
    before = snapshot(db)

    with pytest.raises(IdempotencyKeyReused):
        db.run(
            accounts.deposit,
            alice.user.id,
            alice.main.id,
            amount=amount,
            description=description,
            idempotency_key="d1",
        )

    assert snapshot(db) == before


def test_a_deposit_key_is_scoped_to_its_account(db: Database, alice: Customer) -> None:
    first, _ = db.run(
        accounts.deposit,
        alice.user.id,
        alice.main.id,
        amount=5,
        description=None,
        idempotency_key="same",
    )
    second, replayed = db.run(
        accounts.deposit,
        alice.user.id,
        alice.savings.id,
        amount=5,
        description=None,
        idempotency_key="same",
    )

    assert not replayed
    assert second.id != first.id
    assert (balance_of(db, alice.main.id), balance_of(db, alice.savings.id)) == (1005, 505)


def test_deposit_to_a_frozen_account_is_refused_and_records_nothing(
    db: Database, alice: Customer
) -> None:
    db.run(accounts.set_status, alice.user.id, alice.main.id, AccountStatus.FROZEN)
    before = snapshot(db)

    with pytest.raises(AccountFrozen):
        db.run(
            accounts.deposit,
            alice.user.id,
            alice.main.id,
            amount=5,
            description=None,
            idempotency_key="k",
        )

    assert snapshot(db) == before


def test_deposit_past_the_balance_limit_is_refused_and_records_nothing(db: Database) -> None:
    user, _ = db.run(sign_up, "Ada", "ada@example.com")
    account = db.run(accounts.open_account, user.id, "USD")
    full, _ = db.run(
        accounts.deposit,
        user.id,
        account.id,
        amount=MAX_BALANCE,
        description=None,
        idempotency_key="full",
    )
    assert full.balance_after == MAX_BALANCE == 2**63 - 1
    before = snapshot(db)

    with pytest.raises(BalanceLimitExceeded):
        db.run(
            accounts.deposit,
            user.id,
            account.id,
            amount=1,
            description=None,
            idempotency_key="one more",
        )

    assert snapshot(db) == before


def test_pending_out_is_the_sum_of_pending_outgoing_payments(
    db: Database, alice: Customer, bob: Customer
) -> None:
    small = pay(db, alice.main, bob.main, 100)
    medium = pay(db, alice.main, bob.main, 250)
    too_big = pay(db, alice.main, bob.main, 5000)
    pay(db, bob.main, alice.main, 40)  # incoming: not Alice's pending_out
    pay(db, alice.savings, bob.main, 7)  # another of Alice's accounts

    def pending_out() -> int:
        return accounts.get_account(db, alice.user.id, alice.main.id).pending_out

    assert pending_out() == 5350
    listed = accounts.list_accounts(db, alice.user.id, limit=10, cursor=None).data
    assert {account.id: account.pending_out for account in listed} == {
        alice.main.id: 5350,
        alice.savings.id: 7,
    }

    settle_payment(db, small.id)
    assert pending_out() == 5250
    settle_payment(db, too_big.id)  # fails for funds: no longer pending either
    assert pending_out() == 250
    settle_payment(db, medium.id)
    assert pending_out() == 0
    assert count_rows(db, "payments") == 5
