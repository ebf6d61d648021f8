"""The admin area (/admin): editors preview, retitle, test and approve editions; operators also
watch sends and pause, resume or cancel them. Server-rendered pages, one form per action."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from sqlmodel import col, select

from schedules import admin as schedule_admin
from schedules import timing
from worker import control, previews, runner, runtime, users
from worker.db import session_scope
from worker.errors import InputError
from worker.models import Comparison, DeliveryState, Edition, EditionStatus, utcnow
from worker.web import auth
from worker.web.pages import page

router = APIRouter(prefix="/admin")
LIVE = (EditionStatus.APPROVED, EditionStatus.SENDING, EditionStatus.PAUSED)


def render(
    request: Request, admin: auth.Admin, name: str, status_code: int = 200, **context: Any
) -> Response:
    return page(
        request,
        f"admin/{name}",
        status=status_code,
        admin=admin,
        csrf_token=auth.csrf_token(request, admin),
        **context,
    )


def not_found(request: Request, admin: auth.Admin, heading: str, text: str) -> Response:
    return render(request, admin, "message.html", status_code=404, heading=heading, text=text)


async def read_form(request: Request) -> dict[str, Any]:
    return dict(await request.form())


async def acting(request: Request, *, operator: bool, what: str) -> auth.Admin | Response:
    """The signed-in admin allowed to do `what` with a valid CSRF token; else the answer."""
    admin = auth.signed_in(request)
    if admin is None:
        return auth.to_login(request)
    if not auth.csrf_ok(request, admin, (await read_form(request)).get(auth.CSRF_FIELD)):
        return page(
            request,
            "admin/message.html",
            status=403,
            admin=admin,
            heading="Form expired",
            text="Reload the page and try again.",
        )
    if operator and not admin.is_operator:
        return auth.forbidden(request, admin, what)
    return admin


def viewer(request: Request) -> auth.Admin | Response:
    admin = auth.signed_in(request)
    return admin if admin is not None else auth.to_login(request)


# --- signing in ------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/admin") -> Response:
    return page(request, "admin/login.html", next=_safe_next(next), error=None)


def _safe_next(target: str) -> str:
    """Only a path inside /admin: a login link cannot send anyone elsewhere."""
    if target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin"


@router.post("/login")
async def login(request: Request) -> Response:
    fields = await read_form(request)
    target = _safe_next(str(fields.get("next", "/admin")))
    client = request.client.host if request.client else "unknown"
    email = str(fields.get("email", ""))
    attempts = request.app.state.login_attempts
    if not (attempts.allow(f"ip:{client}") and attempts.allow(f"user:{email.lower()}")):
        return page(
            request,
            "admin/login.html",
            status=429,
            next=target,
            error="Too many attempts. Wait a few minutes and try again.",
        )
    with session_scope(request.app.state.engine) as session:
        user = users.authenticate(session, email, str(fields.get("password", "")), now=utcnow())
        if user is not None:
            response = RedirectResponse(target, status_code=303)
            auth.start_session(request, response, user)
            return response
    return page(
        request,
        "admin/login.html",
        status=401,
        next=target,
        error="That address and password do not match an account.",
    )


@router.post("/logout")
async def logout(request: Request) -> Response:
    who = await acting(request, operator=False, what="sign out")
    if isinstance(who, Response):
        return who
    response = RedirectResponse("/admin/login", status_code=303)
    auth.end_session(response)
    return response


# --- overview --------------------------------------------------------------------------------


@router.get("")
def dashboard(request: Request) -> Response:
    admin = viewer(request)
    if isinstance(admin, Response):
        return admin
    now = utcnow()
    with session_scope(request.app.state.engine) as session:
        schedules = [
            {
                "name": s.name,
                "cron": s.cron,
                "timezone": s.timezone,
                "enabled": s.enabled,
                "next": timing.fires_after(s.cron, s.timezone, now, 3) if s.enabled else [],
            }
            for s in schedule_admin.all_schedules(session)
        ]
        current = session.exec(select(Edition).order_by(col(Edition.id).desc()).limit(1)).first()
    report = (
        control.report(request.app.state.engine, current.id) if current and current.id else None
    )
    return render(
        request,
        admin,
        "dashboard.html",
        schedules=schedules,
        report=report,
        states=list(DeliveryState),
        live=bool(report and report.edition.status in LIVE),
    )


@router.get("/editions")
def editions_page(request: Request) -> Response:
    admin = viewer(request)
    if isinstance(admin, Response):
        return admin
    with session_scope(request.app.state.engine) as session:
        rows = list(session.exec(select(Edition).order_by(col(Edition.id).desc())))
        comparisons = list(
            session.exec(select(Comparison).order_by(col(Comparison.published_at).desc()))
        )
    return render(request, admin, "editions.html", editions=rows, comparisons=comparisons)


@router.get("/editions/{edition_id}")
def edition_page(request: Request, edition_id: int, notice: str = "") -> Response:
    admin = viewer(request)
    if isinstance(admin, Response):
        return admin
    with session_scope(request.app.state.engine) as session:
        try:
            edition, copy = previews.of_edition(session, edition_id, request.app.state.settings)
        except InputError as error:
            return not_found(request, admin, "No such edition", str(error))
        changed = previews.source_changed(session, edition)
    report = control.report(request.app.state.engine, edition_id)
    return render(
        request,
        admin,
        "edition.html",
        edition=edition,
        copy=copy,
        source_changed=changed,
        report=report,
        states=list(DeliveryState),
        notice=notice[:200],
        from_address=request.app.state.settings.from_address,
    )


@router.get("/comparisons/{slug}")
def comparison_page(request: Request, slug: str) -> Response:
    """A preview of any stored comparison, as it would go out if its week fired now."""
    admin = viewer(request)
    if isinstance(admin, Response):
        return admin
    with session_scope(request.app.state.engine) as session:
        row = session.exec(select(Comparison).where(Comparison.slug == slug)).first()
        if row is None:
            return not_found(
                request, admin, "No such comparison", f"Nothing is stored as {slug!r}."
            )
        copy = previews.of_comparison(row, request.app.state.settings)
    return render(
        request,
        admin,
        "edition.html",
        edition=None,
        copy=copy,
        report=None,
        source_changed=False,
        states=[],
        notice="",
        from_address=request.app.state.settings.from_address,
    )


# --- editor actions --------------------------------------------------------------------------


def _back(edition_id: int, notice: str) -> Response:
    from urllib.parse import quote

    return RedirectResponse(f"/admin/editions/{edition_id}?notice={quote(notice)}", 303)


@router.post("/editions/{edition_id}/retitle")
async def retitle(request: Request, edition_id: int) -> Response:
    who = await acting(request, operator=False, what="edit an edition")
    if isinstance(who, Response):
        return who
    fields = await read_form(request)
    try:
        with session_scope(request.app.state.engine) as session:
            previews.retitle(
                session,
                edition_id,
                subject=str(fields.get("subject", "")),
                preheader=str(fields.get("preheader", "")),
                settings=request.app.state.settings,
            )
    except InputError as error:
        return _back(edition_id, f"Not saved: {error}")
    return _back(edition_id, "Subject and preheader saved.")


@router.post("/editions/{edition_id}/test")
async def test_send(request: Request, edition_id: int) -> Response:
    who = await acting(request, operator=False, what="send a test")
    if isinstance(who, Response):
        return who
    fields = await read_form(request)
    state = request.app.state
    try:
        with session_scope(state.engine) as session:
            _, copy = previews.of_edition(session, edition_id, state.settings)
        messages = previews.test_messages(copy, str(fields.get("addresses", "")), state.settings)
    except InputError as error:
        return _back(edition_id, f"Not sent: {error}")
    results = state.transport.send(messages)
    failed = [m.to_address for m, r in zip(messages, results, strict=True) if not r.ok]
    if failed:
        return _back(edition_id, f"Test not sent to {', '.join(failed)}.")
    return _back(edition_id, f"Test sent to {', '.join(m.to_address for m in messages)}.")


@router.post("/editions/{edition_id}/approve")
async def approve(request: Request, edition_id: int) -> Response:
    who = await acting(request, operator=False, what="approve an edition")
    if isinstance(who, Response):
        return who
    try:
        control.approve(request.app.state.engine, edition_id, by=who.email)
    except InputError as error:
        return _back(edition_id, f"Not approved: {error}")
    _carry_on(request, edition_id)
    return _back(edition_id, "Approved: sending.")


# --- operator actions ------------------------------------------------------------------------


async def _steer(
    request: Request, edition_id: int, *, verb: str, done: str, act: Callable[[Engine], object]
) -> Response:
    """One operator action on a send: allowed, done, and said on the edition's page."""
    who = await acting(request, operator=True, what=f"{verb} a send")
    if isinstance(who, Response):
        return who
    try:
        act(request.app.state.engine)
    except InputError as error:
        return _back(edition_id, f"Not done ({verb}): {error}")
    return _back(edition_id, done)


