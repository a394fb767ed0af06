"""How many settle messages wait in the broker, read at scrape time.

Dramatiq's Redis broker keeps, under its namespace (``dramatiq``), for a queue ``q``
(see ``dramatiq/brokers/redis/dispatch.lua``):

- ``dramatiq:q``: a list of the ids of messages waiting to be fetched;
- ``dramatiq:q.msgs``: a hash of every message not yet acknowledged, waiting or fetched;
- ``dramatiq:q.DQ.msgs``: the same for the delay queue, where retries wait their backoff;
- ``dramatiq:q.XQ``: a sorted set of the dead-lettered message ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from redis.backoff import NoBackoff
from redis.retry import Retry


@dataclass(frozen=True, slots=True)
class QueueCounts:
    ready: int
    """Waiting to be fetched by a worker."""
    delayed: int
    """Retries waiting out their backoff."""
    unacked: int | None
    """Fetched by a worker (prefetched, in hand, or held by a dead one), not yet
    acknowledged; ``None`` where the broker cannot tell."""
    dead_letters: int
    """Given up after their retries."""


class QueueDepth(Protocol):
    queue_name: str

    def read(self) -> QueueCounts:
        """The counts now; raises when the broker cannot be reached."""
        ...


class RedisQueueDepth:
    """Four reads of Dramatiq's keys in one ``MULTI``, on a client of its own."""

    def __init__(self, client: redis.Redis, queue_name: str, namespace: str = "dramatiq"):
        self.queue_name = queue_name
        self._client = client
        self._key = f"{namespace}:{queue_name}"

    @classmethod
    def from_url(cls, url: str, queue_name: str, *, timeout_s: float) -> RedisQueueDepth:
        """A scrape must not hang on a Redis that does not answer: one try, short timeouts."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, queue_name)

    def read(self) -> QueueCounts:
        pipe = self._client.pipeline(transaction=True)
        pipe.llen(self._key)
        pipe.hlen(f"{self._key}.msgs")
        pipe.hlen(f"{self._key}.DQ.msgs")
        pipe.zcard(f"{self._key}.XQ")
        ready, stored, delayed, dead = pipe.execute()
        return QueueCounts(ready, delayed, max(stored - ready, 0), dead)

    def close(self) -> None:
        self._client.close()


class StubQueueDepth:
    """The in-process broker's queues (``p2p dev`` and tests)."""

    def __init__(self, broker: StubBroker, queue_name: str) -> None:
        self.queue_name = queue_name
        self._broker = broker

    def read(self) -> QueueCounts:
        queues = self._broker.queues
        delayed = queues.get(dq_name(self.queue_name))
        return QueueCounts(
            ready=queues[self.queue_name].qsize() if self.queue_name in queues else 0,
            delayed=0 if delayed is None else delayed.qsize(),
            unacked=None,
            dead_letters=len(self._broker.dead_letters_by_queue.get(self.queue_name, ())),
        )


def queue_depth_of(broker: dramatiq.Broker, queue_name: str) -> QueueDepth | None:
    """The reader for ``broker``'s own client; ``run_worker`` gives a short-timeout one."""
    if isinstance(broker, StubBroker):
        return StubQueueDepth(broker, queue_name)
    if isinstance(broker, RedisBroker):
        return RedisQueueDepth(broker.client, queue_name, broker.namespace)
    return None
