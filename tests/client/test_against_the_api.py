"""The client against the real API (in-process, both engines): the sync client over HTTP
served by uvicorn, the async one through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
from typing import Literal

import httpx
import pytest
from fastapi import FastAPI

from p2p_client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from tests.client.support import email, running, signed_up


def test_a_transfer_submitted_then_waited_for_completes_and_shows_in_the_ledger(
    base_url: str,
) -> None:
    with signed_up(base_url) as client:
        sender = client.create_account("EUR")
        receiver = client.create_account("EUR")
        deposit = client.deposit(sender.id, 10_000, description="salary")

        submitted = client.transfer(sender.id, receiver.id, 2_500, "EUR", description="rent")
        settled = client.wait(submitted.id, timeout=10)

        assert deposit.balance_after == 10_000
        assert submitted.status == "pending"
        assert (settled.id, settled.status, settled.failure_code) == (
            submitted.id,
            "completed",
            None,
        )
        assert settled.completed_at is not None
        (entry,) = client.ledger(receiver.id).data
        assert (entry.direction, entry.amount, entry.payment_id) == ("credit", 2_500, settled.id)
        assert client.get_account(sender.id).balance == 7_500
        page = client.list_payments(account_id=sender.id, status="completed")
        assert [payment.id for payment in page.data] == [settled.id]
        assert not page.has_more


def test_a_transfer_the_worker_refuses_is_waited_for_as_failed_with_its_code(
    base_url: str,
) -> None:
    with signed_up(base_url) as client:
        sender = client.create_account("EUR")
        receiver = client.create_account("EUR")

        submitted = client.transfer(sender.id, receiver.id, 100, "EUR")
        settled = client.wait(submitted.id, timeout=10)

        assert (settled.status, settled.failure_code) == ("failed", "insufficient_funds")


def test_the_same_idempotency_key_answers_the_same_payment(base_url: str) -> None:
    with signed_up(base_url) as client:
        sender = client.create_account("EUR")
        receiver = client.create_account("EUR")
        client.deposit(sender.id, 1_000, idempotency_key="deposit-1")
        again = client.deposit(sender.id, 1_000, idempotency_key="deposit-1")

        first = client.transfer(sender.id, receiver.id, 300, "EUR", idempotency_key="rent-1")
        second = client.transfer(sender.id, receiver.id, 300, "EUR", idempotency_key="rent-1")
        other = client.transfer(sender.id, receiver.id, 300, "EUR")

        assert second.id == first.id
        assert other.id != first.id
        assert again.balance_after == 1_000


def test_problems_are_raised_as_exceptions_carrying_their_code(base_url: str) -> None:
    with signed_up(base_url) as client:
        account = client.create_account("EUR")
        other = client.create_account("USD")

        with pytest.raises(NotFound) as not_found:
            client.get_payment("pay_0000000000000000000000000000000")
        with pytest.raises(InvalidRequest) as same:
            client.transfer(account.id, account.id, 1, "EUR")
        with pytest.raises(InvalidRequest) as mismatch:
            client.transfer(account.id, other.id, 1, "EUR")
        with pytest.raises(InvalidRequest) as invalid:
            client.transfer(account.id, other.id, 0, "EUR")
        client.set_account_status(account.id, "frozen")
        with pytest.raises(Conflict) as frozen:
            client.deposit(account.id, 1)

    assert (not_found.value.status, not_found.value.code) == (404, "not_found")
    assert (same.value.status, same.value.code) == (422, "same_account")
    assert mismatch.value.code == "currency_mismatch"
    assert invalid.value.code == "validation_error"
    assert [error.loc for error in invalid.value.errors] == [("body", "amount")]
    assert (frozen.value.status, frozen.value.code) == (409, "account_frozen")
    assert frozen.value.detail
    assert frozen.value.request_id


def test_an_unknown_api_key_raises_unauthorized(base_url: str) -> None:
    with Client(base_url, "p2p_" + "0" * 64) as client, pytest.raises(Unauthorized) as refused:
        client.list_accounts()

    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_pages_of_accounts_follow_their_cursor(base_url: str) -> None:
    with signed_up(base_url) as client:
        opened = [client.create_account("EUR").id for _ in range(3)]

        first = client.list_accounts(limit=2)
        assert first.next_cursor is not None
        second = client.list_accounts(limit=2, cursor=first.next_cursor)

    assert first.has_more
    assert not second.has_more
    assert [a.id for a in first.data + second.data] == opened[::-1]


def test_api_keys_are_created_listed_and_revoked(base_url: str) -> None:
    with signed_up(base_url) as client:
        new = client.create_api_key()
        client.revoke_api_key(new.key.id)

        keys = {key.id: key for key in client.list_api_keys().data}

    assert new.api_key.startswith("p2p_")
    assert keys[new.key.id].revoked_at is not None


@pytest.mark.parametrize("sign_target", ["target-uri", "path"])
def test_a_signing_keys_requests_signed_by_the_client_are_accepted(
    base_url: str, sign_target: Literal["target-uri", "path"]
) -> None:
    with signed_up(base_url) as client:
        key = client.create_api_key(signing=True)
    assert key.key.signing == "required"
    assert key.signing_secret is not None
    with Client(
        base_url, key.api_key, signing_secret=key.signing_secret, sign_target=sign_target
    ) as signing:
        sender = signing.create_account("EUR")
        receiver = signing.create_account("EUR")
        signing.deposit(sender.id, 100)

        payment = signing.wait(signing.transfer(sender.id, receiver.id, 100, "EUR").id, 10)
        listed = signing.list_payments(account_id=sender.id, status="completed")

    assert payment.status == "completed"
    assert [p.id for p in listed.data] == [payment.id]


def test_a_signing_key_without_its_secret_or_with_another_is_refused(base_url: str) -> None:
    with signed_up(base_url) as client:
        key = client.create_api_key(signing=True)
    for secret in (None, "sks_" + "0" * 64):
        with (
            Client(base_url, key.api_key, signing_secret=secret) as refused,
            pytest.raises(Unauthorized) as error,
        ):
            refused.create_account("EUR")
        assert error.value.code == "signature_invalid"
    with Client(base_url, key.api_key, signing_secret=key.signing_secret) as signing:
        assert signing.list_payments().data == []


def test_the_async_client_signs_what_a_signing_key_sends(api: FastAPI) -> None:
    async def scenario() -> str:
        transport = httpx.ASGITransport(app=api)
        async with running(api):
            async with AsyncClient("http://testserver", transport=transport) as anonymous:
                new = await anonymous.create_user("Cy", email("cy"))
            async with AsyncClient("http://testserver", new.api_key, transport=transport) as plain:
                key = await plain.create_api_key(signing=True)
            async with AsyncClient(
                "http://testserver",
                key.api_key,
                signing_secret=key.signing_secret,
                transport=transport,
            ) as client:
                sender = await client.create_account("EUR")
                receiver = await client.create_account("EUR")
                await client.deposit(sender.id, 500)
                submitted = await client.transfer(sender.id, receiver.id, 500, "EUR")
                return (await client.wait(submitted.id, timeout=10)).status

    assert asyncio.run(scenario()) == "completed"


def test_the_async_client_submits_waits_and_reads_the_same_api(api: FastAPI) -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=api)
        async with running(api):
            async with AsyncClient("http://testserver", transport=transport) as anonymous:
                new = await anonymous.create_user("Bob", email("bob"))
            async with AsyncClient("http://testserver", new.api_key, transport=transport) as client:
                sender = await client.create_account("EUR")
                receiver = await client.create_account("EUR")
                await client.deposit(sender.id, 5_000)

                submitted = await client.transfer(sender.id, receiver.id, 1_200, "EUR")
                settled = await client.wait(submitted.id, timeout=10)
                entries = (await client.ledger(receiver.id)).data
                with pytest.raises(NotFound) as missing:
                    await client.get_account("acc_0000000000000000000000000000000")

        assert settled.status == "completed"
        assert [(e.direction, e.amount) for e in entries] == [("credit", 1_200)]
        assert missing.value.code == "not_found"

    asyncio.run(scenario())
