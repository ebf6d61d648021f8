"""The weekly send: one edition per week, one message per active subscriber, nothing twice."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, update
from sqlmodel import select

from tests.helpers import add_subscribers, example_payload, store_payload
from worker import db, delivery, editions, subscribers, tracking
from worker.config import Settings
from worker.models import Delivery, DeliveryState, Edition, EditionStatus, Event, EventKind, utcnow
from worker.sending import send_edition
from worker.transports.base import FailureKind
from worker.transports.memory import MemoryTransport
from worker.weekly import Outcome, run_weekly

WEEK = "2026-W47"
READERS = ("ada@example.com", "grace@example.com", "linus@example.com")


def _setup(engine: Engine, *emails: str) -> None:
    store_payload(engine, example_payload())
    add_subscribers(engine, *emails)


def test_each_active_subscriber_gets_exactly_one_message(
    engine: Engine, settings: Settings
) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    result = run_weekly(engine, settings, transport, week=WEEK)
    assert result.outcome == Outcome.SENT
    assert sorted(m.to_address for m in transport.sent) == sorted(READERS)
    assert result.summary is not None and result.summary.counts[DeliveryState.SENT] == 3
    with db.session_scope(engine) as session:
        edition = session.exec(select(Edition)).one()
        rows = session.exec(select(Delivery)).all()
    assert edition.status == EditionStatus.SENT and edition.finished_at is not None
    assert {row.provider_message_id for row in rows} == {"memory-1", "memory-2", "memory-3"}


def test_a_second_run_for_the_same_week_sends_nothing(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    run_weekly(engine, settings, transport, week=WEEK)
    again = run_weekly(engine, settings, transport, week=WEEK)
    assert again.outcome == Outcome.ALREADY_SENT
    assert len(transport.sent) == 3
    with db.session_scope(engine) as session:
        assert len(session.exec(select(Edition)).all()) == 1


def test_a_week_without_a_comparison_sends_nothing_and_leaves_an_event(
    engine: Engine, settings: Settings
) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    result = run_weekly(engine, settings, transport, week="2026-W49")
    assert result.outcome == Outcome.NO_COMPARISON
    assert transport.sent == []
    with db.session_scope(engine) as session:
        events = session.exec(select(Event)).all()
    assert [e.kind for e in events] == [EventKind.NO_COMPARISON]
    assert "2026-W49" in events[0].detail


def test_dry_run_changes_nothing(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    result = run_weekly(engine, settings, transport, week=WEEK, dry_run=True)
    assert result.outcome == Outcome.DRY_RUN and result.recipients == 3
    assert transport.sent == []
    with db.session_scope(engine) as session:
        assert session.exec(select(Edition)).all() == []


def test_inactive_subscribers_are_not_mailed(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    with db.session_scope(engine) as session:
        subscribers.unsubscribe(session, "grace@example.com")
    transport = MemoryTransport()
    run_weekly(engine, settings, transport, week=WEEK)
    assert sorted(m.to_address for m in transport.sent) == ["ada@example.com", "linus@example.com"]


def test_unsubscribed_mid_send_is_skipped(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next("grace@example.com", FailureKind.ACCOUNT, "sending paused")
    first = run_weekly(engine, settings, transport, week=WEEK)
    assert first.outcome == Outcome.PAUSED
    assert "grace@example.com" not in [m.to_address for m in transport.sent]
    with db.session_scope(engine) as session:
        edition = session.exec(select(Edition)).one()
        assert edition.status == EditionStatus.PAUSED and "sending paused" in edition.status_reason
        grace = session.exec(select(Delivery).where(Delivery.subscriber_id == 2)).one()
        assert grace.state == DeliveryState.PENDING  # handed back, not lost
        subscribers.unsubscribe(session, "grace@example.com")
        # An operator resumes the edition (the resume command arrives with the queue).
        edition.status = EditionStatus.APPROVED
        session.add(edition)
    second = run_weekly(engine, settings, transport, week=WEEK)
    assert second.outcome == Outcome.SENT
    assert sorted(m.to_address for m in transport.sent) == ["ada@example.com", "linus@example.com"]
    assert second.summary is not None
    assert second.summary.counts[DeliveryState.SKIPPED] == 1
    assert second.summary.counts[DeliveryState.SENT] == 2


def test_transient_failures_are_retried_until_sent(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next("ada@example.com", FailureKind.TRANSIENT, "throttled")
    transport.fail_next("ada@example.com", FailureKind.TRANSIENT, "throttled")
    result = run_weekly(engine, settings, transport, week=WEEK)
    assert [m.to_address for m in transport.sent].count("ada@example.com") == 1
    assert result.summary is not None and result.summary.counts[DeliveryState.SENT] == 3
    with db.session_scope(engine) as session:
        ada = session.exec(select(Delivery).where(Delivery.subscriber_id == 1)).one()
    assert ada.attempts == 3


def test_a_permanent_failure_fails_that_delivery_only(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next("linus@example.com", FailureKind.PERMANENT, "mailbox does not exist")
    result = run_weekly(engine, settings, transport, week=WEEK)
    assert result.summary is not None
    assert result.summary.counts[DeliveryState.FAILED] == 1
    assert result.summary.counts[DeliveryState.SENT] == 2
    with db.session_scope(engine) as session:
        failed = session.exec(select(Delivery).where(Delivery.state == DeliveryState.FAILED)).one()
    assert failed.last_error == "mailbox does not exist"


def test_a_delivery_left_sending_by_a_crash_becomes_uncertain_and_is_not_resent(
    engine: Engine, settings: Settings
) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    # A sender claims a batch and dies before recording anything.
    first = run_weekly(engine, settings, transport, week=WEEK, dry_run=True)
    assert first.comparison is not None
    with db.session_scope(engine) as session:
        schedule = editions.default_schedule(session, settings)
        prepared = editions.prepare(
            session,
            schedule=schedule,
            period=first.period,
            comparison=first.comparison,
            settings=settings,
        )
        assert prepared.edition.id is not None
        delivery.add_recipients(session, prepared.edition.id)
    with db.session_scope(engine) as session:
        crashed = delivery.claim(session, prepared.edition.id, limit=1)
        session.execute(
            update(Delivery)
            .values(claimed_at=utcnow() - timedelta(seconds=settings.send_lease_s + 1))
            .where(Delivery.id == crashed[0].delivery_id)  # type: ignore[arg-type]
        )
    result = run_weekly(engine, settings, transport, week=WEEK)
    assert result.summary is not None
    assert result.summary.newly_uncertain == 1
    assert result.summary.counts[DeliveryState.UNCERTAIN] == 1
    assert crashed[0].email not in [m.to_address for m in transport.sent]
    assert len(transport.sent) == 2


def test_two_claimers_never_get_the_same_delivery(engine: Engine, settings: Settings) -> None:
    emails = [f"reader{i}@example.com" for i in range(120)]
    _setup(engine, *emails)
    preview = run_weekly(engine, settings, MemoryTransport(), week=WEEK, dry_run=True)
    assert preview.comparison is not None
    with db.session_scope(engine) as session:
        schedule = editions.default_schedule(session, settings)
        edition = editions.prepare(
            session,
            schedule=schedule,
            period=preview.period,
            comparison=preview.comparison,
            settings=settings,
        ).edition
        assert edition.id is not None
        assert delivery.add_recipients(session, edition.id) == 120
        assert delivery.add_recipients(session, edition.id) == 0  # insert-or-ignore
    concurrent = engine.dialect.name == "postgresql"  # SQLite serialises writers instead
    seen: list[int] = []
    for _ in range(3):
        with db.session_scope(engine) as a, db.session_scope(engine) as b:
            seen += [c.delivery_id for c in delivery.claim(a, edition.id, limit=25)]
            if not concurrent:
                a.commit()
            # With `a` still holding its rows open, `b` must take different ones.
            seen += [c.delivery_id for c in delivery.claim(b, edition.id, limit=25)]
    assert len(seen) == len(set(seen)) == 120


def test_the_unsubscribe_link_names_the_recipient(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    run_weekly(engine, settings, transport, week=WEEK)
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


def test_an_edition_awaiting_approval_is_not_sent(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    with db.session_scope(engine) as session:
        schedule = editions.default_schedule(session, settings)
        schedule.require_approval = True
        session.add(schedule)
    transport = MemoryTransport()
    result = run_weekly(engine, settings, transport, week=WEEK)
    assert result.outcome == Outcome.AWAITING_APPROVAL
    assert transport.sent == []


def test_send_edition_is_idempotent_when_called_again(engine: Engine, settings: Settings) -> None:
    _setup(engine, *READERS)
    transport = MemoryTransport()
    result = run_weekly(engine, settings, transport, week=WEEK)
    assert result.edition is not None and result.comparison is not None
    again = send_edition(engine, result.edition, result.comparison, transport, settings)
    assert len(transport.sent) == 3
    assert again.counts[DeliveryState.SENT] == 3
