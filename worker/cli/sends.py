"""Commands that send and steer sends: send-weekly, editions, deliveries."""

from __future__ import annotations

import dataclasses
import getpass
import sys
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine

from worker import control, db, editions, runner, runtime, weekly
from worker.cli.common import EXIT_NO_COMPARISON, err, fail, friendly, opened, out, print_json
from worker.config import Settings
from worker.models import DeliveryState, Edition, EditionStatus

editions_app = typer.Typer(help="Watch and steer editions (one per week).", no_args_is_help=True)
deliveries_app = typer.Typer(help="Settle deliveries that need an operator.", no_args_is_help=True)

_DONE = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.SKIPPED, DeliveryState.UNCERTAIN)


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,  # a bar in a log file is noise; the summary line says it all
    )


def _drive(settings: Settings, engine: Engine, edition_id: int, *, wait: bool) -> bool:
    """Send the edition: in this process (no REDIS_URL), or enqueue and optionally follow."""
    runtime.install(runtime.build(settings, engine))
    with _progress_bar() as bar:
        task = bar.add_task("send", total=None)

        def progress(counts: dict[DeliveryState, int]) -> None:
            done = sum(counts[state] for state in _DONE)
            bar.update(task, total=sum(counts.values()), completed=done)

        if runner.in_process():
            runner.send_in_process(
                engine, edition_id, lease_s=settings.send_lease_s, progress=progress
            )
            return True
        runner.enqueue(edition_id)
        if wait:
            runner.follow(engine, edition_id, progress=progress)
        return wait


def _summary(counts: dict[DeliveryState, int]) -> str:
    return " · ".join(f"{state} {counts[state]}" for state in DeliveryState)


@friendly
def send_weekly(
    week: str | None = typer.Option(None, help="ISO week to send [default: the current week]."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would be sent; change nothing."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="With REDIS_URL: follow the send until it is done."
    ),
) -> None:
    """Send the week's newest comparison to every active subscriber, once.

    Without REDIS_URL the send runs in this process. With REDIS_URL it is queued for the
    `dramatiq worker.actors` processes and this returns at once (or follows it with --wait).
    Running it again for the same week sends nothing twice: it carries on an interrupted send
    or says the week was already sent. Exit 3 when no comparison was published that week.
    """
    with opened() as (settings, engine):
        result = weekly.prepare_week(engine, settings, week=week, dry_run=dry_run)
        period = result.period.key
        if result.outcome == weekly.Outcome.NO_COMPARISON:
            fail(f"no comparison published in {period}: nothing sent", EXIT_NO_COMPARISON)
        assert result.comparison is not None
        if result.outcome == weekly.Outcome.DRY_RUN:
            state = (
                f"edition {result.edition.id} is {result.edition.status}"
                if result.edition
                else "no edition yet"
            )
            out.print(
                f"{period}: would send {result.comparison.slug!r} "
                f"to {result.recipients} active subscribers ({state})"
            )
            return
        assert result.edition is not None and result.edition.id is not None
        edition_id = result.edition.id
        label = f"edition {edition_id} ({period}, {result.comparison.slug})"
        refusals = {
            weekly.Outcome.AWAITING_APPROVAL: "awaits approval (`newsletter editions approve`)",
            weekly.Outcome.CANCELLED: "was cancelled",
            weekly.Outcome.PAUSED: "is paused (`newsletter editions resume` carries on)",
        }
        if result.outcome in refusals:
            reason = result.edition.status_reason
            fail(
                f"{label} {refusals[result.outcome]}{f': {reason}' if reason else ''}; nothing sent"
            )
        if result.outcome == weekly.Outcome.ALREADY_SENT:
            counts = runner.counts(engine, edition_id)
            out.print(f"{label} was already sent: nothing sent again. {_summary(counts)}")
            return
        finished = _drive(settings, engine, edition_id, wait=wait)
        if not finished:
            out.print(f"{label} queued; follow it with `newsletter editions show {edition_id}`")
            return
        _report_end(settings, engine, edition_id, label)


def _report_end(settings: Settings, engine: Engine, edition_id: int, label: str) -> None:
    report = control.report(engine, edition_id)
    out.print(f"{label}: {report.edition.status}. {_summary(report.counts)}")
    if report.edition.status_reason:
        err.print(f"[yellow]{report.edition.status}:[/yellow] {report.edition.status_reason}")
    if report.counts[DeliveryState.UNCERTAIN]:
        err.print(
            f"[yellow]{report.counts[DeliveryState.UNCERTAIN]} deliveries are uncertain[/yellow]: "
            f"a sender stopped mid-message. See `newsletter deliveries uncertain {edition_id}`."
        )
    if settings.transport == "outbox":
        out.print(f"messages written to {settings.outbox_path.resolve()}")


def carry_on(settings: Settings, engine: Engine, edition_id: int) -> None:
    """After an operator's action: send what is pending now (in-process) or hand it to workers."""
    if _drive(settings, engine, edition_id, wait=False):
        _report_end(settings, engine, edition_id, f"edition {edition_id}")


