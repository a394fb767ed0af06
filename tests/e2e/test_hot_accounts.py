"""Several API processes and a worker on PostgreSQL, all on the same three accounts: the
API's writes share commits, and no two transactions ever wait for each other."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import pytest

from tests.e2e.harness import (
    ApiClient,
    Customer,
    Json,
    Stack,
    TransferRequest,
    pids_that_answered,
    poll,
    started_children,
    transfer,
)
from tests.e2e.state import AuditedDatabase

pytestmark = pytest.mark.postgresql_only  # row locks, deadlocks and their count are its own

PROCESSES = 3
CLIENTS = 32
FUNDS = 10**9
HELD_OFF = 200
"""Transfers submitted before the worker starts: all still pending when counted."""
ALONGSIDE = 300
"""Transfers submitted while the worker settles, with ``DEPOSITS`` among them."""
DEPOSITS = 100
EXIT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class DepositRequest:
    customer: Customer
    amount: int
    key: str

    @property
    def path(self) -> str:
        return f"/accounts/{self.customer.account_id}/deposits"

    def body(self) -> Json:
        return {"amount": self.amount}

    def headers(self) -> dict[str, str]:
        return {**self.customer.headers, "Idempotency-Key": self.key}


Request = TransferRequest | DepositRequest


def test_api_processes_hammering_three_accounts_share_commits_and_never_deadlock(
    stack: Stack,
) -> None:
    db = stack.database()
    api = stack.start_api(processes=PROCESSES)
    children = started_children(api.process, PROCESSES)
    with ApiClient(api.url) as client:
        customers = [client.customer(deposit=FUNDS) for _ in range(3)]
    rng = random.Random(15)

    # The worker held off: every transfer accepted is pending, and counted in its
    # sender's pending_out exactly once however many processes changed it at once.
    held_off = _transfers_both_ways(customers, HELD_OFF, rng)
    assert _statuses(_hammer(api.url, held_off)) == Counter({202: HELD_OFF})
    assert db.pending() == HELD_OFF
    assert _pending_out(db, customers) == _sent_by(held_off)

    # Then the worker settles while transfers and deposits to the same accounts go on.
    worker = stack.start_worker(wait_started=True)
    alongside: list[Request] = [*_transfers_both_ways(customers, ALONGSIDE, rng)]
    for _ in range(DEPOSITS):
        alongside.insert(
            rng.randrange(len(alongside)),
            DepositRequest(rng.choice(customers), rng.randint(1, 1_000), f"e2e-{uuid.uuid4()}"),
        )
    assert _statuses(_hammer(api.url, alongside)) == Counter({202: ALONGSIDE, 201: DEPOSITS})
    poll(lambda: db.pending() == 0 or None, timeout=60, what="every payment to settle")

    transfers = [*held_off, *(r for r in alongside if isinstance(r, TransferRequest))]
    assert db.status_counts() == Counter({"completed": len(transfers)})
    assert _balances(db, customers) == _expected_balances(customers, alongside, transfers)
    assert _pending_out(db, customers) == {}
    stack.assert_ledger_holds()
    assert pids_that_answered(api.process, "/payments/transfer") == children
    # Each payment's payment.created events were written by the transaction that
    # accepted it: fewer transactions than payments, so commits were shared.
    accepting = db.scalar(
        "SELECT count(DISTINCT xmin::text) FROM events WHERE type = 'payment.created'"
    )
    assert accepting < len(transfers) * 3 / 4, f"{accepting} transactions for {len(transfers)}"

    assert api.process.terminate(timeout=EXIT_TIMEOUT_S) == 0
    assert worker.terminate(timeout=EXIT_TIMEOUT_S) == 0
    # A deadlock PostgreSQL broke would have been retried out of sight: its count, which
    # a session reports at the latest when it ends, is the only witness.
    poll(lambda: db.other_sessions() == 0 or None, timeout=10, what="the sessions to end")
    assert db.deadlocks() == 0


def _transfers_both_ways(
    customers: list[Customer], count: int, rng: random.Random
) -> list[TransferRequest]:
    requests = []
    for _ in range(count):
        sender, receiver = rng.sample(customers, 2)
        requests.append(transfer(sender, receiver, rng.randint(1, 1_000)))
    return requests


def _hammer(base_url: str, requests: Sequence[Request]) -> list[httpx.Response]:
    """``CLIENTS`` at a time, each request on a connection of its own, so that the
    kernel hands them to every API process (keep-alive ones may all stay on one)."""

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        request.path
                        if isinstance(request, DepositRequest)
                        else "/payments/transfer",
                        json=request.body(),
                        headers=request.headers(),
                    )
                    for request in requests
                )
            )

    return asyncio.run(send_all())


def _statuses(answers: list[httpx.Response]) -> Counter[int]:
    return Counter(answer.status_code for answer in answers)


def _sent_by(transfers: list[TransferRequest]) -> dict[str, int]:
    sent: Counter[str] = Counter()
    for request in transfers:
        sent[request.sender.account_id] += request.amount
    return dict(sent)


def _pending_out(db: AuditedDatabase, customers: list[Customer]) -> dict[str, int]:
    """Each account's pending_out that is not 0; it must also be the sum of its pending
    payments, read in the same snapshot."""
    ids = [customer.account_id for customer in customers]
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT a.id, a.pending_out, coalesce(sum(p.amount), 0) FROM accounts AS a"
            " LEFT JOIN payments AS p ON p.from_account_id = a.id AND p.status = 'pending'"
            " WHERE a.id IN (?, ?, ?) GROUP BY a.id, a.pending_out",
            ids,
        ).fetchall()
    assert [(row[0], row[1]) for row in rows] == [(row[0], row[2]) for row in rows]
    return {account_id: pending_out for account_id, pending_out, _ in rows if pending_out}


def _balances(db: AuditedDatabase, customers: list[Customer]) -> dict[str, int]:
    return {
        customer.account_id: db.scalar(
            "SELECT balance FROM accounts WHERE id = ?", customer.account_id
        )
        for customer in customers
    }


def _expected_balances(
    customers: list[Customer], alongside: list[Request], transfers: list[TransferRequest]
) -> dict[str, int]:
    balances = {customer.account_id: FUNDS for customer in customers}
    for request in alongside:
        if isinstance(request, DepositRequest):
            balances[request.customer.account_id] += request.amount
    for sent in transfers:
        balances[sent.sender.account_id] -= sent.amount
        balances[sent.to_account_id] += sent.amount
    return balances
