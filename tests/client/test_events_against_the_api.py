"""The client's event stream against the real ``GET /events`` (in-process, both engines):
cursors followed page by page, types as the service reads them, and the long-poll."""

from __future__ import annotations

import threading
import uuid

import pytest

from p2p_client import Client, InvalidRequest


def _signed_up(base_url: str, name: str) -> Client:
    with Client(base_url) as anonymous:
        new = anonymous.create_user(name, f"{name}-{uuid.uuid4().hex[:8]}@example.com")
    return Client(base_url, new.api_key)


def test_the_stream_reads_a_payments_events_and_resumes_from_its_cursor(base_url: str) -> None:
    with _signed_up(base_url, "ada") as ada:
        sender = ada.create_account("EUR")
        receiver = ada.create_account("EUR")
        ada.deposit(sender.id, 1_000)
        payment = ada.transfer(sender.id, receiver.id, 400, "EUR")
        ada.wait(payment.id, timeout=10)

        stream = ada.events(limit=2)
        seen = list(stream)
        ada.deposit(receiver.id, 5)
        resumed = list(ada.events(after=stream.cursor))

    assert [(e.type, e.object["id"]) for e in seen] == [
        ("deposit.created", seen[0].object["id"]),
        ("payment.created", payment.id),
        ("payment.completed", payment.id),
    ]
    assert seen[2].object["status"] == "completed"
    assert [e.type for e in resumed] == ["deposit.created"]


def test_types_are_read_as_the_client_sends_them_and_unknown_ones_refused(
    base_url: str,
) -> None:
    with _signed_up(base_url, "ada") as ada:
        account = ada.create_account("EUR")
        ada.deposit(account.id, 10)
        ada.set_account_status(account.id, "frozen")

        updates = list(ada.events(types=["account.updated", "payment.failed"]))
        with pytest.raises(InvalidRequest) as refusal:
            list(ada.events(types=["account.deleted"]))

    assert [e.object["status"] for e in updates] == ["frozen"]
    assert refusal.value.code == "validation_error"


def test_a_following_stream_long_polls_for_the_next_event(base_url: str) -> None:
    with _signed_up(base_url, "ada") as ada, _signed_up(base_url, "bob") as bob:
        account = ada.create_account("EUR")
        bobs = bob.create_account("EUR")
        arrived: list[str] = []

        def follow() -> None:
            for event in ada.events(wait=10):
                arrived.append(event.object["id"])
                return

        follower = threading.Thread(target=follow)
        follower.start()
        bob.deposit(bobs.id, 5)  # not Ada's: her stream goes on waiting
        made = ada.deposit(account.id, 7)
        follower.join(timeout=20)

    assert arrived == [made.id]
