"""The log fields of the message in hand: its payment id, on Dramatiq's lines too."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq

from jobs.contract import payment_id_of
from shared import logs


class MessageLogFields(dramatiq.Middleware):
    """Every line logged while a worker thread processes a message carries its
    ``message_id`` and, for a settle message, its ``payment_id``: the actor's lines and
    Dramatiq's own (an unhandled exception, a retry scheduled, retries exhausted).

    Added first, so it begins before every other middleware and, since Dramatiq runs
    ``after_*`` hooks in reverse, ends after all of them.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        fields = {"message_id": str(message.message_id)}
        payment_id = payment_id_of(message)
        if payment_id is not None:
            fields["payment_id"] = payment_id
        self._local.token = logs.begin(**fields)

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        self._end()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._end()

    def _end(self) -> None:
        token: logs.Fields | None = getattr(self._local, "token", None)
        if token is not None:
            self._local.token = None
            logs.end(token)


def add_message_log_fields(broker: dramatiq.Broker) -> None:
    """Install ``MessageLogFields`` on ``broker``, first of its middleware."""
    first = type(broker.middleware[0]) if broker.middleware else None
    broker.add_middleware(MessageLogFields(), before=first)
