"""Commands for the subscriber list."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from worker import db, subscribers
from worker.cli.common import EXIT_INPUT, err, friendly, opened, out, print_json
from worker.models import SubscriberStatus

subscribers_app = typer.Typer(help="Manage the subscriber list.", no_args_is_help=True)


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
