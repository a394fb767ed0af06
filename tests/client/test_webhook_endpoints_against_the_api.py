"""Webhook endpoints managed through the client against the real API (in-process, both
engines): deliveries go to a local receiver, which P2P_WEBHOOK_ALLOW_HTTP and
P2P_WEBHOOK_ALLOW_PRIVATE let the worker reach, and only when a test hands them out
(``runtime.deliver_due``), never behind its back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from p2p_client import Client, Conflict, InvalidRequest, NotFound, verify_webhook
from shared.settings import Settings
from tests.api.support import NO_SWEEP_S, make_settings
from tests.client.support import async_signed_up, signed_up
from tests.webhook_receiver import Receiver, receiving
from worker.runtime import WorkerRuntime

MAX_ENDPOINTS = 3
DEPOSITS = ["deposit.created"]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(
        tmp_path,
        database_url=database_url,
        webhook_allow_http=True,
        webhook_allow_private=True,
        webhook_sweep_interval_s=NO_SWEEP_S,
        webhook_timeout_s=2.0,
        max_webhook_endpoints=MAX_ENDPOINTS,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as started:
        yield started


def _deposits(client: Client, count: int) -> list[str]:
    account = client.create_account("EUR")
    return [client.deposit(account.id, 100 + n).id for n in range(count)]


def test_an_endpoint_is_created_read_listed_updated_and_deleted(
    base_url: str, receiver: Receiver
) -> None:
    with signed_up(base_url) as client:
        created = client.create_webhook_endpoint(
            receiver.url, event_types=DEPOSITS, description="books"
        )
        other = client.create_webhook_endpoint(receiver.localhost_url)
        read = client.get_webhook_endpoint(created.endpoint.id)
        first = client.list_webhook_endpoints(limit=1)
        assert first.next_cursor is not None
        second = client.list_webhook_endpoints(limit=1, cursor=first.next_cursor)
        moved = client.update_webhook_endpoint(
            created.endpoint.id,
            url=receiver.localhost_url,
            event_types=["payment.completed", "payment.failed"],
            status="disabled",
        )
        every_type = client.update_webhook_endpoint(created.endpoint.id, all_event_types=True)
        client.delete_webhook_endpoint(other.endpoint.id)
        with pytest.raises(NotFound) as gone:
            client.get_webhook_endpoint(other.endpoint.id)
        with pytest.raises(NotFound) as deleted_again:
            client.delete_webhook_endpoint(other.endpoint.id)
        left = client.list_webhook_endpoints()

    endpoint = created.endpoint
    assert endpoint.id.startswith("whe_")
    assert created.secret.startswith("whsec_")
    assert (endpoint.url, endpoint.event_types, endpoint.description, endpoint.status) == (
        receiver.url,
        DEPOSITS,
        "books",
        "enabled",
    )
    assert other.endpoint.event_types is None
    assert read == endpoint
    assert [e.id for e in first.data + second.data] == [other.endpoint.id, endpoint.id]
    assert (first.has_more, second.has_more) == (True, False)
    assert (moved.url, moved.event_types, moved.status) == (
        receiver.localhost_url,
        ["payment.completed", "payment.failed"],
        "disabled",
    )
    assert (every_type.event_types, every_type.status, every_type.url) == (
        None,
        "disabled",
        receiver.localhost_url,
    )
    assert gone.value.code == deleted_again.value.code == "not_found"
    assert [e.id for e in left.data] == [endpoint.id]


def test_a_url_that_may_not_be_called_or_one_endpoint_too_many_is_refused(
    base_url: str, receiver: Receiver
) -> None:
    with signed_up(base_url) as client:
        with pytest.raises(InvalidRequest) as credentials:
            client.create_webhook_endpoint("https://user:secret@93.184.215.14/hooks")
        with pytest.raises(InvalidRequest) as not_http:
            client.create_webhook_endpoint("ftp://93.184.215.14/hooks")
        with pytest.raises(InvalidRequest) as unknown_type:
            client.create_webhook_endpoint(receiver.url, event_types=["payment.lost"])
        endpoints = [client.create_webhook_endpoint(receiver.url) for _ in range(MAX_ENDPOINTS)]
        with pytest.raises(Conflict) as too_many:
            client.create_webhook_endpoint(receiver.url)
        with pytest.raises(InvalidRequest) as bad_update:
            client.update_webhook_endpoint(endpoints[0].endpoint.id, url="ftp://x.example/")
        with pytest.raises(ValueError, match="not both"):
            client.update_webhook_endpoint(
                endpoints[0].endpoint.id, event_types=DEPOSITS, all_event_types=True
            )
        unchanged = client.get_webhook_endpoint(endpoints[0].endpoint.id)

    assert (credentials.value.status, credentials.value.code) == (422, "webhook_url_not_allowed")
    assert not_http.value.code == "webhook_url_not_allowed"
    assert unknown_type.value.code == "validation_error"
    assert [error.loc for error in unknown_type.value.errors] == [("body", "event_types")]
    assert (too_many.value.status, too_many.value.code) == (409, "too_many_webhook_endpoints")
    assert bad_update.value.code == "webhook_url_not_allowed"
    assert unchanged == endpoints[0].endpoint


def test_deliveries_are_paged_newest_first_and_one_retried_is_sent_again(
    base_url: str, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    with signed_up(base_url) as client:
        created = client.create_webhook_endpoint(receiver.url, event_types=DEPOSITS)
        endpoint_id = created.endpoint.id
        _deposits(client, 3)
        events = [event.id for event in client.events(types=DEPOSITS)]

        assert runtime.deliver_due() == 3
        received = receiver.wait_for(3)
        first = client.list_webhook_deliveries(endpoint_id, limit=2)
        assert first.next_cursor is not None
        second = client.list_webhook_deliveries(endpoint_id, limit=2, cursor=first.next_cursor)
        oldest = second.data[0]
        retried = client.retry_webhook_delivery(endpoint_id, oldest.id)
        assert runtime.deliver_due() == 1
        resent = receiver.wait_for(4)[3]
        after = client.list_webhook_deliveries(endpoint_id).data
        with pytest.raises(NotFound) as missing:
            client.retry_webhook_delivery(endpoint_id, "whd_0000000000000000000000000000000")

    delivered = first.data + second.data
    assert [d.event_id for d in delivered] == events[::-1]
    assert (first.has_more, second.has_more) == (True, False)
    assert {(d.endpoint_id, d.event_type, d.status, d.attempts) for d in delivered} == {
        (endpoint_id, "deposit.created", "succeeded", 1)
    }
    assert {d.last_status_code for d in delivered} == {200}
    assert sorted(verify_webhook(r.body, r.headers, created.secret).id for r in received) == sorted(
        events
    )
    assert (retried.id, retried.status, retried.attempts) == (oldest.id, "pending", 1)
    assert verify_webhook(resent.body, resent.headers, created.secret).id == oldest.event_id
    assert [(d.id, d.status, d.attempts) for d in after if d.id == oldest.id] == [
        (oldest.id, "succeeded", 2)
    ]
    assert missing.value.code == "not_found"


def test_a_rotated_secret_signs_deliveries_alongside_the_old_one(
    base_url: str, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    with signed_up(base_url) as client:
        created = client.create_webhook_endpoint(receiver.url, event_types=DEPOSITS)
        endpoint_id = created.endpoint.id

        rotated = client.rotate_webhook_secret(endpoint_id)
        _deposits(client, 1)
        assert runtime.deliver_due() == 1
        [received] = receiver.wait_for(1)
        client.update_webhook_endpoint(endpoint_id, status="disabled")
        [delivery] = client.list_webhook_deliveries(endpoint_id).data
        with pytest.raises(Conflict) as disabled:
            client.retry_webhook_delivery(endpoint_id, delivery.id)
        with pytest.raises(NotFound) as missing:
            client.rotate_webhook_secret("whe_0000000000000000000000000000000")

    assert rotated.startswith("whsec_")
    assert rotated != created.secret
    by_new = verify_webhook(received.body, received.headers, rotated)
    by_old = verify_webhook(received.body, received.headers, created.secret)
    assert by_new == by_old
    assert (disabled.value.status, disabled.value.code) == (409, "webhook_endpoint_disabled")
    assert missing.value.code == "not_found"


def test_the_async_client_manages_endpoints_and_their_deliveries(
    api: FastAPI, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    async def scenario() -> None:
        async with async_signed_up(api) as client:
            created = await client.create_webhook_endpoint(receiver.url, event_types=DEPOSITS)
            endpoint_id = created.endpoint.id
            with pytest.raises(InvalidRequest) as refused:
                await client.create_webhook_endpoint("ftp://93.184.215.14/hooks")
            account = await client.create_account("EUR")
            await client.deposit(account.id, 100)
            # Hands the delivery to the worker's threads and waits for them; the API is
            # not called meanwhile, so blocking this loop holds nothing up.
            assert runtime.deliver_due() == 1
            [received] = receiver.wait_for(1)
            [delivery] = (await client.list_webhook_deliveries(endpoint_id, limit=1)).data
            retried = await client.retry_webhook_delivery(endpoint_id, delivery.id)
            secret = await client.rotate_webhook_secret(endpoint_id)
            updated = await client.update_webhook_endpoint(endpoint_id, all_event_types=True)
            listed = await client.list_webhook_endpoints()
            read = await client.get_webhook_endpoint(endpoint_id)
            await client.delete_webhook_endpoint(endpoint_id)
            with pytest.raises(NotFound) as gone:
                await client.get_webhook_endpoint(endpoint_id)

        assert refused.value.code == "webhook_url_not_allowed"
        assert verify_webhook(received.body, received.headers, created.secret).type == (
            "deposit.created"
        )
        assert (delivery.status, retried.id, retried.status) == (
            "succeeded",
            delivery.id,
            "pending",
        )
        assert secret.startswith("whsec_")
        assert secret != created.secret
        assert updated.event_types is None
        assert [e.id for e in listed.data] == [endpoint_id]
        assert read == updated
        assert gone.value.code == "not_found"

    asyncio.run(scenario())
