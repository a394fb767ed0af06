"""``GET /events``: the caller's events, oldest first, after a cursor, as each user reads
them; filters, pages, the long-poll, and bad input refused without recording anything."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from shared.store import Database
from tests.api.support import (
    Caller,
    Settle,
    accepted,
    app_of,
    assert_problem,
    deposit,
    funded_account,
    get_json,
    metric,
    open_account,
    recorded,
    sign_up,
    transfer,
    transfer_body,
)

JSON = dict[str, Any]


def feed(client: TestClient, caller: Caller, **params: Any) -> JSON:
    return get_json(client, caller, "/events", **params)


def everything(client: TestClient, caller: Caller, **params: Any) -> list[JSON]:
    """Every event of the caller, following cursors page by page."""
    seen: list[JSON] = []
    after = None
    while True:
        page = feed(client, caller, **params, **({"after": after} if after else {}))
        seen += page["data"]
        after = page["next_cursor"]
        if not page["has_more"]:
            return seen


def test_each_owner_reads_the_events_of_a_payment_as_they_read_the_payment(
    settling_client: TestClient, settle: Settle
) -> None:
    client = settling_client
    ada, bob = sign_up(client, "Ada"), sign_up(client, "Bob")
    sender = funded_account(client, ada, 1_000)
    receiver = open_account(client, bob)
    done = accepted(transfer(client, ada, transfer_body(sender, receiver, 400)))
    short = accepted(transfer(client, ada, transfer_body(sender, receiver, 5_000)))
    settle()

    for caller in (ada, bob):
        events = [e for e in everything(client, caller) if e["type"].startswith("payment.")]
        told = {
            payment["id"]: [e["type"] for e in events if e["data"]["object"]["id"] == payment["id"]]
            for payment in (done, short)
        }
        assert told == {
            done["id"]: ["payment.created", "payment.completed"],
            short["id"]: ["payment.created", "payment.failed"],
        }
        for event in events:
            if event["type"] != "payment.created":
                now = get_json(client, caller, f"/payments/{event['data']['object']['id']}")
                assert event["data"]["object"] == now
        assert all(e["id"].startswith("evt_") for e in events)
    # The failure is about Ada's account: Bob's event does not name it.
    bobs_failure = everything(client, bob)[-1]["data"]["object"]
    assert sender not in bobs_failure["failure_detail"]


def test_deposits_and_freezes_are_told_to_their_owner_only(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    account = open_account(client, ada)
    made = deposit(client, ada, account, 250)
    frozen = client.patch(f"/accounts/{account}", json={"status": "frozen"}, headers=ada.auth)

    assert [(e["type"], e["data"]["object"]) for e in everything(client, ada)] == [
        ("deposit.created", made),
        ("account.updated", frozen.json()),
    ]
    assert feed(client, bob) == {"data": [], "has_more": False, "next_cursor": None}


def test_pages_follow_the_cursor_and_a_caught_up_feed_hands_its_cursor_back(
    client: TestClient, ada: Caller
) -> None:
    account = open_account(client, ada)
    made = [deposit(client, ada, account, amount)["id"] for amount in range(1, 8)]

    first = feed(client, ada, limit=3)
    second = feed(client, ada, limit=3, after=first["next_cursor"])
    third = feed(client, ada, limit=3, after=second["next_cursor"])
    caught_up = feed(client, ada, limit=3, after=third["next_cursor"])

    pages = [first, second, third]
    assert [[e["data"]["object"]["id"] for e in p["data"]] for p in pages] == [
        made[0:3],
        made[3:6],
        made[6:7],
    ]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert caught_up == {"data": [], "has_more": False, "next_cursor": third["next_cursor"]}
    later = deposit(client, ada, account, 99)["id"]
    [event] = feed(client, ada, after=third["next_cursor"])["data"]
    assert event["data"]["object"]["id"] == later


def test_types_keep_only_the_events_named(client: TestClient, ada: Caller) -> None:
    account = open_account(client, ada)
    deposit(client, ada, account, 5)
    client.patch(f"/accounts/{account}", json={"status": "frozen"}, headers=ada.auth)
    client.patch(f"/accounts/{account}", json={"status": "active"}, headers=ada.auth)

    updates = everything(client, ada, types="account.updated")
    both = everything(client, ada, types="account.updated,deposit.created")

    assert [e["data"]["object"]["status"] for e in updates] == ["frozen", "active"]
    assert [e["type"] for e in both] == ["deposit.created", "account.updated", "account.updated"]


def test_another_users_cursor_is_refused_and_reveals_nothing(
    client: TestClient, ada: Caller, bob: Caller
) -> None:
    account = open_account(client, ada)
    deposit(client, ada, account, 5)
    adas_cursor = feed(client, ada)["next_cursor"]

    refused = client.get("/events", params={"after": adas_cursor}, headers=bob.auth)

    assert_problem(refused, 422, "invalid_cursor")
    assert adas_cursor is not None


@pytest.mark.parametrize(
    "params",
    [
        {"types": "payment.settled"},
        {"types": "deposit.created,"},
        {"types": ""},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"wait": 31},
        {"wait": -1},
        {"after": "garbage"},
        {"after": ""},
        {"after": "x" * 101},
    ],
    ids=lambda params: "&".join(f"{k}={v}"[:30] for k, v in params.items()),
)
def test_bad_parameters_are_refused_and_record_nothing(
    client: TestClient, db: Database, ada: Caller, params: JSON
) -> None:
    deposit(client, ada, open_account(client, ada), 5)
    before = recorded(db)

    answer = client.get("/events", params=params, headers=ada.auth)

    body = assert_problem(answer, 422)
    assert body["code"] in ("validation_error", "invalid_cursor")
    assert recorded(db) == before


def test_the_feed_needs_an_api_key(client: TestClient) -> None:
    assert_problem(client.get("/events"), 401, "unauthorized")


def test_a_long_poll_answers_as_soon_as_an_event_is_written(
    client: TestClient, ada: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = open_account(client, ada)
    cursor = feed(client, ada)["next_cursor"]
    waiter = app_of(client).state.services.waiter
    wait_for_events = waiter.wait_for_events
    polling = threading.Event()

    async def noticed(user_id: str, position: int, seconds: float) -> None:
        polling.set()
        await wait_for_events(user_id, position, seconds)

    monkeypatch.setattr(waiter, "wait_for_events", noticed)
    answers: list[httpx2.Response] = []

    def long_poll() -> None:
        params = {"wait": 10, **({"after": cursor} if cursor else {})}
        answers.append(client.get("/events", params=params, headers=ada.auth))

    poller = threading.Thread(target=long_poll)
    started = time.monotonic()
    poller.start()
    try:
        assert polling.wait(timeout=5), "the long-poll never waited"
        made = deposit(client, ada, account, 7)
    finally:
        poller.join(timeout=15)

    [answer] = answers
    assert answer.status_code == 200, answer.text
    assert [e["data"]["object"]["id"] for e in answer.json()["data"]] == [made["id"]]
    assert time.monotonic() - started < 10


def test_a_long_poll_with_nothing_new_answers_empty_when_its_time_is_up(
    client: TestClient, ada: Caller
) -> None:
    assert feed(client, ada, wait=0.2) == {"data": [], "has_more": False, "next_cursor": None}


def test_events_written_are_counted_by_type(client: TestClient, ada: Caller) -> None:
    account = open_account(client, ada)
    before = metric(client, "p2p_events_written_total", type="deposit.created")

    deposit(client, ada, account, 5)
    deposit(client, ada, account, 6)

    assert metric(client, "p2p_events_written_total", type="deposit.created") == before + 2
    assert metric(client, "p2p_events_written_total", type="payment.voided") >= 0
