"""POST /hooks/ses: signed SES events suppress bounced and complaining readers, exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import col, select

from tests.helpers import add_subscribers, example_payload, send_week, store_payload
from tests.sns_signing import (
    NOW,
    SUBSCRIBE_URL,
    FakeFetcher,
    body,
    confirmation,
    notification,
    verifier,
)
from worker import db
from worker.config import Settings
from worker.models import Delivery, DeliveryState, Event, EventKind, Subscriber, SubscriberStatus
from worker.sns import Verifier
from worker.transports.base import FailureKind
from worker.transports.memory import MemoryTransport
from worker.web import create_app, hooks

ADA, GRACE = "ada@example.com", "grace@example.com"


@dataclass
class Hook:
    client: TestClient
    app: FastAPI
    fetcher: FakeFetcher
    visits: list[str]

    def post(self, fields: dict[str, str]) -> str:
        """Post a signed message; the answer's status and text, e.g. "200 recorded 1, …"."""
        answer = self.client.post(
            "/hooks/ses", content=body(fields), headers={"Content-Type": "text/plain"}
        )
        return f"{answer.status_code} {answer.text}"


def with_hook_route(app: FastAPI) -> FastAPI:
    # Until create_app includes the router itself.
    if "/hooks/ses" not in {getattr(route, "path", None) for route in app.routes}:
        app.include_router(hooks.router)
    return app


@pytest.fixture
def hook(engine: Engine, settings: Settings) -> Iterator[Hook]:
    app = with_hook_route(create_app(settings))
    app.state.engine = engine
    fetcher = FakeFetcher()
    visits: list[str] = []
    app.state.sns_verifier = verifier(fetcher)
    app.state.sns_visit = visits.append
    with TestClient(app) as client:
        yield Hook(client=client, app=app, fetcher=fetcher, visits=visits)


@pytest.fixture
def sent(engine: Engine, settings: Settings) -> MemoryTransport:
    """The 2026-W47 issue sent to Ada and Grace."""
    store_payload(engine, example_payload())
    add_subscribers(engine, ADA, GRACE)
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    return transport


def delivery_to(engine: Engine, email: str) -> Delivery:
    with db.session_scope(engine) as session:
        statement = (
            select(Delivery)
            .join(Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id))
            .where(Subscriber.email == email)
            .order_by(col(Delivery.id))
        )
        found = session.exec(statement).first()
        assert found is not None, f"no delivery to {email}"
        return found


def reader(engine: Engine, email: str) -> Subscriber:
    with db.session_scope(engine) as session:
        return session.exec(select(Subscriber).where(Subscriber.email == email)).one()


def events(engine: Engine) -> list[Event]:
    with db.session_scope(engine) as session:
        return list(session.exec(select(Event).order_by(col(Event.id))))


def provider_events(engine: Engine) -> list[Event]:
    return [event for event in events(engine) if event.provider_event_id is not None]


def ses_mail(sent: Delivery | None, to: str, *, message_id: str | None = None) -> dict[str, Any]:
    """SES's `mail` object for our message to `to` (with original headers included)."""
    headers = [{"name": "From", "value": "verdicts@example.org"}, {"name": "To", "value": to}]
    if sent is not None:
        tag = f"e{sent.edition_id}-d{sent.id}"
        headers.append({"name": "X-Verdicts-Delivery", "value": tag})
    return {
        "timestamp": "2026-11-24T11:50:00.000Z",
        "source": "verdicts@example.org",
        "messageId": message_id or (sent.provider_message_id if sent else "unknown-id"),
        "destination": [to],
        "headersTruncated": False,
        "headers": headers,
    }


def bounce(
    sent: Delivery, to: str, *, bounce_type: str = "Permanent", shape: str = "eventType"
) -> dict[str, Any]:
    return {
        shape: "Bounce",
        "mail": ses_mail(sent, to),
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General" if bounce_type == "Permanent" else "MailboxFull",
            "timestamp": "2026-11-24T11:51:00.000Z",
            "feedbackId": "0100018c-feedback",
            "bouncedRecipients": [
                {
                    "emailAddress": to,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
        },
    }


def complaint(sent: Delivery, to: str) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "mail": ses_mail(sent, to),
        "complaint": {
            "complainedRecipients": [{"emailAddress": to}],
            "timestamp": "2026-11-24T11:55:00.000Z",
            "complaintFeedbackType": "abuse",
        },
    }


