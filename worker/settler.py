"""Settling in groups: one transaction for many payments, oldest first.

A message names one payment, but settling one payment per transaction would pay one
fsync per payment. So a message whose payment is still pending settles the oldest
pending payments in groups (``P2P_SETTLE_GROUP``) until its own is done, and the
payments settled along the way are remembered: their own messages, arriving next, are
acknowledged without touching the database. Every outcome is the one the payment would
have had alone, since a group judges its payments one after the other in acceptance
order.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import timedelta

from shared.db import Database
from shared.engine import payment_status, settle_pending
from shared.records import Payment, PaymentStatus
from shared.settings import Settings

# More than a group and a prefetch window: messages arrive about in acceptance order, so
# a settled payment's own message is never far behind. Forgetting costs one status read.
REMEMBERED = 10_000


class Settler:
    """The worker's one way to settle payments; the actor and the sweep share it."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._group = settings.settle_group
        # One writer per process: threads queue here rather than in SQLite's busy handler.
        self._lock = threading.Lock()
        self._settled: OrderedDict[str, None] = OrderedDict()

    def settle(self, payment_id: str) -> None:
        """Return once the payment is no longer pending. Raises on infrastructure errors."""
        if payment_id in self._settled:
            return
        with self._lock:
            while payment_id not in self._settled:
                status = payment_status(self._db, payment_id)
                if status is not PaymentStatus.PENDING:
                    return
                if not self._remember(settle_pending(self._db, limit=self._group)):
                    return

    def sweep(self, *, older_than: timedelta, limit: int) -> int:
        """Settle up to ``limit`` payments pending for longer than ``older_than``."""
        with self._lock:
            return self._remember(settle_pending(self._db, limit=limit, older_than=older_than))

    def _remember(self, payments: Iterable[Payment]) -> int:
        count = 0
        for payment in payments:
            self._settled[payment.id] = None
            count += 1
        while len(self._settled) > REMEMBERED:
            self._settled.popitem(last=False)
        return count
