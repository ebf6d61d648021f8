"""`newsletter users …`: who may sign in to /admin."""

from __future__ import annotations

import sys

import typer

from worker import users
from worker.cli.common import friendly, opened, out, print_json
from worker.db import session_scope
from worker.models import Role, utcnow

users_app = typer.Typer(
    help="Admin accounts: editors preview and approve; operators also steer sends.",
    no_args_is_help=True,
)


@users_app.command("add")
@friendly
def users_add(
    email: str = typer.Argument(...),
    role: Role = typer.Option(..., help="editor or operator."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (for scripts)."
    ),
) -> None:
    """Add an account; asks for its password (at least 12 characters) unless piped in."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with opened() as (_, engine), session_scope(engine) as session:
        user = users.add(session, email, role=role, password=password, now=utcnow())
    out.print(f"{user.email} can sign in to /admin as {user.role}")


@users_app.command("list")
@friendly
def users_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    with opened() as (_, engine), session_scope(engine) as session:
        rows = [
            {
                "email": user.email,
                "role": user.role,
                "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
            }
            for user in users.list_users(session)
        ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        out.print(f"{row['email']}  {row['role']}  last sign-in {row['last_login_at'] or 'never'}")


@users_app.command("remove")
@friendly
def users_remove(email: str = typer.Argument(...)) -> None:
    with opened() as (_, engine), session_scope(engine) as session:
        users.remove(session, email)
    out.print(f"{email} can no longer sign in")
