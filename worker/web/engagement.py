"""The open pixel and tracked links: answer at once, record an event per delivery."""

from __future__ import annotations

import logging

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


def _record(request: Request, kind: EventKind, delivery_id: int, url: str | None = None) -> None:
    """Record, but never let a database hiccup break an image or a reader's link."""
    try:
        engagement.record(
            request.app.state.engine,
            kind=kind,
            delivery_id=delivery_id,
            user_agent=request.headers.get("user-agent", ""),
            client_ip=request.client.host if request.client else None,
            now=utcnow(),
            url=url,
        )
    except SQLAlchemyError:
        log.exception("could not record a %s for delivery %s", kind.value, delivery_id)


@router.get("/o/{token}.gif")
def open_pixel(request: Request, token: str) -> Response:
    """Always the image, whatever the token: a broken image would tell nobody anything useful."""
    try:
        delivery_id = tracking.read_open_token(request.app.state.settings.signing_key(), token)
    except tracking.InvalidToken:
        delivery_id = None
    if delivery_id is not None:
        _record(request, EventKind.OPEN, delivery_id)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/c/{token}")
def click(request: Request, token: str) -> Response:
    """Redirect to the target sealed in the token; an unsigned or edited one goes nowhere."""
    try:
        delivery_id, url = tracking.read_click_token(
            request.app.state.settings.signing_key(), token
        )
    except tracking.InvalidToken:
        return page(request, "invalid_link.html", status=400)
    _record(request, EventKind.CLICK, delivery_id, url)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)
