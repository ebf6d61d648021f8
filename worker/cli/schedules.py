"""`newsletter schedules …`: recurring sends, set up once and watched."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from schedules import admin, firing, timing
from worker import fires, runner, weekly
from worker.cli.common import friendly, opened, out, print_json
from worker.cli.sends import carry_on
from worker.db import session_scope
from worker.models import MissedRunPolicy, Schedule, utcnow
from worker.periods import zone

schedules_app = typer.Typer(
    help="Recurring sends: a cron time in a time zone, fired once per ISO week by the "
    "`python -m schedules` process.",
    no_args_is_help=True,
)
NEXT_FIRES = 3
# A scheduler not seen for this long is reported as down.
BEAT_STALE_S = 120


def _next(schedule: Schedule, now: datetime) -> list[dict[str, str]]:
    tz = zone(schedule.timezone)
    return [
        {"local": at.astimezone(tz).isoformat(), "utc": at.isoformat()}
        for at in timing.fires_after(schedule.cron, schedule.timezone, now, NEXT_FIRES)
    ]


def _json(schedule: Schedule, now: datetime) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "enabled": schedule.enabled,
        "require_approval": schedule.require_approval,
        "missed": schedule.missed_run,
        "period": schedule.period,
        "next": _next(schedule, now) if schedule.enabled else [],
    }


@schedules_app.command("add")
@friendly
def schedules_add(
    name: str = typer.Argument(..., help="A short name, e.g. weekly-berlin."),
    cron: str = typer.Option(
        ..., help='Five-field cron in the zone\'s local time, e.g. "0 9 * * MON".'
    ),
    tz: str = typer.Option(..., help="IANA time zone, e.g. Europe/Berlin."),
    require_approval: bool = typer.Option(
        False, "--require-approval", help="Prepare each edition as a draft an editor approves."
    ),
    missed: MissedRunPolicy = typer.Option(
        MissedRunPolicy.RUN_ONCE,
        help="If the scheduler was down at the fire time: run-once fires on start-up (still "
        "in that week), skip does not.",
    ),
) -> None:
    """Add an enabled schedule. A bad cron or zone is refused now, not at fire time."""
    with opened() as (_, engine), session_scope(engine) as session:
        now = utcnow()
        schedule = admin.add(
            session,
            name=name,
            cron=cron,
            tz=tz,
            require_approval=require_approval,
            missed=missed,
            now=now,
        )
        upcoming = _next(schedule, now)
    out.print(f"schedule {name!r} added: {schedule.cron} in {schedule.timezone}")
    for fire in upcoming:
        out.print(f"  next: {fire['local']}  ({fire['utc']})")


def _short(fire: dict[str, str]) -> str:
    local = datetime.fromisoformat(fire["local"])
    utc = datetime.fromisoformat(fire["utc"])
    return f"{local:%a %d %b %Y %H:%M} local ({local:%z}) = {utc:%H:%M} UTC"


@schedules_app.command("list")
@friendly
def schedules_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every schedule, with its next three fire times in local time and UTC."""
    now = utcnow()
    with opened() as (_, engine), session_scope(engine) as session:
        rows = [_json(schedule, now) for schedule in admin.all_schedules(session)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no schedules yet: `newsletter schedules add NAME --cron ... --tz ...`")
    for row in rows:
        state = "enabled" if row["enabled"] else "paused"
        approval = "approval required" if row["require_approval"] else "no approval"
        out.print(
            f"[bold]{row['name']}[/bold]  {row['cron']}  {row['timezone']}  {state}  "
            f"{approval}  missed: {row['missed']}"
        )
        for fire in row["next"]:
            out.print(f"  next: {_short(fire)}")


@schedules_app.command("show")
@friendly
def schedules_show(
    name: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One schedule: settings, next fire times and its recent fires with their outcomes."""
    now = utcnow()
    with opened() as (_, engine), session_scope(engine) as session:
        schedule = admin.named(session, name)
        assert schedule.id is not None
        data = _json(schedule, now)
        data["fires"] = [
            {
                "period": fire.period_key,
                "fire_at": fire.fire_at.isoformat(),
                "outcome": fire.outcome,
                "detail": fire.detail,
                "edition": fire.edition_id,
            }
            for fire in fires.recent(session, schedule.id)
        ]
    if as_json:
        print_json(data)
        return
    state = "enabled" if data["enabled"] else "paused"
    out.print(f"{name}: {data['cron']} in {data['timezone']} · {state} · missed: {data['missed']}")
    for fire in data["next"]:
        out.print(f"  next: {fire['local']}  ({fire['utc']})")
    for fire in data["fires"]:
        out.print(f"  {fire['period']}: {fire['outcome']} {fire['detail']}".rstrip())


def _toggle(name: str, *, enabled: bool) -> None:
    with opened() as (_, engine), session_scope(engine) as session:
        admin.set_enabled(session, name, enabled=enabled)
    out.print(f"schedule {name!r} {'resumed' if enabled else 'paused'}")


@schedules_app.command("pause")
@friendly
def schedules_pause(name: str = typer.Argument(...)) -> None:
    """Stop firing (an edition already sending is not touched: `editions pause` does that)."""
    _toggle(name, enabled=False)


@schedules_app.command("resume")
@friendly
def schedules_resume(name: str = typer.Argument(...)) -> None:
    """Fire again. If this week's fire time passed while paused, the missed-run policy decides
    (run-once fires at once, skip waits for next week)."""
    _toggle(name, enabled=True)


@schedules_app.command("remove")
@friendly
def schedules_remove(name: str = typer.Argument(...)) -> None:
    """Delete a schedule that never made an edition (pause one that did)."""
    with opened() as (_, engine), session_scope(engine) as session:
        admin.remove(session, name)
    out.print(f"schedule {name!r} removed")


@schedules_app.command("skip")
@friendly
def schedules_skip(
    name: str = typer.Argument(...),
    week: str = typer.Option(..., help="The ISO week not to send, e.g. 2026-W48."),
) -> None:
    """Do not fire for one week (before it fired)."""
    with opened() as (_, engine), session_scope(engine) as session:
        key = admin.skip(session, name, week)
    out.print(f"schedule {name!r} will not fire for {key}")


@schedules_app.command("trigger")
@friendly
def schedules_trigger(name: str = typer.Argument(...)) -> None:
    """Fire now for the current week (even a skipped one). Sends at most once per week."""
    with opened() as (settings, engine):
        with session_scope(engine) as session:
            schedule = admin.named(session, name)
            assert schedule.id is not None
            schedule_id = schedule.id
            period_key = firing.trigger(session, schedule, utcnow())
        if not runner.in_process():
            from worker.actors import prepare_edition

            prepare_edition.send(schedule_id, period_key)
            out.print(f"schedule {name!r} fired for {period_key}: queued for the workers")
            return
        edition_id = weekly.prepare_period(engine, settings, schedule_id, period_key)
        with session_scope(engine) as session:
            fire = fires.find(session, schedule_id, period_key)
            outcome = f"{fire.outcome} {fire.detail}".strip() if fire else "?"
        out.print(f"schedule {name!r} fired for {period_key}: {outcome}")
        if edition_id is not None:
            carry_on(settings, engine, edition_id)


@schedules_app.command("status")
@friendly
def schedules_status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Scheduler processes (heartbeat, leader) and each schedule's last fire and outcome."""
    now = utcnow()
    with opened() as (_, engine), session_scope(engine) as session:
        beats: list[dict[str, Any]] = [
            {
                "instance": beat.instance,
                "seen_at": beat.seen_at.isoformat(),
                "seen_s_ago": round((now - beat.seen_at).total_seconds()),
                "leader": beat.leader,
            }
            for beat in admin.beats(session)
        ]
        last = []
        for schedule in admin.all_schedules(session):
            assert schedule.id is not None
            recent = fires.recent(session, schedule.id, limit=1)
            last.append(
                {
                    "schedule": schedule.name,
                    "enabled": schedule.enabled,
                    "last_period": recent[0].period_key if recent else None,
                    "last_fire_at": recent[0].fire_at.isoformat() if recent else None,
                    "last_outcome": recent[0].outcome if recent else None,
                    "detail": recent[0].detail if recent else "",
                }
            )
    if as_json:
        print_json({"schedulers": beats, "schedules": last})
        return
    alive = [b for b in beats if b["seen_s_ago"] <= BEAT_STALE_S]
    if not alive:
        out.print(
            "[yellow]no scheduler seen in the last 2 minutes[/yellow] (run `python -m schedules`)"
        )
    for beat in beats:
        role = "leader" if beat["leader"] else "standby"
        out.print(f"scheduler {beat['instance']}: {role}, seen {beat['seen_s_ago']} s ago")
    for row in last:
        if row["last_period"] is None:
            out.print(f"{row['schedule']}: never fired")
        else:
            out.print(
                f"{row['schedule']}: last fired {row['last_fire_at']} for {row['last_period']}: "
                f"{row['last_outcome']} {row['detail']}".rstrip()
            )
