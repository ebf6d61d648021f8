"""`python -m schedules`: the scheduler process of the Procfile.

It fires each enabled schedule once per period at its cron time in its time zone, and only
enqueues `prepare_edition`; the worker processes render and send. Without REDIS_URL there is no
queue to hand work to, so the scheduler prepares and sends the edition in-process.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from schedules import firing
from schedules.leader import Leadership, RedisLeadership, Solo
from schedules.process import Clock, Scheduler
from worker import logs, runner, runtime, weekly
from worker.config import get_settings, setting_problems
from worker.errors import ConfigError, InputError, SchemaOutOfDateError
from worker.models import utcnow
from worker.watchdog import Watch, rewatch

DEFAULT_TICK_S = 15.0


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m schedules",
        description="Fire the enabled schedules (see `newsletter schedules --help`).",
    )
    parser.add_argument(
        "--tick-s",
        type=float,
        default=DEFAULT_TICK_S,
        help=f"seconds between checks (default {DEFAULT_TICK_S:g})",
    )
    parser.add_argument("--once", action="store_true", help="check once and exit")
    parser.add_argument(
        "--solo",
        action="store_true",
        help="act on every tick without the Redis leader lease, as if no other scheduler ran; "
        "two such schedulers race, and the database still lets each week fire once",
    )
    parser.add_argument(
        "--clock-file",
        type=Path,
        help="read the current time (ISO 8601, UTC) from this file at every tick instead of "
        "the system clock: for rehearsing a schedule, and for tests",
    )
    return parser.parse_args(argv)


def _clock(path: Path | None) -> Clock:
    if path is None:
        return utcnow

    def from_file() -> datetime:
        return datetime.fromisoformat(path.read_text().strip()).astimezone(UTC)

    return from_file


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    settings = get_settings()
    logs.configure(settings)
    current = runtime.current()
    instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    leadership: Leadership
    lease_s = max(3 * args.tick_s, 5.0)
    # A fire noticed within a tick, or after a standby took over the lead, is on time.
    on_time = max(firing.ON_TIME, timedelta(seconds=lease_s + 2 * args.tick_s))
    watch: Callable[[], object] | None = None
    if settings.redis_url:
        from worker.actors import prepare_edition, reconcile

        def enqueue(schedule_id: int, period_key: str) -> None:
            prepare_edition.send(schedule_id, period_key)

        client = redis.Redis.from_url(settings.redis_url)
        leadership = (
            Solo() if args.solo else RedisLeadership(client, token=instance, lease_s=lease_s)
        )
        # Sends whose watching messages Redis lost (a restart without persistence) get new ones.
        sends = Watch(client, lease_s=settings.send_lease_s)

        def watch() -> list[int]:
            return rewatch(
                current.engine, sends, lambda edition_id, chain: reconcile.send(edition_id, chain)
            )

    else:

        def enqueue(schedule_id: int, period_key: str) -> None:
            edition_id = weekly.prepare_period(current.engine, settings, schedule_id, period_key)
            if edition_id is not None:
                runner.send_in_process(
                    current.engine, edition_id, lease_s=settings.send_lease_s, progress=None
                )

        leadership = Solo()
    scheduler = Scheduler(
        current.engine,
        enqueue=enqueue,
        leadership=leadership,
        clock=_clock(args.clock_file),
        instance=instance,
        tick_s=args.tick_s,
        on_time=on_time,
        watch=watch,
    )
    if args.once:
        scheduler.run_once()
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logging.getLogger("schedules").info("scheduler %s started", instance)
    scheduler.run(stop)
    logging.getLogger("schedules").info("scheduler %s stopped", instance)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (
        ConfigError,
        InputError,
        SchemaOutOfDateError,
        OperationalError,
        redis.RedisError,
    ) as error:
        sys.stderr.write(f"scheduler: {str(error).splitlines()[0]}\n")
        sys.exit(1)
    except ValidationError as error:  # a setting that does not validate: one line each
        sys.stderr.writelines(f"scheduler: {line}\n" for line in setting_problems(error))
        sys.exit(1)
