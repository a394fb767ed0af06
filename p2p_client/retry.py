"""When to try a request again, and after how long.

Network errors, ``5xx`` and ``429`` are retried, with the same ``Idempotency-Key``, so a
transfer is applied at most once however often it is sent. Retries are bounded twice: in
number (``attempts``) and in time (``total_s`` since the first attempt). Between them the
client waits ``Retry-After`` when the service sent one, else an exponential backoff with
jitter, so that clients failed by one outage do not all come back at the same instant.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    """Attempts in all, the first included; 1 never retries."""
    total_s: float = 60.0
    """No retry starts later than this after the first attempt began."""
    backoff_s: float = 0.25
    """The first retry's delay; it doubles with each retry after it."""
    max_backoff_s: float = 8.0
    """The ceiling of one backoff delay (``Retry-After`` is honoured beyond it)."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.total_s < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("durations must not be negative")

    def backoff(self, retry: int, rng: Callable[[], float]) -> float:
        """The delay before retry number ``retry`` (1 for the first): half of it fixed,
        half random ("equal jitter"), so it never collapses to nothing."""
        ceiling: float = min(self.max_backoff_s, self.backoff_s * 2.0 ** (retry - 1))
        return ceiling / 2 + rng() * ceiling / 2


NO_RETRIES = RetryPolicy(attempts=1)


class Attempts:
    """The retries of one request: each failure asks how long to wait, or whether to stop."""

    def __init__(
        self, policy: RetryPolicy, clock: Callable[[], float], rng: Callable[[], float]
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self._deadline = clock() + policy.total_s
        self._made = 1

    def delay(self, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` when none is left."""
        if self._made >= self._policy.attempts:
            return None
        wait = (
            retry_after if retry_after is not None else self._policy.backoff(self._made, self._rng)
        )
        if self._clock() + wait > self._deadline:
            return None
        self._made += 1
        return wait


def retry_after(headers: httpx.Headers, now: Callable[[], float]) -> float | None:
    """``Retry-After`` in seconds from now: delay-seconds or an HTTP date (RFC 9110)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def default_rng() -> float:
    return random.random()
