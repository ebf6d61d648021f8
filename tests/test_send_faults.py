"""Faults in the middle of a batch: cancels that race a send, senders that blow up, ambiguous
provider errors, a low shared rate, an unreachable Redis. Nothing stranded, nothing twice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis
from botocore.exceptions import ClientError, ConnectionClosedError
from sqlalchemy import Engine

from tests.conftest import EXAMPLE, service_unavailable
from tests.helpers import add_subscribers, edition_counts, example_payload, store_payload
from worker import control, sending, weekly
from worker.config import Settings
from worker.models import DeliveryState, EditionStatus
from worker.ratelimit import RedisTokenBucket, Unlimited
from worker.transports.base import FailureKind, OutgoingMessage, SendResult
from worker.transports.memory import MemoryTransport
from worker.transports.ses import SesTransport, classify


def _started(engine: Engine, settings: Settings, readers: int) -> tuple[int, list[list[int]]]:
    store_payload(engine, example_payload())
    add_subscribers(engine, *[f"r{i}@example.com" for i in range(readers)])
    edition = weekly.prepare_week(engine, settings, week="2026-W47").edition
    assert edition is not None and edition.id is not None
    return edition.id, sending.start_send(engine, edition.id)


class CancelDuringCall(MemoryTransport):
    """The operator cancels while the provider call is in flight; the provider then throttles."""

    def __init__(self, engine: Engine, edition_id: int, lease_s: int) -> None:
        super().__init__()
        self.engine, self.edition_id, self.lease_s = engine, edition_id, lease_s

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        control.cancel(self.engine, self.edition_id, lease_s=self.lease_s)
        return [SendResult(failure=FailureKind.TRANSIENT, reason="throttled") for _ in messages]


def test_a_cancel_during_a_throttled_call_leaves_nothing_pending(
    engine: Engine, settings: Settings
) -> None:
    edition_id, batches = _started(engine, settings, 12)
    transport = CancelDuringCall(engine, edition_id, settings.send_lease_s)
    outcome = sending.send_batch(
        engine, edition_id, batches[0], transport=transport, settings=settings, limiter=Unlimited()
    )
    counts = edition_counts(engine, edition_id)
    assert counts[DeliveryState.PENDING] == 0 and counts[DeliveryState.SENDING] == 0
    assert counts[DeliveryState.SKIPPED] == 12
    assert outcome.retry == []


class ExplodesOnSecondCall(MemoryTransport):
    calls = 0

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("worker killed by its time limit")
        return super().send(messages)


def test_a_sender_interrupted_mid_call_leaves_that_call_uncertain_and_the_rest_pending(
    engine: Engine, settings: Settings
) -> None:
    edition_id, batches = _started(engine, settings, 30)
    transport = ExplodesOnSecondCall()
    with pytest.raises(RuntimeError):
        sending.send_batch(
            engine,
            edition_id,
            batches[0],
            transport=transport,
            settings=settings,
            limiter=Unlimited(),
        )
    counts = edition_counts(engine, edition_id)
    assert counts[DeliveryState.SENT] == sending.CHUNK_SIZE
    assert counts[DeliveryState.UNCERTAIN] == sending.CHUNK_SIZE  # the call that blew up
    assert counts[DeliveryState.PENDING] == 30 - 2 * sending.CHUNK_SIZE
    assert counts[DeliveryState.SENDING] == 0


def test_the_last_batch_does_not_finish_an_edition_a_resend_just_reopened(
    engine: Engine, settings: Settings
) -> None:
    edition_id, batches = _started(engine, settings, 3)
    transport = MemoryTransport()
    sending.send_batch(
        engine,
        edition_id,
        batches[0][:2],
        transport=transport,
        settings=settings,
        limiter=Unlimited(),
    )
    # The third row is claimed by a sender that dies; the operator settles it by resending.
    from worker import db, delivery

    with db.session_scope(engine) as session:
        delivery.claim(session, edition_id, batches[0][2:])
        delivery.hand_over(session, batches[0][2:])
    sending.reconcile(engine, edition_id, lease_s=0)
    assert control.resolve_uncertain(engine, edition_id, resend=True) == 1
    assert sending.finish_if_done(engine, edition_id) is False  # one row is pending again
    assert control.report(engine, edition_id).edition.status == EditionStatus.SENDING


def test_a_daily_quota_throttle_blocks_the_account_instead_of_retrying() -> None:
    error = ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Daily message quota exceeded."},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "SendEmail",
    )
    assert classify(error).failure == FailureKind.ACCOUNT


def test_a_connection_closed_after_the_request_is_unknown_not_retried() -> None:
    class ClosingClient:
        def send_email(self, **_: object) -> dict[str, str]:
            raise ConnectionClosedError(endpoint_url="https://email.us-east-1.amazonaws.com")

    transport = SesTransport(region="us-east-1", client=ClosingClient())
    message = OutgoingMessage(
        from_address="a@example.org",
        to_address="b@example.org",
        to_name="",
        subject="s",
        html="<p>x</p>",
        text="x",
        message_id="<x@example.org>",
        tag="e1-d1",
    )
    (result,) = transport.send([message])
    assert result.failure == FailureKind.UNKNOWN


def test_a_slow_shared_schedule_outlives_its_key_expiry() -> None:
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        client.ping()
    except redis.RedisError as error:
        service_unavailable("Redis", error)
    key = f"test:rate:{uuid.uuid4().hex}"
    slept: list[float] = []
    bucket = RedisTokenBucket(client, 0.1, key=key, sleep=slept.append)
    try:
        for _ in range(8):  # eight senders book eight slots ten seconds apart
            bucket.acquire(1)
        assert max(slept) > 60  # the last slot is more than a minute away…
        assert client.pttl(key) > max(slept) * 1000  # …and the schedule is kept at least that long
    finally:
        client.delete(key)
        client.close()


def test_send_weekly_with_redis_unreachable_is_one_clear_line(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "VAR_DIR": str(tmp_path / "var"),
    }
    newsletter = str(Path(sys.executable).parent / "newsletter")
    for args in (["comparisons", "import", str(EXAMPLE)], ["subscribers", "add", "a@example.com"]):
        subprocess.run([newsletter, *args], env=env, check=True, capture_output=True)
    done = subprocess.run(
        [newsletter, "send-weekly", "--week", "2026-W47"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: Redis unreachable (REDIS_URL)")
    assert "Traceback" not in done.stderr
