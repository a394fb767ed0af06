"""Fixtures for the unit tests: each test gets its own migrated SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.db import Database
from tests.unit.helpers import Customer, new_customer


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated database on a file of its own, closed after the test."""
    database = Database(str(tmp_path / "p2p.db"))
    database.migrate()
    yield database
    database.close()


@pytest.fixture
def alice(db: Database) -> Customer:
    """Alice: USD ``main`` with 1000 and USD ``savings`` with 500."""
    return new_customer(db, "Alice")


@pytest.fixture
def bob(db: Database) -> Customer:
    """Bob: USD ``main`` with 1000 and USD ``savings`` with 500."""
    return new_customer(db, "Bob")


@pytest.fixture
def carol(db: Database) -> Customer:
    """Carol: USD ``main`` with 1000 and USD ``savings`` with 500."""
    return new_customer(db, "Carol")
