"""Webhooks delivered: the API records, the worker (in-process broker) sends to a local
receiver, which P2P_WEBHOOK_ALLOW_HTTP and P2P_WEBHOOK_ALLOW_PRIVATE let it reach.
Signatures are checked with the Standard Webhooks reference library and the client's
``verify_webhook``; retries, failures, manual retries, rotation, redirects and a hanging
endpoint are played out with the receiver's scripted answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from p2p_client import verify_webhook
from shared.settings import Settings
from tests.api.support import (
    NO_SWEEP_S,
    Caller,
    Settle,
    accepted,
    assert_problem,
    deposit,
    funded_account,
    get_json,
    make_settings,
    open_account,
    sign_up,
    transfer,
    transfer_body,
)
from tests.webhook_receiver import Received, Receiver, receiving
from worker.runtime import WorkerRuntime

JSON = dict[str, Any]

WEBHOOKS: JSON = {
    "webhook_allow_http": True,
    "webhook_allow_private": True,
    # Deliveries go out when a test says so (runtime.deliver_due), never behind its back.
    "webhook_sweep_interval_s": NO_SWEEP_S,
    "webhook_timeout_s": 2.0,
    # Retries due at once, so that a test plays the schedule out without waiting.
    "webhook_retry_schedule_s": "0,0",
}


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Settings:
    overrides = {"database_url": database_url, **WEBHOOKS, **getattr(request, "param", {})}
    return make_settings(tmp_path, **overrides)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as started:
        yield started


def subscribe(client: TestClient, caller: Caller, url: str, **body: Any) -> JSON:
    response = client.post("/webhook-endpoints", json={"url": url, **body}, headers=caller.auth)
    assert response.status_code == 201, response.text
    endpoint: JSON = response.json()
    return endpoint


def deliveries(client: TestClient, caller: Caller, endpoint: JSON) -> list[JSON]:
    page = get_json(client, caller, f"/webhook-endpoints/{endpoint['id']}/deliveries")
    found: list[JSON] = page["data"]
    return found


def verified(received: Received, secret: str) -> JSON:
    """The event, once both verifiers accept the request."""
    by_reference: JSON = standardwebhooks.Webhook(secret).verify(received.body, received.headers)
    by_client = verify_webhook(received.body, received.headers, secret)
    assert by_client.id == by_reference["id"]
    return by_reference


def test_a_deposit_reaches_its_endpoint_signed_so_that_the_reference_library_verifies_it(
    settling_client: TestClient, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    endpoint = subscribe(client, ada, receiver.url)
    account_id = open_account(client, ada)
    made = deposit(client, ada, account_id, 700)

    assert runtime.deliver_due() == 1

    [received] = receiver.wait_for(1)
    event = verified(received, endpoint["secret"])
    [from_feed] = get_json(client, ada, "/events", types="deposit.created")["data"]
    assert event == from_feed
    assert json.loads(received.body) == from_feed
    assert event["data"]["object"]["id"] == made["id"]
    assert received.headers["webhook-id"] == event["id"]
    assert received.headers["Content-Type"] == "application/json"
    assert received.path == "/hooks"
    [delivery] = deliveries(client, ada, endpoint)
    assert delivery["id"].startswith("whd_")
    assert delivery["event_id"] == event["id"]
    assert delivery["event_type"] == "deposit.created"
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"] == 1
    assert delivery["last_status_code"] == 200
    assert delivery["last_error"] is None
    assert delivery["next_attempt_at"] is None
    assert delivery["last_attempt_at"] is not None


def test_events_before_an_endpoint_existed_are_not_sent_and_saving_sends_nothing(
    settling_client: TestClient, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    funded_account(client, ada, 100)
    endpoint = subscribe(client, ada, receiver.url)

    assert runtime.deliver_due() == 0
    assert receiver.received == []
    assert deliveries(client, ada, endpoint) == []


def test_an_endpoint_gets_only_the_types_it_subscribed_to(
    settling_client: TestClient, runtime: WorkerRuntime, settle: Settle, receiver: Receiver
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    endpoint = subscribe(client, ada, receiver.url, event_types=["payment.completed"])
    sender = funded_account(client, ada, 1_000)
    receiving_account = open_account(client, ada)
    payment = accepted(transfer(client, ada, transfer_body(sender, receiving_account, 300)))
    settle()

    runtime.deliver_due()

    [received] = receiver.wait_for(1)
    event = verified(received, endpoint["secret"])
    assert event["type"] == "payment.completed"
    assert event["data"]["object"]["id"] == payment["id"]
    assert [d["event_type"] for d in deliveries(client, ada, endpoint)] == ["payment.completed"]


def test_each_owner_of_a_payment_is_told_on_their_own_endpoint_as_they_read_it(
    settling_client: TestClient, runtime: WorkerRuntime, settle: Settle
) -> None:
    client = settling_client
    ada, bob = sign_up(client, "Ada"), sign_up(client, "Bob")
    sender = funded_account(client, ada, 1_000)
    receiving_account = open_account(client, bob)
    with receiving() as ada_receiver, receiving() as bob_receiver:
        ada_endpoint = subscribe(client, ada, ada_receiver.url, event_types=["payment.completed"])
        bob_endpoint = subscribe(client, bob, bob_receiver.url, event_types=["payment.completed"])
        payment = accepted(transfer(client, ada, transfer_body(sender, receiving_account, 250)))
        settle()

        assert runtime.deliver_due() == 2

        ada_event = verified(ada_receiver.wait_for(1)[0], ada_endpoint["secret"])
        bob_event = verified(bob_receiver.wait_for(1)[0], bob_endpoint["secret"])
    assert ada_event["data"]["object"] == get_json(client, ada, f"/payments/{payment['id']}")
    assert bob_event["data"]["object"] == get_json(client, bob, f"/payments/{payment['id']}")
    assert ada_event["id"] != bob_event["id"]
    # Bob's secret does not verify Ada's delivery.
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verified(ada_receiver.received[0], bob_endpoint["secret"])


def test_a_disabled_endpoint_is_sent_nothing_and_its_deliveries_cannot_be_retried(
    settling_client: TestClient, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    endpoint = subscribe(client, ada, receiver.url)
    path = f"/webhook-endpoints/{endpoint['id']}"
    account_id = funded_account(client, ada, 100)
    runtime.deliver_due()
    receiver.wait_for(1)
    client.patch(path, json={"status": "disabled"}, headers=ada.auth)
    deposit(client, ada, account_id, 5)

    assert runtime.deliver_due() == 0
    [delivery] = deliveries(client, ada, endpoint)
    assert_problem(
        client.post(f"{path}/deliveries/{delivery['id']}/retry", headers=ada.auth),
        409,
        "webhook_endpoint_disabled",
    )
    assert len(receiver.received) == 1


@pytest.mark.parametrize("receiver_answers", [[500, 200]])
def test_an_endpoint_that_answers_500_then_recovers_gets_the_delivery_on_its_retry(
    settling_client: TestClient, runtime: WorkerRuntime, receiver_answers: list[int]
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    with receiving(Receiver(answers=receiver_answers)) as receiver:
        endpoint = subscribe(client, ada, receiver.url)
        funded_account(client, ada, 10)
        runtime.deliver_due()
        [failed] = deliveries(client, ada, endpoint)

        runtime.deliver_due()

        first, second = receiver.wait_for(2)
    assert failed["status"] == "pending"
    assert failed["attempts"] == 1
    assert failed["last_status_code"] == 500
    assert failed["last_error"].startswith("HTTP 500: xxx")
    assert len(failed["last_error"].encode()) <= 1024 + len("HTTP 500: ")
    assert failed["next_attempt_at"] is not None
    [recovered] = deliveries(client, ada, endpoint)
    assert (recovered["status"], recovered["attempts"]) == ("succeeded", 2)
    assert recovered["last_status_code"] == 200
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    verified(second, endpoint["secret"])


def test_a_delivery_that_keeps_failing_ends_failed_once_the_schedule_is_spent(
    settling_client: TestClient, runtime: WorkerRuntime
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    with receiving(Receiver(answers=[503])) as receiver:
        endpoint = subscribe(client, ada, receiver.url)
        funded_account(client, ada, 10)
        for _ in range(4):
            runtime.deliver_due()
        # One first attempt, then one retry per entry of the schedule ("0,0").
        assert len(receiver.wait_for(3)) == 3
    [delivery] = deliveries(client, ada, endpoint)
    assert (delivery["status"], delivery["attempts"]) == ("failed", 3)
    assert delivery["next_attempt_at"] is None
    assert delivery["last_status_code"] == 503


def test_a_manual_retry_sends_a_delivered_event_again_with_its_id(
    settling_client: TestClient, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    endpoint = subscribe(client, ada, receiver.url)
    funded_account(client, ada, 10)
    runtime.deliver_due()
    [delivery] = deliveries(client, ada, endpoint)

    response = client.post(
        f"/webhook-endpoints/{endpoint['id']}/deliveries/{delivery['id']}/retry",
        headers=ada.auth,
    )

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    assert runtime.deliver_due() == 1
    first, again = receiver.wait_for(2)
    assert verified(again, endpoint["secret"]) == verified(first, endpoint["secret"])
    [retried] = deliveries(client, ada, endpoint)
    assert (retried["status"], retried["attempts"]) == ("succeeded", 2)


def test_a_delivery_of_another_user_or_endpoint_cannot_be_retried(
    settling_client: TestClient, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    client = settling_client
    ada, bob = sign_up(client, "Ada"), sign_up(client, "Bob")
    ada_endpoint = subscribe(client, ada, receiver.url)
    bob_endpoint = subscribe(client, bob, receiver.url)
    other_endpoint = subscribe(client, ada, receiver.url, event_types=["payment.failed"])
    funded_account(client, ada, 10)
    [delivery] = deliveries(client, ada, ada_endpoint)

    answers = [
        client.post(
            f"/webhook-endpoints/{bob_endpoint['id']}/deliveries/{delivery['id']}/retry",
            headers=bob.auth,
        ),
        client.post(
            f"/webhook-endpoints/{ada_endpoint['id']}/deliveries/{delivery['id']}/retry",
            headers=bob.auth,
        ),
        client.post(
            f"/webhook-endpoints/{other_endpoint['id']}/deliveries/{delivery['id']}/retry",
            headers=ada.auth,
        ),
        client.get(f"/webhook-endpoints/{ada_endpoint['id']}/deliveries", headers=bob.auth),
    ]

    for answer in answers:
        assert_problem(answer, 404, "not_found")
    assert deliveries(client, bob, bob_endpoint) == []


@pytest.mark.parametrize(
    ("settings", "signatures"),
    [({"webhook_secret_overlap_s": 3600}, 2), ({"webhook_secret_overlap_s": 0}, 1)],
    indirect=["settings"],
)
def test_after_a_rotation_deliveries_are_signed_by_both_secrets_while_they_overlap(
    settling_client: TestClient, runtime: WorkerRuntime, receiver: Receiver, signatures: int
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    endpoint = subscribe(client, ada, receiver.url)
    old_secret = endpoint["secret"]
    rotated = client.post(f"/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=ada.auth)
    new_secret = rotated.json()["secret"]
    funded_account(client, ada, 10)

    runtime.deliver_due()

    [received] = receiver.wait_for(1)
    assert len(received.headers["webhook-signature"].split(" ")) == signatures
    assert verified(received, new_secret)["type"] == "deposit.created"
    if signatures == 2:
        assert verified(received, old_secret)["type"] == "deposit.created"
    else:
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            verified(received, old_secret)


def test_a_redirect_is_not_followed(
    settling_client: TestClient, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    with receiving(Receiver(redirect_to=receiver.url)) as redirecting:
        endpoint = subscribe(client, ada, redirecting.url)
        funded_account(client, ada, 10)

        runtime.deliver_due()

        redirecting.wait_for(1)
    assert receiver.received == []
    [delivery] = deliveries(client, ada, endpoint)
    assert (delivery["status"], delivery["last_status_code"]) == ("pending", 307)


# Long enough that the checks below run while the hanging attempts are still in flight.
@pytest.mark.parametrize("settings", [{"webhook_timeout_s": 4.0}], indirect=True)
def test_a_hanging_endpoint_fails_by_the_timeout_and_never_delays_another_endpoint(
    settling_client: TestClient, runtime: WorkerRuntime, settle: Settle, receiver: Receiver
) -> None:
    client = settling_client
    ada, bob = sign_up(client, "Ada"), sign_up(client, "Bob")
    with receiving(Receiver(hang=True)) as hanging:
        stuck = subscribe(client, ada, hanging.url, event_types=["deposit.created"])
        subscribe(client, bob, receiver.url, event_types=["deposit.created"])
        for _ in range(3):
            sender = funded_account(client, ada, 10)
        for _ in range(5):
            funded_account(client, bob, 10)

        # Handed out, not waited for: Ada's endpoint holds its threads for the timeout.
        assert runtime.webhook_sweep.sweep_once() == 8
        runtime.join()
        receiver.wait_for(5)
        # Settling goes on too: the worker's threads hand deliveries over and never wait.
        payment = accepted(
            transfer(client, ada, transfer_body(sender, open_account(client, bob), 5))
        )
        settle()
        settled = get_json(client, ada, f"/payments/{payment['id']}")
        held = hanging.received[:]
        in_flight = deliveries(client, ada, stuck)

        assert runtime.dispatcher.wait_idle(timeout=30)
    # At most P2P_WEBHOOK_ENDPOINT_CONCURRENCY (2) of Ada's at once, none of them answered
    # while all of Bob's were delivered.
    assert len(held) <= 2
    assert settled["status"] == "completed"
    assert all(d["last_status_code"] is None and d["last_error"] is None for d in in_flight)
    timed_out = deliveries(client, ada, stuck)
    assert [d["last_error"] for d in timed_out] == ["no answer within 4 s"] * 3
    assert [d["status"] for d in timed_out] == ["pending"] * 3


def test_a_deleted_endpoint_is_sent_nothing_more(
    settling_client: TestClient, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    endpoint = subscribe(client, ada, receiver.url)
    funded_account(client, ada, 10)
    client.delete(f"/webhook-endpoints/{endpoint['id']}", headers=ada.auth)

    assert runtime.deliver_due() == 0
    assert receiver.received == []


def _sample(runtime: WorkerRuntime, name: str, **labels: str) -> float:
    text = generate_latest(runtime.metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_the_worker_counts_deliveries_by_outcome_and_shows_the_backlog(
    settling_client: TestClient, runtime: WorkerRuntime, receiver: Receiver
) -> None:
    client = settling_client
    ada = sign_up(client, "Ada")
    subscribe(client, ada, receiver.url)
    with receiving(Receiver(answers=[500])) as failing:
        subscribe(client, ada, failing.url)
        funded_account(client, ada, 10)
        assert _sample(runtime, "p2p_webhook_deliveries_pending") == 2

        runtime.deliver_due()

    assert _sample(runtime, "p2p_webhook_deliveries_total", outcome="succeeded") == 1
    assert _sample(runtime, "p2p_webhook_deliveries_total", outcome="retrying") == 1
    assert _sample(runtime, "p2p_webhook_deliveries_total", outcome="failed") == 0
    assert _sample(runtime, "p2p_webhook_delivery_latency_seconds_count") == 1
    assert _sample(runtime, "p2p_webhook_deliveries_pending") == 1
    assert _sample(runtime, "p2p_webhook_oldest_undelivered_age_seconds") > 0
    assert _sample(runtime, "p2p_webhook_endpoints_disabled") == 0
