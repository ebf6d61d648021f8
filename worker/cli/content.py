"""Commands for content: the schema, comparisons, and previewing the email."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from worker import comparisons, db, editions
from worker.cli.common import (
    EXIT_INPUT,
    EXIT_NO_COMPARISON,
    err,
    fail,
    friendly,
    opened,
    out,
    print_json,
    settings_or_exit,
)
from worker.errors import InputError
from worker.models import Comparison
from worker.periods import iso_week

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
comparisons_app = typer.Typer(help="Import, list and pick comparisons.", no_args_is_help=True)


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
