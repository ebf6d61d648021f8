"""The one module with an effect at import: it picks the broker every actor is declared on.

With REDIS_URL, messages go to Redis and any number of `dramatiq worker.actors` processes share
them. Without it, an in-process StubBroker: the CLI runs the same actors on a Worker thread.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from worker.config import get_settings


def make_broker(redis_url: str | None) -> dramatiq.Broker:
    if redis_url:
        return RedisBroker(url=redis_url, namespace="verdicts")  # type: ignore[no-untyped-call]
    return StubBroker()


broker = make_broker(get_settings().redis_url)
dramatiq.set_broker(broker)
