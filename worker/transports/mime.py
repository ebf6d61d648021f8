"""Build RFC 5322 multipart/alternative messages fast: thousands a second on one core.

The stdlib `email` package is correct but spends most of a message's time in generic policy
code. Here the parts that are the same for every recipient of an edition (From, Subject, the
MIME skeleton) are folded once, the bodies are quoted-printable encoded by the C `binascii`
codec, and only To, Message-ID, Date and the personal headers are made per message. Tests parse
what this writes with `email` to hold it to the RFC.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from emails.placeholders import Template, Tracker
from worker.transports.base import OutgoingMessage

# "=_" can never occur in quoted-printable output ("=" is always written "=3D"), so a boundary
# that contains it can never collide with a body line.
BOUNDARY = "=_vm-alt-boundary"


def _reject_breaks(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} contains a line break; refusing to build the message")


def fold(name: str, value: str) -> str:
    """'Name: value' folded and RFC 2047-encoded where needed, ending in CRLF."""
    _reject_breaks(name, value)
    if value.isascii() and "=?" not in value and _longest_word(value) <= _LONGEST_PLAIN_WORD:
        return _fold_ascii(name, value)
    # Non-ASCII text, text a reader would mistake for an RFC 2047 encoded-word, or a word too
    # long for one line: let the encoder write (and split) encoded-words.
    return _fold_encoded(name, value)


_LONGEST_PLAIN_WORD = 900  # RFC 5322 allows 998 bytes a line, name and folding included


def _longest_word(value: str) -> int:
    return max((len(word) for word in value.split(" ")), default=0)


def _fold_ascii(name: str, value: str) -> str:
    """Fold at spaces only and never encode: List-Unsubscribe URLs must stay readable as written."""
    line = f"{name}:"
    lines = []
    for word in value.split(" "):
        if len(line) + 1 + len(word) > 78 and line.strip() and not line.endswith(":"):
            lines.append(line)
            line = ""
        line += f" {word}"
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


@lru_cache(maxsize=64)  # the Subject repeats for every recipient of an edition
def _fold_encoded(name: str, value: str) -> str:
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n", maxlinelen=78)
    return f"{name}: {encoded}\r\n"


@lru_cache(maxsize=1024)
def fold_address(header: str, display_name: str, email: str) -> str:
    """An address header (From, To): the display name encoded where needed, the address as is."""
    _reject_breaks(header, display_name + email)
    if not email.isascii():
        raise ValueError(f"address {email!r} is not ASCII; internationalised mailboxes are refused")
    if not display_name:
        return _fold_ascii(header, email)
    if display_name.isascii() and "=?" not in display_name:
        return _fold_ascii(header, formataddr((display_name, email)))
    encoded = Header(display_name, "utf-8", header_name=header).encode(
        linesep="\r\n", maxlinelen=78
    )
    return f"{header}: {encoded} <{email}>\r\n"


def _crlf(text: str) -> str:
    """Every line break as CRLF: a lone CR or LF is not allowed in a message body."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def _qp(text: str) -> bytes:
    data = _crlf(text).encode("utf-8")
    encoded = binascii.b2a_qp(data, istext=True)
    if b"\r\n" not in data:
        # With no CRLF in its input the codec writes its soft line breaks as a bare LF.
        encoded = encoded.replace(b"\n", b"\r\n")
    return encoded


# A soft line break: invisible once decoded, it lets independently encoded pieces be joined
# without any encoded line growing past 76 characters.
_SOFT_BREAK = b"=\r\n"
_QP_LINE = 76


def _leave_room_for_soft_break(encoded: bytes) -> bytes:
    """Make the last line at most 75 characters so a soft break ("=") can follow it."""
    start = encoded.rfind(b"\n") + 1
    last = encoded[start:]
    if len(last) < _QP_LINE:
        return encoded
    cut = 0  # the last boundary between encoded characters ("x" or "=XX") within 75 columns
    position = 0
    while position < len(last):
        step = 3 if last[position : position + 1] == b"=" else 1
        if position + step > _QP_LINE - 1:
            break
        position += step
        cut = position
    return encoded[:start] + last[:cut] + _SOFT_BREAK + last[cut:]


@dataclass(frozen=True)
class EncodedTemplate:
    """A body template whose literal parts are quoted-printable encoded once per edition.

    Filling it encodes only the short per-recipient values, which is what makes building a
    personalised message cheap: encoding a 40 KB body costs far more than the rest of a message.
    """

    encoded_literals: tuple[bytes, ...]
    template: Template

    @classmethod
    def of(cls, template: Template) -> EncodedTemplate:
        literals = [_qp(part) for part in template.parts[::2]]
        # Every literal but the last is followed by a soft break, so it needs room for one.
        literals[:-1] = [_leave_room_for_soft_break(literal) for literal in literals[:-1]]
        return cls(tuple(literals), template)

    def fill(self, values: Mapping[str, str], track: Tracker | None = None) -> bytes:
        names = self.template.parts[1::2]
        chunks = [self.encoded_literals[0]]
        for name, literal in zip(names, self.encoded_literals[1:], strict=True):
            value = _leave_room_for_soft_break(_qp(self.template.value(name, values, track)))
            chunks += (_SOFT_BREAK, value, _SOFT_BREAK, literal)
        return b"".join(chunks)


@dataclass(frozen=True)
class EncodedBodies:
    """Quoted-printable text and HTML, decoding to exactly the message's `text` and `html`."""

    text: bytes
    html: bytes


@lru_cache(maxsize=16)
def _parsed_from(from_address: str) -> tuple[str, str]:
    _reject_breaks("From", from_address)  # parseaddr would quietly drop a line break
    return parseaddr(from_address)


def build(message: OutgoingMessage, *, now: datetime | None = None) -> bytes:
    """The whole message as bytes with CRLF line ends, ready for a file, SMTP or SES raw."""
    encoded = message.encoded or EncodedBodies(text=_qp(message.text), html=_qp(message.html))
    date = format_datetime(now or datetime.now(UTC))
    head = [
        fold_address("From", *_parsed_from(message.from_address)),
        fold_address("To", message.to_name, message.to_address),
        fold("Subject", message.subject),
        f"Date: {date}\r\n",
        fold("Message-ID", message.message_id),
        "MIME-Version: 1.0\r\n",
    ]
    for name, value in message.headers.items():
        head.append(fold(name, value))
    head.append(f'Content-Type: multipart/alternative; boundary="{BOUNDARY}"\r\n\r\n')
    part = (
        "--" + BOUNDARY + "\r\n"
        'Content-Type: text/{kind}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return b"".join(
        (
            "".join(head).encode("ascii"),
            part.format(kind="plain").encode(),
            encoded.text,
            b"\r\n",
            part.format(kind="html").encode(),
            encoded.html,
            f"\r\n--{BOUNDARY}--\r\n".encode(),
        )
    )
