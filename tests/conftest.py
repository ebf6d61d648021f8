"""Shared fixtures: settings in a temp folder, and a migrated database on SQLite and PostgreSQL.

PostgreSQL tests each get their own schema in the `test` database, so runs never collide. With
CI=true an unreachable PostgreSQL fails those tests instead of skipping them.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from faults.deployment import Services
from worker import db
from worker.config import Settings

REPO = Path(__file__).resolve().parent.parent
SHARED_COMPARISONS = REPO.parent / "shared" / "comparisons"
EXAMPLE = REPO / "examples" / "claude-4-api-vs-code-llama-4.json"
CHROMIUM = Path("/usr/bin/chromium")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

SETTING_NAMES = (
    "DATABASE_URL",
    "REDIS_URL",
    "NEWSLETTER_TRANSPORT",
    "OUTBOX_DIR",
    "FROM_ADDRESS",
    "PUBLIC_BASE_URL",
    "LIST_UNSUBSCRIBE_MAILTO",
    "SECRET_KEY",
    "POSTAL_ADDRESS",
    "NEWSLETTER_TIMEZONE",
    "SEND_LEASE_S",
    "VAR_DIR",
    "SES_REGION",
    "SES_ENDPOINT_URL",
    "SES_MAX_SEND_RATE",
    "SES_CONFIGURATION_SET",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_SECURITY",
    "SMTP_TIMEOUT_S",
    "SNS_TOPIC_ARNS",
    "SNS_ENDPOINT_URL",
    "SUBSCRIBE_LIMIT_PER_HOUR",
    "METRICS_TOKEN",
    "LOG_FORMAT",
    "LOG_LEVEL",
)


def service_unavailable(what: str, error: Exception) -> None:
    message = f"{what} is unreachable: {error}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting leaks in from the machine; the working folder is a fresh temp folder."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    from worker import runtime
    from worker.config import get_settings

    get_settings.cache_clear()
    runtime.install(None)
    return tmp_path


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """A command or create_app() in a test sets up the whole process's logging (worker.logs):
    the next test starts from it as it was, and threads outliving a test stay quiet."""
    from worker import logs
    from worker.web import access_log

    names = ["", "dramatiq", *logs.CHATTY, *logs.NOISY, *access_log.UVICORN_LOGGERS]
    loggers = [logging.getLogger(name) for name in names]
    saved = [(lg.level, list(lg.handlers), lg.propagate, list(lg.filters)) for lg in loggers]
    yield
    for logger, (level, handlers, propagate, filters) in zip(loggers, saved, strict=True):
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.filters[:] = filters


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        VAR_DIR=str(tmp_path / "var"),
        NEWSLETTER_TRANSPORT="memory",
        SECRET_KEY="test-secret-key",
        POSTAL_ADDRESS="1 Test Street, Testville",
        FROM_ADDRESS="Weekly AI Tool Verdicts <verdicts@example.org>",
        PUBLIC_BASE_URL="https://verdicts.example.org",
    )


def postgres_schema_url(schema: str) -> str:
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh, empty schema in the PostgreSQL `test` database, dropped afterwards."""
    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as error:
        admin.dispose()
        service_unavailable("PostgreSQL", error)
    try:
        yield schema
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def flushed_redis(url: str) -> Iterator[str]:
    """A Redis database emptied before and after a test that owns it (fixture body)."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        service_unavailable("Redis", error)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The local Redis server (tests keep to their own keys)."""
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        service_unavailable("Redis", error)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium under Playwright (no browser is ever downloaded)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium); no browser is downloaded"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def ses_emulator() -> Iterator[str]:
    """The local SES v2 emulator for the whole run (started once)."""
    from tests.ses_emulator import running_emulator

    try:
        emulator = running_emulator()
        url = emulator.__enter__()
    except RuntimeError as error:
        service_unavailable("the SES emulator", error)
    try:
        yield url
    finally:
        emulator.__exit__(None, None, None)


@pytest.fixture(scope="session")
def fault_services(
    ses_emulator: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """What real deployments in tests share: the emulator, and a Redis server of their own that
    a test may restart (faults.deployment); PostgreSQL is checked here so that it fails early."""
    from faults.deployment import services

    probe = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with probe.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        service_unavailable("PostgreSQL", error)
    finally:
        probe.dispose()
    with services(tmp_path_factory.mktemp("deployments"), emulator_url=ses_emulator) as running:
        yield running


@pytest.fixture
def ses(ses_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An emptied emulator, and AWS credentials boto3 will sign with (the emulator ignores them)."""
    from tests.ses_emulator import clear

    clear(ses_emulator)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    return ses_emulator


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings) -> Iterator[Engine]:
    """A migrated database: the SQLite file of `settings`, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        made = db.make_engine(settings)
    else:
        schema = request.getfixturevalue("pg_schema")
        made = db.make_engine(
            settings.model_copy(update={"database_url": postgres_schema_url(schema)})
        )
    db.upgrade(made)
    try:
        yield made
    finally:
        made.dispose()
