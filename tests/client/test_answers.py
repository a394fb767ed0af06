"""Answers read strictly, against fake servers: a field of the wrong type is
``UnexpectedAnswer`` naming it, never a half-read object."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from p2p_client import Client, UnexpectedAnswer
from tests.client.support import API_KEY, CREATED_AT, FakeServer

COUNTS = {"pending": 0, "completed": 4, "failed": 1, "authorized": 0, "voided": 0, "expired": 0}
BATCH = {
    "id": "bat_1",
    "atomic": False,
    "status": "settled",
    "counts": COUNTS,
    "created_at": CREATED_AT,
    "settled_at": CREATED_AT,
}
ENDPOINT = {
    "id": "whe_1",
    "url": "https://example.com/hooks",
    "description": None,
    "event_types": ["payment.completed"],
    "status": "enabled",
    "created_at": CREATED_AT,
    "updated_at": CREATED_AT,
}
DELIVERY = {
    "id": "whd_1",
    "endpoint_id": "whe_1",
    "event_id": "evt_1",
    "event_type": "payment.completed",
    "status": "failed",
    "attempts": 8,
    "last_attempt_at": CREATED_AT,
    "next_attempt_at": None,
    "last_status_code": None,
    "last_error": "connection refused",
    "created_at": CREATED_AT,
}


def _answering(answer: object) -> Client:
    server = FakeServer(httpx.Response(200, json=answer))
    return Client("http://p2p.test", API_KEY, transport=httpx.MockTransport(server))


def test_a_batch_an_endpoint_and_a_delivery_are_read_whole() -> None:
    batch = _answering(BATCH).get_batch("bat_1")
    endpoint = _answering(ENDPOINT).get_webhook_endpoint("whe_1")
    deliveries = _answering({"data": [DELIVERY], "has_more": False, "next_cursor": None})

    [delivery] = deliveries.list_webhook_deliveries("whe_1").data

    assert (batch.settled, batch.counts.completed, batch.counts.failed) == (True, 4, 1)
    assert endpoint.event_types == ["payment.completed"]
    assert (delivery.attempts, delivery.last_status_code, delivery.next_attempt_at) == (
        8,
        None,
        None,
    )


READS: dict[str, tuple[object, Callable[[Client], object]]] = {
    "batch.counts.completed": (
        {**BATCH, "counts": {**COUNTS, "completed": "4"}},
        lambda client: client.get_batch("bat_1"),
    ),
    "batch.atomic": ({**BATCH, "atomic": 0}, lambda client: client.get_batch("bat_1")),
    "webhook_endpoint.event_types": (
        {**ENDPOINT, "event_types": ["payment.completed", 7]},
        lambda client: client.get_webhook_endpoint("whe_1"),
    ),
    "webhook_secret.secret": ({}, lambda client: client.rotate_webhook_secret("whe_1")),
    "webhook_delivery.attempts": (
        {"data": [{**DELIVERY, "attempts": True}], "has_more": False, "next_cursor": None},
        lambda client: client.list_webhook_deliveries("whe_1"),
    ),
}


@pytest.mark.parametrize("field", sorted(READS))
def test_a_field_of_the_wrong_type_is_an_unexpected_answer_naming_it(field: str) -> None:
    answer, read = READS[field]

    with pytest.raises(UnexpectedAnswer, match=field.replace(".", r"\.")):
        read(_answering(answer))
