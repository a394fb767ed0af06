"""The Python examples of the README and of docs/client.md's quickstart and holds,
refunds and batches, run as written against the API served on a loopback port; the
guide's fragments (which need a client, a secret or a receiver) at least compile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_API = '"http://127.0.0.1:8000"'


def python_blocks(page: str, heading: str) -> list[str]:
    text = (ROOT / page).read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def run(code: str, base_url: str, name: str) -> None:
    assert EXAMPLE_API in code
    exec(compile(code.replace(EXAMPLE_API, repr(base_url)), name, "exec"), {})


def test_the_readme_client_example_reaches_completed(
    base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (example,) = python_blocks("README.md", "## The same from Python")

    run(example, base_url, "README.md")

    assert capsys.readouterr().out == "completed\n"


def test_the_sync_and_async_quickstarts_reach_completed(
    base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sync, asynchronous = python_blocks("docs/client.md", "## Quickstart")

    run(sync, base_url, "docs/client.md")
    run(asynchronous, base_url, "docs/client.md")

    assert capsys.readouterr().out == "completed None\ncredit 2500 2500\ncompleted\n"


def test_the_holds_refunds_and_batches_example_prints_what_its_comments_say(
    base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (example,) = python_blocks("docs/client.md", "## Holds, refunds and batches")

    run(example, base_url, "docs/client.md")

    printed = capsys.readouterr().out.splitlines()
    said = [line.split("# ", 1)[1] for line in example.splitlines() if "print(" in line]
    assert printed == said == ["authorized 4000", "completed 3000", "completed 500", "3"]


def test_every_python_example_of_the_client_guide_compiles() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs/client.md").read_text(), re.DOTALL)

    for block in blocks:
        compile(block, "docs/client.md", "exec")

    assert blocks
