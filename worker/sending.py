"""Sending an edition: hand out batches, send a batch, notice when the edition is done.

A batch is claimed in its own transaction before anything leaves, and each outcome is written
right after its send, so a crash between the two leaves rows `sending` (later `uncertain`),
never silently re-sent. The actors in worker.actors call these; nothing here knows the queue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy import Engine
from sqlmodel import Session

from emails.placeholders import Template
from worker import delivery, tracking
from worker.config import Settings
from worker.db import session_scope
from worker.models import Comparison, DeliveryState, Edition, EditionStatus, utcnow
from worker.ratelimit import RateLimiter
from worker.transports.base import FailureKind, OutgoingMessage, SendResult, Transport
from worker.transports.mime import EncodedBodies, EncodedTemplate

BATCH_SIZE = 50  # the SES v2 bulk limit; also bounds what a crash can leave uncertain
MAX_ATTEMPTS = 20  # throttling is normal at full speed: only a long run of failures gives up
RETRY_BASE_S = 0.5
RETRY_MAX_S = 30.0
STATUS_CHECK_S = 0.5
# Messages handed to the transport per call: small, so a batch renews its lease (and sees a
# pause) between calls even when each provider call is slow.
CHUNK_SIZE = 10


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
    base = settings.public_base_url
    unsubscribe_url = f"{base}/unsubscribe/{token}"
    delivery_id = recipient.delivery_id
    open_token = tracking.open_token(signing_key, delivery_id=delivery_id)
    values = {
        "unsubscribe_url": unsubscribe_url,
        "browser_url": mail.browser_url,
        "open_url": f"{base}/o/{open_token}.gif",
    }

    def track(url: str) -> str:
        return f"{base}/c/{tracking.click_token(signing_key, delivery_id=delivery_id, url=url)}"

    tag = f"e{mail.edition_id}-d{delivery_id}"
    return OutgoingMessage(
        from_address=mail.from_address,
        to_address=recipient.email,
        to_name=recipient.name,
        subject=mail.subject,
        html=mail.html.fill(values, track),
        text=mail.text.fill(values, track),
        encoded=EncodedBodies(
            text=mail.encoded_text.fill(values, track),
            html=mail.encoded_html.fill(values, track),
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
    retry: list[int] = field(default_factory=list)  # back to pending: send again after a delay
    retry_after_s: float = 0.0
    blocked_reason: str | None = None  # the provider refuses everything: the edition is paused
    stopped: bool = False  # the edition was no longer sending (paused or cancelled)


def start_send(engine: Engine, edition_id: int) -> list[list[int]]:
    """Approved (or resumed) edition → sending: a delivery per active subscriber, in batches.

    Safe to call again: rows are insert-or-ignore and only pending ones are returned, so a
    repeated or late call just hands out batches whose claims will come back empty.
    """
    with session_scope(engine) as session:
        moved = delivery.set_edition_status(
            session,
            edition_id,
            to=EditionStatus.SENDING,
            only_from=[EditionStatus.APPROVED, EditionStatus.SENDING],
        )
        if not moved:
            return []
        delivery.add_recipients(session, edition_id)
        ids = delivery.ids_in_state(session, edition_id, DeliveryState.PENDING)
    return [ids[i : i + BATCH_SIZE] for i in range(0, len(ids), BATCH_SIZE)]


def edition_status(engine: Engine, edition_id: int) -> EditionStatus | None:
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id)
        return edition.status if edition else None


def _sending_mail(engine: Engine, edition_id: int, settings: Settings) -> EditionMail | None:
    """The edition's shared mail parts, or None unless the edition is sending."""
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id)
        if edition is None or edition.status != EditionStatus.SENDING:
            return None
        comparison = session.get(Comparison, edition.comparison_id)
        assert comparison is not None
    return _cached_mail(edition, comparison.slug, settings)


_MAILS: dict[tuple[int, str], EditionMail] = {}


def _cached_mail(edition: Edition, slug: str, settings: Settings) -> EditionMail:
    """Compiling and encoding an edition takes milliseconds; a worker does it once per edition."""
    assert edition.id is not None
    key = (edition.id, edition.content_hash)
    if key not in _MAILS:
        if len(_MAILS) > 8:
            _MAILS.clear()
        _MAILS[key] = prepare_mail(edition, slug, settings)
    return _MAILS[key]


