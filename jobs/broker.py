"""Brokers: Redis for ``p2p api`` and ``p2p worker``, in-process for ``p2p dev`` and tests."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any
from uuid import UUID

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
    arguments it passes (dramatiq is pinned; ``tests/jobs/test_broker.py`` holds the
    two to the same result).

    The script is called by its sha (``EVALSHA``), not as a ``Script``: a pipeline holding
    a ``Script`` first asks Redis whether it knows it (``SCRIPT EXISTS``), one more round
    trip for every batch. Should Redis not know it (restarted, flushed), every call of
    the pipeline failed alike and stored nothing: the script is loaded, and they are sent
    again."""
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return
    dispatch = broker.scripts["dispatch"]
    calls: list[list[Any]] = []
    sent = []
    for message, redis_message_id in zip(messages, unique_ids(len(messages)), strict=True):
        message = message.copy(options={"redis_message_id": redis_message_id})
        broker.emit_before("enqueue", message, None)
        calls.append(
            [
                broker.namespace,
                "enqueue",
                current_millis(),
                message.queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                broker._should_do_maintenance("enqueue"),
                broker._max_unpack_size(),  # type: ignore[no-untyped-call]
                redis_message_id,
                message.encode(),
            ]
        )
        sent.append(message)
    try:
        _evalsha_all(broker.client, dispatch.sha, calls)
    except redis.exceptions.NoScriptError:
        dispatch.sha = broker.client.script_load(dispatch.script)
        _evalsha_all(broker.client, dispatch.sha, calls)
    for message in sent:
        broker.emit_after("enqueue", message, None)


def _evalsha_all(client: redis.Redis, sha: str, calls: list[list[Any]]) -> None:
    """Each call, with one key (the namespace) and its arguments, in one pipeline."""
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.evalsha(sha, 1, *call)
    pipe.execute()


def unique_ids(count: int) -> list[str]:
    """``count`` random UUIDs, as ``uuid4()`` makes them and Dramatiq writes them, from
    one read of the system's randomness: ``uuid4()`` reads once each, and gives the GIL
    up each time."""
    raw = os.urandom(16 * count)
    return [str(UUID(bytes=raw[at : at + 16], version=4)) for at in range(0, 16 * count, 16)]
