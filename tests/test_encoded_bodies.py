"""Pre-encoded edition bodies: filling them per recipient gives exactly the personalised text."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from emails.placeholders import Template, marker
from worker.transports import mime
from worker.transports.base import OutgoingMessage

KEY = "0123456789abcdef"

BODIES = [
    "plain",
    "trailing space before marker " + marker(KEY, "unsubscribe_url") + " and after\n",
    ("x" * 75 + marker(KEY, "browser_url") + "y" * 200 + "\n") * 3,
    "é ü 漢字 🙂 = =3D\r\nwindows\rmac\nunix " + marker(KEY, "unsubscribe_url"),
    marker(KEY, "unsubscribe_url") + marker(KEY, "browser_url"),
    "From the start\n.\n" + marker(KEY, "browser_url") + "\n",
]
VALUES = {
    "unsubscribe_url": "https://verdicts.example.org/unsubscribe/" + "A" * 90 + "?a=1&b=2",
    "browser_url": "https://verdicts.example.org/archive/some-slug",
}


def _message(body: str, *, pre_encoded: bool) -> bytes:
    html_t = Template.compile(body, KEY, escape_html=True)
    text_t = Template.compile(body, KEY, escape_html=False)
    encoded = None
    if pre_encoded:
        encoded = mime.EncodedBodies(
            text=mime.EncodedTemplate.of(text_t).fill(VALUES),
            html=mime.EncodedTemplate.of(html_t).fill(VALUES),
        )
    return mime.build(
        OutgoingMessage(
            from_address="a@example.org",
            to_address="b@example.org",
            to_name="",
            subject="s",
            html=html_t.fill(VALUES),
            text=text_t.fill(VALUES),
            message_id="<x@example.org>",
            tag="t",
            encoded=encoded,
        )
    )


def _bodies(raw: bytes) -> tuple[str, str]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


@pytest.mark.parametrize("body", BODIES)
def test_pre_encoded_bodies_decode_like_freshly_encoded_ones(body: str) -> None:
    fresh = _message(body, pre_encoded=False)
    pre = _message(body, pre_encoded=True)
    assert _bodies(pre) == _bodies(fresh)
    text, html = _bodies(pre)
    if marker(KEY, "unsubscribe_url") in body:
        assert VALUES["unsubscribe_url"] in text
        assert VALUES["unsubscribe_url"].replace("&", "&amp;") in html


@pytest.mark.parametrize("body", BODIES)
def test_pre_encoded_lines_stay_within_the_quoted_printable_limit(body: str) -> None:
    raw = _message(body, pre_encoded=True)
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
        assert b"\r" not in line and b"\n" not in line
    body_lines = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 76
