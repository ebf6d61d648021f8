"""The `newsletter` command: thin Typer commands over the core, with Rich output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from worker import comparisons, db, editions, subscribers, weekly
from worker.config import Settings, get_settings
from worker.errors import ConfigError, InputError, SchemaOutOfDateError
from worker.models import Comparison, DeliveryState, SubscriberStatus
from worker.periods import iso_week
from worker.transports import make_transport

app = typer.Typer(
    help="Verdicts Mailer: turns the week's newest AI tool comparison into an email and sends it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
comparisons_app = typer.Typer(help="Import, list and pick comparisons.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Manage the subscriber list.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(comparisons_app, name="comparisons")
app.add_typer(subscribers_app, name="subscribers")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_INPUT = 2
EXIT_NO_COMPARISON = 3

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def friendly(command: Callable[P, R]) -> Callable[P, R]:
    """Turn known failures into one clear line and an exit status; never a traceback."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except InputError as error:
            fail(str(error), EXIT_INPUT)
        except ConfigError as error:
            fail(str(error), EXIT_INPUT)
        except SchemaOutOfDateError as error:
            fail(str(error))
        except OperationalError as error:
            fail(f"database unreachable: {str(error.orig).strip().splitlines()[0]}")

    return run


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except ValidationError as error:
        for problem in error.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "setting"
            err.print(f"[red]error:[/red] {name.upper()}: {problem['msg']}")
        raise typer.Exit(EXIT_INPUT) from None


@contextmanager
def opened() -> Iterator[tuple[Settings, Engine]]:
    settings = settings_or_exit()
    engine = db.make_engine(settings)
    try:
        db.ensure_schema(engine, settings)
        yield settings, engine
    finally:
        engine.dispose()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


# ---------------------------------------------------------------- db


@db_app.command("upgrade")
@friendly
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision."""
    settings = settings_or_exit()
    engine = db.make_engine(settings)
    before, after = db.upgrade(engine)
    engine.dispose()
    if before == after:
        out.print(f"schema already at revision {after}")
    else:
        out.print(f"schema upgraded from {before or 'empty'} to revision {after}")


# ---------------------------------------------------------------- comparisons


@comparisons_app.command("import")
@friendly
def comparisons_import(
    targets: list[str] = typer.Argument(..., help=".json files, folders of them, or http(s) URLs."),
) -> None:
    """Validate and store comparisons; invalid ones are reported and skipped (exit 2)."""
    invalid = 0
    tally: dict[str, int] = {}
    with opened() as (_, engine):
        for source in comparisons.read_sources(targets):
            if source.raw is None:
                invalid += 1
                err.print(f"[red]invalid:[/red] {source.problem}")
                continue
            try:
                doc = comparisons.parse_document(source.raw, source=source.name)
            except InputError as error:
                invalid += 1
                err.print(f"[red]invalid:[/red] {error}")
                continue
            with db.session_scope(engine) as session:
                outcome = comparisons.store(session, doc)
            tally[outcome] = tally.get(outcome, 0) + 1
            out.print(f"{outcome:>9}  {doc.slug}  ({source.name})")
            for warning in doc.warnings():
                err.print(f"[yellow]warning:[/yellow] {source.name}: {warning}")
    parts = [f"{tally.get(o, 0)} {o}" for o in comparisons.ImportOutcome] + [f"{invalid} invalid"]
    out.print("imported: " + ", ".join(parts))
    if invalid:
        raise typer.Exit(EXIT_INPUT)


def _comparison_json(row: Comparison) -> dict[str, Any]:
    return {
        "slug": row.slug,
        "title": row.title,
        "published_at": row.published_at.isoformat(),
        "url": row.url,
        "content_hash": row.content_hash,
    }


@comparisons_app.command("list")
@friendly
def comparisons_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every stored comparison, newest first."""
    with opened() as (_, engine), db.session_scope(engine) as session:
        rows = comparisons.list_all(session)
    if as_json:
        print_json([_comparison_json(row) for row in rows])
        return
    table = Table("published (UTC)", "slug", "title")
    for row in rows:
        table.add_row(row.published_at.strftime("%Y-%m-%d %H:%M"), row.slug, row.title)
    out.print(table)


