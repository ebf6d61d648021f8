"""The main job's first half: the week's newest comparison → that week's edition (made once)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine
from sqlmodel import Session

from worker import comparisons, editions, fires, subscribers
from worker.config import Settings
from worker.db import session_scope
from worker.models import (
    Comparison,
    Edition,
    EditionStatus,
    Event,
    EventKind,
    FireOutcome,
    Schedule,
    SubscriberStatus,
    utcnow,
)
from worker.periods import Period, iso_week, week_of


class Outcome(StrEnum):
    READY = "ready"  # approved or part-sent: enqueue start_send
    ALREADY_SENT = "already_sent"  # an earlier run finished it: nothing is sent again
    NO_COMPARISON = "no_comparison"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DRY_RUN = "dry_run"


_BY_STATUS = {
    EditionStatus.APPROVED: Outcome.READY,
    EditionStatus.SENDING: Outcome.READY,
    EditionStatus.SENT: Outcome.ALREADY_SENT,
    EditionStatus.DRAFT: Outcome.AWAITING_APPROVAL,
    EditionStatus.PAUSED: Outcome.PAUSED,
    EditionStatus.CANCELLED: Outcome.CANCELLED,
}


@dataclass
class WeeklyResult:
    outcome: Outcome
    period: Period
    comparison: Comparison | None = None
    edition: Edition | None = None
    recipients: int = 0  # active subscribers (dry run)


def _prepare(
    session: Session, settings: Settings, schedule: Schedule, period: Period, *, dry_run: bool
) -> WeeklyResult:
    comparison = comparisons.newest_in(session, period)
    if comparison is None:
        if not dry_run:
            session.add(
                Event(
                    kind=EventKind.NO_COMPARISON,
                    schedule_id=schedule.id,
                    at=utcnow(),
                    detail=f"no comparison published in {period.key} ({schedule.timezone})",
                )
            )
        return WeeklyResult(outcome=Outcome.NO_COMPARISON, period=period)
    if dry_run:
        active = subscribers.count_by_status(session).get(SubscriberStatus.ACTIVE, 0)
        existing = editions.find(session, schedule, period.key)
        return WeeklyResult(Outcome.DRY_RUN, period, comparison, existing, recipients=active)
    edition = editions.prepare(
        session, schedule=schedule, period=period, comparison=comparison, settings=settings
    ).edition
    if edition.comparison_id != comparison.id:  # the edition froze an earlier pick; keep it
        comparison = session.get(Comparison, edition.comparison_id) or comparison
    return WeeklyResult(_BY_STATUS[edition.status], period, comparison, edition)


def prepare_week(
    engine: Engine, settings: Settings, *, week: str | None = None, dry_run: bool = False
) -> WeeklyResult:
    """The edition of `week` (default: the current one) under the default schedule."""
    with session_scope(engine) as session:
        schedule = editions.default_schedule(session, settings)
        period = iso_week(week or week_of(utcnow(), schedule.timezone), schedule.timezone)
        return _prepare(session, settings, schedule, period, dry_run=dry_run)


_FIRE_OUTCOME = {
    Outcome.READY: FireOutcome.SENDING,
    Outcome.ALREADY_SENT: FireOutcome.ALREADY_DONE,
    Outcome.NO_COMPARISON: FireOutcome.NO_COMPARISON,
    Outcome.AWAITING_APPROVAL: FireOutcome.AWAITING_APPROVAL,
    Outcome.PAUSED: FireOutcome.ALREADY_DONE,
    Outcome.CANCELLED: FireOutcome.ALREADY_DONE,
}


def prepare_period(
    engine: Engine, settings: Settings, schedule_id: int, period_key: str
) -> int | None:
    """For the scheduler's prepare_edition: the edition's id when it is ready to send.

    What became of the fire is written to its fire row in the same transaction. A period an
    operator skipped is left alone, even if a fire for it was already on the queue.
    """
    with session_scope(engine) as session:
        schedule = session.get(Schedule, schedule_id)
        if schedule is None:
            return None
        fire = fires.find(session, schedule_id, period_key, lock=True)
        if fire is not None and fire.outcome == FireOutcome.SKIPPED:
            return None
        result = _prepare(
            session, settings, schedule, iso_week(period_key, schedule.timezone), dry_run=False
        )
        edition_id = result.edition.id if result.edition is not None else None
        detail = {
            Outcome.NO_COMPARISON: f"no comparison published in {period_key}: nothing sent",
            Outcome.AWAITING_APPROVAL: f"edition {edition_id} waits for approval",
            Outcome.PAUSED: f"edition {edition_id} is paused",
            Outcome.CANCELLED: f"edition {edition_id} was cancelled",
        }.get(result.outcome, "")
        fires.record(
            session,
            schedule_id,
            period_key,
            outcome=_FIRE_OUTCOME[result.outcome],
            detail=detail,
            edition_id=edition_id,
            fire_at=fire.fire_at if fire is not None else None,
        )
    if result.outcome != Outcome.READY or edition_id is None:
        return None
    return edition_id
