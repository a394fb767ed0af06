"""Worker fixtures: each test module brings its own ``settings``; the database follows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.db import Database
from shared.settings import Settings


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database.from_settings(settings)
    database.migrate()
    yield database
    database.close()
