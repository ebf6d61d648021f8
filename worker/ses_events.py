"""SES events (from a verified SNS notification) applied to the database.

A permanent bounce or a complaint stops mail to that address; bounces, complaints, deliveries,
opens and clicks become events, each recorded once however often SNS repeats the notification.
Both SES shapes are read: event publishing (`eventType`) and identity notifications
(`notificationType`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from worker import delivery, subscribers
from worker.db import upsert_dialect
from worker.models import (
    Delivery,
    DeliveryState,
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

log = logging.getLogger(__name__)

DELIVERY_HEADER = "x-verdicts-delivery"  # set on every message we send: "e{edition}-d{delivery}"
_TAG = re.compile(r"e(\d{1,18})-d(\d{1,18})")
MAX_DETAIL_CHARS = 1000
MAX_AGENT_CHARS = 500
MAX_URL_CHARS = 2000
MAX_EVENT_ID_CHARS = 255  # Event.provider_event_id is a VARCHAR(255)


@dataclass
class Applied:
    """What one notification did, for the log and the tests."""

    event_type: str
    recorded: int = 0  # new events
    repeated: int = 0  # events already recorded: SNS delivered the same message again
    unknown: int = 0  # recipients that are neither a subscriber nor one of our deliveries
    suppressed: int = 0  # addresses this notification moved to bounced or complained
    ignored: str = ""  # why nothing was done, when nothing was


@dataclass(frozen=True)
class _Report:
    """One recipient's part of an SES event."""

    kind: EventKind
    address: str
    at: datetime
    detail: str
    url: str | None = None
    user_agent: str | None = None
    suppress: SubscriberStatus | None = None


def apply_notification(
    session: Session, message: str, *, notification_id: str, now: datetime | None = None
) -> Applied:
    """Apply the SES event in an SNS `Message`. Event types we do not act on are ignored.

    `notification_id` is the SNS MessageId: SNS keeps it on every retry, so it (with the
    recipient) names the event and a repeat records nothing and changes nothing.
    """
    try:
        payload = json.loads(message)
    except (ValueError, RecursionError):
        return Applied(event_type="", ignored="the SNS Message is not JSON")
    if not isinstance(payload, dict):
        return Applied(event_type="", ignored="the SNS Message is not a JSON object")
    event_type = payload.get("eventType") or payload.get("notificationType")
    if not isinstance(event_type, str):
        return Applied(event_type="", ignored="the SNS Message is not an SES event")
    read = _READERS.get(event_type)
    if read is None:
        return Applied(event_type=event_type, ignored=f"{event_type[:40]} events are not recorded")
    mail = _object(payload, "mail")
    applied = Applied(event_type=event_type)
    for report in read(payload, mail, now or utcnow()):
        event_id = _event_id(notification_id, report.address)
        _apply(session, report, mail=mail, event_id=event_id, applied=applied)
    return applied


def _apply(
    session: Session, report: _Report, *, mail: dict[str, Any], event_id: str, applied: Applied
) -> None:
    sent, subscriber = _addressee(session, mail, report.address)
    if subscriber is None:
        applied.unknown += 1
        return
    assert subscriber.id is not None
    recorded = _record_once(
        session,
        kind=report.kind.value,
        at=report.at,
        subscriber_id=subscriber.id,
        delivery_id=sent.id if sent else None,
        edition_id=sent.edition_id if sent else None,
        url=report.url[:MAX_URL_CHARS] if report.url else None,
        user_agent=report.user_agent[:MAX_AGENT_CHARS] if report.user_agent else None,
        machine=False,
        detail=report.detail[:MAX_DETAIL_CHARS],
        provider_event_id=event_id,
    )
    if not recorded:
        applied.repeated += 1
        return
    applied.recorded += 1
    if report.suppress is not None:
        applied.suppressed += _suppress(session, subscriber.id, report.suppress, at=report.at)
    if sent is not None:
        assert sent.id is not None
        # Any SES event about the message proves SES accepted it, so "did it leave?" is answered.
        if sent.state == DeliveryState.UNCERTAIN:
            delivery.resolve_uncertain(
                session, [sent.id], resend=False, reason="SES reported the message as accepted"
            )
        message_id = _text(mail, "messageId")
        if message_id and sent.provider_message_id is None:
            _remember_message_id(session, sent.id, message_id)


