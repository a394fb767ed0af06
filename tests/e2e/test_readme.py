"""The README's submit-then-poll example, run as written against ``p2p dev``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import Stack

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    section = README.read_text().split("## Submit, then poll", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README lost its submit-then-poll example"
    return match.group(1)


def _tools() -> None:
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        reason = f"the README example needs {', '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: not skipped in CI")
        pytest.skip(reason)


def test_the_readme_example_reaches_completed(dev_stack: Stack) -> None:
    _tools()
    api = dev_stack.start_dev()
    script = _example().replace("API=http://127.0.0.1:8000", f"API={api.url}")
    assert f"API={api.url}" in script
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"status": "completed"' in done.stdout
    assert '"balance_after": 2500' in done.stdout
    dev_stack.assert_ledger_holds()
