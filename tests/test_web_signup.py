"""Signing up on the web: double opt-in, CSRF, honeypot, per-client limits, resubscribe."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from tests.helpers import add_subscribers, example_payload, send_week, store_payload
from worker import db, signup, subscribers, tracking
from worker.abuse import LocalAttempts, RedisAttempts
from worker.config import Settings
from worker.models import Event, EventKind, Subscriber, SubscriberStatus, utcnow
from worker.transports.base import FailureKind, SendResult
from worker.transports.memory import MemoryTransport
from worker.web import create_app

BASE = "https://verdicts.example.org"


class Web:
    """A test client on the app, with the app's mail captured in memory."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.app = create_app(settings)
        self.app.state.engine = engine
        self.mail = MemoryTransport()
        self.app.state.transport = self.mail
        self.client = TestClient(self.app, base_url=BASE)

    def form(self) -> dict[str, str]:
        page = self.client.get("/subscribe")
        assert page.status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        return {"csrf_token": token.group(1)}

    def sign_up(self, email: str, **extra: str) -> object:
        return self.client.post("/subscribe", data={**self.form(), "email": email, **extra})

    def confirm_path(self, email: str) -> str:
        (message, *_) = [m for m in reversed(self.mail.sent) if m.to_address == email]
        match = re.search(rf"{BASE}(/confirm/[A-Za-z0-9_.-]+)", message.text)
        assert match, "no confirm link in the text part"
        assert match.group(1) in message.html
        return match.group(1)


@pytest.fixture
def web(engine: Engine, settings: Settings) -> Iterator[Web]:
    made = Web(engine, settings)
    with made.client:
        yield made


def subscriber(engine: Engine, email: str) -> Subscriber | None:
    with db.session_scope(engine) as session:
        return subscribers.find(session, email)


def status_of(engine: Engine, email: str) -> SubscriberStatus | None:
    found = subscriber(engine, email)
    return found.status if found else None


def snapshot(engine: Engine) -> list[tuple[str, str]]:
    with db.session_scope(engine) as session:
        rows = session.exec(select(Subscriber.email, Subscriber.status).order_by(Subscriber.email))
        return [(email, str(status)) for email, status in rows]


def test_the_form_has_labelled_fields_a_csrf_token_and_a_hidden_trap(web: Web) -> None:
    page = web.client.get("/subscribe")
    assert '<label for="email">' in page.text and 'id="email"' in page.text
    assert 'name="csrf_token"' in page.text
    assert 'class="trap" aria-hidden="true"' in page.text and 'tabindex="-1"' in page.text
    cookie = page.headers["set-cookie"]
    assert "vm_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" in cookie  # the public address is https


def test_sign_up_mails_a_confirmation_and_only_the_confirm_button_activates(
    engine: Engine, web: Web
) -> None:
    answer = web.sign_up("New.Reader@Example.com", name="New Reader")
    assert answer.status_code == 200 and "Check your inbox" in answer.text  # type: ignore[attr-defined]
    assert status_of(engine, "new.reader@example.com") == SubscriberStatus.PENDING
    (mail,) = web.mail.sent
    assert mail.to_address == "new.reader@example.com" and mail.to_name == "New Reader"
    assert mail.subject == "Confirm your subscription to Weekly AI Tool Verdicts"
    assert "List-Unsubscribe" not in mail.headers

    path = web.confirm_path("new.reader@example.com")
    shown = web.client.get(path)
    assert shown.status_code == 200 and '<form method="post">' in shown.text
    assert status_of(engine, "new.reader@example.com") == SubscriberStatus.PENDING

    done = web.client.post(path)
    assert done.status_code == 200 and "You are subscribed" in done.text
    found = subscriber(engine, "new.reader@example.com")
    assert found is not None and found.status == SubscriberStatus.ACTIVE
    assert found.confirmed_at is not None
    assert web.client.post(path).status_code == 200  # confirming twice is harmless


def test_a_confirmed_reader_gets_the_next_issue(
    engine: Engine, web: Web, settings: Settings
) -> None:
    web.sign_up("reader@example.com")
    web.client.post(web.confirm_path("reader@example.com"))
    store_payload(engine, example_payload())
    issue = MemoryTransport()
    send_week(engine, settings, issue)
    assert [m.to_address for m in issue.sent] == ["reader@example.com"]


def test_a_pending_reader_gets_no_issue(engine: Engine, web: Web, settings: Settings) -> None:
    web.sign_up("reader@example.com")
    store_payload(engine, example_payload())
    issue = MemoryTransport()
    send_week(engine, settings, issue)
    assert issue.sent == []


