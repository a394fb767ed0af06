"""What the API uses to wake the worker: send a payment id, never fail the submit.

Sends happen on a thread of their own, so no Redis round trip ever runs on the event
loop or holds the writer. Every message queued while one round trip is in flight goes
into the next, one pipeline (as the writer shares commits). The database is the source
of truth: a message that cannot be sent is logged and dropped, and the worker settles
the payment anyway. While the broker is unreachable, sends fail at once for a second
instead of each waiting for a timeout.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import dramatiq

from jobs.broker import enqueue_all, ping, unique_ids
from jobs.contract import settle_message

log = logging.getLogger(__name__)

BACK_OFF_S = 1.0
MAX_BATCH = 256


class SettlementQueue:
    """Sends ``settle_payment(payment_id)`` messages, in order, from one thread."""

    def __init__(self, broker: dramatiq.Broker, queue_name: str) -> None:
        self._broker = broker
        self._queue_name = queue_name
        broker.declare_queue(queue_name)
        self.failures = 0
        """Messages that could not be sent (their payments are settled by the sweep)."""
        self._pending: queue.SimpleQueue[str | threading.Event | None] = queue.SimpleQueue()
        self._down_until = 0.0
        self._thread = threading.Thread(target=self._run, name="p2p-enqueue", daemon=True)
        self._thread.start()

    def send(self, payment_id: str) -> None:
        """Queue the message and return at once; it is sent in the background."""
        self._pending.put(payment_id)

    def flush(self) -> None:
        """Wait until every message queued so far was sent, or given up."""
        done = threading.Event()
        self._pending.put(done)
        done.wait()

    def ping(self) -> None:
        """Raises when the broker cannot be reached."""
        ping(self._broker)

    def close(self) -> None:
        """Send what is queued, then stop."""
        self._pending.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._pending.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            payment_ids: list[str] = []
            for item in batch:
                if isinstance(item, str):
                    payment_ids.append(item)
                    continue
                # A flush or the end: what came before it is sent first.
                self._send(payment_ids)
                payment_ids = []
                if item is None:
                    return
                item.set()
            self._send(payment_ids)

    def _send(self, payment_ids: list[str]) -> None:
        if not payment_ids:
            return
        if time.monotonic() < self._down_until:
            self.failures += len(payment_ids)
            return
        messages = [
            settle_message(self._queue_name, payment_id, message_id)
            for payment_id, message_id in zip(
                payment_ids, unique_ids(len(payment_ids)), strict=True
            )
        ]
        try:
            enqueue_all(self._broker, messages)
        except Exception as error:
            self._down_until = time.monotonic() + BACK_OFF_S
            self.failures += len(payment_ids)
            for payment_id in payment_ids:
                log.warning(
                    "could not enqueue payment %s (%s); the worker will settle it anyway",
                    payment_id,
                    error,
                    extra={"payment_id": payment_id},
                )
