"""The SES v2 transport over real HTTP: boto3 → (fault proxy →) the local SES emulator."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from sqlalchemy import Engine

from tests.helpers import add_subscribers, edition_counts, example_payload, send_week, store_payload
from tests.ses_emulator import FaultProxy, Faults, stored
from worker import control
from worker.config import Settings
from worker.models import DeliveryState
from worker.transports.base import FailureKind, OutgoingMessage
from worker.transports.ses import SesTransport

FROM = "Weekly AI Tool Verdicts <verdicts@example.org>"


def message(to: str, tag: str = "e1-d1") -> OutgoingMessage:
    return OutgoingMessage(
        from_address=FROM,
        to_address=to,
        to_name="",
        subject="Zoë’s pick ✓",
        html="<p>Hello <a href='https://verdicts.example.org/unsubscribe/abc'>unsubscribe</a></p>",
        text="Hello\nUnsubscribe: https://verdicts.example.org/unsubscribe/abc\n",
        message_id=f"<{tag}@example.org>",
        tag=tag,
        headers={
            "List-Unsubscribe": "<https://verdicts.example.org/unsubscribe/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def transport(url: str, *, read_timeout_s: int = 30) -> SesTransport:
    client = boto3.client(
        "sesv2",
        region_name="us-east-1",
        endpoint_url=url,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout_s),
    )
    return SesTransport(region="us-east-1", client=client, configuration_set="newsletter")


def test_a_message_reaches_ses_with_its_content(ses: str) -> None:
    (result,) = transport(ses).send([message("ada@example.com")])
    assert result.ok and result.provider_id
    (email,) = stored(ses)
    assert email["messageId"] == result.provider_id
    assert email["destination"]["to"] == ["ada@example.com"]
    assert email["subject"] == "Zoë’s pick ✓"
    assert "https://verdicts.example.org/unsubscribe/abc" in email["body"]["text"]


def test_the_transport_built_from_settings_talks_to_the_endpoint(ses: str) -> None:
    made = SesTransport(region="us-east-1", endpoint_url=ses)
    assert made.send([message("grace@example.com")])[0].ok
    assert made.max_send_rate() == 14.0  # the account's MaxSendRate, from GetAccount


def test_throttling_is_transient(ses: str) -> None:
    with FaultProxy(ses, Faults(throttle_share=1.0)) as proxy:
        (result,) = transport(proxy.url).send([message("ada@example.com")])
    assert result.failure == FailureKind.TRANSIENT
    assert "TooManyRequestsException" in result.reason
    assert stored(ses) == []


def test_a_server_error_is_transient(ses: str) -> None:
    with FaultProxy(ses, Faults(server_error_share=1.0)) as proxy:
        (result,) = transport(proxy.url).send([message("ada@example.com")])
    assert result.failure == FailureKind.TRANSIENT


def test_a_rejected_recipient_fails_alone(ses: str) -> None:
    faults = Faults(reject_addresses={"bad@example.com"})
    with FaultProxy(ses, faults) as proxy:
        results = transport(proxy.url).send(
            [
                message("ada@example.com", "e1-d1"),
                message("bad@example.com", "e1-d2"),
                message("linus@example.com", "e1-d3"),
            ]
        )
    assert [r.failure for r in results] == [None, FailureKind.PERMANENT, None]
    assert "MessageRejected" in results[1].reason
    assert sorted(e["destination"]["to"][0] for e in stored(ses)) == [
        "ada@example.com",
        "linus@example.com",
    ]


def test_an_account_level_refusal_stops_the_batch(ses: str) -> None:
    faults = Faults(account_error="SendingPausedException")
    with FaultProxy(ses, faults) as proxy:
        results = transport(proxy.url).send(
            [message(f"r{i}@example.com", f"e1-d{i}") for i in range(5)]
        )
    assert {r.failure for r in results} == {FailureKind.ACCOUNT}
    assert faults.calls == 1  # nothing more was attempted after the refusal
    assert "SendingPausedException" in results[0].reason


def test_no_answer_is_unknown_not_retried(ses: str) -> None:
    with FaultProxy(ses, Faults(silent_s=2.5)) as proxy:
        (result,) = transport(proxy.url, read_timeout_s=1).send([message("ada@example.com")])
    assert result.failure == FailureKind.UNKNOWN


def test_nothing_listening_is_transient() -> None:
    (result,) = transport("http://127.0.0.1:9").send([message("ada@example.com")])
    assert result.failure == FailureKind.TRANSIENT


def test_a_weekly_send_with_30_percent_throttling_delivers_each_message_once(
    ses: str, engine: Engine, settings: Settings
) -> None:
    readers = [f"reader{i}@example.com" for i in range(60)]
    store_payload(engine, example_payload())
    add_subscribers(engine, *readers)
    faults = Faults(throttle_share=0.3)
    with FaultProxy(ses, faults) as proxy:
        send_week(engine, settings, transport(proxy.url))
    received = [e["destination"]["to"][0] for e in stored(ses)]
    assert sorted(received) == sorted(readers)  # all delivered, none twice
    assert faults.injected > 0
    assert edition_counts(engine)[DeliveryState.SENT] == 60
    assert control.report(engine, 1).retries == faults.injected


def test_an_account_block_mid_send_pauses_the_edition_with_the_reason(
    ses: str, engine: Engine, settings: Settings
) -> None:
    store_payload(engine, example_payload())
    add_subscribers(engine, "ada@example.com", "grace@example.com")
    faults = Faults(account_error="AccountSuspendedException")
    with FaultProxy(ses, faults) as proxy:
        send_week(engine, settings, transport(proxy.url))
    report = control.report(engine, 1)
    assert report.edition.status == "paused"
    assert "AccountSuspendedException" in report.edition.status_reason
    assert faults.calls == 1 and stored(ses) == []
    assert report.counts[DeliveryState.PENDING] == 2


@pytest.mark.parametrize("code", ["MessageRejected", "BadRequestException"])
def test_permanent_codes_are_classified_permanent(code: str) -> None:
    from botocore.exceptions import ClientError

    from worker.transports.ses import classify

    error = ClientError(
        {"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        "SendEmail",
    )
    assert classify(error).failure == FailureKind.PERMANENT
