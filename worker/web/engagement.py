"""The open pixel and tracked links: answer at once, record an event per delivery."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from worker import engagement, tracking
from worker.models import EventKind, utcnow
from worker.web.pages import page

router = APIRouter()
log = logging.getLogger(__name__)

# The smallest transparent image: a 1x1 GIF89a with one transparent palette entry.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


async def _record(
    request: Request, kind: EventKind, delivery_id: int, url: str | None = None
) -> None:
    """Record before answering, but never let a database hiccup break an image or a link.

    The insert runs on the app's few event-writer threads rather than the 40 threads sync
    handlers share: fewer threads fighting over the interpreter makes the slowest answers
    (p99) much faster under load.
    """
    write = partial(
        engagement.record,
        request.app.state.engine,
        kind=kind,
        delivery_id=delivery_id,
        user_agent=request.headers.get("user-agent", ""),
        client_ip=request.client.host if request.client else None,
        now=utcnow(),
        url=url,
    )
    try:
        await asyncio.get_running_loop().run_in_executor(request.app.state.event_writers, write)
    except SQLAlchemyError:
        log.exception("could not record a %s for delivery %s", kind.value, delivery_id)


@router.get("/o/{token}.gif")
async def open_pixel(request: Request, token: str) -> Response:
    """Always the image, whatever the token: a broken image would tell nobody anything useful."""
    try:
        delivery_id = tracking.read_open_token(request.app.state.settings.signing_key(), token)
    except tracking.InvalidToken:
        delivery_id = None
    if delivery_id is not None:
        await _record(request, EventKind.OPEN, delivery_id)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/c/{token}")
async def click(request: Request, token: str) -> Response:
    """Redirect to the target sealed in the token; an unsigned or edited one goes nowhere."""
    try:
        delivery_id, url = tracking.read_click_token(
            request.app.state.settings.signing_key(), token
        )
    except tracking.InvalidToken:
        return page(request, "invalid_link.html", status=400)
    await _record(request, EventKind.CLICK, delivery_id, url)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)
