"""The main job: the week's newest comparison → its edition → a delivery per subscriber → sent."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine

from worker import comparisons, delivery, editions, subscribers
from worker.config import Settings
from worker.db import session_scope
from worker.models import (
    Comparison,
    DeliveryState,
    Edition,
    EditionStatus,
    Event,
    EventKind,
    SubscriberStatus,
    utcnow,
)
from worker.periods import Period, iso_week, week_of
from worker.sending import ProgressFn, SendSummary, send_edition
from worker.transports.base import Transport


class Outcome(StrEnum):
    SENT = "sent"  # this run sent (or finished sending) the edition
    ALREADY_SENT = "already_sent"  # an earlier run finished it: nothing sent again
    NO_COMPARISON = "no_comparison"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DRY_RUN = "dry_run"


@dataclass
class WeeklyResult:
    outcome: Outcome
    period: Period
    comparison: Comparison | None = None
    edition: Edition | None = None
    summary: SendSummary | None = None
    recipients: int = 0
    edition_created: bool = False


def current_week(settings: Settings) -> str:
    return week_of(utcnow(), settings.timezone)


def run_weekly(
    engine: Engine,
    settings: Settings,
    transport: Transport,
    *,
    week: str | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
) -> WeeklyResult:
    """Safe to run any number of times: one edition per week, one message per subscriber."""
    with session_scope(engine) as session:
        schedule = editions.default_schedule(session, settings)
        period = iso_week(week or week_of(utcnow(), schedule.timezone), schedule.timezone)
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
            existing = editions.find(session, schedule, period.key)
            active = subscribers.count_by_status(session).get(SubscriberStatus.ACTIVE, 0)
            return WeeklyResult(
                outcome=Outcome.DRY_RUN,
                period=period,
                comparison=comparison,
                edition=existing,
                recipients=active,
            )
        prepared = editions.prepare(
            session, schedule=schedule, period=period, comparison=comparison, settings=settings
        )
    edition = prepared.edition
    comparison_of_edition = comparison
    if edition.comparison_id != comparison.id:  # the edition froze an earlier pick; keep it
        with session_scope(engine) as session:
            comparison_of_edition = session.get(Comparison, edition.comparison_id) or comparison
    result = WeeklyResult(
        outcome=Outcome.SENT,
        period=period,
        comparison=comparison_of_edition,
        edition=edition,
        edition_created=prepared.created,
    )
    blocked = {
        EditionStatus.SENT: Outcome.ALREADY_SENT,
        EditionStatus.DRAFT: Outcome.AWAITING_APPROVAL,
        EditionStatus.PAUSED: Outcome.PAUSED,
        EditionStatus.CANCELLED: Outcome.CANCELLED,
    }
    if edition.status in blocked:
        result.outcome = blocked[edition.status]
        with session_scope(engine) as session:
            assert edition.id is not None
            result.summary = SendSummary(
                counts=delivery.counts(session, edition.id),
                newly_uncertain=0,
                paused_reason=edition.status_reason or None,
            )
        return result
    result.summary = send_edition(
        engine, edition, comparison_of_edition, transport, settings, progress=progress
    )
    if result.summary.paused_reason:
        result.outcome = Outcome.PAUSED
    result.recipients = sum(
        n for state, n in result.summary.counts.items() if state != DeliveryState.SKIPPED
    )
    return result
