"""Delivery bookkeeping: one row per (edition, subscriber), moved by atomic conditional UPDATEs.

pending → sending (claimed with a lease) → sent | failed | skipped, or back to pending on a
transient error. A row still `sending` after its lease ran out is `uncertain`: the message may
or may not have left, so it is never resent without an operator or a provider event saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, literal, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlmodel import Session, col

from worker import journal
from worker.db import upsert_dialect
from worker.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    Subscriber,
    SubscriberStatus,
    UTCDateTime,
    utcnow,
)

INSERT_BATCH = 20_000


def add_recipients(session: Session, edition_id: int) -> int:
    """A pending row for every active subscriber not yet on the edition (insert-or-ignore).

    INSERT … SELECT per range of subscriber ids: the database copies the rows itself, and each
    statement stays small enough not to hold locks for long on a large list.
    """
    insert = upsert_dialect(session)
    highest = session.execute(sa_select(func.max(col(Subscriber.id)))).scalar() or 0
    added = 0
    for low in range(0, highest, INSERT_BATCH):
        recipients = sa_select(
            literal(edition_id),
            col(Subscriber.id),
            literal(DeliveryState.PENDING.value),
            literal(0),
        ).where(
            col(Subscriber.status) == SubscriberStatus.ACTIVE,
            col(Subscriber.id) > low,
            col(Subscriber.id) <= low + INSERT_BATCH,
        )
        statement = (
            insert(Delivery)
            .from_select(["edition_id", "subscriber_id", "state", "attempts"], recipients)
            .on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
            .returning(col(Delivery.id))  # counted: psycopg reports no rowcount here
        )
        added += len(session.execute(statement).all())
    return added


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    active: bool


def claim(
    session: Session,
    edition_id: int,
    delivery_ids: Sequence[int],
    *,
    now: datetime | None = None,
) -> list[Claimed]:
    """Atomically take those of `delivery_ids` that are still pending; a racing claimer (or a
    redelivered queue message) finds them taken and gets nothing."""
    if not delivery_ids:
        return []
    statement = (
        update(Delivery)
        .where(col(Delivery.id).in_(list(delivery_ids)))
        .where(col(Delivery.edition_id) == edition_id)
        .where(col(Delivery.state) == DeliveryState.PENDING)
        .values(
            state=DeliveryState.SENDING,
            claimed_at=now or utcnow(),
            handed_at=None,
            attempts=col(Delivery.attempts) + 1,
        )
        .returning(col(Delivery.id))
    )
    ids = [row[0] for row in session.execute(statement)]
    if not ids:
        return []
    rows = session.execute(
        sa_select(  # type: ignore[call-overload]
            Delivery.id, Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(col(Delivery.id).in_(ids))
        .order_by(Delivery.id)
    )
    return [
        Claimed(
            delivery_id=did,
            subscriber_id=sid,
            email=email,
            name=name,
            active=status == SubscriberStatus.ACTIVE,
        )
        for did, sid, email, name, status in rows
    ]


def ids_in_state(session: Session, edition_id: int, state: DeliveryState) -> list[int]:
    rows = session.execute(
        sa_select(Delivery.id)  # type: ignore[call-overload]
        .where(Delivery.edition_id == edition_id, Delivery.state == state)
        .order_by(Delivery.id)
    )
    return [row[0] for row in rows]


def skip_pending(session: Session, edition_id: int, *, reason: str) -> int:
    """Every still-pending delivery of the edition becomes `skipped` (the edition was cancelled)."""
    statement = (
        update(Delivery)
        .where(col(Delivery.edition_id) == edition_id)
        .where(col(Delivery.state) == DeliveryState.PENDING)
        .values(state=DeliveryState.SKIPPED, last_error=reason)
    )
    return session.execute(statement).rowcount or 0  # type: ignore[attr-defined]


def _move(
    session: Session,
    delivery_ids: Sequence[int],
    *,
    to: DeliveryState,
    only_from: DeliveryState = DeliveryState.SENDING,
    **values: object,
) -> int:
    if not delivery_ids:
        return 0
    statement = (
        update(Delivery)
        .where(col(Delivery.id).in_(list(delivery_ids)))
        .where(col(Delivery.state) == only_from)
        .values(state=to, **values)
    )
    return session.execute(statement).rowcount or 0  # type: ignore[attr-defined]


def mark_sent(
    session: Session, delivery_id: int, *, provider_id: str | None, now: datetime | None = None
) -> int:
    return _move(
        session,
        [delivery_id],
        to=DeliveryState.SENT,
        provider_message_id=provider_id,
        sent_at=now or utcnow(),
        last_error=None,
    )


def mark_failed(session: Session, delivery_id: int, *, reason: str) -> int:
    return _give_up(session, delivery_id, to=DeliveryState.FAILED, reason=reason)


def mark_uncertain(session: Session, delivery_id: int, *, reason: str) -> int:
    return _give_up(session, delivery_id, to=DeliveryState.UNCERTAIN, reason=reason)


def _give_up(session: Session, delivery_id: int, *, to: DeliveryState, reason: str) -> int:
    """sending → failed or uncertain, logged: each one is a reader who may not get the issue."""
    statement = (
        update(Delivery)
        .where(col(Delivery.id) == delivery_id)
        .where(col(Delivery.state) == DeliveryState.SENDING)
        .values(state=to, last_error=reason[:2000])
        .returning(col(Delivery.edition_id))
    )
    edition_id = session.execute(statement).scalar()
    if edition_id is None:
        return 0
    journal.delivery_failed(
        session, edition_id=edition_id, delivery_id=delivery_id, to_state=to, reason=reason
    )
    return 1


def mark_skipped(session: Session, delivery_ids: Sequence[int], *, reason: str) -> int:
    return _move(session, delivery_ids, to=DeliveryState.SKIPPED, last_error=reason)


def release(session: Session, delivery_ids: Sequence[int], *, reason: str) -> int:
    """Back to pending after a transient failure (or a pause) so a later pass sends it."""
    return _move(
        session, delivery_ids, to=DeliveryState.PENDING, last_error=reason[:2000], claimed_at=None
    )


def resolve_uncertain(
    session: Session,
    delivery_ids: Sequence[int],
    *,
    resend: bool,
    reason: str = "marked sent by operator",
) -> int:
    """Uncertain rows settled: send again (pending) or count as sent, by the operator or by
    the provider's own word that the message was accepted."""
    if resend:
        return _move(
            session,
            delivery_ids,
            to=DeliveryState.PENDING,
            only_from=DeliveryState.UNCERTAIN,
            claimed_at=None,
            last_error="resend requested by operator",
        )
    return _move(
        session,
        delivery_ids,
        to=DeliveryState.SENT,
        only_from=DeliveryState.UNCERTAIN,
        last_error=reason,
        sent_at=utcnow(),
    )


