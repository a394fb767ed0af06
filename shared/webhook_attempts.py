"""A delivery's attempts, as the worker makes them: claimed when due, started, and their
outcome recorded, each a short transaction of its own (the HTTP call runs outside any).

The database decides who sends what, so several worker processes, a lost message or a
SIGKILLed worker neither lose a delivery nor send one twice at once:

- ``claim_due`` takes the due deliveries of enabled endpoints (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL) and pushes their ``next_attempt_at`` back by a lease: until
  then no other sweep hands them out again, and once it passes (the message was lost,
  the worker died) the next sweep does.
- ``start_attempt`` counts the attempt only if the delivery still has the attempts its
  message was handed out with: a message handed out twice starts one attempt. It pushes
  ``next_attempt_at`` past the attempt's end, for a worker killed during the call.
- ``record_outcome`` writes what that attempt got, unless a later attempt overtook it:
  success, or the next retry on the schedule, or ``failed`` once the schedule is spent;
  and disables an endpoint whose attempts have all failed for ``disable_after``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.clock import from_text, to_text
from shared.enums import DeliveryStatus, WebhookEndpointStatus
from shared.store import Connection, Database, marks

_ENABLED = (
    "endpoint_id IN (SELECT id FROM webhook_endpoints WHERE status = "
    f"'{WebhookEndpointStatus.ENABLED}')"
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A due delivery handed to this worker: what its message carries."""

    delivery_id: str
    endpoint_id: str
    attempts: int
    """How many attempts it had when claimed: its next one is ``attempts + 1``."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One attempt, started: what to send, where, signed with which secrets."""

    delivery_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    event_created_at: datetime
    attempt: int
    url: str
    body: bytes
    secrets: tuple[str, ...]
    """The current secret first, then the one before while it overlaps."""


@dataclass(frozen=True, slots=True)
class Outcome:
    succeeded: bool
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What an attempt's outcome made of its delivery and endpoint."""

    status: DeliveryStatus
    next_attempt_at: datetime | None
    endpoint_disabled: bool
    """The endpoint was disabled by this failure."""


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest_created_at: datetime | None
    disabled_endpoints: int


def claim_due(db: Database, *, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """The oldest due deliveries of enabled endpoints, at most ``limit``, claimed for
    ``lease``."""
    with db.write() as conn:
        found = conn.execute(
            conn.engine.select_to_claim(
                "SELECT id, endpoint_id, attempts FROM webhook_deliveries"
                f" WHERE status = ? AND next_attempt_at <= ? AND {_ENABLED}"
                " ORDER BY next_attempt_at LIMIT ?"
            ),
            (DeliveryStatus.PENDING.value, to_text(now), limit),
        ).fetchall()
        claimed = [Claimed(row[0], row[1], int(row[2])) for row in found]
        if claimed:
            conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = ?"
                f" WHERE id IN ({marks(len(claimed))})",
                (to_text(now + lease), *(one.delivery_id for one in claimed)),
            )
    return claimed


def start_attempt(
    db: Database, claimed: Claimed, *, now: datetime, hold: timedelta
) -> Outgoing | None:
    """Count the attempt and read what it sends; ``None`` when it is not to be made (it
    was made already, the delivery is settled or gone, its endpoint disabled)."""
    with db.write() as conn:
        row = conn.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = ?,"
            " next_attempt_at = ?"
            f" WHERE id = ? AND status = ? AND attempts = ? AND {_ENABLED}"
            " RETURNING endpoint_id, event_id, attempts",
            (
                to_text(now),
                to_text(now + hold),
                claimed.delivery_id,
                DeliveryStatus.PENDING.value,
                claimed.attempts,
            ),
        ).fetchone()
        if row is None:
            return None
        endpoint = conn.execute(
            "SELECT url, secret, previous_secret, previous_secret_until FROM webhook_endpoints"
            " WHERE id = ?",
            (row[0],),
        ).fetchone()
        event = conn.execute(
            "SELECT id, type, object, created_at FROM events WHERE id = ?", (row[1],)
        ).fetchone()
    secrets = [endpoint["secret"]]
    until = endpoint["previous_secret_until"]
    if until is not None and from_text(until) > now:
        secrets.append(endpoint["previous_secret"])
    created_at = from_text(event["created_at"])
    return Outgoing(
        delivery_id=claimed.delivery_id,
        endpoint_id=row[0],
        event_id=event["id"],
        event_type=event["type"],
        event_created_at=created_at,
        attempt=int(row[2]),
        url=endpoint["url"],
        body=event_body(event["id"], event["type"], created_at, event["object"]),
        secrets=tuple(secrets),
    )


