"""Schedules as operators manage them: add (checked at once, not at 09:00), pause, resume,
remove, skip a period, and what the scheduler processes last did."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from schedules import timing
from worker import fires
from worker.errors import InputError, NotFoundError
from worker.models import (
    Edition,
    Event,
    FireOutcome,
    MissedRunPolicy,
    Schedule,
    ScheduleFire,
    SchedulerBeat,
)
from worker.periods import iso_week

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def add(
    session: Session,
    *,
    name: str,
    cron: str,
    tz: str,
    require_approval: bool,
    missed: MissedRunPolicy,
    now: datetime,
) -> Schedule:
    if not _NAME.match(name):
        raise InputError(
            f"name {name!r} must be 1-100 letters, digits, '-', '_' or '.', starting with a "
            "letter or digit"
        )
    schedule = Schedule(
        name=name,
        cron=timing.check_cron(cron),
        timezone=timing.check_zone(tz).key,
        enabled=True,
        require_approval=require_approval,
        missed_run=missed,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(schedule)
    except IntegrityError:
        raise InputError(f"name {name!r}: a schedule of that name exists") from None
    return schedule


def named(session: Session, name: str) -> Schedule:
    schedule = session.exec(select(Schedule).where(Schedule.name == name)).first()
    if schedule is None:
        raise NotFoundError(f"no schedule named {name!r} (see `newsletter schedules list`)")
    return schedule


def all_schedules(session: Session) -> list[Schedule]:
    return list(session.exec(select(Schedule).order_by(col(Schedule.name))))


def set_enabled(session: Session, name: str, *, enabled: bool) -> Schedule:
    schedule = named(session, name)
    schedule.enabled = enabled
    session.add(schedule)
    return schedule


def remove(session: Session, name: str) -> None:
    """Delete a schedule that never made an edition; one with editions keeps its history."""
    schedule = named(session, name)
    made = session.exec(
        select(func.count()).select_from(Edition).where(Edition.schedule_id == schedule.id)
    ).one()
    if made:
        raise InputError(
            f"schedule {name!r} has {made} edition(s) and keeps them: "
            f"`newsletter schedules pause {name}` stops it instead"
        )
    session.execute(delete(ScheduleFire).where(col(ScheduleFire.schedule_id) == schedule.id))
    session.execute(delete(Event).where(col(Event.schedule_id) == schedule.id))
    session.delete(schedule)


def skip(session: Session, name: str, week: str) -> str:
    """Mark a period so the schedule does not fire for it; refused once it has fired.

    Insert-or-ignore, then a conditional UPDATE: a fire racing the skip wins or loses as a
    whole, never a skip reported done over a week that was sent.
    """
    schedule = named(session, name)
    assert schedule.id is not None
    period = iso_week(week, schedule.timezone)
    if fires.claim(
        session,
        schedule_id=schedule.id,
        period_key=period.key,
        fire_at=period.start_utc,
        outcome=FireOutcome.SKIPPED,
        detail="by an operator",
    ):
        return period.key
    changed = session.execute(
        update(ScheduleFire)
        .where(col(ScheduleFire.schedule_id) == schedule.id)
        .where(col(ScheduleFire.period_key) == period.key)
        .where(col(ScheduleFire.outcome).in_([FireOutcome.SKIPPED, FireOutcome.MISSED]))
        .values(outcome=FireOutcome.SKIPPED, detail="by an operator")
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        fire = fires.find(session, schedule.id, period.key)
        raise InputError(
            f"week {period.key}: schedule {name!r} already fired for it "
            f"({fire.outcome if fire else 'in progress'})"
        )
    return period.key


@dataclass(frozen=True)
class Beat:
    instance: str
    seen_at: datetime
    leader: bool


def beats(session: Session) -> list[Beat]:
    rows = session.exec(select(SchedulerBeat).order_by(col(SchedulerBeat.seen_at).desc()))
    return [Beat(row.instance, row.seen_at, row.leader) for row in rows]
