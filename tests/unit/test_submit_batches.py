"""A commit's transfers are recorded by one call (``submit_transfers``): each outcome, and
what is left in the database, must be what submitting them one after the other gives."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import accounts
from shared.errors import P2PError
from shared.payments import Submitted, Transfer, TransferRequest, submit_transfer, submit_transfers
from shared.store import Database, marks
from shared.users import sign_up

_worlds = itertools.count()

BIG = 2**62
"""Two pending transfers of this much pass the limit on ``pending_out`` (2^63 - 1)."""


@dataclass(frozen=True)
class _Ask:
    """A request, with accounts named by slot: 0, 1 (USD) and 2 (EUR) are user 0's, 3
    (USD) is user 1's, 4 exists nowhere. The caller is the sender's owner, or the other
    user."""

    by_owner: bool
    sender: int
    receiver: int
    amount: int
    currency: str
    description: str | None
    key: str


_asks = st.builds(
    _Ask,
    by_owner=st.sampled_from([True, True, True, False]),
    sender=st.integers(0, 4),
    receiver=st.integers(0, 4),
    amount=st.sampled_from([1, 7, BIG]),
    currency=st.sampled_from(["USD", "USD", "EUR"]),
    description=st.sampled_from([None, "rent"]),
    key=st.sampled_from(["k1", "k2", "k3"]),
)


class _World:
    """Two users and four accounts of their own, new for each run."""

    def __init__(self, db: Database) -> None:
        n = next(_worlds)
        self.db = db
        self.users = [db.run(sign_up, f"U{n}-{u}", f"u{n}-{u}@example.com")[0].id for u in (0, 1)]
        opened = [
            db.run(accounts.open_account, self.users[0], "USD"),
            db.run(accounts.open_account, self.users[0], "USD"),
            db.run(accounts.open_account, self.users[0], "EUR"),
            db.run(accounts.open_account, self.users[1], "USD"),
        ]
        self.owners = [0, 0, 0, 1, 0]
        self.accounts = [account.id for account in opened] + [f"acc_missing{n:027d}"]

    def request(self, ask: _Ask) -> TransferRequest:
        transfer = Transfer(
            self.accounts[ask.sender],
            self.accounts[ask.receiver],
            ask.amount,
            ask.currency,
            ask.description,
        )
        owner = self.owners[ask.sender]
        return TransferRequest(self.users[owner if ask.by_owner else 1 - owner], transfer, ask.key)

    def plain(self, outcomes: list[Submitted]) -> list[object]:
        """The outcomes with this world's ids replaced by slots: a refusal by its class
        and detail, a payment by the request that made it."""
        made: dict[str, int] = {}
        plain: list[object] = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, P2PError):
                plain.append((type(outcome).__name__, self._slots(outcome.detail)))
                continue
            payment, replayed = outcome
            made.setdefault(payment.id, index)
            plain.append(
                (
                    made[payment.id],
                    replayed,
                    self.accounts.index(payment.from_account_id),
                    self.accounts.index(payment.to_account_id),
                    payment.amount,
                    payment.currency,
                    payment.description,
                    payment.status,
                )
            )
        return plain

    def state(self) -> tuple[list[int], list[tuple[int, int, int, str]]]:
        """Each account's ``pending_out``, and the payments, in the order they were
        accepted (``seq``): the order the worker settles them in."""
        conn = self.db.connection()
        pending_out = [
            conn.execute("SELECT pending_out FROM accounts WHERE id = ?", (account,)).fetchone()[0]
            for account in self.accounts[:4]
        ]
        rows = conn.execute(
            "SELECT from_account_id, to_account_id, amount, idempotency_key FROM payments"
            f" WHERE from_user_id IN ({marks(2)}) ORDER BY seq",
            self.users,
        ).fetchall()
        payments = [
            (self.accounts.index(row[0]), self.accounts.index(row[1]), row[2], row[3])
            for row in rows
        ]
        return pending_out, payments

    def _slots(self, text: str) -> str:
        for slot, account in enumerate(self.accounts):
            text = text.replace(account, f"<{slot}>")
        return text


def _one_by_one(world: _World, asks: list[_Ask]) -> list[Submitted]:
    outcomes: list[Submitted] = []
    for ask in asks:
        request = world.request(ask)
        try:
            outcomes.append(
                world.db.run(
                    submit_transfer, request.user_id, request.transfer, request.idempotency_key
                )
            )
        except P2PError as refusal:
            outcomes.append(refusal)
    return outcomes


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(asks=st.lists(_asks, min_size=1, max_size=12))
def test_a_batch_records_what_one_by_one_would(db: Database, asks: list[_Ask]) -> None:
    alone, together = _World(db), _World(db)

    expected = alone.plain(_one_by_one(alone, asks))
    got = together.plain(db.run(submit_transfers, [together.request(ask) for ask in asks]))

    assert got == expected
    assert together.state() == alone.state()


def test_a_batch_that_refuses_everything_writes_nothing(db: Database) -> None:
    world = _World(db)
    asks = [
        _Ask(True, 0, 0, 1, "USD", None, "same-account"),
        _Ask(False, 0, 3, 1, "USD", None, "not-the-callers"),
        _Ask(True, 0, 4, 1, "USD", None, "no-receiver"),
        _Ask(True, 2, 3, 1, "EUR", None, "currency"),
    ]

    outcomes = db.run(submit_transfers, [world.request(ask) for ask in asks])

    assert [type(outcome).__name__ for outcome in outcomes] == [
        "SameAccount",
        "NotFound",
        "NotFound",
        "CurrencyMismatch",
    ]
    assert world.state() == ([0, 0, 0, 0], [])


def test_a_batch_is_accepted_in_its_order(db: Database) -> None:
    world = _World(db)
    asks = [_Ask(True, n % 2, 3, n + 1, "USD", None, f"k{n}") for n in range(6)]

    outcomes = db.run(submit_transfers, [world.request(ask) for ask in asks])

    assert not any(isinstance(outcome, P2PError) for outcome in outcomes)
    assert world.state() == (
        [1 + 3 + 5, 2 + 4 + 6, 0, 0],
        [(n % 2, 3, n + 1, f"k{n}") for n in range(6)],
    )


def test_a_key_used_twice_in_one_batch_is_a_replay_or_a_reuse(db: Database) -> None:
    world = _World(db)
    first = _Ask(True, 0, 3, 5, "USD", None, "k")
    asks = [first, first, _Ask(True, 0, 3, 6, "USD", None, "k")]

    made, replayed, reused = db.run(submit_transfers, [world.request(ask) for ask in asks])

    assert not isinstance(made, P2PError)
    assert not isinstance(replayed, P2PError)
    assert made == (replayed[0], False)
    assert replayed[1] is True
    assert type(reused).__name__ == "IdempotencyKeyReused"
    assert world.state() == ([5, 0, 0, 0], [(0, 3, 5, "k")])


def test_the_pending_limit_counts_the_batch_before_it(db: Database) -> None:
    world = _World(db)
    asks = [_Ask(True, 0, 3, BIG, "USD", None, "a"), _Ask(True, 0, 3, BIG, "USD", None, "b")]

    outcomes = db.run(submit_transfers, [world.request(ask) for ask in asks])

    assert not isinstance(outcomes[0], P2PError)
    assert type(outcomes[1]).__name__ == "BalanceLimitExceeded"
    assert world.state() == ([BIG, 0, 0, 0], [(0, 3, BIG, "a")])
