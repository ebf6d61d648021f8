"""Engine and session factory, and the schema check/upgrade through Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from worker.config import Settings
from worker.errors import SchemaOutOfDateError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
POSTGRES_POOL_SIZE = 20  # connections kept per process (web, worker or CLI), at most


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A busy web process has up to 40 handler threads wanting a connection. QueuePool's default
    # keeps 5 and closes any extra one on return, so under load many requests paid for a new
    # PostgreSQL connection (a server process fork and a login). Keeping POSTGRES_POOL_SIZE
    # open, and no more, makes the rest wait for a free one instead.
    return create_engine(url, pool_pre_ping=True, pool_size=POSTGRES_POOL_SIZE, max_overflow=0)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL lets a reader (the progress bar, a second CLI) look while a send writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config(create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; returns (revision before, revision after)."""
    before = current_revision(engine)
    command.upgrade(alembic_config(engine), "head")
    return before, head_revision()


def ensure_schema(engine: Engine, settings: Settings) -> None:
    """Upgrade the embedded SQLite database in place; refuse a stale PostgreSQL schema."""
    if current_revision(engine) == head_revision():
        return
    if settings.is_embedded_db:
        upgrade(engine)
        return
    raise SchemaOutOfDateError(
        "the database schema is out of date: run `newsletter db upgrade` first"
    )


def upsert_dialect(session: Session) -> Any:
    """The dialect's own `insert` (PostgreSQL or SQLite), which has `on_conflict_do_nothing`:
    an insert-or-ignore that a concurrent duplicate loses cleanly, with no savepoint needed."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
