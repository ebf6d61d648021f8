"""The initial schema: comparisons, subscribers, schedules, editions, deliveries, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from worker.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _at(name: str, *, nullable: bool = True, index: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, UTCDateTime(), nullable=nullable, index=index)


def upgrade() -> None:
    op.create_table(
        "comparison",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("slug", sa.String(200), nullable=False, unique=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("dek", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        _at("published_at", nullable=False, index=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        _at("imported_at", nullable=False),
        _at("updated_at", nullable=False),
    )
    op.create_table(
        "subscriber",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("source", sa.Text(), nullable=False),
        _at("created_at", nullable=False),
        _at("confirmed_at"),
        _at("unsubscribed_at"),
        _at("bounced_at"),
        _at("complained_at"),
    )
    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("require_approval", sa.Boolean(), nullable=False),
        sa.Column("missed_run", sa.String(20), nullable=False),
        sa.Column("last_period_fired", sa.String(20)),
        _at("created_at", nullable=False),
    )
    op.create_table(
        "edition",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "comparison_id",
            sa.Integer(),
            sa.ForeignKey("comparison.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("schedule_id", sa.Integer(), sa.ForeignKey("schedule.id"), nullable=False),
        sa.Column("period_key", sa.String(20), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("preheader", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("placeholder_key", sa.String(40), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.String(320)),
        _at("approved_at"),
        _at("created_at", nullable=False),
        _at("started_at"),
        _at("finished_at"),
        sa.UniqueConstraint("schedule_id", "period_key", name="uq_edition_period"),
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "edition_id", sa.Integer(), sa.ForeignKey("edition.id"), nullable=False, index=True
        ),
        sa.Column(
            "subscriber_id",
            sa.Integer(),
            sa.ForeignKey("subscriber.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(255)),
        sa.Column("last_error", sa.Text()),
        _at("claimed_at"),
        _at("sent_at"),
        sa.UniqueConstraint("edition_id", "subscriber_id", name="uq_delivery_recipient"),
    )
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("delivery.id"), index=True),
        sa.Column("edition_id", sa.Integer(), sa.ForeignKey("edition.id"), index=True),
        sa.Column("schedule_id", sa.Integer(), sa.ForeignKey("schedule.id")),
        sa.Column("kind", sa.String(30), nullable=False, index=True),
        _at("at", nullable=False),
        sa.Column("url", sa.Text()),
        sa.Column("user_agent", sa.Text()),
        sa.Column("machine", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("provider_event_id", sa.String(255), unique=True),
    )


def downgrade() -> None:
    for table in ("event", "delivery", "edition", "schedule", "subscriber", "comparison"):
        op.drop_table(table)
