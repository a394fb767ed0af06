"""End-to-end fixtures: a ``Stack`` of real processes per test, its logs shown on failure.

Every stack runs on the test's ``database_url``: SQLite, and PostgreSQL too for the
scenarios marked ``@pytest.mark.postgresql`` (tests/backends.py).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.e2e.harness import NO_REDIS_URL, Stack

_STACK = pytest.StashKey[Stack]()


def _open(
    request: pytest.FixtureRequest, directory: Path, redis_url: str, database_url: str
) -> Iterator[Stack]:
    stack = Stack(directory, redis_url, database_url)
    request.node.stash[_STACK] = stack
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer, database_url: str
) -> Iterator[Stack]:
    """Processes on the suite's Redis, emptied first so no test sees another's messages."""
    redis_server.flushall()
    yield from _open(request, tmp_path, redis_server.url, database_url)


@pytest.fixture
def isolated_stack(
    request: pytest.FixtureRequest, tmp_path: Path, fresh_redis: RedisServer, database_url: str
) -> Iterator[Stack]:
    """Processes on a Redis of this test's own (``fresh_redis``), to stop and start."""
    yield from _open(request, tmp_path, fresh_redis.url, database_url)


@pytest.fixture
def dev_stack(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """For ``p2p dev``, which needs no Redis: its URL points where nothing listens."""
    yield from _open(request, tmp_path, NO_REDIS_URL, database_url)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed scenario shows what every process it started wrote."""
    report = yield
    stack = item.stash.get(_STACK, None)
    if report.failed and stack is not None:
        report.sections.append(("p2p process logs", stack.logs()))
    return report
