"""Webhook endpoints and their delivery log, as their owner manages them.

An endpoint is a URL (checked by ``shared.webhook_urls`` before it gets here), the event
types it wants (``None``: every type), a secret shown once, and a status. Deliveries are
written with the events themselves (``shared.webhook_outbox``) and sent by the worker
(``shared.webhook_attempts``); here they are listed and retried. Another user's endpoint
or delivery is ``NotFound``, as everything else that is not the caller's.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.clock import from_text, new_id, to_text, utcnow
from shared.enums import DeliveryStatus, EventType, WebhookEndpointStatus
from shared.errors import NotFound, TooManyWebhookEndpoints, WebhookEndpointDisabled
from shared.pages import newest_first
from shared.records import Page
from shared.store import Connection, Database, Row
from shared.webhook_signing import new_secret


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """What may be shown of an endpoint: never its secrets."""

    id: str
    user_id: str
    url: str
    description: str | None
    event_types: list[EventType] | None
    status: WebhookEndpointStatus
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> WebhookEndpoint:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            url=row["url"],
            description=row["description"],
            event_types=read_event_types(row["event_types"]),
            status=WebhookEndpointStatus(row["status"]),
            created_at=from_text(row["created_at"]),
            updated_at=from_text(row["updated_at"]),
        )


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> WebhookDelivery:
        return cls(
            id=row["id"],
            endpoint_id=row["endpoint_id"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            status=DeliveryStatus(row["status"]),
            attempts=int(row["attempts"]),
            last_attempt_at=_moment(row["last_attempt_at"]),
            next_attempt_at=_moment(row["next_attempt_at"]),
            last_status_code=row["last_status_code"],
            last_error=row["last_error"],
            created_at=from_text(row["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    """A new endpoint as its creator sees it, once: with its secret."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    """What ``PATCH`` changes; ``None`` leaves a field as it is. ``all_types`` sets
    ``event_types`` back to every type."""

    url: str | None = None
    event_types: Collection[EventType] | None = None
    all_types: bool = False
    status: WebhookEndpointStatus | None = None


def read_event_types(stored: str | None) -> list[EventType] | None:
    """The stored JSON array; ``None`` (every type) as ``None``. Types this version
    does not know (written by a newer one) are left out."""
    if stored is None:
        return None
    known = set(EventType)
    return [EventType(name) for name in json.loads(stored) if name in known]


def create_endpoint(
    conn: Connection,
    user_id: str,
    url: str,
    *,
    event_types: Collection[EventType] | None,
    description: str | None,
    max_endpoints: int,
) -> CreatedEndpoint:
    """A new, enabled endpoint for an already checked URL, with its secret in clear.

    Raises:
        TooManyWebhookEndpoints: the user has ``max_endpoints`` already.
    """
    # The user's row, locked: two creations at once cannot both see room for one more.
    conn.execute(conn.engine.select_for_update("SELECT id FROM users WHERE id = ?"), (user_id,))
    (count,) = conn.execute(
        "SELECT count(*) FROM webhook_endpoints WHERE user_id = ?", (user_id,)
    ).fetchone()
    if count >= max_endpoints:
        raise TooManyWebhookEndpoints(
            f"you have {max_endpoints} webhook endpoints, as many as one may: delete one first"
        )
    now = to_text(utcnow())
    endpoint_id = new_id("whe")
    secret = new_secret()
    conn.execute(
        "INSERT INTO webhook_endpoints (id, user_id, url, description, event_types, secret,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (endpoint_id, user_id, url, description, _types_json(event_types), secret, now, now),
    )
    return CreatedEndpoint(_owned(conn, user_id, endpoint_id), secret)


def get_endpoint(db: Database, user_id: str, endpoint_id: str) -> WebhookEndpoint:
    """Raises: NotFound: no such endpoint, or another user's."""
    return _owned(db.connection(), user_id, endpoint_id)


def list_endpoints(
    db: Database, user_id: str, *, limit: int, cursor: str | None
) -> Page[WebhookEndpoint]:
    """The user's endpoints, newest first.

    Raises:
        InvalidCursor: the cursor was not handed out for this list.
    """
    return newest_first(
        db.connection(),
        "webhook_endpoints",
        "user_id",
        user_id,
        limit=limit,
        cursor=cursor,
        build=WebhookEndpoint.from_row,
    )


