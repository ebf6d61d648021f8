"""Subscribers: validated, normalised addresses; adding, CSV import, listing, removing."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, delete, func, update
from sqlmodel import Session, col, select

from worker.errors import InputError, NotFoundError
from worker.models import Delivery, Event, EventKind, Subscriber, SubscriberStatus, utcnow

MAX_NAME_CHARS = 200


def normalise_email(raw: str) -> str:
    """Trimmed, validated and lower-cased; InputError says what is wrong."""
    candidate = raw.strip()
    if not candidate:
        raise InputError("email is empty")
    try:
        # SMTPUTF8 addresses are refused: not every hop of the delivery path carries them.
        checked = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise InputError(f"email {candidate!r} is not valid: {error}") from None
    return checked.normalized.lower()


def clean_name(raw: str | None) -> str:
    name = " ".join((raw or "").split())  # also removes CR/LF: a name goes into the To header
    # Control characters (NUL is refused by PostgreSQL) and lone surrogates (not encodable).
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in name):
        raise InputError("name contains control characters")
    if len(name) > MAX_NAME_CHARS:
        raise InputError(f"name is longer than {MAX_NAME_CHARS} characters")
    return name


def find(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def add(session: Session, raw_email: str, *, name: str | None, source: str) -> Subscriber:
    """Add an active subscriber. An address that left or bounced is never silently re-activated."""
    email = normalise_email(raw_email)
    existing = find(session, email)
    if existing is not None:
        if existing.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
            raise InputError(f"{email} is already subscribed ({existing.status})")
        raise InputError(
            f"{email} is {existing.status} and stays that way: only the reader can subscribe again"
        )
    now = utcnow()
    subscriber = Subscriber(
        email=email,
        name=clean_name(name),
        status=SubscriberStatus.ACTIVE,
        source=source,
        created_at=now,
        confirmed_at=now,
    )
    session.add(subscriber)
    session.flush()
    return subscriber


@dataclass
class ImportReport:
    added: int = 0
    duplicates: int = 0
    kept_inactive: list[str] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)


def _rows(text: str) -> Iterable[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        yield reader.line_num, row


def import_csv(session: Session, path: Path) -> ImportReport:
    """Rows of email,name (header row allowed). Bad rows are reported; the rest go in at once."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None
    return import_text(session, text, source=path.name)


def import_text(session: Session, text: str, *, source: str) -> ImportReport:
    """import_csv for text already read (an upload): the same rules, the same report."""
    report = ImportReport()
    seen: set[str] = set()
    now = utcnow()
    for line, row in _rows(text):
        if not row or all(not cell.strip() for cell in row):
            continue
        if line == 1 and row[0].strip().lower() == "email":
            continue
        if len(row) > 2:
            report.bad_rows.append(f"line {line}: expected email,name but got {len(row)} columns")
            continue
        try:
            email = normalise_email(row[0])
            name = clean_name(row[1] if len(row) > 1 else "")
        except InputError as error:
            report.bad_rows.append(f"line {line}: {error}")
            continue
        if email in seen:
            report.duplicates += 1
            continue
        seen.add(email)
        existing = find(session, email)
        if existing is not None:
            if existing.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
                report.duplicates += 1
            else:
                report.kept_inactive.append(f"line {line}: {email} stays {existing.status}")
            continue
        session.add(
            Subscriber(
                email=email,
                name=name,
                status=SubscriberStatus.ACTIVE,
                source=f"import:{source}",
                created_at=now,
                confirmed_at=now,
            )
        )
        report.added += 1
    session.flush()
    return report


def list_subscribers(session: Session, status: SubscriberStatus | None) -> list[Subscriber]:
    statement = select(Subscriber).order_by(col(Subscriber.id))
    if status is not None:
        statement = statement.where(Subscriber.status == status)
    return list(session.exec(statement))


