"""`newsletter schedules …` and what `editions` says about scheduled weeks, run as an operator
would (the embedded setup in a temp folder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner, Result

from schedules import firing
from tests.conftest import EXAMPLE
from worker import db, weekly
from worker.cli import app
from worker.config import get_settings
from worker.models import Schedule

cli = CliRunner()


def run(*args: str) -> Result:
    return cli.invoke(app, list(args))


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def listed() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok("schedules", "list", "--json").stdout)
    return rows


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--cron", "61 * * * *", "--tz", "Europe/Berlin"),
            "error: cron '61 * * * *' is not a valid cron expression",
        ),
        (
            ("--cron", "0 9 * * MON", "--tz", "Mars/Base"),
            "error: tz 'Mars/Base' is not a known IANA time zone",
        ),
    ],
)
def test_a_bad_cron_or_zone_is_one_clear_line_and_exit_2(args: tuple[str, ...], line: str) -> None:
    result = run("schedules", "add", "weekly-berlin", *args)
    assert result.exit_code == 2
    (printed,) = [text for text in result.stderr.splitlines() if text.strip()]
    assert printed.startswith(line)
    assert listed() == []


def test_list_shows_the_next_three_fires_in_local_time_and_utc() -> None:
    ok("schedules", "add", "weekly-berlin", "--cron", "0 9 * * MON", "--tz", "Europe/Berlin")
    (row,) = listed()
    assert (row["name"], row["cron"], row["timezone"], row["enabled"]) == (
        "weekly-berlin",
        "0 9 * * MON",
        "Europe/Berlin",
        True,
    )
    assert len(row["next"]) == 3
    for fire in row["next"]:
        local = datetime.fromisoformat(fire["local"])
        assert (local.hour, local.minute, local.weekday()) == (9, 0, 0)
        assert datetime.fromisoformat(fire["utc"]) == local.astimezone(UTC)
    assert "next: Mon" in ok("schedules", "list").stdout


def test_pause_resume_and_remove() -> None:
    ok("schedules", "add", "w", "--cron", "0 9 * * MON", "--tz", "UTC", "--missed", "skip")
    ok("schedules", "pause", "w")
    assert listed()[0]["enabled"] is False and listed()[0]["next"] == []
    ok("schedules", "resume", "w")
    assert listed()[0]["enabled"] is True and listed()[0]["missed"] == "skip"
    ok("schedules", "remove", "w")
    assert listed() == []
    missing = run("schedules", "pause", "w")
    assert missing.exit_code == 2 and "no schedule named 'w'" in missing.stderr


def test_skip_shows_in_the_schedule_and_a_week_that_sent_nothing_in_editions_list() -> None:
    ok("schedules", "add", "w", "--cron", "0 9 * * MON", "--tz", "UTC")
    ok("schedules", "skip", "w", "--week", "2026-W50")
    fires = json.loads(ok("schedules", "show", "w", "--json").stdout)["fires"]
    assert [(f["period"], f["outcome"]) for f in fires] == [("2026-W50", "skipped")]
    assert "2026-W50 w: skipped" in ok("editions", "list").stdout
    bad = run("schedules", "skip", "w", "--week", "2026-W99")
    assert bad.exit_code == 2 and "2026-W99" in bad.stderr


def test_trigger_sends_the_current_week_once_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    ok("db", "upgrade")
    ok("comparisons", "import", str(EXAMPLE))
    ok("subscribers", "add", "ada@example.com")
    ok("schedules", "add", "w", "--cron", "0 9 * * MON", "--tz", "UTC")
    monkeypatch.setattr(
        "worker.cli.schedules.utcnow", lambda: datetime(2026, 11, 21, 12, tzinfo=UTC)
    )
    first = ok("schedules", "trigger", "w")
    assert "fired for 2026-W47: sending" in first.stdout
    second = ok("schedules", "trigger", "w")
    assert "already_done" in second.stdout
    editions = json.loads(ok("editions", "list", "--json").stdout)
    assert [(e["period"], e["status"]) for e in editions] == [("2026-W47", "sent")]


def test_a_draft_whose_week_ended_is_flagged_and_approving_it_says_it_goes_late() -> None:
    ok("db", "upgrade")
    ok("comparisons", "import", str(EXAMPLE))
    ok("subscribers", "add", "ada@example.com")
    ok("schedules", "add", "w", "--cron", "0 9 * * FRI", "--tz", "UTC", "--require-approval")
    engine = db.make_engine(get_settings())
    with db.session_scope(engine) as session:
        schedule = session.get(Schedule, 1)
        assert schedule is not None and schedule.id is not None
        schedule_id = schedule.id
    assert weekly.prepare_period(engine, get_settings(), schedule_id, "2026-W47") is None
    engine.dispose()
    (edition,) = json.loads(ok("editions", "list", "--json").stdout)
    assert edition["status"] == "draft" and edition["week_over_unsent"] is True
    assert "draft · week over, not sent" in ok("editions", "list").stdout
    approved = ok("editions", "approve", str(edition["id"]))
    assert "goes out late" in approved.stderr


def test_status_reports_schedulers_and_last_fires() -> None:
    ok("schedules", "add", "w", "--cron", "0 9 * * MON", "--tz", "UTC")
    engine = db.make_engine(get_settings())
    firing.tick(engine, datetime.now(UTC) + timedelta(days=8), lambda *_: None)
    engine.dispose()
    status = json.loads(ok("schedules", "status", "--json").stdout)
    (row,) = status["schedules"]
    assert row["schedule"] == "w" and row["last_outcome"] == "enqueued"
    assert "no scheduler seen" in ok("schedules", "status").stdout


@pytest.mark.parametrize(("missed", "sent"), [("run-once", 1), ("skip", 0)])
def test_a_scheduler_started_after_the_fire_time_fires_once_or_not_by_policy(
    tmp_path: Path, missed: str, sent: int
) -> None:
    """The scheduler process itself, on the embedded setup (no Redis: it sends in-process)."""
    ok("db", "upgrade")
    ok("comparisons", "import", str(EXAMPLE))
    ok("subscribers", "add", "ada@example.com")
    ok("schedules", "add", "w", "--cron", "0 16 * * FRI", "--tz", "UTC", "--missed", missed)
    engine = db.make_engine(get_settings())
    with db.session_scope(engine) as session:
        session.execute(update(Schedule).values(created_at=datetime(2026, 11, 1, tzinfo=UTC)))
    engine.dispose()
    clock = tmp_path / "clock.txt"
    clock.write_text("2026-11-21T10:00:00+00:00")  # Saturday: the Friday fire time has passed
    env = {**os.environ, "VAR_DIR": str(Path("var").resolve()), "POSTAL_ADDRESS": "1 Street"}
    for _ in range(2):  # started twice in the same week: still at most one fire
        done = subprocess.run(
            [sys.executable, "-m", "schedules", "--once", "--clock-file", str(clock)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert len(list(Path("var", "outbox").glob("*.eml"))) == sent
    (fire,) = json.loads(ok("schedules", "show", "w", "--json").stdout)["fires"]
    assert fire["outcome"] == ("sending" if sent else "missed")


def test_the_scheduler_process_beats_picks_up_a_new_schedule_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    ok("db", "upgrade")
    env = {**os.environ, "VAR_DIR": str(Path("var").resolve())}
    clock = tmp_path / "clock.txt"  # a day ahead: the new schedule's fire times are past
    clock.write_text((datetime.now(UTC) + timedelta(days=1)).isoformat())
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "schedules", "--tick-s", "0.2", "--clock-file", str(clock)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and not json.loads(ok("schedules", "status", "--json").stdout)["schedulers"]
        ):
            time.sleep(0.2)
        (beat,) = json.loads(ok("schedules", "status", "--json").stdout)["schedulers"]
        assert beat["leader"] is True  # no Redis: every scheduler acts
        # Added while it runs: fired at its next tick, without a restart.
        ok("schedules", "add", "w", "--cron", "* * * * *", "--tz", "UTC")
        while (
            time.monotonic() < deadline
            and not json.loads(ok("schedules", "show", "w", "--json").stdout)["fires"]
        ):
            time.sleep(0.2)
    finally:
        scheduler.send_signal(signal.SIGTERM)
        output = scheduler.communicate(timeout=30)[0].decode()
    assert scheduler.returncode == 0, output
    assert "stopped" in output
    assert json.loads(ok("schedules", "show", "w", "--json").stdout)["fires"]
