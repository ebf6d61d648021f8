"""The rendered weekly email: what a reader sees in the HTML and text parts, and what stays safe.

HTML is parsed with BeautifulSoup; "visible text" leaves out the head and anything hidden
(the preheader), so a string found there is one the reader actually sees in the body.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from bs4 import BeautifulSoup, Tag

from emails import placeholders
from emails.render import Footer, RenderedEmail, render_weekly
from tests.helpers import example_payload
from worker.comparisons import ComparisonDoc, parse_document
from worker.errors import InputError

FOOTER = Footer(
    postal_address="1 Test Street, Testville", public_base_url="https://verdicts.example.org"
)
KEY = "0123456789abcdef"
LENSES = ("The Builder", "The Skeptic", "The Futurist", "The Buyer")
CTA = "Get the next comparison in your inbox"
FIGURE = re.compile(r"^(\d{1,3}%|—)$")
MARK = re.compile(r"\b(SHIP|SKIP)\b")
HOSTILE = (
    "<script>alert(1)</script> {{7*7}} {% if %} <mj-text>x</mj-text> "
    "&amp; & \"quotes\" 'apos' 🚀👩🏽‍💻 مرحبا بالعالم שלום 你好世界"
)


def doc_of(payload: dict[str, Any]) -> ComparisonDoc:
    return parse_document(json.dumps(payload).encode(), source="test.json")


def render(payload: dict[str, Any], **options: Any) -> RenderedEmail:
    return render_weekly(doc_of(payload), key=KEY, footer=FOOTER, **options)


def public_html(email: RenderedEmail) -> str:
    """The copy with links untracked (as the archive shows it)."""
    return placeholders.Template.compile(email.html, KEY, escape_html=True).public()


def public_text(email: RenderedEmail) -> str:
    return placeholders.Template.compile(email.text, KEY, escape_html=False).public()


def soup_of(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def is_hidden(tag: Tag) -> bool:
    style = str(tag.get("style") or "").replace(" ", "").lower()
    return "display:none" in style


def visible_body(html: str) -> BeautifulSoup:
    """The document without its head, scripts, styles and hidden elements."""
    soup = soup_of(html)
    for tag in soup.find_all(["head", "script", "style", "title"]):
        tag.decompose()
    for tag in soup.find_all(is_hidden):
        if not tag.decomposed:
            tag.decompose()
    return soup


def visible_text(html: str) -> str:
    return visible_body(html).get_text(" ")


def text_nodes(soup: BeautifulSoup) -> list[str]:
    return [str(node).strip() for node in soup.find_all(string=True)]


def first_element_with_text(soup: BeautifulSoup, text: str) -> Tag:
    node = soup.find(string=lambda s: s is not None and s.strip() == text)
    assert node is not None, f"no element shows {text!r}"
    assert node.parent is not None
    return node.parent


def html_figure(html: str, tool_name: str, label: str = "Panel ship") -> str:
    """The figure under `label` in the card headed by tool_name."""
    heading = first_element_with_text(visible_body(html), tool_name)
    found = heading.find_next(string=lambda s: s is not None and s.strip() == label)
    assert found is not None, f"no {label!r} label after {tool_name!r}"
    figure = found.find_next(string=lambda s: s is not None and bool(FIGURE.match(s.strip())))
    assert figure is not None, f"no {label!r} figure after {tool_name!r}"
    return figure.strip()


def text_figure(text: str, tool_name: str, label: str = "Panel ship") -> str:
    """The figure on the '<label>:' line of the text section headed by tool_name."""
    lines = text.splitlines()
    start = lines.index(tool_name)
    line = next(line for line in lines[start:] if line.startswith(f"{label}:"))
    return line.removeprefix(f"{label}:").split()[0]


@pytest.fixture
def example() -> dict[str, Any]:
    return example_payload()


@pytest.fixture
def rendered(example: dict[str, Any]) -> RenderedEmail:
    return render(example)


# The bundled example, as a reader sees it


def test_every_review_quote_is_visible_in_html_and_text(
    example: dict[str, Any], rendered: RenderedEmail
) -> None:
    seen = visible_text(rendered.html)
    quotes = [review["quote"] for review in example["reviews"]]
    assert len(quotes) == 8
    for quote in quotes:
        assert quote in seen
        assert quote in rendered.text


def test_figures_pricing_and_cta_are_shown_in_html_and_text(
    example: dict[str, Any], rendered: RenderedEmail
) -> None:
    # The example gives 100% and 75% for the panel, no community vote yet, one Paid, one Free.
    for part in (visible_text(rendered.html), rendered.text):
        for shown in ("100%", "75%", "Paid", "Free", CTA):
            assert shown in part, shown
    for tool in example["tools"]:
        assert html_figure(rendered.html, tool["name"], "Community") == "—"
        assert text_figure(rendered.text, tool["name"], "Community") == "—"


def test_community_vote_is_shown_as_a_rounded_percent(example: dict[str, Any]) -> None:
    tool_b = example["tools"][1]
    tool_b["community_pct"] = 66.6
    email = render(example)
    assert html_figure(email.html, tool_b["name"], "Community") == "67%"
    assert text_figure(email.text, tool_b["name"], "Community") == "67%"
    assert html_figure(email.html, example["tools"][0]["name"], "Community") == "—"


def test_comparison_text_is_shown_in_html_and_text(
    example: dict[str, Any], rendered: RenderedEmail
) -> None:
    expected = [example["title"], example["dek"], *LENSES]
    for tool in example["tools"]:
        expected += [tool["name"], tool["category"], tool["tagline"], tool["summary"]]
    seen = visible_text(rendered.html)
    for value in expected:
        assert value in seen, value
        assert value in rendered.text, value


def test_each_review_is_shown_under_its_lens_with_its_tool_and_ship_or_skip_mark(
    example: dict[str, Any], rendered: RenderedEmail
) -> None:
    body = visible_body(rendered.html)
    names = {tool["key"]: tool["name"] for tool in example["tools"]}
    for review in example["reviews"]:
        quote = first_element_with_text(body, review["quote"])
        mark = quote.find_previous(string=MARK)
        assert mark is not None
        assert MARK.findall(mark) == [review["verdict"].upper()]
        tool = quote.find_previous("strong")
        assert tool is not None and tool.get_text(strip=True) == names[review["tool"]]
        lens = quote.find_previous(string=lambda s: s is not None and s.strip() in LENSES)
        assert lens is not None and lens.strip() == review["reviewer"]


def test_each_review_in_the_text_part_follows_its_lens_and_ship_or_skip_mark(
    example: dict[str, Any], rendered: RenderedEmail
) -> None:
    text = rendered.text
    for review in example["reviews"]:
        before = text[: text.index(review["quote"])]
        last_mark = max(("SHIP", "SKIP"), key=before.rfind)
        assert last_mark == review["verdict"].upper()
        last_lens = max(LENSES, key=before.rfind)
        assert last_lens == review["reviewer"]


def test_button_links_to_the_comparison_page(
    example: dict[str, Any], rendered: RenderedEmail
) -> None:
    links = [
        a for a in soup_of(public_html(rendered)).find_all("a") if a.get("href") == example["url"]
    ]
    assert links, "no link to the comparison"
    assert all(link.get_text(strip=True) for link in links)
    assert example["url"] in public_text(rendered)
    assert example["url"] not in rendered.html  # a recipient's copy tracks it instead


def test_footer_has_marked_unsubscribe_and_browser_links_and_postal_address(
    rendered: RenderedEmail,
) -> None:
    soup = soup_of(rendered.html)
    hrefs = {a.get_text(strip=True): a.get("href") for a in soup.find_all("a")}
    assert hrefs["Unsubscribe"] == placeholders.marker(KEY, "unsubscribe_url")
    assert hrefs["View in browser"] == placeholders.marker(KEY, "browser_url")
    assert FOOTER.postal_address in visible_text(rendered.html)

    text_lines = rendered.text.splitlines()
    unsubscribe = [line for line in text_lines if "Unsubscribe" in line]
    browser = [line for line in text_lines if "View in browser" in line]
    assert any(placeholders.marker(KEY, "unsubscribe_url") in line for line in unsubscribe)
    assert any(placeholders.marker(KEY, "browser_url") in line for line in browser)
    assert FOOTER.postal_address in text_lines


# Panel figures


def test_missing_panel_ship_pct_is_derived_from_the_reviews(example: dict[str, Any]) -> None:
    tool_b = example["tools"][1]
    del tool_b["panel_ship_pct"]
    verdicts = [r["verdict"] for r in example["reviews"] if r["tool"] == tool_b["key"]]
    assert (verdicts.count("ship"), len(verdicts)) == (3, 4)

    email = render(example)

    assert html_figure(email.html, tool_b["name"]) == "75%"
    assert text_figure(email.text, tool_b["name"]) == "75%"


def test_tool_without_reviews_or_panel_ship_pct_shows_a_dash(example: dict[str, Any]) -> None:
    tool_b = example["tools"][1]
    del tool_b["panel_ship_pct"]
    tool_b["community_pct"] = 40  # so a dash can only come from the panel figure
    example["reviews"] = [r for r in example["reviews"] if r["tool"] != tool_b["key"]]

    email = render(example)

    assert html_figure(email.html, tool_b["name"]) == "—"
    assert text_figure(email.text, tool_b["name"]) == "—"
    assert html_figure(email.html, example["tools"][0]["name"]) == "100%"


# Hostile comparison text


def hostile_payload(example: dict[str, Any], text: str = HOSTILE) -> dict[str, Any]:
    """The example with `text` written into every kind of free-text field."""
    example["title"] = f"Title {text}"
    example["dek"] = f"Dek {text}"
    tool = example["tools"][0]
    tool["name"] = f"Name {text}"
    tool["tagline"] = f"Tagline {text}"
    tool["summary"] = f"Summary {text}"
    example["reviews"][0]["quote"] = f"Quote {text}"
    example["reviews"][0]["reviewer"] = f"Lens {text}"
    return example


HOSTILE_FIELDS = ("Title", "Dek", "Name", "Tagline", "Summary", "Quote", "Lens")


def test_hostile_text_comes_back_intact_as_text_in_html(example: dict[str, Any]) -> None:
    email = render(hostile_payload(example))
    shown = text_nodes(visible_body(email.html))
    for field in HOSTILE_FIELDS:
        assert f"{field} {HOSTILE}" in shown, field


def test_hostile_text_injects_no_script_template_output_or_mjml(example: dict[str, Any]) -> None:
    email = render(hostile_payload(example))
    soup = soup_of(email.html)
    assert soup.find("script") is None
    assert not soup.find_all(string=lambda s: s is not None and s.strip() == "x")
    assert not [tag for tag in soup.find_all() if tag.name.startswith("mj-")]
    title = first_element_with_text(visible_body(email.html), f"Title {HOSTILE}")
    assert "{{7*7}}" in title.get_text()
    assert "49" not in title.get_text()


def test_hostile_text_leaves_the_document_structure_unchanged(example: dict[str, Any]) -> None:
    benign = soup_of(render(hostile_payload(example_payload(), "plain words")).html)
    hostile = soup_of(render(hostile_payload(example)).html)
    assert len(hostile.find_all("a")) == len(benign.find_all("a"))
    assert Counter(t.name for t in hostile.find_all()) == Counter(t.name for t in benign.find_all())


def test_hostile_text_is_written_literally_in_the_text_part(example: dict[str, Any]) -> None:
    email = render(hostile_payload(example))
    for field in HOSTILE_FIELDS:
        assert f"{field} {HOSTILE}" in email.text, field


def test_hostile_title_is_escaped_in_html_text_and_subject(example: dict[str, Any]) -> None:
    email = render(hostile_payload(example))
    assert email.subject == f"Title {HOSTILE}"
    title = soup_of(email.html).title
    assert title is not None and title.get_text() == email.subject
    assert f"Title {HOSTILE}" in email.text


def test_comparison_url_with_quotes_stays_one_href_attribute(example: dict[str, Any]) -> None:
    benign_button = next(
        a
        for a in soup_of(public_html(render(example_payload()))).find_all("a")
        if a.get("href") == example["url"]
    )
    example["url"] = "https://verdicts.example.com/x?a=1&b=2\"onmouseover='alert(1)'<b>"
    button = [
        a
        for a in soup_of(public_html(render(example))).find_all("a")
        if a.get("href") == example["url"]
    ]
    assert len(button) == 1
    assert set(button[0].attrs) == set(benign_button.attrs)


def test_email_accessible_name_is_the_subject_even_with_joined_emoji_and_combining_marks(
    example: dict[str, Any],
) -> None:
    example["title"] = "Cafe\u0301 مُحَمَّد 👩🏽‍💻 vs 你好"
    email = render(example)
    labelled = soup_of(email.html).select_one("[aria-label]")
    assert isinstance(labelled, Tag)
    assert labelled["aria-label"] == email.subject


@pytest.mark.parametrize("control", ["\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\uffff"])
def test_control_character_in_comparison_text_is_refused_naming_the_field(
    example: dict[str, Any], control: str
) -> None:
    # The MJML compiler cannot carry these; the loader says where they are instead.
    example["reviews"][0]["quote"] = f"before{control}after"
    with pytest.raises(InputError, match=r"reviews\[0\]\.quote"):
        doc_of(example)


# Subject and preheader


def test_subject_defaults_to_title_and_preheader_to_dek(
    example: dict[str, Any], rendered: RenderedEmail
) -> None:
    assert rendered.subject == example["title"]
    assert rendered.preheader == example["dek"]
    title = soup_of(rendered.html).title
    assert title is not None and title.get_text() == example["title"]


def test_preheader_is_hidden_text_at_the_top_of_the_html(rendered: RenderedEmail) -> None:
    body = soup_of(rendered.html).body
    assert body is not None
    hidden = [tag.get_text(strip=True) for tag in body.find_all(is_hidden)]
    assert rendered.preheader in hidden


def test_explicit_subject_and_preheader_replace_the_defaults(example: dict[str, Any]) -> None:
    email = render(example, subject="This week: two tools", preheader="Ship or skip?")
    assert email.subject == "This week: two tools"
    assert email.preheader == "Ship or skip?"
    body = soup_of(email.html).body
    assert body is not None
    assert "Ship or skip?" in [tag.get_text(strip=True) for tag in body.find_all(is_hidden)]


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\t", "\u2028", "\u2029", "\x85"])
def test_line_breaks_in_title_and_dek_give_a_one_line_subject_and_preheader(
    example: dict[str, Any], brk: str
) -> None:
    example["title"] = f"First half{brk}second half{brk}"
    example["dek"] = f"{brk}Standfirst{brk}{brk}goes on"
    email = render(example)
    for value, source in ((email.subject, example["title"]), (email.preheader, example["dek"])):
        assert len(value.splitlines()) == 1
        assert value.split() == source.split()
        assert value == value.strip()
    title = soup_of(email.html).title
    assert title is not None and title.get_text() == email.subject


def test_line_breaks_in_explicit_subject_and_preheader_are_removed(
    example: dict[str, Any],
) -> None:
    email = render(example, subject="Bcc: x\r\nSubject: y", preheader="a\u2028b")
    assert email.subject.split() == ["Bcc:", "x", "Subject:", "y"]
    assert len(email.subject.splitlines()) == 1
    assert email.preheader.split() == ["a", "b"]
    assert len(email.preheader.splitlines()) == 1


# Placeholders


def test_compile_refuses_a_marker_with_an_unknown_name() -> None:
    body = f'<a href="{placeholders.marker(KEY, "tracking_pixel")}">x</a>'
    with pytest.raises(ValueError, match="tracking_pixel"):
        placeholders.Template.compile(body, KEY, escape_html=True)


def test_markers_of_another_key_are_plain_text() -> None:
    body = f"see {placeholders.marker('ffffffffffffffff', 'unsubscribe_url')}"
    template = placeholders.Template.compile(body, KEY, escape_html=False)
    assert template.fill({"unsubscribe_url": "https://u"}) == body


def test_fill_escapes_values_for_html_but_not_for_text(rendered: RenderedEmail) -> None:
    url = 'https://verdicts.example.org/unsubscribe/t?a=1&b="2"<3>'
    values = {
        "unsubscribe_url": url,
        "browser_url": "https://verdicts.example.org/archive/x",
        "open_url": "https://verdicts.example.org/o/t.gif",
    }

    html = placeholders.Template.compile(rendered.html, KEY, escape_html=True).fill(values)
    text = placeholders.Template.compile(rendered.text, KEY, escape_html=False).fill(values)

    assert url not in html  # raw quotes and brackets would end the attribute
    links = {a.get_text(strip=True): a.get("href") for a in soup_of(html).find_all("a")}
    assert links["Unsubscribe"] == url
    assert links["View in browser"] == values["browser_url"]
    unsubscribe_lines = [line for line in text.splitlines() if "Unsubscribe" in line]
    assert any(line.endswith(f" {url}") for line in unsubscribe_lines)
    assert "&amp;" not in text


def test_filling_replaces_every_marker_of_the_render(rendered: RenderedEmail) -> None:
    values = {
        "unsubscribe_url": "https://u.example/1",
        "browser_url": "https://b.example/1",
        "open_url": "https://o.example/1",
    }
    for body, escape in ((rendered.html, True), (rendered.text, False)):
        filled = placeholders.Template.compile(body, KEY, escape_html=escape).fill(values)
        assert "%%vm-" not in filled
        assert "https://u.example/1" in filled and "https://b.example/1" in filled


def test_marker_lookalike_in_comparison_text_is_never_substituted(
    example: dict[str, Any],
) -> None:
    lookalike = placeholders.marker("0000000000000000", "unsubscribe_url")
    example["title"] = f"Title {lookalike}"
    example["reviews"][0]["quote"] = f"Quote {lookalike}"
    example["reviews"][0]["reviewer"] = f"Lens {lookalike}"
    key = placeholders.new_key()
    email = render_weekly(doc_of(example), key=key, footer=FOOTER)
    values = {
        "unsubscribe_url": "https://u.example/secret",
        "browser_url": "https://b.example/",
        "open_url": "https://o.example/",
    }

    html = placeholders.Template.compile(email.html, key, escape_html=True).fill(values)
    text = placeholders.Template.compile(email.text, key, escape_html=False).fill(values)

    shown = text_nodes(visible_body(html))
    for field in ("Title", "Quote", "Lens"):
        assert f"{field} {lookalike}" in shown
        assert f"{field} {lookalike}" in text
    assert html.count("https://u.example/secret") == 1  # only the footer link
    assert text.count("https://u.example/secret") == 1
