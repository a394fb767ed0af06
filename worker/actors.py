"""The only place a message becomes a call: the settle actor, declared on a given broker.

Actors are declared by a function, not at import time, so that nothing binds to
Dramatiq's global default broker by accident.
"""

from __future__ import annotations

from collections.abc import Callable

import dramatiq

from jobs.contract import SETTLE_PAYMENT
from shared.settings import Settings

SettleActor = dramatiq.Actor[[str], None]


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
