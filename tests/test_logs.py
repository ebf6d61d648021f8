"""Logs: readable or JSON lines, a line per edition change and per failed delivery, and never a
reader's address at INFO or below (the processes themselves: test_logs_processes.py)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlmodel import col

from tests.helpers import (
    add_subscribers,
    example_payload,
    require_approval,
    send_week,
    store_payload,
)
from worker import control, db, delivery, logs, sending, weekly
from worker.config import Settings
from worker.models import Delivery, EditionStatus, Subscriber, utcnow
from worker.transports.base import FailureKind
from worker.transports.memory import MemoryTransport

READERS = ("ada@example.com", "bob@example.org", "cy.d+news@example.net")


class Records(logging.Handler):
    """Every record as logged, before any formatter: what the sources themselves put in."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = Records()
    logging.getLogger().addHandler(handler)
    yield handler.records
    logging.getLogger().removeHandler(handler)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object (fails on any line that is not one)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def edition_moves(records: list[logging.LogRecord]) -> list[tuple[str | None, str]]:
    return [
        (r.__dict__["from_state"], r.__dict__["to_state"])
        for r in records
        if r.name == "worker.editions"
    ]


def routine_text(record: logging.LogRecord) -> str:
    """All a record at INFO or below would show: its message and its fields."""
    return record.getMessage() + " " + " ".join(map(str, logs.fields_of(record).values()))


def delivery_of(engine: Engine, email: str) -> int:
    with db.session_scope(engine) as session:
        found = session.execute(
            select(col(Delivery.id)).join(Subscriber).where(col(Subscriber.email) == email)
        ).scalar_one()
    return int(found)


# --- the two formats ---------------------------------------------------------------------------


