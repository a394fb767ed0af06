"""Fixtures for the unit tests: each test gets its own migrated database, on each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.store import Database
from tests.backends import open_database
from tests.unit.helpers import Customer, new_customer


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A fresh, migrated database of its own (SQLite file or PostgreSQL), closed after."""
    database = open_database(database_url)
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
