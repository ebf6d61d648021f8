"""Fire records: one row per (schedule, period), the database's guarantee that a period fires once.

Inserting the row is the claim: whoever inserts it enqueues the period's preparation, and every
other scheduler, restart or repeat finds the row and does nothing. prepare_edition writes back
what became of the fire, which `schedules status` and `editions list` show.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from worker.db import upsert_dialect
from worker.models import FireOutcome, ScheduleFire, utcnow

# A fire still `enqueued` this long after it was claimed lost its message (a scheduler died
# between claiming and enqueueing): it is enqueued again. Preparing twice is harmless.
REENQUEUE_AFTER = timedelta(minutes=10)


def claim(
    session: Session,
    *,
    schedule_id: int,
    period_key: str,
    fire_at: datetime,
    outcome: FireOutcome = FireOutcome.ENQUEUED,
    detail: str = "",
    now: datetime | None = None,
) -> bool:
    """Insert the period's fire row; True if this call made it (and so must act on it)."""
    now = now or utcnow()
    statement = (
        upsert_dialect(session)(ScheduleFire)
        .values(
            schedule_id=schedule_id,
            period_key=period_key,
            fire_at=fire_at,
            outcome=outcome,
            detail=detail,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["schedule_id", "period_key"])
        .returning(col(ScheduleFire.id))
    )
    return session.execute(statement).first() is not None


def find(
    session: Session, schedule_id: int, period_key: str, *, lock: bool = False
) -> ScheduleFire | None:
    """The period's fire row; `lock` holds it (PostgreSQL) until the transaction ends, so an
    operator's skip cannot slip in while the period is being prepared."""
    statement = (
        select(ScheduleFire)
        .where(ScheduleFire.schedule_id == schedule_id)
        .where(ScheduleFire.period_key == period_key)
    )
    if lock:
        statement = statement.with_for_update()
    return session.exec(statement).first()


def stale_enqueued(session: Session, schedule_id: int, period_key: str, now: datetime) -> bool:
    """Take over a fire whose message seems lost: True if this call took it (one caller wins)."""
    result = session.execute(
        update(ScheduleFire)
        .where(col(ScheduleFire.schedule_id) == schedule_id)
        .where(col(ScheduleFire.period_key) == period_key)
        .where(col(ScheduleFire.outcome) == FireOutcome.ENQUEUED)
        .where(col(ScheduleFire.updated_at) <= now - REENQUEUE_AFTER)
        .values(updated_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record(
    session: Session,
    schedule_id: int,
    period_key: str,
    *,
    outcome: FireOutcome,
    detail: str = "",
    edition_id: int | None = None,
    fire_at: datetime | None = None,
) -> None:
    """Write what became of a period's fire (a row is made if a manual run had none)."""
    now = utcnow()
    claim(
        session,
        schedule_id=schedule_id,
        period_key=period_key,
        fire_at=fire_at or now,
        outcome=outcome,
        detail=detail,
    )
    session.execute(
        update(ScheduleFire)
        .where(col(ScheduleFire.schedule_id) == schedule_id)
        .where(col(ScheduleFire.period_key) == period_key)
        .values(outcome=outcome, detail=detail, edition_id=edition_id, updated_at=now)
    )


def recent(session: Session, schedule_id: int, limit: int = 5) -> list[ScheduleFire]:
    return list(
        session.exec(
            select(ScheduleFire)
            .where(ScheduleFire.schedule_id == schedule_id)
            .order_by(col(ScheduleFire.fire_at).desc())
            .limit(limit)
        )
    )
