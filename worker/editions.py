"""Editions: one per schedule and period, rendered once from a comparison and frozen."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from emails import placeholders
from emails.render import BLANK_PIXEL_URL, Footer, RenderedEmail, render_weekly
from worker import comparisons, journal
from worker.config import Settings
from worker.models import Comparison, Edition, EditionStatus, Schedule, utcnow
from worker.periods import Period

DEFAULT_SCHEDULE = "weekly"
DEFAULT_CRON = "0 9 * * MON"


def default_schedule(session: Session, settings: Settings) -> Schedule:
    """The schedule that `send-weekly` files its editions under, made on first use."""
    schedule = session.exec(select(Schedule).where(Schedule.name == DEFAULT_SCHEDULE)).first()
    if schedule is not None:
        return schedule
    schedule = Schedule(
        name=DEFAULT_SCHEDULE,
        cron=DEFAULT_CRON,
        timezone=settings.timezone,
        enabled=False,  # fired by hand (send-weekly) until the scheduler process runs it
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(schedule)
    except IntegrityError:  # another process made it first
        return session.exec(select(Schedule).where(Schedule.name == DEFAULT_SCHEDULE)).one()
    return schedule


def footer_of(settings: Settings) -> Footer:
    return Footer(postal_address=settings.postal_address, public_base_url=settings.public_base_url)


def render_comparison(row: Comparison, settings: Settings, key: str) -> RenderedEmail:
    return render_weekly(comparisons.document_of(row), key=key, footer=footer_of(settings))


def content_hash(rendered: RenderedEmail) -> str:
    digest = hashlib.sha256()
    for part in (rendered.subject, rendered.preheader, rendered.html, rendered.text):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def edition_of(
    rendered: RenderedEmail,
    *,
    key: str,
    comparison_id: int,
    schedule_id: int,
    period_key: str,
    source_hash: str,
    status: EditionStatus,
) -> Edition:
    """The (unsaved) edition row that freezes one render of a comparison."""
    return Edition(
        comparison_id=comparison_id,
        schedule_id=schedule_id,
        period_key=period_key,
        subject=rendered.subject,
        preheader=rendered.preheader,
        html=rendered.html,
        text=rendered.text,
        placeholder_key=key,
        content_hash=content_hash(rendered),
        source_hash=source_hash,
        status=status,
        created_at=utcnow(),
    )


@dataclass(frozen=True)
class Prepared:
    edition: Edition
    created: bool


def find(session: Session, schedule: Schedule, period_key: str) -> Edition | None:
    return session.exec(
        select(Edition)
        .where(Edition.schedule_id == schedule.id)
        .where(Edition.period_key == period_key)
    ).first()


def prepare(
    session: Session,
    *,
    schedule: Schedule,
    period: Period,
    comparison: Comparison,
    settings: Settings,
) -> Prepared:
    """Get or create the period's edition. The unique (schedule, period) key decides races."""
    existing = find(session, schedule, period.key)
    if existing is not None:
        return Prepared(edition=existing, created=False)
    key = placeholders.new_key()
    rendered = render_comparison(comparison, settings, key)
    assert schedule.id is not None and comparison.id is not None
    edition = edition_of(
        rendered,
        key=key,
        comparison_id=comparison.id,
        schedule_id=schedule.id,
        period_key=period.key,
        source_hash=comparison.content_hash,
        status=EditionStatus.DRAFT if schedule.require_approval else EditionStatus.APPROVED,
    )
    try:
        with session.begin_nested():
            session.add(edition)
    except IntegrityError:
        winner = find(session, schedule, period.key)
        assert winner is not None
        return Prepared(edition=winner, created=False)
    assert edition.id is not None
    journal.edition_changed(session, edition.id, from_state=None, to_state=edition.status)
    return Prepared(edition=edition, created=True)


def list_editions(session: Session) -> list[Edition]:
    return list(session.exec(select(Edition).order_by(col(Edition.id).desc())))


PREVIEW_FILES = ("email.html", "email.txt", "email.mjml", "subject.txt")


def sample_values(base_url: str, slug: str) -> dict[str, str]:
    """Personal values for a copy nobody receives (previews, tests): links stay untracked and
    the pixel is inline, so opening one records nothing."""
    return {
        "unsubscribe_url": f"{base_url}/unsubscribe/preview",
        "browser_url": f"{base_url}/archive/{slug}",
        "open_url": BLANK_PIXEL_URL,
    }


def write_preview(row: Comparison, settings: Settings, out_dir: Path) -> list[Path]:
    """The email as a reader would get it (sample personal links) written to out_dir."""
    key = placeholders.new_key()
    rendered = render_comparison(row, settings, key)
    values = sample_values(settings.public_base_url, row.slug)
    html = placeholders.Template.compile(rendered.html, key, escape_html=True).fill(values)
    text = placeholders.Template.compile(rendered.text, key, escape_html=False).fill(values)
    mjml = placeholders.Template.compile(rendered.mjml, key, escape_html=True).fill(values)
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = (html, text, mjml, rendered.subject + "\n")
    paths = []
    for name, content in zip(PREVIEW_FILES, contents, strict=True):
        path = out_dir / name
        path.write_text(content, encoding="utf-8")
        paths.append(path)
    return paths
