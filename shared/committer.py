"""Group commit: one writer thread, whose transactions each carry every write that
arrived while the previous one was committing.

Under load, concurrent writes share one ``BEGIN IMMEDIATE … COMMIT`` and one fsync;
under light load a write is committed at once, alone, waiting for nobody. Each write
runs in a savepoint of its own, so one that fails (a domain error, a constraint) is
rolled back alone and the others still commit. A write's future resolves only after the
commit that holds it, so a caller never answers before its record is durable (G5).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.db import Database
from shared.dialect import Connection, dialect_of

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_GROUP = 256


@dataclass(frozen=True, slots=True)
class _Write:
    work: Callable[[Connection], Any]
    future: Future[Any]


_Outcome = tuple[Future[Any], Any, BaseException | None]


class GroupCommitter:
    """Runs write functions ``fn(conn, *args)`` in shared transactions on one thread."""

    def __init__(self, db: Database, *, max_group: int = MAX_GROUP) -> None:
        self._db = db
        self._max_group = max_group if db.dialect.shares_write_transactions else 1
        self._writes: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self.groups = 0
        """Transactions committed so far (each a group of writes)."""
        self._thread = threading.Thread(target=self._run, name="p2p-group-commit", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(conn, *args, **kwargs)``; the future holds its result once committed."""
        future: Future[T] = Future()
        self._writes.put(_Write(lambda conn: fn(conn, *args, **kwargs), future))
        return future

    def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``submit``, then wait for the commit."""
        return self.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        self._writes.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._writes.get()
            if first is None:
                return
            group = [first]
            stopping = False
            while len(group) < self._max_group:
                try:
                    write = self._writes.get_nowait()
                except queue.Empty:
                    break
                if write is None:
                    stopping = True
                    break
                group.append(write)
            self._commit(group)
            if stopping:
                return

    def _commit(self, group: list[_Write]) -> None:
        try:
            outcomes = self._db.run(self._apply, group)
        except Exception as error:
            log.exception("group commit of %d write(s) failed", len(group))
            for write in group:
                write.future.set_exception(error)
            return
        self.groups += 1
        for future, value, failure in outcomes:
            if failure is None:
                future.set_result(value)
            else:
                future.set_exception(failure)

    @staticmethod
    def _apply(conn: Connection, group: list[_Write]) -> list[_Outcome]:
        """Each write in a savepoint of its own. A conflict (PostgreSQL broke a deadlock)
        is no single write's failure: the whole transaction is run again."""
        outcomes: list[_Outcome] = []
        conflict = dialect_of(conn).conflict_error
        for write in group:
            conn.execute("SAVEPOINT write")
            try:
                value = write.work(conn)
            except conflict:
                raise
            except Exception as error:
                conn.execute("ROLLBACK TO write")
                conn.execute("RELEASE write")
                outcomes.append((write.future, None, error))
            else:
                conn.execute("RELEASE write")
                outcomes.append((write.future, value, None))
        return outcomes
