"""The archive: sent issues listed, and each shown as a page without tracking or personal links."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from emails import placeholders
from tests.helpers import (
    add_subscribers,
    example_payload,
    require_approval,
    send_week,
    store_payload,
)
from worker import db, weekly
from worker.config import Settings
from worker.models import Edition
from worker.transports.memory import MemoryTransport
from worker.web import create_app

EXAMPLE = example_payload()


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    app.state.engine = engine
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def sent(engine: Engine, settings: Settings) -> MemoryTransport:
    store_payload(engine, EXAMPLE)
    add_subscribers(engine, "ada@example.com")
    transport = MemoryTransport()
    send_week(engine, settings, transport)
    return transport


def test_the_view_in_browser_link_opens_the_issue(
    sent: MemoryTransport, client: TestClient
) -> None:
    (message,) = sent.sent
    link = re.search(
        r'href="https://verdicts.example.org(/archive/[^"]+)"[^>]*>View in browser', message.html
    )
    assert link
    page = client.get(link.group(1))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert html.escape(EXAMPLE["title"], quote=False) in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_the_archived_issue_has_no_tracking_and_no_personal_links(
    sent: MemoryTransport, client: TestClient
) -> None:
    page = client.get(f"/archive/{EXAMPLE['slug']}").text
    assert "/o/" not in page and "/c/" not in page and "/unsubscribe/" not in page
    assert "View in browser" not in page and "You get this because" not in page
    assert f'href="{EXAMPLE["url"]}"' in page  # the comparison link, untracked
    assert "1 Test Street, Testville" in page  # the postal address stays
    assert "%%vm-" not in page


def test_the_archive_lists_sent_issues_newest_first(
    engine: Engine, settings: Settings, sent: MemoryTransport, client: TestClient
) -> None:
    later = example_payload()
    later.update(
        slug="a-later-one", title="A later comparison", published_at="2026-11-27T09:00:00Z"
    )
    store_payload(engine, later)
    send_week(engine, settings, MemoryTransport(), week="2026-W48")
    page = client.get("/archive").text
    links = re.findall(r'<a href="(/archive/[^"]+)">([^<]+)</a>', page)
    assert [href for href, _ in links] == ["/archive/a-later-one", f"/archive/{EXAMPLE['slug']}"]


def test_an_issue_not_yet_sent_is_not_in_the_archive(
    engine: Engine, settings: Settings, client: TestClient
) -> None:
    store_payload(engine, EXAMPLE)
    add_subscribers(engine, "ada@example.com")
    require_approval(engine)
    result = weekly.prepare_week(engine, settings, week="2026-W47", dry_run=False)
    assert result.edition is not None
    assert client.get(f"/archive/{EXAMPLE['slug']}").status_code == 404
    assert EXAMPLE["slug"] not in client.get("/archive").text


def test_an_unknown_slug_is_a_friendly_404(client: TestClient) -> None:
    page = client.get("/archive/no-such-issue")
    assert page.status_code == 404 and "No such issue" in page.text


def test_an_issue_rendered_before_personal_sections_is_shown_without_personal_links(
    engine: Engine, sent: MemoryTransport, client: TestClient
) -> None:
    with db.session_scope(engine) as session:
        edition = session.get(Edition, 1)
        assert edition is not None
        key = edition.placeholder_key
        for name in (placeholders.SECTION_START, placeholders.SECTION_END):
            edition.html = edition.html.replace(placeholders.marker(key, name), "")
        session.add(edition)
    page = client.get(f"/archive/{EXAMPLE['slug']}")
    assert page.status_code == 200
    assert "/unsubscribe/" not in page.text and "/o/" not in page.text
    assert "%%vm-" not in page.text
