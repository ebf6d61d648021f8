"""The readers' state under concurrency and odd input: a status a bounce or complaint set is
never overwritten by a request that read the row before it, double clicks make one row and one
mail, and erasing a reader removes everything the web recorded about them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from tests.helpers import add_subscribers
from worker import db, ses_events, signup, subscribers
from worker.config import Settings
from worker.errors import InputError
from worker.models import Event, Subscriber, SubscriberStatus, utcnow
from worker.transports.memory import MemoryTransport
from worker.web import create_app


def status_after_a_complaint_lands_mid_request(
    engine: Engine, subscriber_id: int, request: Callable[[Session], object]
) -> SubscriberStatus:
    """The request reads the row, a complaint commits, then the request writes."""
    with Session(engine, expire_on_commit=False) as reader:
        reader.get(Subscriber, subscriber_id)
        with db.session_scope(engine) as other:
            ses_events._suppress(other, subscriber_id, SubscriberStatus.COMPLAINED, at=utcnow())
        request(reader)
        reader.commit()
    with db.session_scope(engine) as session:
        found = session.get(Subscriber, subscriber_id)
        assert found is not None
        return found.status


def test_a_complaint_landing_during_a_confirm_is_not_overwritten(engine: Engine) -> None:
    with db.session_scope(engine) as session:
        due = signup.request(session, "p@example.com", name=None, now=utcnow())
    assert due is not None
    status = status_after_a_complaint_lands_mid_request(
        engine,
        due.subscriber_id,
        lambda s: signup.confirm(s, due.subscriber_id, issued_at=due.issued_at, now=utcnow()),
    )
    assert status == SubscriberStatus.COMPLAINED


def test_a_complaint_landing_during_an_unsubscribe_is_not_overwritten(engine: Engine) -> None:
    add_subscribers(engine, "u@example.com")
    with db.session_scope(engine) as session:
        found = subscribers.find(session, "u@example.com")
        assert found is not None and found.id is not None
        subscriber_id = found.id
    status = status_after_a_complaint_lands_mid_request(
        engine, subscriber_id, lambda s: subscribers.unsubscribe_by_link(s, subscriber_id, None)
    )
    assert status == SubscriberStatus.COMPLAINED


def test_the_operator_unsubscribing_a_bounced_address_leaves_it_bounced(engine: Engine) -> None:
    add_subscribers(engine, "b@example.com")
    with db.session_scope(engine) as session:
        found = subscribers.find(session, "b@example.com")
        assert found is not None and found.id is not None
        ses_events._suppress(session, found.id, SubscriberStatus.BOUNCED, at=utcnow())
    with db.session_scope(engine) as session:
        assert subscribers.unsubscribe(session, "b@example.com").status == SubscriberStatus.BOUNCED


def test_sign_ups_of_one_new_address_at_once_make_one_reader_and_one_mail(
    engine: Engine, settings: Settings
) -> None:
    app = create_app(settings)
    app.state.engine = engine
    mail = MemoryTransport()
    app.state.transport = mail
    answers: list[int] = []
    with TestClient(app) as client:
        start = threading.Barrier(8)

        def sign_up() -> None:
            start.wait()
            answer = client.post("/subscribe", json={"email": "double@example.com"})
            answers.append(answer.status_code)

        threads = [threading.Thread(target=sign_up) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == [202] * 8
    with db.session_scope(engine) as session:
        rows = session.exec(select(func.count()).select_from(Subscriber)).one()
    assert rows == 1
    assert [m.to_address for m in mail.sent] == ["double@example.com"]


def test_two_requests_for_a_pending_address_book_one_mail(engine: Engine) -> None:
    now = utcnow()
    with db.session_scope(engine) as session:
        first = signup.request(session, "p@example.com", name=None, now=now)
    later = now + signup.RESEND_AFTER
    with Session(engine) as one, Session(engine) as two:
        a = signup.request(one, "p@example.com", name=None, now=later)
        one.commit()
        b = signup.request(two, "p@example.com", name=None, now=later)
        two.commit()
    assert first is not None and [a is not None, b is not None] == [True, False]


def test_forgetting_a_reader_who_signed_up_on_the_web_erases_their_events(engine: Engine) -> None:
    with db.session_scope(engine) as session:
        due = signup.request(session, "gone@example.com", name=None, now=utcnow())
        assert due is not None
        signup.confirm(session, due.subscriber_id, issued_at=due.issued_at, now=utcnow())
        subscribers.unsubscribe_by_link(session, due.subscriber_id, None)
    with db.session_scope(engine) as session:
        subscribers.forget(session, "gone@example.com")
    with db.session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(Event)).one() == 0
        assert subscribers.find(session, "gone@example.com") is None


@pytest.mark.parametrize("name", ["a\x00b", "bell\x07", "\ud800 lone surrogate"])
def test_a_name_with_control_characters_is_refused(engine: Engine, name: str) -> None:
    with db.session_scope(engine) as session, pytest.raises(InputError, match="name"):
        signup.request(session, "n@example.com", name=name, now=utcnow())


def test_confirm_is_refused_for_a_link_older_than_the_last_unsubscribe(engine: Engine) -> None:
    with db.session_scope(engine) as session:
        due = signup.request(
            session, "back@example.com", name=None, now=utcnow() - timedelta(hours=1)
        )
        assert due is not None
        subscribers.unsubscribe(session, "back@example.com")
    with db.session_scope(engine) as session:
        outcome = signup.confirm(session, due.subscriber_id, issued_at=due.issued_at, now=utcnow())
    assert outcome == signup.Confirmed.STALE
