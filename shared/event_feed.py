"""The event feed: a user's events, oldest first, after a cursor; and their pruning.

Events are read in ``seq`` order, which is commit order (``Engine.order_commits``): a
consumer that keeps the cursor of the last event it was handed sees every event once,
in order. The cursor names that event and nothing else (as ``shared.pages``'s do): its
``seq`` is looked up again among the caller's own events when it comes back.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.clock import from_text, to_text, utcnow
from shared.enums import EventType
from shared.errors import InvalidCursor
from shared.pages import cursor_item, encode_cursor
from shared.store import Connection, Database, Row, chunks, marks, rows

PRUNE_BATCH = 1000
"""Events one pruning statement deletes at most: a short write, however many are due."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: EventType
    created_at: datetime
    object: dict[str, Any]

    @classmethod
    def from_row(cls, row: Row) -> Event:
        return cls(
            row["id"],
            EventType(row["type"]),
            from_text(row["created_at"]),
            json.loads(row["object"]),
        )


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events after a cursor; ``next_cursor`` continues after them (the cursor given, when
    there are none). ``position`` is internal: where the caller's feed stood when read,
    for a long-poll to wait for anything newer."""

    data: list[Event]
    has_more: bool
    next_cursor: str | None
    position: int


def read_events(
    db: Database,
    user_id: str,
    *,
    after: str | None,
    limit: int,
    types: Collection[EventType] | None = None,
) -> EventPage:
    """The caller's events after the one ``after`` names (from the oldest kept when
    ``None``), oldest first, at most ``limit``; only those of ``types`` when given.

    Raises:
        InvalidCursor: ``after`` does not name one of the caller's events (never one,
            or one pruned since).
    """
    with db.read() as conn:
        start = 0 if after is None else _position_of(conn, user_id, after)
        typed = "" if not types else f" AND type IN ({marks(len(types))})"
        found = conn.execute(
            "SELECT seq, id, type, object, created_at FROM events"
            f" WHERE user_id = ? AND seq > ?{typed} ORDER BY seq LIMIT ?",
            (user_id, start, *sorted(types or ()), limit + 1),
        ).fetchall()
        page = found[:limit]
        if page:
            position = int(page[-1]["seq"])
        else:
            # Events of other types may lie past the cursor: a long-poll waits for newer.
            (newest,) = conn.execute(
                "SELECT max(seq) FROM events WHERE user_id = ?", (user_id,)
            ).fetchone()
            position = max(start, int(newest or 0))
    return EventPage(
        [Event.from_row(row) for row in page],
        len(found) > limit,
        encode_cursor(page[-1]["id"]) if page else after,
        position,
    )


def feeds_grown_past(db: Database, feeds: Collection[tuple[str, int]]) -> set[tuple[str, int]]:
    """Those of these (user, position) with an event past the position: one index
    probe each, all in one query."""
    grown: set[tuple[str, int]] = set()
    for chunk in chunks(list(feeds)):
        found = db.connection().execute(
            f"WITH waiting (user_id, after) AS (VALUES {rows(len(chunk), 2)})"
            " SELECT user_id, after FROM waiting WHERE EXISTS (SELECT 1 FROM events"
            " WHERE events.user_id = waiting.user_id AND events.seq > waiting.after)",
            [value for feed in chunk for value in feed],
        )
        grown.update((row[0], int(row[1])) for row in found)
    return grown


def prune_events(db: Database, *, older_than: timedelta, batch: int = PRUNE_BATCH) -> int:
    """Delete events recorded more than ``older_than`` ago, oldest first, in
    transactions of at most ``batch``; returns how many.

    What goes is always the oldest events by ``seq``, up to the first that is still
    kept: the feed loses a prefix and never an event between two it keeps.
    """
    cutoff = to_text(utcnow() - older_than)
    deleted = 0
    while True:
        count = db.run(_prune_batch, cutoff, batch)
        deleted += count
        if count < batch:
            return deleted


def _prune_batch(conn: Connection, cutoff: str, batch: int) -> int:
    oldest = conn.execute(
        "SELECT seq, created_at FROM events ORDER BY seq LIMIT ?", (batch,)
    ).fetchall()
    due = 0
    for row in oldest:
        if row["created_at"] >= cutoff:
            break
        due += 1
    if due:
        conn.execute("DELETE FROM events WHERE seq <= ?", (oldest[due - 1]["seq"],))
    return due


def _position_of(conn: Connection, user_id: str, cursor: str) -> int:
    row = conn.execute(
        "SELECT seq FROM events WHERE id = ? AND user_id = ?", (cursor_item(cursor), user_id)
    ).fetchone()
    if row is None:
        raise InvalidCursor("the cursor is not one this service handed out, or its event is gone")
    return int(row[0])
