"""Real worker processes: `dramatiq worker.actors` on Redis, PostgreSQL, the SES emulator.

The operator's commands run as subprocesses too (`newsletter …` with REDIS_URL set), exactly as
in production; the emulator's store is the ground truth of what was sent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import EXAMPLE, flushed_redis, postgres_schema_url
from tests.ses_emulator import FaultProxy, Faults, stored
from worker import tracking

pytestmark = pytest.mark.postgres

BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
SECRET = "workers-test-secret"
SUBSCRIBERS = 2_000


@pytest.fixture
def redis_db() -> Iterator[str]:
    yield from flushed_redis(REDIS_URL)


class Deployment:
    """The processes of one deployment sharing PostgreSQL, Redis and SES."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.workers: list[subprocess.Popen[bytes]] = []

    def newsletter(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "newsletter"), *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [str(BIN / "dramatiq"), "worker.actors", "--processes", "1", "--threads", "4"],
            env=self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes its children too
        )
        self.workers.append(worker)
        return worker

    def kill(self, worker: subprocess.Popen[bytes]) -> None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


@pytest.fixture
def deployment(
    tmp_path: Path, pg_schema: str, redis_db: str, ses: str
) -> Iterator[tuple[Deployment, str]]:
    faults = Faults(seed=11)
    with FaultProxy(ses, faults) as proxy:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "DATABASE_URL": postgres_schema_url(pg_schema),
            "REDIS_URL": redis_db,
            "NEWSLETTER_TRANSPORT": "ses",
            "SES_REGION": "us-east-1",
            "SES_ENDPOINT_URL": proxy.url,
            "SES_MAX_SEND_RATE": "1000",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "SECRET_KEY": SECRET,
            "PUBLIC_BASE_URL": "https://verdicts.example.org",
            "FROM_ADDRESS": "Weekly AI Tool Verdicts <verdicts@example.org>",
            "SEND_LEASE_S": "3",
        }
        deploy = Deployment(tmp_path, env)
        csv = tmp_path / "readers.csv"
        csv.write_text(
            "email,name\n" + "".join(f"r{i}@example.com,R {i}\n" for i in range(SUBSCRIBERS))
        )
        for args in (
            ("db", "upgrade"),
            ("comparisons", "import", str(EXAMPLE)),
            ("subscribers", "import", str(csv)),
        ):
            done = deploy.newsletter(*args)
            assert done.returncode == 0, done.stderr
        deploy.faults = faults  # type: ignore[attr-defined]
        try:
            yield deploy, ses
        finally:
            deploy.stop()


def _delivery_states(env: dict[str, str]) -> Counter[str]:
    engine = create_engine(env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT state, count(*) FROM delivery GROUP BY state"))
        states = Counter({state: count for state, count in rows})
    engine.dispose()
    return states


def _address(email: dict[str, Any]) -> str:
    return parseaddr(email["destination"]["to"][0])[1]


def _received(ses: str) -> Counter[str]:
    return Counter(_address(email) for email in stored(ses))


def _unsubscribe_subscriber(body: str) -> int:
    url = body.split("Unsubscribe: ", 1)[1].split()[0]
    subscriber_id, _ = tracking.read_unsubscribe_token(SECRET.encode(), url.rsplit("/", 1)[1])
    return subscriber_id


def test_two_workers_send_each_subscriber_exactly_one_message(
    deployment: tuple[Deployment, str],
) -> None:
    deploy, ses = deployment
    deploy.start_worker()
    deploy.start_worker()
    done = deploy.newsletter("send-weekly", "--week", "2026-W47", "--wait", timeout_s=240)
    assert done.returncode == 0, done.stdout + done.stderr
    received = _received(ses)
    assert len(received) == SUBSCRIBERS and set(received.values()) == {1}
    # Each message carries its own recipient's unsubscribe link (subscriber ids follow the CSV).
    for email in stored(ses)[:50]:
        number = int(_address(email).split("@")[0].removeprefix("r"))
        assert _unsubscribe_subscriber(email["body"]["text"]) == number + 1
    assert _delivery_states(deploy.env) == Counter({"sent": SUBSCRIBERS})


def test_throttling_and_server_errors_lose_nothing_and_send_nothing_twice(
    deployment: tuple[Deployment, str],
) -> None:
    deploy, ses = deployment
    deploy.faults.throttle_share = 0.3  # type: ignore[attr-defined]
    deploy.faults.server_error_share = 0.05  # type: ignore[attr-defined]
    deploy.start_worker()
    deploy.start_worker()
    done = deploy.newsletter("send-weekly", "--week", "2026-W47", "--wait", timeout_s=300)
    assert done.returncode == 0, done.stdout + done.stderr
    received = _received(ses)
    assert len(received) == SUBSCRIBERS and set(received.values()) == {1}
    shown = deploy.newsletter("editions", "show", "1", "--json")
    assert '"retries": 0' not in shown.stdout  # the retries are visible to the operator


@pytest.mark.parametrize("round_", range(5))
def test_a_worker_killed_mid_send_loses_nothing_and_duplicates_nothing(
    deployment: tuple[Deployment, str], round_: int
) -> None:
    deploy, ses = deployment
    victim = deploy.start_worker()
    deploy.start_worker()
    assert deploy.newsletter("send-weekly", "--week", "2026-W47").returncode == 0
    deadline = time.monotonic() + 60
    while len(stored(ses)) < 200 + 150 * round_ and time.monotonic() < deadline:
        time.sleep(0.05)
    deploy.kill(victim)
    deploy.start_worker()  # the operator restarts it
    done = deploy.newsletter("send-weekly", "--week", "2026-W47", "--wait", timeout_s=240)
    assert done.returncode == 0, done.stdout + done.stderr
    states = _delivery_states(deploy.env)
    received = _received(ses)
    assert set(received.values()) == {1}, "a subscriber got a message twice"
    assert states["sent"] + states["uncertain"] == SUBSCRIBERS
    assert states["uncertain"] <= 4 * 50  # at most what the killed worker's threads had claimed
    missing = {f"r{i}@example.com" for i in range(SUBSCRIBERS)} - set(received)
    assert len(missing) <= states["uncertain"], "a delivery recorded sent never reached SES"