def _addressee(
    session: Session, mail: dict[str, Any], address: str
) -> tuple[Delivery | None, Subscriber | None]:
    """Our delivery of this mail to `address` (if we can tell), and the subscriber at `address`.

    A delivery is only linked when its subscriber's address is the recipient's, so neither a
    stale message id nor a header naming someone else's delivery can move another reader's row.
    """
    found = _by_message_id(session, mail) or _by_header(session, mail)
    if found is not None:
        owner = session.get(Subscriber, found.subscriber_id)
        if owner is not None and owner.email == address:
            return found, owner
    return None, subscribers.find(session, address)


def _by_message_id(session: Session, mail: dict[str, Any]) -> Delivery | None:
    message_id = _text(mail, "messageId")
    if not message_id:
        return None
    statement = select(Delivery).where(Delivery.provider_message_id == message_id)
    return session.exec(statement).first()


def _by_header(session: Session, mail: dict[str, Any]) -> Delivery | None:
    """The delivery our X-Verdicts-Delivery header names (SES includes headers if asked to)."""
    for header in _objects(mail, "headers"):
        if (_text(header, "name") or "").lower() != DELIVERY_HEADER:
            continue
        tag = _TAG.fullmatch((_text(header, "value") or "").strip())
        if tag is None:
            return None
        found = session.get(Delivery, int(tag[2]))
        return found if found is not None and found.edition_id == int(tag[1]) else None
    return None


def _record_once(session: Session, **values: object) -> bool:
    """Insert the event unless one with its provider_event_id exists: True if it was new.

    INSERT … ON CONFLICT DO NOTHING rather than catching IntegrityError: on PostgreSQL a
    concurrent duplicate waits for the first transaction and then inserts nothing, and no
    savepoint is needed (pysqlite handles SAVEPOINT outside an explicit BEGIN badly).
    """
    insert = upsert_dialect(session)
    statement = (
        insert(Event)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider_event_id"])
        .returning(col(Event.id))
    )
    return session.execute(statement).first() is not None


def _suppress(session: Session, subscriber_id: int, to: SubscriberStatus, *, at: datetime) -> int:
    """Active (or unsubscribed) → bounced or complained; a complaint is never downgraded."""
    if to == SubscriberStatus.BOUNCED:
        stronger = [SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED]
        values: dict[str, object] = {"status": to, "bounced_at": at}
    else:
        stronger = [SubscriberStatus.COMPLAINED]
        values = {"status": to, "complained_at": at}
    statement = (
        update(Subscriber)
        .where(col(Subscriber.id) == subscriber_id)
        .where(col(Subscriber.status).not_in(stronger))
        .values(**values)
    )
    moved: int = session.execute(statement).rowcount or 0  # type: ignore[attr-defined]
    if moved:
        log.info("subscriber %s is now %s", subscriber_id, to)
    return moved


def _remember_message_id(session: Session, delivery_id: int, message_id: str) -> None:
    """A delivery found through its header (an uncertain send) learns its SES message id."""
    session.execute(
        update(Delivery)
        .where(col(Delivery.id) == delivery_id)
        .where(col(Delivery.provider_message_id).is_(None))
        .values(provider_message_id=message_id[:255])
    )


def _event_id(notification_id: str, address: str) -> str:
    event_id = f"sns:{notification_id}:{address}"
    if len(event_id) <= MAX_EVENT_ID_CHARS:
        return event_id
    digest = hashlib.sha256(f"{notification_id}:{address}".encode()).hexdigest()
    return f"sns:sha256:{digest}"


# Readers: an SES event → one report per recipient it concerns.


