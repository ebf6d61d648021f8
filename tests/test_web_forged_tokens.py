"""Forged, edited and misused tokens on every public endpoint: nothing changes, nothing breaks.

A hundred tokens are made by editing real ones (a changed character in the payload or the MAC,
payloads and MACs swapped, cut short, lengthened, re-signed with another key) or from nothing;
each is tried on every endpoint that takes a token. The database and the mail sent must be
exactly as before, and no answer may be a server error.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import select

from tests.helpers import add_subscribers, example_payload, send_week, store_payload
from worker import db, tracking
from worker.config import Settings
from worker.models import Delivery, Event, Subscriber, SubscriberStatus, utcnow
from worker.transports.memory import MemoryTransport
from worker.web import create_app

Endpoint = Callable[[TestClient, str], Any]
ENDPOINTS: dict[str, Endpoint] = {
    "GET /unsubscribe": lambda c, t: c.get(f"/unsubscribe/{t}"),
    "POST /unsubscribe": lambda c, t: c.post(f"/unsubscribe/{t}"),
    "POST /unsubscribe one-click": lambda c, t: c.post(
        f"/unsubscribe/{t}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "GET /confirm": lambda c, t: c.get(f"/confirm/{t}"),
    "POST /confirm": lambda c, t: c.post(f"/confirm/{t}"),
    "POST /resubscribe": lambda c, t: c.post(f"/resubscribe/{t}"),
    "GET /o": lambda c, t: c.get(f"/o/{t}.gif"),
    "GET /c": lambda c, t: c.get(f"/c/{t}", follow_redirects=False),
}
READERS = ("ada@example.com", "grace@example.com", "left@example.com")


@pytest.fixture
def setting(engine: Engine, settings: Settings) -> Iterator[tuple[TestClient, MemoryTransport]]:
    """An issue sent to three readers (one then unsubscribed), and one sign-up still pending."""
    store_payload(engine, example_payload())
    add_subscribers(engine, *READERS)
    send_week(engine, settings, MemoryTransport())
    with db.session_scope(engine) as session:
        left = session.exec(select(Subscriber).where(Subscriber.email == "left@example.com")).one()
        left.status = SubscriberStatus.UNSUBSCRIBED
        left.unsubscribed_at = utcnow()
        session.add(
            Subscriber(
                email="pending@example.com", status=SubscriberStatus.PENDING, created_at=utcnow()
            )
        )
    app = create_app(settings)
    app.state.engine = engine
    mail = MemoryTransport()
    app.state.transport = mail
    with TestClient(app) as client:
        yield client, mail


def real_tokens(key: bytes) -> list[str]:
    now = utcnow()
    return [
        *(tracking.unsubscribe_token(key, subscriber_id=s, delivery_id=s) for s in (1, 2, 3)),
        *(tracking.confirm_token(key, subscriber_id=s, issued_at=now) for s in (3, 4)),
        *(tracking.open_token(key, delivery_id=d) for d in (1, 2)),
        *(
            tracking.click_token(key, delivery_id=d, url="https://verdicts.example.com/x")
            for d in (1, 2)
        ),
    ]


def forged_tokens(key: bytes, count: int = 100) -> list[str]:
    """Edits of real tokens and made-up ones; the same hundred every run."""
    rng = random.Random(20261124)
    real = real_tokens(key)
    alphabet = string.ascii_letters + string.digits + "-_"

    def changed(text: str) -> str:
        at = rng.randrange(len(text))
        return text[:at] + rng.choice(alphabet.replace(text[at], "")) + text[at + 1 :]

    def halves() -> tuple[str, str]:
        payload, mac = rng.choice(real).split(".")
        return payload, mac

    def payload_edited() -> str:
        payload, mac = halves()
        return f"{changed(payload)}.{mac}"

    def mac_edited() -> str:
        payload, mac = halves()
        return f"{payload}.{changed(mac)}"

    def halves_swapped() -> str:
        return f"{halves()[0]}.{halves()[1]}"

    makers: list[Callable[[], str]] = [
        payload_edited,
        mac_edited,
        halves_swapped,
        lambda: rng.choice(real)[: rng.randrange(1, 30)],
        lambda: rng.choice(real) + rng.choice(alphabet),
        lambda: tracking.sign(
            b"not-our-key", rng.choice(list(tracking.Purpose)), f"s{rng.randrange(1, 5)}.d1"
        ),
        lambda: "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60))),
        lambda: rng.choice(["..", "%2e%2e", "a.b.c", ".", "x" * 5000, "ü.ö", "AAAA.AAAA", "=="]),
    ]
    tokens: list[str] = []
    while len(tokens) < count:
        token = rng.choice(makers)()
        # A forgery that happened to match a real MAC would be a 2**-128 event: only the
        # real tokens themselves (a swap of a token's own halves) are left out.
        if token not in real and token not in tokens:
            tokens.append(token)
    return tokens


def state(engine: Engine) -> tuple[Any, ...]:
    with db.session_scope(engine) as session:
        people = [
            (s.id, s.status, s.confirm_sent_at, s.unsubscribed_at, s.confirmed_at)
            for s in session.exec(select(Subscriber).order_by(Subscriber.id))  # type: ignore[arg-type]
        ]
        deliveries = [(d.id, d.state) for d in session.exec(select(Delivery).order_by(Delivery.id))]  # type: ignore[arg-type]
        events = session.exec(select(func.count()).select_from(Event)).one()
    return people, deliveries, events


def test_a_hundred_forged_tokens_change_nothing_on_any_endpoint(
    engine: Engine, settings: Settings, setting: tuple[TestClient, MemoryTransport]
) -> None:
    client, mail = setting
    tokens = forged_tokens(settings.signing_key())
    assert len(set(tokens)) == 100
    before = state(engine)
    statuses: dict[str, set[int]] = {name: set() for name in ENDPOINTS}
    for token in tokens:
        for name, call in ENDPOINTS.items():
            answer = call(client, token)
            assert answer.status_code < 500, (name, token, answer.text[:200])
            statuses[name].add(answer.status_code)
    assert state(engine) == before
    assert mail.sent == []
    # The pixel is always the image; every other endpoint says the link is no good.
    assert statuses.pop("GET /o") == {200}
    assert all(codes <= {400, 404, 405, 422} for codes in statuses.values()), statuses


def test_a_real_token_used_for_another_purpose_changes_nothing(
    engine: Engine, settings: Settings, setting: tuple[TestClient, MemoryTransport]
) -> None:
    client, mail = setting
    key = settings.signing_key()
    purpose_of_endpoint = {
        "GET /unsubscribe": tracking.Purpose.UNSUBSCRIBE,
        "POST /unsubscribe": tracking.Purpose.UNSUBSCRIBE,
        "POST /unsubscribe one-click": tracking.Purpose.UNSUBSCRIBE,
        "GET /confirm": tracking.Purpose.CONFIRM,
        "POST /confirm": tracking.Purpose.CONFIRM,
        "POST /resubscribe": tracking.Purpose.UNSUBSCRIBE,
        "GET /o": tracking.Purpose.OPEN,
        "GET /c": tracking.Purpose.CLICK,
    }
    before = state(engine)
    tried = 0
    for token in real_tokens(key):
        for name, call in ENDPOINTS.items():
            try:
                tracking.verify(key, purpose_of_endpoint[name], token)
                continue  # made for this endpoint: not a misuse
            except tracking.InvalidToken:
                pass
            answer = call(client, token)
            assert answer.status_code < 500
            tried += 1
    assert tried > 50
    assert state(engine) == before and mail.sent == []
