"""The Redis rate limiter: its Lua script decides as ``gcra()`` does, it is shared, and it
falls back to the process when Redis is gone or hangs, without waiting on every request."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from api.limiter import GCRA_LUA, KEY_PREFIX, RateLimiter
from shared.ratelimit import US, Decision, Policy, gcra
from tests.conftest import RedisServer, free_port

T = TypeVar("T")
TIMEOUT_S = 0.3


def _client(url: str) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


def _run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def _unique(name: str) -> str:
    return f"key_{name}_{random.getrandbits(64):016x}"


def test_the_lua_script_decides_exactly_as_gcra_does(redis_server: RedisServer) -> None:
    policy = Policy(7, 4)
    rng = random.Random(4)
    keys = [_unique("a"), _unique("b"), _unique("c")]
    now = 5_000 * US
    expected: list[Decision] = []
    tats: dict[str, int] = {}
    batches: list[tuple[int, list[str]]] = []
    for _ in range(300):
        now += rng.choice((0, 0, 1, 1000, 50_000, 140_000, 2 * US))
        batch = [rng.choice(keys) for _ in range(rng.randint(1, 4))]  # repeats included
        batches.append((now, batch))
        for key in batch:
            decision, tats[key] = gcra(policy, tats.get(key), now)
            expected.append(decision)

    async def scenario() -> list[Decision]:
        client = _client(redis_server.url)
        decided: list[Decision] = []
        for at, batch in batches:
            limiter = RateLimiter(policy, client, clock_us=lambda at=at: at)  # type: ignore[misc]
            decided.extend(await asyncio.gather(*(limiter.check(key) for key in batch)))
        await client.aclose()
        return decided

    decided = _run(scenario)

    assert decided == expected
    assert {d.allowed for d in decided} == {True, False}


def test_the_script_keeps_a_key_no_longer_than_it_matters(redis_server: RedisServer) -> None:
    key = _unique("ttl")

    async def scenario() -> int:
        client = _client(redis_server.url)
        await client.eval(GCRA_LUA, 1, KEY_PREFIX + key, 250_000, 4, -1)  # 4/s, burst 4
        await client.eval(GCRA_LUA, 1, KEY_PREFIX + key, 250_000, 4, -1)
        ttl: int = await client.pttl(KEY_PREFIX + key)
        await client.aclose()
        return ttl

    assert 0 < _run(scenario) <= 500


def test_on_the_servers_clock_a_burst_passes_and_the_next_is_refused(
    redis_server: RedisServer,
) -> None:
    key = _unique("time")

    async def scenario() -> list[Decision]:
        client = _client(redis_server.url)
        limiter = RateLimiter(Policy(0.01, 3), client)
        decisions = [await limiter.check(key) for _ in range(4)]
        await limiter.aclose()
        return decisions

    decisions = _run(scenario)

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[-1].retry_after_s in (99, 100)


def test_two_limiters_on_one_redis_share_one_limit(redis_server: RedisServer) -> None:
    key = _unique("shared")

    async def scenario() -> list[bool]:
        first = RateLimiter(Policy(0.01, 3), _client(redis_server.url))
        second = RateLimiter(Policy(0.01, 3), _client(redis_server.url))
        allowed = [
            (await first.check(key)).allowed,
            (await second.check(key)).allowed,
            (await first.check(key)).allowed,
            (await second.check(key)).allowed,
            (await first.check(key)).allowed,
        ]
        await first.aclose()
        await second.aclose()
        return allowed

    assert _run(scenario) == [True, True, True, False, False]


def test_without_redis_it_limits_in_the_process_and_asks_redis_once_per_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"

    async def scenario() -> tuple[list[bool], int]:
        limiter = RateLimiter(Policy(0.01, 3), _client(nobody), fallback_s=3600)
        allowed = [(await limiter.check("key_local")).allowed for _ in range(5)]
        await limiter.aclose()
        return allowed, limiter.fallbacks

    with caplog.at_level(logging.WARNING, logger="api.limiter"):
        allowed, fallbacks = _run(scenario)

    assert allowed == [True, True, True, False, False]
    assert fallbacks == 1
    logged = [r.getMessage() for r in caplog.records if r.name == "api.limiter"]
    assert len(logged) == 1
    assert logged[0].startswith("rate limits: Redis failed")


def test_a_hung_redis_costs_one_timeout_then_checks_are_instant(fresh_redis: RedisServer) -> None:
    async def scenario() -> tuple[float, float, int]:
        limiter = RateLimiter(Policy(1000, 1000), _client(fresh_redis.url), fallback_s=3600)
        await limiter.check("key_warm")  # connected while Redis answers
        fresh_redis.pause()
        try:
            started = time.monotonic()
            await asyncio.gather(*(limiter.check("key_hung") for _ in range(10)))
            first = time.monotonic() - started
            started = time.monotonic()
            for _ in range(100):
                assert (await limiter.check("key_hung")).allowed
            rest = time.monotonic() - started
        finally:
            fresh_redis.resume()
        await limiter.aclose()
        return first, rest, limiter.fallbacks

    first, rest, fallbacks = _run(scenario)

    assert first < TIMEOUT_S + 1.0
    assert rest < 0.1
    assert fallbacks == 1


def test_once_redis_is_back_limits_are_shared_again(
    fresh_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    key = _unique("back")

    async def scenario() -> bool:
        limiter = RateLimiter(Policy(0.01, 5), _client(fresh_redis.url), fallback_s=0.2)
        fresh_redis.stop()
        assert (await limiter.check(key)).allowed
        assert not limiter.shared
        fresh_redis.start()
        deadline = time.monotonic() + 10
        while not limiter.shared:  # the breaker's period, not work to wait for
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert (await limiter.check(key)).allowed
        await limiter.aclose()
        with fresh_redis.client() as sync_client:
            return bool(sync_client.exists(KEY_PREFIX + key))

    with caplog.at_level(logging.WARNING, logger="api.limiter"):
        assert _run(scenario)
    assert any("Redis answers again" in r.message for r in caplog.records)


def test_a_check_cancelled_while_waiting_does_not_stall_the_others(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> list[bool]:
        limiter = RateLimiter(Policy(1000, 1000), _client(redis_server.url))
        doomed = asyncio.create_task(limiter.check(_unique("doomed")))
        others = [asyncio.create_task(limiter.check(_unique("other"))) for _ in range(5)]
        await asyncio.sleep(0)
        doomed.cancel()
        allowed = [(await task).allowed for task in others]
        await limiter.aclose()
        return allowed

    assert _run(scenario) == [True] * 5
