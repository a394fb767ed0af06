"""What the API uses to wake the worker: send a payment id, never fail the submit."""

from __future__ import annotations

import logging

from worker.actors import SettleActor
from worker.broker import ping

log = logging.getLogger(__name__)


class SettlementQueue:
    """Sends ``settle_payment(payment_id)`` messages.

    The database is the source of truth: a message that cannot be sent is logged and
    dropped, and the worker's sweep settles the payment anyway.
    """

    def __init__(self, actor: SettleActor) -> None:
        self._actor = actor

    def send(self, payment_id: str) -> bool:
        """True if the message reached the broker."""
        try:
            self._actor.send(payment_id)
        except Exception:
            log.warning("could not enqueue payment %s; the sweep will settle it", payment_id)
            return False
        return True

    def ping(self) -> None:
        """Raises when the broker cannot be reached."""
        ping(self._actor.broker)
