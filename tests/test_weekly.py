"""The weekly send: one edition per week, one message per active subscriber, nothing twice.

These run the real actors on the in-process broker, as `send-weekly` does with no REDIS_URL.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, update
from sqlmodel import select

from tests.helpers import (
    add_subscribers,
    edition_counts,
    example_payload,
    require_approval,
    send_week,
    store_payload,
)
from worker import control, db, delivery, runner, sending, subscribers, tracking, weekly
from worker.config import Settings
from worker.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    Event,
    EventKind,
    utcnow,
)
from worker.ratelimit import Unlimited
from worker.transports.base import FailureKind
from worker.transports.memory import MemoryTransport
from worker.weekly import Outcome

WEEK = "2026-W47"
READERS = ("ada@example.com", "grace@example.com", "linus@example.com")


def _setup(engine: Engine, *emails: str) -> None:
    store_payload(engine, example_payload())
    add_subscribers(engine, *emails)


def _edition(engine: Engine) -> Edition:
    with db.session_scope(engine) as session:
        return session.exec(select(Edition)).one()


def test_each_active_subscriber_gets_exactly_one_message(
    engine: Engine, settings: Settings
) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    result = send_week(engine, settings, transport)
    assert result.outcome == Outcome.READY
    assert sorted(m.to_address for m in transport.sent) == sorted(READERS)
    assert edition_counts(engine)[DeliveryState.SENT] == 3
    edition = _edition(engine)
    assert edition.status == EditionStatus.SENT and edition.finished_at is not None
    with db.session_scope(engine) as session:
        rows = session.exec(select(Delivery)).all()
    assert {row.provider_message_id for row in rows} == {"memory-1", "memory-2", "memory-3"}


def test_a_second_run_for_the_same_week_sends_nothing(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    again = send_week(engine, settings, transport)
    assert again.outcome == Outcome.ALREADY_SENT
    assert len(transport.sent) == 3
    with db.session_scope(engine) as session:
        assert len(session.exec(select(Edition)).all()) == 1


def test_a_week_without_a_comparison_sends_nothing_and_leaves_an_event(
    engine: Engine, settings: Settings
) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    result = send_week(engine, settings, transport, week="2026-W49")
    assert result.outcome == Outcome.NO_COMPARISON
    assert transport.sent == []
    with db.session_scope(engine) as session:
        events = session.exec(select(Event)).all()
    assert [e.kind for e in events] == [EventKind.NO_COMPARISON]
    assert "2026-W49" in events[0].detail


def test_dry_run_changes_nothing(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    result = send_week(engine, settings, transport, dry_run=True)
    assert result.outcome == Outcome.DRY_RUN and result.recipients == 3
    assert transport.sent == []
    with db.session_scope(engine) as session:
        assert session.exec(select(Edition)).all() == []


def test_inactive_subscribers_are_not_mailed(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    with db.session_scope(engine) as session:
        subscribers.unsubscribe(session, "grace@example.com")
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    assert sorted(m.to_address for m in transport.sent) == ["ada@example.com", "linus@example.com"]


def test_an_account_block_pauses_the_edition_and_resume_sends_the_rest_once(
    engine: Engine, settings: Settings
) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next("grace@example.com", FailureKind.ACCOUNT, "sending paused for the account")
    first = send_week(engine, settings, transport)
    assert first.outcome == Outcome.READY
    edition = _edition(engine)
    assert edition.status == EditionStatus.PAUSED
    assert "sending paused for the account" in edition.status_reason
    assert "grace@example.com" not in [m.to_address for m in transport.sent]
    assert edition_counts(engine)[DeliveryState.PENDING] >= 1  # handed back, not lost
    assert send_week(engine, settings, transport).outcome == Outcome.PAUSED  # stays paused
    control.resume(engine, edition.id or 0)
    runner.send_in_process(engine, edition.id or 0, lease_s=settings.send_lease_s, progress=None)
    assert sorted(m.to_address for m in transport.sent) == sorted(READERS)
    assert _edition(engine).status == EditionStatus.SENT


def test_unsubscribed_mid_send_is_skipped(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next("grace@example.com", FailureKind.ACCOUNT, "sending paused")
    send_week(engine, settings, transport)
    with db.session_scope(engine) as session:
        subscribers.unsubscribe(session, "grace@example.com")
    control.resume(engine, 1)
    runner.send_in_process(engine, 1, lease_s=settings.send_lease_s, progress=None)
    assert sorted(m.to_address for m in transport.sent) == ["ada@example.com", "linus@example.com"]
    counts = edition_counts(engine)
    assert counts[DeliveryState.SKIPPED] == 1 and counts[DeliveryState.SENT] == 2


def test_pause_before_sending_then_resume_sends_each_once(
    engine: Engine, settings: Settings
) -> None:
    _setup(engine, *[f"reader{i}@example.com" for i in range(120)])
    runtime_transport = MemoryTransport()
    prepared = weekly.prepare_week(engine, settings, week=WEEK)
    assert prepared.edition is not None and prepared.edition.id is not None
    edition_id = prepared.edition.id
    batches = sending.start_send(engine, edition_id)
    assert [len(b) for b in batches] == [50, 50, 20]
    first = sending.send_batch(
        engine,
        edition_id,
        batches[0],
        transport=runtime_transport,
        settings=settings,
        limiter=Unlimited(),
    )
    assert first.sent == 50
    control.pause(engine, edition_id)
    stopped = sending.send_batch(
        engine,
        edition_id,
        batches[1],
        transport=runtime_transport,
        settings=settings,
        limiter=Unlimited(),
    )
    assert stopped.stopped and len(runtime_transport.sent) == 50
    control.resume(engine, edition_id)
    send_week(engine, settings, runtime_transport)
    addresses = [m.to_address for m in runtime_transport.sent]
    assert len(addresses) == len(set(addresses)) == 120


def test_cancel_skips_what_was_not_sent(engine: Engine, settings: Settings) -> None:
    _setup(engine, *[f"reader{i}@example.com" for i in range(60)])
    prepared = weekly.prepare_week(engine, settings, week=WEEK)
    assert prepared.edition is not None and prepared.edition.id is not None
    batches = sending.start_send(engine, prepared.edition.id)
    transport = MemoryTransport()
    sending.send_batch(
        engine,
        prepared.edition.id,
        batches[0],
        transport=transport,
        settings=settings,
        limiter=Unlimited(),
    )
    _, skipped = control.cancel(engine, prepared.edition.id, lease_s=settings.send_lease_s)
    assert skipped == 10
    assert send_week(engine, settings, transport).outcome == Outcome.CANCELLED
    counts = edition_counts(engine)
    assert (counts[DeliveryState.SENT], counts[DeliveryState.SKIPPED]) == (50, 10)


def test_transient_failures_are_retried_until_sent(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next("ada@example.com", FailureKind.TRANSIENT, "throttled")
    transport.fail_next("ada@example.com", FailureKind.TRANSIENT, "throttled")
    send_week(engine, settings, transport)
    assert [m.to_address for m in transport.sent].count("ada@example.com") == 1
    assert edition_counts(engine)[DeliveryState.SENT] == 3
    assert control.report(engine, 1).retries == 2


def test_a_permanent_failure_fails_that_delivery_only(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next("linus@example.com", FailureKind.PERMANENT, "mailbox does not exist")
    send_week(engine, settings, transport)
    counts = edition_counts(engine)
    assert counts[DeliveryState.FAILED] == 1 and counts[DeliveryState.SENT] == 2
    with db.session_scope(engine) as session:
        failed = session.exec(select(Delivery).where(Delivery.state == DeliveryState.FAILED)).one()
    assert failed.last_error == "mailbox does not exist"


def test_a_delivery_left_sending_by_a_crash_becomes_uncertain_and_is_not_resent(
    engine: Engine, settings: Settings
) -> None:
    _setup(engine, *READERS)
    prepared = weekly.prepare_week(engine, settings, week=WEEK)
    assert prepared.edition is not None and prepared.edition.id is not None
    edition_id = prepared.edition.id
    batches = sending.start_send(engine, edition_id)
    # A sender claims one delivery, hands it to the provider and dies before recording anything.
    with db.session_scope(engine) as session:
        (crashed,) = delivery.claim(session, edition_id, batches[0][:1])
        delivery.hand_over(session, [crashed.delivery_id])
        session.execute(
            update(Delivery)
            .values(claimed_at=utcnow() - timedelta(seconds=settings.send_lease_s + 1))
            .where(Delivery.id == crashed.delivery_id)  # type: ignore[arg-type]
        )
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    counts = edition_counts(engine)
    assert counts[DeliveryState.UNCERTAIN] == 1 and counts[DeliveryState.SENT] == 2
    assert crashed.email not in [m.to_address for m in transport.sent]
    assert _edition(engine).status == EditionStatus.SENT
    assert control.uncertain(engine, edition_id, lease_s=settings.send_lease_s) == [
        (crashed.delivery_id, crashed.email)
    ]
    # The operator decides to resend: exactly that one message goes, once.
    assert control.resolve_uncertain(engine, edition_id, resend=True) == 1
    runner.send_in_process(engine, edition_id, lease_s=settings.send_lease_s, progress=None)
    assert [m.to_address for m in transport.sent].count(crashed.email) == 1
    assert edition_counts(engine)[DeliveryState.SENT] == 3


def test_a_sender_that_dies_before_handing_over_leaves_nothing_uncertain(
    engine: Engine, settings: Settings
) -> None:
    _setup(engine, *READERS)
    prepared = weekly.prepare_week(engine, settings, week=WEEK)
    assert prepared.edition is not None and prepared.edition.id is not None
    edition_id = prepared.edition.id
    batches = sending.start_send(engine, edition_id)
    # It claimed the batch and handed the first message over; the other two waited their turn.
    with db.session_scope(engine) as session:
        claimed = delivery.claim(session, edition_id, batches[0])
        delivery.hand_over(session, [claimed[0].delivery_id])
    assert sending.reconcile(engine, edition_id, lease_s=0) == 1
    counts = edition_counts(engine)
    assert counts[DeliveryState.UNCERTAIN] == 1 and counts[DeliveryState.PENDING] == 2
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    assert sorted(m.to_address for m in transport.sent) == sorted(c.email for c in claimed[1:])
    assert edition_counts(engine)[DeliveryState.UNCERTAIN] == 1  # only the one handed over


def test_uncertain_deliveries_can_be_marked_sent(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    prepared = weekly.prepare_week(engine, settings, week=WEEK)
    assert prepared.edition is not None and prepared.edition.id is not None
    batches = sending.start_send(engine, prepared.edition.id)
    with db.session_scope(engine) as session:
        delivery.claim(session, prepared.edition.id, batches[0])
        delivery.hand_over(session, batches[0])
    assert sending.reconcile(engine, prepared.edition.id, lease_s=0) == 3
    assert control.resolve_uncertain(engine, prepared.edition.id, resend=False) == 3
    assert edition_counts(engine)[DeliveryState.SENT] == 3


def test_a_claim_takes_only_pending_rows(engine: Engine, settings: Settings) -> None:
    _setup(engine, *[f"reader{i}@example.com" for i in range(120)])
    prepared = weekly.prepare_week(engine, settings, week=WEEK)
    assert prepared.edition is not None and prepared.edition.id is not None
    edition_id = prepared.edition.id
    batches = sending.start_send(engine, edition_id)
    with db.session_scope(engine) as session:
        assert delivery.add_recipients(session, edition_id) == 0  # insert-or-ignore
    with db.session_scope(engine) as session:
        first = delivery.claim(session, edition_id, batches[0])
    with db.session_scope(engine) as session:
        again = delivery.claim(session, edition_id, batches[0] + batches[1][:5])
    assert len(first) == 50
    assert [c.delivery_id for c in again] == batches[1][:5]  # a redelivered message gets nothing


def test_the_unsubscribe_link_names_the_recipient(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    with db.session_scope(engine) as session:
        by_delivery = {d.id: d.subscriber_id for d in session.exec(select(Delivery))}
    for message in transport.sent:
        url = message.headers["List-Unsubscribe"].split(">")[0].lstrip("<")
        assert url.startswith("https://verdicts.example.org/unsubscribe/")
        subscriber_id, delivery_id = tracking.read_unsubscribe_token(
            settings.signing_key(), url.rsplit("/", 1)[1]
        )
        assert delivery_id is not None and by_delivery[delivery_id] == subscriber_id
        assert url in message.html and url in message.text


def test_a_draft_waits_for_approval_then_sends(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    require_approval(engine)
    transport = MemoryTransport()
    assert send_week(engine, settings, transport).outcome == Outcome.AWAITING_APPROVAL
    assert transport.sent == []
    edition = control.approve(engine, 1, by="editor@example.org")
    assert edition.approved_by == "editor@example.org" and edition.approved_at is not None
    runner.send_in_process(engine, 1, lease_s=settings.send_lease_s, progress=None)
    assert len(transport.sent) == 3
