"""The weekly email in a real browser (Debian's chromium): two cards side by side on a desktop
width, stacked on a phone, nothing wider than the screen, every quote readable.

Screenshots land in artifacts/screenshots/ for a human to look at; the assertions use boxes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, FloatRect, Locator, Page

from emails import placeholders
from emails.render import BLANK_PIXEL_URL, Footer, render_weekly
from tests.conftest import REPO
from tests.helpers import example_payload
from worker.comparisons import parse_document

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "artifacts" / "screenshots"
DESKTOP_PX, PHONE_PX = 600, 375
SAME_ROW_PX = 4


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return example_payload()


@pytest.fixture(scope="module")
def email_file(example: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example email as a reader gets it: placeholders filled with sample links."""
    doc = parse_document(json.dumps(example).encode(), source="example.json")
    key = placeholders.new_key()
    footer = Footer(
        postal_address="1 Test Street, Testville", public_base_url="https://verdicts.example.org"
    )
    rendered = render_weekly(doc, key=key, footer=footer)
    html = placeholders.Template.compile(rendered.html, key, escape_html=True).fill(
        {
            "unsubscribe_url": "https://verdicts.example.org/unsubscribe/sample",
            "browser_url": f"https://verdicts.example.org/archive/{doc.slug}",
            "open_url": BLANK_PIXEL_URL,
        }
    )
    path = tmp_path_factory.mktemp("email") / "weekly.html"
    path.write_text(html, encoding="utf-8")
    return path


def open_at(browser: Browser, email_file: Path, width_px: int) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": width_px, "height": 900})
    try:
        page.goto(email_file.as_uri())
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"weekly-{width_px}.png"), full_page=True)
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def desktop(browser: Browser, email_file: Path) -> Iterator[Page]:
    yield from open_at(browser, email_file, DESKTOP_PX)


@pytest.fixture(scope="module")
def phone(browser: Browser, email_file: Path) -> Iterator[Page]:
    yield from open_at(browser, email_file, PHONE_PX)


def box(locator: Locator) -> FloatRect:
    found = locator.bounding_box()
    assert found is not None, f"{locator} is not rendered"
    return found


def card_of(page: Page, tool_name: str) -> FloatRect:
    """The box of the card headed by the tool's name (its first appearance on the page)."""
    heading = page.get_by_text(tool_name, exact=True).first
    # The card is the template's column (class "tool-card") that holds the heading.
    card = heading.locator(
        "xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' tool-card ')]"
    ).first
    return box(card)


def tool_names(example: dict[str, Any]) -> tuple[str, str]:
    first, second = (tool["name"] for tool in example["tools"])
    return first, second


def test_tool_cards_sit_side_by_side_at_600_px(desktop: Page, example: dict[str, Any]) -> None:
    first, second = (card_of(desktop, name) for name in tool_names(example))
    assert abs(first["y"] - second["y"]) <= SAME_ROW_PX
    assert first["x"] + first["width"] <= second["x"] + SAME_ROW_PX


def test_tool_cards_stack_at_375_px(phone: Page, example: dict[str, Any]) -> None:
    first, second = (card_of(phone, name) for name in tool_names(example))
    assert second["y"] >= first["y"] + first["height"] - SAME_ROW_PX
    assert first["width"] > PHONE_PX / 2 and second["width"] > PHONE_PX / 2


def test_nothing_is_wider_than_a_375_px_screen(phone: Page) -> None:
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE_PX


@pytest.mark.parametrize("page_name", ["desktop", "phone"])
def test_every_quote_is_visible_text(
    page_name: str, request: pytest.FixtureRequest, example: dict[str, Any]
) -> None:
    page: Page = request.getfixturevalue(page_name)
    width_px = page.viewport_size["width"] if page.viewport_size else 0
    for review in example["reviews"]:
        quote = page.get_by_text(review["quote"], exact=True)
        assert quote.count() == 1, review["quote"]
        assert quote.is_visible(), review["quote"]
        shown = box(quote)
        assert shown["height"] > 0 and shown["x"] >= 0 and shown["x"] + shown["width"] <= width_px
    body_text = page.inner_text("body")
    assert all(review["quote"] in body_text for review in example["reviews"])


def test_screenshots_are_saved_for_both_widths(desktop: Page, phone: Page) -> None:
    for width_px in (DESKTOP_PX, PHONE_PX):
        shot = SCREENSHOTS / f"weekly-{width_px}.png"
        assert shot.stat().st_size > 0
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
