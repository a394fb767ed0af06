"""G9 through real processes: refunds submitted many at once, some for more than is left,
while the worker is SIGKILLed and Redis forgets every message; then every refund is
settled once and no payment's refunds pass what it moved."""

from __future__ import annotations

import asyncio
import random
import signal
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import RedisServer
from tests.e2e.harness import (
    ApiClient,
    Customer,
    Json,
    Stack,
    TransferRequest,
    submit_concurrently,
    transfer,
)
from tests.e2e.state import AuditedDatabase

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

ORIGINALS = 40
REFUNDS_EACH = 3
DRAINS = 20


@dataclass(frozen=True)
class RefundRequest:
    """A refund of ``payment_id`` by ``owner`` (its receiver's owner); ``amount`` ``None``
    asks for all that is left."""

    owner: Customer
    payment_id: str
    amount: int | None
    key: str

    def body(self) -> Json:
        return {} if self.amount is None else {"amount": self.amount}

    def path(self) -> str:
        return f"/payments/{self.payment_id}/refunds"

    def headers(self) -> dict[str, str]:
        return {**self.owner.headers, "Idempotency-Key": self.key}


Request = RefundRequest | TransferRequest


def _path(request: Request) -> str:
    return request.path() if isinstance(request, RefundRequest) else "/payments/transfer"


def _submit_all(
    base_url: str, requests: list[Request], on_answer: Callable[[int], None]
) -> list[httpx.Response]:
    """Every request, 16 at a time; ``on_answer(n)`` after the n-th answer."""

    async def submit_all() -> list[httpx.Response]:
        gate = asyncio.Semaphore(16)
        answered = 0
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

            async def submit(request: Request) -> httpx.Response:
                nonlocal answered
                async with gate:
                    response = await client.post(
                        _path(request), json=request.body(), headers=request.headers()
                    )
                answered += 1
                on_answer(answered)
                return response

            return await asyncio.gather(*(submit(request) for request in requests))

    return asyncio.run(submit_all())


def _refunds_by_original(db: AuditedDatabase) -> dict[str, list[tuple[str, int]]]:
    """The tests' own reading: each refunded payment's refunds, (status, amount)."""
    found: dict[str, list[tuple[str, int]]] = {}
    with db.connect() as conn:
        for refund_of, status, amount in conn.execute(
            "SELECT refund_of, status, amount FROM payments WHERE refund_of IS NOT NULL"
        ).fetchall():
            found.setdefault(refund_of, []).append((status, amount))
    return found


def test_refunds_through_a_killed_worker_and_a_flushed_redis_never_pass_what_was_moved(
    stack: Stack, redis_server: RedisServer
) -> None:
    api = stack.start_api()
    worker = stack.start_worker()
    db = stack.database()
    rng = random.Random(13)
    with ApiClient(api.url) as client:
        senders = client.rich_customers(3)
        receivers = [client.customer() for _ in range(3)]
        originals = submit_concurrently(
            api.url,
            [
                transfer(rng.choice(senders), receiver, rng.randint(100, 1_000))
                for receiver in rng.choices(receivers, k=ORIGINALS)
            ],
        )
        owner_of = {account.account_id: account for account in receivers}
        paid = [
            client.wait_final(owner_of[answer.json()["to_account_id"]], answer.json()["id"])
            for answer in originals
        ]
    assert {payment["status"] for payment in paid} == {"completed"}

    # Each payment refunded three times, for amounts that together often pass what it
    # moved; the receivers also spend, so that some refunds cannot be paid.
    requests: list[Request] = []
    for payment in paid:
        owner = owner_of[payment["to_account_id"]]
        for _ in range(REFUNDS_EACH):
            amount = rng.choice([None, rng.randint(1, payment["amount"] * 2 // 3)])
            requests.append(RefundRequest(owner, payment["id"], amount, f"e2e-{uuid.uuid4()}"))
    for _ in range(DRAINS):
        requests.append(transfer(rng.choice(receivers), rng.choice(senders), 200))
    rng.shuffle(requests)

    pending_at_kill: list[int] = []

    def kill_the_worker_and_flush_redis(answered: int) -> None:
        # A third in, at the first answer with something still pending to be lost (a
        # worker as fast as the API leaves nothing at times).
        if pending_at_kill or answered < len(requests) // 3:
            return
        if db.pending():
            worker.popen.send_signal(signal.SIGKILL)
            pending_at_kill.append(db.pending())
            redis_server.flushall()

    answers = _submit_all(api.url, requests, kill_the_worker_and_flush_redis)
    assert not worker.alive, "the worker was never caught with payments pending"
    assert pending_at_kill[0] > 0, "the worker had settled everything: nothing was tested"

    refused = Counter(answer.json()["code"] for answer in answers if answer.status_code != 202)
    assert set(refused) <= {"refund_exceeds_payment"}, refused
    assert refused, "no refund asked for more than was left: nothing was tested"

    stack.start_worker()
    accepted = [
        (request, answer.json())
        for request, answer in zip(requests, answers, strict=True)
        if answer.status_code == 202 and isinstance(request, RefundRequest)
    ]
    with ApiClient(api.url) as client, httpx.Client(base_url=api.url, timeout=10) as http:
        settled = client.wait_all_final([(request.owner, made["id"]) for request, made in accepted])
        statuses = Counter((payment["status"], payment["failure_code"]) for payment in settled)
        assert set(statuses) <= {("completed", None), ("failed", "insufficient_funds")}
        assert statuses[("completed", None)] > 0

        # A refund's replay answers the same refund, whatever happened in between.
        for request, made in accepted[:5]:
            again = http.post(request.path(), json=request.body(), headers=request.headers())
            assert again.status_code == 202, again.text
            assert again.headers["Idempotent-Replayed"] == "true"
            assert again.json()["id"] == made["id"]

        # G9, read directly: refunds not failed within what was moved, refunded_amount
        # the sum of the completed ones; and as the API shows it.
        refunds = _refunds_by_original(db)
        for payment in paid:
            mine = refunds.get(payment["id"], [])
            assert sum(a for s, a in mine if s != "failed") <= payment["amount"], payment["id"]
            now = client.payment(owner_of[payment["to_account_id"]], payment["id"])
            assert now["refunded_amount"] == sum(a for s, a in mine if s == "completed")
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT id, amount, refund_reserved, refunded_amount FROM payments"
            " WHERE refund_of IS NULL"
        ).fetchall()
    for payment_id, amount, reserved, refunded in rows:
        mine = refunds.get(payment_id, [])
        assert reserved == sum(a for s, a in mine if s != "failed") <= amount
        assert refunded == sum(a for s, a in mine if s == "completed")
    stack.assert_ledger_holds()
