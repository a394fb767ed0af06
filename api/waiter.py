"""Long-polls: one loop asks the database about everything awaited at once.

The worker may be another process, so the database is what we watch. However many
clients wait, it costs one small query per tick for each kind of wait (payments to
settle, event feeds to grow), and none while nobody waits.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

import anyio.to_thread

from shared.event_feed import feeds_grown_past
from shared.payments import settled_among
from shared.store import Database

TICK_S = 0.05

K = TypeVar("K", bound=Hashable)


class _Awaited(Generic[K]):
    """The long-polls waiting for one kind of thing, by what each waits for."""

    def __init__(self, someone_waits: asyncio.Event) -> None:
        self._waiting: defaultdict[K, set[asyncio.Event]] = defaultdict(set)
        self._someone_waits = someone_waits
        self.released = False

    async def wait(self, key: K, seconds: float) -> None:
        if self.released:
            return
        event = asyncio.Event()
        self._waiting[key].add(event)
        self._someone_waits.set()
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            events = self._waiting[key]
            events.discard(event)
            if not events:
                del self._waiting[key]

    def keys(self) -> list[K]:
        return list(self._waiting)

    def wake(self, keys: Iterable[K]) -> None:
        for key in keys:
            for event in self._waiting.get(key, ()):
                event.set()

    def release(self) -> None:
        self.released = True
        self.wake(self.keys())


class Waiter:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._someone_waits = asyncio.Event()
        self._payments: _Awaited[str] = _Awaited(self._someone_waits)
        self._feeds: _Awaited[tuple[str, int]] = _Awaited(self._someone_waits)

    async def wait_settled(self, payment_id: str, seconds: float) -> None:
        """Return once the payment is final, or after ``seconds``, or at once when the
        server is shutting down."""
        await self._payments.wait(payment_id, seconds)

    async def wait_for_events(self, user_id: str, position: int, seconds: float) -> None:
        """Return once the user has an event past ``position`` (``EventPage.position``),
        or after ``seconds``, or at once when the server is shutting down."""
        await self._feeds.wait((user_id, position), seconds)

    @property
    def released(self) -> bool:
        """Whether the server is shutting down: long-polls answer at once."""
        return self._feeds.released

    def release(self) -> None:
        """Answer every long-poll now, and every later one at once: a server that is
        shutting down finishes its requests instead of holding them for their ``wait``."""
        self._payments.release()
        self._feeds.release()

    async def run(self) -> None:
        """The polling loop; runs for the life of the app."""
        while True:
            await self._someone_waits.wait()
            payment_ids, feeds = self._payments.keys(), self._feeds.keys()
            if not payment_ids and not feeds:
                self._someone_waits.clear()
                continue
            if payment_ids:
                settled = await anyio.to_thread.run_sync(settled_among, self._db, payment_ids)
                self._payments.wake(payment.id for payment in settled)
            if feeds:
                grown = await anyio.to_thread.run_sync(feeds_grown_past, self._db, feeds)
                self._feeds.wake(grown)
            await asyncio.sleep(TICK_S)
