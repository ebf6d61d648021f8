"""Who fires: with Redis, one scheduler at a time holds a lease on a key; without it, every
scheduler acts and the database's fire rows keep each period to one fire."""

from __future__ import annotations

from typing import Protocol

import redis

LEADER_KEY = "verdicts:scheduler:leader"
# Renew only if the key still holds our token; a lapsed lease taken by another is theirs.
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)


class Leadership(Protocol):
    def hold(self) -> bool:
        """Take or renew the lead; True while this process leads."""
        ...

    def release(self) -> None: ...


class Solo:
    """No Redis: act every tick (fire rows in the database still make each fire happen once)."""

    def hold(self) -> bool:
        return True

    def release(self) -> None:
        return None


class RedisLeadership:
    def __init__(
        self, client: redis.Redis, *, token: str, lease_s: float, key: str = LEADER_KEY
    ) -> None:
        self.redis = client
        self.token = token
        self.lease_ms = int(lease_s * 1000)
        self.key = key

    def hold(self) -> bool:
        if self.redis.set(self.key, self.token, nx=True, px=self.lease_ms):
            return True
        return bool(self.redis.eval(_RENEW, 1, self.key, self.token, self.lease_ms))

    def release(self) -> None:
        self.redis.eval(_RELEASE, 1, self.key, self.token)
