"""Small builders the tests share."""

from __future__ import annotations

import copy
import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tests.conftest import EXAMPLE
from worker import comparisons, db, runner, runtime, subscribers, weekly
from worker.config import Settings
from worker.models import DeliveryState, Schedule, utcnow
from worker.ratelimit import RateLimiter, Unlimited
from worker.transports.base import Transport


def parse(data: bytes) -> EmailMessage:
    """A whole RFC 5322 message parsed the modern way (raises if it is not one)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def example_payload() -> dict[str, Any]:
    return copy.deepcopy(json.loads(EXAMPLE.read_text()))


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.write_text(json.dumps(payload, ensure_ascii=False))
    return path


def store_payload(engine: Engine, payload: dict[str, Any]) -> None:
    doc = comparisons.parse_document(json.dumps(payload).encode(), source="test.json")
    with db.session_scope(engine) as session:
        comparisons.store(session, doc)


def add_subscribers(engine: Engine, *emails: str) -> None:
    with db.session_scope(engine) as session:
        for email in emails:
            subscribers.add(session, email, name=None, source="test")


def send_week(
    engine: Engine,
    settings: Settings,
    transport: Transport,
    *,
    week: str = "2026-W47",
    dry_run: bool = False,
    limiter: RateLimiter | None = None,
) -> weekly.WeeklyResult:
    """What `send-weekly` does on the embedded setup: prepare, then run the actors in-process."""
    runtime.install(runtime.Runtime(settings, engine, transport, limiter or Unlimited()))
    result = weekly.prepare_week(engine, settings, week=week, dry_run=dry_run)
    if result.outcome == weekly.Outcome.READY:
        assert result.edition is not None and result.edition.id is not None
        runner.send_in_process(
            engine, result.edition.id, lease_s=settings.send_lease_s, progress=None
        )
    return result


def edition_counts(engine: Engine, edition_id: int = 1) -> dict[DeliveryState, int]:
    return runner.counts(engine, edition_id)


def require_approval(engine: Engine) -> None:
    """The weekly schedule, made to hold each edition as a draft until an editor approves it."""
    with db.session_scope(engine) as session:
        session.add(
            Schedule(
                name="weekly",
                cron="0 9 * * MON",
                timezone="UTC",
                require_approval=True,
                created_at=utcnow(),
            )
        )
