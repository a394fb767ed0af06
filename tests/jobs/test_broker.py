"""``enqueue_all``: one pipeline on Redis that stores exactly what ``RedisBroker.enqueue``
stores, message by message, and a worker consumes them the same."""

from __future__ import annotations

import json
import threading
from typing import Any
from uuid import UUID

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from jobs.broker import enqueue_all, unique_ids
from tests.conftest import RedisServer

QUEUE = "broker-test"


def _message(n: int) -> dramatiq.Message[None]:
    return dramatiq.Message(
        queue_name=QUEUE, actor_name="noted", args=(f"pay_{n}",), kwargs={}, options={}
    )


def _stored(redis_server: RedisServer) -> list[dict[str, Any]]:
    """The queue's messages in queue order, as the worker will fetch them."""
    with redis_server.client() as client:
        ids = client.lrange(f"dramatiq:{QUEUE}", 0, -1)
        data = client.hgetall(f"dramatiq:{QUEUE}.msgs")
    return [json.loads(data[message_id]) for message_id in ids]


def _comparable(message: dict[str, Any]) -> dict[str, Any]:
    """What a message is, without what makes every message unique."""
    options = {k: v for k, v in message["options"].items() if k != "redis_message_id"}
    return {k: v for k, v in message.items() if k not in {"message_id", "message_timestamp"}} | {
        "options": options
    }


@pytest.fixture
def broker(redis_server: RedisServer) -> Any:
    redis_server.flushall()
    broker = RedisBroker(url=redis_server.url)  # type: ignore[no-untyped-call]
    broker.declare_queue(QUEUE)
    yield broker
    broker.close()


def test_enqueue_all_stores_what_enqueue_stores_in_order(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    broker.enqueue(_message(0))
    one_by_one = _stored(redis_server)
    redis_server.flushall()

    enqueue_all(broker, [_message(n) for n in range(50)])

    stored = _stored(redis_server)
    assert [m["args"] for m in stored] == [[f"pay_{n}"] for n in range(50)]
    assert _comparable(stored[0]) == _comparable(one_by_one[0])
    assert len({m["options"]["redis_message_id"] for m in stored}) == 50


def test_a_worker_consumes_every_message_enqueue_all_sent(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    seen: list[str] = []
    done = threading.Event()

    def noted(payment_id: str) -> None:
        seen.append(payment_id)
        if len(seen) == 300:
            done.set()

    dramatiq.actor(broker=broker, actor_name="noted", queue_name=QUEUE)(noted)
    enqueue_all(broker, [_message(n) for n in range(300)])
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        assert done.wait(30), f"only {len(seen)} of 300 messages were consumed"
    finally:
        worker.stop()
    assert seen == [f"pay_{n}" for n in range(300)]


def test_other_brokers_get_each_message_through_enqueue() -> None:
    broker = StubBroker()
    broker.declare_queue(QUEUE)
    enqueue_all(broker, [_message(n) for n in range(3)])
    assert broker.queues[QUEUE].qsize() == 3
    broker.close()


def _script_calls(redis_server: RedisServer) -> int:
    """How many ``SCRIPT …`` commands (``EXISTS``, ``LOAD``) Redis has run."""
    with redis_server.client() as client:
        stats = client.info("commandstats")
    return sum(stats[name]["calls"] for name in stats if name.startswith("cmdstat_script"))


def test_a_batch_costs_one_round_trip_not_a_script_check_as_well(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    enqueue_all(broker, [_message(0)])  # the script is loaded once
    before = _script_calls(redis_server)

    for batch in range(5):
        enqueue_all(broker, [_message(batch * 10 + n) for n in range(10)])

    assert _script_calls(redis_server) == before
    assert len(_stored(redis_server)) == 51


def test_a_script_redis_forgot_is_loaded_again_and_nothing_is_lost_or_doubled(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    enqueue_all(broker, [_message(0)])
    with redis_server.client() as client:
        client.script_flush()

    enqueue_all(broker, [_message(n) for n in range(1, 20)])

    assert [m["args"] for m in _stored(redis_server)] == [[f"pay_{n}"] for n in range(20)]


def test_unique_ids_are_version_4_uuids_and_unique() -> None:
    ids = unique_ids(1000)

    assert len(set(ids)) == 1000
    assert all(UUID(value).version == 4 and str(UUID(value)) == value for value in ids)
