"""``p2p worker --processes N``: several workers settle each payment once, a child that
dies is replaced, and SIGTERM to the supervisor stops them all gracefully."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import (
    START_TIMEOUT_S,
    ApiClient,
    Stack,
    free_port,
    poll,
    random_transfers,
    settled_statuses,
    submit_concurrently,
)
from tests.e2e.state import BrokerState

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

STREAM = 300
RECOVERY_TIMEOUT_S = 30.0
SIGTERM_TIMEOUT_S = 15.0


def _pids_that_settled(log: str) -> set[int]:
    lines = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return {line["pid"] for line in lines if line["message"] == "payment settled"}


def _acks_keys_by_pid(log: str) -> dict[int, str]:
    """Each worker process's set of fetched, unacknowledged messages in Redis."""
    lines = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return {
        line["pid"]: f"dramatiq:__acks__.{line['broker_id']}.{BrokerState.QUEUE}"
        for line in lines
        if line["message"].startswith("worker started")
    }


def _assert_each_payment_applied_once(stack: Stack, payments: int) -> None:
    db = stack.database()
    assert db.scalar("SELECT count(*) FROM ledger_entries WHERE payment_id IS NOT NULL") == (
        2 * payments
    )
    stack.assert_ledger_holds()


def test_several_worker_processes_settle_a_stream_exactly_once(stack: Stack) -> None:
    api = stack.start_api()
    stack.overrides["P2P_SETTLE_GROUP"] = "4"
    workers = stack.start_worker(processes=3, wait_started=True)
    assert len(workers.children()) == 3
    with ApiClient(api.url) as client:
        customers = client.rich_customers()
    requests = random_transfers(customers, STREAM, seed=21, amounts=(1, 1_000))

    answers = submit_concurrently(api.url, requests)

    assert [answer.status_code for answer in answers] == [202] * STREAM
    assert settled_statuses(api.url, requests, answers) == ["completed"] * STREAM
    _assert_each_payment_applied_once(stack, STREAM)
    # Which of them settled what is up to who takes the write lock first: a group may
    # settle payments whose messages another process holds.
    assert _pids_that_settled(workers.log_text()) <= workers.children()
    assert len(workers.children()) == 3
    assert workers.terminate(timeout=SIGTERM_TIMEOUT_S) == 0


def test_a_worker_process_killed_mid_stream_is_replaced_and_every_payment_settles_once(
    stack: Stack,
) -> None:
    api = stack.start_api()
    # Small groups keep the workers busy enough to be caught holding messages.
    stack.overrides["P2P_SETTLE_GROUP"] = "4"
    workers = stack.start_worker(processes=3, wait_started=True)
    db = stack.database()
    broker = BrokerState(stack.redis_url)
    with ApiClient(api.url) as client:
        customers = client.rich_customers()
    requests = random_transfers(customers, STREAM, seed=22, amounts=(1, 1_000))
    acks_of = _acks_keys_by_pid(workers.log_text())
    killed: list[int] = []

    def kill_one_while_it_holds_messages(answered: int) -> None:
        if killed or answered < STREAM // 3:
            return
        counts = db.status_counts()
        unacked = broker.unacked()
        holding = [pid for pid, key in acks_of.items() if unacked.get(key)]
        if counts["pending"] and counts["completed"] and holding:
            pid = holding[0]
            os.kill(pid, signal.SIGSTOP)  # from here on it acknowledges nothing
            if not broker.unacked().get(acks_of[pid]):
                os.kill(pid, signal.SIGCONT)  # it acknowledged its last one just now
                return
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    answers = submit_concurrently(api.url, requests, on_answer=kill_one_while_it_holds_messages)

    assert [answer.status_code for answer in answers] == [202] * STREAM
    assert killed, "no worker was caught holding messages: nothing was tested"
    assert workers.alive, "killing one child stopped the service"
    replaced = poll(
        lambda: ((children := workers.children()) and len(children) == 3 and children) or None,
        timeout=RECOVERY_TIMEOUT_S,
        what="the supervisor to replace the killed child",
    )
    assert killed[0] not in replaced
    orphaned = {acks_of[killed[0]]: broker.unacked()[acks_of[killed[0]]]}
    assert "exited with signal SIGKILL unasked" in workers.log_text()
    poll(lambda: db.pending() == 0 or None, timeout=RECOVERY_TIMEOUT_S, what="no payment pending")
    # Redis still holds the dead child's messages: what settled them was the others' sweep.
    assert {key: n for key, n in broker.unacked().items() if key in orphaned} == orphaned
    assert settled_statuses(api.url, requests, answers) == ["completed"] * STREAM
    _assert_each_payment_applied_once(stack, STREAM)
    assert workers.terminate(timeout=SIGTERM_TIMEOUT_S) == 0


