"""The settle message: what the API sends and the worker's actor reads.

One message names one payment: actor ``settle_payment``, one argument (the payment id),
on the queue named by ``Settings.queue_name`` (``P2P_QUEUE_NAME``) on both sides. It only
wakes the worker: the payment is in the database already, and the sweep settles one
whose message was lost.
"""

from __future__ import annotations

from typing import Any

import dramatiq

SETTLE_PAYMENT = "settle_payment"


def settle_message(queue_name: str, payment_id: str, message_id: str) -> dramatiq.Message[None]:
    """The message that asks the worker to settle ``payment_id``."""
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=SETTLE_PAYMENT,
        args=(payment_id,),
        kwargs={},
        options={},
        message_id=message_id,
    )


def payment_id_of(message: Any) -> str | None:
    """The payment a settle message names; ``None`` for any other message. ``message``
    is a ``dramatiq.Message`` or the ``MessageProxy`` a middleware is handed."""
    if message.actor_name == SETTLE_PAYMENT and message.args:
        return str(message.args[0])
    return None
