"""The web app (Procfile `web`): `create_app()` builds it; nothing happens at import."""

from __future__ import annotations

from fastapi import FastAPI

from worker.config import Settings, get_settings
from worker.db import ensure_schema, make_engine
from worker.web import engagement, public


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings)
    ensure_schema(engine, settings)
    app = FastAPI(title="Verdicts Mailer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.engine = engine
    app.include_router(public.router)
    app.include_router(engagement.router)
    return app
