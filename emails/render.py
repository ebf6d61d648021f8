"""The one render path: Jinja2 (autoescape) → MJML → HTML, CSS inlined; plus the text part.

This is the only module that imports `mjml` and the CSS inliner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import escape
from mjml import mjml2html

from emails import placeholders
from worker.comparisons import ComparisonDoc

TEMPLATES = Path(__file__).parent / "templates"
BRAND = "Weekly AI Tool Verdicts"
# The open pixel of a copy nobody should count (a preview): the same 1x1 GIF, inline.
BLANK_PIXEL_URL = (
    "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw=="
)
DASH = "—"

_html_env = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
)
_text_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=False,  # plain text: nothing is markup there
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
# Keep @media rules (the mobile layout) in a <style> block; never fetch remote stylesheets.
_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

# Whatever could end a header line or hide in one: CR, LF, other controls, line separators.
_HEADER_BREAKERS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def one_line(text: str) -> str:
    """Text made safe for a header: line breaks and control characters become single spaces."""
    return " ".join(_HEADER_BREAKERS.sub(" ", text).split())


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    mjml: str
    html: str
    text: str


@dataclass(frozen=True)
class Footer:
    postal_address: str
    public_base_url: str


def pct(value: int | None) -> str:
    return DASH if value is None else f"{value}%"


def _view(
    doc: ComparisonDoc, *, subject: str, preheader: str, key: str, footer: Footer
) -> dict[str, Any]:
    tools = []
    for tool in doc.tools:
        reviews = doc.reviews_of(tool.key)
        tools.append(
            {
                "key": tool.key,
                "name": tool.name,
                "category": tool.category,
                "tagline": tool.tagline,
                "panel": pct(doc.panel_ship_pct(tool.key)),
                "community": pct(None if tool.community_pct is None else round(tool.community_pct)),
                "pricing": tool.pricing or DASH,
                "summary": tool.summary,
                "ships": sum(1 for review in reviews if review.verdict == "ship"),
                "reviews": len(reviews),
            }
        )
    names = {tool.key: tool.name for tool in doc.tools}
    lenses: dict[str, list[dict[str, str]]] = {}
    for review in doc.reviews:
        lenses.setdefault(review.reviewer, []).append(
            {"tool": names[review.tool], "verdict": review.verdict, "quote": review.quote}
        )
    return {
        "brand": BRAND,
        "subject": subject,
        "preheader": preheader,
        "kind": doc.kind,
        "title": doc.title,
        "dek": doc.dek,
        "url": doc.url,
        "published": doc.published.strftime("%-d %B %Y"),
        "tools": tools,
        "lenses": [{"lens": lens, "reviews": reviews} for lens, reviews in lenses.items()],
        "postal_address": footer.postal_address,
        "subscribe_url": f"{footer.public_base_url}/subscribe",
        "url_link": placeholders.link_marker(key, doc.url),
        **{name: placeholders.marker(key, name) for name in placeholders.VALUES},
        "personal": placeholders.marker(key, placeholders.SECTION_START),
        "end_personal": placeholders.marker(key, placeholders.SECTION_END),
    }


_EMPTY_TITLE = "<title></title>"
_WRAPPER = '<div aria-roledescription="email"'


def _with_title(html: str, subject: str) -> str:
    """Set <title> and the wrapper's accessible name to the subject ourselves.

    <mj-title> would do it, but the compiler writes the aria-label copy with debug escapes
    (a joined emoji or a combining accent comes out as the text "\\u{200d}"), so the title is
    left out of the MJML and inserted here, escaped, into the two places it belongs.
    """
    escaped = escape(subject)
    html = html.replace(_EMPTY_TITLE, f"<title>{escaped}</title>", 1)
    return html.replace(_WRAPPER, f'<div aria-label="{escaped}" aria-roledescription="email"', 1)


def render_weekly(
    doc: ComparisonDoc,
    *,
    key: str,
    footer: Footer,
    subject: str | None = None,
    preheader: str | None = None,
) -> RenderedEmail:
    """Render the weekly issue once; per-recipient values stay as markers keyed by `key`."""
    subject = one_line(subject if subject is not None else doc.title)
    preheader = one_line(preheader if preheader is not None else doc.dek)
    view = _view(doc, subject=subject, preheader=preheader, key=key, footer=footer)
    source = _html_env.get_template("weekly.mjml.j2").render(view)
    html = _with_title(_inliner.inline(mjml2html(source, disable_comments=True)), subject)
    text = _text_env.get_template("weekly.txt.j2").render(view)
    return RenderedEmail(subject=subject, preheader=preheader, mjml=source, html=html, text=text)


CONFIRM_SUBJECT = f"Confirm your subscription to {BRAND}"


def render_confirmation(*, email: str, confirm_url: str, footer: Footer) -> RenderedEmail:
    """The double opt-in mail: rendered per reader (it is one mail, not an edition)."""
    view = {
        "brand": BRAND,
        "email": email,
        "confirm_url": confirm_url,
        "preheader": "One click and the weekly verdicts start arriving.",
        "postal_address": footer.postal_address,
    }
    source = _html_env.get_template("confirm.mjml.j2").render(view)
    html = _with_title(_inliner.inline(mjml2html(source, disable_comments=True)), CONFIRM_SUBJECT)
    text = _text_env.get_template("confirm.txt.j2").render(view)
    return RenderedEmail(
        subject=CONFIRM_SUBJECT,
        preheader=str(view["preheader"]),
        mjml=source,
        html=html,
        text=text,
    )
