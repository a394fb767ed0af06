"""Migration 8 in the database: held money, a payment's life (pending, authorized, final),
captures, refunds, batches and capture/void answers. Each rule is broken behind the
engine's back, with raw SQL, and refused by the database itself on both engines."""

from __future__ import annotations

from typing import Any

import pytest

from shared.clock import new_id, to_text, utcnow
from shared.records import Account, CaptureMode, FailureCode, PaymentStatus
from shared.store import Connection, Database
from tests.unit.helpers import Customer, insert_entry_row, new_key, refused, snapshot

SETTLED = "a settled payment cannot change"
AUTHORIZATION_ENDS = "an authorization ends captured, voided or expired, and only so"
PENDING_ENDS = "a pending payment becomes completed, failed or authorized"
UNPAIRED = "a completed payment has one debit and one credit of what it moved"
NOT_COMPLETED = "a payment that is not completed has no ledger entries"


def _payment(
    conn: Connection, sender: Account, receiver: Account, *, amount: int = 100, **columns: Any
) -> str:
    """A payment row written with raw SQL: pending and automatic unless ``columns`` say
    otherwise; returns its id."""
    payment_id = new_id("pay")
    row: dict[str, Any] = {
        "id": payment_id,
        "from_account_id": sender.id,
        "to_account_id": receiver.id,
        "from_user_id": sender.user_id,
        "to_user_id": receiver.user_id,
        "amount": amount,
        "currency": "USD",
        "idempotency_key": new_key(),
        "request_hash": "raw",
        "created_at": to_text(utcnow()),
        **columns,
    }
    conn.execute(
        f"INSERT INTO payments ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        list(row.values()),
    )
    return payment_id


def _authorized(conn: Connection, sender: Account, receiver: Account, amount: int = 100) -> str:
    return _payment(
        conn,
        sender,
        receiver,
        amount=amount,
        capture="manual",
        hold_seconds=3600,
        status="authorized",
        expires_at=to_text(utcnow()),
    )


def _completed(db: Database, sender: Account, receiver: Account, amount: int = 100) -> str:
    """A completed automatic payment, with its pair of entries."""
    with db.write() as conn:
        payment_id = _payment(conn, sender, receiver, amount=amount)
        _pair(conn, sender, receiver, amount, payment_id)
        conn.execute(
            "UPDATE payments SET status = 'completed', completed_at = ? WHERE id = ?",
            (to_text(utcnow()), payment_id),
        )
    return payment_id


def _pair(
    conn: Connection, sender: Account, receiver: Account, amount: int, payment_id: str
) -> None:
    """A debit and a credit of ``amount`` that continue both running balances."""
    for account, direction in ((sender, "debit"), (receiver, "credit")):
        (balance,) = conn.execute(
            "SELECT balance FROM accounts WHERE id = ?", (account.id,)
        ).fetchone()
        after = balance - amount if direction == "debit" else balance + amount
        insert_entry_row(conn, account.id, direction, amount, after, payment_id=payment_id)


def _update(db: Database, payment_id: str, **columns: Any) -> None:
    assignments = ", ".join(f"{column} = ?" for column in columns)
    with db.write() as conn:
        conn.execute(
            f"UPDATE payments SET {assignments} WHERE id = ?", [*columns.values(), payment_id]
        )


NOW = to_text(utcnow())


# Held money.


def test_held_money_is_never_negative(db: Database, alice: Customer) -> None:
    with refused(db, "CHECK"):
        db.connection().execute("UPDATE accounts SET held = -1 WHERE id = ?", (alice.main.id,))


def test_held_money_never_passes_the_balance(db: Database, alice: Customer) -> None:
    db.connection().execute("UPDATE accounts SET held = 1000 WHERE id = ?", (alice.main.id,))

    with refused(db, "accounts_held_within_balance|CHECK"):
        db.connection().execute("UPDATE accounts SET held = 1001 WHERE id = ?", (alice.main.id,))
    with refused(db, "accounts_held_within_balance|CHECK"):
        db.connection().execute("UPDATE accounts SET balance = 999 WHERE id = ?", (alice.main.id,))


