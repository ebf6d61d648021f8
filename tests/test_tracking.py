"""Signed link tokens: round trip, and refusal of anything forged, altered or misused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker import tracking
from worker.tracking import InvalidToken, Purpose

KEY = b"k" * 32


def test_unsubscribe_token_round_trips() -> None:
    token = tracking.unsubscribe_token(KEY, subscriber_id=12, delivery_id=345)
    assert tracking.read_unsubscribe_token(KEY, token) == (12, 345)


def test_token_is_url_safe() -> None:
    token = tracking.sign(KEY, Purpose.CLICK, "https://example.com/?a=1&b=ü")
    assert all(c.isalnum() or c in "-_." for c in token)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "czk5LmQx" + t[t.index(".") :],  # someone else's payload, our MAC
        lambda t: t.replace(".", ""),
        lambda t: t[: len(t) // 2],
        lambda t: "",
        lambda t: "!!!.???",
    ],
)
def test_altered_tokens_are_refused(tamper: object) -> None:
    token = tracking.unsubscribe_token(KEY, subscriber_id=1, delivery_id=1)
    with pytest.raises(InvalidToken):
        tracking.read_unsubscribe_token(KEY, tamper(token))  # type: ignore[operator]


def test_a_token_made_for_another_purpose_is_refused() -> None:
    token = tracking.sign(KEY, Purpose.OPEN, "s1.d1")
    with pytest.raises(InvalidToken):
        tracking.verify(KEY, Purpose.UNSUBSCRIBE, token)


def test_a_token_signed_with_another_key_is_refused() -> None:
    token = tracking.unsubscribe_token(b"other" * 8, subscriber_id=1, delivery_id=1)
    with pytest.raises(InvalidToken):
        tracking.read_unsubscribe_token(KEY, token)


def test_click_token_carries_its_delivery_and_exact_target() -> None:
    url = "https://example.com/a|b?c=ü&d=%20#frag"
    token = tracking.click_token(KEY, delivery_id=7, url=url)
    assert tracking.read_click_token(KEY, token) == (7, url)


@pytest.mark.parametrize("target", ["javascript:alert(1)", "//evil.example", "data:text/html,x"])
def test_a_click_token_sealing_a_non_web_target_is_refused(target: str) -> None:
    token = tracking.sign(KEY, Purpose.CLICK, f"d7|{target}")
    with pytest.raises(InvalidToken, match="web address"):
        tracking.read_click_token(KEY, token)


def test_open_token_round_trips_and_is_no_click_token() -> None:
    token = tracking.open_token(KEY, delivery_id=99)
    assert tracking.read_open_token(KEY, token) == 99
    with pytest.raises(InvalidToken):
        tracking.read_click_token(KEY, token)


@pytest.mark.parametrize("payload", ["d0", "dx", "s5", "d-3", "d5|https://x.example"])
def test_open_tokens_with_payloads_we_never_make_are_refused(payload: str) -> None:
    with pytest.raises(InvalidToken):
        tracking.read_open_token(KEY, tracking.sign(KEY, Purpose.OPEN, payload))


def test_confirm_token_keeps_the_microsecond_and_expires_after_a_week() -> None:
    issued = datetime(2026, 11, 24, 9, 30, 15, 123457, tzinfo=UTC)
    token = tracking.confirm_token(KEY, subscriber_id=3, issued_at=issued)
    assert tracking.read_confirm_token(KEY, token, now=issued + timedelta(days=6)) == (3, issued)
    with pytest.raises(InvalidToken, match="expired"):
        tracking.read_confirm_token(KEY, token, now=issued + timedelta(days=7, seconds=1))


def test_a_confirm_token_with_an_absurd_time_is_refused_not_crashed() -> None:
    token = tracking.sign(KEY, Purpose.CONFIRM, "s3.t99999999999999999999999")
    with pytest.raises(InvalidToken):
        tracking.read_confirm_token(KEY, token, now=datetime.now(UTC))
