"""Who watches a send: one chain of reconcile messages per sending edition, restarted by the
scheduler when Redis forgot it (worker.watchdog), on the real Redis server."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import Engine

from tests.helpers import add_subscribers, example_payload, store_payload
from worker import sending, watchdog, weekly
from worker.config import Settings
from worker.watchdog import Watch


@pytest.fixture
def edition_ids(redis_client: redis.Redis) -> Iterator[list[int]]:
    """Edition ids no other test uses; their keys are removed afterwards."""
    ids = [random.randrange(10**9, 10**10) for _ in range(3)]
    yield ids
    redis_client.delete(*(watchdog.KEY.format(edition_id=i) for i in ids))


def test_a_second_chain_cannot_take_over_a_watched_edition(
    redis_client: redis.Redis, edition_ids: list[int]
) -> None:
    watch = Watch(redis_client, lease_s=3)
    edition_id = edition_ids[0]
    chain = watch.take_over(edition_id)
    assert chain is not None
    assert watch.take_over(edition_id) is None
    assert watch.keep(edition_id, chain)
    assert not watch.keep(edition_id, "an older chain")  # it ends instead of multiplying


def test_a_chain_that_ends_lets_a_resume_start_a_new_one_at_once(
    redis_client: redis.Redis, edition_ids: list[int]
) -> None:
    watch = Watch(redis_client, lease_s=3)
    edition_id = edition_ids[0]
    first = watch.take_over(edition_id)
    assert first is not None
    watch.release(edition_id, "not the owner")
    assert watch.take_over(edition_id) is None  # only the owner's release counts
    watch.release(edition_id, first)
    assert watch.take_over(edition_id) is not None


def test_the_watch_key_outlives_one_late_run_of_the_chain(
    redis_client: redis.Redis, edition_ids: list[int]
) -> None:
    watch = Watch(redis_client, lease_s=300)
    chain = watch.take_over(edition_ids[0])
    assert chain is not None
    ttl_s = redis_client.ttl(watchdog.KEY.format(edition_id=edition_ids[0]))
    assert 2 * 301 <= ttl_s <= 2 * 301 + 2  # the chain runs every lease + 1 s


def test_after_redis_forgot_the_watch_the_scheduler_starts_one_chain_per_sending_edition(
    redis_client: redis.Redis, engine: Engine, settings: Settings, edition_ids: list[int]
) -> None:
    store_payload(engine, example_payload())
    add_subscribers(engine, "a@example.com", "b@example.com")
    prepared = weekly.prepare_week(engine, settings, week="2026-W47")
    assert prepared.edition is not None and prepared.edition.id is not None
    edition_id = prepared.edition.id
    assert sending.start_send(engine, edition_id)
    redis_client.delete(watchdog.KEY.format(edition_id=edition_id))  # as after a restart
    watch = Watch(redis_client, lease_s=3)
    started: list[tuple[int, str]] = []
    try:
        assert watchdog.rewatch(engine, watch, lambda e, c: started.append((e, c))) == [edition_id]
        # The next tick finds the new chain's key: no second chain.
        assert watchdog.rewatch(engine, watch, lambda e, c: started.append((e, c))) == []
        assert [e for e, _ in started] == [edition_id]
        assert watch.keep(edition_id, started[0][1])
    finally:
        redis_client.delete(watchdog.KEY.format(edition_id=edition_id))
