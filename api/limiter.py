"""The API's rate limiter: GCRA in Redis, shared by every API process, one EVALSHA a check.

When Redis cannot answer, a submit must still be accepted (G1): the limiter falls back to
the same algorithm in this process for ``FALLBACK_S`` (a circuit breaker), so that only
the request that found Redis gone waits for the timeout, not every one after it. Then
one request at a time probes Redis again while the others stay local. While it falls
back, each API process limits on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from shared.ratelimit import Decision, LocalLimiter, Policy
from shared.settings import Settings

log = logging.getLogger(__name__)

FALLBACK_S = 5.0
KEY_PREFIX = "p2p:ratelimit:"

# shared/ratelimit.py's gcra(), line for line. Times in microseconds; ARGV[3] < 0 means
# "use the Redis server's clock", one clock for every API process. A key expires once
# its tat has passed, when it means the same as no key.
GCRA_LUA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX',
           math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
"""


class RateLimiter:
    """Checks one request of one key against the policy: in Redis when given a client."""

    def __init__(
        self,
        policy: Policy,
        client: redis.asyncio.Redis | None = None,
        *,
        clock_us: Callable[[], int] | None = None,
    ) -> None:
        self.policy = policy
        self._client = client
        self._script = None if client is None else client.register_script(GCRA_LUA)
        self._clock_us = clock_us
        self._local = LocalLimiter(policy) if clock_us is None else LocalLimiter(policy, clock_us)
        self._open_until = 0.0
        """While ``time.monotonic()`` is below this, Redis is not asked."""
        self._probing = False
        self.fallbacks = 0
        """Times Redis failed and the limiter fell back to this process."""

    @classmethod
    def from_settings(cls, settings: Settings, *, shared: bool) -> RateLimiter | None:
        """``None`` when the limit is off; ``shared`` limits through ``P2P_REDIS_URL``."""
        policy = Policy.of(settings.rate_limit_per_s, settings.rate_limit_burst)
        if policy is None:
            return None
        if not shared:
            return cls(policy)
        timeout = settings.redis_timeout_s
        client = redis.asyncio.Redis.from_url(
            settings.redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(policy, client)

    @property
    def shared(self) -> bool:
        """Whether the next check would go to Redis."""
        return self._script is not None and time.monotonic() >= self._open_until

    async def check(self, key: str) -> Decision:
        if self._script is None or self._probing or time.monotonic() < self._open_until:
            return self._local.check(key)
        probe = self._open_until > 0
        self._probing = probe
        try:
            now = -1 if self._clock_us is None else self._clock_us()
            args = (self.policy.interval_us, self.policy.burst, now)
            reply = await self._script(keys=[KEY_PREFIX + key], args=args)
        except (RedisError, OSError) as error:  # TimeoutError is an OSError
            if self._open_until == 0 or probe:
                log.warning(
                    "rate limits: Redis failed (%s); limiting in this process for %.0f s",
                    error,
                    FALLBACK_S,
                )
            self.fallbacks += 1
            self._open_until = time.monotonic() + FALLBACK_S
            return self._local.check(key)
        finally:
            if probe:
                self._probing = False
        if probe:
            log.warning("rate limits: Redis answers again; limits are shared again")
            self._open_until = 0.0
        allowed, remaining, retry_after_us, reset_us = (int(n) for n in reply)
        return Decision(bool(allowed), remaining, retry_after_us, reset_us)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


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
