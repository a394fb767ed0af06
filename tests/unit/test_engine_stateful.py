"""The engine, driven by Hypothesis through random sign-ups, deposits, transfers, batches
(independent and atomic), replays, freezes, settling, holds (authorizations,
captures, voids, expiries) and refunds, against a model of balances small enough to be
obviously right.

After every step each invariant is checked: balances, ``held``, ``pending_out`` and every
payment's outcome are the model's; per currency the balances add up to the deposits;
every ledger entry continues its account's running balance; and ``p2p verify`` finds
nothing.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from shared import accounts, holds
from shared.accounts import MAX_BALANCE
from shared.audit import verify
from shared.batches import BatchRequest, submit_batch
from shared.engine import settle_payment, settle_pending
from shared.errors import (
    AccountFrozen,
    BalanceLimitExceeded,
    BatchItemRefused,
    CaptureExceedsAuthorization,
    CurrencyMismatch,
    IdempotencyKeyReused,
    NotFound,
    P2PError,
    PaymentNotAuthorized,
    PaymentNotRefundable,
    RefundExceedsPayment,
    SameAccount,
)
from shared.payments import Transfer, submit_transfer
from shared.records import AccountStatus, CaptureMode, Payment
from shared.refunds import Refund, submit_refund
from shared.store import Connection
from shared.store.sqlite import SQLiteDatabase
from shared.users import sign_up
from tests import fuzz_budget

P = ParamSpec("P")
T = TypeVar("T")

CURRENCIES = ("USD", "EUR", "JPY")
# A small pool, so that keys are often reused: replays and reuse with another body.
KEYS = st.sampled_from([f"key-{n}" for n in range(6)])
# Mostly everyday sums, deposits larger than transfers so that most transfers can go
# through; now and then one at the limits of what a balance can hold.
LIMITS = st.sampled_from([MAX_BALANCE // 2, MAX_BALANCE - 1, MAX_BALANCE])
DEPOSITS = st.one_of(*[st.integers(1, 10_000)] * 4, LIMITS)
TRANSFERS = st.one_of(*[st.integers(1, 1_000)] * 4, LIMITS)
# Mostly USD, so that most transfers are between accounts of one currency.
CURRENCY_CHOICES = st.sampled_from(["USD", "USD", "USD", "EUR", "JPY"])
SELDOM = st.integers(0, 7).map(lambda n: n == 0)
DESCRIPTIONS = st.sampled_from([None, "rent"])
HOLD_SECONDS = 3600
# A capture: all of it (None), a part, or now and then more than was authorized.
CAPTURES = st.one_of(st.none(), st.integers(1, 1_000), st.integers(1, 1_000), LIMITS)
ACTIONS = st.sampled_from(["capture", "void"])
# A refund: all that is left (None), or a sum that is sometimes more than is.
REFUNDS = st.one_of(st.none(), st.integers(1, 100), st.integers(1, 1_000))


@dataclass
class ModelAccount:
    owner: str
    currency: str
    balance: int = 0
    frozen: bool = False
    held: int = 0


@dataclass
class ModelPayment:
    id: str
    sender: str
    receiver: str
    amount: int
    manual: bool = False
    status: str = "pending"
    failure_code: str | None = None
    batch: str | None = None
    atomic: bool = False
    captured: int | None = None
    expires_at: datetime | None = None
    refund_of: str | None = None

    @property
    def moved(self) -> int:
        return self.amount if self.captured is None else self.captured


class EngineMachine(RuleBasedStateMachine):
    accounts = Bundle("accounts")

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="p2p-stateful-")
        # NORMAL skips the fsync per commit: durability is not what this test is about.
        self.db = SQLiteDatabase(str(Path(self.directory) / "p2p.db"), synchronous="NORMAL")
        self.db.migrate()
        self.users: list[str] = []
        self.model: dict[str, ModelAccount] = {}
        self.deposited: defaultdict[str, int] = defaultdict(int)
        self.deposit_keys: dict[tuple[str, str], tuple[tuple[int, str | None], str]] = {}
        self.transfer_keys: dict[tuple[str, str], tuple[Transfer, str]] = {}
        self.batch_keys: dict[tuple[str, str], tuple[BatchRequest, list[str]]] = {}
        self.refund_keys: dict[tuple[str, str], tuple[Refund, str]] = {}
        self.payments: list[ModelPayment] = []
        self.action_keys: dict[tuple[str, str], tuple[str, int | None]] = {}
        self._serial = itertools.count()

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- people and accounts -------------------------------------------------------

    @initialize(
        target=accounts,
        currencies=st.lists(CURRENCY_CHOICES, min_size=3, max_size=5),
    )
    def three_users_and_funded_accounts(self, currencies: list[str]) -> MultipleResults[str]:
        for _ in range(3):
            user, _ = self.db.run(sign_up, "Fuzz", f"fuzz-{next(self._serial)}@example.com")
            self.users.append(user.id)
        opened = [self._open(n, currency) for n, currency in enumerate(currencies)]
        for account in opened:
            self.deposit(account, 5_000, "opening balance", "opening")
        return multiple(*opened)

    @rule(target=accounts, user=st.integers(0, 2), currency=CURRENCY_CHOICES)
    def open_account(self, user: int, currency: str) -> str:
        return self._open(user, currency)

    def _open(self, user: int, currency: str) -> str:
        owner = self.users[user % len(self.users)]
        account = self.db.run(accounts.open_account, owner, currency)
        self.model[account.id] = ModelAccount(owner, currency)
        return account.id

    @rule(account=accounts, frozen=SELDOM)
    def freeze_or_unfreeze(self, account: str, frozen: bool) -> None:
        status = AccountStatus.FROZEN if frozen else AccountStatus.ACTIVE
        self.db.run(accounts.set_status, self.model[account].owner, account, status)
        self.model[account].frozen = frozen

    # --- money in ------------------------------------------------------------------

    @rule(account=accounts, amount=DEPOSITS, description=DESCRIPTIONS, key=KEYS)
    def deposit(self, account: str, amount: int, description: str | None, key: str) -> None:
        held = self.model[account]
        body = (amount, description)
        expected: type[P2PError] | None = None
        seen = self.deposit_keys.get((account, key))
        if seen is not None and seen[0] != body:
            expected = IdempotencyKeyReused
        elif seen is None and held.frozen:
            expected = AccountFrozen
        elif seen is None and held.balance > MAX_BALANCE - amount:
            expected = BalanceLimitExceeded
        made = self._attempt(
            expected,
            accounts.deposit,
            held.owner,
            account,
            amount=amount,
            description=description,
            idempotency_key=key,
        )
        if made is None:
            return
        deposit, replayed = made
        assert replayed is (seen is not None)
        if seen is not None:
            assert deposit.id == seen[1]
            return
        held.balance += amount
        self.deposited[held.currency] += amount
        assert deposit.balance_after == held.balance
        self.deposit_keys[(account, key)] = (body, deposit.id)

    @rule(account=accounts, room=st.integers(0, 3))
    def fill_to_the_brim(self, account: str, room: int) -> None:
        """A balance a few units short of 2^63 - 1, where any credit must be refused."""
        amount = MAX_BALANCE - self.model[account].balance - room
        if amount >= 1:
            self.deposit(account, amount, None, f"brim-{next(self._serial)}")

    # --- transfers -----------------------------------------------------------------

    @rule(
        sender=accounts,
        receiver=accounts,
        amount=TRANSFERS,
        other_currency=SELDOM,
        as_stranger=SELDOM,
        key=KEYS,
        manual=st.booleans(),
    )
    def submit(
        self,
        sender: str,
        receiver: str,
        amount: int,
        other_currency: bool,
        as_stranger: bool,
        key: str,
        manual: bool,
    ) -> None:
        held = self.model[sender]
        currency = held.currency
        if other_currency:
            currency = CURRENCIES[(CURRENCIES.index(currency) + 1) % len(CURRENCIES)]
        caller = held.owner
        if as_stranger:
            caller = next((user for user in self.users if user != held.owner), held.owner)
        transfer = Transfer(sender, receiver, amount, currency)
        if manual:
            transfer = Transfer(
                sender, receiver, amount, currency, None, CaptureMode.MANUAL, HOLD_SECONDS
            )
        seen = self.transfer_keys.get((sender, key))
        pending_out = sum(p.amount for p in self._pending() if p.sender == sender)
        expected: type[P2PError] | None = None
        if sender == receiver:
            expected = SameAccount
        elif caller != held.owner:
            expected = NotFound
        elif seen is not None:
            expected = None if seen[0] == transfer else IdempotencyKeyReused
        elif currency != held.currency or currency != self.model[receiver].currency:
            expected = CurrencyMismatch
        elif pending_out > MAX_BALANCE - amount:
            expected = BalanceLimitExceeded
        made = self._attempt(expected, submit_transfer, caller, transfer, key)
        if made is None:
            return
        payment, replayed = made
        assert replayed is (seen is not None)
        if seen is not None:
            assert payment.id == seen[1]
            return
        assert payment.status == "pending"
        self.payments.append(ModelPayment(payment.id, sender, receiver, amount, manual))
        self.transfer_keys[(sender, key)] = (transfer, payment.id)

    @rule(
        items=st.lists(st.tuples(accounts, accounts, TRANSFERS), min_size=1, max_size=5),
        atomic=st.booleans(),
        other_currency=SELDOM,
        key=KEYS,
    )
    def submit_batch(
        self,
        items: list[tuple[str, str, int]],
        atomic: bool,
        other_currency: bool,
        key: str,
    ) -> None:
        """By the owner of the first item's sender; a later item's sender may be
        another user's, and the last item may be in another currency."""
        caller = self.model[items[0][0]].owner
        transfers = [
            Transfer(sender, receiver, amount, self.model[sender].currency)
            for sender, receiver, amount in items
        ]
        if other_currency:
            last = transfers[-1]
            currency = CURRENCIES[(CURRENCIES.index(last.currency) + 1) % len(CURRENCIES)]
            transfers[-1] = Transfer(
                last.from_account_id, last.to_account_id, last.amount, currency
            )
        request = BatchRequest(caller, atomic, transfers, key)
        seen = self.batch_keys.get((caller, key))
        refusal = None if seen is not None else self._refusal(caller, transfers)
        if seen is not None and seen[0] != request:
            with pytest.raises(IdempotencyKeyReused):
                self.db.run(submit_batch, request)
            return
        if refusal is not None:
            with pytest.raises(BatchItemRefused) as refused:
                self.db.run(submit_batch, request)
            assert (refused.value.index, type(refused.value.refusal)) == refusal
            return
        accepted, replayed = self.db.run(submit_batch, request)
        assert replayed is (seen is not None)
        ids = [payment.id for payment in accepted.payments]
        if seen is not None:
            assert ids == seen[1]
            return
        for payment, transfer in zip(accepted.payments, transfers, strict=True):
            assert payment.status == "pending"
            self.payments.append(
                ModelPayment(
                    payment.id,
                    transfer.from_account_id,
                    transfer.to_account_id,
                    transfer.amount,
                    batch=accepted.batch.id,
                    atomic=atomic,
                )
            )
        self.batch_keys[(caller, key)] = (request, ids)

    def _refusal(self, caller: str, transfers: list[Transfer]) -> tuple[int, type[P2PError]] | None:
        """The first item refused, as each would be submitted alone after the others."""
        pending_out: defaultdict[str, int] = defaultdict(int)
        for payment in self._pending():
            pending_out[payment.sender] += payment.amount
        for index, transfer in enumerate(transfers):
            sender, receiver = transfer.from_account_id, transfer.to_account_id
            refusal: type[P2PError] | None = None
            if sender == receiver:
                refusal = SameAccount
            elif self.model[sender].owner != caller:
                refusal = NotFound
            elif transfer.currency != self.model[sender].currency or (
                transfer.currency != self.model[receiver].currency
            ):
                refusal = CurrencyMismatch
            elif pending_out[sender] > MAX_BALANCE - transfer.amount:
                refusal = BalanceLimitExceeded
            if refusal is not None:
                return index, refusal
            pending_out[sender] += transfer.amount
        return None

    # --- refunds -------------------------------------------------------------------

    @precondition(lambda self: self._refundable())
    @rule(pick=st.integers(0, 10_000), amount=REFUNDS, description=DESCRIPTIONS, key=KEYS)
    def refund(self, pick: int, amount: int | None, description: str | None, key: str) -> None:
        """A completed payment, by its receiver's owner."""
        refundable = self._refundable()
        self._refund(refundable[pick % len(refundable)], amount, description, False, key)

    @rule(
        sender=accounts,
        receiver=accounts,
        amount=st.integers(1, 500),
        refunded=REFUNDS,
        description=DESCRIPTIONS,
    )
    def pay_and_refund(
        self,
        sender: str,
        receiver: str,
        amount: int,
        refunded: int | None,
        description: str | None,
    ) -> None:
        """A small transfer between two accounts of one currency, judged at once, then
        refunded: so that there are refunds to settle."""
        if sender == receiver or self.model[sender].currency != self.model[receiver].currency:
            return
        submitted = len(self.payments)
        key = f"paid-{next(self._serial)}"
        self.submit(sender, receiver, amount, False, False, key, False)
        if len(self.payments) == submitted:
            return  # refused (too much pending): the model says so
        payment = self.payments[-1]
        self._judge(payment)
        settled = settle_payment(self.db, payment.id)
        assert settled is not None
        assert (settled.status, settled.failure_code) == (payment.status, payment.failure_code)
        self._refund(payment, refunded, description, False, key)

    @precondition(lambda self: self.payments)
    @rule(
        pick=st.integers(0, 10_000),
        amount=REFUNDS,
        as_stranger=st.booleans(),
        key=KEYS,
    )
    def refund_any(self, pick: int, amount: int | None, as_stranger: bool, key: str) -> None:
        """Any payment, refundable or not, by its receiver's owner or another user."""
        self._refund(self.payments[pick % len(self.payments)], amount, None, as_stranger, key)

    def _refund(
        self,
        original: ModelPayment,
        amount: int | None,
        description: str | None,
        as_stranger: bool,
        key: str,
    ) -> None:
        owner = self.model[original.receiver].owner
        caller = owner
        if as_stranger:
            caller = next((user for user in self.users if user != owner), owner)
        refund = Refund(amount, description)
        seen = self.refund_keys.get((original.id, key))
        left = original.moved - sum(
            p.amount for p in self._refunds_of(original) if p.status != "failed"
        )
        wanted = left if amount is None else amount
        pending_out = sum(p.amount for p in self._pending() if p.sender == original.receiver)
        expected: type[P2PError] | None = None
        if caller != owner:
            expected = NotFound
        elif seen is not None:
            expected = None if seen[0] == refund else IdempotencyKeyReused
        elif original.refund_of is not None or original.status != "completed":
            expected = PaymentNotRefundable
        elif left == 0 or wanted > left:
            expected = RefundExceedsPayment
        elif pending_out > MAX_BALANCE - wanted:
            expected = BalanceLimitExceeded
        made = self._attempt(expected, submit_refund, caller, original.id, refund, key)
        if made is None:
            return
        payment, replayed = made
        assert replayed is (seen is not None)
        if seen is not None:
            assert payment.id == seen[1]
            return
        assert (payment.status, payment.amount, payment.refund_of) == (
            "pending",
            wanted,
            original.id,
        )
        self.payments.append(
            ModelPayment(
                payment.id, original.receiver, original.sender, wanted, refund_of=original.id
            )
        )
        self.refund_keys[(original.id, key)] = (refund, payment.id)

    # --- settling ------------------------------------------------------------------

    @precondition(lambda self: self.payments)
    @rule(pick=st.integers(0, 10_000))
    def settle_one(self, pick: int) -> None:
        """Any payment, settled or not: settling again must change nothing. A payment of
        an atomic batch settles its whole batch."""
        payment = self.payments[pick % len(self.payments)]
        if payment.status == "pending":
            self._judge_all(self._claimed([payment]))
        settled = settle_payment(self.db, payment.id)
        assert settled is not None
        assert (settled.status, settled.failure_code) == (payment.status, payment.failure_code)
        self._note_expiry(settled)

    @precondition(lambda self: self._pending())
    @rule(limit=st.integers(1, 6))
    def settle_group(self, limit: int) -> None:
        oldest = self._claimed(self._pending()[:limit])
        self._judge_all(oldest)
        settled = settle_pending(self.db, limit=limit)
        assert [p.id for p in settled] == [p.id for p in oldest]
        for got, want in zip(settled, oldest, strict=True):
            assert (got.status, got.failure_code) == (want.status, want.failure_code)
            self._note_expiry(got)

    def _note_expiry(self, settled: Payment) -> None:
        model = next(p for p in self.payments if p.id == settled.id)
        if settled.status == "authorized":
            assert settled.expires_at is not None
            model.expires_at = settled.expires_at

    # --- holds ---------------------------------------------------------------------

    @rule(sender=accounts, receiver=accounts, amount=st.integers(1, 500))
    def authorize(self, sender: str, receiver: str, amount: int) -> None:
        """A small manual transfer between two accounts of one currency, judged at once:
        so that there are authorizations to capture, void and expire."""
        if sender == receiver or self.model[sender].currency != self.model[receiver].currency:
            return
        submitted = len(self.payments)
        self.submit(sender, receiver, amount, False, False, f"auth-{next(self._serial)}", True)
        if len(self.payments) == submitted:
            return  # refused (too much pending): the model says so
        payment = self.payments[-1]
        self._judge(payment)
        settled = settle_payment(self.db, payment.id)
        assert settled is not None
        assert (settled.status, settled.failure_code) == (payment.status, payment.failure_code)
        self._note_expiry(settled)

    @precondition(lambda self: self.payments)
    @rule(
        pick=st.integers(0, 10_000),
        action=ACTIONS,
        amount=CAPTURES,
        key=KEYS,
        as_sender=SELDOM,
        any_payment=SELDOM,
    )
    def capture_or_void(
        self,
        pick: int,
        action: str,
        amount: int | None,
        key: str,
        as_sender: bool,
        any_payment: bool,
    ) -> None:
        """An authorized payment (now and then any payment), by its receiver's owner (now
        and then by its sender's instead), under a key that may have been used on it
        before."""
        authorized = [p for p in self.payments if p.status == "authorized"]
        candidates = self.payments if any_payment or not authorized else authorized
        payment = candidates[pick % len(candidates)]
        sender, receiver = self.model[payment.sender], self.model[payment.receiver]
        caller = sender.owner if as_sender else receiver.owner
        request = (action, amount if action == "capture" else None)
        seen = self.action_keys.get((payment.id, key))
        captured = payment.amount if amount is None else amount
        expected: type[P2PError] | None = None
        if caller != receiver.owner:
            expected = NotFound
        elif seen is not None:
            expected = None if seen == request else IdempotencyKeyReused
        elif payment.status != "authorized":
            expected = PaymentNotAuthorized
        elif action == "capture" and captured > payment.amount:
            expected = CaptureExceedsAuthorization
        elif action == "capture" and (sender.frozen or receiver.frozen):
            expected = AccountFrozen
        elif action == "capture" and receiver.balance > MAX_BALANCE - captured:
            expected = BalanceLimitExceeded
        if action == "capture":
            made = self._attempt(
                expected,
                holds.capture,
                caller,
                payment.id,
                amount=amount,
                idempotency_key=key,
                render=lambda p: p.status.value,
            )
        else:
            made = self._attempt(
                expected,
                holds.void,
                caller,
                payment.id,
                idempotency_key=key,
                render=lambda p: p.status.value,
            )
        if made is None:
            return
        assert made.replayed is (seen is not None)
        if seen is not None:
            return
        self.action_keys[(payment.id, key)] = request
        sender.held -= payment.amount
        if action == "capture":
            sender.balance -= captured
            receiver.balance += captured
            payment.status, payment.captured = "completed", captured
        else:
            payment.status = "voided"
        assert made.body == payment.status

    @precondition(lambda self: any(p.status == "authorized" for p in self.payments))
    @rule(pick=st.integers(0, 10_000))
    def expire(self, pick: int) -> None:
        """The expiry pass at the moment one authorization comes due: it and every
        authorization due before it expire, no other."""
        authorized = [p for p in self.payments if p.status == "authorized"]
        due = authorized[pick % len(authorized)].expires_at
        assert due is not None
        expected = {p.id for p in authorized if p.expires_at is not None and p.expires_at <= due}
        expired = holds.expire_due(self.db, limit=1_000, now=due)
        assert {p.id for p in expired} == expected
        for payment in authorized:
            if payment.id in expected:
                payment.status = "expired"
                self.model[payment.sender].held -= payment.amount

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def balances_pending_out_and_status_are_the_models(self) -> None:
        rows = self.db.connection().execute(
            "SELECT id, balance, pending_out, status, held FROM accounts"
        )
        pending_out: defaultdict[str, int] = defaultdict(int)
        for payment in self._pending():
            pending_out[payment.sender] += payment.amount
        seen = {}
        for row in rows:
            held = self.model[row["id"]]
            seen[row["id"]] = (row["balance"], row["pending_out"], row["status"], row["held"])
            frozen = "frozen" if held.frozen else "active"
            want = (held.balance, pending_out[row["id"]], frozen, held.held)
            assert seen[row["id"]] == want, row["id"]
        assert seen.keys() == self.model.keys()

    @invariant()
    def per_currency_balances_add_up_to_deposits(self) -> None:
        totals: defaultdict[str, int] = defaultdict(int)
        for currency, balance in self.db.connection().execute(
            "SELECT currency, balance FROM accounts"
        ):
            totals[currency] += balance
        assert {c: t for c, t in totals.items() if t} == {
            c: t for c, t in self.deposited.items() if t
        }

    @invariant()
    def every_payment_is_settled_once_as_the_model_says(self) -> None:
        rows = {
            row["id"]: row
            for row in self.db.connection().execute(
                "SELECT payments.id, status, failure_code, captured_amount,"
                " count(ledger_entries.id) AS entries, min(ledger_entries.amount) AS moved"
                " FROM payments LEFT JOIN ledger_entries ON payment_id = payments.id"
                " GROUP BY payments.id, status, failure_code, captured_amount"
            )
        }
        assert rows.keys() == {p.id for p in self.payments}
        for payment in self.payments:
            row = rows[payment.id]
            assert (row["status"], row["failure_code"]) == (payment.status, payment.failure_code)
            assert row["captured_amount"] == payment.captured
            assert row["entries"] == (2 if payment.status == "completed" else 0), payment.id
            if payment.status == "completed":
                assert row["moved"] == (payment.captured or payment.amount)

    @invariant()
    def every_entry_continues_the_running_balance(self) -> None:
        last: dict[str, int] = {}
        for row in self.db.connection().execute(
            "SELECT account_id, direction, amount, balance_after FROM ledger_entries ORDER BY seq"
        ):
            change = row["amount"] if row["direction"] == "credit" else -row["amount"]
            assert row["balance_after"] == last.get(row["account_id"], 0) + change
            last[row["account_id"]] = row["balance_after"]
        for account_id, held in self.model.items():
            assert last.get(account_id, 0) == held.balance

    @invariant()
    def a_batch_is_settled_once_none_of_its_payments_is_pending(self) -> None:
        settled = {
            row["id"]: row["settled_at"] is not None
            for row in self.db.connection().execute("SELECT id, settled_at FROM batches")
        }
        pending = {p.batch for p in self._pending() if p.batch is not None}
        assert settled == {
            batch: batch not in pending for batch in {p.batch for p in self.payments if p.batch}
        }

    @invariant()
    def refunds_reserved_and_refunded_are_the_models(self) -> None:
        """G9: never more than was moved, as reserved by refunds not failed and moved by
        completed ones."""
        for row in self.db.connection().execute(
            "SELECT id, coalesce(captured_amount, amount) AS moved, refund_reserved,"
            " refunded_amount FROM payments"
        ):
            refunds = [p for p in self.payments if p.refund_of == row["id"]]
            reserved = sum(p.amount for p in refunds if p.status != "failed")
            refunded = sum(p.amount for p in refunds if p.status == "completed")
            assert (row["refund_reserved"], row["refunded_amount"]) == (reserved, refunded)
            assert reserved <= row["moved"]

    @invariant()
    def the_audit_finds_nothing(self) -> None:
        assert verify(self.db) == []

    # --- the model -----------------------------------------------------------------

    def _pending(self) -> list[ModelPayment]:
        return [p for p in self.payments if p.status == "pending"]

    def _claimed(self, payments: list[ModelPayment]) -> list[ModelPayment]:
        """What settling these takes: each atomic batch among them whole, together."""
        claimed: list[ModelPayment] = []
        for payment in payments:
            if not payment.atomic:
                claimed.append(payment)
            elif payment not in claimed:
                claimed += [p for p in self._pending() if p.batch == payment.batch]
        return claimed

    def _judge_all(self, payments: list[ModelPayment]) -> None:
        """Settle these in the model, in order; an atomic batch all or nothing: judged
        on a copy of the accounts first."""
        rehearsed: set[str] = set()
        for payment in payments:
            if payment.atomic and payment.batch not in rehearsed:
                assert payment.batch is not None
                rehearsed.add(payment.batch)
                self._rehearse([p for p in payments if p.batch == payment.batch])
            if payment.status == "pending":
                self._judge(payment)

    def _rehearse(self, batch: list[ModelPayment]) -> None:
        saved = {key: replace(account) for key, account in self.model.items()}
        trial = [replace(payment) for payment in batch]
        for payment in trial:
            self._judge(payment)
        self.model = saved
        if any(payment.status == "failed" for payment in trial):
            for payment, tried in zip(batch, trial, strict=True):
                payment.status = "failed"
                payment.failure_code = tried.failure_code or "linked_payment_failed"

    def _refundable(self) -> list[ModelPayment]:
        return [p for p in self.payments if p.status == "completed" and p.refund_of is None]

    def _refunds_of(self, payment: ModelPayment) -> list[ModelPayment]:
        return [p for p in self.payments if p.refund_of == payment.id]

    def _judge(self, payment: ModelPayment) -> None:
        """Settle ``payment`` in the model, as the engine's rules say."""
        sender, receiver = self.model[payment.sender], self.model[payment.receiver]
        original = next((p for p in self.payments if p.id == payment.refund_of), None)
        refunded = 0
        if original is not None:
            refunded = sum(p.amount for p in self._refunds_of(original) if p.status == "completed")
        if original is not None and refunded + payment.amount > original.moved:
            payment.status, payment.failure_code = "failed", "refund_exceeds_payment"
        elif sender.frozen or receiver.frozen:
            payment.status, payment.failure_code = "failed", "account_frozen"
        elif sender.balance - sender.held < payment.amount:
            payment.status, payment.failure_code = "failed", "insufficient_funds"
        elif receiver.balance > MAX_BALANCE - payment.amount:
            payment.status, payment.failure_code = "failed", "balance_limit_exceeded"
        elif payment.manual:
            sender.held += payment.amount
            payment.status = "authorized"
        else:
            sender.balance -= payment.amount
            receiver.balance += payment.amount
            payment.status = "completed"

    def _attempt(
        self,
        expected: type[P2PError] | None,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T | None:
        """``fn`` in a write transaction: its result, or ``None`` once it raised ``expected``."""
        if expected is None:
            return self.db.run(fn, *args, **kwargs)
        with pytest.raises(expected):
            self.db.run(fn, *args, **kwargs)
        return None


def test_the_engine_keeps_every_invariant_through_random_operations() -> None:
    factory = EngineMachine
    if fuzz_budget.SEED is not None:
        factory = seed(fuzz_budget.SEED)(factory)
    run_state_machine_as_test(
        factory,
        settings=settings(
            max_examples=fuzz_budget.examples(200),
            stateful_step_count=50,
            deadline=None,
            derandomize=fuzz_budget.SEED is None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
