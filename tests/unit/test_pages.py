from __future__ import annotations

import base64

import pytest

from shared import accounts, payments
from shared.errors import InvalidCursor
from shared.pages import BEFORE_ANY, cursor_bound, cursor_item, encode_cursor
from shared.store import Database
from tests.unit.helpers import Customer, pay


@pytest.mark.parametrize(
    "item_id", ["acc_0193a1b2c3d4e5f60718293a4b5c6d7e8f90", "key_0123456789abcdef"]
)
def test_a_cursor_names_the_row_it_was_made_for(item_id: str) -> None:
    assert cursor_item(encode_cursor(item_id)) == item_id


def test_a_cursor_is_url_safe_text_without_padding() -> None:
    cursor = encode_cursor("pay_0193a1b2c3d4e5f60718293a4b5c6d7e8f90")

    assert cursor.isascii()
    assert "=" not in cursor
    assert not set(cursor) & set("+/ ")


def test_no_cursor_starts_before_every_row(db: Database) -> None:
    assert cursor_bound(db.connection(), None, "accounts", "1 = 1") == BEFORE_ANY == 2**63 - 1


def test_a_cursor_holds_the_id_of_the_last_row_of_its_page_and_no_position(
    db: Database, alice: Customer, bob: Customer
) -> None:
    for _ in range(5):  # the service's volume, which a position would give away
        pay(db, bob.main, bob.savings, 1)
    pay(db, alice.main, alice.savings, 1)
    pay(db, alice.main, alice.savings, 2)

    page = payments.list_payments(
        db, alice.user.id, account_id=None, status=None, limit=1, cursor=None
    )

    assert page.next_cursor is not None
    decoded = base64.urlsafe_b64decode(page.next_cursor + "=" * (-len(page.next_cursor) % 4))
    assert decoded == f"c2:{page.data[-1].id}".encode()


def test_a_cursor_naming_a_row_the_caller_cannot_see_is_invalid(
    db: Database, alice: Customer, bob: Customer
) -> None:
    theirs = pay(db, bob.main, bob.savings, 1)

    with pytest.raises(InvalidCursor):
        payments.list_payments(
            db,
            alice.user.id,
            account_id=None,
            status=None,
            limit=10,
            cursor=encode_cursor(theirs.id),
        )
    with pytest.raises(InvalidCursor):
        accounts.list_accounts(db, alice.user.id, limit=10, cursor=encode_cursor(bob.main.id))
    with pytest.raises(InvalidCursor):
        accounts.list_accounts(db, alice.user.id, limit=10, cursor=encode_cursor("acc_nothing"))


def test_a_cursor_continues_after_its_row_whatever_was_written_since(
    db: Database, alice: Customer, bob: Customer
) -> None:
    made = [pay(db, alice.main, alice.savings, amount) for amount in (1, 2, 3, 4)]
    first = payments.list_payments(
        db, alice.user.id, account_id=None, status=None, limit=2, cursor=None
    )
    pay(db, alice.main, alice.savings, 5)
    pay(db, bob.main, bob.savings, 6)

    rest = payments.list_payments(
        db, alice.user.id, account_id=None, status=None, limit=10, cursor=first.next_cursor
    )

    assert [p.id for p in first.data] == [made[3].id, made[2].id]
    assert [p.id for p in rest.data] == [made[1].id, made[0].id]
    assert rest.next_cursor is None
