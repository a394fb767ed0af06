"""``p2p api --processes N``: one port, several processes answering, one ledger."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import (
    ApiClient,
    Stack,
    TransferRequest,
    pids_that_answered,
    random_transfers,
    started_children,
)

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

STREAM = 300
EXIT_TIMEOUT_S = 15.0


def _submit_on_fresh_connections(
    base_url: str, requests: list[TransferRequest], concurrency: int = 8
) -> list[httpx.Response]:
    """Every submit on a connection of its own: the kernel hands each new connection to
    whichever process accepts first, so both get some. (Keep-alive connections opened
    in one burst may all land on the one that woke first, and stay there.)"""

    async def submit_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/payments/transfer", json=request.body(), headers=request.headers()
                    )
                    for request in requests
                )
            )

    return asyncio.run(submit_all())


def test_two_api_processes_behind_one_port_share_the_submits_and_settle_each_once(
    stack: Stack,
) -> None:
    api = stack.start_api(processes=2)
    children = started_children(api.process, 2)
    assert children == api.process.children()
    stack.start_worker(wait_started=True)
    with ApiClient(api.url) as client:
        customers = [client.customer(deposit=10_000_000) for _ in range(4)]
    requests = random_transfers(customers, STREAM, seed=31, amounts=(1, 1_000))

    answers = _submit_on_fresh_connections(api.url, requests)

    assert [answer.status_code for answer in answers] == [202] * STREAM
    assert pids_that_answered(api.process, "/payments/transfer") == children
    with ApiClient(api.url) as client:
        settled = client.wait_all_final(
            [
                (request.sender, answer.json()["id"])
                for request, answer in zip(requests, answers, strict=True)
            ]
        )
    assert [payment["status"] for payment in settled] == ["completed"] * STREAM
    db = stack.database()
    assert db.scalar("SELECT count(*) FROM payments") == STREAM
    assert db.scalar("SELECT count(*) FROM ledger_entries WHERE payment_id IS NOT NULL") == (
        2 * STREAM
    )
    stack.assert_ledger_holds()

    assert api.process.terminate(timeout=EXIT_TIMEOUT_S) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)


def test_an_api_process_killed_is_replaced_and_the_port_keeps_answering(stack: Stack) -> None:
    api = stack.start_api(processes=2)
    children = started_children(api.process, 2)
    victim = min(children)

    os.kill(victim, signal.SIGKILL)
    with ApiClient(api.url) as client:
        # The survivor answers meanwhile: the port never closed.
        client.customer()
    replaced = started_children(api.process, 3) - {victim}
    assert replaced == api.process.children()
    assert len(replaced) == 2
    assert api.process.terminate(timeout=EXIT_TIMEOUT_S) == 0
