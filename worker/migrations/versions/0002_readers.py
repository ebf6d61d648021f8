"""Readers on the web: confirmation mail times, events tied to a subscriber, SES message lookup.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from worker.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot add a foreign key to an existing table in place.
    with op.batch_alter_table("subscriber") as table:
        table.add_column(sa.Column("confirm_sent_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("event") as table:
        table.add_column(sa.Column("subscriber_id", sa.Integer(), nullable=True))
        table.create_foreign_key("fk_event_subscriber", "subscriber", ["subscriber_id"], ["id"])
        table.create_index("ix_event_subscriber_id", ["subscriber_id"])
    # Bounce, complaint and delivery notifications name the provider's message id.
    op.create_index("ix_delivery_provider_message_id", "delivery", ["provider_message_id"])


def downgrade() -> None:
    op.drop_index("ix_delivery_provider_message_id", table_name="delivery")
    with op.batch_alter_table("event") as table:
        table.drop_index("ix_event_subscriber_id")
        table.drop_constraint("fk_event_subscriber", type_="foreignkey")
        table.drop_column("subscriber_id")
    with op.batch_alter_table("subscriber") as table:
        table.drop_column("confirm_sent_at")
