"""Who watches a send spread over worker processes, and how a lost watch is noticed.

Each sending edition is watched by one chain of delayed `reconcile` messages (see
worker.actors). The chain lives in Redis, so a Redis restart without persistence takes it away
together with every queued batch; the deliveries in the database are untouched. The chain keeps
a key alive while it runs; the scheduler, every tick, starts a new chain for any sending edition
whose key is gone. A late message of an older chain finds a different owner in the key and ends
there, so chains do not multiply.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import redis
from sqlalchemy import Engine
from sqlmodel import col, select

from worker.db import session_scope
from worker.models import Edition, EditionStatus

KEY = "verdicts:watch:{edition_id}"
# Renew the key for this chain if it holds this chain or nothing; refuse if another owns it.
_KEEP = (
    "local owner = redis.call('get', KEYS[1]) "
    "if owner and owner ~= ARGV[1] then return 0 end "
    "redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)


class Watch:
    def __init__(self, client: redis.Redis, *, lease_s: int) -> None:
        self.client = client
        # A chain runs every lease (+1 s); allow for one late run before calling it lost.
        self.ttl_s = 2 * (lease_s + 1) + 2

    def keep(self, edition_id: int, chain: str) -> bool:
        """Renew `chain`'s watch; False when another chain has taken it over."""
        kept = self.client.eval(_KEEP, 1, KEY.format(edition_id=edition_id), chain, self.ttl_s)
        return bool(kept)

    def take_over(self, edition_id: int) -> str | None:
        """A new chain id for an edition nobody watches, or None while a chain holds it."""
        chain = uuid.uuid4().hex
        key = KEY.format(edition_id=edition_id)
        return chain if self.client.set(key, chain, ex=self.ttl_s, nx=True) else None

    def release(self, edition_id: int, chain: str) -> None:
        """The chain ends (the edition stopped sending): a resume may start a new one at once."""
        self.client.eval(_RELEASE, 1, KEY.format(edition_id=edition_id), chain)


def sending_editions(engine: Engine) -> list[int]:
    with session_scope(engine) as session:
        ids = session.exec(
            select(Edition.id).where(col(Edition.status) == EditionStatus.SENDING)
        ).all()
    return [edition_id for edition_id in ids if edition_id is not None]


def rewatch(engine: Engine, watch: Watch, start: Callable[[int, str], object]) -> list[int]:
    """Start a chain (`start(edition_id, chain)`) for every sending edition that lost its own."""
    started = []
    for edition_id in sending_editions(engine):
        chain = watch.take_over(edition_id)
        if chain is not None:
            start(edition_id, chain)
            started.append(edition_id)
    return started