def send_batch(
    engine: Engine,
    edition_id: int,
    delivery_ids: Sequence[int],
    *,
    transport: Transport,
    settings: Settings,
    limiter: RateLimiter,
) -> BatchOutcome:
    """Claim these deliveries, send them under the rate limit, and record every outcome.

    Before each provider call it renews the lease on every row it still holds and, at least every
    STATUS_CHECK_S, looks at the edition's status, so a pause or cancel stops new sends within a
    second. Whatever it claimed but did not send goes back (pending, or skipped if cancelled),
    also when it is interrupted; a call interrupted mid-flight leaves its rows uncertain.
    """
    outcome = BatchOutcome()
    mail = _sending_mail(engine, edition_id, settings)
    if mail is None:
        outcome.stopped = True
        return outcome
    signing_key = settings.signing_key()  # before the claim: a failure here must claim nothing
    with session_scope(engine) as session:
        claimed = delivery.claim(session, edition_id, delivery_ids)
        inactive = [c.delivery_id for c in claimed if not c.active]
        outcome.skipped = delivery.mark_skipped(
            session, inactive, reason="subscriber no longer active"
        )
    waiting = [c for c in claimed if c.active]
    in_flight: list[delivery.Claimed] = []
    checked_at = renewed_at = time.monotonic()
    try:
        while waiting:
            granted = limiter.acquire(min(len(waiting), CHUNK_SIZE))
            if time.monotonic() - checked_at >= STATUS_CHECK_S:
                checked_at = time.monotonic()
                if edition_status(engine, edition_id) != EditionStatus.SENDING:
                    outcome.stopped = True
                    break
            if time.monotonic() - renewed_at >= settings.send_lease_s / 3:
                renewed_at = time.monotonic()
                with session_scope(engine) as session:
                    delivery.renew(session, [c.delivery_id for c in waiting])
            chunk = waiting[:granted]
            messages = [personalise(mail, c, settings, signing_key) for c in chunk]
            # Committed before the call: if this process dies from here on, the rows are
            # uncertain; before it, they were never handed over and go back to pending.
            with session_scope(engine) as session:
                delivery.hand_over(session, [c.delivery_id for c in chunk])
            in_flight, waiting = chunk, waiting[granted:]
            results = transport.send(messages)
            with session_scope(engine) as session:
                _record(session, edition_id, in_flight, results, outcome)
                in_flight = []
                if outcome.blocked_reason is not None:
                    delivery.set_edition_status(
                        session,
                        edition_id,
                        to=EditionStatus.PAUSED,
                        only_from=[EditionStatus.SENDING],
                        reason=outcome.blocked_reason,
                    )
                    break
    finally:
        _hand_back(engine, edition_id, waiting=waiting, interrupted=in_flight)
    return outcome


def _hand_back(
    engine: Engine,
    edition_id: int,
    *,
    waiting: list[delivery.Claimed],
    interrupted: list[delivery.Claimed],
) -> None:
    if not waiting and not interrupted:
        return
    with session_scope(engine) as session:
        delivery.release_or_skip(
            session,
            edition_id,
            [c.delivery_id for c in waiting],
            reason="edition stopped mid-batch",
        )
        for claimed in interrupted:  # the call may or may not have reached the provider
            delivery.mark_uncertain(session, claimed.delivery_id, reason="interrupted mid-send")


def _record(
    session: Session,
    edition_id: int,
    recipients: list[delivery.Claimed],
    results: list[SendResult],
    outcome: BatchOutcome,
) -> None:
    retry: list[int] = []
    reasons: dict[int, str] = {}
    for recipient, result in zip(recipients, results, strict=True):
        did = recipient.delivery_id
        if result.ok:
            outcome.sent += delivery.mark_sent(session, did, provider_id=result.provider_id)
        elif result.failure == FailureKind.PERMANENT:
            outcome.failed += delivery.mark_failed(session, did, reason=result.reason)
        elif result.failure == FailureKind.UNKNOWN:
            delivery.mark_uncertain(session, did, reason=result.reason)
        else:
            retry.append(did)
            reasons[did] = result.reason
            if result.failure == FailureKind.ACCOUNT:
                outcome.blocked_reason = result.reason
    if not retry:
        return
    # Transient failures go back to pending until MAX_ATTEMPTS; after an account block they wait
    # for the operator's resume without using up attempts.
    attempts = delivery.attempts_of(session, retry)
    exhausted = []
    if outcome.blocked_reason is None:
        exhausted = [did for did in retry if attempts[did] >= MAX_ATTEMPTS]
    for did in exhausted:
        outcome.failed += delivery.mark_failed(
            session, did, reason=f"gave up after {MAX_ATTEMPTS} attempts: {reasons[did]}"
        )
    again = [did for did in retry if did not in exhausted]
    if again and delivery.lock_edition(session, edition_id) == EditionStatus.CANCELLED:
        delivery.mark_skipped(session, again, reason="edition cancelled")
        again = []
    for did in again:
        delivery.release(session, [did], reason=reasons[did])
    if outcome.blocked_reason is None and again:
        outcome.retry += again
        tries = max(attempts[did] for did in again)
        backoff_s = min(RETRY_BASE_S * 2 ** max(tries - 1, 0), RETRY_MAX_S)
        outcome.retry_after_s = max(outcome.retry_after_s, backoff_s)


def finish_if_done(engine: Engine, edition_id: int) -> bool:
    """Sending → sent once nothing is pending or in flight (uncertain rows await the operator)."""
    with session_scope(engine) as session:
        if delivery.lock_edition(session, edition_id) != EditionStatus.SENDING:
            return False
        counts = delivery.counts(session, edition_id)
        if counts[DeliveryState.PENDING] or counts[DeliveryState.SENDING]:
            return False
        return delivery.set_edition_status(
            session, edition_id, to=EditionStatus.SENT, only_from=[EditionStatus.SENDING]
        )


def is_sending(engine: Engine, edition_id: int) -> bool:
    return edition_status(engine, edition_id) == EditionStatus.SENDING


def stalled(engine: Engine, edition_id: int, *, lease_s: int) -> bool:
    """A sending edition with pending deliveries and no claim for a whole lease."""
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id)
        if edition is None or edition.status != EditionStatus.SENDING:
            return False
        if not delivery.counts(session, edition_id)[DeliveryState.PENDING]:
            return False
        last = delivery.last_claim(session, edition_id) or edition.started_at
    return last is None or last < utcnow() - timedelta(seconds=lease_s)


def reconcile(engine: Engine, edition_id: int, *, lease_s: int) -> int:
    """Deliveries stuck `sending` past their lease become `uncertain`; returns how many."""
    with session_scope(engine) as session:
        expired = delivery.expire_leases(session, edition_id, lease_s=lease_s)
    finish_if_done(engine, edition_id)
    return expired
