"""What a process sends with: settings, database engine, transport and rate limiter.

Built once per process on first use (never at import). The CLI installs its own so that the
in-process worker shares its engine; a `dramatiq` worker process builds one from the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy import Engine

from worker.config import Settings, get_settings
from worker.db import ensure_schema, make_engine
from worker.ratelimit import LocalTokenBucket, RateLimiter, RedisTokenBucket, Unlimited
from worker.transports import make_transport
from worker.transports.base import Transport
from worker.transports.observed import ObservedTransport
from worker.watchdog import Watch


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    transport: Transport
    limiter: RateLimiter
    # Workers in other processes can die holding messages: a reconcile loop watches each send.
    # In-process (no Redis) the one sender settles leftovers itself before it starts.
    watch: Watch | None = None


_current: Runtime | None = None
FALLBACK_RATE_PER_S = 1.0


def make_limiter(settings: Settings, transport: Transport) -> RateLimiter:
    """The configured cap, else the provider's own (SES reports MaxSendRate), else none.

    A provider that has a rate but will not tell it gets the lowest one SES grants (1/s, the
    sandbox), not none: sending unlimited would only turn into throttling.
    """
    rate = settings.max_send_rate
    provider_rate = getattr(transport, "max_send_rate", None)
    if rate is None and callable(provider_rate):
        rate = provider_rate() or FALLBACK_RATE_PER_S
    if rate is None:
        return Unlimited()
    if settings.redis_url:
        return RedisTokenBucket(redis.Redis.from_url(settings.redis_url), rate)
    return LocalTokenBucket(rate)


def build(settings: Settings, engine: Engine | None = None) -> Runtime:
    if engine is None:
        engine = make_engine(settings)
        ensure_schema(engine, settings)
    transport = make_transport(settings)
    limiter = make_limiter(settings, transport)
    # Counted for the worker's exporter; wrapped after the limiter asked SES for its rate.
    transport = ObservedTransport(transport)
    watch = None
    if settings.redis_url:
        watch = Watch(redis.Redis.from_url(settings.redis_url), lease_s=settings.send_lease_s)
    return Runtime(settings, engine, transport, limiter, watch=watch)


def install(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    global _current
    if _current is None:
        _current = build(get_settings())
    return _current
