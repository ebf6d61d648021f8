"""The admin subscribers page: search, filter by status, counts, CSV import and export."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from worker import subscribers
from worker.db import session_scope
from worker.models import SubscriberStatus
from worker.web.admin import acting, read_form, render, viewer
from worker.web.downloads import csv_download

router = APIRouter(prefix="/admin")
PAGE_SIZE = 100
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@router.get("/subscribers")
def subscribers_page(request: Request, q: str = "", status: str = "", page: int = 1) -> Response:
    admin = viewer(request)
    if isinstance(admin, Response):
        return admin
    chosen = SubscriberStatus(status) if status in set(SubscriberStatus) else None
    page = max(page, 1)
    with session_scope(request.app.state.engine) as session:
        counts = subscribers.count_by_status(session)
        rows = subscribers.search(
            session, text=q, status=chosen, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE
        )
    return render(
        request,
        admin,
        "subscribers.html",
        counts=counts,
        total=sum(counts.values()),
        rows=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        q=q,
        chosen_status=chosen.value if chosen else "",
        statuses=list(SubscriberStatus),
        page=page,
        report=None,
    )


@router.post("/subscribers/import")
async def import_subscribers(request: Request) -> Response:
    admin = await acting(request, operator=True, what="import subscribers")
    if isinstance(admin, Response):
        return admin
    upload = (await read_form(request)).get("file")
    problem = None
    text = ""
    if not isinstance(upload, UploadFile) or not upload.filename:
        problem = "file: choose a CSV file (columns email,name)"
    else:
        raw = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(raw) > MAX_UPLOAD_BYTES:
            problem = f"file: larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
        else:
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                problem = "file: not UTF-8 text"
    report = None
    if problem is None:
        assert isinstance(upload, UploadFile)
        with session_scope(request.app.state.engine) as session:
            report = subscribers.import_text(session, text, source=upload.filename or "upload")
    with session_scope(request.app.state.engine) as session:
        counts = subscribers.count_by_status(session)
        rows = subscribers.search(session, text="", status=None, limit=PAGE_SIZE, offset=0)
    return render(
        request,
        admin,
        "subscribers.html",
        status_code=422 if problem else 200,
        counts=counts,
        total=sum(counts.values()),
        rows=rows,
        more=False,
        q="",
        chosen_status="",
        statuses=list(SubscriberStatus),
        page=1,
        report=report,
        problem=problem,
    )


@router.get("/subscribers.csv")
def export_subscribers(request: Request) -> Response:
    admin = viewer(request)
    if isinstance(admin, Response):
        return admin
    engine = request.app.state.engine

    def rows() -> Iterator[tuple[str, ...]]:
        yield ("email", "name", "status", "created_at")
        with session_scope(engine) as session:
            yield from subscribers.export_rows(session)

    return csv_download(rows(), "subscribers.csv")