def event_body(event_id: str, event_type: str, created_at: datetime, obj: str) -> bytes:
    """The event as ``GET /events`` shows it, ``{id, type, created_at, data: {object}}``,
    with the object's stored JSON as it is."""
    head = json.dumps(
        {"id": event_id, "type": event_type, "created_at": _rfc3339(created_at)},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return f'{head[:-1]},"data":{{"object":{obj}}}}}'.encode()


def record_outcome(
    db: Database,
    outgoing: Outgoing,
    outcome: Outcome,
    *,
    now: datetime,
    delays: Sequence[float],
    disable_after: timedelta,
) -> Recorded | None:
    """Write the attempt's outcome; ``None`` when a later attempt overtook it, or the
    delivery is gone (its endpoint deleted)."""
    if outcome.succeeded:
        status, next_at = DeliveryStatus.SUCCEEDED, None
    elif outgoing.attempt <= len(delays):
        status = DeliveryStatus.PENDING
        next_at = now + timedelta(seconds=delays[outgoing.attempt - 1])
    else:
        status, next_at = DeliveryStatus.FAILED, None
    with db.write() as conn:
        updated = conn.execute(
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?,"
            " last_status_code = ?, last_error = ?"
            " WHERE id = ? AND attempts = ? AND status = ? RETURNING id",
            (
                status.value,
                None if next_at is None else to_text(next_at),
                outcome.status_code,
                outcome.error,
                outgoing.delivery_id,
                outgoing.attempt,
                DeliveryStatus.PENDING.value,
            ),
        ).fetchone()
        if updated is None:
            return None
        disabled = _track_failures(conn, outgoing.endpoint_id, outcome, now, disable_after)
    return Recorded(status, next_at, disabled)


def backlog(db: Database) -> Backlog:
    """Deliveries waiting for enabled endpoints, and endpoints disabled: for metrics."""
    conn = db.connection()
    count, oldest = conn.execute(
        f"SELECT count(*), min(created_at) FROM webhook_deliveries WHERE status = ? AND {_ENABLED}",
        (DeliveryStatus.PENDING.value,),
    ).fetchone()
    (disabled,) = conn.execute(
        "SELECT count(*) FROM webhook_endpoints WHERE status = ?",
        (WebhookEndpointStatus.DISABLED.value,),
    ).fetchone()
    return Backlog(int(count), from_text(oldest) if oldest else None, int(disabled))


def _track_failures(
    conn: Connection, endpoint_id: str, outcome: Outcome, now: datetime, disable_after: timedelta
) -> bool:
    """Keep when the endpoint's failures began; disable it once they have lasted
    ``disable_after``. Returns whether this disabled it."""
    if outcome.succeeded:
        conn.execute(
            "UPDATE webhook_endpoints SET failing_since = NULL"
            " WHERE id = ? AND failing_since IS NOT NULL",
            (endpoint_id,),
        )
        return False
    row = conn.execute(
        conn.engine.select_for_update(
            "SELECT status, failing_since FROM webhook_endpoints WHERE id = ?"
        ),
        (endpoint_id,),
    ).fetchone()
    if row is None or row["status"] != WebhookEndpointStatus.ENABLED:
        return False
    if row["failing_since"] is None:
        conn.execute(
            "UPDATE webhook_endpoints SET failing_since = ? WHERE id = ?",
            (to_text(now), endpoint_id),
        )
        return False
    if now - from_text(row["failing_since"]) < disable_after:
        return False
    conn.execute(
        "UPDATE webhook_endpoints SET status = ?, updated_at = ? WHERE id = ?",
        (WebhookEndpointStatus.DISABLED.value, to_text(now), endpoint_id),
    )
    return True


def _rfc3339(moment: datetime) -> str:
    # As pydantic writes a UTC time (what GET /events shows): microseconds only when set.
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
