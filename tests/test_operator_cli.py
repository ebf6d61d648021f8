"""The operator's commands: watch and steer editions, settle uncertain deliveries, dry runs.

Everything runs as `newsletter` does on the embedded setup: SQLite in ./var, the outbox
transport, and no REDIS_URL, so each send runs in the command's own process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update
from typer.testing import CliRunner, Result

from tests.conftest import EXAMPLE
from tests.helpers import example_payload
from tests.helpers import require_approval as approval_schedule
from worker import db, delivery, engagement, sending, weekly
from worker.cli import app
from worker.config import get_settings
from worker.models import Delivery, EventKind, utcnow

WEEK = "2026-W47"
READERS = ("ada@example.com", "grace@example.com", "linus@example.com")
STATES = ("pending", "sending", "sent", "failed", "uncertain", "skipped")

cli = CliRunner()


def run(*args: str) -> Result:
    return cli.invoke(app, list(args))


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def set_up(*emails: str) -> None:
    ok("db", "upgrade")
    ok("comparisons", "import", str(EXAMPLE))
    for address in emails:
        ok("subscribers", "add", address)


@contextmanager
def opened_engine() -> Iterator[Engine]:
    """The database the commands use (./var/newsletter.db), for what no command does."""
    engine = db.make_engine(get_settings())
    try:
        yield engine
    finally:
        engine.dispose()


def require_approval() -> None:
    with opened_engine() as engine:
        approval_schedule(engine)


def outbox() -> dict[str, Path]:
    """The .eml files written so far, by name (`e<edition>-d<delivery>.eml`)."""
    return {path.name: path for path in Path("var", "outbox").glob("*.eml")}


def recipient_of(path: Path) -> str:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    return str(message["To"]).rsplit("<", 1)[-1].rstrip(">")


def editions() -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(ok("editions", "list", "--json").stdout)
    return listed


def shown(edition_id: int = 1) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(ok("editions", "show", str(edition_id), "--json").stdout)
    return report


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def crash_a_sender(*, claimed: int) -> list[tuple[int, str]]:
    """Start edition 1 and have a sender claim its first `claimed` deliveries, hand them to the
    provider and die before recording anything; then expire the leases as a reconciler would.
    Returns (id, address)."""
    with opened_engine() as engine:
        prepared = weekly.prepare_week(engine, get_settings(), week=WEEK)
        assert prepared.edition is not None and prepared.edition.id == 1
        (batch,) = sending.start_send(engine, 1)
        with db.session_scope(engine) as session:
            taken = delivery.claim(session, 1, batch[:claimed])
            delivery.hand_over(session, [c.delivery_id for c in taken])
        assert sending.reconcile(engine, 1, lease_s=0) == claimed
    return [(c.delivery_id, c.email) for c in taken]


# --- editions list / show --------------------------------------------------------------------


def test_after_a_send_the_list_shows_one_sent_edition_for_the_week() -> None:
    set_up(*READERS)
    ok("send-weekly", "--week", WEEK)
    (edition,) = editions()
    assert (edition["id"], edition["period"], edition["status"]) == (1, WEEK, "sent")
    assert edition["subject"] == example_payload()["title"]
    assert edition["finished_at"] is not None


def test_show_counts_deliveries_by_state_adding_up_to_the_subscribers() -> None:
    set_up(*READERS)
    ok("send-weekly", "--week", WEEK)
    report = shown(1)
    assert report["status"] == "sent"
    assert sorted(report["deliveries"]) == sorted(STATES)
    assert sum(report["deliveries"].values()) == len(READERS)
    assert report["deliveries"]["sent"] == len(READERS)
    assert report["retries"] == 0
    assert report["send_rate_per_s"] == len(READERS) / 10  # all sent within the last 10 s


def test_show_counts_human_and_machine_opens_and_clicks_apart() -> None:
    set_up(*READERS)
    ok("send-weekly", "--week", WEEK)
    with opened_engine() as engine:
        with db.session_scope(engine) as session:
            session.execute(update(Delivery).values(sent_at=utcnow() - timedelta(hours=1)))
        for delivery_id, agent in (
            (1, "Mozilla/5.0 (Macintosh)"),
            (1, "Mozilla/5.0 (Macintosh)"),
            (2, "Mozilla/5.0"),
            (2, "Mozilla/5.0 (iPhone)"),
        ):
            engagement.record(
                engine,
                kind=EventKind.OPEN,
                delivery_id=delivery_id,
                user_agent=agent,
                client_ip=None,
                now=utcnow(),
            )
        engagement.record(
            engine,
            kind=EventKind.CLICK,
            delivery_id=2,
            user_agent="Mozilla/5.0 (iPhone)",
            client_ip=None,
            now=utcnow(),
            url="https://example.com/",
        )
    assert shown(1)["engagement"] == {
        "opens_human": 3,
        "opens_machine": 1,
        "unique_human_opens": 2,
        "clicks_human": 1,
        "clicks_machine": 0,
        "unique_human_clickers": 1,
    }
    assert "opens: 2 readers (3 human opens, 1 by machines)" in ok("editions", "show", "1").stdout


def test_showing_an_edition_that_does_not_exist_is_one_line_without_a_traceback() -> None:
    set_up(*READERS)
    result = run("editions", "show", "99")
    assert result.exit_code == 2
    assert error_lines(result) == [
        "error: edition 99 does not exist (see `newsletter editions list`)"
    ]
    assert result.stdout == ""
    assert "Traceback" not in result.output


# --- pause / resume / cancel -----------------------------------------------------------------


def test_pausing_a_sent_edition_is_refused_naming_its_status() -> None:
    set_up(*READERS)
    ok("send-weekly", "--week", WEEK)
    result = run("editions", "pause", "1")
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith("error: edition 1 is sent:")
    assert "approved or sending" in line
    assert editions()[0]["status"] == "sent"


def test_resuming_an_edition_that_is_not_paused_is_refused_naming_its_status() -> None:
    set_up(*READERS)
    ok("send-weekly", "--week", WEEK)
    result = run("editions", "resume", "1")
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith("error: edition 1 is sent:") and "paused" in line
    assert len(outbox()) == len(READERS)


def test_a_paused_edition_sends_nothing_until_resumed_then_sends_each_pending_once() -> None:
    set_up(*READERS)
    with opened_engine() as engine:
        prepared = weekly.prepare_week(engine, get_settings(), week=WEEK)
        assert prepared.edition is not None and prepared.edition.id == 1
        sending.start_send(engine, 1)  # a send has begun: three deliveries pending
    assert "edition 1 paused (paused)" in ok("editions", "pause", "1").stdout
    refused = run("send-weekly", "--week", WEEK)
    assert refused.exit_code == 1
    assert "is paused" in refused.stderr and "nothing sent" in refused.stderr
    assert outbox() == {}
    resumed = ok("editions", "resume", "1")
    assert "edition 1 resumed" in resumed.stdout
    assert sorted(recipient_of(path) for path in outbox().values()) == sorted(READERS)
    report = shown(1)
    assert report["status"] == "sent" and report["deliveries"]["sent"] == len(READERS)
    assert report["retries"] == 0  # each delivery was attempted once


def test_cancelling_a_sending_edition_skips_its_pending_deliveries() -> None:
    set_up(*READERS)
    with opened_engine() as engine:
        prepared = weekly.prepare_week(engine, get_settings(), week=WEEK)
        assert prepared.edition is not None and prepared.edition.id == 1
        sending.start_send(engine, 1)
    result = ok("editions", "cancel", "1")
    assert "edition 1 cancelled, 3 pending deliveries skipped (cancelled)" in result.stdout
    assert shown(1)["deliveries"]["skipped"] == len(READERS)
    assert run("send-weekly", "--week", WEEK).exit_code == 1
    assert outbox() == {}


# --- approval --------------------------------------------------------------------------------


def test_a_draft_awaits_approval_and_approving_it_sends_one_message_per_subscriber() -> None:
    ok("db", "upgrade")
    require_approval()
    set_up(*READERS)
    waiting = run("send-weekly", "--week", WEEK)
    assert waiting.exit_code == 1
    assert "awaits approval" in waiting.stderr and "nothing sent" in waiting.stderr
    assert outbox() == {}
    assert editions()[0]["status"] == "draft"
    approved = ok("editions", "approve", "1")
    assert "edition 1 approved (approved)" in approved.stdout
    files = outbox()
    assert len(files) == len(READERS)
    assert sorted(recipient_of(path) for path in files.values()) == sorted(READERS)
    assert shown(1)["status"] == "sent"
    assert "already sent" in ok("send-weekly", "--week", WEEK).stdout
    assert outbox().keys() == files.keys()


def test_approving_an_edition_that_is_not_a_draft_is_refused() -> None:
    set_up(*READERS)
    ok("send-weekly", "--week", WEEK)
    result = run("editions", "approve", "1")
    assert result.exit_code == 2
    assert error_lines(result) == ["error: edition 1 is sent: only a draft is approved"]


def test_cancelling_a_draft_skips_nothing_and_later_sends_report_it_cancelled() -> None:
    ok("db", "upgrade")
    require_approval()
    set_up(*READERS)
    assert run("send-weekly", "--week", WEEK).exit_code == 1  # the draft is made
    cancelled = ok("editions", "cancel", "1")
    assert "edition 1 cancelled, 0 pending deliveries skipped (cancelled)" in cancelled.stdout
    later = run("send-weekly", "--week", WEEK)
    assert later.exit_code == 1
    assert "was cancelled" in later.stderr and "nothing sent" in later.stderr
    assert outbox() == {}
    report = shown(1)
    assert report["status"] == "cancelled"
    assert sum(report["deliveries"].values()) == 0
    assert run("editions", "approve", "1").exit_code == 2


# --- deliveries uncertain --------------------------------------------------------------------


def test_a_clean_send_leaves_no_uncertain_deliveries() -> None:
    set_up(*READERS)
    ok("send-weekly", "--week", WEEK)
    listed = ok("deliveries", "uncertain", "1")
    assert listed.stdout == ""  # stdout holds only the rows, for scripts
    assert listed.stderr.strip() == "0 uncertain deliveries"


def test_deliveries_a_crashed_sender_left_are_listed_with_their_addresses() -> None:
    set_up(*READERS)
    crashed = crash_a_sender(claimed=2)
    assert [address for _, address in crashed] == list(READERS[:2])
    listed = ok("deliveries", "uncertain", "1")
    assert [line.split() for line in listed.stdout.splitlines()] == [
        [str(delivery_id), address] for delivery_id, address in crashed
    ]
    assert listed.stderr.strip() == "2 uncertain deliveries"
    assert shown(1)["deliveries"]["uncertain"] == 2


def test_uncertain_deliveries_are_listed_one_tab_separated_line_each_for_scripts() -> None:
    set_up(*READERS)
    crashed = crash_a_sender(claimed=2)
    listed = ok("deliveries", "uncertain", "1")
    assert listed.stdout.splitlines()[:2] == [
        f"{delivery_id}\t{address}" for delivery_id, address in crashed
    ]


def test_carrying_on_after_a_crash_sends_the_rest_and_warns_of_the_uncertain() -> None:
    set_up(*READERS)
    crash_a_sender(claimed=2)
    carried = ok("send-weekly", "--week", WEEK)
    assert "2 deliveries are uncertain" in carried.stderr
    assert "newsletter deliveries uncertain 1" in carried.stderr
    assert [recipient_of(path) for path in outbox().values()] == [READERS[2]]
    report = shown(1)
    assert report["status"] == "sent"
    assert (report["deliveries"]["sent"], report["deliveries"]["uncertain"]) == (1, 2)


def test_marking_uncertain_deliveries_sent_settles_them_without_sending() -> None:
    set_up(*READERS)
    crash_a_sender(claimed=2)
    ok("send-weekly", "--week", WEEK)
    before = outbox()
    marked = ok("deliveries", "uncertain", "1", "--mark-sent")
    assert "2 deliveries marked sent" in marked.stdout
    report = shown(1)
    assert report["deliveries"]["uncertain"] == 0
    assert report["deliveries"]["sent"] == len(READERS)
    assert report["status"] == "sent"
    assert outbox().keys() == before.keys()
    assert ok("deliveries", "uncertain", "1").stderr.strip() == "0 uncertain deliveries"


def test_resending_uncertain_deliveries_sends_exactly_those_messages_once() -> None:
    set_up(*READERS)
    crashed = crash_a_sender(claimed=2)
    ok("send-weekly", "--week", WEEK)
    before = outbox()
    (survivor,) = before.values()
    survivor_bytes = survivor.read_bytes()
    resent = ok("deliveries", "uncertain", "1", "--resend")
    assert "2 deliveries queued again" in resent.stdout
    after = outbox()
    assert after.keys() - before.keys() == {f"e1-d{delivery_id}.eml" for delivery_id, _ in crashed}
    for delivery_id, address in crashed:
        assert recipient_of(after[f"e1-d{delivery_id}.eml"]) == address
    assert survivor.read_bytes() == survivor_bytes  # the one already sent was not sent again
    report = shown(1)
    assert report["status"] == "sent"
    assert (report["deliveries"]["sent"], report["deliveries"]["uncertain"]) == (3, 0)
    assert report["retries"] == len(crashed)  # the crashed try, then exactly one more each


def test_resend_and_mark_sent_together_are_refused_and_change_nothing() -> None:
    set_up(*READERS)
    crash_a_sender(claimed=2)
    result = run("deliveries", "uncertain", "1", "--resend", "--mark-sent")
    assert result.exit_code == 2
    assert error_lines(result) == ["error: give at most one of --resend and --mark-sent"]
    assert shown(1)["deliveries"]["uncertain"] == 2
    assert outbox() == {}


def test_resending_uncertain_deliveries_of_a_cancelled_edition_leaves_nothing_pending() -> None:
    set_up(*READERS)
    crash_a_sender(claimed=2)
    ok("editions", "cancel", "1")
    run("deliveries", "uncertain", "1", "--resend")
    report = shown(1)
    assert report["status"] == "cancelled"
    assert report["deliveries"]["pending"] == 0
    assert outbox() == {}


def test_listing_uncertain_deliveries_of_a_missing_edition_is_refused() -> None:
    set_up(*READERS)
    result = run("deliveries", "uncertain", "7")
    assert result.exit_code == 2
    assert error_lines(result) == [
        "error: edition 7 does not exist (see `newsletter editions list`)"
    ]


# --- send-weekly --dry-run -------------------------------------------------------------------


def test_a_dry_run_counts_the_active_subscribers_and_creates_no_edition() -> None:
    set_up(*READERS)
    ok("subscribers", "remove", "grace@example.com")
    result = ok("send-weekly", "--week", WEEK, "--dry-run")
    slug = example_payload()["slug"]
    assert result.stdout.strip() == (
        f"{WEEK}: would send {slug!r} to 2 active subscribers (no edition yet)"
    )
    assert editions() == []
    assert outbox() == {}


def test_a_dry_run_after_the_send_names_the_edition_and_sends_nothing_more() -> None:
    set_up(*READERS)
    ok("send-weekly", "--week", WEEK)
    before = outbox()
    result = ok("send-weekly", "--week", WEEK, "--dry-run")
    assert "to 3 active subscribers (edition 1 is sent)" in result.stdout
    assert outbox().keys() == before.keys()
    assert len(editions()) == 1
