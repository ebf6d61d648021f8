"""Two `python -m schedules` processes against one PostgreSQL and Redis, a worker process and
the SES emulator, with the schedulers' clock driven across four weekly fire times (one in the
week the clocks go back): four editions, each sent once to each subscriber, even when the leading
scheduler is killed on the way. No real minutes pass: the clock is a file both schedulers read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import text

from faults.deployment import Deployment, Services, wait_for
from tests.helpers import example_payload, write_json
from tests.ses_emulator import Faults, stored

pytestmark = pytest.mark.postgres

READERS = 20
ZONE = "Europe/Berlin"
# Sundays 09:00 in Berlin; the clocks go back early on Sunday 2026-10-25.
FIRES = [
    datetime(2026, 10, 18, 7, 0, tzinfo=UTC),  # 09:00 CEST
    datetime(2026, 10, 25, 8, 0, tzinfo=UTC),  # 09:00 CET, the day the clocks went back
    datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
    datetime(2026, 11, 8, 8, 0, tzinfo=UTC),
]
WEEKS = ["2026-W42", "2026-W43", "2026-W44", "2026-W45"]


class Schedulers:
    """Scheduler processes sharing a clock file."""

    def __init__(self, deploy: Deployment) -> None:
        self.deploy = deploy
        self.clock = deploy.folder / "clock.txt"

    def set_clock(self, now: datetime) -> None:
        temporary = self.clock.with_suffix(".tmp")
        temporary.write_text(now.isoformat())
        temporary.replace(self.clock)  # atomic: a scheduler never reads half a time

    def start(self) -> subprocess.Popen[bytes]:
        return self.deploy.start_scheduler("--tick-s", "0.2", "--clock-file", str(self.clock))


@pytest.fixture
def scheduled(tmp_path: Path, fault_services: Services) -> Iterator[tuple[Deployment, Schedulers]]:
    weeks = tmp_path / "weeks"
    weeks.mkdir()
    for number, fire in enumerate(FIRES):
        payload = example_payload()
        payload.update(
            slug=f"week-{number}",
            title=f"Comparison of week {number}",
            published_at=(fire - timedelta(days=5)).isoformat().replace("+00:00", "Z"),
        )
        write_json(weeks / f"week-{number}.json", payload)
    with Deployment(tmp_path, fault_services, faults=Faults(), subscribers=READERS) as deploy:
        deploy.newsletter("comparisons", "import", str(weeks))
        deploy.newsletter("schedules", "add", "sunday", "--cron", "0 9 * * SUN", "--tz", ZONE)
        # The schedule has existed since before the first fire time of the rehearsal.
        with deploy.db.begin() as connection:
            connection.execute(text("UPDATE schedule SET created_at = '2026-10-01T00:00:00Z'"))
        schedulers = Schedulers(deploy)
        schedulers.set_clock(FIRES[0] - timedelta(minutes=5))
        yield deploy, schedulers


def sent_editions(deploy: Deployment) -> list[tuple[object, ...]]:
    return deploy.rows("SELECT period_key, status FROM edition ORDER BY period_key")


def all_sent(deploy: Deployment, weeks: list[str]) -> bool:
    return sent_editions(deploy) == [(week, "sent") for week in weeks]


def leader_pid(deploy: Deployment) -> int | None:
    rows = deploy.rows("SELECT instance FROM scheduler_beat WHERE leader ORDER BY seen_at DESC")
    return int(str(rows[0][0]).split(":")[1]) if rows else None


def test_two_schedulers_fire_four_weeks_once_each_even_when_the_leader_dies(
    scheduled: tuple[Deployment, Schedulers],
) -> None:
    deploy, schedulers = scheduled
    deploy.start_worker()
    first, second = schedulers.start(), schedulers.start()
    wait_for(lambda: leader_pid(deploy) is not None, "a leader")
    for number, fire in enumerate(FIRES):
        if number == 2:  # kill -9 whichever scheduler leads now
            victim = first if leader_pid(deploy) == first.pid else second
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
        schedulers.set_clock(fire - timedelta(seconds=30))
        time.sleep(0.6)  # a few ticks before the fire time: nothing fires early
        assert len(sent_editions(deploy)) == number
        for step_s in (0, 30, 60, 600):  # the fire time, and ticks after it
            schedulers.set_clock(fire + timedelta(seconds=step_s))
            time.sleep(0.3)
        wait_for(
            partial(all_sent, deploy, WEEKS[: number + 1]),
            f"the edition of {WEEKS[number]} to be sent",
        )
    time.sleep(1)  # any second fire would have made a second edition or message by now
    assert sent_editions(deploy) == [(week, "sent") for week in WEEKS]
    received = Counter(
        (parseaddr(email["destination"]["to"][0])[1], email["subject"])
        for email in stored(deploy.services.emulator_url)
    )
    assert len(received) == READERS * len(WEEKS) and set(received.values()) == {1}
    fires = deploy.rows("SELECT period_key, outcome FROM schedule_fire ORDER BY period_key")
    assert fires == [(week, "sending") for week in WEEKS]
    status = json.loads(deploy.newsletter("schedules", "status", "--json"))
    assert status["schedules"][0]["last_period"] == WEEKS[-1]
