"""Database tables (SQLModel) and the state enums the rest of the code speaks in."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (stored naive) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc() -> Any:
    """An optional timestamp column (set when the thing it names happens)."""
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class EditionStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"


class EventKind(StrEnum):
    OPEN = "open"
    CLICK = "click"
    DELIVERY = "delivery"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    SUBSCRIBE = "subscribe"  # a sign-up or resubscribe request: a confirmation mail left
    CONFIRM = "confirm"
    NO_COMPARISON = "no_comparison"


class MissedRunPolicy(StrEnum):
    RUN_ONCE = "run-once"
    SKIP = "skip"


class FireOutcome(StrEnum):
    """What became of one schedule's fire for one period."""

    ENQUEUED = "enqueued"  # handed to the queue; prepare_edition has not reported yet
    SENDING = "sending"  # the edition is ready and its send was started
    AWAITING_APPROVAL = "awaiting_approval"  # a draft waits for an editor
    NO_COMPARISON = "no_comparison"  # nothing was published that period: nothing sent
    ALREADY_DONE = "already_done"  # the period's edition was sent (or stopped) before
    SKIPPED = "skipped"  # an operator skipped the period
    MISSED = "missed"  # the scheduler was down at the fire time and the policy is `skip`


class Role(StrEnum):
    EDITOR = "editor"  # previews, edits drafts, sends tests, approves
    OPERATOR = "operator"  # all an editor does, and steers sends


class User(SQLModel, table=True):
    """Someone who signs in to /admin."""

    __tablename__ = "admin_user"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(320), unique=True, nullable=False))
    role: Role = Field(sa_column=Column(String(20), nullable=False))
    password_hash: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_login_at: datetime | None = _utc()


class Comparison(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(sa_column=Column(String(200), unique=True, nullable=False))
    title: str = Field(sa_column=Column(Text, nullable=False))
    dek: str = Field(sa_column=Column(Text, nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    published_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    content_hash: str = Field(sa_column=Column(String(64), nullable=False))
    imported_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Subscriber(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(320), unique=True, nullable=False))
    name: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    status: SubscriberStatus = Field(sa_column=Column(String(20), nullable=False, index=True))
    source: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    confirmed_at: datetime | None = _utc()
    unsubscribed_at: datetime | None = _utc()
    bounced_at: datetime | None = _utc()
    complained_at: datetime | None = _utc()
    # When the last confirmation mail left: a repeated sign-up does not mail again at once.
    confirm_sent_at: datetime | None = _utc()


class Schedule(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(100), unique=True, nullable=False))
    cron: str = Field(sa_column=Column(String(100), nullable=False))
    timezone: str = Field(sa_column=Column(String(64), nullable=False))
    enabled: bool = Field(default=False)
    require_approval: bool = Field(default=False)
    missed_run: MissedRunPolicy = Field(
        default=MissedRunPolicy.RUN_ONCE, sa_column=Column(String(20), nullable=False)
    )
    last_period_fired: str | None = Field(default=None, sa_column=Column(String(20)))
    # How editions are grouped, one per period: only ISO weeks for now.
    period: str = Field(
        default="iso-week", sa_column=Column(String(20), nullable=False, server_default="iso-week")
    )
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ScheduleFire(SQLModel, table=True):
    """One schedule's fire for one period: the row that makes a fire happen once.

    Whichever scheduler inserts it enqueues the period's preparation; a second scheduler (or a
    restart) finds it and does not. The outcome is written back by prepare_edition.
    """

    __tablename__ = "schedule_fire"
    __table_args__ = (UniqueConstraint("schedule_id", "period_key", name="uq_fire_period"),)

    id: int | None = Field(default=None, primary_key=True)
    schedule_id: int = Field(foreign_key="schedule.id", index=True)
    period_key: str = Field(sa_column=Column(String(20), nullable=False))
    fire_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    outcome: FireOutcome = Field(sa_column=Column(String(30), nullable=False))
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    edition_id: int | None = Field(default=None, foreign_key="edition.id")
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SchedulerBeat(SQLModel, table=True):
    """A scheduler process's heartbeat, for `schedules status`."""

    __tablename__ = "scheduler_beat"

    instance: str = Field(sa_column=Column(String(120), primary_key=True))
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    leader: bool = Field(default=False)


class Edition(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("schedule_id", "period_key", name="uq_edition_period"),)

    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", index=True)
    schedule_id: int = Field(foreign_key="schedule.id")
    period_key: str = Field(sa_column=Column(String(20), nullable=False))
    subject: str = Field(sa_column=Column(Text, nullable=False))
    preheader: str = Field(sa_column=Column(Text, nullable=False))
    html: str = Field(sa_column=Column(Text, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    # Per-render random marker inside the placeholders, so comparison text can never
    # impersonate a placeholder (see emails.render.Placeholders).
    placeholder_key: str = Field(sa_column=Column(String(40), nullable=False))
    content_hash: str = Field(sa_column=Column(String(64), nullable=False))
    source_hash: str = Field(sa_column=Column(String(64), nullable=False))
    status: EditionStatus = Field(sa_column=Column(String(20), nullable=False, index=True))
    status_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    approved_by: str | None = Field(default=None, sa_column=Column(String(320)))
    approved_at: datetime | None = _utc()
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    started_at: datetime | None = _utc()
    finished_at: datetime | None = _utc()


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id", name="uq_delivery_recipient"),
    )

    id: int | None = Field(default=None, primary_key=True)
    edition_id: int = Field(foreign_key="edition.id", index=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    state: DeliveryState = Field(sa_column=Column(String(20), nullable=False, index=True))
    attempts: int = Field(default=0)
    provider_message_id: str | None = Field(default=None, sa_column=Column(String(255), index=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    claimed_at: datetime | None = _utc()
    # Set just before the provider call: a lease that expires without it was never handed over,
    # so the row can safely go back to pending instead of becoming uncertain.
    handed_at: datetime | None = _utc()
    sent_at: datetime | None = _utc()


class Event(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", index=True)
    edition_id: int | None = Field(default=None, foreign_key="edition.id", index=True)
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", index=True)
    schedule_id: int | None = Field(default=None, foreign_key="schedule.id")
    kind: EventKind = Field(sa_column=Column(String(30), nullable=False, index=True))
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    url: str | None = Field(default=None, sa_column=Column(Text))
    user_agent: str | None = Field(default=None, sa_column=Column(Text))
    machine: bool = Field(default=False)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    provider_event_id: str | None = Field(default=None, sa_column=Column(String(255), unique=True))