@router.post("/editions/{edition_id}/pause")
async def pause(request: Request, edition_id: int) -> Response:
    return await _steer(
        request,
        edition_id,
        verb="pause",
        done="Paused.",
        act=lambda engine: control.pause(engine, edition_id),
    )


@router.post("/editions/{edition_id}/resume")
async def resume(request: Request, edition_id: int) -> Response:
    def act(engine: Engine) -> None:
        control.resume(engine, edition_id)
        _carry_on(request, edition_id)

    return await _steer(request, edition_id, verb="resume", done="Resumed.", act=act)


@router.post("/editions/{edition_id}/cancel")
async def cancel(request: Request, edition_id: int) -> Response:
    lease_s = request.app.state.settings.send_lease_s
    return await _steer(
        request,
        edition_id,
        verb="cancel",
        done="Cancelled: nothing more is sent.",
        act=lambda engine: control.cancel(engine, edition_id, lease_s=lease_s),
    )


def _carry_on(request: Request, edition_id: int) -> None:
    """Send what is pending: the workers do it (Redis), or a thread of this process does."""
    state = request.app.state
    if not runner.in_process():
        runner.enqueue(edition_id)
        return
    limiter = runtime.make_limiter(state.settings, state.transport)
    runtime.install(runtime.Runtime(state.settings, state.engine, state.transport, limiter))

    def send() -> None:
        runner.send_in_process(
            state.engine, edition_id, lease_s=state.settings.send_lease_s, progress=None
        )

    sender = threading.Thread(target=send, name=f"send-{edition_id}", daemon=True)
    state.background_sends.append(sender)
    sender.start()