def delivered(sent: Delivery, to: str, *, message_id: str | None = None) -> dict[str, Any]:
    return {
        "eventType": "Delivery",
        "mail": ses_mail(sent, to, message_id=message_id),
        "delivery": {
            "timestamp": "2026-11-24T11:50:02.000Z",
            "recipients": [to],
            "smtpResponse": "250 2.0.0 OK",
        },
    }


# Bounces, complaints, deliveries, opens and clicks


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_permanent_bounce_suppresses_the_reader_once(
    engine: Engine, sent: MemoryTransport, hook: Hook, version: str
) -> None:
    ada = delivery_to(engine, ADA)
    signed = notification(bounce(ada, ADA), version=version)
    assert hook.post(signed) == "200 recorded 1, repeated 0"
    assert hook.post(signed) == "200 recorded 0, repeated 1"  # SNS retried the same message
    bounced = reader(engine, ADA)
    assert bounced.status == SubscriberStatus.BOUNCED and bounced.bounced_at is not None
    assert reader(engine, GRACE).status == SubscriberStatus.ACTIVE
    (event,) = provider_events(engine)
    assert event.kind == EventKind.BOUNCE
    assert (event.subscriber_id, event.delivery_id, event.edition_id) == (
        bounced.id,
        ada.id,
        ada.edition_id,
    )
    assert "General" in event.detail and "550 5.1.1 user unknown" in event.detail
    assert not event.machine


