"""Brokers: Redis for ``p2p api`` and ``p2p worker``, in-process for ``p2p dev`` and tests."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis


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


def enqueue_all(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[None]]) -> None:
    """``broker.enqueue`` each message; on Redis in one round trip, a pipeline of the
    calls ``RedisBroker.enqueue`` makes one at a time: its ``dispatch`` script, with the
    arguments it passes (dramatiq is pinned; ``tests/worker/test_broker.py`` holds the
    two to the same result)."""
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return
    dispatch = broker.scripts["dispatch"]
    keys = [broker.namespace]
    pipe = broker.client.pipeline(transaction=False)
    sent = []
    for message in messages:
        message = message.copy(options={"redis_message_id": str(uuid4())})
        broker.emit_before("enqueue", message, None)
        args = [
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            broker._should_do_maintenance("enqueue"),
            broker._max_unpack_size(),  # type: ignore[no-untyped-call]
            message.options["redis_message_id"],
            message.encode(),
        ]
        dispatch(keys=keys, args=args, client=pipe)
        sent.append(message)
    pipe.execute()
    for message in sent:
        broker.emit_after("enqueue", message, None)
