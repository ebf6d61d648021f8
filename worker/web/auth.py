"""Admin sign-in: a signed session cookie, roles, and a CSRF token bound to the session.

The cookie is `HttpOnly`, `SameSite=Lax` and `Secure` on https; it holds a signed
`u<user>.t<issued>.n<nonce>` and nothing else. Every admin form carries a token derived from the
session's nonce, so a cross-site POST (which cannot read it) is refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from worker import tracking
from worker.db import session_scope
from worker.models import Role, User, utcnow
from worker.web.pages import page

SESSION_COOKIE = "vm_admin"
SESSION_MAX_AGE = timedelta(hours=12)
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Admin:
    id: int
    email: str
    role: Role
    nonce: str

    @property
    def is_operator(self) -> bool:
        return self.role == Role.OPERATOR


def _key(request: Request) -> bytes:
    key: bytes = request.app.state.settings.signing_key()
    return key


def start_session(request: Request, response: Response, user: User) -> None:
    assert user.id is not None
    issued = int(utcnow().timestamp())
    token = tracking.sign(
        _key(request),
        tracking.Purpose.SESSION,
        f"u{user.id}.t{issued}.n{secrets.token_urlsafe(16)}",
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_MAX_AGE.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.public_base_url.startswith("https://"),
        path="/admin",
    )


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/admin")


def signed_in(request: Request) -> Admin | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        data = tracking.verify(_key(request), tracking.Purpose.SESSION, token)
        user_part, issued_part, nonce_part = data.split(".", 2)
        user_id = int(user_part.removeprefix("u"))
        issued = int(issued_part.removeprefix("t"))
    except (tracking.InvalidToken, ValueError):
        return None
    if utcnow().timestamp() - issued > SESSION_MAX_AGE.total_seconds():
        return None
    with session_scope(request.app.state.engine) as session:
        user = session.get(User, user_id)
        if user is None:  # the account was removed: its sessions end with it
            return None
        return Admin(user_id, user.email, user.role, nonce_part.removeprefix("n"))


def csrf_token(request: Request, admin: Admin) -> str:
    return tracking.sign(_key(request), tracking.Purpose.CSRF, f"admin.{admin.nonce}")


def csrf_ok(request: Request, admin: Admin, submitted: object) -> bool:
    if not isinstance(submitted, str):
        return False
    try:
        return tracking.verify(_key(request), tracking.Purpose.CSRF, submitted) == (
            f"admin.{admin.nonce}"
        )
    except tracking.InvalidToken:
        return False


def to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/admin/login?next={quote(target)}", status_code=303)


def forbidden(request: Request, admin: Admin, what: str) -> Response:
    return page(
        request,
        "admin/message.html",
        status=403,
        admin=admin,
        heading="Not allowed",
        text=f"Your role ({admin.role}) cannot {what}.",
    )
