"""Opens and clicks: the pixel and tracked links in each copy, human and machine flags, counts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlmodel import col, select

from tests.helpers import add_subscribers, example_payload, send_week, store_payload
from worker import db, engagement, tracking
from worker.config import Settings
from worker.models import Delivery, Event, EventKind, utcnow
from worker.transports.base import OutgoingMessage
from worker.transports.memory import MemoryTransport
from worker.web import create_app
from worker.web.engagement import PIXEL

BASE = "https://verdicts.example.org"
READERS = ("ada@example.com", "grace@example.com")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0"
COMPARISON_URL = example_payload()["url"]


@pytest.fixture
def sent(engine: Engine, settings: Settings) -> MemoryTransport:
    store_payload(engine, example_payload())
    add_subscribers(engine, *READERS)
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    return transport


def sent_long_ago(engine: Engine) -> None:
    """Move every send an hour back, out of the 'seconds after sending' window."""
    with db.session_scope(engine) as session:
        session.execute(update(Delivery).values(sent_at=utcnow() - timedelta(hours=1)))


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    app.state.engine = engine
    with TestClient(app) as test_client:
        yield test_client


def message_to(transport: MemoryTransport, email: str) -> OutgoingMessage:
    return next(m for m in transport.sent if m.to_address == email)


def pixel_path(message: OutgoingMessage) -> str:
    match = re.search(rf'<img src="{re.escape(BASE)}(/o/[^"]+\.gif)"', message.html)
    assert match, "no open pixel in the HTML part"
    return match.group(1)


def tracked_links(body: str) -> list[str]:
    return re.findall(rf"{re.escape(BASE)}(/c/[A-Za-z0-9_.-]+)", body)


def events(engine: Engine, kind: EventKind) -> list[Event]:
    with db.session_scope(engine) as session:
        return list(session.exec(select(Event).where(Event.kind == kind).order_by(col(Event.id))))


def test_each_copy_has_its_own_pixel_and_tracked_links_and_no_bare_target(
    sent: MemoryTransport, settings: Settings
) -> None:
    key = settings.signing_key()
    seen_deliveries = set()
    for message in sent.sent:
        delivery_id = tracking.read_open_token(key, pixel_path(message)[3:-4])
        seen_deliveries.add(delivery_id)
        for body in (message.html, message.text):
            links = tracked_links(body)
            assert links, "no tracked link"
            for link in links:
                assert tracking.read_click_token(key, link[3:]) == (delivery_id, COMPARISON_URL)
            assert COMPARISON_URL not in body
    assert len(seen_deliveries) == len(READERS)


def test_pixel_is_a_1x1_gif_that_is_never_cached(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    sent_long_ago(engine)
    answer = client.get(
        pixel_path(message_to(sent, "ada@example.com")), headers={"User-Agent": BROWSER}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/gif"
    assert "no-store" in answer.headers["cache-control"]
    assert answer.content == PIXEL and PIXEL[:6] == b"GIF89a" and PIXEL[6:10] == b"\x01\x00\x01\x00"
    (event,) = events(engine, EventKind.OPEN)
    assert event.machine is False and event.user_agent == BROWSER
    assert event.edition_id == 1 and event.subscriber_id is not None


def test_click_redirects_to_the_sealed_target_and_is_recorded(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    sent_long_ago(engine)
    (link, *_) = tracked_links(message_to(sent, "grace@example.com").html)
    answer = client.get(link, headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["location"] == COMPARISON_URL
    (event,) = events(engine, EventKind.CLICK)
    assert event.url == COMPARISON_URL and event.machine is False


def test_an_edited_click_target_is_refused_and_nothing_is_recorded(
    engine: Engine, sent: MemoryTransport, client: TestClient, settings: Settings
) -> None:
    (link, *_) = tracked_links(message_to(sent, "ada@example.com").html)
    payload, mac = link[3:].split(".")
    forged = tracking.sign(b"another-key", tracking.Purpose.CLICK, "d1|https://evil.example")
    unsigned_payload = forged.split(".")[0]
    for token in (f"{unsigned_payload}.{mac}", forged, f"{payload}x.{mac}", payload):
        answer = client.get(f"/c/{token}", follow_redirects=False)
        assert answer.status_code == 400
        assert "location" not in answer.headers
    assert events(engine, EventKind.CLICK) == []


def test_a_forged_pixel_still_gets_the_image_but_records_nothing(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    real = pixel_path(message_to(sent, "ada@example.com"))
    for path in (real.replace(".gif", "A.gif"), "/o/bm9wZQ.AAAA.gif", "/o/x.gif"):
        answer = client.get(path)
        assert answer.status_code == 200 and answer.content == PIXEL
    assert events(engine, EventKind.OPEN) == []


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("Mozilla/5.0", "apple privacy proxy (user agent)"),
        ("Barracuda Sentinel (EE)", "link scanner or bot (user agent)"),
        ("python-requests/2.32", "link scanner or bot (user agent)"),
        ("", "no user agent"),
    ],
)
def test_machine_fetches_are_flagged_with_the_reason(
    engine: Engine, sent: MemoryTransport, client: TestClient, agent: str, reason: str
) -> None:
    sent_long_ago(engine)
    client.get(pixel_path(message_to(sent, "ada@example.com")), headers={"User-Agent": agent})
    (event,) = events(engine, EventKind.OPEN)
    assert event.machine is True and event.detail == reason


def test_a_fetch_from_apples_network_is_a_machine_open(
    engine: Engine, sent: MemoryTransport, settings: Settings
) -> None:
    sent_long_ago(engine)
    app = create_app(settings)
    app.state.engine = engine
    with TestClient(app, client=("17.58.101.7", 40000)) as apple:
        apple.get(pixel_path(message_to(sent, "ada@example.com")), headers={"User-Agent": BROWSER})
    (event,) = events(engine, EventKind.OPEN)
    assert event.machine is True and event.detail == "apple privacy proxy (address)"


def test_an_open_seconds_after_sending_is_a_machine_open(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    client.get(pixel_path(message_to(sent, "ada@example.com")), headers={"User-Agent": BROWSER})
    (event,) = events(engine, EventKind.OPEN)
    assert event.machine is True and event.detail == "within seconds of sending"


def test_an_open_before_the_send_is_recorded_is_a_machine_open(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    """A gateway can fetch while the sender is still waiting to write down that the message left."""
    with db.session_scope(engine) as session:
        session.execute(update(Delivery).values(sent_at=None, claimed_at=utcnow()))
    client.get(pixel_path(message_to(sent, "ada@example.com")), headers={"User-Agent": BROWSER})
    (event,) = events(engine, EventKind.OPEN)
    assert event.machine is True and event.detail == "within seconds of sending"


def test_an_open_of_an_uncertain_delivery_long_after_its_claim_is_human(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    with db.session_scope(engine) as session:
        session.execute(
            update(Delivery).values(sent_at=None, claimed_at=utcnow() - timedelta(hours=1))
        )
    client.get(pixel_path(message_to(sent, "ada@example.com")), headers={"User-Agent": BROWSER})
    (event,) = events(engine, EventKind.OPEN)
    assert event.machine is False


def test_unique_human_opens_are_counted_apart_from_machine_opens(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    sent_long_ago(engine)
    ada, grace = (pixel_path(message_to(sent, e)) for e in READERS)
    for path, agent in ((ada, BROWSER), (ada, BROWSER), (grace, "Mozilla/5.0"), (grace, BROWSER)):
        client.get(path, headers={"User-Agent": agent})
    (link, *_) = tracked_links(message_to(sent, "ada@example.com").text)
    client.get(link, headers={"User-Agent": "Proofpoint URL Defense"}, follow_redirects=False)
    client.get(link, headers={"User-Agent": BROWSER}, follow_redirects=False)
    with db.session_scope(engine) as session:
        figures = engagement.of_edition(session, 1)
    assert figures == engagement.Engagement(
        opens_human=3,
        opens_machine=1,
        unique_human_opens=2,
        clicks_human=1,
        clicks_machine=1,
        unique_human_clickers=1,
    )
