"""Time and identifiers: RFC 3339 UTC timestamps and opaque, time-ordered ids."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_text(moment: datetime) -> str:
    """Stored form: fixed-width, so text order is time order."""
    return moment.astimezone(UTC).strftime(_FORMAT)


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)


def new_id(prefix: str) -> str:
    """``pay_`` + 12 hex digits of milliseconds + 20 random: sortable, unguessable."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids as ``new_id`` makes them, from one read of the random source."""
    stamp = f"{prefix}_{time.time_ns() // 1_000_000:012x}"
    random = secrets.token_hex(10 * count)
    return [f"{stamp}{random[20 * i : 20 * (i + 1)]}" for i in range(count)]
