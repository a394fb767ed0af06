"""The metrics of the real processes move as the traffic says, and reconciliation reports
a ledger corrupted behind the engine's back."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RedisServer
from tests.e2e.harness import ApiClient, Customer, Stack, free_port, poll, transfer

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SCRAPE_TIMEOUT_S = 20.0


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus endpoint, by name and labels."""
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def _worker_metrics(stack: Stack) -> str:
    port = free_port()
    stack.overrides["P2P_WORKER_METRICS_PORT"] = str(port)
    stack.start_worker(wait_started=True)
    return f"http://127.0.0.1:{port}/metrics"


def test_both_endpoints_count_real_traffic(stack: Stack) -> None:
    worker_url = _worker_metrics(stack)
    api = stack.start_api()
    accepted, affordable = 10, 7
    with ApiClient(api.url) as client:
        payer, payee = client.customer(deposit=100 * affordable), client.customer()
        # One at a time, so they are settled in this order: the first 7 find the funds.
        ids = [client.accepted(transfer(payer, payee, 100))["id"] for _ in range(accepted)]
        settled = client.wait_all_final([(payer, payment_id) for payment_id in ids])
    assert [payment["status"] for payment in settled].count("completed") == affordable

    api_samples = scrape(f"{api.url}/metrics")
    assert value(api_samples, "p2p_payments_accepted_total") == accepted
    transfer_route = {"method": "POST", "route": "/payments/transfer"}
    assert value(api_samples, "p2p_http_requests_total", **transfer_route, status="202") == 10
    assert value(api_samples, "p2p_http_request_duration_seconds_count", **transfer_route) == 10
    deposits = {"method": "POST", "route": "/accounts/{account_id}/deposits", "status": "201"}
    assert value(api_samples, "p2p_http_requests_total", **deposits) == 1
    assert value(api_samples, "p2p_enqueue_failures_total") == 0

    def every_message_handled() -> Samples | None:
        samples = scrape(worker_url)
        handled = value(samples, "p2p_settle_messages_total", result="ok")
        # Dramatiq acknowledges a message after handling it, from its consumer thread.
        unacked = value(samples, "p2p_queue_messages", queue="payments", state="unacked")
        return samples if (handled, unacked) == (accepted, 0) else None

    worker = poll(every_message_handled, timeout=SCRAPE_TIMEOUT_S, what="10 messages handled")
    completed = value(worker, "p2p_payments_settled_total", outcome="completed", code="")
    failed = value(
        worker, "p2p_payments_settled_total", outcome="failed", code="insufficient_funds"
    )
    assert (completed, failed) == (affordable, accepted - affordable)
    assert value(worker, "p2p_payments_settled_total", outcome="failed", code="account_frozen") == 0
    assert value(worker, "p2p_settle_latency_seconds_count") == accepted
    assert value(worker, "p2p_settle_latency_seconds_bucket", le="+Inf") == accepted
    assert 0 < value(worker, "p2p_settle_latency_seconds_sum") < accepted * SCRAPE_TIMEOUT_S
    assert value(worker, "p2p_settle_messages_total", result="error") == 0
    assert value(worker, "p2p_payments_pending") == 0
    assert value(worker, "p2p_oldest_pending_age_seconds") == 0
    assert value(worker, "p2p_broker_up") == 1
    assert value(worker, "p2p_queue_messages", queue="payments", state="ready") == 0
    assert value(worker, "p2p_queue_messages", queue="payments", state="unacked") == 0
    assert value(worker, "p2p_queue_dead_letters", queue="payments") == 0
    assert value(worker, "p2p_reconciliation_violations") == 0


def test_the_worker_counts_what_the_sweep_settled_and_the_age_of_the_oldest_pending(
    stack: Stack, redis_server: RedisServer
) -> None:
    api = stack.start_api()
    with ApiClient(api.url) as client:
        payer, payee = client.customer(deposit=1_000), client.customer()
        ids = [client.accepted(transfer(payer, payee, 10))["id"] for _ in range(3)]
    with redis_server.client() as redis:
        # The API sends from a thread of its own: wait until all three are in Redis.
        poll(
            lambda: redis.hlen("dramatiq:payments.msgs") == len(ids) or None,
            timeout=SCRAPE_TIMEOUT_S,
            what="the API to enqueue 3 messages",
        )
    redis_server.flushall()  # their messages are gone: only the sweep can settle them
    stack.overrides["P2P_SWEEP_GRACE_S"] = "5"
    worker_url = _worker_metrics(stack)

    early = scrape(worker_url)
    assert value(early, "p2p_payments_pending") == 3
    assert value(early, "p2p_oldest_pending_age_seconds") > 0

    def swept() -> Samples | None:
        samples = scrape(worker_url)
        return samples if value(samples, "p2p_sweep_settled_total") == len(ids) else None

    samples = poll(swept, timeout=SCRAPE_TIMEOUT_S, what="the sweep to settle 3 payments")
    assert value(samples, "p2p_payments_settled_total", outcome="completed", code="") == 3
    assert value(samples, "p2p_settle_latency_seconds_count") == 3
    # Settled no sooner than the grace period after acceptance.
    assert value(samples, "p2p_settle_latency_seconds_bucket", le="1.0") == 0
    assert value(samples, "p2p_payments_pending") == 0
    assert value(samples, "p2p_settle_messages_total", result="ok") == 0


