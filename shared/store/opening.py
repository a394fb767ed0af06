"""Which ``Database`` the settings name."""

from __future__ import annotations

from shared.settings import Settings
from shared.store.base import Database
from shared.store.sqlite import SQLiteDatabase


def open_store(settings: Settings) -> Database:
    """The database ``P2P_DATABASE_URL`` names, opened."""
    if settings.postgres_url is not None:
        from shared.store.postgres import PostgresDatabase  # psycopg only when it is used

        return PostgresDatabase(
            settings.postgres_url,
            pool_size=settings.postgres_pool_size,
            event_loop_pool_size=settings.postgres_event_loop_pool_size,
        )
    return SQLiteDatabase(
        settings.sqlite_path,
        synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
