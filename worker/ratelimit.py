"""Send-rate limits, in-process or shared by every worker through Redis.

Senders book send slots spaced 1/(0.95 · rate) apart and wait for their slot, one message per
slot, right before each provider call (a token bucket holding a single token, with no refill
lost while senders sleep). A one-second window then starts at most 1 + 0.95 · rate sends, and
the 5% margin also absorbs the jitter between the slot and the provider receiving the call
(about 47 ms at 200/s), so the provider never sees the rate exceeded.
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

    A window grants at most floor(capacity + refill) with capacity one token; at low or
    fractional rates the refill also stays under floor(rate), since a send needs a whole token.
    """
    if rate_per_s <= 0:
        raise ValueError(f"send rate must be positive, got {rate_per_s}")
    refill_per_s = rate_per_s * REFILL_SHARE
    if rate_per_s >= 1:
        refill_per_s = min(refill_per_s, math.floor(rate_per_s) - (1 - REFILL_SHARE))
    return refill_per_s, 1.0


class Unlimited:
    def acquire(self, wanted: int) -> int:
        return wanted


class LocalTokenBucket:
    """For one process (the embedded setup): threads of that process share it.

    Each acquire books the next free send slot (slots are 1/refill apart; an idle bucket's next
    slot is now) and sleeps until it, so no refill is lost while waiting senders sleep.
    """

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
        self._next_slot = clock()
        self._lock = threading.Lock()

    def acquire(self, wanted: int) -> int:
        with self._lock:
            now = self._clock()
            slot = max(self._next_slot, now)
            self._next_slot = slot + 1 / self.refill_per_s
        if slot > now:
            self._sleep(slot - now)
        return 1


# Atomically book the next send slot; returns the microseconds to wait until it.
_BOOK = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local slot = tonumber(redis.call('GET', KEYS[1]))
if slot == nil or slot < now_us then
  slot = now_us
end
local keep_ms = math.max(tonumber(ARGV[2]), math.ceil((slot - now_us) / 1000) + 1000)
redis.call('SET', KEYS[1], slot + tonumber(ARGV[1]), 'PX', keep_ms)
return slot - now_us
"""


class RedisTokenBucket:
    """One schedule of send slots in Redis, shared by every worker process on every host."""

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
        self._interval_us = 1_000_000 / self.refill_per_s
        self._book = client.register_script(_BOOK)

    def acquire(self, wanted: int) -> int:
        wait_us = int(self._book(keys=[self._key], args=[self._interval_us, 60_000]))
        if wait_us > 0:
            self._sleep(wait_us / 1_000_000)
        return 1
