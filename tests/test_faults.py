"""The fault suite in its shortened form: each scenario once, 1,000 subscribers (`make faults`
runs three rounds of 2,000).

Real PostgreSQL, a Redis server of the suite's own, `dramatiq` worker and scheduler processes, and
the SES emulator; what SES received is the ground truth. Every scenario must end with each
subscriber holding exactly one copy, and no more deliveries uncertain than were in flight.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faults.deployment import Services
from faults.scenarios import SCENARIOS, Round

pytestmark = pytest.mark.postgres

SUBSCRIBERS = int(os.environ.get("FAULTS_SUBSCRIBERS", "1000"))  # `make faults`: 2,000


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_fault_mid_send_loses_nothing_and_sends_nothing_twice(
    fault_services: Services, name: str, tmp_path: Path
) -> None:
    outcome = SCENARIOS[name](Round(fault_services, tmp_path, SUBSCRIBERS, number=1, seed=7))
    assert outcome.duplicates == 0, outcome
    assert outcome.lost == 0, outcome
    assert outcome.sent == SUBSCRIBERS, outcome
    assert outcome.uncertain <= outcome.in_flight, outcome
