"""`newsletter stats`: one edition's figures as text, JSON or CSV."""

from __future__ import annotations

import csv
import sys

import typer
from rich.markup import escape
from rich.text import Text

from worker import db
from worker import stats as edition_stats
from worker.cli.common import EXIT_INPUT, fail, friendly, opened, out, print_json
from worker.models import DeliveryState
from worker.stats import Bucket, EditionStats


@friendly
def stats(
    edition_id: int = typer.Argument(..., metavar="EDITION"),
    as_json: bool = typer.Option(False, "--json", help="Print every figure as JSON."),
    as_csv: bool = typer.Option(False, "--csv", help="Print metric,value rows as CSV."),
) -> None:
    """An edition's deliveries, bounces, complaints, unsubscribes, opens and clicks (human and
    machine apart), rates against delivered mail, and the clicks on each link."""
    if as_json and as_csv:
        fail("give at most one of --json and --csv", EXIT_INPUT)
    with opened() as (_, engine), db.session_scope(engine) as session:
        found = edition_stats.of_edition(session, edition_id)
    if as_json:
        print_json(edition_stats.stats_dict(found))
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("metric", "value"))
        writer.writerows(edition_stats.stats_rows(found))
    else:
        _print_summary(found)


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _busiest(buckets: tuple[Bucket, ...]) -> str:
    top = max(buckets, key=lambda bucket: bucket.human, default=None)
    if top is None or top.human == 0:
        return "none by humans yet"
    return f"{top.start:%d %b %H:%M} UTC ({top.human} human)"


def _print_summary(found: EditionStats) -> None:
    deliveries = " · ".join(
        f"{state} {getattr(found.deliveries, state.value)}" for state in DeliveryState
    )
    rates = found.rates
    out.print(f"edition {found.edition_id} · {found.period_key} · {escape(found.subject)}")
    out.print(f"deliveries: {deliveries}")
    out.print(
        f"sent {found.sent} · delivered {found.delivered} · bounced {found.bounces} "
        f"({found.hard_bounces} permanent, {_pct(rates.bounce)} of sent) · complaints "
        f"{found.complaints} ({_pct(rates.complaint)}) · unsubscribes {found.unsubscribes} "
        f"({_pct(rates.unsubscribe)})"
    )
    out.print(
        f"opens: {found.unique_human_opens} readers ({_pct(rates.open)} of delivered) · "
        f"{found.human_opens} human opens, {found.machine_opens} by machines · busiest "
        f"{_busiest(found.opens_over_time)}"
    )
    out.print(
        f"clicks: {found.unique_human_clickers} readers ({_pct(rates.click)} of delivered) · "
        f"{found.human_clicks} human clicks, {found.machine_clicks} by machines · busiest "
        f"{_busiest(found.clicks_over_time)}"
    )
    if not found.links:
        out.print("no link clicked yet")
        return
    out.print("clicks per link (human · readers · machine):")
    for link in found.links:
        # Text, not a markup string: a URL may hold "[…]" that Rich would read as markup.
        counts = (
            f"{link.human_clicks:>5} · {link.unique_human_clickers:>5} · {link.machine_clicks:>5}"
        )
        out.print(Text(f"{counts}  {link.url}"))
