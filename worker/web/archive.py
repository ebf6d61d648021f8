"""The archive pages: the list of sent issues, and each issue behind "View in browser"."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from worker import archive
from worker.db import session_scope
from worker.web.pages import page

router = APIRouter()
# The issue page is our own render, but it shows comparison text: allow it no script at all.
ISSUE_POLICY = "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'"


@router.get("/archive")
def archive_list(request: Request) -> Response:
    with session_scope(request.app.state.engine) as session:
        entries = archive.entries(session)
    return page(request, "archive.html", entries=entries)


@router.get("/archive/{slug}")
def archive_issue(request: Request, slug: str) -> Response:
    with session_scope(request.app.state.engine) as session:
        html = archive.public_html(session, slug)
    if html is None:
        return page(
            request,
            "message.html",
            status=404,
            heading="No such issue",
            text=("This issue is not in the archive. It may not have been sent yet."),
        )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": ISSUE_POLICY,
            "Cache-Control": "public, max-age=300",
            "Referrer-Policy": "no-referrer",
        },
    )
