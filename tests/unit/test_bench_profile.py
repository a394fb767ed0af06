"""The pieces of a drain's profile that need no running stack: reading /proc, telling
backends and statements apart, and the projection onto more cores."""

from __future__ import annotations

import os

from bench.pg_activity import activity, backend_kind, statement
from bench.process_cpu import cpu_times, machine_times
from bench.scaling import projection


def test_this_process_has_spent_cpu_and_a_process_gone_reads_as_none() -> None:
    sum(n * n for n in range(200_000))
    mine = cpu_times(os.getpid())

    assert mine is not None
    assert mine.cpu_s > 0
    assert mine.runqueue_s >= 0
    assert cpu_times(2**22 + 1) is None  # above any pid_max Linux allows


def test_the_machine_counts_busy_and_idle_time_forward() -> None:
    before = machine_times()
    sum(n * n for n in range(200_000))
    spent = machine_times() - before

    assert spent.busy_s > 0
    assert spent.idle_s >= 0


def test_backends_are_told_apart_by_the_name_their_process_gave_them() -> None:
    assert backend_kind("p2p-worker", "client backend") == "worker"
    assert backend_kind("p2p-api", "client backend") == "api"
    assert backend_kind("psql", "client backend") == "bench"
    assert backend_kind("", "walwriter") == "server"


def test_a_backend_sampled_is_running_waiting_thinking_client_side_or_idle() -> None:
    assert activity("active", None, None) == "running"
    assert activity("active", "Lock", "transactionid") == "Lock/transactionid"
    assert activity("idle in transaction", "Client", "ClientRead") == "in transaction: client"
    assert activity("idle", "Client", "ClientRead") == "idle"
    assert activity(None, "Activity", "WalWriterMain") == "Activity/WalWriterMain"


def test_settle_statements_are_named_and_others_shown_by_their_first_words() -> None:
    claim = (
        "SELECT * FROM payments WHERE status = 'pending' ORDER BY seq LIMIT $1"
        " FOR NO KEY UPDATE SKIP LOCKED"
    )

    assert statement(claim) == "claim payments"
    assert statement("SELECT pg_advisory_xact_lock($1)") == "commit order"
    assert statement("INSERT INTO ledger_entries (id) VALUES ($1)") == "insert entries"
    assert statement("SELECT refund_of, status FROM payments") == "SELECT refund_of, status"
    assert statement("") == "none"


def test_the_projection_is_bound_by_cores_over_cpu_and_by_the_serialized_part() -> None:
    figures = {
        # 1 ms of settling CPU a payment; 0.25 ms under the commit order's lock, 0.5 ms
        # in the settling transaction (two workers can run two of those at once).
        "workers": 2,
        "cpu_ms_per_payment": {"worker": 0.5, "pg: worker backends": 0.5, "api": 9.0},
        "commit_order_ms_per_payment": 0.25,
        "worker_transaction_ms_per_payment": 0.5,
    }

    projected = projection(figures)

    assert projected["cold"] == {"1": 1000, "2": 2000, "4": 4000, "8": 4000, "16": 4000}
    assert projected["hot"] == {"1": 1000, "2": 2000, "4": 2000, "8": 2000, "16": 2000}


def test_one_worker_settles_one_transaction_at_a_time_even_on_cold_accounts() -> None:
    figures = {
        "workers": 1,
        "cpu_ms_per_payment": {"worker": 0.25},
        "commit_order_ms_per_payment": 0.1,
        "worker_transaction_ms_per_payment": 0.5,
    }

    assert projection(figures)["cold"]["16"] == 2000.0


def test_without_a_serialized_part_the_projection_grows_with_the_cores() -> None:
    figures = {"cpu_ms_per_payment": {"worker": 2.0}}

    assert projection(figures)["cold"]["16"] == 8000.0
