"""Rate limiting by GCRA (the generic cell rate algorithm), in microseconds.

A limit is a sustained rate and a burst: from idle, ``burst`` requests pass at once, then
one every ``1 / per_s`` seconds. GCRA keeps one number per key, the theoretical arrival
time (``tat``) of the next request if the key had been paced exactly; a request passes
when that lies at most ``burst - 1`` intervals in the future. ``api/limiter.py`` runs the
same arithmetic in Redis (``GCRA_LUA``), so that every API process shares one limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

US = 1_000_000


@dataclass(frozen=True, slots=True)
class Policy:
    per_s: float
    burst: int

    @classmethod
    def of(cls, per_s: float, burst: int) -> Policy | None:
        """The policy, or ``None`` when either number is 0: no limit."""
        return cls(per_s, burst) if per_s > 0 and burst > 0 else None

    @property
    def interval_us(self) -> int:
        return max(1, round(US / self.per_s))

    @property
    def window_s(self) -> int:
        """Whole seconds an idle-to-empty bucket takes to fill again (``w`` of the header)."""
        return max(1, math.ceil(self.burst * self.interval_us / US))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int
    """Requests that would pass right now after this one."""
    retry_after_us: int
    """0 when allowed; otherwise how long until one request would pass."""
    reset_us: int
    """How long until the full burst is available again."""

    @property
    def retry_after_s(self) -> int:
        return math.ceil(self.retry_after_us / US)

    @property
    def reset_s(self) -> int:
        return math.ceil(self.reset_us / US)


def gcra(policy: Policy, tat_us: int | None, now_us: int) -> tuple[Decision, int]:
    """Decide one request; returns the decision and the key's new ``tat``.

    Mirrors ``GCRA_LUA`` line for line: change both or neither.
    """
    interval = policy.interval_us
    tat = now_us if tat_us is None or tat_us < now_us else tat_us
    new_tat = tat + interval
    allow_at = new_tat - policy.burst * interval
    if now_us < allow_at:
        return Decision(False, 0, allow_at - now_us, tat - now_us), tat
    return Decision(True, (now_us - allow_at) // interval, 0, new_tat - now_us), new_tat


def _monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class LocalLimiter:
    """GCRA for one process: ``p2p dev``, and the API while Redis cannot be reached.

    Not thread-safe: the API calls it from its event loop only.
    """

    MAX_KEYS = 100_000

    def __init__(self, policy: Policy, clock: Callable[[], int] = _monotonic_us) -> None:
        self.policy = policy
        self._clock = clock
        self._tat: dict[str, int] = {}
        self._forget_at = self.MAX_KEYS

    def check(self, key: str) -> Decision:
        now = self._clock()
        decision, self._tat[key] = gcra(self.policy, self._tat.get(key), now)
        if len(self._tat) > self._forget_at:
            self._forget_idle(now)
        return decision

    def _forget_idle(self, now: int) -> None:
        # A key whose tat has passed is in the same state as one never seen. Sweeping
        # again only once the map has doubled keeps a check O(1) on average.
        for key in [key for key, tat in self._tat.items() if tat <= now]:
            del self._tat[key]
        self._forget_at = max(self.MAX_KEYS, 2 * len(self._tat))
