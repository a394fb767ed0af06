"""Deliveries are written with their events: one per enabled endpoint of the event's
reader that wants its type, in the event's own transaction (``shared.events.
record_events`` calls ``deliveries_of`` and ``write_deliveries``). A delivery exists if
and only if its event does, and an endpoint made after an event never gets it. The
worker sends them (``shared.webhook_attempts``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from shared.clock import new_id
from shared.enums import DeliveryStatus, WebhookEndpointStatus
from shared.store import Connection, chunks, marks, rows


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    id: str
    user_id: str
    type: str


Delivery = tuple[str, str, str, str]
"""A delivery to write: its id, its endpoint's, its event's, the event's type."""


def deliveries_of(conn: Connection, events: Sequence[RecordedEvent]) -> list[Delivery]:
    """The deliveries ``events`` make: one indexed read of their readers'
    endpoints (none at all when nobody has one). Read before the events are written, so
    that this costs nothing inside the commit order's lock (``Engine.order_commits``)."""
    user_ids = list(dict.fromkeys(event.user_id for event in events))
    wanted: dict[str, list[tuple[str, frozenset[str] | None]]] = {}
    for chunk in chunks(user_ids):
        for row in conn.execute(
            "SELECT id, user_id, event_types FROM webhook_endpoints"
            f" WHERE user_id IN ({marks(len(chunk))}) AND status = ?",
            (*chunk, WebhookEndpointStatus.ENABLED.value),
        ):
            types = None if row[2] is None else frozenset(json.loads(row[2]))
            wanted.setdefault(row[1], []).append((row[0], types))
    return [
        (new_id("whd"), endpoint_id, event.id, event.type)
        for event in events
        for endpoint_id, types in wanted.get(event.user_id, ())
        if types is None or event.type in types
    ]


def write_deliveries(conn: Connection, deliveries: Sequence[Delivery], created_at: str) -> None:
    """Write them, due at once, once their events are: one multi-row ``INSERT`` per
    ``ROWS_PER_STATEMENT``."""
    pending = DeliveryStatus.PENDING.value
    written = [(*delivery, pending, created_at, created_at) for delivery in deliveries]
    for chunk in chunks(written):
        conn.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, status,"
            f" next_attempt_at, created_at) VALUES {rows(len(chunk), 7)}",
            [value for row in chunk for value in row],
        )
