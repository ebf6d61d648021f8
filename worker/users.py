"""Admin users: added from the CLI, checked at sign-in. Passwords are argon2 hashes."""

from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from worker.errors import InputError, NotFoundError
from worker.models import Role, User
from worker.subscribers import normalise_email

MIN_PASSWORD_CHARS = 12
_hasher = PasswordHasher()
# Checked when an address is unknown, so a wrong address costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("no such user: this hash only spends the time a real check takes")


def add(session: Session, raw_email: str, *, role: Role, password: str, now: datetime) -> User:
    email = normalise_email(raw_email)
    if len(password) < MIN_PASSWORD_CHARS:
        raise InputError(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    user = User(email=email, role=role, password_hash=_hasher.hash(password), created_at=now)
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise InputError(f"email {email} already has an admin account") from None
    return user


def authenticate(session: Session, raw_email: str, password: str, *, now: datetime) -> User | None:
    """The user if the address and password match; None otherwise (the same time either way)."""
    try:
        email = normalise_email(raw_email)
    except InputError:
        email = ""
    user = session.exec(select(User).where(User.email == email)).first() if email else None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    user.last_login_at = now
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    session.add(user)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.email))))


def remove(session: Session, raw_email: str) -> None:
    email = normalise_email(raw_email)
    user = session.exec(select(User).where(User.email == email)).first()
    if user is None:
        raise NotFoundError(f"{email} has no admin account")
    session.delete(user)
