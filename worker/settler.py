"""Settling in groups: one transaction for many payments, oldest first.

A message names one payment, but settling one payment per transaction would pay one
fsync per payment. So a message whose payment is still pending settles the oldest
pending payments in groups (``P2P_SETTLE_GROUP``) until its own is done, and the
payments settled along the way are remembered: their own messages, arriving next, are
acknowledged without touching the database. Every outcome is the one the payment would
have had alone, since a group judges its payments one after the other in acceptance
order.

A message that finds a backlog (its group came out full) also starts the settler's own
thread settling ahead: the next group is settled while the messages of the last one are
acknowledged, and the one after it once the messages reach that group's first payment.
So the messages of a backlog mostly find their payments settled, about two groups ahead
of them at most, and the worker's one message thread never waits for a commit.

The sweep leaves a backlog to messages that are settling it: they take the oldest
payments first, so a payment whose message was lost is in their next group anyway.

Three kinds of thread share a settler: the worker's message threads (``settle``), its
own thread settling ahead, and the sweep's (``sweep``). Each piece of state they share
names, where it is set up, the one lock that guards it or why it needs none.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from shared.engine import (
    SettledObserver,
    payment_status,
    pending_ids,
    settle_payment,
    settle_pending,
)
from shared.records import Payment, PaymentStatus
from shared.settings import Settings
from shared.store import Database

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
        # Held for every group or payment this settler settles: one writer per process,
        # so threads queue here rather than in SQLite's busy handler.
        self._writing = threading.Lock()
        # Guarded by ``_writing``: payments that raised when settled alone. Groups leave
        # them out, so one bad row cannot hold every other payment back; their own
        # messages keep retrying them.
        self._failing: set[str] = set()
        # Its own lock, held for no database call: what was settled, the mark, and
        # whether messages are settling.
        self._notes = _Notes()
        # Thread-safe itself: set by messages that find a backlog or reach the mark, and
        # by ``stop``; waited on and cleared by the thread ahead alone.
        self._wake_ahead = threading.Event()
        # Thread-safe itself: set once by ``stop``, read by the thread ahead.
        self._stopping = threading.Event()
        # Started by ``start`` and joined by ``stop``, from the thread that runs the worker.
        self._ahead = threading.Thread(
            target=self._settle_ahead, name="p2p-settle-ahead", daemon=True
        )

    def start(self) -> None:
        """Start settling ahead of the messages (without it, each waits for its group)."""
        self._ahead.start()

    def stop(self) -> None:
        """Finish the group in hand, then stop settling ahead."""
        self._stopping.set()
        self._wake_ahead.set()
        if self._ahead.is_alive():
            self._ahead.join()

    def settle(self, payment_id: str) -> None:
        """Return once the payment is no longer pending. Raises on infrastructure errors,
        and when this payment cannot be settled (its message is then retried)."""
        if not self._notes.is_settled(payment_id):
            # Not remembered: pending, or settled by another settler (the sweep, another
            # process, or so long ago that it is forgotten). A read without the writing
            # lock tells, so that messages far behind a sweep do not queue for it.
            status = payment_status(self._db, payment_id)
            if status is PaymentStatus.PENDING:
                with self._writing:
                    backlog = self._settle_through(payment_id)
            else:
                backlog = status is not None
            if backlog:
                self._wake_ahead.set()
        if self._notes.reached_mark(payment_id):
            self._wake_ahead.set()

    def sweep(self, *, older_than: timedelta, limit: int) -> int:
        """Settle up to ``limit`` payments pending for longer than ``older_than``; none
        while messages are settling groups.

        Their groups take the oldest payments first, so one whose message was lost is in
        the next of them anyway. A sweep racing them would only take their lock, and on a
        long backlog run so far ahead of them that they forget what it settled and read
        each payment's status again. So a pass right after messages settled a group is
        skipped; the sweep settles what they leave once they have been idle for a pass.
        """
        if self._notes.messages_settled_since_asked():
            return 0
        with self._writing:
            return len(self._settle_group(limit=limit, older_than=older_than, by="sweep"))

    def _settle_through(self, payment_id: str) -> bool:
        """Settle the oldest payments in groups until this one, just read as pending,
        is settled. Returns whether a backlog is left: the last group this settled was
        full, or another settler (the sweep, the thread ahead, another process) got to
        it first. Called holding ``_writing``."""
        if payment_id in self._failing:
            self._settle_alone(payment_id)
            return False
        backlog = True
        while not self._notes.is_settled(payment_id):
            settled = self._settle_group(limit=self._group, older_than=None)
            if not settled:
                break
            backlog = len(settled) == self._group
            if not self._notes.is_settled(payment_id) and (
                payment_status(self._db, payment_id) is not PaymentStatus.PENDING
            ):
                return True  # another process settled it meanwhile
        if payment_id in self._failing:
            self._settle_alone(payment_id)
        return backlog

    def _settle_ahead(self) -> None:
        """The settler's thread: one group each time it is woken; a full one leaves its
        first payment as the mark at which the messages wake it again."""
        while True:
            self._wake_ahead.wait()
            # A wake that comes between these two lines is served by the group below.
            self._wake_ahead.clear()
            if self._stopping.is_set():
                return
            try:
                with self._writing:
                    self._settle_group(limit=self._group, older_than=None, ahead=True)
            except Exception:
                # The messages still settle their own payments; this waits to be woken.
                log.exception("settling ahead failed")

    def _settle_group(
        self,
        *,
        limit: int,
        older_than: timedelta | None,
        by: SettledBy = "message",
        ahead: bool = False,
    ) -> list[str]:
        """The ids settled, oldest first. ``ahead``: a full group sets the mark. Called
        holding ``_writing``."""
        try:
            settled = settle_pending(
                self._db,
                limit=limit,
                older_than=older_than,
                skip=self._failing,
                observe=self._observer(by),
            )
        except self._db.engine.infrastructure_error:
            raise  # locked, disk, connection: the whole group is retried
        except Exception:
            log.exception("a group failed to settle; settling its payments one by one")
            return self._isolate(limit=limit, older_than=older_than, by=by)
        ids = [payment.id for payment in settled]
        self._notes.settled(
            ids,
            mark=ids[0] if ahead and len(ids) == limit else None,
            by_messages=by == "message",
        )
        return ids

    def _isolate(self, *, limit: int, older_than: timedelta | None, by: SettledBy) -> list[str]:
        """Settle the group's payments alone, setting aside the ones that raise. Called
        holding ``_writing``."""
        settled = []
        for payment_id in pending_ids(
            self._db, limit=limit, older_than=older_than, skip=self._failing
        ):
            try:
                self._settle_alone(payment_id, by)
                settled.append(payment_id)
            except self._db.engine.infrastructure_error:
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
        """Called holding ``_writing``."""
        payment = settle_payment(self._db, payment_id, observe=self._observer(by))
        self._failing.discard(payment_id)
        if payment is not None:
            self._notes.settled([payment.id])

    def _observer(self, by: SettledBy) -> SettledObserver:
        """What the engine tells, after each commit, of the payments that call settled:
        a log line each, then the metrics."""

        def settled(payments: Sequence[Payment]) -> None:
            _log_settled(payments, by)
            if self._observe is not None:
                self._observe(payments)

        return settled


class _Notes:
    """What a settler's threads tell each other, each piece read and changed under
    ``_lock`` alone, which is held for no database call: a message asking whether its
    payment is settled never waits for a group to commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Guarded by ``_lock``: the payments this settler settled, the latest
        # ``REMEMBERED``, oldest first.
        self._settled: OrderedDict[str, None] = OrderedDict()
        # Guarded by ``_lock``: the first payment of the full group last settled ahead;
        # the message that reaches it wakes the thread ahead again.
        self._mark: str | None = None
        # Guarded by ``_lock``: whether messages (or the thread ahead of them) settled a
        # group since the sweep last asked.
        self._messages_settling = False

    def is_settled(self, payment_id: str) -> bool:
        with self._lock:
            return payment_id in self._settled

    def settled(
        self, payment_ids: Sequence[str], *, mark: str | None = None, by_messages: bool = False
    ) -> None:
        """Remember ``payment_ids`` as settled; ``mark``, if given, becomes the mark, in
        the same step, so a message that finds its payment settled finds the mark too."""
        with self._lock:
            for payment_id in payment_ids:
                self._settled[payment_id] = None
            while len(self._settled) > REMEMBERED:
                self._settled.popitem(last=False)
            if mark is not None:
                self._mark = mark
            if payment_ids and by_messages:
                self._messages_settling = True

    def reached_mark(self, payment_id: str) -> bool:
        """Whether ``payment_id`` is the mark; if so, the mark is cleared."""
        with self._lock:
            if payment_id != self._mark:
                return False
            self._mark = None
            return True

    def messages_settled_since_asked(self) -> bool:
        """Whether messages settled a group since this was last asked."""
        with self._lock:
            settling, self._messages_settling = self._messages_settling, False
            return settling


def _log_settled(payments: Sequence[Payment], by: SettledBy) -> None:
    """One line per payment settled, once it is committed."""
    if not log.isEnabledFor(logging.INFO):
        return
    for payment in payments:
        fields = {"payment_id": payment.id, "status": payment.status.value, "by": by}
        if payment.failure_code is not None:
            fields["failure_code"] = payment.failure_code.value
        log.info("payment settled", extra=fields)
