"""The only place a message becomes a call: the settle and webhook actors, declared on a
given broker.

Actors are declared by a function, not at import time, so that nothing binds to
Dramatiq's global default broker by accident.
"""

from __future__ import annotations

from collections.abc import Callable

import dramatiq

from jobs.contract import DELIVER_WEBHOOK, SETTLE_PAYMENT
from shared.settings import Settings

SettleActor = dramatiq.Actor[[str], None]
WebhookActor = dramatiq.Actor[[str, str, int], None]


def declare_settle_actor(
    broker: dramatiq.Broker, settle: Callable[[str], None], settings: Settings
) -> SettleActor:
    """The actor that settles a payment by id through ``settle``. Business failures are
    recorded by the engine and never raised; whatever is raised is an infrastructure
    error and retried with backoff."""

    actor: SettleActor = dramatiq.actor(
        broker=broker,
        actor_name=SETTLE_PAYMENT,
        queue_name=settings.queue_name,
        max_retries=settings.retry_max,
        min_backoff=settings.retry_min_backoff_ms,
        max_backoff=settings.retry_max_backoff_ms,
    )(_named(settle))
    return actor


def _named(settle: Callable[[str], None]) -> Callable[[str], None]:
    def settle_payment(payment_id: str) -> None:
        settle(payment_id)

    return settle_payment


def declare_webhook_actor(
    broker: dramatiq.Broker, hand_off: Callable[[str, str, int], None], settings: Settings
) -> WebhookActor:
    """The actor that hands a delivery (its id, its endpoint's, the attempts it had) to
    the sender's threads and returns at once: an attempt never holds a worker thread.
    Never retried by Dramatiq: the delivery is in the database, and the sweep hands it
    out again."""

    def deliver_webhook(delivery_id: str, endpoint_id: str, attempts: int) -> None:
        hand_off(delivery_id, endpoint_id, attempts)

    actor: WebhookActor = dramatiq.actor(
        broker=broker,
        actor_name=DELIVER_WEBHOOK,
        queue_name=settings.webhook_queue_name,
        max_retries=0,
    )(deliver_webhook)
    return actor
