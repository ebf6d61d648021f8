"""The `newsletter` command: thin Typer commands over the core, with Rich output."""

from __future__ import annotations

import typer

from worker.cli import content, people, schedules, sends, stats, users

app = typer.Typer(
    help="Verdicts Mailer: turns the week's newest AI tool comparison into an email and sends it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
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

__all__ = ["app"]
