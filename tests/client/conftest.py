"""Fixtures of the client tests: the real API over a database per test (both engines),
with a worker on the in-process broker that settles what it accepts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from api.app import create_app
from jobs.broker import in_process_broker
from jobs.producer import SettlementQueue
from shared.settings import Settings
from shared.store import Database
from tests.api.support import make_settings
from tests.client.support import served
from worker.runtime import WorkerRuntime


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
def runtime(settings: Settings, db: Database) -> Iterator[WorkerRuntime]:
    worker = WorkerRuntime(settings, in_process_broker(), db)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def api(settings: Settings, db: Database, runtime: WorkerRuntime) -> Iterator[FastAPI]:
    """The API as ``p2p dev`` wires it: what it accepts, the worker settles."""
    queue = SettlementQueue(runtime.broker, settings.queue_name)
    try:
        yield create_app(settings, db, queue)
    finally:
        queue.close()


@pytest.fixture
def base_url(api: FastAPI) -> Iterator[str]:
    """The API served over HTTP on a loopback port, for the synchronous client."""
    with served(api) as url:
        yield url
