"""Send-rate limits: a token bucket, in-process or shared by every worker through Redis.

The bucket refills at 95% of the allowed rate and holds at most the other 5% as a burst, so in
any one-second window at most `rate_per_s` sends can start: 0.95 · rate refilled plus 0.05 ·
rate saved up.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

REFILL_SHARE = 0.95


class RateLimiter(Protocol):
    def acquire(self, wanted: int) -> int:
        """Block until at least one send may start; return how many may (1..wanted)."""
        ...


def _bucket_shape(rate_per_s: float) -> tuple[float, float]:
    """(refill per second, capacity) such that no one-second window grants more than the rate.

    A window grants at most floor(capacity + refill). Below 20/s the burst cannot be 5% of the
    rate (a send needs a whole token), so the refill stays under floor(rate) instead.
    """
    if rate_per_s <= 0:
        raise ValueError(f"send rate must be positive, got {rate_per_s}")
    refill_per_s = rate_per_s * REFILL_SHARE
    capacity = rate_per_s - refill_per_s
    if capacity < 1:
        capacity = 1.0
        if rate_per_s >= 1:
            refill_per_s = min(refill_per_s, math.floor(rate_per_s) - (1 - REFILL_SHARE))
    return refill_per_s, capacity


class Unlimited:
    def acquire(self, wanted: int) -> int:
        return wanted


class LocalTokenBucket:
    """For one process (the embedded setup): threads of that process share it."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.refill_per_s, self.capacity = _bucket_shape(rate_per_s)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self, wanted: int) -> int:
        while True:
            with self._lock:
                now = self._clock()
                elapsed = now - self._updated
                self._tokens = min(self.capacity, self._tokens + elapsed * self.refill_per_s)
                self._updated = now
                granted = min(wanted, int(self._tokens))
                if granted >= 1:
                    self._tokens -= granted
                    return granted
                wait_s = (1 - self._tokens) / self.refill_per_s
            self._sleep(wait_s)


# Atomically refill and take up to ARGV[4] tokens; returns {granted, milliseconds to wait}.
_TAKE = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
local updated = tonumber(redis.call('HGET', KEYS[1], 'updated_us'))
local refill = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
if tokens == nil then
  tokens = capacity
  updated = now_us
end
tokens = math.min(capacity, tokens + (now_us - updated) / 1000000 * refill)
local granted = math.min(tonumber(ARGV[4]), math.floor(tokens))
if granted >= 1 then
  tokens = tokens - granted
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'updated_us', now_us)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
if granted >= 1 then
  return {granted, 0}
end
return {0, math.ceil((1 - tokens) / refill * 1000)}
"""


class RedisTokenBucket:
    """One bucket in Redis shared by every worker process on every host."""

    def __init__(
        self,
        client: redis.Redis,
        rate_per_s: float,
        *,
        key: str = "verdicts:send-rate",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.refill_per_s, self.capacity = _bucket_shape(rate_per_s)
        self._client = client
        self._key = key
        self._sleep = sleep
        self._take = client.register_script(_TAKE)

    def acquire(self, wanted: int) -> int:
        while True:
            granted, wait_ms = self._take(
                keys=[self._key], args=[self.refill_per_s, self.capacity, 60_000, wanted]
            )
            if int(granted) >= 1:
                return int(granted)
            self._sleep(int(wait_ms) / 1000)
