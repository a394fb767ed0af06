"""Brokers: Redis for ``p2p api`` and ``p2p worker``, in-process for ``p2p dev`` and tests."""

from __future__ import annotations

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker


def redis_broker(url: str, *, timeout_s: float) -> RedisBroker:
    """A Redis broker whose commands give up after ``timeout_s``, so a missing Redis
    costs a submit a short wait and never a hang."""
    client = redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
    )
    return RedisBroker(client=client)  # type: ignore[no-untyped-call]


def in_process_broker() -> StubBroker:
    return StubBroker()


def ping(broker: object) -> None:
    """Raises when the broker cannot be reached; an in-process broker always can."""
    if isinstance(broker, RedisBroker):
        broker.client.ping()
