"""G11's webhooks against real processes: a worker SIGKILLed in the middle of deliveries
and Redis flushed under it lose none, and every delivery that arrives verifies with the
Standard Webhooks reference library."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx
import pytest
import standardwebhooks

from tests.conftest import RedisServer
from tests.e2e.harness import ApiClient, Customer, Stack, free_port, poll, transfer
from tests.webhook_receiver import Receiver, receiving

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

DEPOSITS = 30
RECOVERY_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parents[2]


def _webhook_settings(stack: Stack) -> None:
    stack.overrides.update(
        P2P_WEBHOOK_ALLOW_HTTP="true",
        P2P_WEBHOOK_ALLOW_PRIVATE="true",
        P2P_WEBHOOK_SWEEP_INTERVAL_S="0.2",
        P2P_WEBHOOK_TIMEOUT_S="2",
        # A lost message or a killed worker's claim is handed out again after this.
        P2P_WEBHOOK_CLAIM_S="2",
        P2P_WEBHOOK_RETRY_SCHEDULE_S="1,1,1,1,1,1,1,1,1,1",
    )


def _subscribe(api_url: str, customer: Customer, url: str) -> str:
    response = httpx.post(
        f"{api_url}/webhook-endpoints", json={"url": url}, headers=customer.headers
    )
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def test_a_worker_killed_mid_delivery_and_a_flushed_redis_lose_no_webhook(
    stack: Stack, redis_server: RedisServer
) -> None:
    _webhook_settings(stack)
    api = stack.start_api()
    worker = stack.start_worker(wait_started=True)
    db = stack.database()
    # The receiver holds its first requests unanswered: the worker is caught mid-delivery.
    with receiving(Receiver(hang=True)) as receiver, ApiClient(api.url) as client:
        customer = client.customer()
        secret = _subscribe(api.url, customer, receiver.url)
        for _ in range(DEPOSITS):
            client.deposit(customer, 10)
        receiver.wait_for(1)
        assert db.scalar("SELECT count(*) FROM webhook_deliveries") == DEPOSITS
        assert db.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'") == (
            DEPOSITS
        )

        worker.kill()
        redis_server.flushall()
        receiver.hang = False
        receiver.release()
        stack.start_worker()

        expected = {
            row for (row,) in _rows(stack, "SELECT id FROM events WHERE type = 'deposit.created'")
        }
        poll(
            lambda: expected <= {r.headers["webhook-id"] for r in receiver.received} or None,
            timeout=RECOVERY_TIMEOUT_S,
            what="every deposit.created to arrive",
        )
        poll(
            lambda: (
                db.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
                == DEPOSITS
                or None
            ),
            timeout=RECOVERY_TIMEOUT_S,
            what="every delivery to be recorded succeeded",
        )
        received = list(receiver.received)

    verifier = standardwebhooks.Webhook(secret)
    for request in received:
        event = verifier.verify(request.body, request.headers)
        assert event == json.loads(request.body)
        assert event["id"] == request.headers["webhook-id"]
    assert len(expected) == DEPOSITS


def _rows(stack: Stack, query: str) -> list[tuple[str]]:
    with stack.database().connect() as conn:
        return [tuple(row) for row in conn.execute(query).fetchall()]


def _documented_receiver() -> str:
    """The receiver of docs/api.md, as written."""
    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("\n### A receiver\n", 1)[1].split("\n### ", 1)[0]
    code: str = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[0]
    return code


def test_the_documented_receiver_prints_payment_completed_from_p2p_dev(
    dev_stack: Stack, tmp_path: Path
) -> None:
    """What docs/api.md tells a newcomer to do with ``make run``."""
    dev_stack.overrides.update(P2P_WEBHOOK_ALLOW_HTTP="true", P2P_WEBHOOK_ALLOW_PRIVATE="true")
    dev = dev_stack.start_dev()
    port = free_port()
    with ApiClient(dev.url) as client:
        sender, payee = client.customer(deposit=1_000), client.customer()
        response = httpx.post(
            f"{dev.url}/webhook-endpoints",
            json={"url": f"http://127.0.0.1:{port}/hooks", "event_types": ["payment.completed"]},
            headers=sender.headers,
        )
        assert response.status_code == 201, response.text
        script = tmp_path / "receiver.py"
        script.write_text(_documented_receiver())
        dev_stack.overrides.update(WEBHOOK_SECRET=response.json()["secret"], PORT=str(port))
        receiver = dev_stack.start("receiver", [sys.executable, str(script)])

        payment = client.accepted(transfer(sender, payee, 250))

        receiver.wait_for_output(f"payment.completed {payment['id']}", timeout=RECOVERY_TIMEOUT_S)
