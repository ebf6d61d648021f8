"""Signed tokens for every public link (unsubscribe now; confirm, open and click later).

A token is `payload.mac`: the payload in URL-safe base64, the MAC an HMAC-SHA256 over the purpose
and the payload, so a token made for one purpose is worthless for another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import StrEnum

MAC_BYTES = 16


class Purpose(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    CONFIRM = "confirm"
    OPEN = "open"
    CLICK = "click"


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
