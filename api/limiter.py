"""The API's rate limiter: GCRA in Redis, shared by every API process.

Checks share round trips: every check that arrives while one EVALSHA is in flight goes
into the next one, a single script call over all their keys (as the writer shares
commits). Under light load that is one EVALSHA per request; under heavy load far fewer,
which keeps redis-py's per-command cost off the event loop.

When Redis cannot answer, a submit must still be accepted (G1): the limiter falls back to
the same algorithm in this process for ``FALLBACK_S`` (a circuit breaker), so that only
the requests that found Redis gone wait for the timeout, not every one after them. Then
the next batch probes Redis again. While it falls back, each API process limits alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from shared.ratelimit import Decision, LocalLimiter, Policy
from shared.settings import Settings

log = logging.getLogger(__name__)

FALLBACK_S = 5.0
KEY_PREFIX = "p2p:ratelimit:"

# shared/ratelimit.py's gcra(), line for line, once per key in KEYS (a key named twice
# sees its first decision). Times in microseconds; ARGV[3] < 0 means "the Redis server's
# clock", one clock for every API process. A key expires once its tat has passed, when
# it means the same as no key. Returns 4 integers per key.
GCRA_LUA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local out = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - burst * interval
  if now < allow_at then
    table.insert(out, 0); table.insert(out, 0)
    table.insert(out, allow_at - now); table.insert(out, tat - now)
  else
    redis.call('SET', key, string.format('%d', new_tat), 'PX',
               math.ceil((new_tat - now) / 1000))
    table.insert(out, 1); table.insert(out, math.floor((now - allow_at) / interval))
    table.insert(out, 0); table.insert(out, new_tat - now)
  end
end
return out
"""

_Waiting = list[tuple[str, "asyncio.Future[Decision]"]]


class RateLimiter:
    """Checks one request of one key against the policy: in Redis when given a client."""

    def __init__(
        self,
        policy: Policy,
        client: redis.asyncio.Redis | None = None,
        *,
        clock_us: Callable[[], int] | None = None,
        fallback_s: float = FALLBACK_S,
    ) -> None:
        self.policy = policy
        self._client = client
        self._script = None if client is None else client.register_script(GCRA_LUA)
        self._clock_us = clock_us
        self._local = LocalLimiter(policy) if clock_us is None else LocalLimiter(policy, clock_us)
        self._fallback_s = fallback_s
        self._open_until = 0.0
        """While ``time.monotonic()`` is below this, Redis is not asked."""
        self._waiting: _Waiting = []
        self._flusher: asyncio.Task[None] | None = None
        self.fallbacks = 0
        """Round trips that failed, after which the limiter fell back to this process."""

    @classmethod
    def from_settings(cls, settings: Settings, *, shared: bool) -> RateLimiter | None:
        """The limit on transfers and deposits, per user; ``None`` when it is off;
        ``shared`` limits through ``P2P_REDIS_URL``."""
        policy = Policy.of(settings.rate_limit_per_s, settings.rate_limit_burst)
        return cls.of(policy, settings, shared=shared)

    @classmethod
    def for_sign_ups(cls, settings: Settings, *, shared: bool) -> RateLimiter | None:
        """The limit on sign-ups, per client address; ``None`` when it is off."""
        per_s = settings.signup_rate_limit_per_hour / 3600
        policy = Policy.of(per_s, settings.signup_rate_limit_burst)
        return cls.of(policy, settings, shared=shared)

    @classmethod
    def of(cls, policy: Policy | None, settings: Settings, *, shared: bool) -> RateLimiter | None:
        """A limiter of ``policy``; ``None`` when there is none."""
        if policy is None:
            return None
        if not shared:
            return cls(policy)
        timeout = settings.redis_timeout_s
        client = redis.asyncio.Redis.from_url(
            settings.redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # the breaker decides when to try again
        )
        return cls(policy, client)

    @property
    def shared(self) -> bool:
        """Whether the next check would go to Redis."""
        return self._script is not None and time.monotonic() >= self._open_until

    async def check(self, key: str) -> Decision:
        if not self.shared:
            return self._local.check(key)
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="p2p-rate-limits")
        return await future

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        if self._client is not None:
            await self._client.aclose()

    async def _flush(self) -> None:
        batch: _Waiting = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                decisions = await self._decide([key for key, _ in batch])
                for (_, future), decision in zip(batch, decisions, strict=True):
                    if not future.done():  # its request may have been cancelled
                        future.set_result(decision)
                batch = []
        finally:
            self._flusher = None
            unanswered, self._waiting = batch + self._waiting, []
            for key, future in unanswered:
                if not future.done():
                    future.set_result(self._local.check(key))

    async def _decide(self, keys: Sequence[str]) -> list[Decision]:
        if self._script is None or not self.shared:
            return [self._local.check(key) for key in keys]
        probe = self._open_until > 0
        now = -1 if self._clock_us is None else self._clock_us()
        try:
            reply = await self._script(
                keys=[KEY_PREFIX + key for key in keys],
                args=(self.policy.interval_us, self.policy.burst, now),
            )
        except (RedisError, OSError) as error:  # TimeoutError is an OSError
            self.fallbacks += 1
            self._open_until = time.monotonic() + self._fallback_s
            log.warning(
                "rate limits: Redis failed (%s); limiting in this process for %.0f s",
                error,
                self._fallback_s,
            )
            return [self._local.check(key) for key in keys]
        if probe:
            log.warning("rate limits: Redis answers again; limits are shared again")
            self._open_until = 0.0
        numbers = [int(n) for n in reply]
        return [
            Decision(bool(numbers[i]), numbers[i + 1], numbers[i + 2], numbers[i + 3])
            for i in range(0, len(numbers), 4)
        ]


def rate_limit_headers(policy: Policy, decision: Decision) -> dict[str, str]:
    """draft-ietf-httpapi-ratelimit-headers fields, plus ``Retry-After`` on a refusal.

    The policy is named ``burst``: ``q`` requests at once from idle, all of them back
    after ``w`` seconds; ``t`` is the seconds until the whole quota is back.
    """
    headers = {
        "RateLimit-Policy": f'"burst";q={policy.burst};w={policy.window_s}',
        "RateLimit": f'"burst";r={decision.remaining};t={decision.reset_s}',
    }
    if not decision.allowed:
        headers["Retry-After"] = str(max(1, decision.retry_after_s))
    return headers
