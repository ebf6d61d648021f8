"""What an editor sees before approving: the email as a reader gets it (sample personal links),
its links, a re-titled draft, and test sends that never touch the delivery books."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col

from emails.placeholders import Template, new_key
from emails.render import one_line, render_weekly
from worker import comparisons
from worker.config import Settings
from worker.editions import content_hash, footer_of, sample_values
from worker.errors import InputError, NotFoundError
from worker.models import Comparison, Edition, EditionStatus
from worker.subscribers import normalise_email
from worker.transports.base import OutgoingMessage

MAX_TEST_RECIPIENTS = 10
MAX_SUBJECT_CHARS = 200
_HREF = re.compile(r'href="([^"]*)"')


@dataclass(frozen=True)
class Copy:
    subject: str
    preheader: str
    html: str
    text: str
    links: list[str]


def _copy(
    subject: str, preheader: str, html_body: str, text_body: str, key: str, base: str, slug: str
) -> Copy:
    values = sample_values(base, slug)
    page = Template.compile(html_body, key, escape_html=True).fill(values)
    text = Template.compile(text_body, key, escape_html=False).fill(values)
    links = list(dict.fromkeys(html.unescape(href) for href in _HREF.findall(page)))
    return Copy(subject, preheader, page, text, links)


def of_edition(session: Session, edition_id: int, settings: Settings) -> tuple[Edition, Copy]:
    """The frozen edition as a reader will get it (links untracked, the pixel inline)."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFoundError(f"edition {edition_id} does not exist")
    row = session.get(Comparison, edition.comparison_id)
    slug = row.slug if row else ""
    return edition, _copy(
        edition.subject,
        edition.preheader,
        edition.html,
        edition.text,
        edition.placeholder_key,
        settings.public_base_url,
        slug,
    )


def of_comparison(row: Comparison, settings: Settings) -> Copy:
    """Any stored comparison, rendered now as it would go out."""
    key = new_key()
    rendered = render_weekly(comparisons.document_of(row), key=key, footer=footer_of(settings))
    return _copy(
        rendered.subject,
        rendered.preheader,
        rendered.html,
        rendered.text,
        key,
        settings.public_base_url,
        row.slug,
    )


def source_changed(session: Session, edition: Edition) -> bool:
    """Whether the comparison was re-imported with other content after this edition froze it."""
    row = session.get(Comparison, edition.comparison_id)
    return row is not None and row.content_hash != edition.source_hash


def retitle(
    session: Session, edition_id: int, *, subject: str, preheader: str, settings: Settings
) -> Edition:
    """A draft's subject and preheader changed: rendered again, its content hash with it."""
    subject, preheader = one_line(subject), one_line(preheader)
    if not subject:
        raise InputError("subject must not be empty")
    if len(subject) > MAX_SUBJECT_CHARS or len(preheader) > MAX_SUBJECT_CHARS:
        raise InputError(f"subject and preheader must be at most {MAX_SUBJECT_CHARS} characters")
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFoundError(f"edition {edition_id} does not exist")
    row = session.get(Comparison, edition.comparison_id)
    assert row is not None
    key = new_key()
    rendered = render_weekly(
        comparisons.document_of(row),
        key=key,
        footer=footer_of(settings),
        subject=subject,
        preheader=preheader,
    )
    changed = session.execute(
        update(Edition)
        .where(col(Edition.id) == edition_id)
        .where(col(Edition.status) == EditionStatus.DRAFT)  # approved content never changes
        .values(
            subject=rendered.subject,
            preheader=rendered.preheader,
            html=rendered.html,
            text=rendered.text,
            placeholder_key=key,
            content_hash=content_hash(rendered),
            source_hash=row.content_hash,
        )
        .execution_options(synchronize_session="fetch")
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        raise InputError(f"edition {edition_id} is {edition.status}: only a draft can be edited")
    session.refresh(edition)
    return edition


def test_messages(copy: Copy, raw_addresses: str, settings: Settings) -> list[OutgoingMessage]:
    """One "[TEST]" message per address; no delivery rows, so nothing counts in the stats."""
    addresses = [part for part in re.split(r"[\s,;]+", raw_addresses) if part]
    if not addresses:
        raise InputError("addresses: give at least one address")
    if len(addresses) > MAX_TEST_RECIPIENTS:
        raise InputError(f"addresses: at most {MAX_TEST_RECIPIENTS} per test send")
    emails = [normalise_email(address) for address in addresses]
    domain = settings.from_address.rsplit("@", 1)[-1].rstrip(">").strip() or "localhost"
    return [
        OutgoingMessage(
            from_address=settings.from_address,
            to_address=email,
            to_name="",
            subject=f"[TEST] {copy.subject}",
            html=copy.html,
            text=copy.text,
            message_id=f"<test-{number}-{new_key()}@{domain}>",
            tag=f"test-{new_key()}",
            headers={"X-Verdicts-Test": "yes"},
        )
        for number, email in enumerate(emails)
    ]
