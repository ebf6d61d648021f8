"""Messages built by `worker.transports.mime`, held to RFC 5322/2045/2047 by the stdlib parser.

Whatever the fast builder writes must read back, through `email` with the default policy, as
exactly the subject, names and bodies it was given, and must never let a value start a header.
"""

from __future__ import annotations

import binascii
import json
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from emails import placeholders
from emails.render import render_weekly
from tests.helpers import example_payload, parse
from worker import comparisons, delivery, tracking
from worker.config import Settings
from worker.editions import edition_of, footer_of
from worker.models import Edition, EditionStatus
from worker.sending import personalise, prepare_mail
from worker.transports.base import FailureKind, OutgoingMessage
from worker.transports.mime import EncodedTemplate, build
from worker.transports.outbox import OutboxTransport

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
UNSUBSCRIBE_URL = "https://verdicts.example.org/unsubscribe/abc.def"
LIST_UNSUBSCRIBE = (
    f"<{UNSUBSCRIBE_URL}>, <mailto:unsubscribe@example.org?subject=unsubscribe%20abc.def>"
)


def outgoing(**changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "from_address": "Weekly AI Tool Verdicts <verdicts@example.org>",
        "to_address": "ana@example.com",
        "to_name": "Ana",
        "subject": "Claude 4 API vs Code Llama 4",
        "html": "<p>Hello</p>\n",
        "text": "Hello\n",
        "message_id": "<e1-d1.0123456789abcdef@example.org>",
        "tag": "e1-d1",
        "headers": {
            "List-Unsubscribe": LIST_UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


def raw_header_lines(data: bytes, name: str) -> list[bytes]:
    """The raw lines of header `name`, its continuation lines included."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    found: list[bytes] = []
    inside = False
    for line in head:
        if line[:1] in (b" ", b"\t"):
            if inside:
                found.append(line)
            continue
        inside = line.lower().startswith(name.lower().encode() + b":")
        if inside:
            found.append(line)
    return found


def rfc2047_address(data: bytes, name: str) -> tuple[str, str]:
    """(display name, address) of header `name`, decoded by RFC 2047 6.2 to the letter.

    The stdlib's header-registry parser puts a space between two adjacent encoded-words of a
    display name, which 6.2 says to ignore; the legacy decoder follows the RFC.
    """
    raw = b"".join(raw_header_lines(data, name)).decode("ascii").split(":", 1)[1]
    encoded_name, addr = parseaddr(raw)
    return str(make_header(decode_header(encoded_name))), addr


def with_crlf(text: str) -> str:
    """Text with every line end written CRLF, as RFC 5322 carries it."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def bodies(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    return plain.get_content(), html.get_content()


# Structure


def test_message_is_multipart_alternative_with_text_then_html_in_utf8() -> None:
    message = parse(build(outgoing(), now=NOW))
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    assert message.defects == [] and all(part.defects == [] for part in parts)


LONG_LINE = "Tool calls stream as they form; " * 12
BODIES = {
    "non-ascii": "Zoë’s verdict: ✓ SHIP — 你好世界, مرحبا, 👩🏽‍💻\n",
    "long lines": f"{LONG_LINE}\n{'x' * 300}\n",
    "from and dots": "From here on\n.\n.leading dot\n..\nend\n",
    "equals signs": "a=b == c =3D =\n=\n=?utf-8?q?x?=\n",
    "crlf input": "first\r\nsecond\r\n\r\nthird",
    "lf input": "first\nsecond\n\nthird\n",
    "trailing whitespace": "space at end \ntab at end\t\n  indented\n",
    "no final newline": "just one line",
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_both_bodies_decode_to_exactly_the_input(body: str) -> None:
    html = f"<p>{body}</p>"
    message = parse(build(outgoing(text=body, html=html), now=NOW))
    assert bodies(message) == (with_crlf(body), with_crlf(html))


def test_core_headers_appear_exactly_once() -> None:
    message = parse(build(outgoing(), now=NOW))
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        assert len(message.get_all(name) or []) == 1, name
    assert message["Message-ID"] == "<e1-d1.0123456789abcdef@example.org>"
    assert parsedate_to_datetime(str(message["Date"])) == NOW


# Encoding of non-ASCII text in headers


@pytest.mark.parametrize(
    ("subject", "to_name"),
    [
        pytest.param("Claude 4 API vs Code Llama 4 — ship or skip? ✓", "Zoë Müller", id="short"),
        pytest.param(
            "مرحبا بالعالم 👩🏽‍💻 & \"quotes\" 'apos'", 'Zoë "Z" O’Neil, Jr.', id="short-rtl-emoji"
        ),
        pytest.param(
            "你好世界: " + "Über lange Betreffzeilen " * 6, "山田太郎 " * 12, id="long-folded"
        ),
        pytest.param(
            "Zoë’s pick: " + "Claude 4 API: Tool Use Streaming & Prompt Caching vs Code Llama 4",
            "Zoë",
            id="long-title",
        ),
    ],
)
def test_non_ascii_subject_and_display_name_are_encoded_and_decode_back(
    subject: str, to_name: str
) -> None:
    data = build(outgoing(subject=subject, to_name=to_name), now=NOW)
    assert data.isascii()
    assert b"=?" in b"".join(raw_header_lines(data, "Subject"))
    assert b"=?" in b"".join(raw_header_lines(data, "To"))
    assert parse(data)["Subject"] == subject
    assert rfc2047_address(data, "To") == (to_name, "ana@example.com")


@pytest.mark.parametrize(
    "sender_name",
    [
        pytest.param("Verdicts Ü ✓", id="short"),
        pytest.param("Wöchentliche Urteile über KI-Werkzeuge ✓ " * 2, id="long"),
    ],
)
def test_non_ascii_sender_name_decodes_back(sender_name: str) -> None:
    sender = f"{sender_name.strip()} <verdicts@example.org>"
    data = build(outgoing(from_address=sender), now=NOW)
    assert data.isascii()
    assert b"=?" in b"".join(raw_header_lines(data, "From"))
    assert rfc2047_address(data, "From") == (sender_name.strip(), "verdicts@example.org")


def test_ascii_display_name_with_specials_decodes_back() -> None:
    name = 'Ana "the builder" O\'Neil, Jr. (CTO) <x>'
    (address,) = parse(build(outgoing(to_name=name), now=NOW))["To"].addresses
    assert (address.display_name, address.addr_spec) == (name, "ana@example.com")


def test_text_that_looks_like_an_encoded_word_is_shown_literally() -> None:
    subject = "How =?utf-8?q?Evil?= headers work"
    name = "=?utf-8?q?Support?="
    message = parse(build(outgoing(subject=subject, to_name=name), now=NOW))
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == name


# List-Unsubscribe (RFC 2369, RFC 8058)


def test_list_unsubscribe_stays_plain_ascii_with_https_and_mailto() -> None:
    data = build(outgoing(to_name="Zoë Müller"), now=NOW)
    assert b"=?" in b"".join(raw_header_lines(data, "To"))  # its neighbour is encoded
    raw = b"".join(raw_header_lines(data, "List-Unsubscribe"))
    assert raw.isascii() and b"=?" not in raw
    value = str(parse(data)["List-Unsubscribe"])
    assert f"<{UNSUBSCRIBE_URL}>" in value
    assert "<mailto:unsubscribe@example.org?subject=unsubscribe%20abc.def>" in value


def test_long_list_unsubscribe_is_folded_only_between_its_urls() -> None:
    long_url = "https://verdicts.example.org/unsubscribe/" + "t" * 120
    header = f"<{long_url}>, <mailto:unsubscribe@example.org?subject=unsubscribe%20{'t' * 120}>"
    data = build(outgoing(headers={"List-Unsubscribe": header}), now=NOW)
    assert f"<{long_url}>" in str(parse(data)["List-Unsubscribe"])
    for line in raw_header_lines(data, "List-Unsubscribe"):
        assert line.count(b"<") == line.count(b">")  # never breaks inside a URL


def test_list_unsubscribe_post_is_one_click() -> None:
    message = parse(build(outgoing(), now=NOW))
    assert message.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]


# Line discipline


def test_every_line_ends_in_crlf_and_fits_998_bytes() -> None:
    message = outgoing(
        subject="A long subject of many words " * 20,
        to_name="Zoë " * 40,
        text=("word " * 400 + "\n") * 3,
        html="<p>" + "ü" * 2000 + "</p>",
    )
    data = build(message, now=NOW)
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_ascii_subject_without_spaces_still_fits_998_bytes() -> None:
    subject = "x" * 1200
    data = build(outgoing(subject=subject), now=NOW)
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert parse(data)["Subject"] == subject


# Header injection


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r"])
@pytest.mark.parametrize(
    "field",
    [
        "subject",
        "to_name",
        "to_address",
        "from_address",
        "header value",
        "message_id",
    ],
)
def test_line_break_in_any_header_value_is_refused(field: str, brk: str) -> None:
    evil = f"x{brk}Bcc: victim@example.net"
    if field == "header value":
        message = outgoing(headers={"List-Unsubscribe": f"<{UNSUBSCRIBE_URL}>{evil}"})
    elif field == "message_id":
        message = outgoing(message_id=f"<e1-d1@example.org>{evil}")
    elif field in ("to_address", "from_address"):
        message = outgoing(**{field: f"ana@example.com{evil}"})
    else:
        message = outgoing(**{field: evil})
    with pytest.raises(ValueError):
        build(message, now=NOW)


# The outbox transport


def test_outbox_writes_tag_eml_atomically_and_returns_its_path(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "outbox")
    first, second = outgoing(tag="e1-d1"), outgoing(tag="e1-d2", to_address="bo@example.com")

    results = outbox.send([first, second])

    assert [result.ok for result in results] == [True, True]
    files = sorted((tmp_path / "outbox").iterdir())  # no .partial left behind
    assert [path.name for path in files] == ["e1-d1.eml", "e1-d2.eml"]
    assert [result.provider_id for result in results] == [str(path) for path in files]
    assert parse(files[1].read_bytes())["To"].addresses[0].addr_spec == "bo@example.com"


def test_outbox_replaces_an_earlier_file_of_the_same_tag(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path)
    outbox.send([outgoing(subject="First")])
    (result,) = outbox.send([outgoing(subject="Second")])
    assert result.provider_id is not None
    assert parse(Path(result.provider_id).read_bytes())["Subject"] == "Second"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["e1-d1.eml"]


def test_outbox_that_cannot_make_its_folder_blocks_the_account(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    results = OutboxTransport(blocker / "outbox").send([outgoing()])
    assert [result.failure for result in results] == [FailureKind.ACCOUNT]
    assert str(blocker / "outbox") in results[0].reason


@pytest.mark.parametrize(
    "unbuildable",
    [
        {"to_address": "josé@example.com"},  # needs SMTPUTF8, which this builder does not write
        {"to_name": "Ana\r\nBcc: victim@example.net"},
    ],
    ids=["non-ascii-mailbox", "line-break-in-name"],
)
def test_unbuildable_message_fails_alone_and_permanently(
    tmp_path: Path, unbuildable: dict[str, str]
) -> None:
    outbox = OutboxTransport(tmp_path)

    results = outbox.send([outgoing(tag="e1-d1", **unbuildable), outgoing(tag="e1-d2")])

    assert [result.failure for result in results] == [FailureKind.PERMANENT, None]
    assert results[0].reason
    assert [path.name for path in tmp_path.iterdir()] == ["e1-d2.eml"]


# A real edition, personalised


def approved_edition(settings: Settings) -> Edition:
    """An edition of the bundled example as `editions.prepare` stores it (not saved anywhere)."""
    doc = comparisons.parse_document(json.dumps(example_payload()).encode(), source="test.json")
    key = placeholders.new_key()
    rendered = render_weekly(doc, key=key, footer=footer_of(settings))
    edition = edition_of(
        rendered,
        key=key,
        comparison_id=3,
        schedule_id=1,
        period_key="2026-W47",
        source_hash="c" * 64,
        status=EditionStatus.APPROVED,
    )
    edition.id = 7
    return edition


RECIPIENT = delivery.Claimed(
    delivery_id=17, subscriber_id=5, email="zoe@example.com", name="Zoë Müller", active=True
)


def test_personalised_edition_has_one_unsubscribe_url_in_header_and_both_bodies(
    settings: Settings,
) -> None:
    edition = approved_edition(settings)
    mail = prepare_mail(edition, "claude-4-api-vs-code-llama-4", settings)

    data = build(personalise(mail, RECIPIENT, settings, settings.signing_key()), now=NOW)

    assert data.isascii()
    assert b"=?" not in b"".join(raw_header_lines(data, "List-Unsubscribe"))
    message = parse(data)
    assert message["Subject"] == edition.subject
    assert message.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    assert rfc2047_address(data, "To") == ("Zoë Müller", "zoe@example.com")
    links = [part.strip().strip("<>") for part in str(message["List-Unsubscribe"]).split(",")]
    https_url = next(link for link in links if link.startswith("https://"))
    assert any(link.startswith(f"mailto:{settings.unsubscribe_mailto}") for link in links)
    text, html = bodies(message)
    hrefs = {a.get_text(strip=True): a.get("href") for a in BeautifulSoup(html, "html.parser")("a")}
    assert hrefs["Unsubscribe"] == https_url
    assert hrefs["View in browser"] == mail.browser_url
    assert f"Unsubscribe: {https_url}" in text.splitlines()
    token = https_url.rsplit("/", 1)[-1]
    assert tracking.read_unsubscribe_token(settings.signing_key(), token) == (5, 17)


def test_personalised_bodies_decode_to_exactly_the_filled_templates(settings: Settings) -> None:
    mail = prepare_mail(approved_edition(settings), "claude-4-api-vs-code-llama-4", settings)
    message = personalise(mail, RECIPIENT, settings, settings.signing_key())

    data = build(message, now=NOW)

    assert bodies(parse(data)) == (with_crlf(message.text), with_crlf(message.html))
    assert "%%vm-" not in message.text and "%%vm-" not in message.html
    body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 76  # RFC 2045 6.7 (5)


def test_pre_encoded_line_ending_just_before_a_placeholder_stays_within_76() -> None:
    key = "0123456789abcdef"
    body = "Unsubscribe: " + "x" * 63 + placeholders.marker(key, "unsubscribe_url") + "\n"
    template = placeholders.Template.compile(body, key, escape_html=False)
    values = {"unsubscribe_url": "https://verdicts.example.org/u/t", "browser_url": ""}
    encoded = EncodedTemplate.of(template).fill(values)
    assert binascii.a2b_qp(encoded).decode() == with_crlf(template.fill(values))
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 76