def test_an_entry_that_spends_held_money_is_refused_though_a_later_one_in_its_statement_repays_it(
    db: Database, alice: Customer, bob: Customer
) -> None:
    db.connection().execute("UPDATE accounts SET held = 950 WHERE id = ?", (alice.main.id,))
    before = snapshot(db)

    with refused(db, "accounts_held_within_balance|CHECK"), db.write() as conn:
        spent = _payment(conn, alice.main, bob.main, amount=100)
        repaid = _payment(conn, bob.main, alice.main, amount=100)
        # Alice's 1,000 goes to 900 (below the 950 held), then back to 1,000.
        rows = [
            (new_id("led"), alice.main.id, "debit", 100, 900, spent, NOW),
            (new_id("led"), alice.main.id, "credit", 100, 1000, repaid, NOW),
        ]
        conn.execute(
            "INSERT INTO ledger_entries"
            " (id, account_id, direction, amount, balance_after, payment_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)",
            [value for row in rows for value in row],
        )

    assert snapshot(db) == before


def test_a_debit_that_would_spend_held_money_is_refused(
    db: Database, alice: Customer, bob: Customer
) -> None:
    db.connection().execute("UPDATE accounts SET held = 950 WHERE id = ?", (alice.main.id,))
    before = snapshot(db)

    with refused(db, "CHECK"), db.write() as conn:
        payment_id = _payment(conn, alice.main, bob.main, amount=100)
        _pair(conn, alice.main, bob.main, 100, payment_id)

    assert snapshot(db) == before


# What a payment row may hold.


@pytest.mark.parametrize(
    "columns",
    [
        pytest.param({"capture": "later"}, id="an unknown capture"),
        pytest.param({"capture": "manual"}, id="manual without hold_seconds"),
        pytest.param({"hold_seconds": 60}, id="hold_seconds on an automatic payment"),
        pytest.param({"capture": "manual", "hold_seconds": 0}, id="hold_seconds of 0"),
        pytest.param({"expires_at": NOW}, id="expires_at on an automatic payment"),
        pytest.param({"status": "authorized", "completed_at": NOW}, id="authorized and automatic"),
        pytest.param(
            {"capture": "manual", "hold_seconds": 60, "status": "authorized"},
            id="authorized without expires_at",
        ),
        pytest.param(
            {
                "capture": "manual",
                "hold_seconds": 60,
                "status": "authorized",
                "expires_at": NOW,
                "completed_at": NOW,
            },
            id="authorized with completed_at",
        ),
        pytest.param(
            {"capture": "manual", "hold_seconds": 60, "status": "voided", "expires_at": NOW},
            id="voided without completed_at",
        ),
        pytest.param({"status": "expired", "completed_at": NOW}, id="expired and automatic"),
        pytest.param({"status": "captured", "completed_at": NOW}, id="an unknown status"),
        pytest.param({"captured_amount": 50}, id="captured_amount while pending"),
        pytest.param(
            {"capture": "manual", "hold_seconds": 60, "captured_amount": 0}, id="a capture of 0"
        ),
        pytest.param(
            {
                "status": "failed",
                "failure_code": "linked_payment_failed",
                "refunded_amount": -1,
                "completed_at": NOW,
            },
            id="negative refunded_amount",
        ),
        pytest.param({"refunded_amount": 10}, id="refunded beyond reserved"),
        pytest.param(
            {"refunded_amount": 10, "refund_reserved": 101}, id="reserved beyond the amount"
        ),
        pytest.param({"batch_index": 0}, id="a batch index outside a batch"),
    ],
)
def test_a_payment_row_that_breaks_a_rule_is_refused(
    db: Database, alice: Customer, bob: Customer, columns: dict[str, Any]
) -> None:
    before = snapshot(db)

    with refused(db, "CHECK"), db.write() as conn:
        _payment(conn, alice.main, bob.main, **columns)

    assert snapshot(db) == before