def test_an_identity_notification_bounce_counts_the_same(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    ada = delivery_to(engine, ADA)
    assert hook.post(notification(bounce(ada, ADA, shape="notificationType"))).startswith("200")
    assert reader(engine, ADA).status == SubscriberStatus.BOUNCED


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_a_transient_bounce_is_recorded_and_the_reader_kept(
    engine: Engine, sent: MemoryTransport, hook: Hook, bounce_type: str
) -> None:
    ada = delivery_to(engine, ADA)
    assert hook.post(notification(bounce(ada, ADA, bounce_type=bounce_type))).startswith("200")
    assert reader(engine, ADA).status == SubscriberStatus.ACTIVE
    (event,) = provider_events(engine)
    assert event.kind == EventKind.BOUNCE and "transient" in event.detail


def test_a_complaint_marks_the_reader_complained(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    grace = delivery_to(engine, GRACE)
    assert hook.post(notification(complaint(grace, GRACE))) == "200 recorded 1, repeated 0"
    complained = reader(engine, GRACE)
    assert complained.status == SubscriberStatus.COMPLAINED
    assert complained.complained_at is not None
    (event,) = provider_events(engine)
    assert event.kind == EventKind.COMPLAINT and event.delivery_id == grace.id
    assert "abuse" in event.detail


def test_a_complaint_is_not_downgraded_by_a_later_bounce(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    ada = delivery_to(engine, ADA)
    hook.post(notification(complaint(ada, ADA), message_id="first"))
    hook.post(notification(bounce(ada, ADA), message_id="second"))
    assert reader(engine, ADA).status == SubscriberStatus.COMPLAINED
    assert [event.kind for event in provider_events(engine)] == [
        EventKind.COMPLAINT,
        EventKind.BOUNCE,
    ]


def test_a_delivery_settles_an_uncertain_send_found_by_its_header(
    engine: Engine, settings: Settings, hook: Hook
) -> None:
    store_payload(engine, example_payload())
    add_subscribers(engine, ADA, GRACE)
    transport = MemoryTransport()
    transport.fail_next(ADA, FailureKind.UNKNOWN, reason="read timeout")
    send_week(engine, settings, transport)
    before = delivery_to(engine, ADA)
    assert before.state == DeliveryState.UNCERTAIN and before.provider_message_id is None

    signed = notification(delivered(before, ADA, message_id="0100018c-ses-message"))
    assert hook.post(signed) == "200 recorded 1, repeated 0"
    after = delivery_to(engine, ADA)
    assert after.state == DeliveryState.SENT
    assert after.provider_message_id == "0100018c-ses-message"
    (event,) = provider_events(engine)
    assert event.kind == EventKind.DELIVERY and event.delivery_id == before.id
    assert reader(engine, ADA).status == SubscriberStatus.ACTIVE


def test_a_header_naming_another_readers_delivery_is_not_trusted(
    engine: Engine, settings: Settings, hook: Hook
) -> None:
    store_payload(engine, example_payload())
    add_subscribers(engine, ADA, GRACE)
    transport = MemoryTransport()
    transport.fail_next(GRACE, FailureKind.UNKNOWN, reason="read timeout")
    send_week(engine, settings, transport)
    graces = delivery_to(engine, GRACE)

    event_for_ada = delivered(graces, ADA, message_id="0100018c-not-ours")
    assert hook.post(notification(event_for_ada)).startswith("200")
    untouched = delivery_to(engine, GRACE)
    assert untouched.state == DeliveryState.UNCERTAIN and untouched.provider_message_id is None
    (event,) = provider_events(engine)
    assert event.subscriber_id == reader(engine, ADA).id and event.delivery_id is None


def test_ses_opens_and_clicks_are_recorded_with_their_user_agent(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    ada = delivery_to(engine, ADA)
    agent = "Mozilla/5.0 (Windows NT 10.0) Thunderbird/128.0"
    opened = {
        "eventType": "Open",
        "mail": ses_mail(ada, ADA),
        "open": {"timestamp": "2026-11-24T11:58:00.000Z", "userAgent": agent, "ipAddress": "x"},
    }
    clicked = {
        "eventType": "Click",
        "mail": ses_mail(ada, ADA),
        "click": {
            "timestamp": "2026-11-24T11:59:00.000Z",
            "userAgent": agent,
            "link": "https://verdicts.example.org/archive/x",
        },
    }
    hook.post(notification(opened, message_id="open-1"))
    hook.post(notification(clicked, message_id="click-1"))
    first, second = provider_events(engine)
    assert (first.kind, first.url, first.user_agent) == (EventKind.OPEN, None, agent)
    assert (second.kind, second.url) == (EventKind.CLICK, "https://verdicts.example.org/archive/x")
    assert all(e.detail == "from SES" and not e.machine for e in (first, second))
    assert all(e.delivery_id == ada.id for e in (first, second))
    assert reader(engine, ADA).status == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("event_type", ["Send", "Reject", "DeliveryDelay", "RenderingFailure"])
def test_other_ses_event_types_are_ignored(
    engine: Engine, sent: MemoryTransport, hook: Hook, event_type: str
) -> None:
    ada = delivery_to(engine, ADA)
    answer = hook.post(notification({"eventType": event_type, "mail": ses_mail(ada, ADA)}))
    assert answer.startswith("200 ignored")
    assert provider_events(engine) == []


def test_a_bounce_for_an_address_we_do_not_know_records_nothing(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    ada = delivery_to(engine, ADA)
    stranger = bounce(ada, "stranger@example.net")
    stranger["mail"]["messageId"] = "someone-elses-message"
    assert hook.post(notification(stranger)) == "200 recorded 0, repeated 0"
    assert provider_events(engine) == []
    assert reader(engine, ADA).status == SubscriberStatus.ACTIVE


def test_a_bounced_reader_is_skipped_by_the_next_issue(
    engine: Engine, settings: Settings, sent: MemoryTransport, hook: Hook
) -> None:
    hook.post(notification(bounce(delivery_to(engine, ADA), ADA)))
    next_week = example_payload()
    next_week["slug"] = "next-week-comparison"
    next_week["published_at"] = "2026-11-26T10:00:00Z"
    store_payload(engine, next_week)
    transport = MemoryTransport()
    send_week(engine, settings, transport, week="2026-W48")
    assert [message.to_address for message in transport.sent] == [GRACE]


# Refusals: nothing changes


def assert_unchanged(engine: Engine) -> None:
    assert provider_events(engine) == []
    assert {reader(engine, a).status for a in (ADA, GRACE)} == {SubscriberStatus.ACTIVE}


def test_a_message_changed_after_signing_is_refused(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    signed = notification(bounce(delivery_to(engine, ADA), ADA))
    forged = {**signed, "Message": signed["Message"].replace('"Permanent"', '"Permanenu"', 1)}
    assert forged != signed
    assert hook.post(forged) == "403 refused: signature does not match"
    assert_unchanged(engine)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
    ],
)
def test_a_certificate_from_a_foreign_host_is_refused_unfetched(
    engine: Engine, sent: MemoryTransport, hook: Hook, url: str
) -> None:
    answer = hook.post(notification(bounce(delivery_to(engine, ADA), ADA), cert_url=url))
    assert answer.startswith("403 refused: SigningCertURL")
    assert hook.fetcher.calls == []
    assert_unchanged(engine)


def test_a_message_from_an_unknown_topic_is_refused(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    foreign = "arn:aws:sns:us-east-1:999999999999:not-ours"
    answer = hook.post(notification(bounce(delivery_to(engine, ADA), ADA), topic=foreign))
    assert answer == "403 refused: topic is not allowed"
    assert_unchanged(engine)


def test_a_message_two_hours_old_is_refused(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    old = notification(bounce(delivery_to(engine, ADA), ADA), sent_at=NOW - timedelta(hours=2))
    assert hook.post(old) == "403 refused: message is older than one hour"
    assert_unchanged(engine)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        b"\x00\xff",
        b"[]",
        b'{"Type": "Notification"}',
        b'{"Type": "Nope"}',
        b"[" * 100_000,
    ],
)
def test_a_body_that_is_no_sns_message_is_a_bad_request(
    engine: Engine, sent: MemoryTransport, hook: Hook, raw: bytes
) -> None:
    answer = hook.client.post("/hooks/ses", content=raw)
    assert answer.status_code == 400 and answer.text.startswith("bad request")
    assert_unchanged(engine)


def test_a_body_over_the_size_limit_is_refused_unread(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    answer = hook.client.post("/hooks/ses", content=b"{" + b" " * hooks.MAX_BODY_BYTES + b"}")
    assert answer.status_code == 413
    assert hook.fetcher.calls == []


@pytest.mark.parametrize("message", ["this is not JSON", "[1, 2]", '{"eventType": 5}'])
def test_a_verified_message_that_is_no_ses_event_is_ignored(
    engine: Engine, sent: MemoryTransport, hook: Hook, message: str
) -> None:
    # Authentic but unusable (a test publish from the console, say): 200 so SNS does not retry.
    assert hook.post(notification(message)).startswith("200 ignored")
    assert_unchanged(engine)


def test_a_bounce_of_the_wrong_shape_changes_nothing(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    odd = {"eventType": "Bounce", "mail": "m", "bounce": {"bouncedRecipients": ["x", 3, None]}}
    assert hook.post(notification(odd)) == "200 recorded 0, repeated 0"
    assert_unchanged(engine)


# Subscription handshakes


def test_a_subscription_to_an_allowed_topic_is_confirmed(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    assert hook.post(confirmation()) == "200 subscription confirmed"
    assert hook.visits == [SUBSCRIBE_URL]
    assert_unchanged(engine)


def test_a_subscription_to_another_topic_is_refused_unvisited(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    foreign = "arn:aws:sns:us-east-1:999999999999:not-ours"
    assert hook.post(confirmation(topic=foreign)) == "403 refused: topic is not allowed"
    assert hook.visits == []


def test_an_unsubscribe_confirmation_is_only_noted(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    assert hook.post(confirmation(kind="UnsubscribeConfirmation")) == "200 noted"
    assert hook.visits == []
    assert_unchanged(engine)


def test_without_an_allow_list_the_default_verifier_refuses_everything(
    engine: Engine, settings: Settings, sent: MemoryTransport
) -> None:
    app = with_hook_route(create_app(settings))  # no SNS_TOPIC_ARNS in the settings
    app.state.engine = engine
    with TestClient(app) as client:
        answer = client.post("/hooks/ses", content=body(notification({"eventType": "Bounce"})))
    assert (answer.status_code, answer.text) == (403, "refused: topic is not allowed")
    assert isinstance(app.state.sns_verifier, Verifier)
    assert app.state.sns_verifier.topics == frozenset()


def test_the_response_names_nothing_from_the_message(
    engine: Engine, sent: MemoryTransport, hook: Hook
) -> None:
    signed = notification(bounce(delivery_to(engine, ADA), ADA))
    answer = hook.post(signed)
    assert ADA not in answer and json.loads(signed["Message"])["mail"]["messageId"] not in answer
