from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from shared import accounts
from shared.engine import settle_payment
from shared.errors import (
    CurrencyMismatch,
    IdempotencyKeyReused,
    InvalidCursor,
    NotFound,
    SameAccount,
)
from shared.payments import Transfer, get_payment, list_payments, submit_transfer
from shared.records import Payment, PaymentStatus
from shared.store import Database
from tests.unit.helpers import Customer, count_rows, pay, snapshot


def _ids_over_all_pages(
    db: Database,
    user_id: str,
    *,
    limit: int,
    account_id: str | None = None,
    status: PaymentStatus | None = None,
) -> tuple[list[str], list[int]]:
    """Every payment id the pages list, in order, and the size of each page."""
    ids: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = list_payments(
            db, user_id, account_id=account_id, status=status, limit=limit, cursor=cursor
        )
        ids += [payment.id for payment in page.data]
        sizes.append(len(page.data))
        if page.next_cursor is None:
            assert not page.has_more
            return ids, sizes
        assert page.has_more
        cursor = page.next_cursor


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_a_submitted_transfer_is_pending_with_what_was_asked(
    db: Database, alice: Customer, bob: Customer
) -> None:
    transfer = Transfer(alice.main.id, bob.main.id, 125, "USD", "rent")

    payment, replayed = db.run(submit_transfer, alice.user.id, transfer, "k1")

    assert not replayed
    assert payment.id.startswith("pay_")
    assert (payment.from_account_id, payment.to_account_id) == (alice.main.id, bob.main.id)
    assert (payment.amount, payment.currency, payment.description) == (125, "USD", "rent")
    assert payment.status is PaymentStatus.PENDING
    assert (payment.failure_code, payment.failure_detail, payment.completed_at) == (
        None,
        None,
        None,
    )


def test_a_transfer_to_the_same_account_is_refused(db: Database, alice: Customer) -> None:
    before = snapshot(db)

    with pytest.raises(SameAccount):
        db.run(
            submit_transfer, alice.user.id, Transfer(alice.main.id, alice.main.id, 1, "USD"), "k"
        )

    assert snapshot(db) == before


