"""Retention: the worker deletes events older than ``P2P_EVENT_RETENTION_DAYS``, a
batch per transaction, every ``P2P_EVENT_PRUNE_INTERVAL_S``."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from shared.event_feed import prune_events
from shared.settings import Settings
from shared.store import Database

log = logging.getLogger(__name__)


class EventPruner:
    """A daemon thread running ``prune_once`` every interval (none when it is 0)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._retention = timedelta(days=settings.event_retention_days)
        self._interval = settings.event_prune_interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="p2p-event-prune", daemon=True)

    def start(self) -> None:
        if self._interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def prune_once(self) -> int:
        """Delete every event past the retention; returns how many."""
        pruned = prune_events(self._db, older_than=self._retention)
        if pruned:
            log.info("pruned %d event(s) past retention", pruned, extra={"pruned": pruned})
        return pruned

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.prune_once()
            except Exception:
                log.exception("pruning events failed; trying again next pass")
            if self._stopping.wait(self._interval):
                return
