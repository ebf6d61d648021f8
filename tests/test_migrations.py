"""The schema: Alembic migrations match the models, and stale schemas are handled as promised."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import SQLModel

from tests.conftest import postgres_schema_url
from worker import db, models  # noqa: F401  (models registers the tables)
from worker.config import Settings
from worker.errors import SchemaOutOfDateError


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def test_embedded_sqlite_is_upgraded_on_first_use(settings: Settings) -> None:
    engine = db.make_engine(settings)
    assert db.current_revision(engine) is None
    db.ensure_schema(engine, settings)
    assert db.current_revision(engine) == db.head_revision()
    engine.dispose()


@pytest.mark.postgres
def test_postgres_with_an_old_schema_is_refused_with_a_hint(
    settings: Settings, pg_schema: str
) -> None:
    pg_settings = settings.model_copy(update={"database_url": postgres_schema_url(pg_schema)})
    engine: Engine = db.make_engine(pg_settings)
    with pytest.raises(SchemaOutOfDateError, match="newsletter db upgrade"):
        db.ensure_schema(engine, pg_settings)
    db.upgrade(engine)
    db.ensure_schema(engine, pg_settings)  # now at head: no error
    engine.dispose()


def test_upgrade_twice_is_harmless(settings: Settings) -> None:
    engine = db.make_engine(settings)
    first = db.upgrade(engine)
    second = db.upgrade(engine)
    assert first == (None, db.head_revision())
    assert second == (db.head_revision(), db.head_revision())
    engine.dispose()
