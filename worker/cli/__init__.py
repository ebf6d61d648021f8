"""The `newsletter` command: thin Typer commands over the core, with Rich output."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from worker import logs
from worker.cli import content, doctor, people, schedules, sends, stats, users
from worker.config import get_settings

app = typer.Typer(
    help="Verdicts Mailer: turns the week's newest AI tool comparison into an email and sends it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _logging() -> None:
    # Before any command: log lines as LOG_FORMAT and LOG_LEVEL say. A setting that does not
    # validate leaves logging alone here; the command reports it in one clear line.
    try:
        settings = get_settings()
    except ValidationError:
        return
    # Warnings only unless LOG_LEVEL asks for more: a command prints what it did itself, and its
    # in-process dramatiq worker starting and stopping is no news to whoever typed it.
    logs.configure(settings, default_level="WARNING", quiet=("dramatiq",))


app.add_typer(content.db_app, name="db")
app.add_typer(content.comparisons_app, name="comparisons")
app.add_typer(people.subscribers_app, name="subscribers")
app.add_typer(sends.editions_app, name="editions")
app.add_typer(sends.deliveries_app, name="deliveries")
app.add_typer(schedules.schedules_app, name="schedules")
app.add_typer(users.users_app, name="users")
app.command("preview")(content.preview)
app.command("send-weekly")(sends.send_weekly)
app.command("stats")(stats.stats)
app.command("doctor")(doctor.doctor)

__all__ = ["app"]