def test_json_lines_carry_utc_time_level_logger_message_and_the_extra_fields(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(settings.model_copy(update={"log_format": "json"}))
    before = datetime.now(UTC)
    logging.getLogger("worker.test").info(
        "edition %d %s", 7, "draft -> approved", extra={"edition_id": 7, "to_state": "approved"}
    )
    (line,) = json_lines(capsys.readouterr().err)
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["time"].endswith("Z")
    stamp = datetime.fromisoformat(line["time"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs((stamp - before).total_seconds()) < 5
    assert (line["level"], line["logger"], line["message"]) == (
        "INFO",
        "worker.test",
        "edition 7 draft -> approved",
    )
    assert (line["edition_id"], line["to_state"]) == (7, "approved")


def test_json_keeps_a_traceback_inside_its_one_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(settings.model_copy(update={"log_format": "json"}))
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("worker.test").exception("it broke")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["level"] == "ERROR" and "ValueError: boom" in line["exception"]


def test_human_lines_read_time_level_logger_and_message(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(settings)
    logging.getLogger("worker.test").warning("edition %d paused", 3, extra={"edition_id": 3})
    (line,) = capsys.readouterr().err.splitlines()
    stamp, level, rest = line.split(" ", 2)
    assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0) and stamp.endswith("Z")
    assert (level, rest) == ("WARNING", "worker.test: edition 3 paused")


def test_configuring_again_replaces_the_handler_and_basic_configs_one(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in a dramatiq worker process: basicConfig first, then ours; each line comes once."""
    logging.basicConfig(stream=sys.stderr, force=False)
    logs.configure(settings)
    logs.configure(settings.model_copy(update={"log_format": "json"}))
    logging.getLogger("worker.test").warning("once")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["message"] == "once"


def test_log_level_filters_and_chatty_libraries_stay_at_warning(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(settings.model_copy(update={"log_level": "DEBUG"}))
    logging.getLogger("httpx").info("HTTP Request: GET https://sns.example/?Token=secret")
    logging.getLogger("worker.test").debug("debug shows")
    logs.configure(settings.model_copy(update={"log_level": "WARNING"}))
    logging.getLogger("worker.test").info("info hidden")
    err = capsys.readouterr().err
    assert "debug shows" in err
    assert "Token=secret" not in err and "info hidden" not in err


def test_an_address_in_a_routine_line_is_redacted_as_a_last_resort(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(settings.model_copy(update={"log_format": "json"}))
    logging.getLogger("worker.test").info(
        "mail for %s", "ada@example.com", extra={"reason": "to Ada%40Example.com"}
    )
    (line,) = json_lines(capsys.readouterr().err)
    assert line["message"] == "mail for [address redacted]"
    assert line["reason"] == "to [address redacted]"


# --- a send, line by line ----------------------------------------------------------------------


def test_a_send_logs_each_edition_change_and_each_failed_delivery_with_its_ids(
    engine: Engine, settings: Settings, records: list[logging.LogRecord]
) -> None:
    logs.configure(settings.model_copy(update={"log_format": "json", "log_level": "DEBUG"}))
    store_payload(engine, example_payload())
    add_subscribers(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next(
        READERS[1], FailureKind.PERMANENT, f"550 5.1.1 <{READERS[1]}>: no such user"
    )
    transport.fail_next(READERS[2], FailureKind.UNKNOWN, "the provider did not answer")
    send_week(engine, settings, transport)

    assert edition_moves(records) == [
        (None, "approved"),
        ("approved", "sending"),
        ("sending", "sent"),
    ]
    assert all(r.__dict__["edition_id"] == 1 for r in records if r.name == "worker.editions")
    failed = {r.__dict__["delivery_id"]: r for r in records if r.name == "worker.delivery"}
    bob, cy = delivery_of(engine, READERS[1]), delivery_of(engine, READERS[2])
    assert failed.keys() == {bob, cy}
    assert failed[bob].levelno == logging.WARNING
    assert (failed[bob].__dict__["edition_id"], failed[bob].__dict__["to_state"]) == (1, "failed")
    assert failed[bob].__dict__["reason"] == "550 5.1.1 <[address redacted]>: no such user"
    assert failed[cy].__dict__["to_state"] == "uncertain"
    assert failed[cy].__dict__["reason"] == "the provider did not answer"


def test_no_record_at_info_or_below_names_a_reader_across_a_whole_send(
    engine: Engine,
    settings: Settings,
    records: list[logging.LogRecord],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Checked on the records themselves (the sources), not just on the redacted output."""
    logs.configure(settings.model_copy(update={"log_format": "json", "log_level": "DEBUG"}))
    store_payload(engine, example_payload())
    add_subscribers(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next(READERS[0], FailureKind.PERMANENT, f"rejected: {READERS[0]}")
    send_week(engine, settings, transport)
    routine = [r for r in records if r.levelno <= logging.INFO]
    assert routine, "the send logged nothing at INFO or below"
    for record in routine:
        assert not any(address in routine_text(record) for address in READERS), record
    output = capsys.readouterr().err
    assert not any(address in output for address in READERS)


def test_operator_actions_each_log_their_change_but_not_who_acted(
    engine: Engine, settings: Settings, records: list[logging.LogRecord]
) -> None:
    logs.configure(settings)
    store_payload(engine, example_payload())
    require_approval(engine)
    edition = weekly.prepare_week(engine, settings, week="2026-W47").edition
    assert edition is not None and edition.id is not None
    control.approve(engine, edition.id, by="editor@example.com")
    control.pause(engine, edition.id)
    control.resume(engine, edition.id)
    control.cancel(engine, edition.id, lease_s=60)
    assert edition_moves(records) == [
        (None, "draft"),
        ("draft", "approved"),
        ("approved", "paused"),
        ("paused", "approved"),
        ("approved", "cancelled"),
    ]
    assert not any("editor@example.com" in routine_text(r) for r in records)
    (paused,) = [r for r in records if r.__dict__.get("to_state") == "paused"]
    assert paused.getMessage() == "edition 1 approved -> paused: paused by an operator"


def test_an_account_block_logs_the_pause_with_the_providers_reason(
    engine: Engine, settings: Settings, records: list[logging.LogRecord]
) -> None:
    logs.configure(settings)
    store_payload(engine, example_payload())
    add_subscribers(engine, READERS[0])
    transport = MemoryTransport()
    transport.fail_next(READERS[0], FailureKind.ACCOUNT, "sending paused for this account")
    send_week(engine, settings, transport)
    assert edition_moves(records)[-1] == ("sending", "paused")
    (paused,) = [r for r in records if r.__dict__.get("to_state") == "paused"]
    assert paused.__dict__["reason"] == "sending paused for this account"
    assert paused.getMessage() == "edition 1 sending -> paused: sending paused for this account"


def test_a_change_that_is_rolled_back_is_never_logged(
    engine: Engine, settings: Settings, records: list[logging.LogRecord]
) -> None:
    logs.configure(settings)
    store_payload(engine, example_payload())
    edition = weekly.prepare_week(engine, settings, week="2026-W47").edition
    assert edition is not None and edition.id is not None
    with pytest.raises(RuntimeError), db.session_scope(engine) as session:
        moved = delivery.set_edition_status(
            session, edition.id, to=EditionStatus.PAUSED, only_from=[EditionStatus.APPROVED]
        )
        assert moved
        raise RuntimeError("the rest of the transaction failed")
    assert edition_moves(records) == [(None, "approved")]


def test_a_repeated_start_is_not_a_change(
    engine: Engine, settings: Settings, records: list[logging.LogRecord]
) -> None:
    logs.configure(settings)
    store_payload(engine, example_payload())
    add_subscribers(engine, READERS[0])
    edition = weekly.prepare_week(engine, settings, week="2026-W47").edition
    assert edition is not None and edition.id is not None
    sending.start_send(engine, edition.id)
    sending.start_send(engine, edition.id)
    assert edition_moves(records) == [(None, "approved"), ("approved", "sending")]


def test_leases_that_expire_log_each_delivery_that_became_uncertain(
    engine: Engine, settings: Settings, records: list[logging.LogRecord]
) -> None:
    logs.configure(settings)
    store_payload(engine, example_payload())
    add_subscribers(engine, *READERS[:2])
    edition = weekly.prepare_week(engine, settings, week="2026-W47").edition
    assert edition is not None and edition.id is not None
    (batch,) = sending.start_send(engine, edition.id)
    with db.session_scope(engine) as session:  # a sender claims, hands over, then dies
        delivery.claim(session, edition.id, batch, now=datetime(2026, 1, 1, tzinfo=UTC))
        delivery.hand_over(session, batch)
    with db.session_scope(engine) as session:
        assert delivery.expire_leases(session, edition.id, lease_s=60, now=utcnow()) == 2
    lines = [r for r in records if r.name == "worker.delivery"]
    assert sorted(r.__dict__["delivery_id"] for r in lines) == sorted(batch)
    assert {r.__dict__["to_state"] for r in lines} == {"uncertain"}
    assert {r.__dict__["reason"] for r in lines} == {"lease expired while sending"}
