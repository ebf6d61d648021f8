"""The fault scenarios. Each sends the sample week to every subscriber while one thing goes wrong,
then settles what is uncertain the way production does (SES delivery events first, the
operator's `deliveries uncertain --resend` for what SES never got) and counts.

Counted against SES's own store: `sent` readers who got the issue, `duplicates` extra copies,
`lost` readers who never got it, `in_flight` deliveries being sent at the moment of the fault,
`uncertain` deliveries the send could not vouch for, `settled` how many of those SES's delivery
events answered.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from faults.deployment import WEEK, Deployment, Services, wait_for
from faults.events import delivery_event
from faults.webhook import Flood
from tests.ses_emulator import Faults
from worker import ses_events
from worker.db import session_scope


@dataclass
class Outcome:
    scenario: str
    round: int
    sent: int
    duplicates: int
    lost: int
    in_flight: int
    uncertain: int
    settled: int
    time_s: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.duplicates and not self.lost and self.uncertain <= self.in_flight


@dataclass(frozen=True)
class Round:
    services: Services
    folder: Path
    subscribers: int
    number: int
    seed: int

    def deployment(self, faults: Faults | None = None) -> Deployment:
        folder = self.folder / f"round-{self.number}"
        folder.mkdir(parents=True, exist_ok=True)
        faults = faults or Faults(seed=self.seed)
        return Deployment(folder, self.services, faults=faults, subscribers=self.subscribers)

    def fault_point(self) -> int:
        """Somewhere between a fifth and two thirds of the way through, varying by round."""
        share = random.Random(self.seed).uniform(0.2, 0.67)
        return int(self.subscribers * share)


Scenario = Callable[[Round], Outcome]


def settle(
    deploy: Deployment, *, name: str, number: int, in_flight: int, started: float
) -> Outcome:
    """Apply SES's delivery events, resend what is still uncertain, and count."""
    time_s = time.monotonic() - started
    uncertain = deploy.states()["uncertain"]
    with session_scope(deploy.db) as session:
        for accepted in list(deploy.faults.accepted):
            ses_events.apply_notification(
                session,
                json.dumps(delivery_event(accepted)),
                notification_id=f"sns-{accepted.message_id}",
            )
    left = deploy.states()["uncertain"]
    if left:
        for edition_id in range(1, len(deploy.edition_statuses()) + 1):
            deploy.newsletter("deliveries", "uncertain", str(edition_id), "--resend")
        deploy.wait_until_sent(editions=len(deploy.edition_statuses()))
    return count(
        deploy,
        name=name,
        number=number,
        in_flight=in_flight,
        uncertain=uncertain,
        settled=uncertain - left,
        time_s=time_s,
    )


def count(
    deploy: Deployment,
    *,
    name: str,
    number: int,
    in_flight: int,
    uncertain: int,
    settled: int,
    time_s: float,
    editions: int = 1,
) -> Outcome:
    received = deploy.received()
    expected = {f"r{i}@example.com" for i in range(deploy.subscribers)}
    return Outcome(
        scenario=name,
        round=number,
        sent=len(expected & set(received)),
        duplicates=sum(copies - editions for copies in received.values() if copies > editions),
        lost=sum(1 for address in expected if received[address] < editions),
        in_flight=in_flight,
        uncertain=uncertain,
        settled=settled,
        time_s=time_s,
    )


def _send_with_fault(round_: Round, name: str, fault: Callable[[Deployment], None]) -> Outcome:
    """Two workers start the send; at the fault point the fault strikes; the send must finish."""
    with round_.deployment() as deploy:
        deploy.start_worker()
        deploy.start_worker()
        deploy.start_scheduler("--tick-s", "1")  # it also re-watches sends Redis forgot
        started = time.monotonic()
        deploy.newsletter("send-weekly", "--week", WEEK)
        deploy.wait_until_accepted(round_.fault_point())
        in_flight = deploy.states()["sending"]
        fault(deploy)
        deploy.wait_until_sent()
        return settle(deploy, name=name, number=round_.number, in_flight=in_flight, started=started)


def worker_killed(round_: Round) -> Outcome:
    """kill -9 of a worker process (and its threads) mid-send; the operator starts another."""

    def fault(deploy: Deployment) -> None:
        deploy.kill(deploy.processes[0])
        deploy.start_worker()

    return _send_with_fault(round_, "worker kill -9", fault)


def redis_restarted(round_: Round) -> Outcome:
    """Redis killed and started again, empty: every queued message and rate slot is gone."""

    def fault(deploy: Deployment) -> None:
        deploy.services.redis.kill()
        time.sleep(1.0)
        deploy.services.redis.start()

    return _send_with_fault(round_, "Redis restart", fault)


