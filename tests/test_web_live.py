"""The unsubscribe link from a real message's List-Unsubscribe header, driven with curl against
the app served by uvicorn: a one-click POST unsubscribes, a plain GET never does."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.helpers import add_subscribers, example_payload, send_week, store_payload
from tests.live_site import LiveSite
from worker.models import SubscriberStatus
from worker.transports.outbox import OutboxTransport


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LiveSite]:
    with LiveSite(tmp_path) as live:
        store_payload(live.engine, example_payload())
        add_subscribers(live.engine, "ada@example.com")
        send_week(live.engine, live.settings, OutboxTransport(live.settings.outbox_path))
        yield live


def curl(*args: str) -> tuple[int, str]:
    """curl's HTTP status and body (no cookies, no redirects followed)."""
    if shutil.which("curl") is None:
        if IN_CI:
            pytest.fail("curl is not installed")
        pytest.skip("curl is not installed")
    done = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def header_url(site: LiveSite) -> str:
    issue = site.mail_to("ada@example.com", "Claude 4 API")
    https_part = str(issue["List-Unsubscribe"]).split(",")[0].strip()
    return https_part.removeprefix("<").removesuffix(">")


def test_curl_get_of_the_header_url_does_not_unsubscribe(site: LiveSite) -> None:
    status, body = curl(header_url(site))
    assert status == 200 and "Unsubscribe?" in body
    assert site.status_of("ada@example.com") == SubscriberStatus.ACTIVE


def test_curl_one_click_post_to_the_header_url_unsubscribes(site: LiveSite) -> None:
    status, body = curl("-X", "POST", "-d", "List-Unsubscribe=One-Click", header_url(site))
    assert status == 200 and body == "unsubscribed"
    assert site.status_of("ada@example.com") == SubscriberStatus.UNSUBSCRIBED
    again, _ = curl("-X", "POST", "-d", "List-Unsubscribe=One-Click", header_url(site))
    assert again == 200  # mail clients may repeat it
