"""Readers signing themselves up: double opt-in, resubscribe, confirm.

A sign-up never tells the caller whether the address was known: every request gets the same
answer, and only the mailbox owner learns more, from the confirmation mail (or its absence).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine, or_, update
from sqlmodel import Session, col, select

from emails.render import render_confirmation
from worker import subscribers, tracking
from worker.config import Settings
from worker.db import session_scope, upsert_dialect
from worker.editions import footer_of
from worker.models import Event, EventKind, Subscriber, SubscriberStatus
from worker.transports.base import FailureKind, OutgoingMessage, Transport

log = logging.getLogger(__name__)

# A repeated sign-up within this time sends no second mail (a reader double-clicking, or
# someone using the form to flood a stranger's mailbox).
RESEND_AFTER = timedelta(minutes=5)
SEND_ATTEMPTS = 3
RETRY_S = 1.0
SUPPRESSED = (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)
MAY_CONFIRM = (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED)


@dataclass(frozen=True)
class ConfirmationDue:
    """Who to send a confirmation mail to, and the moment its link is issued."""

    subscriber_id: int
    email: str
    name: str
    issued_at: datetime


def _due(session: Session, subscriber_id: int, now: datetime) -> ConfirmationDue | None:
    """Book a confirmation mail, unless the address is active, suppressed or was mailed lately.

    One conditional UPDATE books it, so two requests at once (a double click) book one mail.
    """
    booked = session.execute(
        update(Subscriber)
        .where(col(Subscriber.id) == subscriber_id)
        .where(col(Subscriber.status).in_(MAY_CONFIRM))
        .where(
            or_(
                col(Subscriber.confirm_sent_at).is_(None),
                col(Subscriber.confirm_sent_at) <= now - RESEND_AFTER,
            )
        )
        .values(confirm_sent_at=now)
        .execution_options(synchronize_session="fetch")
    )
    if not booked.rowcount:  # type: ignore[attr-defined]
        return None
    subscriber = session.get(Subscriber, subscriber_id)
    assert subscriber is not None
    session.add(
        Event(
            kind=EventKind.SUBSCRIBE,
            subscriber_id=subscriber_id,
            at=now,
            detail=f"confirmation mail sent ({subscriber.status})",
        )
    )
    return ConfirmationDue(subscriber_id, subscriber.email, subscriber.name, now)


def request(
    session: Session, raw_email: str, *, name: str | None, now: datetime
) -> ConfirmationDue | None:
    """A sign-up from the web: a pending subscriber, and a confirmation mail if one is due.

    InputError for an address or name that is not valid; everything else answers the same.
    Insert-or-ignore, so two sign-ups of a new address at once make one row, never an error.
    """
    email = subscribers.normalise_email(raw_email)
    clean = subscribers.clean_name(name)
    session.execute(
        upsert_dialect(session)(Subscriber)
        .values(
            email=email, name=clean, status=SubscriberStatus.PENDING, source="web", created_at=now
        )
        .on_conflict_do_nothing(index_elements=["email"])
    )
    subscriber_id = session.exec(select(Subscriber.id).where(Subscriber.email == email)).one()
    assert subscriber_id is not None
    return _due(session, subscriber_id, now)


def resubscribe(session: Session, subscriber_id: int, *, now: datetime) -> ConfirmationDue | None:
    """From the unsubscribe page: the address is asked to confirm again before any issue goes."""
    return _due(session, subscriber_id, now)


def cancel_mail(session: Session, subscriber_id: int) -> None:
    """The confirmation mail did not leave: let the reader ask again at once."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is not None:
        subscriber.confirm_sent_at = None
        session.add(subscriber)


class Confirmed(StrEnum):
    ACTIVATED = "activated"
    ALREADY = "already"
    REFUSED = "refused"  # bounced or complained: this address is not mailed again
    STALE = "stale"  # the link predates a later unsubscribe, or the reader was erased


def confirm(
    session: Session, subscriber_id: int, *, issued_at: datetime, now: datetime
) -> Confirmed:
    # A link made before the reader last left cannot bring them back; only a newer one can.
    # The condition is part of the UPDATE, so a bounce, complaint or unsubscribe landing at the
    # same moment is never overwritten.
    activated = subscribers.move(
        session,
        subscriber_id,
        to=SubscriberStatus.ACTIVE,
        only_from=MAY_CONFIRM,
        also=or_(
            col(Subscriber.unsubscribed_at).is_(None),
            col(Subscriber.unsubscribed_at) < issued_at,
        ),
        confirmed_at=now,
    )
    if activated:
        session.add(
            Event(
                kind=EventKind.CONFIRM,
                subscriber_id=subscriber_id,
                at=now,
                detail="confirmed by the reader",
            )
        )
        return Confirmed.ACTIVATED
    status = status_of(session, subscriber_id)
    if status == SubscriberStatus.ACTIVE:
        return Confirmed.ALREADY
    if status in SUPPRESSED:
        return Confirmed.REFUSED
    return Confirmed.STALE


def status_of(session: Session, subscriber_id: int) -> SubscriberStatus | None:
    subscriber = session.get(Subscriber, subscriber_id)
    return subscriber.status if subscriber else None


def confirmation_message(
    due: ConfirmationDue, settings: Settings, signing_key: bytes
) -> OutgoingMessage:
    token = tracking.confirm_token(
        signing_key, subscriber_id=due.subscriber_id, issued_at=due.issued_at
    )
    rendered = render_confirmation(
        email=due.email,
        confirm_url=f"{settings.public_base_url}/confirm/{token}",
        footer=footer_of(settings),
    )
    domain = settings.from_address.rsplit("@", 1)[-1].rstrip(">").strip() or "localhost"
    tag = f"confirm-s{due.subscriber_id}-t{int(due.issued_at.timestamp())}"
    return OutgoingMessage(
        from_address=settings.from_address,
        to_address=due.email,
        to_name=due.name,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        message_id=f"<{tag}@{domain}>",
        tag=tag,
        headers={"Auto-Submitted": "auto-generated"},
    )


def send_confirmation(
    engine: Engine, transport: Transport, due: ConfirmationDue, settings: Settings
) -> bool:
    """Send the mail, retrying a throttle briefly; if it cannot go, the reader may ask again."""
    message = confirmation_message(due, settings, settings.signing_key())
    for attempt in range(SEND_ATTEMPTS):
        (result,) = transport.send([message])
        if result.ok:
            return True
        log.warning(
            "confirmation mail for subscriber %s not sent (%s): %s",
            due.subscriber_id,
            result.failure,
            result.reason,
        )
        if result.failure != FailureKind.TRANSIENT or attempt == SEND_ATTEMPTS - 1:
            break
        time.sleep(RETRY_S * (attempt + 1))
    if result.failure != FailureKind.UNKNOWN:  # it may have gone: do not invite a second
        with session_scope(engine) as session:
            cancel_mail(session, due.subscriber_id)
    return False
