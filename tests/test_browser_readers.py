"""Readers' flows in a real browser against the real web app (uvicorn) and the outbox.

Subscribe → confirmation mail in the outbox → its link → confirm → active; and from a sent
issue: its unsubscribe link → page → button → unsubscribed → subscribe again → confirm.
Screenshots of each step at 1280 and 375 px land in artifacts/screenshots/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import REPO
from tests.helpers import add_subscribers, example_payload, send_week, store_payload
from tests.live_site import LiveSite
from worker.models import SubscriberStatus
from worker.transports.outbox import OutboxTransport

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "artifacts" / "screenshots"
WIDTHS_PX = (1280, 375)


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def link_in(message: EmailMessage, text: str) -> str:
    """The href of the link (or button) whose text is `text`, from the HTML part."""
    match = re.search(rf'href="([^"]+)"[^>]*>\s*{re.escape(text)}\s*<', html_of(message))
    assert match, f"no {text!r} link"
    return match.group(1).replace("&amp;", "&")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LiveSite]:
    with LiveSite(tmp_path) as live:
        yield live


@pytest.fixture(params=WIDTHS_PX, ids=lambda px: f"{px}px")
def page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    width: int = request.param
    context = browser.new_context(viewport={"width": width, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    try:
        yield opened
    finally:
        context.close()


def shot(page: Page, flow: str, step: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 0
    path = SCREENSHOTS / f"{flow}-{step}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def fits_the_screen(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_subscribe_confirm_by_the_mailed_link(site: LiveSite, page: Page) -> None:
    page.goto(f"{site.base}/subscribe")
    assert fits_the_screen(page)
    shot(page, "subscribe", "form")
    page.get_by_label("Email address").fill("new.reader@example.com")
    page.get_by_label("Name").fill("New Reader")
    page.get_by_label("Email address").press("Enter")  # the keyboard is enough
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    shot(page, "subscribe", "check-inbox")
    assert site.status_of("new.reader@example.com") == SubscriberStatus.PENDING

    mail = site.mail_to("new.reader@example.com", "Confirm your subscription")
    page.goto(link_in(mail, "Yes, send me the newsletter"))
    expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
    shot(page, "subscribe", "confirm")
    assert site.status_of("new.reader@example.com") == SubscriberStatus.PENDING  # GET did nothing

    page.get_by_role("button", name="Confirm subscription").click()
    expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
    shot(page, "subscribe", "confirmed")
    assert site.status_of("new.reader@example.com") == SubscriberStatus.ACTIVE


def test_unsubscribe_from_an_issue_then_subscribe_again(site: LiveSite, page: Page) -> None:
    store_payload(site.engine, example_payload())
    add_subscribers(site.engine, "ada@example.com")
    send_week(site.engine, site.settings, OutboxTransport(site.settings.outbox_path))
    issue = site.mail_to("ada@example.com", "Claude 4 API")

    page.goto(link_in(issue, "Unsubscribe"))
    expect(page.get_by_role("heading", name="Unsubscribe?")).to_be_visible()
    assert fits_the_screen(page)
    shot(page, "unsubscribe", "page")
    assert site.status_of("ada@example.com") == SubscriberStatus.ACTIVE  # GET did nothing

    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    shot(page, "unsubscribe", "done")
    assert site.status_of("ada@example.com") == SubscriberStatus.UNSUBSCRIBED

    page.get_by_role("button", name="Subscribe again").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    assert site.status_of("ada@example.com") == SubscriberStatus.UNSUBSCRIBED  # until confirmed

    confirmation = site.mail_to("ada@example.com", "Confirm your subscription")
    page.goto(link_in(confirmation, "Yes, send me the newsletter"))
    page.get_by_role("button", name="Confirm subscription").click()
    expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
    shot(page, "unsubscribe", "resubscribed")
    assert site.status_of("ada@example.com") == SubscriberStatus.ACTIVE


def test_the_view_in_browser_link_shows_the_issue(site: LiveSite, page: Page) -> None:
    store_payload(site.engine, example_payload())
    add_subscribers(site.engine, "ada@example.com")
    send_week(site.engine, site.settings, OutboxTransport(site.settings.outbox_path))
    issue = site.mail_to("ada@example.com", "Claude 4 API")
    page.goto(link_in(issue, "View in browser"))
    expect(page.get_by_text("Read the full comparison")).to_be_visible()
    assert fits_the_screen(page)
    assert page.get_by_text("Unsubscribe").count() == 0
    shot(page, "archive", "issue")