def update_endpoint(
    conn: Connection, user_id: str, endpoint_id: str, changes: EndpointChanges
) -> WebhookEndpoint:
    """Change the URL (already checked), the types or the status. Enabling an endpoint
    forgets its failures: it has five more days to answer before it is disabled again.

    Raises:
        NotFound: no such endpoint, or another user's.
    """
    endpoint = _owned(conn, user_id, endpoint_id, lock=True)
    sets: list[str] = []
    values: list[object] = []
    if changes.url is not None:
        sets.append("url = ?")
        values.append(changes.url)
    if changes.all_types or changes.event_types is not None:
        sets.append("event_types = ?")
        values.append(None if changes.all_types else _types_json(changes.event_types))
    if changes.status is not None and changes.status is not endpoint.status:
        sets.append("status = ?")
        values.append(changes.status.value)
        if changes.status is WebhookEndpointStatus.ENABLED:
            sets.append("failing_since = NULL")
    if not sets:
        return endpoint
    sets.append("updated_at = ?")
    values.append(to_text(utcnow()))
    conn.execute(
        f"UPDATE webhook_endpoints SET {', '.join(sets)} WHERE id = ?", (*values, endpoint_id)
    )
    return _owned(conn, user_id, endpoint_id)


def delete_endpoint(conn: Connection, user_id: str, endpoint_id: str) -> None:
    """Delete the endpoint and its delivery log: nothing more is sent to it.

    Raises:
        NotFound: no such endpoint, or another user's.
    """
    _owned(conn, user_id, endpoint_id, lock=True)
    # Its deliveries go with it (ON DELETE CASCADE).
    conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,))


def rotate_secret(conn: Connection, user_id: str, endpoint_id: str, *, overlap: timedelta) -> str:
    """A new secret, in clear; deliveries are signed with the one before too, for
    ``overlap`` (a second rotation within it drops the oldest at once).

    Raises:
        NotFound: no such endpoint, or another user's.
    """
    _owned(conn, user_id, endpoint_id, lock=True)
    now = utcnow()
    secret = new_secret()
    conn.execute(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = ?,"
        " secret = ?, updated_at = ? WHERE id = ?",
        (to_text(now + overlap), secret, to_text(now), endpoint_id),
    )
    return secret


def list_deliveries(
    db: Database, user_id: str, endpoint_id: str, *, limit: int, cursor: str | None
) -> Page[WebhookDelivery]:
    """The endpoint's deliveries, newest first.

    Raises:
        NotFound: no such endpoint, or another user's.
        InvalidCursor: the cursor was not handed out for this list.
    """
    with db.read() as conn:
        _owned(conn, user_id, endpoint_id)
        return newest_first(
            conn,
            "webhook_deliveries",
            "endpoint_id",
            endpoint_id,
            limit=limit,
            cursor=cursor,
            build=WebhookDelivery.from_row,
        )


def retry_delivery(
    conn: Connection, user_id: str, endpoint_id: str, delivery_id: str
) -> WebhookDelivery:
    """Make the delivery due now, whatever its status: the worker's next sweep sends it
    again (a succeeded one too: its receiver asked). A failed attempt then retries it on
    the schedule from where its attempts stand, so a delivery that had run out of
    retries gets this one attempt.

    Raises:
        NotFound: no such endpoint or delivery, or another user's.
        WebhookEndpointDisabled: the endpoint is disabled: enable it first.
    """
    endpoint = _owned(conn, user_id, endpoint_id, lock=True)
    found = conn.execute(
        "SELECT id FROM webhook_deliveries WHERE id = ? AND endpoint_id = ?",
        (delivery_id, endpoint_id),
    ).fetchone()
    if found is None:
        raise NotFound(f"delivery {delivery_id} not found")
    if endpoint.status is not WebhookEndpointStatus.ENABLED:
        raise WebhookEndpointDisabled(
            f"webhook endpoint {endpoint_id} is disabled: enable it to deliver again"
        )
    conn.execute(
        "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ? WHERE id = ?",
        (DeliveryStatus.PENDING.value, to_text(utcnow()), delivery_id),
    )
    row = conn.execute("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,)).fetchone()
    return WebhookDelivery.from_row(row)


def _owned(
    conn: Connection, user_id: str, endpoint_id: str, *, lock: bool = False
) -> WebhookEndpoint:
    select = "SELECT * FROM webhook_endpoints WHERE id = ? AND user_id = ?"
    if lock:
        select = conn.engine.select_for_update(select)
    row = conn.execute(select, (endpoint_id, user_id)).fetchone()
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return WebhookEndpoint.from_row(row)


def _types_json(event_types: Collection[EventType] | None) -> str | None:
    if event_types is None:
        return None
    return json.dumps(sorted({str(event_type) for event_type in event_types}))


def _moment(text: str | None) -> datetime | None:
    return from_text(text) if text else None