def test_every_new_status_and_failure_code_is_one_a_payment_may_hold(
    db: Database, alice: Customer, bob: Customer
) -> None:
    manual: dict[str, Any] = {"capture": "manual", "hold_seconds": 60, "expires_at": NOW}
    with db.write() as conn:
        _authorized(conn, alice.main, bob.main)
        _payment(conn, alice.main, bob.main, status="voided", completed_at=NOW, **manual)
        _payment(conn, alice.main, bob.main, status="expired", completed_at=NOW, **manual)
        for code in (FailureCode.LINKED_PAYMENT_FAILED, FailureCode.REFUND_EXCEEDS_PAYMENT):
            _payment(
                conn,
                alice.main,
                bob.main,
                status="failed",
                failure_code=code.value,
                completed_at=NOW,
            )

    statuses = {row[0] for row in db.connection().execute("SELECT status FROM payments")}
    assert statuses == {
        PaymentStatus.AUTHORIZED,
        PaymentStatus.VOIDED,
        PaymentStatus.EXPIRED,
        PaymentStatus.FAILED,
    }


def test_a_refund_is_of_another_payment_that_exists_and_moves_at_once(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main)

    with refused(db, "FOREIGN KEY"), db.write() as conn:
        _payment(conn, bob.main, alice.main, refund_of="pay_missing")
    with refused(db, "CHECK"), db.write() as conn:
        _payment(conn, bob.main, alice.main, refund_of=original, capture="manual", hold_seconds=60)
    with refused(db, "CHECK"), db.write() as conn:
        payment_id = _payment(conn, bob.main, alice.main)
        conn.execute("UPDATE payments SET refund_of = id WHERE id = ?", (payment_id,))
    with db.write() as conn:
        _payment(conn, bob.main, alice.main, refund_of=original)


def test_refunds_reserved_and_moved_never_pass_what_the_payment_moved(
    db: Database, alice: Customer, bob: Customer
) -> None:
    original = _completed(db, alice.main, bob.main, 100)

    _update(db, original, refund_reserved=100, refunded_amount=60)  # final, yet allowed

    with refused(db, "CHECK"):
        _update(db, original, refund_reserved=101)
    with refused(db, "CHECK"):
        _update(db, original, refunded_amount=101)


def test_a_captured_payments_refunds_stop_at_the_captured_amount(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with db.write() as conn:
        payment_id = _authorized(conn, alice.main, bob.main, 100)
        _pair(conn, alice.main, bob.main, 40, payment_id)
        conn.execute(
            "UPDATE payments SET status = 'completed', captured_amount = 40, completed_at = ?"
            " WHERE id = ?",
            (NOW, payment_id),
        )

    _update(db, payment_id, refund_reserved=40)
    with refused(db, "CHECK"):
        _update(db, payment_id, refund_reserved=41)


def test_a_batch_position_is_unique_and_its_batch_exists(
    db: Database, alice: Customer, bob: Customer
) -> None:
    batch_id = _batch(db.connection(), alice)
    with db.write() as conn:
        _payment(conn, alice.main, bob.main, batch_id=batch_id, batch_index=0)

    with refused(db, "UNIQUE"), db.write() as conn:
        _payment(conn, alice.main, bob.main, batch_id=batch_id, batch_index=0)
    with refused(db, "CHECK"), db.write() as conn:
        _payment(conn, alice.main, bob.main, batch_id=batch_id)
    with refused(db, "CHECK"), db.write() as conn:
        _payment(conn, alice.main, bob.main, batch_id=batch_id, batch_index=-1)
    with refused(db, "FOREIGN KEY"), db.write() as conn:
        _payment(conn, alice.main, bob.main, batch_id="bat_missing", batch_index=0)


# A payment's life.


@pytest.mark.parametrize("status", ["voided", "expired"])
def test_a_pending_payment_cannot_end_as_an_authorization_does(
    db: Database, alice: Customer, bob: Customer, status: str
) -> None:
    with db.write() as conn:
        payment_id = _payment(
            conn, alice.main, bob.main, capture="manual", hold_seconds=60, expires_at=NOW
        )

    with refused(db, PENDING_ENDS):
        _update(db, payment_id, status=status, completed_at=NOW)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"status": "failed", "failure_code": "account_frozen"}, id="failed"),
        pytest.param({"status": "pending", "completed_at": None}, id="pending"),
        pytest.param({"amount": 50}, id="its amount"),
        pytest.param({"expires_at": "2999-01-01T00:00:00.000000Z"}, id="its expiry"),
    ],
)
def test_an_authorization_ends_captured_voided_or_expired_and_nothing_else(
    db: Database, alice: Customer, bob: Customer, change: dict[str, Any]
) -> None:
    with db.write() as conn:
        payment_id = _authorized(conn, alice.main, bob.main)

    with refused(db, AUTHORIZATION_ENDS):
        _update(db, payment_id, **{"completed_at": NOW, **change})


