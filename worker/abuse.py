"""Attempt limits for public forms: so many tries per client per window, then a polite no.

In-process for one web process; in Redis (shared by every web process) when REDIS_URL is set.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Protocol

import redis

MAX_TRACKED_CLIENTS = 10_000  # bounds memory when a flood comes from many addresses


class AttemptLimiter(Protocol):
    def allow(self, client: str) -> bool:
        """Count one attempt by `client`; False once it has used up its window."""
        ...


class LocalAttempts:
    """A sliding window per client, forgetting the least recently seen clients past a cap."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and now - times[0] >= self.window_s:
                times.popleft()
            self._seen[client] = times
            if len(self._seen) > MAX_TRACKED_CLIENTS:
                self._seen.popitem(last=False)
            if len(times) >= self.limit:
                return False
            times.append(now)
            return True


class RedisAttempts:
    """A fixed window per client in Redis: one INCR, and the key expires with its window."""

    def __init__(self, client: redis.Redis, limit: int, window_s: int, *, prefix: str) -> None:
        self.redis = client
        self.limit = limit
        self.window_s = window_s
        self.prefix = prefix

    def allow(self, client: str) -> bool:
        window = int(time.time() // self.window_s)
        key = f"{self.prefix}:{window}:{client}"
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window_s + 1)
            count, _ = pipe.execute()
        return int(count) <= self.limit