def attempts_of(session: Session, delivery_ids: Sequence[int]) -> dict[int, int]:
    rows = session.execute(
        sa_select(Delivery.id, Delivery.attempts).where(col(Delivery.id).in_(delivery_ids))  # type: ignore[call-overload]
    )
    return {delivery_id: attempts for delivery_id, attempts in rows}


def renew(session: Session, delivery_ids: Sequence[int], *, now: datetime | None = None) -> int:
    """Extend the lease of rows a live sender still holds, so only a dead sender's expire."""
    return _stamp_held(session, delivery_ids, claimed_at=now or utcnow())


def hand_over(session: Session, delivery_ids: Sequence[int], *, now: datetime | None = None) -> int:
    """Note that these claimed rows' messages now go to the provider (see expire_leases)."""
    return _stamp_held(session, delivery_ids, handed_at=now or utcnow())


def _stamp_held(session: Session, delivery_ids: Sequence[int], **stamp: datetime) -> int:
    """Set a time on those rows still `sending` (a row settled meanwhile is left alone)."""
    if not delivery_ids:
        return 0
    statement = (
        update(Delivery)
        .where(col(Delivery.id).in_(list(delivery_ids)))
        .where(col(Delivery.state) == DeliveryState.SENDING)
        .values(**stamp)
    )
    return session.execute(statement).rowcount or 0  # type: ignore[attr-defined]


