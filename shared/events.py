"""Events: what changed, for each user it concerns, written in the transaction of the
change itself (a transactional outbox), so that an event exists if and only if its
change committed.

An event is one row per user who may read it (a payment's: its sender's owner and its
receiver's owner), holding the object as that user reads it at that moment, in the
API's public shape. The feed that reads them back is ``shared.event_feed``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from shared import failures, webhook_outbox
from shared.clock import new_ids, to_text, utcnow
from shared.enums import EventType
from shared.records import Account, Deposit, Payment
from shared.store import Connection, chunks, rows

log = logging.getLogger(__name__)

JSON = dict[str, Any]


class NewEvent(NamedTuple):
    """An event to record: for whom, what happened, and the object as they read it."""

    user_id: str
    type: EventType
    object: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PaymentOwners:
    """A payment and the users who own its two sides (one user may own both)."""

    payment: Payment
    from_user_id: str
    to_user_id: str


def record_events(conn: Connection, events: Sequence[NewEvent]) -> list[str]:
    """Write ``events`` in ``conn``'s transaction; returns their ids, in order.

    Call it as the transaction's last writes: from here to the commit, every other
    transaction that records events waits (on PostgreSQL; ``Engine.order_commits``),
    which is what keeps the feed's order the commit order. However many events, this is
    one multi-row ``INSERT`` per ``ROWS_PER_STATEMENT`` of them. Each event's webhook
    deliveries are written with it (``shared.webhook_outbox``).
    """
    if not events:
        return []
    ids = new_ids("evt", len(events))
    deliveries = webhook_outbox.deliveries_of(
        conn,
        [
            webhook_outbox.RecordedEvent(event_id, event.user_id, event.type.value)
            for event_id, event in zip(ids, events, strict=True)
        ],
    )
    # Encoded before the commit order's lock: whatever runs under it, every other writer
    # of events waits for (a few microseconds an event, a millisecond or two a group).
    texts: dict[int, str] = {}  # an object two users read alike is written out once
    objects = [
        texts.get(id(event.object)) or texts.setdefault(id(event.object), _json(event.object))
        for event in events
    ]
    conn.engine.order_commits(conn)
    created_at = to_text(utcnow())
    written = [
        (event_id, event.user_id, event.type.value, text, created_at)
        for event_id, event, text in zip(ids, events, objects, strict=True)
    ]
    for chunk in chunks(written):
        conn.execute(
            "INSERT INTO events (id, user_id, type, object, created_at)"
            f" VALUES {rows(len(chunk), 5)}",
            [value for row in chunk for value in row],
        )
    webhook_outbox.write_deliveries(conn, deliveries, created_at)
    _WRITTEN.add(event.type for event in events)
    # DEBUG: a line per event would double a settle group's work inside its transaction;
    # operators follow events by the deliveries' lines, which carry event_id too.
    if log.isEnabledFor(logging.DEBUG):
        for (event_id, user_id, event_type, _, _), event in zip(written, events, strict=True):
            log.debug(
                "event recorded",
                extra={
                    "event_id": event_id,
                    "event_type": event_type,
                    "for_user_id": user_id,
                    **_subject(event),
                },
            )
    return [row[0] for row in written]


def payment_events(event_type: EventType, payments: Iterable[PaymentOwners]) -> list[NewEvent]:
    """``event_type`` for each payment, once for each user who owns a side of it, with
    the failure detail that user may read (``shared.failures``)."""
    events = []
    for owned in payments:
        shown: dict[int, JSON] = {}  # one object for both users when they read it alike
        for user_id in dict.fromkeys((owned.from_user_id, owned.to_user_id)):
            seen = failures.as_seen_by(
                owned.payment,
                owns_sender=owned.from_user_id == user_id,
                owns_receiver=owned.to_user_id == user_id,
            )
            if id(seen) not in shown:
                shown[id(seen)] = public(seen)
            events.append(NewEvent(user_id, event_type, shown[id(seen)]))
    return events


def deposit_event(user_id: str, deposit: Deposit) -> NewEvent:
    """``deposit.created``, for the owner of the account it credited."""
    return NewEvent(user_id, EventType.DEPOSIT_CREATED, public(deposit))


def account_event(account: Account) -> NewEvent:
    """``account.updated`` (frozen or unfrozen), for its owner."""
    return NewEvent(account.user_id, EventType.ACCOUNT_UPDATED, public(account))


def public(record: Payment | Deposit | Account) -> JSON:
    """The record as the API shows it (``api.schemas``): the same fields, times in
    RFC 3339 UTC as the API writes them."""
    if isinstance(record, Payment):
        return _public_payment(record)
    return {name: _public_value(getattr(record, name)) for name in _FIELDS[type(record)]}


def _public_payment(payment: Payment) -> JSON:
    """``public`` spelled out for the one record settling writes by the hundred: a
    third of the cost of the loop over its fields. (tests/api/test_events.py compares
    it with what ``GET /payments/{id}`` answers.)"""
    code = payment.failure_code
    completed_at = payment.completed_at
    expires_at = payment.expires_at
    return {
        "id": payment.id,
        "from_account_id": payment.from_account_id,
        "to_account_id": payment.to_account_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "description": payment.description,
        "status": payment.status.value,
        "failure_code": None if code is None else code.value,
        "failure_detail": payment.failure_detail,
        "created_at": _time(payment.created_at),
        "completed_at": None if completed_at is None else _time(completed_at),
        "capture": payment.capture.value,
        "captured_amount": payment.captured_amount,
        "expires_at": None if expires_at is None else _time(expires_at),
        "refund_of": payment.refund_of,
        "refunded_amount": payment.refunded_amount,
        "batch_id": payment.batch_id,
    }


_FIELDS = {kind: tuple(f.name for f in dataclasses.fields(kind)) for kind in (Deposit, Account)}
_FIELDS[Account] += ("available",)  # derived (balance - held), shown as the API shows it


def _time(moment: datetime) -> str:
    """As pydantic writes a UTC time: microseconds only when there are any, then Z."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _public_value(value: object) -> object:
    if isinstance(value, datetime):
        return _time(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _json(value: Mapping[str, Any]) -> str:
    return _ENCODER.encode(value)


def _subject(event: NewEvent) -> dict[str, str]:
    """The log field naming what the event is about (``payment_id``, …)."""
    subject = event.object.get("id")
    if not isinstance(subject, str):
        return {}
    kind = event.type.value.partition(".")[0]
    return {f"{kind}_id": subject}


class _Tally:
    """Events recorded by this process, by type, for the metrics endpoints. A
    transaction that rolls back after recording (rare: recording is its last step) is
    counted too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[EventType] = Counter()

    def add(self, types: Iterable[EventType]) -> None:
        with self._lock:
            self._counts.update(types)

    def counts(self) -> dict[EventType, int]:
        with self._lock:
            return dict(self._counts)


_WRITTEN = _Tally()


def written_counts() -> dict[EventType, int]:
    """Events this process has recorded, by type, since it started."""
    return _WRITTEN.counts()
