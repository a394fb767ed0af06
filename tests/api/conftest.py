"""Fixtures of the API tests: a database file per test, the app over it, and a worker.

``client`` answers with a queue nobody consumes, so accepted payments stay ``pending``
until a test settles them; ``settling_client`` is wired like ``p2p dev``: a started
``WorkerRuntime`` on an in-process broker settles what the API accepts, and
``runtime.join()`` waits until it has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.broker import in_process_broker
from jobs.producer import SettlementQueue
from shared.settings import Settings
from shared.store import Database
from tests.api.support import Caller, Settle, app_of, idle_queue, make_settings, serve, sign_up
from worker.runtime import WorkerRuntime


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Settings:
    """Overridden per test with ``@pytest.mark.parametrize("settings", [{...}], indirect=True)``."""
    overrides: dict[str, Any] = {"database_url": database_url, **getattr(request, "param", {})}
    return make_settings(tmp_path, **overrides)


@pytest.fixture
def runtime(settings: Settings, db: Database) -> Iterator[WorkerRuntime]:
    worker = WorkerRuntime(settings, in_process_broker(), db)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    with idle_queue(settings, db) as queue, serve(settings, db, queue) as test_client:
        yield test_client


@pytest.fixture
def settle(settling_client: TestClient, runtime: WorkerRuntime) -> Settle:
    """Wait until every payment submitted through ``settling_client`` so far is settled:
    its messages are sent in the background, then the worker works them off."""

    def settle_all() -> None:
        app_of(settling_client).state.services.queue.flush()
        runtime.join()

    return settle_all


@pytest.fixture
def settling_client(
    settings: Settings, db: Database, runtime: WorkerRuntime
) -> Iterator[TestClient]:
    with serve(settings, db, SettlementQueue(runtime.broker, settings.queue_name)) as test_client:
        yield test_client


@pytest.fixture
def ada(client: TestClient) -> Caller:
    return sign_up(client, "Ada")


@pytest.fixture
def bob(client: TestClient) -> Caller:
    return sign_up(client, "Bob")