def test_the_answer_never_tells_whether_an_address_was_known(engine: Engine, web: Web) -> None:
    add_subscribers(engine, "active@example.com", "bounced@example.com")
    with db.session_scope(engine) as session:
        bounced = subscribers.find(session, "bounced@example.com")
        assert bounced is not None
        bounced.status = SubscriberStatus.BOUNCED
        session.add(bounced)
    web.sign_up("pending@example.com")
    web.mail.sent.clear()

    answers = [
        web.sign_up(email)
        for email in (
            "fresh@example.com",
            "active@example.com",
            "bounced@example.com",
            "pending@example.com",
        )
    ]
    assert len({(a.status_code, a.text) for a in answers}) == 1  # type: ignore[attr-defined]
    # Only the new address is mailed: not the subscribed, the suppressed, or (so soon) the pending.
    assert [m.to_address for m in web.mail.sent] == ["fresh@example.com"]
    assert status_of(engine, "bounced@example.com") == SubscriberStatus.BOUNCED
    assert status_of(engine, "active@example.com") == SubscriberStatus.ACTIVE


def test_a_pending_reader_asking_again_later_gets_a_new_mail(engine: Engine) -> None:
    now = utcnow()
    with db.session_scope(engine) as session:
        first = signup.request(session, "late@example.com", name=None, now=now)
        again = signup.request(
            session, "late@example.com", name=None, now=now + timedelta(minutes=1)
        )
        later = signup.request(
            session, "late@example.com", name=None, now=now + signup.RESEND_AFTER
        )
    assert first is not None and again is None and later is not None


def test_a_form_post_without_the_csrf_pair_is_refused_and_stores_nothing(
    engine: Engine, web: Web
) -> None:
    form = web.form()
    web.client.cookies.clear()
    no_cookie = web.client.post("/subscribe", data={**form, "email": "x@example.com"})
    web.form()  # the cookie is back
    no_field = web.client.post("/subscribe", data={"email": "x@example.com"})
    forged = web.client.post(
        "/subscribe",
        data={
            "email": "x@example.com",
            "csrf_token": tracking.sign(b"k", tracking.Purpose.CSRF, "n"),
        },
    )
    for answer in (no_cookie, no_field, forged):
        assert answer.status_code == 403 and "expired" in answer.text
    assert snapshot(engine) == [] and web.mail.sent == []


def test_json_sign_up_from_our_origin_or_a_server_is_accepted(engine: Engine, web: Web) -> None:
    ours = web.client.post(
        "/subscribe", json={"email": "json@example.com"}, headers={"Origin": BASE}
    )
    server = web.client.post("/subscribe", json={"email": "server@example.com"})
    for answer in (ours, server):
        assert answer.status_code == 202 and answer.json()["status"] == "check-your-inbox"
    assert status_of(engine, "json@example.com") == SubscriberStatus.PENDING
    assert status_of(engine, "server@example.com") == SubscriberStatus.PENDING


