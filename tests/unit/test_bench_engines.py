"""``p2p bench`` on two engines: the ratios and targets it reports, and the lists of
``--database-url`` it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from bench.engines import compare
from cli.main import main


def _figures(submit: float, drain: float, settle_p99: float) -> dict[str, Any]:
    return {"submit_rps": submit, "drain_rps": drain, "settle_p99_ms": settle_p99}


def test_postgresql_is_compared_as_a_share_of_sqlite() -> None:
    compared = compare(_figures(2_000, 3_000, 40), _figures(1_000, 2_400, 90))

    assert compared["pg_submit_vs_sqlite"] == 0.5
    assert compared["pg_drain_vs_sqlite"] == 0.8
    assert (compared["sqlite_settle_p99_ms"], compared["postgresql_settle_p99_ms"]) == (40, 90)
    assert {name: target["met"] for name, target in compared["targets"].items()} == {
        "pg_submit_vs_sqlite": False,
        "pg_drain_vs_sqlite": True,
        "sqlite_settle_p99_ms": True,
        "postgresql_settle_p99_ms": True,
    }


def test_a_target_met_exactly_is_met_and_a_settle_p99_over_it_is_not() -> None:
    compared = compare(_figures(1_000, 1_000, 250), _figures(700, 700, 250.5))

    targets = compared["targets"]
    assert targets["pg_submit_vs_sqlite"] == {"value": 0.7, "at_least": 0.7, "met": True}
    assert targets["pg_drain_vs_sqlite"]["met"]
    assert targets["sqlite_settle_p99_ms"] == {"value": 250, "at_most": 250, "met": True}
    assert targets["postgresql_settle_p99_ms"] == {"value": 250.5, "at_most": 250, "met": False}


@pytest.mark.parametrize(
    "urls",
    [
        ["sqlite:///", "sqlite:///"],
        ["postgresql://a/b", "postgresql://c/d"],
        ["sqlite:///", "postgresql://a/b", "sqlite:///"],
    ],
)
def test_several_database_urls_without_a_sweep_must_be_one_of_each_engine(
    urls: list[str],
) -> None:
    argv = ["bench"] + [arg for url in urls for arg in ("--database-url", url)]

    with pytest.raises(SystemExit, match="one sqlite:/// and one postgresql://"):
        main(argv)


def test_a_database_url_of_another_kind_is_refused_before_anything_starts() -> None:
    with pytest.raises(SystemExit, match="not 'mysql://a/b'"):
        main(["bench", "--database-url", "sqlite:///", "--database-url", "mysql://a/b"])