def _bounces(payload: dict[str, Any], mail: dict[str, Any], now: datetime) -> list[_Report]:
    bounce = _object(payload, "bounce")
    bounce_type = _text(bounce, "bounceType") or "Undetermined"
    sub_type = _text(bounce, "bounceSubType") or "unspecified"
    permanent = bounce_type == "Permanent"
    reports = []
    for recipient in _objects(bounce, "bouncedRecipients"):
        address = _address(_text(recipient, "emailAddress"))
        if not address:
            continue
        diagnostic = (
            _text(recipient, "diagnosticCode") or _text(recipient, "status") or "no diagnostic"
        )
        if permanent:
            detail = f"permanent bounce ({sub_type}): {diagnostic}"
        else:
            detail = f"transient bounce ({bounce_type}/{sub_type}), address kept: {diagnostic}"
        reports.append(
            _Report(
                kind=EventKind.BOUNCE,
                address=address,
                at=_when(bounce, now),
                detail=detail,
                suppress=SubscriberStatus.BOUNCED if permanent else None,
            )
        )
    return reports


def _complaints(payload: dict[str, Any], mail: dict[str, Any], now: datetime) -> list[_Report]:
    complaint = _object(payload, "complaint")
    feedback = _text(complaint, "complaintFeedbackType") or "no feedback type"
    return [
        _Report(
            kind=EventKind.COMPLAINT,
            address=address,
            at=_when(complaint, now),
            detail=f"complaint ({feedback})",
            suppress=SubscriberStatus.COMPLAINED,
        )
        for recipient in _objects(complaint, "complainedRecipients")
        if (address := _address(_text(recipient, "emailAddress")))
    ]


def _deliveries(payload: dict[str, Any], mail: dict[str, Any], now: datetime) -> list[_Report]:
    delivered = _object(payload, "delivery")
    response = _text(delivered, "smtpResponse")
    detail = f"delivered: {response}" if response else "delivered"
    recipients = delivered.get("recipients")
    return [
        _Report(kind=EventKind.DELIVERY, address=address, at=_when(delivered, now), detail=detail)
        for raw in (recipients if isinstance(recipients, list) else [])
        if isinstance(raw, str) and (address := _address(raw))
    ]


def _opens(payload: dict[str, Any], mail: dict[str, Any], now: datetime) -> list[_Report]:
    return _engagement(EventKind.OPEN, _object(payload, "open"), mail, now)


def _clicks(payload: dict[str, Any], mail: dict[str, Any], now: datetime) -> list[_Report]:
    return _engagement(EventKind.CLICK, _object(payload, "click"), mail, now)


def _engagement(
    kind: EventKind, event: dict[str, Any], mail: dict[str, Any], now: datetime
) -> list[_Report]:
    """An open or click names no recipient: it is the mail's, and ours each have exactly one."""
    destination = mail.get("destination")
    if not isinstance(destination, list) or len(destination) != 1:
        return []
    address = _address(destination[0] if isinstance(destination[0], str) else None)
    if not address:
        return []
    return [
        _Report(
            kind=kind,
            address=address,
            at=_when(event, now),
            detail="from SES",
            url=_text(event, "link") if kind == EventKind.CLICK else None,
            user_agent=_text(event, "userAgent"),
        )
    ]


_Reader = Callable[[dict[str, Any], dict[str, Any], datetime], list[_Report]]
_READERS: dict[str, _Reader] = {
    "Bounce": _bounces,
    "Complaint": _complaints,
    "Delivery": _deliveries,
    "Open": _opens,
    "Click": _clicks,
}


# The SES JSON is authentic but its shape is not ours to trust: every read tolerates a wrong type.


def _object(parent: dict[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _objects(parent: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = parent.get(name)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _text(parent: dict[str, Any], name: str) -> str | None:
    value = parent.get(name)
    return value if isinstance(value, str) and value else None


def _address(raw: str | None) -> str:
    """The bare address, lower-cased as subscribers are stored ("" if there is none)."""
    return parseaddr(raw or "")[1].strip().lower()


def _when(event: dict[str, Any], now: datetime) -> datetime:
    """The event's own timestamp when it has a usable one, else when we heard of it."""
    try:
        stamp = datetime.fromisoformat(_text(event, "timestamp") or "")
    except ValueError:
        return now
    return stamp if stamp.tzinfo is not None else now
