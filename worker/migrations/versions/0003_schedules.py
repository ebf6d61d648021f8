"""Recurring schedules: a fire record per (schedule, period), scheduler heartbeats.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from worker.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedule") as table:
        table.add_column(
            sa.Column("period", sa.String(20), nullable=False, server_default="iso-week")
        )
    op.create_table(
        "schedule_fire",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "schedule_id", sa.Integer(), sa.ForeignKey("schedule.id"), nullable=False, index=True
        ),
        sa.Column("period_key", sa.String(20), nullable=False),
        sa.Column("fire_at", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(30), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("edition_id", sa.Integer(), sa.ForeignKey("edition.id")),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("schedule_id", "period_key", name="uq_fire_period"),
    )
    op.create_table(
        "scheduler_beat",
        sa.Column("instance", sa.String(120), primary_key=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.Column("leader", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduler_beat")
    op.drop_table("schedule_fire")
    with op.batch_alter_table("schedule") as table:
        table.drop_column("period")
