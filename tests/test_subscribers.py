"""Subscribers: validated and normalised addresses, CSV import, no silent re-activation."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from worker import db, subscribers
from worker.errors import InputError, NotFoundError
from worker.models import SubscriberStatus


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ada@Example.COM ", "ada@example.com"),
        ("x.y+tag@sub.example.org", "x.y+tag@sub.example.org"),
    ],
)
def test_addresses_are_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert subscribers.normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "no-at-sign", "a@", "@example.com", "a b@example.com", "a@example..com"]
)
def test_invalid_addresses_are_refused_with_the_address_named(raw: str) -> None:
    with pytest.raises(InputError, match="email"):
        subscribers.normalise_email(raw)


def test_a_name_cannot_carry_a_line_break_into_a_header() -> None:
    assert subscribers.clean_name("Ada\r\nBcc: evil@example.com") == "Ada Bcc: evil@example.com"


def test_adding_twice_is_refused(engine: Engine) -> None:
    with db.session_scope(engine) as session:
        subscribers.add(session, "ada@example.com", name="Ada", source="test")
    with pytest.raises(InputError, match="already subscribed"), db.session_scope(engine) as session:
        subscribers.add(session, "ADA@example.com", name=None, source="test")


def test_an_unsubscribed_address_is_not_re_activated_by_add_or_import(
    engine: Engine, tmp_path: Path
) -> None:
    with db.session_scope(engine) as session:
        subscribers.add(session, "ada@example.com", name="Ada", source="test")
        subscribers.unsubscribe(session, "ada@example.com")
    with pytest.raises(InputError, match="unsubscribed"), db.session_scope(engine) as session:
        subscribers.add(session, "ada@example.com", name=None, source="test")
    csv = tmp_path / "list.csv"
    csv.write_text("email,name\nada@example.com,Ada\n")
    with db.session_scope(engine) as session:
        report = subscribers.import_csv(session, csv)
    assert report.added == 0 and report.kept_inactive == [
        "line 2: ada@example.com stays unsubscribed"
    ]
    with db.session_scope(engine) as session:
        assert subscribers.find(session, "ada@example.com").status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_csv_import_reports_bad_rows_by_line_and_skips_duplicates(
    engine: Engine, tmp_path: Path
) -> None:
    csv = tmp_path / "list.csv"
    csv.write_text(
        "email,name\n"
        "ada@example.com,Ada\n"
        "not-an-address,Nobody\n"
        "GRACE@example.com,Grace\n"
        "\n"
        "ada@example.com,Ada again\n"
        "x@example.com,too,many\n"
        "linus@example.com\n"
    )
    with db.session_scope(engine) as session:
        subscribers.add(session, "grace@example.com", name="Grace", source="test")
    with db.session_scope(engine) as session:
        report = subscribers.import_csv(session, csv)
    assert report.added == 2
    assert report.duplicates == 2
    assert [line.split(":")[0] for line in report.bad_rows] == ["line 3", "line 7"]
    with db.session_scope(engine) as session:
        emails = [s.email for s in subscribers.list_subscribers(session, SubscriberStatus.ACTIVE)]
    assert emails == ["grace@example.com", "ada@example.com", "linus@example.com"]


def test_a_missing_csv_file_is_an_input_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"), db.session_scope(engine) as session:
        subscribers.import_csv(session, tmp_path / "nope.csv")


def test_forget_erases_the_address(engine: Engine) -> None:
    with db.session_scope(engine) as session:
        subscribers.add(session, "ada@example.com", name="Ada", source="test")
    with db.session_scope(engine) as session:
        subscribers.forget(session, "ada@example.com")
    with db.session_scope(engine) as session:
        assert subscribers.find(session, "ada@example.com") is None
    with pytest.raises(NotFoundError), db.session_scope(engine) as session:
        subscribers.forget(session, "ada@example.com")
