"""The expiry pass: ends authorizations left uncaptured past their ``expires_at``.

Found from the database, like the sweep, so a worker started after a crash (or after a
flushed Redis) expires what came due meanwhile: nothing about an expiry is queued.
Each pass expires a bounded batch, the soonest due first; a capture or a void racing
it is safe (``shared.holds``: exactly one of them ends an authorization).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from shared.clock import utcnow
from shared.holds import expire_due
from shared.settings import Settings
from shared.store import Database

log = logging.getLogger(__name__)


class Expirer:
    """A daemon thread running ``expire_once`` every ``expiry_interval_s``; ``clock``
    says when it is (tests move it a hold ahead instead of waiting the hold out)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        on_expired: Callable[[int], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._clock = clock
        self._batch = settings.expiry_batch
        self._interval = settings.expiry_interval_s
        self._on_expired = on_expired
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="p2p-expiry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the pass in hand, then return."""
        self._stopping.set()
        self._thread.join()

    def expire_once(self) -> int:
        """Expire one batch of authorizations that are due; returns how many."""
        expired = len(expire_due(self._db, limit=self._batch, now=self._clock()))
        if expired:
            log.info("expired %d authorization(s)", expired, extra={"expired": expired})
            if self._on_expired is not None:
                self._on_expired(expired)
        return expired

    def _run(self) -> None:
        while True:
            try:
                expired = self.expire_once()
            except Exception:
                log.exception("expiry pass failed; trying again next pass")
                expired = 0
            # A full batch means more may be due: go again at once.
            pause = 0 if expired == self._batch else self._interval
            if self._stopping.wait(pause):
                return
