"""The public archive: every edition that went out, as a page without anyone's personal links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from emails.placeholders import Template
from worker.models import Comparison, Edition, EditionStatus

# Readers of these editions hold view-in-browser links, so the page must exist from the first send.
PUBLISHED = (EditionStatus.SENDING, EditionStatus.PAUSED, EditionStatus.SENT)


@dataclass(frozen=True)
class Entry:
    slug: str
    subject: str
    preheader: str
    sent_at: datetime


def _published(session: Session) -> list[tuple[Edition, str]]:
    rows = session.exec(
        select(Edition, Comparison.slug)
        .join(Comparison, col(Comparison.id) == col(Edition.comparison_id))
        .where(col(Edition.status).in_(PUBLISHED), col(Edition.started_at).is_not(None))
        .order_by(col(Edition.started_at).desc(), col(Edition.id).desc())
    )
    return [(edition, slug) for edition, slug in rows]


def entries(session: Session) -> list[Entry]:
    """Newest first, one entry per comparison (its latest edition)."""
    seen: set[str] = set()
    out = []
    for edition, slug in _published(session):
        if slug in seen:
            continue
        seen.add(slug)
        assert edition.started_at is not None
        out.append(Entry(slug, edition.subject, edition.preheader, edition.started_at))
    return out


def public_html(session: Session, slug: str) -> str | None:
    """The latest published edition of a comparison with tracking and personal links removed."""
    for edition, edition_slug in _published(session):
        if edition_slug == slug:
            return Template.compile(
                edition.html, edition.placeholder_key, escape_html=True
            ).public()
    return None
