"""Group commit: one writer thread, whose transactions each carry every write that
arrived while the previous one was committing.

Under load, concurrent writes share one ``BEGIN IMMEDIATE … COMMIT`` and one fsync;
under light load a write is committed at once, alone, waiting for nobody. Each write
runs in a savepoint of its own, so one that fails (a domain error, a constraint) is
rolled back alone and the others still commit. A write's future resolves only after the
commit that holds it, so a caller never answers before its record is durable (G5).

Writes of one kind that arrive together can be run by one call, set-based (a batched
write: ``submit_batched_async``), so a group costs a few statements, not a few per write.

Where writes cannot share a transaction (``Engine.writes_share_transactions``: row locks
taken in request order could deadlock), a group is one write, or one run of batched
writes of one kind; a write that cannot join the group gathered so far starts the next,
so every write still commits in the order it was submitted.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from shared.store import Connection, Database

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

MAX_GROUP = 256


@dataclass(frozen=True, slots=True)
class _Write:
    work: Callable[[Connection], Any]
    future: Future[Any] | asyncio.Future[Any]
    """An ``asyncio`` future is resolved on its own loop."""
    then: Callable[[Any], None] | None = None
    """Called with the write's result on the writer thread, once it is committed."""
    many: Batched[Any, Any] | None = None
    """A batched write's function; ``item`` is what it is given of this write."""
    item: Any = None


_Outcome = tuple[_Write, Any, BaseException | None]

Item = TypeVar("Item")

Batched = Callable[[Connection, list[Item]], Sequence[T | Exception]]
"""``many(conn, items)``: every item's write, in order, as if one after the other; an
exception in the list is that item's failure, and such an item wrote nothing."""


