"""SNS message verification: signatures v1 and v2, topics, age, certificate URL and validity."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.sns_signing import (
    CERT_URL,
    NOW,
    SUBSCRIBE_URL,
    TOPIC,
    FakeFetcher,
    body,
    confirmation,
    notification,
    sign,
    signing_cert,
    verifier,
)
from worker import sns
from worker.sns import MessageType, SnsMalformed, SnsRejected, SnsUnreachable

BOUNCE = {"eventType": "Bounce", "mail": {"messageId": "m-1"}}


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_notification_verifies(version: str) -> None:
    fetcher = FakeFetcher()
    message = verifier(fetcher).check(body(notification(BOUNCE, version=version)))
    assert message.type == MessageType.NOTIFICATION
    assert message.topic_arn == TOPIC
    assert json.loads(message.message) == BOUNCE
    assert fetcher.calls == [CERT_URL]


def test_the_subject_is_signed_when_there_is_one() -> None:
    signed = notification(BOUNCE, subject="Amazon SES Email Event Notification")
    verifier(FakeFetcher()).check(body(signed))
    with pytest.raises(SnsRejected, match="signature does not match"):
        verifier(FakeFetcher()).check(body({**signed, "Subject": "Something else"}))


def test_a_null_subject_counts_as_absent() -> None:
    verifier(FakeFetcher()).check(body({**notification(BOUNCE), "Subject": None}))  # type: ignore[dict-item]


@pytest.mark.parametrize("version", ["1", "2"])
def test_one_changed_byte_of_the_message_is_refused(version: str) -> None:
    signed = notification(BOUNCE, version=version)
    forged = {**signed, "Message": signed["Message"].replace("m-1", "m-2")}
    with pytest.raises(SnsRejected, match="signature does not match"):
        verifier(FakeFetcher()).check(body(forged))


def test_a_signature_by_another_key_is_refused() -> None:
    other = signing_cert(not_before=NOW - timedelta(days=1))  # a different key pair
    forged = sign(notification(BOUNCE), cert=other)  # the URL still serves the real one
    with pytest.raises(SnsRejected, match="signature does not match"):
        verifier(FakeFetcher()).check(body(forged))


def test_a_message_signed_for_another_type_is_refused() -> None:
    # Type is among the signed fields: a confirmation cannot be passed off as another kind.
    signed = confirmation()
    retyped = {**signed, "Type": "UnsubscribeConfirmation"}
    with pytest.raises(SnsRejected, match="signature does not match"):
        verifier(FakeFetcher()).check(body(retyped))


def test_a_signature_that_is_not_base64_is_refused() -> None:
    signed = {**notification(BOUNCE), "Signature": "not base64 at all!"}
    with pytest.raises(SnsRejected, match="not base64"):
        verifier(FakeFetcher()).check(body(signed))


def test_an_unsupported_signature_version_is_refused() -> None:
    signed = {**notification(BOUNCE), "SignatureVersion": "3"}
    with pytest.raises(SnsRejected, match="unsupported"):
        verifier(FakeFetcher()).check(body(signed))


def test_an_unknown_topic_is_refused_before_anything_is_fetched() -> None:
    fetcher = FakeFetcher()
    signed = notification(BOUNCE, topic="arn:aws:sns:us-east-1:999999999999:someone-else")
    with pytest.raises(SnsRejected, match="topic is not allowed"):
        verifier(fetcher).check(body(signed))
    assert fetcher.calls == []


def test_an_empty_allow_list_refuses_every_topic() -> None:
    with pytest.raises(SnsRejected, match="topic is not allowed"):
        verifier(FakeFetcher(), topics=frozenset()).check(body(notification(BOUNCE)))


@pytest.mark.parametrize(
    ("age", "accepted"),
    [
        (timedelta(minutes=59), True),
        (timedelta(hours=2), False),
        (-timedelta(minutes=4), True),
        (-timedelta(minutes=10), False),
    ],
)
def test_only_a_fresh_message_is_accepted(age: timedelta, accepted: bool) -> None:
    signed = body(notification(BOUNCE, sent_at=NOW - age))
    if accepted:
        verifier(FakeFetcher()).check(signed)
    else:
        with pytest.raises(SnsRejected, match=r"older than one hour|future"):
            verifier(FakeFetcher()).check(signed)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/x.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://user@sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.txt",
        "https://sqs.us-east-1.amazonaws.com/x.pem",
        "https://sns.amazonaws.com/x.pem",
        "sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazon\taws.com/SimpleNotificationService-test.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
        # S3 bucket hosts: anyone owning a bucket called "sns" serves files there.
        "https://sns.s3.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.s3-ap-southeast-2.amazonaws.com/SimpleNotificationService-test.pem",
        "https://sns.s3-accelerate.amazonaws.com/SimpleNotificationService-test.pem",
        "https://[sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com]/x.pem",
    ],
)
def test_a_certificate_url_off_the_sns_hosts_is_refused_without_fetching(url: str) -> None:
    fetcher = FakeFetcher()
    with pytest.raises(SnsRejected, match="SigningCertURL"):
        verifier(fetcher).check(body(notification(BOUNCE, cert_url=url)))
    assert fetcher.calls == []


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        "https://SNS.us-east-1.amazonaws.com:443/SimpleNotificationService-abc.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.ap-southeast-2.amazonaws.com/SimpleNotificationService-abc.pem",
    ],
)
def test_certificate_urls_of_every_sns_region_are_accepted(url: str) -> None:
    sns.check_sns_url(url, what="SigningCertURL", pem=True)


def test_the_certificate_is_fetched_once_for_many_messages() -> None:
    fetcher = FakeFetcher()
    checker = verifier(fetcher)
    for number in range(5):
        checker.check(body(notification(BOUNCE, message_id=f"id-{number}")))
    assert fetcher.calls == [CERT_URL]


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (NOW - timedelta(days=400), NOW - timedelta(days=1)),
        (NOW + timedelta(days=1), NOW + timedelta(days=400)),
    ],
)
def test_a_certificate_outside_its_validity_is_refused(
    not_before: datetime, not_after: datetime
) -> None:
    cert = signing_cert(not_before=not_before, not_after=not_after)
    signed = sign(notification(BOUNCE), cert=cert)  # signed again, by this certificate's key
    with pytest.raises(SnsRejected, match="not valid now"):
        verifier(FakeFetcher(pem=cert.pem)).check(body(signed))


def test_a_certificate_url_serving_no_certificate_is_refused() -> None:
    with pytest.raises(SnsRejected, match="PEM"):
        verifier(FakeFetcher(pem=b"<html>maintenance</html>")).check(body(notification(BOUNCE)))


def test_an_unreachable_certificate_is_worth_a_retry() -> None:
    url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-gone.pem"
    with pytest.raises(SnsUnreachable):
        verifier(FakeFetcher()).check(body(notification(BOUNCE, cert_url=url)))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"Type=Notification", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"Type": "Notification"}', "missing"),
        (b'{"Type": "Hello"}', "unknown Type"),
        (b'{"Type": 7}', "must be a string"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_a_body_that_is_no_sns_message_is_malformed(raw: bytes, reason: str) -> None:
    with pytest.raises(SnsMalformed, match=reason):
        sns.parse_message(raw)


def test_a_missing_field_or_bad_timestamp_is_malformed() -> None:
    signed = notification(BOUNCE)
    without_id = {k: v for k, v in signed.items() if k != "MessageId"}
    with pytest.raises(SnsMalformed, match="MessageId is missing"):
        sns.parse_message(body(without_id))
    with pytest.raises(SnsMalformed, match="Timestamp"):
        sns.parse_message(body({**signed, "Timestamp": "yesterday"}))
    with pytest.raises(SnsMalformed, match="Message must be a string"):
        sns.parse_message(json.dumps({**signed, "Message": {"eventType": "Bounce"}}).encode())


def test_a_subscription_is_confirmed_by_visiting_its_url() -> None:
    visits: list[str] = []
    message = verifier(FakeFetcher()).check(body(confirmation()))
    sns.confirm_subscription(message, visit=visits.append)
    assert visits == [message.subscribe_url]


def test_a_signed_subscribe_url_off_the_sns_hosts_is_never_visited() -> None:
    visits: list[str] = []
    message = verifier(FakeFetcher()).check(
        body(confirmation(subscribe_url="https://evil.example.com/?Action=ConfirmSubscription"))
    )
    with pytest.raises(SnsRejected, match="SubscribeURL"):
        sns.confirm_subscription(message, visit=visits.append)
    assert visits == []


# The default fetcher and visitor, over a mock HTTP transport (never the network)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """httpx answers like the SNS certificate host: a PEM, a huge body, or a 404."""
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path.endswith("huge.pem"):
            return httpx.Response(200, content=b"x" * (sns.MAX_CERT_BYTES + 1))
        if request.url.path.endswith("gone.pem"):
            return httpx.Response(404)
        return httpx.Response(200, content=signing_cert().pem)

    client = httpx.Client(transport=httpx.MockTransport(answer))

    def stream(method: str, url: str, **options: Any) -> Any:
        assert options["timeout"] == sns.FETCH_TIMEOUT_S
        return client.stream(method, url)

    def get(url: str, **options: Any) -> httpx.Response:
        assert options["timeout"] == sns.FETCH_TIMEOUT_S
        return client.get(url)

    monkeypatch.setattr(httpx, "stream", stream)
    monkeypatch.setattr(httpx, "get", get)
    return requests


def test_the_default_fetcher_returns_the_certificate(aws: list[httpx.Request]) -> None:
    assert sns.fetch_https(CERT_URL) == signing_cert().pem


def test_the_default_fetcher_refuses_a_body_over_the_limit(aws: list[httpx.Request]) -> None:
    with pytest.raises(SnsRejected, match="more than"):
        sns.fetch_https("https://sns.us-east-1.amazonaws.com/huge.pem")


def test_the_default_fetcher_reports_a_missing_certificate_as_unreachable(
    aws: list[httpx.Request],
) -> None:
    with pytest.raises(SnsUnreachable, match="404"):
        sns.fetch_https("https://sns.us-east-1.amazonaws.com/gone.pem")


def test_the_default_visitor_gets_the_subscribe_url(aws: list[httpx.Request]) -> None:
    sns.visit_https(SUBSCRIBE_URL)
    assert [str(request.url) for request in aws] == [SUBSCRIBE_URL]
