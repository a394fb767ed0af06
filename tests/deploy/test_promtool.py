"""The shipped alerting rules and Prometheus configs pass Prometheus's own checker, and the
alerts fire on the trouble they are for (``promtool test rules``).

promtool comes from Debian's ``prometheus`` package: ``make install`` puts it in the
virtualenv (``deploy/get-promtool``). Without it these tests are skipped with the reason,
and under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.queries import PROMETHEUS


@pytest.fixture(scope="module")
def promtool() -> str:
    beside_python = Path(sys.executable).with_name("promtool")
    found = str(beside_python) if beside_python.exists() else shutil.which("promtool")
    if found is None:
        reason = (
            "promtool not found: run `make install` (deploy/get-promtool),"
            " or install Debian's prometheus package"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; the alert rules are never left unchecked in CI")
        pytest.skip(reason)
    return found


def _run(promtool: str, *args: str) -> str:
    result = subprocess.run(
        [promtool, *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_the_alerting_rules_pass_promtool_check_rules(promtool: str) -> None:
    output = _run(promtool, "check", "rules", "alerts.yml")
    assert "SUCCESS" in output


def test_the_alerts_fire_on_their_trouble_and_stay_quiet_on_a_healthy_stack(
    promtool: str,
) -> None:
    output = _run(promtool, "test", "rules", "alerts.test.yml")
    assert "SUCCESS" in output


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.postgres.yml"])
def test_each_prometheus_config_passes_promtool_check_config(promtool: str, config: str) -> None:
    output = _run(promtool, "check", "config", config)
    assert "SUCCESS: 1 rule files found" in output
