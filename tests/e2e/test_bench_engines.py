"""``p2p bench`` given a SQLite and a PostgreSQL ``--database-url``: the phases run on
both in one go, and the figures say how PostgreSQL compares with SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backends import PostgresServer

# Tiny, so that the run takes seconds: these figures are checked for what they are made
# of, not for their size.
TINY = ["--payments", "200", "--seconds", "1", "--accounts", "4", "--connections", "4"]


@pytest.mark.redis
def test_one_run_on_both_engines_reports_postgresql_as_a_share_of_sqlite(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    out = tmp_path / "figures.json"
    # PostgreSQL named first: the run still measures SQLite first, and divides by it.
    urls = ["--database-url", postgres_server.admin_url, "--database-url", "sqlite:///"]
    done = subprocess.run(
        [sys.executable, "-m", "cli", "bench", *TINY, "--json", str(out), *urls],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    figures = json.loads(out.read_text())
    sqlite, postgresql = figures["sqlite"], figures["postgresql"]
    assert (sqlite["database"], postgresql["database"]) == ("sqlite", "postgresql")
    for engine in (sqlite, postgresql):
        assert engine["payments"] == 200
        assert engine["submit_rps"] > 0
        assert engine["drain_rps"] > 0
        assert engine["settle_p99_ms"] > 0
        # One ceiling for both: the no-op endpoint and actor touch no database.
        assert engine["noop_rps"] == sqlite["noop_rps"]
        assert engine["queue_noop_rps"] == sqlite["queue_noop_rps"]
    submit = postgresql["submit_rps"] / sqlite["submit_rps"]
    drain = postgresql["drain_rps"] / sqlite["drain_rps"]
    assert figures["pg_submit_vs_sqlite"] == pytest.approx(submit)
    assert figures["pg_drain_vs_sqlite"] == pytest.approx(drain)
    assert figures["sqlite_settle_p99_ms"] == sqlite["settle_p99_ms"]
    assert figures["postgresql_settle_p99_ms"] == postgresql["settle_p99_ms"]
    targets = figures["targets"]
    assert targets["pg_submit_vs_sqlite"] == {
        "value": submit,
        "at_least": 0.7,
        "met": submit >= 0.7,
    }
    assert targets["pg_drain_vs_sqlite"]["met"] == (drain >= 0.7)
    for name in ("sqlite", "postgresql"):
        p99 = figures[name]["settle_p99_ms"]
        assert targets[f"{name}_settle_p99_ms"] == {"value": p99, "at_most": 250, "met": p99 <= 250}
    assert "| PostgreSQL beside SQLite |" in done.stdout
    assert "| measure (postgresql, 200 payments, 4 connections) |" in done.stdout
