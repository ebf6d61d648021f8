"""Real worker processes: `dramatiq worker.actors` on Redis, PostgreSQL, the SES emulator.

The operator's commands run as subprocesses too (`newsletter …` with REDIS_URL set), exactly as
in production; the emulator's store is the ground truth of what was sent. The same deployment
under faults (throttling, kill -9, Redis and PostgreSQL outages): tests/test_faults.py.
"""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path

import pytest

from faults.deployment import SECRET, WEEK, Deployment, Services
from tests.ses_emulator import Faults, stored
from worker import tracking

pytestmark = pytest.mark.postgres

SUBSCRIBERS = 2_000


def _unsubscribe_subscriber(body: str) -> int:
    url = body.split("Unsubscribe: ", 1)[1].split()[0]
    subscriber_id, _ = tracking.read_unsubscribe_token(SECRET.encode(), url.rsplit("/", 1)[1])
    return subscriber_id


def test_two_workers_send_each_subscriber_exactly_one_message(
    fault_services: Services, tmp_path: Path
) -> None:
    with Deployment(tmp_path, fault_services, faults=Faults(), subscribers=SUBSCRIBERS) as deploy:
        deploy.start_worker()
        deploy.start_worker()
        deploy.newsletter("send-weekly", "--week", WEEK, "--wait")
        received = deploy.received()
        assert len(received) == SUBSCRIBERS and set(received.values()) == {1}
        # Each message carries its own recipient's unsubscribe link (ids follow the CSV).
        for email in stored(fault_services.emulator_url)[:50]:
            address = parseaddr(email["destination"]["to"][0])[1]
            number = int(address.split("@")[0].removeprefix("r"))
            assert _unsubscribe_subscriber(email["body"]["text"]) == number + 1
        assert deploy.states() == {"sent": SUBSCRIBERS}
