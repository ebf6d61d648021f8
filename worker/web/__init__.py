"""The web app (Procfile `web`): `create_app()` builds it; nothing happens at import."""

from __future__ import annotations

import redis
from fastapi import FastAPI

from worker.abuse import AttemptLimiter, LocalAttempts, RedisAttempts
from worker.config import Settings, get_settings
from worker.db import ensure_schema, make_engine
from worker.transports import make_transport
from worker.web import archive, engagement, hooks, public, signup


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings)
    ensure_schema(engine, settings)
    app = FastAPI(title="Verdicts Mailer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.engine = engine
    app.state.transport = make_transport(settings)  # confirmation mails
    app.state.signup_attempts = signup_limiter(settings)
    app.include_router(public.router)
    app.include_router(engagement.router)
    app.include_router(signup.router)
    app.include_router(archive.router)
    app.include_router(hooks.router)
    return app


SIGNUP_WINDOW_S = 3600


def signup_limiter(settings: Settings) -> AttemptLimiter:
    """Sign-ups per client address per hour, shared by all web processes when Redis is there."""
    limit = settings.subscribe_limit_per_hour
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url)
        return RedisAttempts(client, limit, SIGNUP_WINDOW_S, prefix="verdicts:signup")
    return LocalAttempts(limit, SIGNUP_WINDOW_S)
