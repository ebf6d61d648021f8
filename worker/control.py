"""Operator actions on an edition: approve, pause, resume, cancel, settle uncertain deliveries.

Each is one conditional status change; the caller enqueues start_send where a send must go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select

from worker import delivery, engagement, journal
from worker.db import session_scope
from worker.engagement import Engagement
from worker.errors import InputError, NotFoundError
from worker.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    FireOutcome,
    Schedule,
    ScheduleFire,
    Subscriber,
    utcnow,
)
from worker.periods import iso_week

RATE_WINDOW_S = 10


def get(session: Session, edition_id: int) -> Edition:
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFoundError(f"edition {edition_id} does not exist (see `newsletter editions list`)")
    return edition


def _change(
    engine: Engine,
    edition_id: int,
    *,
    to: EditionStatus,
    only_from: list[EditionStatus],
    verb: str,
    reason: str = "",
) -> Edition:
    with session_scope(engine) as session:
        edition = get(session, edition_id)
        if not delivery.set_edition_status(
            session, edition_id, to=to, only_from=only_from, reason=reason
        ):
            allowed = " or ".join(status.value for status in only_from)
            raise InputError(
                f"edition {edition_id} is {edition.status}: it can be {verb} only when {allowed}"
            )
        session.refresh(edition)
        return edition


def approve(engine: Engine, edition_id: int, *, by: str) -> Edition:
    """Draft → approved, recording who and when, in one conditional UPDATE (a racing cancel wins
    or loses cleanly)."""
    with session_scope(engine) as session:
        edition = get(session, edition_id)
        statement = (
            update(Edition)
            .where(col(Edition.id) == edition_id)
            .where(col(Edition.status) == EditionStatus.DRAFT)
            .values(status=EditionStatus.APPROVED, approved_by=by, approved_at=utcnow())
        )
        if not session.execute(statement).rowcount:  # type: ignore[attr-defined]
            raise InputError(f"edition {edition_id} is {edition.status}: only a draft is approved")
        # Not who approved: that is an address, and it is kept on the edition.
        journal.edition_changed(
            session, edition_id, from_state=EditionStatus.DRAFT, to_state=EditionStatus.APPROVED
        )
        session.refresh(edition)
        return edition


def pause(engine: Engine, edition_id: int) -> Edition:
    return _change(
        engine,
        edition_id,
        to=EditionStatus.PAUSED,
        only_from=[EditionStatus.APPROVED, EditionStatus.SENDING],
        verb="paused",
        reason="paused by an operator",
    )


def resume(engine: Engine, edition_id: int) -> Edition:
    """Paused → approved; the caller then enqueues start_send, which hands out what is pending."""
    return _change(
        engine,
        edition_id,
        to=EditionStatus.APPROVED,
        only_from=[EditionStatus.PAUSED],
        verb="resumed",
    )


def cancel(engine: Engine, edition_id: int, *, lease_s: int) -> tuple[Edition, int]:
    """No further message leaves; pending deliveries become skipped. Returns how many.

    One transaction under the edition's lock, and safe to repeat: cancelling a cancelled edition
    skips whatever a stopping batch handed back since.
    """
    with session_scope(engine) as session:
        edition = get(session, edition_id)
        status = delivery.lock_edition(session, edition_id)
        if status == EditionStatus.SENT:
            raise InputError(f"edition {edition_id} is sent: there is nothing left to cancel")
        if status != EditionStatus.CANCELLED:
            delivery.set_edition_status(
                session,
                edition_id,
                to=EditionStatus.CANCELLED,
                only_from=[status] if status else [],
                reason="cancelled by an operator",
            )
        delivery.expire_leases(session, edition_id, lease_s=lease_s)
        skipped = delivery.skip_pending(session, edition_id, reason="edition cancelled")
        session.refresh(edition)
        return edition, skipped


@dataclass(frozen=True)
class EditionReport:
    edition: Edition
    counts: dict[DeliveryState, int]
    retries: int  # sends attempted beyond the first, over all deliveries
    rate_per_s: float  # messages recorded sent in the last RATE_WINDOW_S seconds, per second
    engagement: Engagement


def report(engine: Engine, edition_id: int) -> EditionReport:
    with session_scope(engine) as session:
        edition = get(session, edition_id)
        counts = delivery.counts(session, edition_id)
        attempts = session.exec(
            select(func.coalesce(func.sum(Delivery.attempts), 0), func.count())
            .where(Delivery.edition_id == edition_id)
            .where(col(Delivery.attempts) > 0)
        ).one()
        since = utcnow() - timedelta(seconds=RATE_WINDOW_S)
        recent = session.exec(
            select(func.count())
            .where(Delivery.edition_id == edition_id)
            .where(Delivery.state == DeliveryState.SENT)
            .where(col(Delivery.sent_at) >= since)
        ).one()
        figures = engagement.of_edition(session, edition_id)
    total_attempts, attempted = attempts
    return EditionReport(
        edition=edition,
        counts=counts,
        retries=int(total_attempts) - int(attempted),
        rate_per_s=recent / RATE_WINDOW_S,
        engagement=figures,
    )


def uncertain(engine: Engine, edition_id: int, *, lease_s: int) -> list[tuple[int, str]]:
    """(delivery id, address) of every uncertain delivery, after expiring stale leases."""
    with session_scope(engine) as session:
        get(session, edition_id)
        delivery.expire_leases(session, edition_id, lease_s=lease_s)
        rows = session.exec(
            select(Delivery.id, Subscriber.email)
            .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
            .where(Delivery.edition_id == edition_id)
            .where(Delivery.state == DeliveryState.UNCERTAIN)
            .order_by(col(Delivery.id))
        ).all()
    return [(int(did), email) for did, email in rows if did is not None]


def resolve_uncertain(engine: Engine, edition_id: int, *, resend: bool) -> int:
    """Settle every uncertain delivery; a resend puts the edition back to sending."""
    with session_scope(engine) as session:
        get(session, edition_id)
        status = delivery.lock_edition(session, edition_id)  # no finish in between
        if resend and status == EditionStatus.CANCELLED:
            raise InputError(f"edition {edition_id} is cancelled: its deliveries are not resent")
        ids = delivery.ids_in_state(session, edition_id, DeliveryState.UNCERTAIN)
        moved = delivery.resolve_uncertain(session, ids, resend=resend)
        if resend and moved and status == EditionStatus.SENT:
            delivery.set_edition_status(
                session, edition_id, to=EditionStatus.SENDING, only_from=[EditionStatus.SENT]
            )
    return moved


def week_over(session: Session, edition: Edition, now: datetime | None = None) -> bool:
    """Whether the week an edition belongs to has ended (in its schedule's zone)."""
    schedule = session.get(Schedule, edition.schedule_id)
    zone_name = schedule.timezone if schedule is not None else "UTC"
    return (now or utcnow()) >= iso_week(edition.period_key, zone_name).end_utc


@dataclass(frozen=True)
class QuietWeek:
    schedule: str
    period_key: str
    outcome: FireOutcome
    detail: str


QUIET = (FireOutcome.NO_COMPARISON, FireOutcome.MISSED, FireOutcome.SKIPPED)


def quiet_weeks(session: Session, limit: int = 10) -> list[QuietWeek]:
    """Recent weeks a schedule fired (or would have) and nothing was sent, with the reason."""
    rows = session.exec(
        select(Schedule.name, ScheduleFire.period_key, ScheduleFire.outcome, ScheduleFire.detail)
        .join(Schedule, col(Schedule.id) == col(ScheduleFire.schedule_id))
        .where(col(ScheduleFire.outcome).in_(QUIET))
        .order_by(col(ScheduleFire.fire_at).desc())
        .limit(limit)
    )
    return [
        QuietWeek(name, key, FireOutcome(outcome), detail) for name, key, outcome, detail in rows
    ]
