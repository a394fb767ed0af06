"""Captures, voids, refunds and batches through the client against the real API
(in-process, both engines, a worker settling what it accepts): the sync client over HTTP
served by uvicorn, the async one through httpx's ASGI transport."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

from p2p_client import (
    Account,
    Client,
    Conflict,
    InvalidRequest,
    NotFound,
    Payment,
    Transfer,
)
from tests.client.support import async_signed_up, signed_up

SETTLE_S = 10.0


def _pair(client: Client, funds: int) -> tuple[Account, Account]:
    sender = client.create_account("EUR")
    receiver = client.create_account("EUR")
    client.deposit(sender.id, funds)
    return sender, receiver


def _authorized(client: Client, sender: Account, receiver: Account, amount: int) -> Payment:
    submitted = client.transfer(sender.id, receiver.id, amount, "EUR", capture="manual")
    payment = client.wait(submitted.id, timeout=SETTLE_S)
    assert payment.status == "authorized"
    return payment


def _completed(client: Client, sender: Account, receiver: Account, amount: int) -> Payment:
    payment = client.wait(client.transfer(sender.id, receiver.id, amount, "EUR").id, SETTLE_S)
    assert payment.status == "completed"
    return payment


def test_a_capture_of_part_moves_it_a_replay_answers_it_again_and_a_second_is_a_conflict(
    base_url: str,
) -> None:
    with signed_up(base_url) as client:
        sender, receiver = _pair(client, 10_000)
        authorized = _authorized(client, sender, receiver, 4_000)
        held = client.get_account(sender.id)

        captured = client.capture(authorized.id, amount=2_500, idempotency_key="capture-1")
        replayed = client.capture(authorized.id, amount=2_500, idempotency_key="capture-1")
        with pytest.raises(Conflict) as again:
            client.capture(authorized.id)
        after = client.get_account(sender.id)

    assert (held.held, held.available) == (4_000, 6_000)
    assert authorized.capture == "manual"
    assert authorized.expires_at is not None
    assert (captured.id, captured.status, captured.captured_amount) == (
        authorized.id,
        "completed",
        2_500,
    )
    assert replayed == captured
    assert (again.value.status, again.value.code) == (409, "payment_not_authorized")
    assert (after.balance, after.held, after.available) == (7_500, 0, 7_500)


def test_a_capture_above_the_authorization_is_refused_and_a_void_releases_the_hold(
    base_url: str,
) -> None:
    with signed_up(base_url) as client:
        sender, receiver = _pair(client, 1_000)
        authorized = _authorized(client, sender, receiver, 1_000)

        with pytest.raises(InvalidRequest) as too_much:
            client.capture(authorized.id, amount=1_001)
        voided = client.void(authorized.id, idempotency_key="void-1")
        replayed = client.void(authorized.id, idempotency_key="void-1")
        with pytest.raises(Conflict) as again:
            client.void(authorized.id)
        with pytest.raises(NotFound) as missing:
            client.void("pay_0000000000000000000000000000000")
        after = client.get_account(sender.id)

    assert (too_much.value.status, too_much.value.code) == (422, "capture_exceeds_authorization")
    assert (voided.status, voided.captured_amount) == ("voided", None)
    assert replayed == voided
    assert again.value.code == "payment_not_authorized"
    assert missing.value.code == "not_found"
    assert (after.balance, after.held) == (1_000, 0)


def test_a_refund_in_part_then_of_the_rest_gives_the_whole_payment_back(base_url: str) -> None:
    with signed_up(base_url) as client:
        sender, receiver = _pair(client, 3_000)
        paid = _completed(client, sender, receiver, 3_000)

        first = client.refund(paid.id, amount=1_000, description="damaged", idempotency_key="r-1")
        replayed = client.refund(
            paid.id, amount=1_000, description="damaged", idempotency_key="r-1"
        )
        with pytest.raises(InvalidRequest) as too_much:
            client.refund(paid.id, amount=2_001)
        rest = client.refund(paid.id)
        settled = [client.wait(refund.id, SETTLE_S) for refund in (first, rest)]
        with pytest.raises(InvalidRequest) as nothing_left:
            client.refund(paid.id, amount=1)
        with pytest.raises(Conflict) as of_a_refund:
            client.refund(first.id)
        original = client.get_payment(paid.id)
        balances = [client.get_account(a.id).balance for a in (sender, receiver)]

    assert (first.status, first.refund_of, first.description) == ("pending", paid.id, "damaged")
    assert (first.from_account_id, first.to_account_id) == (receiver.id, sender.id)
    assert replayed.id == first.id
    assert (too_much.value.status, too_much.value.code) == (422, "refund_exceeds_payment")
    assert rest.amount == 2_000
    assert [(p.status, p.amount) for p in settled] == [("completed", 1_000), ("completed", 2_000)]
    assert nothing_left.value.code == "refund_exceeds_payment"
    assert (of_a_refund.value.status, of_a_refund.value.code) == (409, "payment_not_refundable")
    assert original.refunded_amount == 3_000
    assert balances == [3_000, 0]


def test_a_batch_is_read_back_settled_and_its_payments_paged_in_the_batchs_order(
    base_url: str,
) -> None:
    with signed_up(base_url) as client:
        sender, receiver = _pair(client, 400)
        # The fifth finds the sender's 400 spent by the four before it.
        items = [
            Transfer(sender.id, receiver.id, 100, "EUR", description=f"#{n}") for n in range(5)
        ]

        submitted = client.submit_batch(items, idempotency_key="batch-1")
        replayed = client.submit_batch(items, idempotency_key="batch-1")
        settled = [client.wait(payment.id, SETTLE_S) for payment in submitted.payments]
        batch = client.get_batch(submitted.id)
        pages = [client.list_batch_payments(submitted.id, limit=2)]
        while pages[-1].next_cursor is not None:
            pages.append(
                client.list_batch_payments(submitted.id, limit=2, cursor=pages[-1].next_cursor)
            )
        with pytest.raises(NotFound) as missing:
            client.get_batch("bat_0000000000000000000000000000000")

    assert submitted.id.startswith("bat_")
    assert (submitted.atomic, submitted.status) == (False, "pending")
    assert [p.description for p in submitted.payments] == [f"#{n}" for n in range(5)]
    assert {p.batch_id for p in submitted.payments} == {submitted.id}
    # A replay answers the batch as it stands: its payments may be settled by then.
    assert replayed.id == submitted.id
    assert [p.id for p in replayed.payments] == [p.id for p in submitted.payments]
    assert [p.status for p in settled] == ["completed"] * 4 + ["failed"]
    assert (batch.status, batch.settled, batch.settled_at is not None) == ("settled", True, True)
    assert (batch.counts.completed, batch.counts.failed, batch.counts.pending) == (4, 1, 0)
    assert [len(page.data) for page in pages] == [2, 2, 1]
    assert [page.has_more for page in pages] == [True, True, False]
    paged = [p.id for page in pages for p in page.data]
    assert paged == [p.id for p in submitted.payments]
    assert missing.value.code == "not_found"


def test_an_atomic_batch_fails_whole_and_a_refused_item_refuses_the_batch_naming_it(
    base_url: str,
) -> None:
    with signed_up(base_url) as client:
        sender, receiver = _pair(client, 150)
        dollars = client.create_account("USD")
        fits, too_much = (Transfer(sender.id, receiver.id, amount, "EUR") for amount in (100, 100))

        atomic = client.submit_batch([fits, too_much], atomic=True)
        settled = [client.wait(payment.id, SETTLE_S) for payment in atomic.payments]
        with pytest.raises(InvalidRequest) as refused:
            client.submit_batch([fits, Transfer(sender.id, dollars.id, 1, "EUR")])
        with pytest.raises(InvalidRequest) as invalid:
            client.submit_batch([fits, Transfer(sender.id, receiver.id, 0, "EUR")])
        listed = client.list_payments(account_id=sender.id)

    assert atomic.atomic
    assert [(p.status, p.failure_code) for p in settled] == [
        ("failed", "linked_payment_failed"),
        ("failed", "insufficient_funds"),
    ]
    assert (refused.value.status, refused.value.code) == (422, "currency_mismatch")
    assert [error.loc for error in refused.value.errors] == [("body", "transfers", 1)]
    assert invalid.value.code == "validation_error"
    assert [error.loc for error in invalid.value.errors] == [("body", "transfers", 1, "amount")]
    assert {p.id for p in listed.data} == {p.id for p in atomic.payments}


def test_the_async_client_captures_voids_refunds_and_submits_batches(api: FastAPI) -> None:
    async def scenario() -> None:
        async with async_signed_up(api) as client:
            sender = await client.create_account("EUR")
            receiver = await client.create_account("EUR")
            await client.deposit(sender.id, 1_000)
            manual = [
                await client.transfer(sender.id, receiver.id, 200, "EUR", capture="manual")
                for _ in range(2)
            ]
            authorized = [await client.wait(p.id, timeout=SETTLE_S) for p in manual]

            captured = await client.capture(authorized[0].id, idempotency_key="capture-1")
            replayed = await client.capture(authorized[0].id, idempotency_key="capture-1")
            voided = await client.void(authorized[1].id)
            with pytest.raises(Conflict) as again:
                await client.void(authorized[1].id)
            refund = await client.refund(captured.id, amount=50, idempotency_key="refund-1")
            refund_again = await client.refund(captured.id, amount=50, idempotency_key="refund-1")
            with pytest.raises(InvalidRequest) as too_much:
                await client.refund(captured.id, amount=151)
            refunded = await client.wait(refund.id, timeout=SETTLE_S)
            items = [Transfer(sender.id, receiver.id, 10, "EUR") for _ in range(3)]
            batch = await client.submit_batch(items, idempotency_key="batch-1")
            batch_again = await client.submit_batch(items, idempotency_key="batch-1")
            for payment in batch.payments:
                await client.wait(payment.id, timeout=SETTLE_S)
            read = await client.get_batch(batch.id)
            first = await client.list_batch_payments(batch.id, limit=2)
            assert first.next_cursor is not None
            second = await client.list_batch_payments(batch.id, cursor=first.next_cursor)

        assert [a.status for a in authorized] == ["authorized", "authorized"]
        assert (captured.status, captured.captured_amount) == ("completed", 200)
        assert replayed == captured
        assert voided.status == "voided"
        assert again.value.code == "payment_not_authorized"
        assert refund_again.id == refund.id
        assert too_much.value.code == "refund_exceeds_payment"
        assert (refunded.status, refunded.refund_of) == ("completed", captured.id)
        assert batch_again.id == batch.id
        assert (read.status, read.counts.completed) == ("settled", 3)
        assert [p.id for p in first.data + second.data] == [p.id for p in batch.payments]
        assert (first.has_more, second.has_more) == (True, False)

    asyncio.run(scenario())