def test_json_sign_up_from_another_site_is_refused(engine: Engine, web: Web) -> None:
    answer = web.client.post(
        "/subscribe",
        json={"email": "victim@example.com"},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert snapshot(engine) == [] and web.mail.sent == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "JSON object"),
        (b"[" * 100_000, "application/json", 400, "not valid JSON"),
        (b'{"email": 7}', "application/json", 422, "email"),
        (b'{"email": "not-an-address"}', "application/json", 422, "email"),
        (b"email=x@example.com", "text/plain", 415, "form"),
    ],
)
def test_bad_sign_ups_get_a_clear_error_and_store_nothing(
    engine: Engine, web: Web, body: bytes, content_type: str, status: int, says: str
) -> None:
    answer = web.client.post("/subscribe", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == status and says in answer.json()["error"]
    assert snapshot(engine) == []


def test_an_invalid_address_in_the_form_is_shown_next_to_the_field(
    engine: Engine, web: Web
) -> None:
    answer = web.sign_up("no-at-sign")
    assert answer.status_code == 422  # type: ignore[attr-defined]
    assert 'role="alert"' in answer.text and "email" in answer.text  # type: ignore[attr-defined]
    assert snapshot(engine) == []


def test_a_filled_honeypot_gets_the_same_answer_and_nothing_happens(
    engine: Engine, web: Web
) -> None:
    human = web.sign_up("human@example.com")
    bot = web.sign_up("bot@example.com", website="https://spam.example")
    assert (bot.status_code, bot.text) == (human.status_code, human.text)  # type: ignore[attr-defined]
    assert status_of(engine, "bot@example.com") is None
    assert [m.to_address for m in web.mail.sent] == ["human@example.com"]


def test_too_many_sign_ups_from_one_client_are_refused(engine: Engine, settings: Settings) -> None:
    limited = Web(engine, settings.model_copy(update={"subscribe_limit_per_hour": 3}))
    with limited.client:
        answers = [limited.sign_up(f"r{n}@example.com").status_code for n in range(5)]  # type: ignore[attr-defined]
    assert answers == [200, 200, 200, 429, 429]
    assert status_of(engine, "r3@example.com") is None


def test_local_attempts_forget_old_attempts_and_keep_clients_apart() -> None:
    attempts = LocalAttempts(2, window_s=0.2)
    assert [attempts.allow("a") for _ in range(3)] == [True, True, False]
    assert attempts.allow("b")
    import time

    time.sleep(0.25)
    assert attempts.allow("a")


def test_redis_attempts_are_shared_between_limiters(redis_client: redis.Redis) -> None:
    prefix = f"test:signup:{uuid.uuid4().hex}"
    one = RedisAttempts(redis_client, 3, 3600, prefix=prefix)
    two = RedisAttempts(redis_client, 3, 3600, prefix=prefix)
    grants = [one.allow("203.0.113.9"), two.allow("203.0.113.9"), one.allow("203.0.113.9")]
    assert grants == [True, True, True]
    assert not two.allow("203.0.113.9") and one.allow("198.51.100.1")
    keys = list(redis_client.scan_iter(f"{prefix}:*"))
    assert keys and all(0 < int(redis_client.ttl(key)) <= 3601 for key in keys)
    redis_client.delete(*keys)


def test_an_expired_or_edited_confirm_link_changes_nothing(
    engine: Engine, web: Web, settings: Settings
) -> None:
    web.sign_up("slow@example.com")
    found = subscriber(engine, "slow@example.com")
    assert found is not None and found.id is not None
    old = tracking.confirm_token(
        settings.signing_key(), subscriber_id=found.id, issued_at=utcnow() - timedelta(days=8)
    )
    path = web.confirm_path("slow@example.com")
    for bad in (f"/confirm/{old}", path + "x", path.replace("/confirm/", "/confirm/A")):
        assert web.client.get(bad).status_code == 400
        assert web.client.post(bad).status_code == 400
    assert status_of(engine, "slow@example.com") == SubscriberStatus.PENDING


def test_a_failed_confirmation_mail_lets_the_reader_ask_again_at_once(
    engine: Engine, web: Web
) -> None:
    class Refusing(MemoryTransport):
        def send(self, messages: object) -> list[SendResult]:
            return [SendResult(failure=FailureKind.PERMANENT, reason="refused")]

    web.app.state.transport = Refusing()
    web.sign_up("retry@example.com")
    web.app.state.transport = web.mail
    web.sign_up("retry@example.com")
    assert [m.to_address for m in web.mail.sent] == ["retry@example.com"]


# --- Leaving and coming back ------------------------------------------------------------------


@pytest.fixture
def issue(engine: Engine, settings: Settings) -> MemoryTransport:
    store_payload(engine, example_payload())
    add_subscribers(engine, "ada@example.com")
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    return transport


def unsubscribe_path(issue: MemoryTransport) -> str:
    (message,) = issue.sent
    return message.headers["List-Unsubscribe"].split(">")[0].lstrip("<").removeprefix(BASE)


def test_resubscribe_goes_through_confirmation_again(
    engine: Engine, web: Web, issue: MemoryTransport
) -> None:
    path = unsubscribe_path(issue)
    page = web.client.post(path)
    assert "Subscribe again" in page.text
    resubscribe = re.search(r'action="(/resubscribe/[^"]+)"', page.text)
    assert resubscribe
    answer = web.client.post(resubscribe.group(1))
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert status_of(engine, "ada@example.com") == SubscriberStatus.UNSUBSCRIBED  # not yet

    web.client.post(web.confirm_path("ada@example.com"))
    assert status_of(engine, "ada@example.com") == SubscriberStatus.ACTIVE
    assert "Subscribe again" not in web.client.get(path).text


def test_a_confirm_link_from_before_an_unsubscribe_cannot_bring_the_reader_back(
    engine: Engine, web: Web
) -> None:
    web.sign_up("fickle@example.com")
    path = web.confirm_path("fickle@example.com")
    web.client.post(path)
    with db.session_scope(engine) as session:
        subscribers.unsubscribe(session, "fickle@example.com")
    assert web.client.post(path).status_code == 400
    assert status_of(engine, "fickle@example.com") == SubscriberStatus.UNSUBSCRIBED


def test_a_bounced_address_is_not_mailed_on_resubscribe_nor_confirmed(
    engine: Engine, web: Web, issue: MemoryTransport, settings: Settings
) -> None:
    with db.session_scope(engine) as session:
        ada = subscribers.find(session, "ada@example.com")
        assert ada is not None and ada.id is not None
        ada.status = SubscriberStatus.BOUNCED
        session.add(ada)
        ada_id = ada.id
    answer = web.client.post(f"/resubscribe/{unsubscribe_path(issue).split('/')[-1]}")
    assert answer.status_code == 200 and web.mail.sent == []
    token = tracking.confirm_token(settings.signing_key(), subscriber_id=ada_id, issued_at=utcnow())
    refused = web.client.post(f"/confirm/{token}")
    assert "cannot be subscribed" in refused.text
    assert status_of(engine, "ada@example.com") == SubscriberStatus.BOUNCED


def test_sign_up_and_confirm_are_recorded_as_events(engine: Engine, web: Web) -> None:
    web.sign_up("events@example.com")
    web.client.post(web.confirm_path("events@example.com"))
    with db.session_scope(engine) as session:
        kinds = [e.kind for e in session.exec(select(Event).order_by(Event.id))]  # type: ignore[arg-type]
    assert kinds == [EventKind.SUBSCRIBE, EventKind.CONFIRM]
