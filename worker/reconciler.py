"""Continuous reconciliation: ``p2p verify``'s checks, a bounded slice at a time.

Every ``P2P_RECONCILE_INTERVAL_S`` the worker runs ``shared.audit.RollingAudit`` over the
next ``P2P_RECONCILE_BATCH`` accounts, payments and deposits, round-robin, in a read
transaction (WAL: writers are not held up). Every violation found is logged as an error
with the row it concerns; the worker's metrics export how many are open.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace

from shared.audit import AuditRun, RollingAudit, Scope, Violation
from shared.settings import Settings
from shared.store import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReconciliationStatus:
    """What the metrics show: read at scrape time, consistent with itself."""

    open_violations: int = 0
    last_run_at: float | None = None
    """Unix time at which the latest run finished."""
    last_cycle_at: float | None = None
    """Unix time at which a run last completed a cycle through every account."""
    checked: dict[Scope, int] = field(default_factory=lambda: dict.fromkeys(Scope, 0))
    """Rows checked since the worker started, by kind."""
    failed_runs: int = 0


class Reconciler:
    """A daemon thread running ``reconcile_once`` every ``reconcile_interval_s``."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._audit = RollingAudit(settings.reconcile_batch)
        self._interval = settings.reconcile_interval_s
        self._status = ReconciliationStatus()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="p2p-reconcile", daemon=True)

    @property
    def enabled(self) -> bool:
        return self._interval > 0

    @property
    def status(self) -> ReconciliationStatus:
        return self._status

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        """Finish the run in hand, then return."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def reconcile_once(self) -> AuditRun:
        """Audit the next slice; logs every violation found and updates ``status``."""
        run = self._audit.run(self._db)
        for violation in run.found:
            _log_violation(violation)
        now = time.time()
        before = self._status
        self._status = ReconciliationStatus(
            open_violations=len(self._audit.open),
            last_run_at=now,
            last_cycle_at=now if run.cycle_complete else before.last_cycle_at,
            checked={scope: before.checked[scope] + run.checked.get(scope, 0) for scope in Scope},
            failed_runs=before.failed_runs,
        )
        return run

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reconcile_once()
            except Exception:
                log.exception("reconciliation run failed; trying again next interval")
                self._status = replace(self._status, failed_runs=self._status.failed_runs + 1)
            if self._stopping.wait(self._interval):
                return


def _log_violation(violation: Violation) -> None:
    fields: dict[str, str] = {"violation": violation.check, "detail": violation.detail}
    if violation.scope is not Scope.DATABASE:
        fields[f"{violation.scope.value}_id"] = violation.subject
    log.error("reconciliation: the ledger does not hold: %s", violation, extra=fields)
