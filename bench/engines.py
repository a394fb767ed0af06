"""SQLite and PostgreSQL in one run: PostgreSQL's submit and drain rates as shares of
SQLite's, and the settle latency of each, against their targets."""

from __future__ import annotations

from typing import Any

PG_SUBMIT_VS_SQLITE = 0.7
"""PostgreSQL's ``submit_rps`` at least this share of SQLite's."""
PG_DRAIN_VS_SQLITE = 0.7
"""PostgreSQL's ``drain_rps`` at least this share of SQLite's."""
SETTLE_P99_MS = 250.0
"""The settle p99 at half load at most this, on each engine."""


def compare(sqlite: dict[str, Any], postgresql: dict[str, Any]) -> dict[str, Any]:
    """The ratios, each engine's settle p99, and whether each meets its target."""
    submit = postgresql["submit_rps"] / sqlite["submit_rps"]
    drain = postgresql["drain_rps"] / sqlite["drain_rps"]
    return {
        "pg_submit_vs_sqlite": submit,
        "pg_drain_vs_sqlite": drain,
        "sqlite_settle_p99_ms": sqlite["settle_p99_ms"],
        "postgresql_settle_p99_ms": postgresql["settle_p99_ms"],
        "targets": {
            "pg_submit_vs_sqlite": _at_least(submit, PG_SUBMIT_VS_SQLITE),
            "pg_drain_vs_sqlite": _at_least(drain, PG_DRAIN_VS_SQLITE),
            "sqlite_settle_p99_ms": _at_most(sqlite["settle_p99_ms"], SETTLE_P99_MS),
            "postgresql_settle_p99_ms": _at_most(postgresql["settle_p99_ms"], SETTLE_P99_MS),
        },
    }


def _at_least(value: float, bound: float) -> dict[str, Any]:
    return {"value": value, "at_least": bound, "met": value >= bound}


def _at_most(value: float, bound: float) -> dict[str, Any]:
    return {"value": value, "at_most": bound, "met": value <= bound}


def report_comparison(figures: dict[str, Any]) -> None:
    """The table of what ``compare`` put in ``figures``, beside each engine's figure."""
    sqlite, postgresql, targets = figures["sqlite"], figures["postgresql"], figures["targets"]

    def met(name: str) -> str:
        return "met" if targets[name]["met"] else "**not met**"

    workers = sqlite.get("workers", 1)
    rows = [
        (
            "submit",
            f"{sqlite['submit_rps']:,.0f} req/s",
            f"{postgresql['submit_rps']:,.0f} req/s",
            f"{figures['pg_submit_vs_sqlite']:.2f}",
            f"≥ {PG_SUBMIT_VS_SQLITE:.2f}: {met('pg_submit_vs_sqlite')}",
        ),
        (
            f"drain ({workers} worker process{'es' if workers > 1 else ''})",
            f"{sqlite['drain_rps']:,.0f} payments/s",
            f"{postgresql['drain_rps']:,.0f} payments/s",
            f"{figures['pg_drain_vs_sqlite']:.2f}",
            f"≥ {PG_DRAIN_VS_SQLITE:.2f}: {met('pg_drain_vs_sqlite')}",
        ),
        (
            "settle p99 at half load",
            f"{sqlite['settle_p99_ms']:,.0f} ms",
            f"{postgresql['settle_p99_ms']:,.0f} ms",
            "",
            f"≤ {SETTLE_P99_MS:.0f} ms: SQLite {met('sqlite_settle_p99_ms')}, "
            f"PostgreSQL {met('postgresql_settle_p99_ms')}",
        ),
    ]
    print()
    print("| PostgreSQL beside SQLite | SQLite | PostgreSQL | PostgreSQL / SQLite | target |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
