"""Runs delivery attempts on threads of their own, a bounded number per endpoint.

An attempt may take the whole timeout (an endpoint that hangs), so attempts never run
on a Dramatiq worker thread, which settles payments too: the actor hands them here and
returns. Here at most ``threads`` run at once, and at most ``per_endpoint`` of one
endpoint; the rest of that endpoint's wait in its own line and hold no thread, so a
slow endpoint delays its own deliveries and nobody else's (unless ``threads /
per_endpoint`` endpoints all hang at once). A delivery already in hand is not taken
twice.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.webhook_attempts import Claimed

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self, attempt: Callable[[Claimed], Any], *, threads: int, per_endpoint: int
    ) -> None:
        self._attempt = attempt
        self._per_endpoint = per_endpoint
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="p2p-webhook")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._waiting: dict[str, deque[Claimed]] = {}
        self._running: dict[str, int] = {}
        self._in_hand: set[str] = set()
        self._closed = False

    def submit(self, claimed: Claimed) -> bool:
        """Attempt it when its endpoint has room; ``False`` when it is in hand already."""
        with self._lock:
            if self._closed or claimed.delivery_id in self._in_hand:
                return False
            self._in_hand.add(claimed.delivery_id)
            endpoint = claimed.endpoint_id
            if self._running.get(endpoint, 0) < self._per_endpoint:
                self._running[endpoint] = self._running.get(endpoint, 0) + 1
                self._pool.submit(self._run, claimed)
            else:
                self._waiting.setdefault(endpoint, deque()).append(claimed)
        return True

    def in_hand(self) -> int:
        """Deliveries running or waiting for their endpoint."""
        with self._lock:
            return len(self._in_hand)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in hand; ``False`` if something still is at ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._in_hand, timeout)

    def close(self) -> None:
        """Start nothing more; wait for the attempts running (each ends by its timeout).
        What waited is claimed again by a sweep once its lease runs out."""
        with self._lock:
            self._closed = True
            for line in self._waiting.values():
                self._in_hand.difference_update(claimed.delivery_id for claimed in line)
            self._waiting.clear()
        self._pool.shutdown(wait=True)

    def _run(self, claimed: Claimed) -> None:
        while True:
            try:
                self._attempt(claimed)
            except Exception:
                log.exception(
                    "webhook attempt failed; the sweep hands it out again",
                    extra={"delivery_id": claimed.delivery_id},
                )
            with self._lock:
                self._in_hand.discard(claimed.delivery_id)
                line = self._waiting.get(claimed.endpoint_id)
                if line and not self._closed:
                    # The endpoint's next, on this same thread: its share stays the same.
                    claimed = line.popleft()
                    continue
                self._waiting.pop(claimed.endpoint_id, None)
                left = self._running[claimed.endpoint_id] - 1
                if left:
                    self._running[claimed.endpoint_id] = left
                else:
                    del self._running[claimed.endpoint_id]
                if not self._in_hand:
                    self._idle.notify_all()
                return