def search(
    session: Session, *, text: str, status: SubscriberStatus | None, limit: int, offset: int
) -> list[Subscriber]:
    """Subscribers whose address or name contains `text`, by id, one page at a time."""
    statement = select(Subscriber).order_by(col(Subscriber.id)).limit(limit).offset(offset)
    if status is not None:
        statement = statement.where(Subscriber.status == status)
    if text.strip():
        pattern = f"%{text.strip().lower()}%"
        statement = statement.where(
            col(Subscriber.email).like(pattern) | func.lower(col(Subscriber.name)).like(pattern)
        )
    return list(session.exec(statement))


def export_rows(session: Session) -> Iterable[tuple[str, str, str, str]]:
    """email, name, status, created (ISO) for every subscriber, streamed in id order."""
    rows = session.exec(
        select(Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.created_at)
        .order_by(col(Subscriber.id))
        .execution_options(yield_per=1000)
    )
    for email, name, status, created in rows:
        yield email, name, str(status), created.isoformat()


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.exec(select(Subscriber.status, func.count()).group_by(Subscriber.status))
    return {status: count for status, count in rows}


def unsubscribe(session: Session, raw_email: str) -> Subscriber:
    """Stop mailing an address; the row stays, so an import can never bring it back."""
    email = normalise_email(raw_email)
    subscriber = find(session, email)
    if subscriber is None:
        raise NotFoundError(f"{email} is not a subscriber")
    assert subscriber.id is not None
    # A bounced or complained address keeps that status: "unsubscribed" would let it back in.
    move(
        session,
        subscriber.id,
        to=SubscriberStatus.UNSUBSCRIBED,
        only_from=(SubscriberStatus.ACTIVE, SubscriberStatus.PENDING),
        unsubscribed_at=utcnow(),
    )
    return subscriber


def move(
    session: Session,
    subscriber_id: int,
    *,
    to: SubscriberStatus,
    only_from: Sequence[SubscriberStatus],
    also: ColumnElement[bool] | None = None,
    **stamps: datetime,
) -> bool:
    """One status change as a conditional UPDATE: True if this call made it.

    Read-then-write would let a bounce or complaint landing in between be overwritten (a
    "report spam and unsubscribe" click sends both at once); the condition makes the later
    writer lose cleanly instead.
    """
    statement = (
        update(Subscriber)
        .where(col(Subscriber.id) == subscriber_id)
        .where(col(Subscriber.status).in_(only_from))
    )
    if also is not None:
        statement = statement.where(also)
    result = session.execute(
        statement.values(status=to, **stamps).execution_options(synchronize_session="fetch")
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def unsubscribe_by_link(session: Session, subscriber_id: int, delivery_id: int | None) -> bool:
    """A reader's own unsubscribe (link or one-click): True if this call changed anything.

    Repeating it is harmless; a bounced or complained address keeps that stronger status.
    """
    now = utcnow()
    if not move(
        session,
        subscriber_id,
        to=SubscriberStatus.UNSUBSCRIBED,
        only_from=(SubscriberStatus.ACTIVE, SubscriberStatus.PENDING),
        unsubscribed_at=now,
    ):
        return False
    sent = session.get(Delivery, delivery_id) if delivery_id else None
    if sent is not None and sent.subscriber_id != subscriber_id:
        sent = None  # the token names another reader's delivery: keep the event unlinked
    session.add(
        Event(
            kind=EventKind.UNSUBSCRIBE,
            subscriber_id=subscriber_id,
            delivery_id=sent.id if sent else None,
            edition_id=sent.edition_id if sent else None,
            at=now,
            detail="unsubscribed by the reader",
        )
    )
    return True


def forget(session: Session, raw_email: str) -> None:
    """Erase an address and everything recorded about it (a data-deletion request)."""
    email = normalise_email(raw_email)
    subscriber = find(session, email)
    if subscriber is None:
        raise NotFoundError(f"{email} is not a subscriber")
    deliveries = select(Delivery.id).where(Delivery.subscriber_id == subscriber.id)
    session.execute(delete(Event).where(col(Event.delivery_id).in_(deliveries)))
    session.execute(delete(Event).where(col(Event.subscriber_id) == subscriber.id))
    session.execute(delete(Delivery).where(col(Delivery.subscriber_id) == subscriber.id))
    session.delete(subscriber)