def last_claim(session: Session, edition_id: int) -> datetime | None:
    # max() keeps the column's type, so the value comes back as an aware UTC datetime.
    latest = func.max(col(Delivery.claimed_at))
    statement = sa_select(latest).where(col(Delivery.edition_id) == edition_id)
    value: datetime | None = session.execute(statement).scalar()
    return value


def expire_leases(
    session: Session, edition_id: int, *, lease_s: int, now: datetime | None = None
) -> int:
    """Rows left `sending` past their lease (a worker died mid-send) are settled; returns how many
    became `uncertain`.

    A row whose message was handed to the provider may have left: `uncertain`, never resent
    blindly. A row that was claimed but never handed over (its sender died while it waited its
    turn) cannot have left: it goes back to pending and is sent later.
    """
    cutoff = (now or utcnow()) - timedelta(seconds=lease_s)
    expired = and_(
        col(Delivery.edition_id) == edition_id,
        col(Delivery.state) == DeliveryState.SENDING,
        col(Delivery.claimed_at) < cutoff,
    )
    session.execute(
        update(Delivery)
        .where(expired, col(Delivery.handed_at).is_(None))
        .values(
            state=DeliveryState.PENDING,
            last_error="its sender stopped before handing it to the provider: sent again",
        )
    )
    reason = "lease expired while sending"
    statement = (
        update(Delivery)
        .where(expired, col(Delivery.handed_at).is_not(None))
        .values(state=DeliveryState.UNCERTAIN, last_error=reason)
        .returning(col(Delivery.id))  # each one is logged
    )
    uncertain = [row[0] for row in session.execute(statement)]
    for delivery_id in uncertain:
        journal.delivery_failed(
            session,
            edition_id=edition_id,
            delivery_id=delivery_id,
            to_state=DeliveryState.UNCERTAIN,
            reason=reason,
        )
    return len(uncertain)


def counts(connection: Session | Connection, edition_id: int) -> dict[DeliveryState, int]:
    rows = connection.execute(
        sa_select(Delivery.state, func.count())  # type: ignore[call-overload]
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.state)
    )
    found = {DeliveryState(state): count for state, count in rows}
    return {state: found.get(state, 0) for state in DeliveryState}


def lock_edition(session: Session, edition_id: int) -> EditionStatus | None:
    """Take the edition's write lock for the rest of the transaction; return its status.

    A no-op UPDATE locks the row on PostgreSQL and takes SQLite's write lock, so everything that
    decides from delivery counts (finish, cancel, release, resend) runs one at a time per edition,
    and reads after the lock see all that was committed before it was granted.
    """
    statement = (
        update(Edition)
        .where(col(Edition.id) == edition_id)
        .values(status=col(Edition.status))
        .returning(col(Edition.status))
    )
    status = session.execute(statement).scalar()
    return EditionStatus(status) if status is not None else None


def release_or_skip(
    session: Session, edition_id: int, delivery_ids: Sequence[int], *, reason: str
) -> int:
    """Hand claimed rows back: pending, or skipped when the edition was cancelled meanwhile."""
    if not delivery_ids:
        return 0
    if lock_edition(session, edition_id) == EditionStatus.CANCELLED:
        return mark_skipped(session, delivery_ids, reason="edition cancelled")
    return release(session, delivery_ids, reason=reason)


def set_edition_status(
    session: Session,
    edition_id: int,
    *,
    to: EditionStatus,
    only_from: Sequence[EditionStatus],
    reason: str = "",
) -> bool:
    """One conditional UPDATE per transition, so a racing process loses cleanly."""
    # Locked first, so the status read here is the one this UPDATE moves from (for the log).
    before = lock_edition(session, edition_id)
    values: dict[str, object] = {"status": to, "status_reason": reason}
    if to == EditionStatus.SENDING:
        values["started_at"] = func.coalesce(
            col(Edition.started_at), literal(utcnow(), UTCDateTime())
        )
    if to == EditionStatus.SENT:
        values["finished_at"] = utcnow()
    statement = (
        update(Edition)
        .where(col(Edition.id) == edition_id)
        .where(col(Edition.status).in_(list(only_from)))
        .values(**values)
    )
    moved = bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]
    if moved:
        journal.edition_changed(session, edition_id, from_state=before, to_state=to, reason=reason)
    return moved
