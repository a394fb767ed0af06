"""Batches in the core: recorded in one transaction, settled as one-by-one submission
would settle them (independent) or all or nothing (atomic), however the groups fall."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import accounts
from shared.audit import verify
from shared.batches import BatchRequest, batch_payments, get_batch, item_key, submit_batch
from shared.engine import settle_payment, settle_pending
from shared.errors import BatchItemRefused, IdempotencyKeyReused, SameAccount
from shared.payments import Transfer, submit_transfer
from shared.records import AccountStatus, BatchStatus, CaptureMode, Payment, PaymentStatus
from shared.store import Database
from shared.users import sign_up
from tests import fuzz_budget
from tests.unit.helpers import Customer, balance_of, count_rows, new_key, reopened

_worlds = itertools.count()


def _batch(
    db: Database, sender: Customer, items: list[tuple[str, int]], *, atomic: bool
) -> list[Payment]:
    """Submit ``items`` (receiver, amount) from the sender's main account as one batch."""
    transfers = [Transfer(sender.main.id, to, amount, "USD") for to, amount in items]
    accepted, replayed = db.run(
        submit_batch, BatchRequest(sender.user.id, atomic, transfers, new_key())
    )
    assert not replayed
    return accepted.payments


def _settle_everything(db: Database, group: int) -> None:
    while settle_pending(db, limit=group):
        pass


def _statuses(db: Database, payments: list[Payment]) -> list[tuple[str, str | None]]:
    found = {
        row["id"]: (row["status"], row["failure_code"])
        for row in db.connection().execute("SELECT id, status, failure_code FROM payments")
    }
    return [found[payment.id] for payment in payments]


def test_an_atomic_batch_fails_whole_when_item_500_of_1000_lacks_the_funds(
    db: Database, alice: Customer, bob: Customer
) -> None:
    items = [(bob.main.id, 1)] * 1_000
    items[500] = (bob.main.id, 2_000)  # more than Alice's 1,000
    payments = _batch(db, alice, items, atomic=True)

    settled = settle_pending(db, limit=64)

    assert len(settled) == 1_000, "a group reaching into an atomic batch takes it whole"
    outcomes = _statuses(db, payments)
    assert outcomes[500] == ("failed", "insufficient_funds")
    assert set(outcomes[:500] + outcomes[501:]) == {("failed", "linked_payment_failed")}
    assert (balance_of(db, alice.main.id), balance_of(db, bob.main.id)) == (1_000, 1_000)
    assert count_rows(db, "ledger_entries") == 4  # the four opening deposits
    row = db.connection().execute("SELECT pending_out FROM accounts WHERE id = ?", (alice.main.id,))
    assert row.fetchone()[0] == 0
    batch = get_batch(db, alice.user.id, payments[0].batch_id or "")
    assert batch.status is BatchStatus.SETTLED
    assert batch.counts[PaymentStatus.FAILED] == 1_000
    assert verify(db) == []


