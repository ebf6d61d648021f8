"""Send an edition's pending deliveries through a transport, a batch at a time.

Each batch is claimed in its own transaction before anything leaves, and its outcome is written
in another right after, so a crash between the two leaves rows `sending` (later `uncertain`),
never silently re-sent. This is the work the `send_batch` actor will do once per message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy import Engine
from sqlmodel import Session

from emails.placeholders import Template
from worker import delivery, tracking
from worker.config import Settings
from worker.db import session_scope
from worker.models import Comparison, DeliveryState, Edition, EditionStatus
from worker.transports.base import FailureKind, OutgoingMessage, SendResult, Transport
from worker.transports.mime import EncodedBodies, EncodedTemplate

BATCH_SIZE = 50  # the SES v2 bulk limit; also bounds what a crash can leave uncertain
MAX_ATTEMPTS = 5
BACKOFF_S = (0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class EditionMail:
    """What every message of an edition shares, prepared once per send."""

    edition_id: int
    from_address: str
    subject: str
    html: Template
    text: Template
    encoded_html: EncodedTemplate
    encoded_text: EncodedTemplate
    browser_url: str
    message_domain: str
    key: str


def prepare_mail(edition: Edition, comparison_slug: str, settings: Settings) -> EditionMail:
    assert edition.id is not None
    html = Template.compile(edition.html, edition.placeholder_key, escape_html=True)
    text = Template.compile(edition.text, edition.placeholder_key, escape_html=False)
    return EditionMail(
        edition_id=edition.id,
        from_address=settings.from_address,
        subject=edition.subject,
        html=html,
        text=text,
        encoded_html=EncodedTemplate.of(html),
        encoded_text=EncodedTemplate.of(text),
        browser_url=f"{settings.public_base_url}/archive/{quote(comparison_slug)}",
        message_domain=settings.from_address.rsplit("@", 1)[-1].rstrip(">").strip() or "localhost",
        key=edition.placeholder_key,
    )


def personalise(
    mail: EditionMail, recipient: delivery.Claimed, settings: Settings, signing_key: bytes
) -> OutgoingMessage:
    token = tracking.unsubscribe_token(
        signing_key, subscriber_id=recipient.subscriber_id, delivery_id=recipient.delivery_id
    )
    unsubscribe_url = f"{settings.public_base_url}/unsubscribe/{token}"
    values = {"unsubscribe_url": unsubscribe_url, "browser_url": mail.browser_url}
    tag = f"e{mail.edition_id}-d{recipient.delivery_id}"
    return OutgoingMessage(
        from_address=mail.from_address,
        to_address=recipient.email,
        to_name=recipient.name,
        subject=mail.subject,
        html=mail.html.fill(values),
        text=mail.text.fill(values),
        encoded=EncodedBodies(
            text=mail.encoded_text.fill(values), html=mail.encoded_html.fill(values)
        ),
        message_id=f"<{tag}.{mail.key}@{mail.message_domain}>",
        tag=tag,
        headers={
            "List-Unsubscribe": (
                f"<{unsubscribe_url}>, <mailto:{settings.unsubscribe_mailto}"
                f"?subject=unsubscribe%20{token}>"
            ),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Verdicts-Delivery": tag,
        },
    )


@dataclass
class BatchOutcome:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    blocked_reason: str | None = None

    @property
    def handled(self) -> int:
        return self.sent + self.failed + self.skipped + self.deferred


def send_one_batch(
    engine: Engine,
    mail: EditionMail,
    transport: Transport,
    settings: Settings,
    *,
    limit: int = BATCH_SIZE,
) -> BatchOutcome | None:
    """Claim, send and record one batch; None when nothing is left to claim."""
    with session_scope(engine) as session:
        claimed = delivery.claim(session, mail.edition_id, limit=limit)
    if not claimed:
        return None
    outcome = BatchOutcome()
    inactive = [c.delivery_id for c in claimed if not c.active]
    recipients = [c for c in claimed if c.active]
    signing_key = settings.signing_key()
    messages = [personalise(mail, c, settings, signing_key) for c in recipients]
    results = transport.send(messages) if messages else []
    with session_scope(engine) as session:
        outcome.skipped = delivery.mark_skipped(
            session, inactive, reason="subscriber no longer active"
        )
        _record(session, recipients, results, outcome)
    return outcome


def _record(
    session: Session,
    recipients: list[delivery.Claimed],
    results: list[SendResult],
    outcome: BatchOutcome,
) -> None:
    retry: list[int] = []
    for recipient, result in zip(recipients, results, strict=True):
        if result.ok:
            outcome.sent += delivery.mark_sent(
                session, recipient.delivery_id, provider_id=result.provider_id
            )
        elif result.failure == FailureKind.PERMANENT:
            outcome.failed += delivery.mark_failed(
                session, recipient.delivery_id, reason=result.reason
            )
        else:
            retry.append(recipient.delivery_id)
            if result.failure == FailureKind.ACCOUNT:
                outcome.blocked_reason = result.reason
    if not retry:
        return
    # Transient failures go back to pending until MAX_ATTEMPTS; an account block pauses the edition.
    exhausted = []
    if outcome.blocked_reason is None:
        attempts = delivery.attempts_of(session, retry)
        exhausted = [did for did in retry if attempts[did] >= MAX_ATTEMPTS]
    last_reason = next((r.reason for r in results if not r.ok), "")
    for did in exhausted:
        outcome.failed += delivery.mark_failed(
            session, did, reason=f"gave up after {MAX_ATTEMPTS} attempts: {last_reason}"
        )
    outcome.deferred += delivery.release(
        session, [did for did in retry if did not in exhausted], reason=last_reason
    )


@dataclass
class SendSummary:
    counts: dict[DeliveryState, int]
    newly_uncertain: int
    paused_reason: str | None


ProgressFn = Callable[[dict[DeliveryState, int]], None]


def send_edition(
    engine: Engine,
    edition: Edition,
    comparison: Comparison,
    transport: Transport,
    settings: Settings,
    *,
    progress: ProgressFn | None = None,
) -> SendSummary:
    """Send every pending delivery of an approved edition, in-process, until none is left."""
    assert edition.id is not None
    mail = prepare_mail(edition, comparison.slug, settings)
    with session_scope(engine) as session:
        uncertain = delivery.expire_leases(session, edition.id, lease_s=settings.send_lease_s)
        delivery.set_edition_status(
            session,
            edition.id,
            to=EditionStatus.SENDING,
            only_from=[EditionStatus.APPROVED, EditionStatus.SENDING],
        )
        delivery.add_recipients(session, edition.id)
    failures_in_a_row = 0
    paused_reason = None
    while True:
        outcome = send_one_batch(engine, mail, transport, settings)
        if outcome is None:
            break
        if progress:
            with session_scope(engine) as session:
                progress(delivery.counts(session, edition.id))
        if outcome.blocked_reason:
            paused_reason = outcome.blocked_reason
            with session_scope(engine) as session:
                delivery.set_edition_status(
                    session,
                    edition.id,
                    to=EditionStatus.PAUSED,
                    only_from=[EditionStatus.SENDING],
                    reason=paused_reason,
                )
            break
        if outcome.deferred and not outcome.sent:
            time.sleep(BACKOFF_S[min(failures_in_a_row, len(BACKOFF_S) - 1)])
            failures_in_a_row += 1
        else:
            failures_in_a_row = 0
    with session_scope(engine) as session:
        final = delivery.counts(session, edition.id)
        if (
            paused_reason is None
            and final[DeliveryState.PENDING] == final[DeliveryState.SENDING] == 0
        ):
            delivery.set_edition_status(
                session, edition.id, to=EditionStatus.SENT, only_from=[EditionStatus.SENDING]
            )
    return SendSummary(counts=final, newly_uncertain=uncertain, paused_reason=paused_reason)
