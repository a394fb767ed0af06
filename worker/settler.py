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

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Literal

from shared.db import Database
from shared.engine import (
    SettledObserver,
    payment_status,
    pending_ids,
    settle_payment,
    settle_pending,
)
from shared.records import Payment, PaymentStatus
from shared.settings import Settings

# More than a group and a prefetch window: messages arrive about in acceptance order, so
# a settled payment's own message is never far behind. Forgetting costs one status read.
REMEMBERED = 10_000

log = logging.getLogger(__name__)

SettledBy = Literal["message", "sweep"]


class Settler:
    """The worker's one way to settle payments; the actor and the sweep share it."""

    def __init__(
        self, db: Database, settings: Settings, *, observe: SettledObserver | None = None
    ) -> None:
        self._db = db
        self._group = settings.settle_group
        self._observe = observe
        # One writer per process: threads queue here rather than in SQLite's busy handler.
        self._lock = threading.Lock()
        self._settled: OrderedDict[str, None] = OrderedDict()
        # Payments that raised when settled alone: groups leave them out, so one bad row
        # cannot hold every other payment back. Their own messages keep retrying them.
        self._failing: set[str] = set()

    def settle(self, payment_id: str) -> None:
        """Return once the payment is no longer pending. Raises on infrastructure errors,
        and when this payment cannot be settled (its message is then retried)."""
        if payment_id in self._settled:
            return
        with self._lock:
            if payment_id in self._failing:
                self._settle_alone(payment_id)
                return
            while payment_id not in self._settled:
                status = payment_status(self._db, payment_id)
                if status is not PaymentStatus.PENDING:
                    return
                if not self._settle_group(limit=self._group, older_than=None):
                    break
            if payment_id in self._failing:
                self._settle_alone(payment_id)

    def sweep(self, *, older_than: timedelta, limit: int) -> int:
        """Settle up to ``limit`` payments pending for longer than ``older_than``."""
        with self._lock:
            return self._settle_group(limit=limit, older_than=older_than, by="sweep")

    def _settle_group(
        self, *, limit: int, older_than: timedelta | None, by: SettledBy = "message"
    ) -> int:
        try:
            settled = settle_pending(
                self._db,
                limit=limit,
                older_than=older_than,
                skip=self._failing,
                observe=self._observer(by),
            )
        except self._db.dialect.infrastructure_error:
            raise  # locked, disk, connection: the whole group is retried
        except Exception:
            log.exception("a group failed to settle; settling its payments one by one")
            return self._isolate(limit=limit, older_than=older_than, by=by)
        return self._remember(settled)

    def _isolate(self, *, limit: int, older_than: timedelta | None, by: SettledBy) -> int:
        """Settle the group's payments alone, setting aside the ones that raise."""
        settled = 0
        for payment_id in pending_ids(
            self._db, limit=limit, older_than=older_than, skip=self._failing
        ):
            try:
                self._settle_alone(payment_id, by)
                settled += 1
            except self._db.dialect.infrastructure_error:
                raise
            except Exception:
                log.exception(
                    "payment %s cannot be settled; set aside",
                    payment_id,
                    extra={"payment_id": payment_id},
                )
                self._failing.add(payment_id)
        return settled

    def _settle_alone(self, payment_id: str, by: SettledBy = "message") -> None:
        payment = settle_payment(self._db, payment_id, observe=self._observer(by))
        self._failing.discard(payment_id)
        if payment is not None:
            self._remember([payment])

    def _observer(self, by: SettledBy) -> SettledObserver:
        """What the engine tells, after each commit, of the payments that call settled:
        a log line each, then the metrics."""

        def settled(payments: Sequence[Payment]) -> None:
            _log_settled(payments, by)
            if self._observe is not None:
                self._observe(payments)

        return settled

    def _remember(self, payments: Iterable[Payment]) -> int:
        count = 0
        for payment in payments:
            self._settled[payment.id] = None
            count += 1
        while len(self._settled) > REMEMBERED:
            self._settled.popitem(last=False)
        return count


def _log_settled(payments: Sequence[Payment], by: SettledBy) -> None:
    """One line per payment settled, once it is committed."""
    if not log.isEnabledFor(logging.INFO):
        return
    for payment in payments:
        fields = {"payment_id": payment.id, "status": payment.status.value, "by": by}
        if payment.failure_code is not None:
            fields["failure_code"] = payment.failure_code.value
        log.info("payment settled", extra=fields)
