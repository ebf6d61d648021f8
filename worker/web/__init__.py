"""The web app (Procfile `web`): `create_app()` builds it; nothing happens at import."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from worker import logs
from worker.abuse import AttemptLimiter, LocalAttempts, RedisAttempts
from worker.config import Settings, get_settings
from worker.db import ensure_schema, make_engine
from worker.transports import make_transport
from worker.web import (
    access_log,
    admin,
    admin_stats,
    admin_subscribers,
    archive,
    engagement,
    health,
    hooks,
    public,
    signup,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(settings)
    engine = make_engine(settings)
    ensure_schema(engine, settings)
    app = FastAPI(
        title="Verdicts Mailer",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_settled,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.transport = make_transport(settings)  # confirmation mails
    app.state.signup_attempts = signup_limiter(settings)
    app.state.login_attempts = attempt_limiter(
        settings, limit=LOGIN_ATTEMPTS, window_s=LOGIN_WINDOW_S, name="login"
    )
    # Open and click events are written by a few threads of their own (see web.engagement);
    # a request waits for its event, so a graceful stop loses none.
    app.state.event_writers = ThreadPoolExecutor(EVENT_WRITERS, thread_name_prefix="events")
    # Sends started from the admin pages on the embedded setup (no workers): see web.admin.
    app.state.background_sends = []
    app.state.probes = health.Probes.of(settings)  # for /readyz and /metrics
    app.include_router(health.router)
    app.include_router(public.router)
    app.include_router(engagement.router)
    app.include_router(signup.router)
    app.include_router(archive.router)
    app.include_router(hooks.router)
    app.include_router(admin.router)
    app.include_router(admin_subscribers.router)
    app.include_router(admin_stats.router)
    access_log.install()
    return app


@asynccontextmanager
async def _settled(app: FastAPI) -> AsyncIterator[None]:
    """Before serving, move everything loaded so far out of the garbage collector's sight.

    The app starts with ~150,000 long-lived objects (modules, SQLAlchemy and Pydantic models);
    every full collection walked them all, a 75-160 ms pause about once a second under load,
    which was most of the pixel's and links' slowest responses. (Freezing costs microseconds;
    whatever garbage exists at start-up stays, a one-off few hundred kilobytes at most.)
    """
    gc.freeze()
    access_log.install()  # uvicorn may have reset its loggers since create_app
    yield
    # A send started in this process finishes before it stops (what is left stays pending).
    for sender in app.state.background_sends:
        sender.join(timeout=SEND_JOIN_S)


SIGNUP_WINDOW_S = 3600
LOGIN_ATTEMPTS = 10  # per client address and per account, per window
LOGIN_WINDOW_S = 900
EVENT_WRITERS = 8
SEND_JOIN_S = 60


def signup_limiter(settings: Settings) -> AttemptLimiter:
    """Sign-ups per client address per hour, shared by all web processes when Redis is there."""
    return attempt_limiter(
        settings, limit=settings.subscribe_limit_per_hour, window_s=SIGNUP_WINDOW_S, name="signup"
    )


def attempt_limiter(settings: Settings, *, limit: int, window_s: int, name: str) -> AttemptLimiter:
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url)
        return RedisAttempts(client, limit, window_s, prefix=f"verdicts:{name}")
    return LocalAttempts(limit, window_s)