def test_reconciliation_reports_a_balance_corrupted_behind_the_engines_back(
    stack: Stack,
) -> None:
    stack.overrides["P2P_RECONCILE_INTERVAL_S"] = "0.2"
    worker_url = _worker_metrics(stack)
    api = stack.start_api()
    with ApiClient(api.url) as client:
        payer, payee = client.customer(deposit=1_000), client.customer()
        ids = [client.accepted(transfer(payer, payee, 100))["id"] for _ in range(5)]
        client.wait_all_final([(payer, payment_id) for payment_id in ids])
    settled_at = time.time()

    healthy = poll(
        lambda: _reconciled_since(worker_url, settled_at),
        timeout=SCRAPE_TIMEOUT_S,
        what="a reconciliation run after the traffic",
    )
    assert value(healthy, "p2p_reconciliation_violations") == 0
    assert value(healthy, "p2p_reconciliation_checked_total", kind="account") >= 2
    assert value(healthy, "p2p_reconciliation_checked_total", kind="payment") >= 5

    # No trigger guards accounts, and one more cent still passes the CHECKs.
    _corrupt(stack, payee, +1)
    corrupted_at = time.time()

    # Balance against its newest entry, against its entries' sum, and all balances
    # against all deposits. (A run that began before the UPDATE still reports none.)
    poll(
        lambda: _violations_after(worker_url, corrupted_at, 3),
        timeout=SCRAPE_TIMEOUT_S,
        what="reconciliation to report 3 violations",
    )
    worker_log = next(p for p in stack.processes if p.name.startswith("worker")).log_text()
    reported_lines = [line for line in worker_log.splitlines() if "reconciliation" in line]
    assert any(
        "error" in line.lower() and payee.account_id in line and "balance 501" in line
        for line in reported_lines
    ), worker_log
    assert stack.verify().returncode == 1

    _corrupt(stack, payee, -1)
    mended_at = time.time()
    poll(
        lambda: _violations_after(worker_url, mended_at, 0),
        timeout=SCRAPE_TIMEOUT_S,
        what="reconciliation to find the ledger sound again",
    )


def _reconciled_since(url: str, moment: float) -> Samples | None:
    samples = scrape(url)
    last_run = samples.get(("p2p_reconciliation_last_run_timestamp_seconds", frozenset()))
    return samples if last_run is not None and last_run > moment else None


def _violations_after(url: str, moment: float, expected: int) -> bool | None:
    samples = _reconciled_since(url, moment)
    if samples is None:
        return None
    return value(samples, "p2p_reconciliation_violations") == expected or None


def _corrupt(stack: Stack, customer: Customer, cents: int) -> None:
    with stack.database().connect() as conn:
        conn.execute(
            "UPDATE accounts SET balance = balance + ? WHERE id = ?", (cents, customer.account_id)
        )


def test_a_worker_whose_metrics_port_is_taken_does_not_start(stack: Stack) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        stack.overrides["P2P_WORKER_METRICS_PORT"] = str(holder.getsockname()[1])
        worker = stack.start_worker()

        assert worker.wait_exit(timeout=20) == 1
    assert "cannot serve metrics on 127.0.0.1:" in worker.log_text()


def test_dev_serves_the_workers_metrics_on_the_api_endpoint(dev_stack: Stack) -> None:
    dev = dev_stack.start_dev()
    with ApiClient(dev.url) as client:
        payer, payee = client.customer(deposit=100), client.customer()
        first = client.accepted(transfer(payer, payee, 100))["id"]
        second = client.accepted(transfer(payer, payee, 100))["id"]
        client.wait_all_final([(payer, first), (payer, second)])

    def settled_twice() -> Samples | None:
        samples = scrape(f"{dev.url}/metrics")
        return samples if value(samples, "p2p_settle_latency_seconds_count") == 2 else None

    samples = poll(settled_twice, timeout=SCRAPE_TIMEOUT_S, what="both settled in the metrics")
    assert value(samples, "p2p_payments_accepted_total") == 2
    assert value(samples, "p2p_payments_settled_total", outcome="completed", code="") == 1
    failed = value(
        samples, "p2p_payments_settled_total", outcome="failed", code="insufficient_funds"
    )
    assert failed == 1
    assert value(samples, "p2p_queue_messages", queue="payments", state="ready") == 0
    assert value(samples, "p2p_payments_pending") == 0
