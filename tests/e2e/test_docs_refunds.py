"""docs/api.md's partial refund, run as written after the README's example, against
``p2p dev``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import Stack, poll
from tests.e2e.test_readme import _example, _tools

pytestmark = pytest.mark.postgresql  # runs on SQLite and on PostgreSQL

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _walkthrough() -> str:
    """The shell blocks of the Refunds section's walk-through, in order."""
    section = API_DOC.read_text().split("\n## Refunds\n", 1)[1].split("\n## ", 1)[0]
    walk = section.split("A partial refund, then the rest", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", walk, re.DOTALL)
    assert len(blocks) == 2, "the Refunds walk-through lost a shell block"
    return "".join(blocks)


def test_the_partial_refund_of_the_docs_refunds_all_of_the_rent(dev_stack: Stack) -> None:
    _tools()
    api = dev_stack.start_dev()
    script = (_example() + _walkthrough()).replace("API=http://127.0.0.1:8000", f"API={api.url}")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script + 'echo "PAYMENT=$PAYMENT"\n'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "HTTP/1.1 202 Accepted" in out
    assert '"completed"\n400\n' in out
    assert '"amount": 2100' in out
    assert '"code":"refund_exceeds_payment"' in out
    payment = out.rsplit("PAYMENT=", 1)[1].strip()
    db = dev_stack.database()
    poll(lambda: db.pending() == 0 or None, timeout=30, what="the second refund to settle")
    assert db.scalar("SELECT refunded_amount FROM payments WHERE id = ?", payment) == 2500
    dev_stack.assert_ledger_holds()
