"""``p2p bench --workers-sweep``: each round drains its backlog and says where the CPU and
the database's time went, on either backend."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.run import add_arguments, run


@pytest.mark.postgresql
def test_a_profiled_sweep_accounts_for_every_payment_and_the_cpu_that_settled_it(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    server = (
        "sqlite:///"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_server").admin_url
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    figures_path = tmp_path / "figures.json"
    args = parser.parse_args(
        [
            "--workers-sweep", "1,2",
            "--accounts-sweep", "2,3",
            "--payments", "200",
            "--connections", "4",
            "--database-url", server,
            "--json", str(figures_path),
        ]
    )  # fmt: skip

    assert run(args) == 0

    (sweep,) = json.loads(figures_path.read_text())["sweeps"]
    rounds = sweep["workers_sweep"]
    assert [(r["accounts"], r["workers"]) for r in rounds] == [(2, 1), (2, 2), (3, 1), (3, 2)]
    for one in rounds:
        # The workers, booted and stopped while the backlog came in, settle all of it in
        # the window.
        assert one["window_payments"] == 200
        # CPU is counted in clock ticks (10 ms): a round's is positive, not each one's.
        assert one["cpu_ms_per_payment"]["worker"] + one["cpu_ms_per_payment"]["redis"] > 0
        assert len(one["worker_busy_cores"]) == one["workers"]
        assert one["group_size"] >= 1
        assert 0 <= one["machine_idle_share"] <= 1
    if backend == "sqlite":
        assert all("projection_rps" not in one for one in rounds)
    else:
        for one in rounds:
            assert one["samples"] > 0
            assert 0 <= one["commit_order_held_share"] <= 1
            for projected in one["projection_rps"].values():
                assert projected["1"] <= projected["2"] <= projected["16"]
        assert sum(one["cpu_ms_per_payment"]["pg: worker backends"] for one in rounds) > 0
        statements = {
            name.split(":")[0] for one in rounds for name in one["worker_statement_ms_per_payment"]
        }
        assert "insert entries" in statements
    table = capsys.readouterr().out
    assert f"{sweep['database']}: CPU ms per payment" in table
    # A row per round of 3 accounts in the profile, and on PostgreSQL in the projection.
    assert table.count("\n| 3 | ") == (2 if backend == "sqlite" else 4)
