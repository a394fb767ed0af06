"""The store: where the payment core keeps its state, behind one interface.

Store code gets a ``Connection`` from ``Database.write()`` (a write transaction),
``read()`` (one snapshot) or ``connection()`` (autocommit, one statement at a time) and
writes its SQL once; what it must do differently on an engine, it asks of
``conn.engine`` (an ``Engine``).

- ``shared.store.base``: the interface (``Database``, ``Engine``, ``Connection``,
  ``Row``) and the placeholder helpers (``marks``, ``rows``, ``chunks``), re-exported here.
- ``shared.store.sqlite``: a SQLite file in WAL mode (``SQLiteDatabase``).
- ``shared.store.postgres``: PostgreSQL through a psycopg pool (``PostgresDatabase``).
- ``shared.store.opening``: ``open_store``, the one ``P2P_DATABASE_URL`` names.

This package imports only the interface: an engine's module imports the schema, which
imports the records, which import ``Row`` from here.
"""

from __future__ import annotations

from shared.store.base import (
    ROWS_PER_STATEMENT,
    Connection,
    Cursor,
    Database,
    Engine,
    Params,
    Row,
    chunks,
    marks,
    rows,
)

__all__ = [
    "ROWS_PER_STATEMENT",
    "Connection",
    "Cursor",
    "Database",
    "Engine",
    "Params",
    "Row",
    "chunks",
    "marks",
    "rows",
]
