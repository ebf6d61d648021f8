"""One scheduler tick: which schedules are due, and firing each due period exactly once.

A tick only enqueues `prepare_edition(schedule_id, period_key)`; it never renders or sends. The
fire row (worker.fires) decides who enqueues; the unique (schedule, period) of editions decides
again downstream, so even two fires that slipped through make one edition and one send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schedules import timing
from worker import fires
from worker.db import session_scope
from worker.models import FireOutcome, MissedRunPolicy, Schedule
from worker.periods import iso_week, week_of

log = logging.getLogger("schedules")
Enqueue = Callable[[int, str], None]  # (schedule id, period key) → queued
# How late a fire may be noticed and still count as on time: a few ticks of a running scheduler.
ON_TIME = timedelta(minutes=2)


@dataclass(frozen=True)
class Due:
    schedule_id: int
    name: str
    period_key: str
    fire_at: datetime
    late: bool  # the scheduler was down at fire_at (or is catching up)


def due(schedule: Schedule, now: datetime, *, on_time: timedelta = ON_TIME) -> Due | None:
    """The period this schedule should have fired for by `now`, if that period is still on.

    Only the latest fire time counts, so a scheduler that was down for weeks fires at most the
    current period, never a backlog; a period that is over is never fired late.
    """
    assert schedule.id is not None
    fire_at = timing.last_fire(schedule.cron, schedule.timezone, now)
    if fire_at is None or fire_at < schedule.created_at:
        return None
    period_key = week_of(fire_at, schedule.timezone)
    if now >= iso_week(period_key, schedule.timezone).end_utc:
        return None
    return Due(schedule.id, schedule.name, period_key, fire_at, late=now - fire_at > on_time)


@dataclass
class TickReport:
    fired: list[Due]
    missed: list[Due]
    retried: list[Due]


def tick(
    engine: Engine, now: datetime, enqueue: Enqueue, *, on_time: timedelta = ON_TIME
) -> TickReport:
    """Fire what is due. Safe to run from several schedulers at once, and again and again.

    `on_time`: how late a fire may be noticed and still count as on time (a scheduler passes
    its tick plus the time a standby needs to take over the lead). One broken schedule is
    logged and skipped; it never stops the others.
    """
    report = TickReport([], [], [])
    with session_scope(engine) as session:
        enabled = list(session.exec(select(Schedule).where(col(Schedule.enabled))))
    for schedule in enabled:
        try:
            found = due(schedule, now, on_time=on_time)
            if found is not None:
                _fire(engine, schedule, found, now, enqueue, report)
        except Exception:
            log.exception("schedule %r could not be fired", schedule.name)
    return report


def _fire(
    engine: Engine,
    schedule: Schedule,
    found: Due,
    now: datetime,
    enqueue: Enqueue,
    report: TickReport,
) -> None:
    with session_scope(engine) as session:
        if found.late and schedule.missed_run == MissedRunPolicy.SKIP:
            missed = fires.claim(
                session,
                schedule_id=found.schedule_id,
                period_key=found.period_key,
                fire_at=found.fire_at,
                outcome=FireOutcome.MISSED,
                detail="the scheduler was not running at the fire time (missed-run policy: skip)",
                now=now,
            )
            if missed:
                report.missed.append(found)
            claimed = False
        else:
            claimed = fires.claim(
                session,
                schedule_id=found.schedule_id,
                period_key=found.period_key,
                fire_at=found.fire_at,
                detail="late: fired on start-up" if found.late else "",
                now=now,
            )
        # A fire claimed on time whose message never reached the queue is sent again, whatever
        # the missed-run policy: it did fire on time, only its message was lost.
        retry = not claimed and fires.stale_enqueued(
            session, found.schedule_id, found.period_key, now
        )
    # Enqueue after the claim is committed: if this process dies in between, the fire stays
    # `enqueued` and a later tick sends it again once it is stale.
    if claimed or retry:
        enqueue(found.schedule_id, found.period_key)
        (report.fired if claimed else report.retried).append(found)


def trigger(session: Session, schedule: Schedule, now: datetime) -> str:
    """An operator's "fire now" for the current period, even a skipped one; returns the key."""
    assert schedule.id is not None
    period_key = week_of(now, schedule.timezone)
    fires.record(
        session,
        schedule.id,
        period_key,
        outcome=FireOutcome.ENQUEUED,
        detail="triggered by an operator",
        fire_at=now,
    )
    return period_key
