"""The sweep: settles payments that stay ``pending``, whatever happened to their message.

Redis may lose messages (FLUSHALL, a restart without persistence), the API may die
between its commit and its enqueue, and a SIGKILLed worker's messages come back only
after Dramatiq's heartbeat timeout. The database knows better: every pass settles the
oldest payments pending for longer than the grace period, a bounded batch at a time,
directly through the worker's ``Settler``. It never enqueues, so it cannot flood the queue while a
backlog is being worked off; a message that arrives later for a swept payment is a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from shared.settings import Settings
from worker.settler import Settler

log = logging.getLogger(__name__)


class Sweeper:
    """A daemon thread running ``sweep_once`` every ``sweep_interval_s``."""

    def __init__(
        self,
        settler: Settler,
        settings: Settings,
        *,
        on_swept: Callable[[int], None] | None = None,
    ) -> None:
        self._settler = settler
        self._on_swept = on_swept
        self._grace = timedelta(seconds=settings.sweep_grace_s)
        self._batch = settings.sweep_batch
        self._interval = settings.sweep_interval_s
        self._heartbeat = Path(settings.heartbeat_path) if settings.heartbeat_path else None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="p2p-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the payment in hand, then return."""
        self._stopping.set()
        self._thread.join()

    def sweep_once(self) -> int:
        """Settle one batch of stuck payments; returns how many were settled."""
        settled = self._settler.sweep(older_than=self._grace, limit=self._batch)
        if settled:
            log.info("sweep settled %d stuck payment(s)", settled, extra={"settled": settled})
            if self._on_swept is not None:
                self._on_swept(settled)
        return settled

    def _run(self) -> None:
        while True:
            try:
                settled = self.sweep_once()
                if self._heartbeat is not None:
                    self._heartbeat.touch()
            except Exception:
                log.exception("sweep failed; trying again next pass")
                settled = 0
            # A full batch means more may be waiting: go again at once.
            pause = 0 if settled == self._batch else self._interval
            if self._stopping.wait(pause):
                return
