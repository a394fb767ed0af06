"""``p2p bench``'s options become its plan: sizes, and the accounts transfers go between;
``p2p`` hands them over, and imports the benchmark only then."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import bench.run
from bench.run import Plan, add_arguments
from cli.main import main


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


def test_p2p_starts_without_importing_the_benchmark_the_api_or_the_worker() -> None:
    """Each command imports what it runs: ``p2p verify`` and ``p2p copy`` load neither
    FastAPI nor Dramatiq (a test run starts ``p2p`` hundreds of times)."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import cli.main, sys; "
            "print(sorted({m.split('.')[0] for m in sys.modules}"
            " & {'bench', 'api', 'worker', 'jobs', 'fastapi', 'dramatiq'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    assert loaded.stdout.strip() == "[]"


def test_p2p_bench_hands_its_options_to_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    planned: list[Plan] = []

    def record(args: argparse.Namespace) -> int:
        planned.append(Plan.of(args))
        return 0

    monkeypatch.setattr(bench.run, "run", record)

    assert main(["bench", "--quick", "--accounts", "7"]) == 0
    assert planned == [Plan(payments=4_000, connections=32, sustained_s=6, accounts=7)]


def test_an_option_p2p_bench_does_not_know_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--no-such-option"])

    assert exit_.value.code == 2
    assert "p2p bench: error: unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_another_command_still_refuses_an_option_it_does_not_know(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--quick"])

    assert exit_.value.code == 2
    assert "unrecognized arguments: --quick" in capsys.readouterr().err
