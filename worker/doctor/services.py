"""Checks of the services on our side: the database and its schema, Redis, the transport."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import redis
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from worker import db
from worker.config import Settings
from worker.doctor.base import (
    CONNECT_TIMEOUT_S,
    CheckFailed,
    CheckResult,
    Probe,
    RedisLike,
    Skipped,
    failed,
    one_line,
    passed,
)


def make_engine(settings: Settings) -> Engine:
    if settings.is_embedded_db:
        return db.make_engine(settings)
    return create_engine(
        settings.sqlalchemy_url, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )


def make_redis(url: str) -> RedisLike:
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
    )


def _database_label(settings: Settings) -> str:
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}"
    return f"PostgreSQL at {url.host}:{url.port or 5432}/{url.database}"


def _sqlite_path(settings: Settings) -> Path | None:
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _connect(probe: Probe) -> str:
    """The server's version string, after a round trip; raises CheckFailed when unreachable."""

    def fetch() -> str:
        try:
            with probe.engine().connect() as connection:
                connection.execute(text("SELECT 1"))
                version = connection.dialect.server_version_info or ()
        except SQLAlchemyError as error:
            cause = getattr(error, "orig", None) or error
            raise CheckFailed(
                f"{_database_label(probe.settings)} is unreachable: {one_line(str(cause))}",
                "check DATABASE_URL and that the server accepts connections from this host",
            ) from None
        return ".".join(str(part) for part in version)

    return str(probe.once(("database",), fetch))


def check_database(probe: Probe) -> CheckResult:
    path = _sqlite_path(probe.settings)
    if path is not None and not path.exists():
        # Connecting would create an empty file; the doctor looks without changing anything.
        return failed("database", f"no database file at {path}", "run `newsletter db upgrade`")
    version = _connect(probe)
    detail = f"{_database_label(probe.settings)} answers" + (
        f" (version {version})" if version else ""
    )
    if probe.settings.is_embedded_db:
        detail += "; embedded: one machine only, set DATABASE_URL for PostgreSQL"
    return passed("database", detail)


def check_migrations(probe: Probe) -> CheckResult:
    path = _sqlite_path(probe.settings)
    if path is not None and not path.exists():
        raise Skipped("there is no database file yet", "run `newsletter db upgrade`")
    try:
        _connect(probe)
    except CheckFailed:
        raise Skipped("the database is unreachable", "fix the database check first") from None
    engine = probe.engine()
    script = ScriptDirectory.from_config(db.alembic_config(engine))
    head = script.get_current_head()
    current = db.current_revision(engine)
    if current == head:
        return passed("migrations", f"schema at the newest revision, {head}")
    if current is None:
        return failed("migrations", "the database has no schema yet", "run `newsletter db upgrade`")
    if current not in {revision.revision for revision in script.walk_revisions()}:
        return failed(
            "migrations",
            f"schema at revision {current}, which this release does not know (a newer one ran?)",
            "deploy the release that migrated the database, or restore a backup made before it",
        )
    return failed(
        "migrations",
        f"schema at revision {current}; this release needs {head}",
        "run `newsletter db upgrade`",
    )


def _redis_label(url: str) -> str:
    """host:port/db without the password a redis:// URL may carry."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
    except ValueError:
        return "REDIS_URL"


def check_redis(probe: Probe) -> CheckResult:
    url = probe.settings.redis_url
    if not url:
        return passed(
            "redis", "REDIS_URL is not set: the in-process broker is used (sends run in the CLI)"
        )
    label = _redis_label(url)
    client: RedisLike | None = None
    try:
        client = probe.clients.redis(url)
        version = client.info("server").get("redis_version", "?")
    except (redis.RedisError, ValueError, OSError) as error:
        return failed(
            "redis",
            f"Redis at {label} is unreachable: {one_line(str(error))}",
            "start Redis or correct REDIS_URL (redis://host:6379/0)",
        )
    finally:
        if client is not None:
            client.close()
    return passed("redis", f"Redis {version} at {label} answers")


def _writable_folder(path: Path) -> str | None:
    """None when files can be written at `path` (created or not yet); otherwise why not."""
    folder = path.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    try:
        # Writing is the only honest test: os.access ignores read-only mounts and answers yes
        # to root whatever the mode bits say.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as error:
        return f"{folder} is not writable: {error.strerror or error}"
    return None


def check_transport(probe: Probe) -> CheckResult:
    settings = probe.settings
    if settings.transport == "outbox":
        path = settings.outbox_path.absolute()
        problem = _writable_folder(path)
        if problem:
            return failed(
                "transport",
                f"outbox: {problem}",
                f"make {path} writable by this user, or set OUTBOX_DIR",
            )
        return passed("transport", f"outbox: .eml files go to {path} (nothing is mailed)")
    if settings.transport == "memory":
        return failed(
            "transport",
            "memory: messages stay in this process and are never delivered",
            "set NEWSLETTER_TRANSPORT=ses (or smtp)",
        )
    if settings.transport == "smtp":
        if not settings.smtp_host:
            return failed(
                "transport",
                "smtp: SMTP_HOST is not set",
                "set SMTP_HOST to the relay's host name",
            )
        return passed(
            "transport",
            f"smtp: relay {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security})",
        )
    if not settings.ses_region:
        return failed("transport", "ses: SES_REGION is not set", "set SES_REGION (e.g. eu-west-1)")
    where = f" via {settings.ses_endpoint_url}" if settings.ses_endpoint_url else ""
    return passed("transport", f"ses: Amazon SES v2 in {settings.ses_region}{where}")