@comparisons_app.command("pick")
@friendly
def comparisons_pick(
    week: str = typer.Option(..., help="ISO week, e.g. 2026-W47."),
    tz: str | None = typer.Option(
        None, help="Time zone the week is counted in [default: NEWSLETTER_TIMEZONE]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The newest comparison published in a week: the one that week's issue would carry."""
    with opened() as (settings, engine), db.session_scope(engine) as session:
        period = iso_week(week, tz or settings.timezone)
        row = comparisons.newest_in(session, period)
    if row is None:
        fail(
            f"no comparison published in {period.key} ({tz or settings.timezone})",
            EXIT_NO_COMPARISON,
        )
    if as_json:
        print_json({"week": period.key, **_comparison_json(row)})
    else:
        out.print(
            f"{period.key}: {row.slug} — {row.title} "
            f"(published {row.published_at:%Y-%m-%d %H:%M} UTC)"
        )


# ---------------------------------------------------------------- subscribers


@subscribers_app.command("add")
@friendly
def subscribers_add(
    email: str = typer.Argument(..., help="The address to add (it becomes active at once)."),
    name: str | None = typer.Option(None, help="Display name for the To: line."),
) -> None:
    """Add one subscriber who has already agreed to receive the newsletter."""
    with opened() as (_, engine), db.session_scope(engine) as session:
        subscriber = subscribers.add(session, email, name=name, source="cli")
    out.print(f"added {subscriber.email}")


@subscribers_app.command("import")
@friendly
def subscribers_import(
    file: Path = typer.Argument(..., help="CSV with columns email,name (header row optional)."),
) -> None:
    """Import subscribers in one transaction; bad rows are listed by line and skipped."""
    with opened() as (_, engine), db.session_scope(engine) as session:
        report = subscribers.import_csv(session, file)
    for line in report.bad_rows:
        err.print(f"[red]bad row:[/red] {line}")
    for line in report.kept_inactive:
        err.print(f"[yellow]not re-activated:[/yellow] {line}")
    out.print(
        f"imported {report.added}, skipped {report.duplicates} duplicates, "
        f"{len(report.kept_inactive)} inactive kept, {len(report.bad_rows)} bad rows"
    )
    if report.bad_rows:
        raise typer.Exit(EXIT_INPUT)


@subscribers_app.command("list")
@friendly
def subscribers_list(
    status: SubscriberStatus | None = typer.Option(None, help="Only this status."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Subscribers in the order they were added."""
    with opened() as (_, engine), db.session_scope(engine) as session:
        rows = subscribers.list_subscribers(session, status)
    if as_json:
        print_json(
            [
                {
                    "email": r.email,
                    "name": r.name,
                    "status": r.status,
                    "source": r.source,
                    "created_at": r.created_at.isoformat(),
                }
                for r in rows
            ]
        )
        return
    table = Table("email", "name", "status", "source")
    for row in rows:
        table.add_row(row.email, row.name, row.status, row.source)
    out.print(table)
    out.print(f"{len(rows)} subscribers")


@subscribers_app.command("remove")
@friendly
def subscribers_remove(
    email: str = typer.Argument(...),
    forget: bool = typer.Option(
        False,
        "--forget",
        help="Erase the address and its delivery history instead of unsubscribing it.",
    ),
) -> None:
    """Stop mailing an address. It stays on file as unsubscribed so no import re-adds it."""
    with opened() as (_, engine), db.session_scope(engine) as session:
        if forget:
            subscribers.forget(session, email)
            out.print(f"erased {email.strip().lower()}")
        else:
            subscriber = subscribers.unsubscribe(session, email)
            out.print(f"unsubscribed {subscriber.email}")


# ---------------------------------------------------------------- preview & send


@app.command("preview")
@friendly
def preview(
    out_dir: Path = typer.Option(..., "--out", help="Folder to write the files into."),
    comparison: str | None = typer.Option(None, help="Slug of the comparison to preview."),
    week: str | None = typer.Option(None, help="Preview the issue of this ISO week instead."),
) -> None:
    """Write email.html, email.txt, email.mjml and subject.txt exactly as readers will get them."""
    if (comparison is None) == (week is None):
        fail("give exactly one of --comparison SLUG or --week 2026-W47", EXIT_INPUT)
    with opened() as (settings, engine), db.session_scope(engine) as session:
        if comparison is not None:
            row = comparisons.get_by_slug(session, comparison)
        else:
            period = iso_week(week or "", settings.timezone)
            found = comparisons.newest_in(session, period)
            if found is None:
                fail(f"no comparison published in {period.key}", EXIT_NO_COMPARISON)
            row = found
        paths = editions.write_preview(row, settings, out_dir)
    for path in paths:
        out.print(str(path))


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


@app.command("send-weekly")
@friendly
def send_weekly(
    week: str | None = typer.Option(None, help="ISO week to send [default: the current week]."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would be sent; change nothing."
    ),
) -> None:
    """Send the week's newest comparison to every active subscriber, once.

    Running it again for the same week sends nothing twice: it finishes an interrupted send
    or reports that the week was already sent. Exit 3 when no comparison was published that week.
    """
    with opened() as (settings, engine):
        transport = make_transport(settings)
        with _progress_bar() as bar:
            task = bar.add_task("send", total=None)

            def progress(counts: dict[DeliveryState, int]) -> None:
                done = sum(
                    n
                    for s, n in counts.items()
                    if s not in (DeliveryState.PENDING, DeliveryState.SENDING)
                )
                bar.update(task, total=sum(counts.values()), completed=done)

            result = weekly.run_weekly(
                engine, settings, transport, week=week, dry_run=dry_run, progress=progress
            )
    _report_weekly(result, settings)


def _report_weekly(result: weekly.WeeklyResult, settings: Settings) -> None:
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
    assert result.edition is not None and result.summary is not None
    counts = result.summary.counts
    line = (
        f"sent {counts[DeliveryState.SENT]} · skipped {counts[DeliveryState.SKIPPED]} · "
        f"failed {counts[DeliveryState.FAILED]} · uncertain {counts[DeliveryState.UNCERTAIN]} · "
        f"pending {counts[DeliveryState.PENDING]}"
    )
    edition = f"edition {result.edition.id} ({period}, {result.comparison.slug})"
    if result.outcome == weekly.Outcome.ALREADY_SENT:
        out.print(f"{edition} was already sent: nothing sent again. {line}")
        return
    if result.outcome == weekly.Outcome.AWAITING_APPROVAL:
        fail(f"{edition} is a draft awaiting approval: nothing sent")
    if result.outcome == weekly.Outcome.CANCELLED:
        fail(f"{edition} was cancelled: nothing sent")
    if result.outcome == weekly.Outcome.PAUSED:
        fail(f"{edition} is paused: {result.summary.paused_reason or 'by an operator'}. {line}")
    out.print(f"{edition}: {line}")
    if result.summary.newly_uncertain or counts[DeliveryState.UNCERTAIN]:
        err.print(
            f"[yellow]{counts[DeliveryState.UNCERTAIN]} deliveries are uncertain[/yellow] "
            "(a sender "
            "stopped mid-message); they are not resent automatically"
        )
    if counts[DeliveryState.PENDING]:
        err.print(
            "[yellow]some deliveries are still pending after retries; "
            "run send-weekly again[/yellow]"
        )
    if settings.transport == "outbox":
        out.print(f"messages written to {settings.outbox_path.resolve()}")
