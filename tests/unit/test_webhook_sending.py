"""The webhook sender on each engine, with its clock and its resolver in the test's hands:
deliveries written with their events, claims and attempts that a lost message, a
duplicate one or a killed worker cannot lose or double, automatic disabling, and the
address rules applied again at every delivery (DNS may have changed since saving)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import accounts, webhooks
from shared.enums import EventType
from shared.event_feed import prune_events
from shared.settings import Settings
from shared.store import Database
from shared.webhook_attempts import Claimed, claim_due, start_attempt
from tests.unit.helpers import Customer, count_rows, fund, new_key, refused
from tests.webhook_receiver import Receiver, receiving
from worker.webhook_sender import WebhookSender

T0 = datetime(2030, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=60)
DAY = timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as started:
        yield started


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'unused.db'}",
        "webhook_allow_http": True,
        "webhook_allow_private": True,
        "webhook_timeout_s": 2.0,
        "webhook_retry_schedule_s": ",".join(["3600"] * 20),
        **overrides,
    }
    return Settings(**values)


def subscribe(
    db: Database, customer: Customer, url: str, types: Sequence[EventType] | None = None
) -> webhooks.CreatedEndpoint:
    return db.run(
        webhooks.create_endpoint,
        customer.user.id,
        url,
        event_types=types,
        description=None,
        max_endpoints=16,
    )


def due(db: Database, clock: Clock) -> list[Claimed]:
    return claim_due(db, now=clock(), lease=LEASE, limit=100)


def deliveries_of(db: Database, endpoint_id: str) -> list[webhooks.WebhookDelivery]:
    return webhooks.list_deliveries(
        db, _owner(db, endpoint_id), endpoint_id, limit=100, cursor=None
    ).data


def _owner(db: Database, endpoint_id: str) -> str:
    row = (
        db.connection()
        .execute("SELECT user_id FROM webhook_endpoints WHERE id = ?", (endpoint_id,))
        .fetchone()
    )
    owner: str = row[0]
    return owner


def test_a_delivery_exists_only_if_its_event_committed(
    db: Database, alice: Customer, receiver: Receiver
) -> None:
    subscribe(db, alice, receiver.url)
    before = count_rows(db, "webhook_deliveries")

    with pytest.raises(RuntimeError):
        _deposit_then_die(db, alice)

    assert count_rows(db, "webhook_deliveries") == before
    fund(db, alice.main, 5)
    assert count_rows(db, "webhook_deliveries") == before + 1


def _deposit_then_die(db: Database, customer: Customer) -> None:
    with db.write() as conn:
        accounts.deposit(
            conn,
            customer.user.id,
            customer.main.id,
            amount=5,
            description=None,
            idempotency_key=new_key(),
        )
        raise RuntimeError("the transaction dies before its commit")


def test_the_database_keeps_one_delivery_per_endpoint_and_event(
    db: Database, alice: Customer, receiver: Receiver
) -> None:
    endpoint = subscribe(db, alice, receiver.url).endpoint
    fund(db, alice.main, 5)
    [delivery] = deliveries_of(db, endpoint.id)

    with refused(db, "UNIQUE"), db.write() as conn:
        conn.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type,"
            " next_attempt_at, created_at) VALUES ('whd_again', ?, ?, ?, ?, ?)",
            (endpoint.id, delivery.event_id, delivery.event_type, "2030", "2030"),
        )


def test_a_claimed_delivery_is_handed_out_again_only_once_its_lease_runs_out(
    db: Database, alice: Customer, receiver: Receiver, clock: Clock
) -> None:
    subscribe(db, alice, receiver.url)
    fund(db, alice.main, 5)

    [claimed] = due(db, clock)
    assert due(db, clock) == []
    clock.now += LEASE - timedelta(seconds=1)
    assert due(db, clock) == []
    clock.now += timedelta(seconds=2)
    assert due(db, clock) == [claimed]


def test_a_message_handed_out_twice_starts_one_attempt(
    db: Database, alice: Customer, receiver: Receiver, clock: Clock
) -> None:
    subscribe(db, alice, receiver.url)
    fund(db, alice.main, 5)
    [claimed] = due(db, clock)

    first = start_attempt(db, claimed, now=clock(), hold=LEASE)
    second = start_attempt(db, claimed, now=clock(), hold=LEASE)

    assert first is not None
    assert first.attempt == 1
    assert second is None


def test_an_attempt_whose_worker_died_is_made_again_once_its_hold_runs_out(
    db: Database, alice: Customer, receiver: Receiver, clock: Clock, tmp_path: Path
) -> None:
    endpoint = subscribe(db, alice, receiver.url).endpoint
    fund(db, alice.main, 5)
    [claimed] = due(db, clock)
    # The worker dies (SIGKILL) after counting the attempt, before recording it.
    assert start_attempt(db, claimed, now=clock(), hold=LEASE) is not None
    assert due(db, clock) == []

    clock.now += LEASE + timedelta(seconds=1)
    [again] = due(db, clock)
    sender = WebhookSender(db, settings_for(tmp_path), clock=clock)
    sender.attempt(again)

    receiver.wait_for(1)
    [delivery] = deliveries_of(db, endpoint.id)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_an_endpoint_whose_every_attempt_fails_for_the_disable_period_is_disabled(
    db: Database, alice: Customer, clock: Clock, tmp_path: Path
) -> None:
    # No retries: each deposit's delivery is one attempt.
    settings = settings_for(
        tmp_path, webhook_disable_after_s=5 * 86400, webhook_retry_schedule_s=""
    )
    sender = WebhookSender(db, settings, clock=clock)
    with receiving(Receiver(answers=[500, 500, 200, 500])) as failing:
        endpoint = subscribe(db, alice, failing.url).endpoint

        def attempt_one_at(moment: datetime) -> None:
            clock.now = moment
            fund(db, alice.main, 1)
            for claimed in due(db, clock):
                sender.attempt(claimed)

        attempt_one_at(T0)  # fails: failing from T0
        attempt_one_at(T0 + 4 * DAY)  # fails, 4 days in
        attempt_one_at(T0 + 4 * DAY + timedelta(hours=1))  # succeeds: the count starts over
        attempt_one_at(T0 + 5 * DAY)  # fails: failing from here
        assert webhooks.get_endpoint(db, alice.user.id, endpoint.id).status == "enabled"

    with receiving(Receiver(answers=[500])) as still_failing:
        db.run(
            webhooks.update_endpoint,
            alice.user.id,
            endpoint.id,
            webhooks.EndpointChanges(url=still_failing.url),
        )
        attempt_one_at(T0 + 9 * DAY)
        assert webhooks.get_endpoint(db, alice.user.id, endpoint.id).status == "enabled"
        attempt_one_at(T0 + 10 * DAY)

    assert webhooks.get_endpoint(db, alice.user.id, endpoint.id).status == "disabled"
    # Nothing more is handed out for it, however long it waits.
    clock.now += 30 * DAY
    assert due(db, clock) == []


@pytest.mark.parametrize(
    ("overrides", "url", "refusal"),
    [
        ({"webhook_allow_http": False}, "http://127.0.0.1:{port}/hooks", "https://"),
        ({"webhook_allow_private": False}, "http://127.0.0.1:{port}/hooks", "loopback"),
        ({"webhook_allow_private": False}, "http://localhost:{port}/hooks", "loopback"),
    ],
)
def test_the_defaults_refuse_a_delivery_without_connecting(
    db: Database,
    alice: Customer,
    receiver: Receiver,
    clock: Clock,
    tmp_path: Path,
    overrides: dict[str, bool],
    url: str,
    refusal: str,
) -> None:
    endpoint = subscribe(db, alice, url.format(port=receiver.port)).endpoint
    fund(db, alice.main, 5)
    sender = WebhookSender(db, settings_for(tmp_path, **overrides), clock=clock)

    [claimed] = due(db, clock)
    sender.attempt(claimed)

    [delivery] = deliveries_of(db, endpoint.id)
    assert delivery.status == "pending"
    assert delivery.last_status_code is None
    assert refusal in (delivery.last_error or "")
    assert receiver.received == []


def test_a_name_that_resolves_elsewhere_since_it_was_saved_is_refused_at_delivery(
    db: Database, alice: Customer, receiver: Receiver, clock: Clock, tmp_path: Path
) -> None:
    # Saved while hooks.example resolved to a public address; now it points inside.
    endpoint = subscribe(db, alice, f"http://hooks.example:{receiver.port}/hooks").endpoint
    fund(db, alice.main, 5)
    settings = settings_for(tmp_path, webhook_allow_private=False)
    sender = WebhookSender(
        db, settings, clock=clock, resolver=lambda host, port: ["93.184.215.14", "127.0.0.1"]
    )

    [claimed] = due(db, clock)
    sender.attempt(claimed)

    [delivery] = deliveries_of(db, endpoint.id)
    assert "127.0.0.1, a loopback address" in (delivery.last_error or "")
    assert receiver.received == []


def test_a_delivery_connects_to_the_address_it_checked_and_names_the_host_it_was_given(
    db: Database, alice: Customer, receiver: Receiver, clock: Clock, tmp_path: Path
) -> None:
    # receiver.test resolves nowhere but in this resolver: what the sender checked is
    # what it connected to.
    endpoint = subscribe(db, alice, f"http://receiver.test:{receiver.port}/hooks").endpoint
    fund(db, alice.main, 5)
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    sender = WebhookSender(db, settings_for(tmp_path), clock=clock, resolver=resolver)
    [claimed] = due(db, clock)
    sender.attempt(claimed)

    [received] = receiver.wait_for(1)
    assert received.headers["Host"] == f"receiver.test:{receiver.port}"
    assert lookups == ["receiver.test"]
    assert deliveries_of(db, endpoint.id)[0].status == "succeeded"


def test_pruning_an_event_takes_its_deliveries_with_it(
    db: Database, alice: Customer, receiver: Receiver
) -> None:
    subscribe(db, alice, receiver.url)
    fund(db, alice.main, 5)
    assert count_rows(db, "webhook_deliveries") == 1

    pruned = prune_events(db, older_than=timedelta(seconds=-60))

    assert pruned > 0
    assert count_rows(db, "events") == 0
    assert count_rows(db, "webhook_deliveries") == 0
