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
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import flushed_redis, postgres_schema_url
from tests.helpers import example_payload, write_json
from tests.ses_emulator import stored
from tests.test_workers import Deployment

pytestmark = pytest.mark.postgres

BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("TEST_SCHEDULER_REDIS_URL", "redis://127.0.0.1:6379/13")
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


@pytest.fixture
def redis_db() -> Iterator[str]:
    yield from flushed_redis(REDIS_URL)


class Schedulers:
    """Scheduler processes sharing a clock file."""

    def __init__(self, deploy: Deployment) -> None:
        self.deploy = deploy
        self.clock = deploy.folder / "clock.txt"
        self.processes: list[subprocess.Popen[bytes]] = []

    def set_clock(self, now: datetime) -> None:
        temporary = self.clock.with_suffix(".tmp")
        temporary.write_text(now.isoformat())
        temporary.replace(self.clock)  # atomic: a scheduler never reads half a time

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.deploy.folder / f"scheduler-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "schedules", "--tick-s", "0.2", "--clock-file", str(self.clock)],
            env=self.deploy.env,
            cwd=self.deploy.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def query(env: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(sql))]
    engine.dispose()
    return rows


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def scheduled(
    tmp_path: Path, pg_schema: str, redis_db: str, ses: str
) -> Iterator[tuple[Deployment, Schedulers, str]]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DATABASE_URL": postgres_schema_url(pg_schema),
        "REDIS_URL": redis_db,
        "NEWSLETTER_TRANSPORT": "ses",
        "SES_REGION": "us-east-1",
        "SES_ENDPOINT_URL": ses,
        "SES_MAX_SEND_RATE": "1000",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "SECRET_KEY": "scheduler-test-secret",
        "PUBLIC_BASE_URL": "https://verdicts.example.org",
        "FROM_ADDRESS": "Weekly AI Tool Verdicts <verdicts@example.org>",
        "SEND_LEASE_S": "5",
    }
    deploy = Deployment(tmp_path, env)
    csv = tmp_path / "readers.csv"
    csv.write_text("email,name\n" + "".join(f"r{i}@example.com,R {i}\n" for i in range(READERS)))
    for number, fire in enumerate(FIRES):
        payload = example_payload()
        payload.update(
            slug=f"week-{number}",
            title=f"Comparison of week {number}",
            published_at=(fire - timedelta(days=5)).isoformat().replace("+00:00", "Z"),
        )
        write_json(tmp_path / f"week-{number}.json", payload)
    for args in (
        ("db", "upgrade"),
        ("comparisons", "import", str(tmp_path)),
        ("subscribers", "import", str(csv)),
        ("schedules", "add", "sunday", "--cron", "0 9 * * SUN", "--tz", ZONE),
    ):
        done = deploy.newsletter(*args)
        assert done.returncode == 0, done.stdout + done.stderr
    # The schedule has existed since before the first fire time of the rehearsal.
    engine = create_engine(env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        connection.execute(text("UPDATE schedule SET created_at = '2026-10-01T00:00:00Z'"))
    engine.dispose()
    schedulers = Schedulers(deploy)
    schedulers.set_clock(FIRES[0] - timedelta(minutes=5))
    try:
        yield deploy, schedulers, ses
    finally:
        schedulers.stop()
        deploy.stop()


def sent_editions(env: dict[str, str]) -> list[tuple[object, ...]]:
    return query(env, "SELECT period_key, status FROM edition ORDER BY period_key")


def all_sent(env: dict[str, str], weeks: list[str]) -> bool:
    return sent_editions(env) == [(week, "sent") for week in weeks]


def leader_pid(env: dict[str, str]) -> int | None:
    rows = query(env, "SELECT instance FROM scheduler_beat WHERE leader ORDER BY seen_at DESC")
    return int(str(rows[0][0]).split(":")[1]) if rows else None


def test_two_schedulers_fire_four_weeks_once_each_even_when_the_leader_dies(
    scheduled: tuple[Deployment, Schedulers, str],
) -> None:
    deploy, schedulers, ses = scheduled
    deploy.start_worker()
    first, second = schedulers.start(), schedulers.start()
    wait_for(lambda: leader_pid(deploy.env) is not None, "a leader")
    for number, fire in enumerate(FIRES):
        if number == 2:  # kill -9 whichever scheduler leads now
            victim = first if leader_pid(deploy.env) == first.pid else second
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)
        schedulers.set_clock(fire - timedelta(seconds=30))
        time.sleep(0.6)  # a few ticks before the fire time: nothing fires early
        assert len(sent_editions(deploy.env)) == number
        for step_s in (0, 30, 60, 600):  # the fire time, and ticks after it
            schedulers.set_clock(fire + timedelta(seconds=step_s))
            time.sleep(0.3)
        wait_for(
            partial(all_sent, deploy.env, WEEKS[: number + 1]),
            f"the edition of {WEEKS[number]} to be sent",
        )
    time.sleep(1)  # any second fire would have made a second edition or message by now
    assert sent_editions(deploy.env) == [(week, "sent") for week in WEEKS]
    received = Counter(
        (parseaddr(email["destination"]["to"][0])[1], email["subject"]) for email in stored(ses)
    )
    assert len(received) == READERS * len(WEEKS) and set(received.values()) == {1}
    fires = query(deploy.env, "SELECT period_key, outcome FROM schedule_fire ORDER BY period_key")
    assert fires == [(week, "sending") for week in WEEKS]
    status = json.loads(deploy.newsletter("schedules", "status", "--json").stdout)
    assert status["schedules"][0]["last_period"] == WEEKS[-1]
