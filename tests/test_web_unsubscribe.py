"""Unsubscribing from an email: the link's page, and RFC 8058 one-click from the mail client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from tests.helpers import add_subscribers, example_payload, send_week, store_payload
from worker import db, tracking
from worker.config import Settings
from worker.models import Event, EventKind, Subscriber, SubscriberStatus
from worker.transports.memory import MemoryTransport
from worker.web import create_app

READERS = ("ada@example.com", "grace@example.com")


@pytest.fixture
def sent(engine: Engine, settings: Settings) -> MemoryTransport:
    """The 2026-W47 issue sent to two readers; the messages carry their unsubscribe links."""
    store_payload(engine, example_payload())
    add_subscribers(engine, *READERS)
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    return transport


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    app.state.engine = engine
    with TestClient(app) as test_client:
        yield test_client


def unsubscribe_path(transport: MemoryTransport, email: str) -> str:
    message = next(m for m in transport.sent if m.to_address == email)
    url = message.headers["List-Unsubscribe"].split(">")[0].lstrip("<")
    return url.removeprefix("https://verdicts.example.org")


def status_of(engine: Engine, email: str) -> SubscriberStatus:
    with db.session_scope(engine) as session:
        subscriber = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
        return subscriber.status


def unsubscribe_events(engine: Engine) -> list[Event]:
    with db.session_scope(engine) as session:
        return list(session.exec(select(Event).where(Event.kind == EventKind.UNSUBSCRIBE)))


def test_the_link_shows_a_button_and_unsubscribes_nobody(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    page = client.get(unsubscribe_path(sent, "ada@example.com"))
    assert page.status_code == 200
    assert "ada@example.com" in page.text and '<form method="post">' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert status_of(engine, "ada@example.com") == SubscriberStatus.ACTIVE


def test_one_click_post_unsubscribes_at_once_without_cookies_or_redirect(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    client.cookies.clear()
    answer = client.post(
        unsubscribe_path(sent, "ada@example.com"),
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert answer.status_code == 200 and answer.text == "unsubscribed"
    assert status_of(engine, "ada@example.com") == SubscriberStatus.UNSUBSCRIBED
    assert status_of(engine, "grace@example.com") == SubscriberStatus.ACTIVE
    (event,) = unsubscribe_events(engine)
    assert event.delivery_id is not None and event.edition_id == 1


def test_the_page_button_unsubscribes_and_a_second_press_changes_nothing(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    path = unsubscribe_path(sent, "grace@example.com")
    first = client.post(path)
    assert first.status_code == 200 and "You are unsubscribed" in first.text
    again = client.post(path)
    assert again.status_code == 200
    assert len(unsubscribe_events(engine)) == 1
    assert "You are unsubscribed" in client.get(path).text


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: token.split(".")[0],
        lambda token: "not-a-token",
    ],
)
def test_a_forged_or_altered_link_is_refused_and_changes_nothing(
    engine: Engine, sent: MemoryTransport, client: TestClient, tamper: object
) -> None:
    path = unsubscribe_path(sent, "ada@example.com")
    token = path.rsplit("/", 1)[1]
    bad = f"/unsubscribe/{tamper(token)}"  # type: ignore[operator]
    for answer in (client.get(bad), client.post(bad, content="List-Unsubscribe=One-Click")):
        assert answer.status_code == 400
        assert "This link is not valid" in answer.text
    assert status_of(engine, "ada@example.com") == SubscriberStatus.ACTIVE


def test_a_token_made_for_another_purpose_is_refused(
    engine: Engine, settings: Settings, sent: MemoryTransport, client: TestClient
) -> None:
    token = tracking.sign(settings.signing_key(), tracking.Purpose.OPEN, "s1.d1")
    assert client.post(f"/unsubscribe/{token}").status_code == 400
    assert status_of(engine, "ada@example.com") == SubscriberStatus.ACTIVE


def test_a_valid_link_for_an_erased_reader_is_not_found(
    settings: Settings, sent: MemoryTransport, client: TestClient
) -> None:
    token = tracking.unsubscribe_token(settings.signing_key(), subscriber_id=999, delivery_id=None)
    assert client.get(f"/unsubscribe/{token}").status_code == 404


def test_a_bounced_address_stays_bounced(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    with db.session_scope(engine) as session:
        subscriber = session.exec(select(Subscriber).where(Subscriber.email == READERS[0])).one()
        subscriber.status = SubscriberStatus.BOUNCED
        session.add(subscriber)
    client.post(unsubscribe_path(sent, READERS[0]), content="List-Unsubscribe=One-Click")
    assert status_of(engine, READERS[0]) == SubscriberStatus.BOUNCED


def test_after_one_click_the_next_issue_is_not_sent_to_that_reader(
    engine: Engine, settings: Settings, sent: MemoryTransport, client: TestClient
) -> None:
    client.post(unsubscribe_path(sent, "ada@example.com"), content="List-Unsubscribe=One-Click")
    next_week = example_payload()
    next_week["slug"] = "next-week-comparison"
    next_week["published_at"] = "2026-11-26T10:00:00Z"
    store_payload(engine, next_week)
    transport = MemoryTransport()
    send_week(engine, settings, transport, week="2026-W48")
    assert [m.to_address for m in transport.sent] == ["grace@example.com"]


def test_health_check(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"