class GroupCommitter:
    """Runs write functions ``fn(conn, *args, **kwargs)`` in shared transactions on one
    thread. ``fn`` and its arguments are passed separately (a ``ParamSpec``), so that
    mypy checks the arguments against ``fn``."""

    def __init__(self, db: Database, *, max_group: int = MAX_GROUP) -> None:
        self._db = db
        self._max_group = max_group
        self._shared = db.engine.writes_share_transactions
        self._writes: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self.groups = 0
        """Transactions committed so far (each a group of writes)."""
        self._thread = threading.Thread(target=self._run, name="p2p-group-commit", daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[T]:
        """Queue ``fn(conn, *args, **kwargs)``; the future holds its result once committed."""
        future: Future[T] = Future()
        self._writes.put(_Write(lambda conn: fn(conn, *args, **kwargs), future))
        return future

    def submit_async(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> asyncio.Future[T]:
        """``submit`` from an event loop: the future is of that loop. Every future of one
        loop that a commit resolves is resolved in one call onto it, not one each."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writes.put(_Write(lambda conn: fn(conn, *args, **kwargs), future))
        return future

    def submit_batched_async(
        self, many: Batched[Item, T], item: Item, *, then: Callable[[T], None] | None = None
    ) -> asyncio.Future[T]:
        """``submit_async`` of ``many(conn, [item])``, except that consecutive writes of
        one commit with the same ``many`` are run by one call, with all their items.

        Where writes do not share transactions, such a run is a transaction of its own:
        ``many`` must then take every row lock it needs in one ordered statement before
        anything else waits (``Engine.writes_share_transactions``).

        ``then(result)`` runs on the writer thread right after the commit, before the
        future resolves: a hand-off that should not wait for the loop (it must be quick,
        and what it raises is logged, not the write's failure).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writes.put(
            _Write(lambda conn: _alone(many, conn, item), future, then, many=many, item=item)
        )
        return future

    def run(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``submit``, then wait for the commit."""
        return self.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        self._writes.put(None)
        self._thread.join()

    def _run(self) -> None:
        held_over: _Write | None = None
        while True:
            first = self._writes.get() if held_over is None else held_over
            held_over = None
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
                if not self._joins(group, write):
                    held_over = write  # the first of the next group: the order is kept
                    break
                group.append(write)
            self._commit(group)
            if stopping:
                return

    def _joins(self, group: list[_Write], write: _Write) -> bool:
        """Whether ``write`` may share the transaction of ``group``: always where writes
        share transactions, else only to extend one run of batched writes of one kind."""
        return self._shared or (write.many is not None and write.many is group[0].many)

    def _commit(self, group: list[_Write]) -> None:
        try:
            outcomes = self._db.run(self._apply, group)
        except _EachAlone:
            for write in group:
                self._commit([write])
            return
        except Exception as error:
            log.exception("group commit of %d write(s) failed", len(group))
            outcomes = [(write, None, error) for write in group]
        else:
            self.groups += 1
            for write, value, failure in outcomes:
                if write.then is not None and failure is None:
                    try:
                        write.then(value)
                    except Exception:
                        log.exception("a hand-off after a commit failed")
        on_loops: defaultdict[asyncio.AbstractEventLoop, list[_Outcome]] = defaultdict(list)
        for outcome in outcomes:
            future = outcome[0].future
            if isinstance(future, asyncio.Future):
                on_loops[future.get_loop()].append(outcome)
            else:
                _resolve([outcome])
        for loop, resolved in on_loops.items():
            with suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, resolved)

    @staticmethod
    def _apply(conn: Connection, group: list[_Write]) -> list[_Outcome]:
        """Each write in a savepoint of its own, or each run of batched writes of one
        kind in one. A conflict (PostgreSQL broke a deadlock) is no single write's
        failure: the whole transaction is run again."""
        outcomes: list[_Outcome] = []
        start = 0
        while start < len(group):
            end = start + 1
            many = group[start].many
            if many is not None:
                while end < len(group) and group[end].many is many:
                    end += 1
            if many is not None and end - start > 1:
                outcomes += _apply_together(conn, many, group[start:end])
            else:
                outcomes.append(_apply_alone(conn, group[start]))
            start = end
        return outcomes


def _apply_alone(conn: Connection, write: _Write) -> _Outcome:
    conn.execute("SAVEPOINT write")
    try:
        value = write.work(conn)
    except conn.engine.conflict_error:
        raise
    except Exception as error:
        conn.execute("ROLLBACK TO write")
        conn.execute("RELEASE write")
        return write, None, error
    conn.execute("RELEASE write")
    return write, value, None


class _EachAlone(Exception):
    """The group's transaction is rolled back: commit each of its writes in one of its own."""


def _apply_together(conn: Connection, many: Batched[Any, Any], run: list[_Write]) -> list[_Outcome]:
    """Batched writes of one kind in one call. Should the call itself fail (a constraint
    its checks did not foresee), it is undone and each write runs alone, so that only
    the write at fault fails: in this transaction, or, where writes do not share
    transactions, each in a transaction of its own."""
    conn.execute("SAVEPOINT writes")
    try:
        results = many(conn, [write.item for write in run])
    except conn.engine.conflict_error:
        raise
    except Exception as error:
        log.warning("a batch of %d writes failed; each is tried alone", len(run), exc_info=True)
        if not conn.engine.writes_share_transactions:
            raise _EachAlone from error
        conn.execute("ROLLBACK TO writes")
        conn.execute("RELEASE writes")
        return [_apply_alone(conn, write) for write in run]
    conn.execute("RELEASE writes")
    return [
        (write, None, result) if isinstance(result, Exception) else (write, result, None)
        for write, result in zip(run, results, strict=True)
    ]


def _alone(many: Batched[Item, T], conn: Connection, item: Item) -> T:
    (result,) = many(conn, [item])
    if isinstance(result, Exception):
        raise result
    return result


def _resolve(outcomes: list[_Outcome]) -> None:
    for write, value, failure in outcomes:
        if write.future.done():  # an asyncio future whose caller was cancelled
            continue
        if failure is None:
            write.future.set_result(value)
        else:
            write.future.set_exception(failure)
