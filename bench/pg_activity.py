"""What PostgreSQL's backends are doing during a drain, sampled from ``pg_stat_activity``
every few milliseconds: a histogram of backend time by who (the API's, the workers', the
server's own processes) and by what (running, waiting on a lock, on the WAL, idle in a
transaction while the client thinks).

The processes of a bench run name themselves (``PGAPPNAME``, see ``bench.stack``), so a
backend is told from the others by its ``application_name``. Each sample also notes
whether a transaction holds an advisory lock in the database: settling takes one (the
commit order, ``Engine.order_commits``) from its events to its commit, so its share of
the samples is the share of the time that part of settling ran, one transaction at a
time.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg

SAMPLER_NAME = "p2p-bench-sampler"
API_NAME = "p2p-api"
WORKER_NAME = "p2p-worker"

_SAMPLE = """
SELECT a.pid, a.application_name, a.backend_type, a.state, a.wait_event_type, a.wait_event,
       left(a.query, 120),
       a.pid IN (SELECT l.pid FROM pg_locks l
                 WHERE l.locktype = 'advisory' AND l.granted
                   AND l.database = (SELECT oid FROM pg_database
                                     WHERE datname = current_database()))
FROM pg_stat_activity a
WHERE (a.datname = current_database() OR a.backend_type <> 'client backend')
  AND a.pid <> pg_backend_pid()
"""

# A sample that comes this late (the machine is busy) counts for this long at most.
_LONGEST_SAMPLE_S = 0.1


def backend_kind(application_name: str, backend_type: str) -> str:
    """Whose backend: the API's, the workers', the bench's own, or the server's."""
    if backend_type != "client backend":
        return "server"
    return {API_NAME: "api", WORKER_NAME: "worker"}.get(application_name, "bench")


# A statement of the settle path, told by what it starts with or holds; the first match
# names it.
_STATEMENTS = (
    ("SKIP LOCKED", "claim payments"),
    ("FROM accounts WHERE id = ANY", "lock accounts"),
    ("pg_advisory_xact_lock", "commit order"),
    ("INSERT INTO ledger_entries", "insert entries"),
    ("INSERT INTO events", "insert events"),
    ("INSERT INTO webhook_deliveries", "insert deliveries"),
    ("UPDATE accounts", "update accounts"),
    ("UPDATE payments", "update payments"),
    ("SELECT status FROM payments WHERE id", "read a status"),
    ("COMMIT", "commit"),
    ("BEGIN", "begin"),
)


def statement(query: str) -> str:
    """The settle-path statement ``query`` is (``pg_stat_activity.query``: the one
    running, or the last one run)."""
    for marker, name in _STATEMENTS:
        if marker in query:
            return name
    return " ".join(query.split()[:3]) or "none"


def activity(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
    """What a backend is doing: ``running`` (on a core, or waiting for one), a wait event
    as ``Type/Event``, ``in transaction: client`` (between statements: the client is
    computing, or waiting itself) or ``idle`` (no transaction)."""
    if state == "idle":
        return "idle"
    if state is not None and state.startswith("idle in transaction"):
        return "in transaction: client"
    if wait_type is None:
        return "running"
    return f"{wait_type}/{wait_event}"


@dataclass
class Activity:
    """Seconds of backend time by (kind, activity), over ``seconds`` of sampling."""

    seconds: float = 0.0
    samples: int = 0
    backend_s: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    # The workers' backend time by the statement running (or last run) and activity.
    worker_statement_s: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    # Of the time sampled, how long a transaction held the commit-order lock.
    ordered_s: float = 0.0
    # How long at least one worker backend was in a transaction.
    worker_in_transaction_s: float = 0.0
    pids: defaultdict[str, set[int]] = field(default_factory=lambda: defaultdict(set))


class ActivitySampler:
    """Samples the database of ``url`` on a thread of its own until ``stop``."""

    def __init__(self, url: str, interval_s: float = 0.02) -> None:
        self._conn = psycopg.connect(
            url, autocommit=True, application_name=SAMPLER_NAME, connect_timeout=10
        )
        self._interval_s = interval_s
        self.activity = Activity()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-activity", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Activity:
        self._stop.set()
        self._thread.join()
        self._conn.close()
        return self.activity

    def backends(self) -> dict[str, set[int]]:
        """Every backend sampled so far, by kind; the first call samples once itself."""
        if not self.activity.samples and not self._thread.is_alive():
            self._sample(weight=0.0)
        return {kind: set(pids) for kind, pids in self.activity.pids.items()}

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self._interval_s):
            now = time.monotonic()
            self._sample(weight=min(now - last, _LONGEST_SAMPLE_S))
            last = now

    def _sample(self, weight: float) -> None:
        seen = self.activity
        rows = self._conn.execute(_SAMPLE).fetchall()
        seen.seconds += weight
        seen.samples += 1
        ordered = worker_in_transaction = False
        for pid, name, backend_type, state, wait_type, wait_event, query, holds_order in rows:
            kind = backend_kind(name or "", backend_type or "")
            seen.pids[kind].add(pid)
            doing = activity(state, wait_type, wait_event)
            seen.backend_s[(kind, doing)] += weight
            if kind == "worker" and doing != "idle":
                seen.worker_statement_s[(statement(query or ""), doing)] += weight
            ordered = ordered or bool(holds_order)
            if kind == "worker" and doing != "idle":
                worker_in_transaction = True
        seen.ordered_s += weight if ordered else 0.0
        seen.worker_in_transaction_s += weight if worker_in_transaction else 0.0