@pytest.mark.parametrize("status", ["voided", "expired"])
def test_a_voided_or_expired_authorization_is_final(
    db: Database, alice: Customer, bob: Customer, status: str
) -> None:
    with db.write() as conn:
        payment_id = _authorized(conn, alice.main, bob.main)
    _update(db, payment_id, status=status, completed_at=NOW)

    with refused(db, SETTLED):
        _update(db, payment_id, status="authorized", completed_at=None)
    with refused(db, SETTLED):
        _update(db, payment_id, status="completed", captured_amount=100)


@pytest.mark.parametrize("status", ["voided", "expired"])
def test_an_authorization_that_ends_without_a_capture_has_no_entries(
    db: Database, alice: Customer, bob: Customer, status: str
) -> None:
    with db.write() as conn:
        payment_id = _authorized(conn, alice.main, bob.main)
    before = snapshot(db)

    with refused(db, NOT_COMPLETED), db.write() as conn:
        _pair(conn, alice.main, bob.main, 100, payment_id)
        conn.execute(
            "UPDATE payments SET status = ?, completed_at = ? WHERE id = ?",
            (status, NOW, payment_id),
        )

    assert snapshot(db) == before


def test_a_voided_authorization_takes_no_entries(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with db.write() as conn:
        payment_id = _authorized(conn, alice.main, bob.main)
    _update(db, payment_id, status="voided", completed_at=NOW)

    with (
        refused(db, f"settled payment takes no more|{NOT_COMPLETED}"),
        db.write() as conn,
    ):
        _pair(conn, alice.main, bob.main, 100, payment_id)


@pytest.mark.parametrize(
    ("captured", "entries"),
    [
        pytest.param(None, None, id="no capture and no entries"),
        pytest.param(40, None, id="no entries"),
        pytest.param(40, 100, id="entries of the authorized amount"),
        pytest.param(None, 100, id="no captured amount"),
        pytest.param(101, 101, id="more than was authorized"),
    ],
)
def test_a_capture_completes_with_exactly_the_entries_of_the_captured_amount(
    db: Database, alice: Customer, bob: Customer, captured: int | None, entries: int | None
) -> None:
    with db.write() as conn:
        payment_id = _authorized(conn, alice.main, bob.main, 100)
    before = snapshot(db)

    with refused(db, f"(?i){UNPAIRED}|check constraint"), db.write() as conn:
        if entries is not None:
            _pair(conn, alice.main, bob.main, entries, payment_id)
        conn.execute(
            "UPDATE payments SET status = 'completed', captured_amount = ?, completed_at = ?"
            " WHERE id = ?",
            (captured, NOW, payment_id),
        )

    assert snapshot(db) == before


def test_a_capture_with_its_pair_is_accepted_and_then_final(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with db.write() as conn:
        payment_id = _authorized(conn, alice.main, bob.main, 100)
    with db.write() as conn:
        _pair(conn, alice.main, bob.main, 40, payment_id)
        conn.execute(
            "UPDATE payments SET status = 'completed', captured_amount = 40, completed_at = ?"
            " WHERE id = ?",
            (NOW, payment_id),
        )

    with refused(db, SETTLED):
        _update(db, payment_id, captured_amount=50)
    with refused(db, SETTLED):
        _update(db, payment_id, status="voided")


def test_a_completed_payment_changes_only_what_its_refunds_reserved_and_moved(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payment_id = _completed(db, alice.main, bob.main)

    _update(db, payment_id, refund_reserved=30, refunded_amount=30)

    for change in ({"description": "edited"}, {"batch_id": None, "expires_at": NOW}):
        with refused(db, f"(?i){SETTLED}|check constraint"):
            _update(db, payment_id, **change)


# Batches and the answers of captures and voids.


def _batch(conn: Connection, owner: Customer, **columns: Any) -> str:
    batch_id = new_id("bat")
    row: dict[str, Any] = {
        "id": batch_id,
        "user_id": owner.user.id,
        "atomic": False,
        "size": 1,
        "idempotency_key": new_key(),
        "request_hash": "raw",
        "created_at": NOW,
        **columns,
    }
    conn.execute(
        f"INSERT INTO batches ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        list(row.values()),
    )
    return batch_id


def test_a_batch_has_a_size_a_user_and_one_use_of_its_key(db: Database, alice: Customer) -> None:
    _batch(db.connection(), alice, idempotency_key="batch-1")

    with refused(db, "UNIQUE"):
        _batch(db.connection(), alice, idempotency_key="batch-1")
    with refused(db, "CHECK"):
        _batch(db.connection(), alice, size=0)
    with refused(db, "FOREIGN KEY"):
        db.connection().execute(
            "INSERT INTO batches (id, user_id, atomic, size, idempotency_key, request_hash,"
            " created_at) VALUES ('bat_x', 'usr_missing', FALSE, 1, 'k', 'h', ?)",
            (NOW,),
        )


@pytest.mark.sqlite_only  # PostgreSQL's BOOLEAN is the type itself
def test_a_batch_is_atomic_or_not_and_nothing_else(db: Database, alice: Customer) -> None:
    with refused(db, "CHECK"):
        _batch(db.connection(), alice, atomic=2)


def _action(conn: Connection, payment_id: str, **columns: Any) -> None:
    row: dict[str, Any] = {
        "payment_id": payment_id,
        "idempotency_key": "capture-1",
        "request_hash": "raw",
        "kind": "capture",
        "status_code": 200,
        "response": "{}",
        "created_at": NOW,
        **columns,
    }
    conn.execute(
        f"INSERT INTO payment_actions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        list(row.values()),
    )


def test_a_capture_or_void_answer_is_kept_once_per_payment_and_key(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with db.write() as conn:
        payment_id = _authorized(conn, alice.main, bob.main)
    _action(db.connection(), payment_id)

    with refused(db, "UNIQUE"):
        _action(db.connection(), payment_id, kind="void")
    with refused(db, "CHECK"):
        _action(db.connection(), payment_id, idempotency_key="k2", kind="refund")
    with refused(db, "CHECK"):
        _action(db.connection(), payment_id, idempotency_key="k3", status_code=99)
    with refused(db, "FOREIGN KEY"):
        _action(db.connection(), "pay_missing", idempotency_key="k4")


def test_new_payments_are_automatic_with_nothing_held_or_refunded(
    db: Database, alice: Customer, bob: Customer
) -> None:
    with db.write() as conn:
        payment_id = _payment(conn, alice.main, bob.main)

    row = (
        db.connection()
        .execute(
            "SELECT capture, hold_seconds, expires_at, captured_amount, refund_of,"
            " refunded_amount, refund_reserved, batch_id, batch_index FROM payments WHERE id = ?",
            (payment_id,),
        )
        .fetchone()
    )
    assert tuple(row) == (CaptureMode.AUTOMATIC, None, None, None, None, 0, 0, None, None)
    (held,) = (
        db.connection()
        .execute("SELECT held FROM accounts WHERE id = ?", (alice.main.id,))
        .fetchone()
    )
    assert held == 0
