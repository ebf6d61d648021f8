"""Pages readers reach from an email: unsubscribe (a page, and RFC 8058 one-click)."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from worker import subscribers, tracking
from worker.db import session_scope
from worker.models import Subscriber, SubscriberStatus
from worker.web.pages import page as _page

router = APIRouter()


def _reader(request: Request, token: str) -> tuple[int, int | None] | None:
    try:
        return tracking.read_unsubscribe_token(request.app.state.settings.signing_key(), token)
    except tracking.InvalidToken:
        return None


def _addressee(request: Request, token: str) -> tuple[Subscriber, int | None] | Response:
    """The subscriber (and delivery) a link names, or the page that says the link is no good."""
    reader = _reader(request, token)
    if reader is None:
        return _page(request, "invalid_link.html", status=400)
    with session_scope(request.app.state.engine) as session:
        subscriber = session.get(Subscriber, reader[0])
    if subscriber is None:
        return _page(request, "invalid_link.html", status=404)
    return subscriber, reader[1]


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str) -> Response:
    """A page with a button. It never unsubscribes by itself: link scanners fetch GETs."""
    found = _addressee(request, token)
    if isinstance(found, Response):
        return found
    subscriber, _ = found
    done = subscriber.status != SubscriberStatus.ACTIVE
    return _page(
        request,
        "unsubscribe.html",
        email=subscriber.email,
        done=done,
        token=token,
        can_return=subscriber.status == SubscriberStatus.UNSUBSCRIBED,
    )


@router.post("/unsubscribe/{token}")
def unsubscribe(
    request: Request,
    token: str,
    one_click: str | None = Form(None, alias="List-Unsubscribe"),
) -> Response:
    """The page's button, or a mail client's RFC 8058 one-click POST: unsubscribe at once.

    No cookie, session or CSRF token is needed (the signed token is the reader's proof), and a
    one-click POST gets a plain 200 with no redirect, as the RFC asks.
    """
    found = _addressee(request, token)
    if isinstance(found, Response):
        return found
    subscriber, delivery_id = found
    assert subscriber.id is not None
    with session_scope(request.app.state.engine) as session:
        subscribers.unsubscribe_by_link(session, subscriber.id, delivery_id)
    if one_click == "One-Click":
        return PlainTextResponse("unsubscribed", headers={"Cache-Control": "no-store"})
    return _page(
        request,
        "unsubscribe.html",
        email=subscriber.email,
        done=True,
        token=token,
        can_return=subscriber.status not in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED),
    )