def _edition_json(edition: Edition) -> dict[str, Any]:
    return {
        "id": edition.id,
        "period": edition.period_key,
        "status": edition.status,
        "status_reason": edition.status_reason,
        "subject": edition.subject,
        "content_hash": edition.content_hash,
        "created_at": edition.created_at.isoformat(),
        "started_at": edition.started_at.isoformat() if edition.started_at else None,
        "finished_at": edition.finished_at.isoformat() if edition.finished_at else None,
    }


@editions_app.command("list")
@friendly
def editions_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every edition, newest first; drafts whose week is over are flagged (they were not sent),
    and recent weeks that sent nothing are listed with the reason."""
    with opened() as (_, engine), db.session_scope(engine) as session:
        rows = [(row, control.week_over(session, row)) for row in editions.list_editions(session)]
        quiet = control.quiet_weeks(session)
    if as_json:
        print_json(
            [
                {
                    **_edition_json(row),
                    "week_over_unsent": over and row.status == EditionStatus.DRAFT,
                }
                for row, over in rows
            ]
        )
        return
    table = Table("id", "week", "status", "subject")
    for row, over in rows:
        status = str(row.status)
        if over and row.status == EditionStatus.DRAFT:
            status = "draft · week over, not sent"
        table.add_row(str(row.id), row.period_key, status, row.subject)
    out.print(table)
    for week in quiet:
        out.print(f"{week.period_key} {week.schedule}: {week.outcome} {week.detail}".rstrip())


@editions_app.command("show")
@friendly
def editions_show(
    edition_id: int = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One edition: status, deliveries by state, retries and the current send rate."""
    with opened() as (_, engine):
        report = control.report(engine, edition_id)
    if as_json:
        print_json(
            {
                **_edition_json(report.edition),
                "deliveries": {state.value: n for state, n in report.counts.items()},
                "retries": report.retries,
                "send_rate_per_s": report.rate_per_s,
                "engagement": dataclasses.asdict(report.engagement),
            }
        )
        return
    edition = report.edition
    out.print(f"edition {edition.id} · {edition.period_key} · [bold]{edition.status}[/bold]")
    if edition.status_reason:
        out.print(f"reason: {edition.status_reason}")
    out.print(f"subject: {edition.subject}")
    out.print(_summary(report.counts))
    out.print(f"retries {report.retries} · send rate {report.rate_per_s:.1f}/s")
    seen = report.engagement
    out.print(
        f"opens: {seen.unique_human_opens} readers ({seen.opens_human} human opens, "
        f"{seen.opens_machine} by machines) · clicks: {seen.unique_human_clickers} readers "
        f"({seen.clicks_human} human clicks, {seen.clicks_machine} by machines)"
    )


def _steered(edition: Edition, verb: str) -> None:
    out.print(f"edition {edition.id} {verb} ({edition.status})")


@editions_app.command("approve")
@friendly
def editions_approve(edition_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Release a draft edition; it is sent at once (in this process, or by the workers)."""
    with opened() as (settings, engine):
        edition = control.approve(engine, edition_id, by=getpass.getuser())
        _steered(edition, "approved")
        with db.session_scope(engine) as session:
            late = control.week_over(session, edition)
        if late:
            err.print(
                f"[yellow]note:[/yellow] week {edition.period_key} is over: this edition goes "
                "out late, because you approved it now"
            )
        carry_on(settings, engine, edition_id)


@editions_app.command("pause")
@friendly
def editions_pause(edition_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Stop sending within a second; nothing is lost (resume carries on)."""
    with opened() as (_, engine):
        _steered(control.pause(engine, edition_id), "paused")


@editions_app.command("resume")
@friendly
def editions_resume(edition_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Carry on a paused edition: every pending delivery, none twice."""
    with opened() as (settings, engine):
        _steered(control.resume(engine, edition_id), "resumed")
        carry_on(settings, engine, edition_id)


@editions_app.command("cancel")
@friendly
def editions_cancel(edition_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Send no more of this edition; pending deliveries are marked skipped."""
    with opened() as (settings, engine):
        edition, skipped = control.cancel(engine, edition_id, lease_s=settings.send_lease_s)
    _steered(edition, f"cancelled, {skipped} pending deliveries skipped")


@deliveries_app.command("uncertain")
@friendly
def deliveries_uncertain(
    edition_id: int = typer.Argument(..., metavar="EDITION"),
    resend: bool = typer.Option(False, "--resend", help="Send them again (a reader may get two)."),
    mark_sent: bool = typer.Option(False, "--mark-sent", help="Count them as sent."),
) -> None:
    """List deliveries whose sender died mid-message, or settle them.

    Whether such a message left is unknown, so it is never resent on its own.
    """
    if resend and mark_sent:
        fail("give at most one of --resend and --mark-sent", 2)
    with opened() as (settings, engine):
        if not (resend or mark_sent):
            rows = control.uncertain(engine, edition_id, lease_s=settings.send_lease_s)
            # Plain tab-separated lines for scripts (Rich would expand the tabs).
            sys.stdout.write("".join(f"{delivery_id}\t{email}\n" for delivery_id, email in rows))
            err.print(f"{len(rows)} uncertain deliveries")
            return
        moved = control.resolve_uncertain(engine, edition_id, resend=resend)
        out.print(f"{moved} deliveries {'queued again' if resend else 'marked sent'}")
        if resend and moved:
            carry_on(settings, engine, edition_id)