def test_a_transfer_from_another_users_account_is_not_found(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with pytest.raises(NotFound):
        db.run(submit_transfer, alice.user.id, Transfer(bob.main.id, alice.main.id, 1, "USD"), "k")

    assert count_rows(db, "payments") == 0


def test_a_transfer_from_an_unknown_account_is_not_found(db: Database, alice: Customer) -> None:
    with pytest.raises(NotFound):
        db.run(
            submit_transfer, alice.user.id, Transfer("acc_nothing", alice.main.id, 1, "USD"), "k"
        )

    assert count_rows(db, "payments") == 0


def test_a_transfer_to_an_unknown_account_is_not_found(db: Database, alice: Customer) -> None:
    with pytest.raises(NotFound):
        db.run(
            submit_transfer, alice.user.id, Transfer(alice.main.id, "acc_nothing", 1, "USD"), "k"
        )

    assert count_rows(db, "payments") == 0


def test_a_transfer_in_another_currency_than_the_sender_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    euros = db.run(accounts.open_account, alice.user.id, "EUR")

    with pytest.raises(CurrencyMismatch):
        db.run(submit_transfer, alice.user.id, Transfer(euros.id, bob.main.id, 1, "USD"), "k1")
    with pytest.raises(CurrencyMismatch):
        db.run(submit_transfer, alice.user.id, Transfer(euros.id, bob.main.id, 1, "EUR"), "k2")

    assert count_rows(db, "payments") == 0


def test_a_transfer_in_another_currency_than_the_receiver_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    euros = db.run(accounts.open_account, bob.user.id, "EUR")

    with pytest.raises(CurrencyMismatch):
        db.run(submit_transfer, alice.user.id, Transfer(alice.main.id, euros.id, 1, "USD"), "k1")
    with pytest.raises(CurrencyMismatch):
        db.run(submit_transfer, alice.user.id, Transfer(alice.main.id, euros.id, 1, "EUR"), "k2")

    assert count_rows(db, "payments") == 0


def test_replayed_key_returns_same_payment(db: Database, alice: Customer, bob: Customer) -> None:
    transfer = Transfer(alice.main.id, bob.main.id, 10, "USD", "lunch")

    first, first_replayed = db.run(submit_transfer, alice.user.id, transfer, "k1")
    again, replayed = db.run(submit_transfer, alice.user.id, transfer, "k1")

    assert (first_replayed, replayed) == (False, True)
    assert again == first
    assert count_rows(db, "payments") == 1


def test_a_replay_after_settling_returns_the_settled_payment(
    db: Database, alice: Customer, bob: Customer
) -> None:
    transfer = Transfer(alice.main.id, bob.main.id, 10, "USD")
    first, _ = db.run(submit_transfer, alice.user.id, transfer, "k1")
    settled = settle_payment(db, first.id)

    again, replayed = db.run(submit_transfer, alice.user.id, transfer, "k1")

    assert replayed
    assert again == settled
    assert again.status is PaymentStatus.COMPLETED
    assert count_rows(db, "payments") == 1


@pytest.mark.parametrize(
    "other",
    [
        Transfer("main", "bob", 11, "USD", "lunch"),
        Transfer("main", "bob", 10, "USD", "dinner"),
        Transfer("main", "bob", 10, "USD", None),
        Transfer("main", "savings", 10, "USD", "lunch"),
    ],
    ids=["amount", "description", "no description", "receiver"],
)
def test_key_reused_with_another_body_is_refused_and_records_nothing(
    db: Database, alice: Customer, bob: Customer, other: Transfer
) -> None:
    names = {"main": alice.main.id, "savings": alice.savings.id, "bob": bob.main.id}
    db.run(
        submit_transfer,
        alice.user.id,
        Transfer(alice.main.id, bob.main.id, 10, "USD", "lunch"),
        "k",
    )
    before = snapshot(db)
    changed = Transfer(
        names[other.from_account_id],
        names[other.to_account_id],
        other.amount,
        other.currency,
        other.description,
    )

    with pytest.raises(IdempotencyKeyReused):
        db.run(submit_transfer, alice.user.id, changed, "k")

    assert snapshot(db) == before


def test_concurrent_duplicates_record_one_payment_and_all_get_its_id(
    db: Database, alice: Customer, bob: Customer
) -> None:
    transfer = Transfer(alice.main.id, bob.main.id, 10, "USD")
    callers = 8
    start = Barrier(callers)

    def submit() -> tuple[Payment, bool]:
        start.wait(timeout=5)
        return db.run(submit_transfer, alice.user.id, transfer, "k")

    with ThreadPoolExecutor(callers) as pool:
        answers = list(pool.map(lambda _: submit(), range(callers)))

    assert len({payment.id for payment, _ in answers}) == 1
    assert sorted(replayed for _, replayed in answers) == [False] + [True] * (callers - 1)
    assert count_rows(db, "payments") == 1


def test_the_same_key_on_another_sender_account_is_another_payment(
    db: Database, alice: Customer, bob: Customer
) -> None:
    first, _ = db.run(
        submit_transfer, alice.user.id, Transfer(alice.main.id, bob.main.id, 10, "USD"), "k"
    )
    second, replayed = db.run(
        submit_transfer, alice.user.id, Transfer(alice.savings.id, bob.main.id, 10, "USD"), "k"
    )
    third, bob_replayed = db.run(
        submit_transfer, bob.user.id, Transfer(bob.main.id, alice.main.id, 10, "USD"), "k"
    )

    assert not replayed
    assert not bob_replayed
    assert len({first.id, second.id, third.id}) == 3
    assert count_rows(db, "payments") == 3


def test_a_payment_is_visible_to_the_sender_and_the_receiver_only(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    payment = pay(db, alice.main, bob.main, 10)

    assert get_payment(db, alice.user.id, payment.id) == payment
    assert get_payment(db, bob.user.id, payment.id) == payment
    with pytest.raises(NotFound):
        get_payment(db, carol.user.id, payment.id)


def test_an_unknown_payment_is_not_found(db: Database, alice: Customer) -> None:
    with pytest.raises(NotFound):
        get_payment(db, alice.user.id, "pay_nothing")


def test_list_payments_shows_what_the_caller_sent_and_received(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    sent = pay(db, alice.main, bob.main, 1)
    received = pay(db, bob.main, alice.savings, 2)
    pay(db, bob.main, carol.main, 3)

    page = list_payments(db, alice.user.id, account_id=None, status=None, limit=10, cursor=None)

    assert [payment.id for payment in page.data] == [received.id, sent.id]
    assert not page.has_more


def test_list_payments_filters_by_account(db: Database, alice: Customer, bob: Customer) -> None:
    out_of_main = pay(db, alice.main, bob.main, 1)
    into_savings = pay(db, bob.main, alice.savings, 2)
    into_main = pay(db, bob.savings, alice.main, 3)
    between_own = pay(db, alice.savings, alice.main, 4)

    def listed(account_id: str) -> list[str]:
        page = list_payments(
            db, alice.user.id, account_id=account_id, status=None, limit=10, cursor=None
        )
        return [payment.id for payment in page.data]

    assert listed(alice.main.id) == [between_own.id, into_main.id, out_of_main.id]
    assert listed(alice.savings.id) == [between_own.id, into_savings.id]


def test_list_payments_of_another_users_account_is_not_found(
    db: Database, alice: Customer, bob: Customer
) -> None:
    pay(db, bob.main, alice.main, 1)

    for account_id in (bob.main.id, "acc_nothing"):
        with pytest.raises(NotFound):
            list_payments(
                db, alice.user.id, account_id=account_id, status=None, limit=10, cursor=None
            )


def test_list_payments_filters_by_status(db: Database, alice: Customer, bob: Customer) -> None:
    completed = pay(db, alice.main, bob.main, 10)
    failed = pay(db, bob.main, alice.main, 10**6)
    pending = pay(db, alice.savings, bob.main, 10)
    settle_payment(db, completed.id)
    settle_payment(db, failed.id)

    def listed(status: PaymentStatus) -> list[str]:
        page = list_payments(
            db, alice.user.id, account_id=None, status=status, limit=10, cursor=None
        )
        return [payment.id for payment in page.data]

    assert listed(PaymentStatus.COMPLETED) == [completed.id]
    assert listed(PaymentStatus.FAILED) == [failed.id]
    assert listed(PaymentStatus.PENDING) == [pending.id]
    only_main = list_payments(
        db,
        alice.user.id,
        account_id=alice.main.id,
        status=PaymentStatus.PENDING,
        limit=10,
        cursor=None,
    )
    assert only_main.data == []


def _busy_history(db: Database, alice: Customer, bob: Customer, carol: Customer) -> list[Payment]:
    """26 payments in acceptance order: Alice's own, to and from Bob, and Carol's to Bob."""
    routes = [
        (alice.main, bob.main),
        (bob.main, alice.savings),
        (alice.main, alice.savings),
        (carol.main, bob.main),
    ]
    return [pay(db, *routes[number % 4], 1 + number) for number in range(26)]


def test_pages_of_payments_cover_everything_newest_first_once(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    history = _busy_history(db, alice, bob, carol)
    alices = [
        p.id
        for p in history
        if {p.from_account_id, p.to_account_id} & {alice.main.id, alice.savings.id}
    ]
    assert len(alices) == 20

    ids, sizes = _ids_over_all_pages(db, alice.user.id, limit=6)

    assert sizes == [6, 6, 6, 2]
    assert len(ids) == len(set(ids))
    assert ids == alices[::-1]


def test_pages_of_one_accounts_payments_cover_everything_newest_first_once(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    history = _busy_history(db, alice, bob, carol)

    for account in (alice.main, alice.savings, bob.main):
        expected = [p.id for p in history if account.id in (p.from_account_id, p.to_account_id)][
            ::-1
        ]
        ids, sizes = _ids_over_all_pages(db, account.user_id, limit=5, account_id=account.id)
        assert ids == expected
        assert all(size == 5 for size in sizes[:-1])
        assert 0 < sizes[-1] <= 5


def test_pages_of_payments_in_one_status_cover_all_of_them(
    db: Database, alice: Customer, bob: Customer, carol: Customer
) -> None:
    history = _busy_history(db, alice, bob, carol)
    for payment in history[::3]:
        settle_payment(db, payment.id)
    alices = {alice.main.id, alice.savings.id}
    mine = [p for p in history if {p.from_account_id, p.to_account_id} & alices]

    for status in (PaymentStatus.PENDING, PaymentStatus.COMPLETED):
        expected = [p.id for p in mine if get_payment(db, alice.user.id, p.id).status is status][
            ::-1
        ]
        ids, _ = _ids_over_all_pages(db, alice.user.id, limit=4, status=status)
        assert ids == expected
        assert expected


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "",
        "a",
        "%%%%",
        "Zm9v\x00",
        _b64("hello"),
        _b64("c1:"),
        _b64("c1:-1"),
        _b64("c1:12x"),
        _b64("c1: 12"),
        _b64("c2:12"),
        _b64("c1:" + "9" * 20),
        _b64("c1:" + "1" * 400),
        "é",
        base64.urlsafe_b64encode(b"c1:\xff\xfe").decode(),
    ],
)
def test_invalid_cursors_are_refused(db: Database, alice: Customer, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        list_payments(db, alice.user.id, account_id=None, status=None, limit=10, cursor=cursor)
    with pytest.raises(InvalidCursor):
        accounts.list_accounts(db, alice.user.id, limit=10, cursor=cursor)
    with pytest.raises(InvalidCursor):
        accounts.list_ledger(db, alice.user.id, alice.main.id, limit=10, cursor=cursor)


def test_a_cursor_past_the_largest_row_number_is_refused(db: Database, alice: Customer) -> None:
    # 19 digits, like a real cursor, but more than SQLite's largest integer (2^63 - 1).
    cursor = _b64("c1:9999999999999999999")

    with pytest.raises(InvalidCursor):
        list_payments(db, alice.user.id, account_id=None, status=None, limit=10, cursor=cursor)
    with pytest.raises(InvalidCursor):
        accounts.list_accounts(db, alice.user.id, limit=10, cursor=cursor)
    with pytest.raises(InvalidCursor):
        accounts.list_ledger(db, alice.user.id, alice.main.id, limit=10, cursor=cursor)
