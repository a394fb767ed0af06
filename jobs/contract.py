"""The messages: what is sent on the queues and the worker's actors read.

One message names one payment: actor ``settle_payment``, one argument (the payment id),
on the queue named by ``Settings.queue_name`` (``P2P_QUEUE_NAME``) on both sides. It only
wakes the worker: the payment is in the database already, and the sweep settles one
whose message was lost.

One message names one webhook delivery: actor ``deliver_webhook``, its arguments the
delivery id, its endpoint's id and the attempts it had when handed out, on the queue
named by ``Settings.webhook_queue_name`` (``P2P_WEBHOOK_QUEUE_NAME``). The worker's
webhook sweep sends it for a delivery that is due; it only wakes the sender, and a
delivery whose message is lost is handed out again once its claim runs out.
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


DELIVER_WEBHOOK = "deliver_webhook"


def webhook_message(
    queue_name: str, delivery_id: str, endpoint_id: str, attempts: int, message_id: str
) -> dramatiq.Message[None]:
    """The message that asks the worker to attempt ``delivery_id``, which had made
    ``attempts`` attempts when it was handed out."""
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=DELIVER_WEBHOOK,
        args=(delivery_id, endpoint_id, attempts),
        kwargs={},
        options={},
        message_id=message_id,
    )