def test_an_atomic_batch_that_fits_completes_whole(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payments = _batch(db, alice, [(bob.main.id, 1)] * 1_000, atomic=True)

    _settle_everything(db, group=64)

    assert set(_statuses(db, payments)) == {("completed", None)}
    assert (balance_of(db, alice.main.id), balance_of(db, bob.main.id)) == (0, 2_000)
    assert verify(db) == []


def test_a_group_never_splits_an_atomic_batch(db: Database, alice: Customer, bob: Customer) -> None:
    (before,) = _batch(db, bob, [(alice.main.id, 1)], atomic=False)
    payments = _batch(db, alice, [(bob.main.id, 1)] * 5, atomic=True)
    (after,) = _batch(db, bob, [(alice.main.id, 1)], atomic=False)

    settled = settle_pending(db, limit=2)

    assert [p.id for p in settled] == [before.id] + [p.id for p in payments]
    assert _statuses(db, [after]) == [("pending", None)]


def test_settling_one_payment_of_an_atomic_batch_settles_the_batch(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payments = _batch(db, alice, [(bob.main.id, 400), (bob.main.id, 700)], atomic=True)

    settled = settle_payment(db, payments[0].id)

    assert settled is not None
    assert (settled.status, settled.failure_code) == (
        PaymentStatus.FAILED,
        "linked_payment_failed",
    )
    assert _statuses(db, payments) == [
        ("failed", "linked_payment_failed"),
        ("failed", "insufficient_funds"),
    ]


def test_an_atomic_failure_gives_back_what_the_batch_held(
    db: Database, alice: Customer, bob: Customer
) -> None:
    transfers = [
        Transfer(
            alice.main.id, bob.main.id, 600, "USD", capture=CaptureMode.MANUAL, hold_seconds=60
        ),
        Transfer(alice.main.id, bob.main.id, 600, "USD"),
    ]
    accepted, _ = db.run(submit_batch, BatchRequest(alice.user.id, True, transfers, new_key()))

    _settle_everything(db, group=256)

    assert _statuses(db, accepted.payments) == [
        ("failed", "linked_payment_failed"),
        ("failed", "insufficient_funds"),
    ]
    row = db.connection().execute("SELECT held FROM accounts WHERE id = ?", (alice.main.id,))
    assert row.fetchone()[0] == 0


def test_a_batch_is_settled_by_the_transaction_that_settles_its_last_payment(
    db: Database, alice: Customer, bob: Customer
) -> None:
    payments = _batch(db, alice, [(bob.main.id, 1)] * 5, atomic=False)
    batch_id = payments[0].batch_id or ""

    settle_pending(db, limit=3)
    assert get_batch(db, alice.user.id, batch_id).status is BatchStatus.PENDING

    last = settle_pending(db, limit=3)
    batch = get_batch(db, alice.user.id, batch_id)
    assert batch.status is BatchStatus.SETTLED
    assert batch.settled_at == last[-1].completed_at
    assert batch.counts[PaymentStatus.COMPLETED] == 5


def test_a_batch_pages_by_its_order(db: Database, alice: Customer, bob: Customer) -> None:
    payments = _batch(db, alice, [(bob.main.id, n) for n in range(1, 6)], atomic=False)
    batch_id = payments[0].batch_id or ""
    first = batch_payments(db, alice.user.id, batch_id, limit=2, cursor=None)
    second = batch_payments(db, alice.user.id, batch_id, limit=2, cursor=first.next_cursor)
    third = batch_payments(db, alice.user.id, batch_id, limit=2, cursor=second.next_cursor)
    assert [p.amount for p in first.data + second.data + third.data] == [1, 2, 3, 4, 5]
    assert third.next_cursor is None


def test_a_refused_item_records_nothing(db: Database, alice: Customer, bob: Customer) -> None:
    transfers = [
        Transfer(alice.main.id, bob.main.id, 1, "USD"),
        Transfer(alice.main.id, alice.main.id, 1, "USD"),
    ]
    with pytest.raises(BatchItemRefused) as refused:
        db.run(submit_batch, BatchRequest(alice.user.id, False, transfers, "k"))
    assert refused.value.index == 1
    assert isinstance(refused.value.refusal, SameAccount)
    assert (count_rows(db, "batches"), count_rows(db, "payments")) == (0, 0)


def test_a_batchs_items_never_take_a_transfers_key(
    db: Database, alice: Customer, bob: Customer
) -> None:
    transfer = Transfer(alice.main.id, bob.main.id, 1, "USD")
    alone, _ = db.run(submit_transfer, alice.user.id, transfer, "k")
    accepted, _ = db.run(submit_batch, BatchRequest(alice.user.id, False, [transfer], "k"))
    assert accepted.payments[0].id != alone.id
    assert "\x1f" in item_key("k", 0)


def test_a_key_is_replayed_or_refused_by_its_body(
    db: Database, alice: Customer, bob: Customer
) -> None:
    transfers = [Transfer(alice.main.id, bob.main.id, 1, "USD")]
    first, _ = db.run(submit_batch, BatchRequest(alice.user.id, False, transfers, "k"))
    again, replayed = db.run(submit_batch, BatchRequest(alice.user.id, False, transfers, "k"))
    assert replayed
    assert again.batch.id == first.batch.id
    assert [p.id for p in again.payments] == [p.id for p in first.payments]
    with pytest.raises(IdempotencyKeyReused):
        db.run(submit_batch, BatchRequest(alice.user.id, True, transfers, "k"))


def test_two_processes_submitting_one_batch_record_it_once(
    db: Database, alice: Customer, bob: Customer
) -> None:
    transfers = [Transfer(alice.main.id, bob.main.id, 1, "USD")] * 3
    request = BatchRequest(alice.user.id, False, transfers, "twin")
    start = threading.Barrier(2)
    results: list[tuple[str, bool]] = []

    def submit() -> None:
        other = reopened(db)
        try:
            start.wait()
            accepted, replayed = other.run(submit_batch, request)
            results.append((accepted.batch.id, replayed))
        finally:
            other.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(replayed for _, replayed in results) == [False, True]
    assert len({batch_id for batch_id, _ in results}) == 1
    assert (count_rows(db, "batches"), count_rows(db, "payments")) == (1, 3)


# --- a batch against the same transfers submitted one by one --------------------------


@dataclass(frozen=True)
class _Item:
    """Slots: the caller owns accounts 0, 1 and 2; account 3 is another user's."""

    sender: int
    receiver: int
    amount: int
    manual: bool


_items = st.builds(
    _Item,
    sender=st.integers(0, 2),
    receiver=st.integers(0, 3),
    amount=st.integers(1, 250),
    manual=st.sampled_from([False, False, False, True]),
).filter(lambda item: item.sender != item.receiver)


class _World:
    """A caller with three USD accounts and another user with one, funded as asked."""

    def __init__(self, db: Database, funds: list[int], frozen: bool) -> None:
        n = next(_worlds)
        self.db = db
        self.caller = db.run(sign_up, f"B{n}", f"b{n}@example.com")[0].id
        other = db.run(sign_up, f"O{n}", f"o{n}@example.com")[0].id
        owners = [self.caller] * 3 + [other]
        self.accounts = [db.run(accounts.open_account, owner, "USD") for owner in owners]
        for account, amount in zip(self.accounts, funds, strict=True):
            if amount:
                db.run(
                    accounts.deposit,
                    account.user_id,
                    account.id,
                    amount=amount,
                    description=None,
                    idempotency_key="funds",
                )
        if frozen:
            db.run(accounts.set_status, other, self.accounts[3].id, AccountStatus.FROZEN)

    def transfer(self, item: _Item) -> Transfer:
        manual = CaptureMode.MANUAL if item.manual else CaptureMode.AUTOMATIC
        return Transfer(
            self.accounts[item.sender].id,
            self.accounts[item.receiver].id,
            item.amount,
            "USD",
            capture=manual,
            hold_seconds=3600 if item.manual else None,
        )

    def balances(self) -> list[tuple[int, int]]:
        found = {
            row["id"]: (row["balance"], row["held"])
            for row in self.db.connection().execute("SELECT id, balance, held FROM accounts")
        }
        return [found[account.id] for account in self.accounts]


def _one_by_one(world: _World, items: list[_Item]) -> list[tuple[str, str | None]]:
    outcomes: list[tuple[str, str | None]] = []
    for item in items:
        payment, _ = world.db.run(submit_transfer, world.caller, world.transfer(item), new_key())
        settled = settle_payment(world.db, payment.id)
        assert settled is not None
        outcomes.append((settled.status.value, settled.failure_code))
    return outcomes


_funds = st.lists(st.integers(0, 400), min_size=4, max_size=4)
_budget = settings(
    max_examples=fuzz_budget.examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_budget
@given(
    funds=_funds,
    frozen=st.booleans(),
    items=st.lists(_items, min_size=1, max_size=30),
    group=st.integers(1, 12),
)
def test_an_independent_batch_settles_as_one_by_one_submission(
    db: Database, funds: list[int], frozen: bool, items: list[_Item], group: int
) -> None:
    alone, together = _World(db, funds, frozen), _World(db, funds, frozen)
    expected = _one_by_one(alone, items)

    accepted, _ = db.run(
        submit_batch,
        BatchRequest(together.caller, False, [together.transfer(i) for i in items], new_key()),
    )
    _settle_everything(db, group)

    assert _statuses(db, accepted.payments) == expected
    assert together.balances() == alone.balances()


@_budget
@given(funds=_funds, frozen=st.booleans(), items=st.lists(_items, min_size=1, max_size=30))
def test_an_atomic_batch_settles_whole_or_not_at_all(
    db: Database, funds: list[int], frozen: bool, items: list[_Item]
) -> None:
    alone, together = _World(db, funds, frozen), _World(db, funds, frozen)
    before = together.balances()
    expected = _one_by_one(alone, items)

    accepted, _ = db.run(
        submit_batch,
        BatchRequest(together.caller, True, [together.transfer(i) for i in items], new_key()),
    )
    _settle_everything(db, group=4)

    got = _statuses(db, accepted.payments)
    if all(status != "failed" for status, _ in expected):
        assert got == expected
        assert together.balances() == alone.balances()
    else:
        assert got == [
            (status, code) if status == "failed" else ("failed", "linked_payment_failed")
            for status, code in expected
        ]
        assert together.balances() == before


def test_p2p_verify_finds_an_atomic_batch_that_did_not_fail_whole(
    db: Database, alice: Customer, bob: Customer
) -> None:
    """Planted behind the engine's back: a batch settled independently, then said to be
    atomic, has one payment completed and one failed."""
    payments = _batch(db, alice, [(bob.main.id, 600), (bob.main.id, 600)], atomic=False)
    _settle_everything(db, group=256)
    assert verify(db) == []
    batch_id = payments[0].batch_id
    db.connection().execute("UPDATE batches SET atomic = ? WHERE id = ?", (True, batch_id))

    (found,) = verify(db)
    assert found.startswith("failed payment of an atomic batch whose other payments did not fail")
    assert payments[1].id in found
