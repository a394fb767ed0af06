"""The only place a message becomes a call: the settle actor, declared on a given broker.

Actors are declared by a function, not at import time, so that nothing binds to
Dramatiq's global default broker by accident.
"""

from __future__ import annotations

import dramatiq

from shared.db import Database
from shared.engine import settle_payment
from shared.settings import Settings

SETTLE_PAYMENT = "settle_payment"

SettleActor = dramatiq.Actor[[str], None]


def declare_settle_actor(broker: dramatiq.Broker, db: Database, settings: Settings) -> SettleActor:
    """The actor that settles one payment by id. Business failures are recorded by the
    engine and never raised; whatever is raised is an infrastructure error and retried."""

    def settle(payment_id: str) -> None:
        settle_payment(db, payment_id)

    actor: SettleActor = dramatiq.actor(
        broker=broker,
        actor_name=SETTLE_PAYMENT,
        queue_name=settings.queue_name,
        max_retries=settings.retry_max,
        min_backoff=settings.retry_min_backoff_ms,
        max_backoff=settings.retry_max_backoff_ms,
    )(settle)
    return actor
