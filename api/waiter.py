"""Long-polls: one loop asks the database about every awaited payment at once.

The worker may be another process, so the database is what we watch. However many
clients wait, it costs one small query per tick, and none while nobody waits.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import anyio.to_thread

from shared.payments import settled_among
from shared.store import Database

TICK_S = 0.05


class PaymentWaiter:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._someone_waits = asyncio.Event()
        self._released = False

    async def wait_settled(self, payment_id: str, seconds: float) -> None:
        """Return once the payment is final, or after ``seconds``, or at once when the
        server is shutting down."""
        if self._released:
            return
        event = asyncio.Event()
        self._waiting[payment_id].add(event)
        self._someone_waits.set()
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            events = self._waiting[payment_id]
            events.discard(event)
            if not events:
                del self._waiting[payment_id]

    def release(self) -> None:
        """Answer every long-poll now, and every later one at once: a server that is
        shutting down finishes its requests instead of holding them for their ``wait``."""
        self._released = True
        for events in self._waiting.values():
            for event in events:
                event.set()

    async def run(self) -> None:
        """The polling loop; runs for the life of the app."""
        while True:
            await self._someone_waits.wait()
            if not self._waiting:
                self._someone_waits.clear()
                continue
            ids = list(self._waiting)
            for payment in await anyio.to_thread.run_sync(settled_among, self._db, ids):
                for event in self._waiting.get(payment.id, ()):
                    event.set()
            await asyncio.sleep(TICK_S)
