"""The scheduler loop: heartbeat, leadership, a tick, a pause; until told to stop.

Schedule changes are read from the database on every tick, so adding, pausing or editing a
schedule needs no restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from schedules import firing
from schedules.leader import Leadership
from worker.db import session_scope, upsert_dialect
from worker.models import SchedulerBeat

log = logging.getLogger("schedules")
Clock = Callable[[], datetime]


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        *,
        enqueue: firing.Enqueue,
        leadership: Leadership,
        clock: Clock,
        instance: str,
        tick_s: float,
        on_time: timedelta = firing.ON_TIME,
        watch: Callable[[], object] | None = None,
    ) -> None:
        self.engine = engine
        self.enqueue = enqueue
        self.leadership = leadership
        self.clock = clock
        self.instance = instance
        self.tick_s = tick_s
        self.on_time = on_time
        self.watch = watch
        self.started_at = clock()
        self.leading = False

    def run_once(self) -> firing.TickReport | None:
        now = self.clock()
        leading = self.leadership.hold()
        if leading != self.leading:
            log.info("scheduler %s %s", self.instance, "leads" if leading else "stands by")
            self.leading = leading
        self._beat(now)
        if not leading:
            return None
        report = firing.tick(self.engine, now, self.enqueue, on_time=self.on_time)
        for fired in report.fired + report.retried:
            log.info(
                "fired %s for %s%s", fired.name, fired.period_key, " (late)" if fired.late else ""
            )
        for missed in report.missed:
            log.info("missed %s for %s (policy: skip)", missed.name, missed.period_key)
        if self.watch is not None:
            self.watch()
        return report

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set (SIGTERM), then hand the lead over at once."""
        try:
            while not stop.is_set():
                try:
                    self.run_once()
                except Exception:  # a database or Redis blip: log it and try again next tick
                    log.exception("scheduler tick failed")
                stop.wait(self.tick_s)
        finally:
            try:
                self.leadership.release()
            except Exception:
                log.exception("could not release the scheduler lead")

    def _beat(self, now: datetime) -> None:
        with session_scope(self.engine) as session:
            insert = upsert_dialect(session)(SchedulerBeat).values(
                instance=self.instance,
                started_at=self.started_at,
                seen_at=now,
                leader=self.leading,
            )
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=["instance"], set_={"seen_at": now, "leader": self.leading}
                )
            )
