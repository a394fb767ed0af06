"""``p2p bench``'s options become its plan: sizes, and the accounts transfers go between."""

from __future__ import annotations

import argparse

import pytest

from bench.run import Plan, add_arguments


def _plan(*argv: str) -> Plan:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return Plan.of(parser.parse_args(argv))


def test_the_default_run_and_the_quick_one() -> None:
    assert _plan() == Plan(payments=20_000, connections=32, sustained_s=30, accounts=100)
    assert _plan("--quick") == Plan(payments=4_000, connections=32, sustained_s=6, accounts=100)


def test_accounts_sets_how_many_the_transfers_go_between() -> None:
    assert _plan("--accounts", "3000").accounts == 3000
    assert _plan("--quick", "--accounts", "2").accounts == 2


@pytest.mark.parametrize("count", ["1", "0", "-5"])
def test_fewer_than_two_accounts_is_refused(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _plan("--accounts", count)
    assert "a transfer needs two accounts" in capsys.readouterr().err
