"""Per-edition statistics in the admin area: figures, SVG charts, CSV exports."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from worker import charts, stats
from worker.db import session_scope
from worker.errors import NotFoundError
from worker.web.admin import not_found, render, viewer
from worker.web.downloads import csv_download

router = APIRouter(prefix="/admin")


@router.get("/editions/{edition_id}/stats")
def stats_page(request: Request, edition_id: int) -> Response:
    admin = viewer(request)
    if isinstance(admin, Response):
        return admin
    with session_scope(request.app.state.engine) as session:
        try:
            figures = stats.of_edition(session, edition_id)
        except NotFoundError as error:
            return not_found(request, admin, "No such edition", str(error))
    # Markup: charts.py builds the SVG itself and escapes every text it puts in.
    opens = Markup(charts.time_series_svg(figures.opens_over_time, title="Opens over time"))
    clicks = Markup(charts.time_series_svg(figures.clicks_over_time, title="Clicks over time"))
    per_link = Markup(
        charts.bar_chart_svg(
            [(link.url, link.human_clicks) for link in figures.links], title="Human clicks per link"
        )
    )
    return render(
        request,
        admin,
        "stats.html",
        figures=figures,
        opens_chart=opens,
        clicks_chart=clicks,
        links_chart=per_link,
    )


@router.get("/editions/{edition_id}/stats.csv")
def statscsv_download(request: Request, edition_id: int) -> Response:
    admin = viewer(request)
    if isinstance(admin, Response):
        return admin
    with session_scope(request.app.state.engine) as session:
        try:
            rows = stats.stats_rows(stats.of_edition(session, edition_id))
        except NotFoundError:
            return Response("no such edition", status_code=404)
    return csv_download(iter([("metric", "value"), *rows]), f"edition-{edition_id}-stats.csv")


@router.get("/editions/{edition_id}/outcomes.csv")
def outcomescsv_download(request: Request, edition_id: int) -> Response:
    admin = viewer(request)
    if isinstance(admin, Response):
        return admin
    engine = request.app.state.engine
    with session_scope(engine) as session:
        try:
            stats.outcomes_rows(session, edition_id)  # checks the edition at once: 404 now
        except NotFoundError:
            return Response("no such edition", status_code=404)

    def rows() -> Iterator[tuple[object, ...]]:
        yield stats.OUTCOME_COLUMNS
        with session_scope(engine) as session:
            yield from stats.outcomes_rows(session, edition_id)

    return csv_download(rows(), f"edition-{edition_id}-outcomes.csv")
