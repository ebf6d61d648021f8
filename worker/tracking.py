"""Signed tokens for every public link: unsubscribe, confirm, open pixel and tracked click.

A token is `payload.mac`: the payload in URL-safe base64, the MAC an HMAC-SHA256 over the purpose
and the payload, so a token made for one purpose is worthless for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from enum import StrEnum

MAC_BYTES = 16
CONFIRM_MAX_AGE = timedelta(days=7)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Purpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    CONFIRM = "confirm"
    OPEN = "open"
    CLICK = "click"
    CSRF = "csrf"
    SESSION = "session"


class InvalidToken(ValueError):
    """Forged, altered, truncated or made for another purpose."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: Purpose, payload: str) -> bytes:
    message = f"{purpose.value}\x00{payload}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES]


def sign(key: bytes, purpose: Purpose, data: str) -> str:
    payload = _b64(data.encode())
    return f"{payload}.{_b64(_mac(key, purpose, payload))}"


def verify(key: bytes, purpose: Purpose, token: str) -> str:
    """The data inside a token, or InvalidToken."""
    payload, dot, mac = token.partition(".")
    if not dot or not payload or not mac:
        raise InvalidToken("malformed token")
    # Compare the encoded form: base64's spare trailing bits would let a decoded comparison
    # accept more than one spelling of the same MAC.
    if not hmac.compare_digest(mac.encode(), _b64(_mac(key, purpose, payload)).encode()):
        raise InvalidToken("token signature does not match")
    try:
        return _unb64(payload).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("malformed token") from None


def unsubscribe_token(key: bytes, *, subscriber_id: int, delivery_id: int | None) -> str:
    return sign(key, Purpose.UNSUBSCRIBE, f"s{subscriber_id}.d{delivery_id or 0}")


def read_unsubscribe_token(key: bytes, token: str) -> tuple[int, int | None]:
    """(subscriber id, delivery id or None) from an unsubscribe token."""
    data = verify(key, Purpose.UNSUBSCRIBE, token)
    try:
        subscriber, delivery = data.split(".")
        delivery_id = int(delivery.removeprefix("d"))
        return int(subscriber.removeprefix("s")), delivery_id or None
    except ValueError:
        raise InvalidToken("token payload is not an unsubscribe payload") from None


def _delivery_payload(data: str, *, what: str) -> tuple[int, str]:
    head, _, rest = data.partition("|")
    try:
        delivery_id = int(head.removeprefix("d"))
    except ValueError:
        raise InvalidToken(f"token payload is not {what} payload") from None
    if not head.startswith("d") or delivery_id <= 0:
        raise InvalidToken(f"token payload is not {what} payload")
    return delivery_id, rest


def open_token(key: bytes, *, delivery_id: int) -> str:
    return sign(key, Purpose.OPEN, f"d{delivery_id}")


def read_open_token(key: bytes, token: str) -> int:
    """The delivery an open pixel was sent in."""
    delivery_id, rest = _delivery_payload(verify(key, Purpose.OPEN, token), what="an open")
    if rest:
        raise InvalidToken("token payload is not an open payload")
    return delivery_id


def click_token(key: bytes, *, delivery_id: int, url: str) -> str:
    """The target travels sealed in the token: the redirect can only go where the email linked."""
    return sign(key, Purpose.CLICK, f"d{delivery_id}|{url}")


def read_click_token(key: bytes, token: str) -> tuple[int, str]:
    """(delivery id, target URL) from a click token; only http(s) targets are ever sealed."""
    delivery_id, url = _delivery_payload(verify(key, Purpose.CLICK, token), what="a click")
    if not url.startswith(("https://", "http://")):
        raise InvalidToken("click target is not a web address")
    return delivery_id, url


def confirm_token(key: bytes, *, subscriber_id: int, issued_at: datetime) -> str:
    # Microseconds: the link must be told apart from an unsubscribe made just after it.
    micros = (issued_at - EPOCH) // timedelta(microseconds=1)
    return sign(key, Purpose.CONFIRM, f"s{subscriber_id}.t{micros}")


def read_confirm_token(key: bytes, token: str, *, now: datetime) -> tuple[int, datetime]:
    """(subscriber id, when the link was made); a link older than CONFIRM_MAX_AGE is refused."""
    data = verify(key, Purpose.CONFIRM, token)
    try:
        subscriber, issued = data.split(".")
        subscriber_id = int(subscriber.removeprefix("s"))
        micros = int(issued.removeprefix("t"))
        issued_at = EPOCH + timedelta(microseconds=micros)
    except (ValueError, OverflowError, OSError):
        raise InvalidToken("token payload is not a confirm payload") from None
    if now - issued_at > CONFIRM_MAX_AGE:
        raise InvalidToken("confirmation link has expired")
    return subscriber_id, issued_at