def postgres_dropped(round_: Round) -> Outcome:
    """Every PostgreSQL connection of the deployment's processes terminated, twice in a row."""

    def fault(deploy: Deployment) -> None:
        deploy.terminate_backends()
        time.sleep(0.5)
        deploy.terminate_backends()

    return _send_with_fault(round_, "PostgreSQL drop", fault)


def ses_throttling(round_: Round) -> Outcome:
    """SES answers 30% of sends with throttling and 5% with server errors, all send long."""
    faults = Faults(seed=round_.seed, throttle_share=0.3, server_error_share=0.05)
    with round_.deployment(faults) as deploy:
        deploy.start_worker()
        deploy.start_worker()
        started = time.monotonic()
        deploy.newsletter("send-weekly", "--week", WEEK)
        deploy.wait_until_sent()
        outcome = settle(
            deploy,
            name="SES 30% throttle + 5% 500",
            number=round_.number,
            in_flight=0,
            started=started,
        )
        outcome.note = f"{faults.injected:,} errors injected"
        return outcome


FIRE_AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)  # Sunday of the sample comparison's week


def schedulers_racing(round_: Round) -> Outcome:
    """Two schedulers that both believe they lead (no leader lease) fire the same week at once."""
    with round_.deployment() as deploy:
        clock = deploy.folder / "clock.txt"
        clock.write_text((FIRE_AT - timedelta(seconds=5)).isoformat())
        deploy.newsletter("schedules", "add", "sunday", "--cron", "0 9 * * SUN", "--tz", "UTC")
        with deploy.db.begin() as connection:  # as if added before the rehearsed week
            connection.execute(text("UPDATE schedule SET created_at = '2026-11-01T00:00:00Z'"))
        deploy.start_worker()
        deploy.start_worker()
        for _ in range(2):
            deploy.start_scheduler("--solo", "--tick-s", "0.05", "--clock-file", str(clock))
        wait_for(
            lambda: deploy.scalar("SELECT count(*) FROM scheduler_beat") >= 2,
            "both schedulers' heartbeats",
            timeout_s=60,
        )
        started = time.monotonic()
        clock.with_suffix(".tmp").write_text(FIRE_AT.isoformat())
        clock.with_suffix(".tmp").replace(clock)  # both see the fire time at the same tick
        deploy.wait_until_sent()
        time.sleep(1.0)  # a second edition, had the race let one through, would show by now
        outcome = settle(
            deploy, name="two schedulers racing", number=round_.number, in_flight=0, started=started
        )
        editions = len(deploy.edition_statuses())
        fires = deploy.scalar("SELECT count(*) FROM schedule_fire")
        outcome.note = f"{editions} edition(s), {fires} fire row(s)"
        if editions != 1 or fires != 1:
            outcome.duplicates += deploy.subscribers * (editions - 1)
        return outcome


def webhook_flood(round_: Round) -> Outcome:
    """After a send, SNS floods /hooks/ses: every delivery event three times, concurrently, plus
    permanent bounces for 5% of readers, also repeated. Counted: events recorded twice
    (`duplicates`), events that never took effect (`lost`)."""
    with round_.deployment() as deploy:
        deploy.start_worker()
        deploy.start_worker()
        deploy.newsletter("send-weekly", "--week", WEEK)
        deploy.wait_until_sent()
        with Flood(deploy) as flood:
            started = time.monotonic()
            posted = flood.post_all(copies=3, bounce_share=0.05, seed=round_.seed)
            time_s = time.monotonic() - started
        recorded = deploy.scalar("SELECT count(*) FROM event WHERE kind IN ('delivery', 'bounce')")
        unique = deploy.scalar(
            "SELECT count(*) FROM (SELECT DISTINCT delivery_id, subscriber_id, kind FROM event "
            "WHERE kind IN ('delivery', 'bounce')) AS seen"
        )
        delivered = deploy.scalar(
            "SELECT count(DISTINCT delivery_id) FROM event WHERE kind = 'delivery'"
        )
        bounced = deploy.scalar("SELECT count(*) FROM subscriber WHERE status = 'bounced'")
        outcome = count(
            deploy,
            name="webhook flood",
            number=round_.number,
            in_flight=0,
            uncertain=deploy.states()["uncertain"],
            settled=0,
            time_s=time_s,
        )
        outcome.duplicates += recorded - unique
        outcome.lost += (posted.deliveries - delivered) + (posted.bounces - bounced)
        outcome.note = (
            f"{posted.requests:,} posts (each 3 times), "
            f"{posted.requests / max(time_s, 1e-9):.0f}/s, {posted.errors} not 200"
        )
        outcome.lost += posted.errors
        return outcome


SCENARIOS: dict[str, Scenario] = {
    "worker-kill": worker_killed,
    "redis-restart": redis_restarted,
    "postgres-drop": postgres_dropped,
    "ses-throttle": ses_throttling,
    "schedulers-race": schedulers_racing,
    "webhook-flood": webhook_flood,
}
