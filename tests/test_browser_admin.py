"""The admin area in a real browser against the live app: an editor signs in, previews the
draft (desktop and mobile frames), sends a test, approves, and the send goes out with the
approved render; an operator pauses and resumes a send from the page. Screenshots at desktop
and mobile width land in artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import update

from tests.conftest import REPO
from tests.helpers import add_subscribers, example_payload, require_approval, store_payload
from tests.live_site import LiveSite
from worker import db, engagement, runner, stats, users, weekly
from worker.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    Event,
    EventKind,
    Role,
    utcnow,
)

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "artifacts" / "screenshots"
PASSWORD = "correct horse battery"
WIDTHS_PX = (1280, 375)


def prepare(site: LiveSite, readers: int) -> None:
    store_payload(site.engine, example_payload())
    add_subscribers(site.engine, *(f"r{n}@example.com" for n in range(readers)))
    require_approval(site.engine)
    weekly.prepare_week(site.engine, site.settings, week="2026-W47")
    with db.session_scope(site.engine) as session:
        for email, role in (("editor@example.com", Role.EDITOR), ("op@example.com", Role.OPERATOR)):
            users.add(session, email, role=role, password=PASSWORD, now=utcnow())


def edition(site: LiveSite) -> Edition:
    with db.session_scope(site.engine) as session:
        found = session.get(Edition, 1)
        assert found is not None
        return found


@pytest.fixture(params=WIDTHS_PX, ids=lambda px: f"{px}px")
def page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": request.param, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        context.close()


def shot(page: Page, step: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=str(SCREENSHOTS / f"admin-{step}-{width}.png"), full_page=True)


def sign_in(page: Page, site: LiveSite, email: str) -> None:
    page.goto(f"{site.base}/admin/editions/1")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")  # the keyboard is enough
    expect(page.get_by_role("heading", name=re.compile(r"^Edition 1"))).to_be_visible()


def visible_text_of(html: str, page: Page) -> str:
    """The text a browser shows for an HTML document (same engine for both sides)."""
    page.set_content(html)
    return " ".join(page.inner_text("body").split())


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def test_editor_previews_tests_and_approves_and_the_send_matches_the_preview(
    tmp_path: Path, page: Page
) -> None:
    with LiveSite(tmp_path) as site:
        prepare(site, readers=2)
        sign_in(page, site, "editor@example.com")
        desktop = page.frame_locator('iframe[title="The email at 600 px"]')
        mobile = page.frame_locator('iframe[title="The email at 375 px"]')
        title = example_payload()["title"]
        expect(desktop.get_by_text(title).first).to_be_visible()
        expect(mobile.get_by_text(title).first).to_be_visible()
        shot(page, "preview")
        preview_html = page.locator('iframe[title="The email at 600 px"]').get_attribute("srcdoc")
        assert preview_html is not None

        page.get_by_label("Send a test to (comma-separated)").fill("me@example.com")
        page.get_by_role("button", name="Send test").click()
        expect(page.get_by_role("status")).to_contain_text("Test sent to me@example.com")
        test_mail = site.mail_to("me@example.com", "[TEST]")
        assert str(test_mail["Subject"]).startswith("[TEST] ")

        approved_hash = edition(site).content_hash
        page.get_by_role("button", name="Approve and send").click()
        expect(page.get_by_role("status")).to_contain_text("Approved")
        deadline = time.monotonic() + 30
        while edition(site).status != EditionStatus.SENT and time.monotonic() < deadline:
            time.sleep(0.1)
        assert edition(site).status == EditionStatus.SENT
        assert edition(site).content_hash == approved_hash
        shot(page, "approved")
        sent = site.mail_to("r0@example.com", title[:20])
        # What readers got reads exactly as the preview did (only personal links differ).
        assert visible_text_of(html_part(sent), page) == visible_text_of(preview_html, page)


def test_operator_pauses_and_resumes_a_send_from_the_page(tmp_path: Path, page: Page) -> None:
    with LiveSite(tmp_path, SES_MAX_SEND_RATE="8") as site:
        prepare(site, readers=60)
        sign_in(page, site, "op@example.com")
        page.get_by_role("button", name="Approve and send").click()
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("status")).to_contain_text("Paused")
        time.sleep(1.5)  # a batch in flight stops within a second
        paused = edition(site)
        assert paused.status == EditionStatus.PAUSED
        sent_while_paused = len(list(site.settings.outbox_path.glob("*.eml")))
        time.sleep(1.5)
        assert len(list(site.settings.outbox_path.glob("*.eml"))) == sent_while_paused < 60
        shot(page, "paused")
        page.get_by_role("button", name="Resume").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("Resumed")
        deadline = time.monotonic() + 60
        while edition(site).status != EditionStatus.SENT and time.monotonic() < deadline:
            time.sleep(0.2)
        assert edition(site).status == EditionStatus.SENT
        assert runner.counts(site.engine, 1)[DeliveryState.SENT] == 60
        assert len(list(site.settings.outbox_path.glob("e1-*.eml"))) == 60


def test_the_stats_page_shows_simulated_opens_clicks_and_bounces(
    tmp_path: Path, page: Page
) -> None:
    with LiveSite(tmp_path) as site:
        prepare(site, readers=3)
        with db.session_scope(site.engine) as session:
            session.execute(
                update(Edition).values(status=EditionStatus.APPROVED, approved_by="test")
            )
        runner.send_in_process(site.engine, 1, lease_s=60, progress=None)
        with db.session_scope(site.engine) as session:
            session.execute(update(Delivery).values(sent_at=utcnow() - timedelta(hours=1)))
        browser_agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
        for delivery_id, agent in ((1, browser_agent), (2, browser_agent), (2, "Mozilla/5.0")):
            engagement.record(
                site.engine,
                kind=EventKind.OPEN,
                delivery_id=delivery_id,
                user_agent=agent,
                client_ip=None,
                now=utcnow(),
            )
        engagement.record(
            site.engine,
            kind=EventKind.CLICK,
            delivery_id=1,
            user_agent=browser_agent,
            client_ip=None,
            now=utcnow(),
            url=example_payload()["url"],
        )
        with db.session_scope(site.engine) as session:
            session.add(
                Event(
                    kind=EventKind.BOUNCE,
                    delivery_id=3,
                    edition_id=1,
                    subscriber_id=3,
                    at=utcnow(),
                    detail="permanent bounce: General",
                )
            )
        sign_in(page, site, "op@example.com")
        page.goto(f"{site.base}/admin/editions/1/stats")
        with db.session_scope(site.engine) as session:
            figures = stats.of_edition(session, 1)
        assert (figures.unique_human_opens, figures.machine_opens, figures.bounces) == (2, 1, 1)
        expect(page.locator("#unique-human-opens")).to_have_text(str(figures.unique_human_opens))
        expect(page.locator("#opens")).to_have_text(
            f"{figures.human_opens} / {figures.machine_opens}"
        )
        expect(page.locator("#bounces")).to_contain_text(f"{figures.bounces} (1 permanent)")
        expect(page.locator("#unique-human-clickers")).to_have_text("1")
        expect(page.get_by_role("img", name="Opens over time")).to_be_visible()
        shot(page, "stats")
