"""SIGTERM is a restart, not a fault: the API stops accepting, answers what it has in
hand and exits; the worker finishes its transaction and exits; nothing accepted is lost."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.e2e.harness import (
    ApiClient,
    Json,
    Stack,
    poll,
    random_transfers,
    submit_concurrently,
    submit_through_crash,
    transfer,
)

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

STREAM = 400
EXIT_TIMEOUT_S = 15.0
LONG_POLL_S = 30.0


def _in_flight(api_url: str) -> float:
    """The API's own count of requests it holds, this scrape included."""
    text = httpx.get(f"{api_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("p2p_http_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("p2p_http_requests_in_flight is not exported")


def test_a_long_poll_in_flight_is_answered_at_once_when_the_api_is_stopped(
    stack: Stack,
) -> None:
    api = stack.start_api()  # no worker: the payment stays pending
    with ApiClient(api.url) as client:
        alice = client.customer(deposit=1_000)
        bob = client.customer()
        payment = client.accepted(transfer(alice, bob, 300))
    answers: list[Json] = []

    def long_poll() -> None:
        with ApiClient(api.url) as client:
            answers.append(client.payment(alice, payment["id"], wait=LONG_POLL_S))

    poller = threading.Thread(target=long_poll)
    poller.start()
    poll(lambda: _in_flight(api.url) >= 2 or None, timeout=10, what="the long-poll in flight")

    stopping = time.monotonic()
    assert api.process.terminate(timeout=EXIT_TIMEOUT_S) == 0
    poller.join(timeout=EXIT_TIMEOUT_S)
    assert not poller.is_alive()
    assert time.monotonic() - stopping < LONG_POLL_S / 2, "the long-poll held the shutdown"
    assert [answer["status"] for answer in answers] == ["pending"]


def test_sigterm_to_api_and_worker_under_load_loses_nothing_and_leaves_nothing_half_done(
    stack: Stack,
) -> None:
    api = stack.start_api()
    # Small groups keep the worker in the middle of its work when the signal comes.
    stack.overrides["P2P_SETTLE_GROUP"] = "4"
    worker = stack.start_worker(wait_started=True)
    with ApiClient(api.url) as client:
        customers = [client.customer(deposit=10_000_000) for _ in range(4)]
    requests = random_transfers(customers, STREAM, seed=11, amounts=(1, 1_000))
    db = stack.database()
    stopped_at: list[int] = []

    def stop_both_while_busy(answered: int) -> None:
        if stopped_at or answered < STREAM // 4:
            return
        counts = db.status_counts()
        if counts["pending"] and counts["completed"]:
            worker.popen.send_signal(signal.SIGTERM)
            api.process.popen.send_signal(signal.SIGTERM)
            stopped_at.append(answered)

    answers = submit_through_crash(api.url, requests, crash=stop_both_while_busy)
    assert stopped_at, "the worker never had payments both settled and pending"
    assert api.process.wait_exit(timeout=EXIT_TIMEOUT_S) == 0
    assert worker.wait_exit(timeout=EXIT_TIMEOUT_S) == 0

    assert {answer.status_code for answer in answers if answer is not None} == {202}
    accepted = {
        request.key: answer.json()["id"]
        for request, answer in zip(requests, answers, strict=True)
        if answer is not None
    }
    assert STREAM // 4 <= len(accepted) < STREAM, "the stream was not cut by the stop"
    # Every 202 was committed before it was sent, and no transfer is half applied.
    assert _recorded_ids(stack, set(accepted)) == accepted
    stack.assert_ledger_holds()

    restarted = stack.start_api()
    stack.start_worker()
    # A client whose answer was lost retries with the same key; the others replay.
    retried = submit_concurrently(restarted.url, requests)
    assert [answer.status_code for answer in retried] == [202] * STREAM
    ids = {
        request.key: answer.json()["id"] for request, answer in zip(requests, retried, strict=True)
    }
    assert {key: ids[key] for key in accepted} == accepted
    with ApiClient(restarted.url) as client:
        settled = client.wait_all_final(
            [(request.sender, ids[request.key]) for request in requests]
        )
    assert [payment["status"] for payment in settled] == ["completed"] * STREAM
    assert db.scalar("SELECT count(*) FROM payments") == STREAM
    stack.assert_ledger_holds()


def _recorded_ids(stack: Stack, keys: set[str]) -> dict[str, str]:
    with stack.database().connect() as conn:
        rows = conn.execute("SELECT idempotency_key, id FROM payments").fetchall()
    return {key: id_ for key, id_ in rows if key in keys}
