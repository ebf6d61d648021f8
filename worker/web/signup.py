"""Subscribing from the web: the form (or JSON), the confirm link, resubscribe after leaving.

Every sign-up gets the same answer whether the address was new, pending, subscribed or
suppressed; the confirmation mail goes out after the response, so timing tells nothing either.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from worker import signup, tracking
from worker.db import session_scope
from worker.errors import InputError
from worker.models import Subscriber, utcnow
from worker.web.pages import page

router = APIRouter()
CSRF_COOKIE = "vm_csrf"
CSRF_FIELD = "csrf_token"
HONEYPOT = "website"  # hidden from people; bots fill every field they find
CHECK_INBOX = (
    "Check your inbox: if the address can get the newsletter, a confirmation is on its way."
)


def _key(request: Request) -> bytes:
    key: bytes = request.app.state.settings.signing_key()
    return key


def _form_page(request: Request, *, status: int = 200, **context: Any) -> Response:
    """The sign-up form with a fresh CSRF pair: a random cookie and its signature in the form."""
    nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = page(
        request,
        "subscribe.html",
        status=status,
        csrf_token=tracking.sign(_key(request), tracking.Purpose.CSRF, nonce),
        honeypot=HONEYPOT,
        **context,
    )
    response.set_cookie(
        CSRF_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=request.app.state.settings.public_base_url.startswith("https://"),
        path="/subscribe",
    )
    return response


def _csrf_ok(request: Request, submitted: object) -> bool:
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or not isinstance(submitted, str):
        return False
    try:
        return tracking.verify(_key(request), tracking.Purpose.CSRF, submitted) == nonce
    except tracking.InvalidToken:
        return False


def _same_origin(request: Request) -> bool:
    """A JSON sign-up from a browser must come from our own pages (no Origin: not a browser)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    ours = {
        f"{part.scheme}://{part.netloc}"
        for part in (urlsplit(request.app.state.settings.public_base_url), request.url)
    }
    return origin in ours


@router.get("/subscribe")
def subscribe_form(request: Request) -> Response:
    return _form_page(request)


def _json_answer(status_code: int, **body: str) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


@router.post("/subscribe")
async def subscribe(request: Request, background: BackgroundTasks) -> Response:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    as_json = kind == "application/json"
    if not as_json and kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _json_answer(415, error="send the sign-up as a form or as application/json")
    client = request.client.host if request.client else "unknown"
    if not request.app.state.signup_attempts.allow(client):
        if as_json:
            return _json_answer(429, error="too many sign-ups from this address; try later")
        return page(
            request,
            "message.html",
            status=429,
            heading="Slow down",
            text=(
                "Too many sign-ups came from your network in the last hour. Please try again later."
            ),
        )
    if as_json:
        if not _same_origin(request):
            return _json_answer(403, error="cross-site sign-up refused")
        try:
            fields = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return _json_answer(400, error="body is not valid JSON")
        if not isinstance(fields, dict):
            return _json_answer(400, error="body must be a JSON object with an email field")
    else:
        fields = dict(await request.form())
        if not _csrf_ok(request, fields.get(CSRF_FIELD)):
            return page(
                request,
                "message.html",
                status=403,
                heading="This form has expired",
                text=("Please reload the sign-up page and send the form again."),
            )
    email, name = fields.get("email"), fields.get("name")
    if not isinstance(email, str) or (name is not None and not isinstance(name, str)):
        return _invalid(request, as_json, "email: give the address as text")
    if fields.get(HONEYPOT):
        return _accepted(request, as_json)  # a bot: same answer, nothing stored or sent
    try:
        due = await run_in_threadpool(_request, request, email, name)
    except InputError as error:
        return _invalid(request, as_json, str(error))
    if due is not None:
        background.add_task(_send, request, due)
    return _accepted(request, as_json)


def _request(request: Request, email: str, name: str | None) -> signup.ConfirmationDue | None:
    with session_scope(request.app.state.engine) as session:
        return signup.request(session, email, name=name, now=utcnow())


def _send(request: Request, due: signup.ConfirmationDue) -> None:
    state = request.app.state
    signup.send_confirmation(state.engine, state.transport, due, state.settings)


def _invalid(request: Request, as_json: bool, message: str) -> Response:
    field_message = message if message.startswith(("email", "name")) else f"email: {message}"
    if as_json:
        return _json_answer(422, error=field_message)
    return _form_page(request, status=422, error=field_message)


def _accepted(request: Request, as_json: bool) -> Response:
    if as_json:
        return _json_answer(202, status="check-your-inbox", message=CHECK_INBOX)
    return page(request, "message.html", heading="Check your inbox", text=CHECK_INBOX)


def _confirm_reader(request: Request, token: str) -> int | None:
    try:
        subscriber_id, _ = tracking.read_confirm_token(_key(request), token, now=utcnow())
    except tracking.InvalidToken:
        return None
    return subscriber_id


@router.get("/confirm/{token}")
def confirm_page(request: Request, token: str) -> Response:
    """A button, never the confirmation itself: link scanners fetch every GET."""
    subscriber_id = _confirm_reader(request, token)
    if subscriber_id is None:
        return page(request, "invalid_link.html", status=400)
    with session_scope(request.app.state.engine) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return page(request, "invalid_link.html", status=404)
        email = subscriber.email
    return page(request, "confirm.html", email=email, outcome=None)


@router.post("/confirm/{token}")
def confirm(request: Request, token: str) -> Response:
    try:
        subscriber_id, issued_at = tracking.read_confirm_token(_key(request), token, now=utcnow())
    except tracking.InvalidToken:
        return page(request, "invalid_link.html", status=400)
    with session_scope(request.app.state.engine) as session:
        outcome = signup.confirm(session, subscriber_id, issued_at=issued_at, now=utcnow())
        subscriber = session.get(Subscriber, subscriber_id)
        email = subscriber.email if subscriber else ""
    if outcome == signup.Confirmed.STALE:
        return page(request, "invalid_link.html", status=400)
    return page(request, "confirm.html", email=email, outcome=outcome.value)


@router.post("/resubscribe/{token}")
def resubscribe(request: Request, token: str, background: BackgroundTasks) -> Response:
    """From the unsubscribe page: the reader confirms again by mail before any issue goes."""
    try:
        subscriber_id, _ = tracking.read_unsubscribe_token(_key(request), token)
    except tracking.InvalidToken:
        return page(request, "invalid_link.html", status=400)
    with session_scope(request.app.state.engine) as session:
        if session.get(Subscriber, subscriber_id) is None:
            return page(request, "invalid_link.html", status=404)
        due = signup.resubscribe(session, subscriber_id, now=utcnow())
    if due is not None:
        background.add_task(_send, request, due)
    return page(request, "message.html", heading="Check your inbox", text=CHECK_INBOX)