def test_sigterm_to_the_supervisor_under_load_stops_every_process_cleanly_losing_nothing(
    stack: Stack,
) -> None:
    api = stack.start_api()
    stack.overrides["P2P_SETTLE_GROUP"] = "4"
    workers = stack.start_worker(processes=3, wait_started=True)
    children = workers.children()
    assert len(children) == 3
    db = stack.database()
    broker = BrokerState(stack.redis_url)
    with ApiClient(api.url) as client:
        customers = client.rich_customers()
    requests = random_transfers(customers, STREAM, seed=23, amounts=(1, 1_000))
    stopped_at: list[int] = []

    def stop_while_busy(answered: int) -> None:
        if stopped_at or answered < STREAM // 3:
            return
        counts = db.status_counts()
        if counts["pending"] and counts["completed"] and sum(broker.unacked().values()):
            workers.popen.send_signal(signal.SIGTERM)
            stopped_at.append(answered)

    answers = submit_concurrently(api.url, requests, on_answer=stop_while_busy)

    assert stopped_at, "the workers never held messages with payments settled and pending"
    assert workers.wait_exit(timeout=SIGTERM_TIMEOUT_S) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    assert workers.log_text().count("exited with code 0") == 3
    assert [answer.status_code for answer in answers] == [202] * STREAM
    # Nothing half done, and every pending payment still has its message in Redis.
    stack.assert_ledger_holds()
    assert db.pending() > 0, "the workers settled everything: the stop was not tested"
    assert db.pending_ids() <= broker.queued_payment_ids()

    stack.start_worker(processes=2)
    poll(lambda: db.pending() == 0 or None, timeout=RECOVERY_TIMEOUT_S, what="no payment pending")
    assert settled_statuses(api.url, requests, answers) == ["completed"] * STREAM
    _assert_each_payment_applied_once(stack, STREAM)


def test_each_worker_process_serves_metrics_on_its_own_port_and_the_heartbeat_covers_all(
    stack: Stack,
) -> None:
    port = _two_free_ports()
    heartbeat = stack.directory / "worker.heartbeat"
    stack.overrides["P2P_WORKER_METRICS_PORT"] = str(port)
    stack.overrides["P2P_HEARTBEAT_PATH"] = str(heartbeat)
    workers = stack.start_worker(processes=2, wait_started=True)

    scraped = [
        httpx.get(f"http://127.0.0.1:{port + index}/metrics", timeout=5).text for index in (0, 1)
    ]
    assert all("p2p_payments_settled_total" in text for text in scraped)
    children = [heartbeat.with_name(f"worker.heartbeat.{index}") for index in (0, 1)]
    poll(lambda: heartbeat.exists() or None, timeout=START_TIMEOUT_S, what="the heartbeat")

    # One child stops sweeping (SIGSTOP): the shared heartbeat stays as old as its own.
    stopped = min(workers.children())
    os.kill(stopped, signal.SIGSTOP)
    try:
        poll(
            lambda: (
                max(child.stat().st_mtime for child in children)
                > min(child.stat().st_mtime for child in children) + 1
                or None
            ),
            timeout=START_TIMEOUT_S,
            what="the other child to sweep on",
        )
        poll(
            lambda: heartbeat.stat().st_mtime == min(c.stat().st_mtime for c in children) or None,
            timeout=START_TIMEOUT_S,
            what="the shared heartbeat to be the stalest child's",
        )
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert workers.terminate(timeout=SIGTERM_TIMEOUT_S) == 0


def _two_free_ports() -> int:
    """A port ``p`` with ``p + 1`` free too, as two worker processes need."""
    while True:
        port = free_port()
        if port < 65535 and _free(port + 1):
            return port


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
