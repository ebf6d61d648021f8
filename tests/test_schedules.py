"""Schedules: fire times in the schedule's zone across DST, and one fire per period whatever
the schedulers do (repeat, race, stop for days). Time is driven by hand; nothing sleeps."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import Engine
from sqlmodel import select

from schedules import admin, firing, timing
from schedules.leader import RedisLeadership, Solo
from schedules.process import Scheduler
from tests.helpers import add_subscribers, example_payload, store_payload
from worker import db, runner, runtime, weekly
from worker.config import Settings
from worker.errors import InputError
from worker.models import (
    Edition,
    EditionStatus,
    FireOutcome,
    MissedRunPolicy,
    Schedule,
    ScheduleFire,
    SchedulerBeat,
)
from worker.ratelimit import Unlimited
from worker.transports.memory import MemoryTransport

BERLIN = "Europe/Berlin"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- fire times -------------------------------------------------------------------------------


def test_nine_local_stays_nine_local_across_both_dst_changes() -> None:
    spring = timing.fires_after("0 9 * * MON", BERLIN, at("2026-03-20T00:00Z"), 2)
    autumn = timing.fires_after("0 9 * * MON", BERLIN, at("2026-10-20T00:00Z"), 2)
    assert spring == [at("2026-03-23T08:00Z"), at("2026-03-30T07:00Z")]
    assert autumn == [at("2026-10-26T08:00Z"), at("2026-11-02T08:00Z")]


def test_a_time_in_the_spring_gap_fires_once_after_the_gap() -> None:
    # 2026-03-29 02:00 → 03:00 in Berlin: 02:30 never shows on the clock.
    fires = timing.fires_after("30 2 * * *", BERLIN, at("2026-03-28T12:00Z"), 2)
    assert fires == [at("2026-03-29T01:30Z"), at("2026-03-30T00:30Z")]
    assert fires[0].astimezone(timing.check_zone(BERLIN)).strftime("%H:%M %Z") == "03:30 CEST"


def test_a_time_in_the_repeated_autumn_hour_fires_once_at_its_first_occurrence() -> None:
    # 2026-10-25 03:00 → 02:00 in Berlin: 02:30 shows twice.
    fires = timing.fires_after("30 2 * * *", BERLIN, at("2026-10-24T12:00Z"), 2)
    assert fires == [at("2026-10-25T00:30Z"), at("2026-10-26T01:30Z")]
    # Asked from inside the repeated hour, the first 02:30 is past and is not fired again.
    assert timing.fires_after("30 2 * * *", BERLIN, at("2026-10-25T01:15Z"), 1) == [
        at("2026-10-26T01:30Z")
    ]


def test_last_fire_is_the_latest_fire_at_or_before_now() -> None:
    assert timing.last_fire("0 9 * * MON", BERLIN, at("2026-03-30T07:00Z")) == at(
        "2026-03-30T07:00Z"
    )
    assert timing.last_fire("0 9 * * MON", BERLIN, at("2026-03-30T06:59Z")) == at(
        "2026-03-23T08:00Z"
    )


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("61 * * * *", "not a valid cron"),
        ("0 25 * * *", "not a valid cron"),
        ("0 9 * * FUNDAY", "not a valid cron"),
        ("0 9 * *", "five fields"),
        ("0 9 * * MON 2026", "five fields"),
        ("", "five fields"),
    ],
)
def test_bad_cron_is_refused_naming_the_field(cron: str, says: str) -> None:
    with pytest.raises(InputError, match=f"^cron .*{says}"):
        timing.check_cron(cron)


def test_bad_time_zone_is_refused_naming_the_field() -> None:
    with pytest.raises(InputError, match=r"^tz 'Mars/Base' is not a known IANA time zone"):
        timing.check_zone("Mars/Base")


# --- firing -----------------------------------------------------------------------------------


class Queue:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    def __call__(self, schedule_id: int, period_key: str) -> None:
        self.sent.append((schedule_id, period_key))


def add_schedule(
    engine: Engine,
    *,
    created: str = "2026-03-01T00:00Z",
    missed: MissedRunPolicy = MissedRunPolicy.RUN_ONCE,
    approval: bool = False,
    cron: str = "0 9 * * MON",
) -> int:
    with db.session_scope(engine) as session:
        schedule = admin.add(
            session,
            name="monday",
            cron=cron,
            tz=BERLIN,
            require_approval=approval,
            missed=missed,
            now=at(created),
        )
        session.flush()
        assert schedule.id is not None
        return schedule.id


def fire_rows(engine: Engine) -> list[tuple[str, FireOutcome]]:
    with db.session_scope(engine) as session:
        rows = session.exec(select(ScheduleFire).order_by(ScheduleFire.period_key))
        return [(row.period_key, row.outcome) for row in rows]


def test_a_fire_time_fires_once_however_often_and_by_however_many_schedulers(
    engine: Engine,
) -> None:
    schedule_id = add_schedule(engine)
    queue = Queue()
    before = firing.tick(engine, at("2026-03-23T07:59Z"), queue)
    for minute in range(0, 6):  # two schedulers ticking side by side for a few minutes
        now = at("2026-03-23T08:00Z") + timedelta(minutes=minute)
        firing.tick(engine, now, queue)
        firing.tick(engine, now, queue)
    assert before.fired == []
    assert queue.sent == [(schedule_id, "2026-W13")]
    assert fire_rows(engine) == [("2026-W13", FireOutcome.ENQUEUED)]


def test_a_scheduler_down_over_the_fire_time_fires_once_on_start_up_with_run_once(
    engine: Engine,
) -> None:
    add_schedule(engine, missed=MissedRunPolicy.RUN_ONCE)
    queue = Queue()
    report = firing.tick(engine, at("2026-03-25T12:00Z"), queue)  # Wednesday, same week
    firing.tick(engine, at("2026-03-25T12:01Z"), queue)
    assert [(d.period_key, d.late) for d in report.fired] == [("2026-W13", True)]
    assert len(queue.sent) == 1


def test_a_scheduler_down_over_the_fire_time_does_not_fire_with_skip(engine: Engine) -> None:
    add_schedule(engine, missed=MissedRunPolicy.SKIP)
    queue = Queue()
    report = firing.tick(engine, at("2026-03-25T12:00Z"), queue)
    assert queue.sent == [] and [d.period_key for d in report.missed] == ["2026-W13"]
    assert fire_rows(engine) == [("2026-W13", FireOutcome.MISSED)]
    firing.tick(engine, at("2026-03-30T07:00Z"), queue)  # next week's fire is on time
    assert [key for _, key in queue.sent] == ["2026-W14"]


def test_weeks_of_downtime_fire_only_the_current_week_never_a_backlog(engine: Engine) -> None:
    add_schedule(engine, created="2026-01-01T00:00Z")
    queue = Queue()
    firing.tick(engine, at("2026-03-25T12:00Z"), queue)
    assert [key for _, key in queue.sent] == ["2026-W13"]


def test_a_week_whose_end_has_passed_is_never_fired_late(engine: Engine) -> None:
    add_schedule(engine, cron="30 23 * * SUN")
    queue = Queue()
    firing.tick(engine, at("2026-03-29T22:10Z"), queue)  # Monday 00:10 Berlin: W13 is over
    assert queue.sent == []


def test_a_schedule_added_after_this_weeks_fire_time_starts_next_week(engine: Engine) -> None:
    add_schedule(engine, created="2026-03-24T10:00Z")
    queue = Queue()
    firing.tick(engine, at("2026-03-24T10:01Z"), queue)
    firing.tick(engine, at("2026-03-30T07:00Z"), queue)
    assert [key for _, key in queue.sent] == ["2026-W14"]


def test_a_skipped_week_does_not_fire_and_the_next_one_does(engine: Engine) -> None:
    add_schedule(engine)
    with db.session_scope(engine) as session:
        assert admin.skip(session, "monday", "2026-W13") == "2026-W13"
    queue = Queue()
    firing.tick(engine, at("2026-03-23T08:00Z"), queue)
    firing.tick(engine, at("2026-03-30T07:00Z"), queue)
    assert [key for _, key in queue.sent] == ["2026-W14"]


def test_a_paused_schedule_does_not_fire(engine: Engine) -> None:
    add_schedule(engine)
    with db.session_scope(engine) as session:
        admin.set_enabled(session, "monday", enabled=False)
    queue = Queue()
    firing.tick(engine, at("2026-03-23T08:00Z"), queue)
    assert queue.sent == []


def test_a_fire_whose_message_was_lost_is_enqueued_again_once_stale(engine: Engine) -> None:
    schedule_id = add_schedule(engine)
    lost = Queue()  # a scheduler that claimed the fire and died before enqueueing
    firing.tick(engine, at("2026-03-23T08:00Z"), lost)
    again = Queue()
    firing.tick(engine, at("2026-03-23T08:05Z"), again)
    assert again.sent == []
    report = firing.tick(engine, at("2026-03-23T08:11Z"), again)
    assert again.sent == [(schedule_id, "2026-W13")] and len(report.retried) == 1
    firing.tick(engine, at("2026-03-23T08:12Z"), again)
    assert len(again.sent) == 1


def in_process(engine: Engine, settings: Settings, transport: MemoryTransport) -> firing.Enqueue:
    """What the scheduler does without Redis: prepare, then send in this process."""
    runtime.install(runtime.Runtime(settings, engine, transport, Unlimited()))

    def enqueue(schedule_id: int, period_key: str) -> None:
        edition_id = weekly.prepare_period(engine, settings, schedule_id, period_key)
        if edition_id is not None:
            runner.send_in_process(engine, edition_id, lease_s=60, progress=None)

    return enqueue


def test_a_fire_makes_the_weeks_edition_and_sends_it_once(
    engine: Engine, settings: Settings
) -> None:
    store_payload(engine, example_payload())  # published Friday 2026-11-20 14:00Z, 2026-W47
    add_subscribers(engine, "ada@example.com", "grace@example.com")
    add_schedule(engine, created="2026-11-01T00:00Z", cron="0 16 * * FRI")  # 15:00Z
    transport = MemoryTransport()
    enqueue = in_process(engine, settings, transport)
    firing.tick(engine, at("2026-11-20T14:59Z"), enqueue)
    assert transport.sent == []
    for minute in range(5):
        firing.tick(engine, at("2026-11-20T15:00Z") + timedelta(minutes=minute), enqueue)
    assert sorted(m.to_address for m in transport.sent) == ["ada@example.com", "grace@example.com"]
    assert fire_rows(engine) == [("2026-W47", FireOutcome.SENDING)]


def test_a_week_without_a_comparison_sends_nothing_and_says_so(
    engine: Engine, settings: Settings
) -> None:
    add_subscribers(engine, "ada@example.com")
    add_schedule(engine, created="2026-11-01T00:00Z")
    transport = MemoryTransport()
    firing.tick(engine, at("2026-11-30T08:00Z"), in_process(engine, settings, transport))
    assert transport.sent == []
    assert fire_rows(engine) == [("2026-W49", FireOutcome.NO_COMPARISON)]
    with db.session_scope(engine) as session:
        assert list(session.exec(select(Edition))) == []


def test_with_approval_the_edition_waits_as_a_draft(engine: Engine, settings: Settings) -> None:
    store_payload(engine, example_payload())
    add_subscribers(engine, "ada@example.com")
    add_schedule(engine, created="2026-11-01T00:00Z", approval=True, cron="0 16 * * FRI")
    transport = MemoryTransport()
    firing.tick(engine, at("2026-11-20T15:00Z"), in_process(engine, settings, transport))
    assert transport.sent == []
    assert fire_rows(engine) == [("2026-W47", FireOutcome.AWAITING_APPROVAL)]
    with db.session_scope(engine) as session:
        (edition,) = session.exec(select(Edition))
        assert edition.status == EditionStatus.DRAFT


# --- schedules as operators manage them -------------------------------------------------------


def test_a_schedule_name_is_unique(engine: Engine) -> None:
    add_schedule(engine)
    with pytest.raises(InputError, match=r"^name 'monday': a schedule of that name exists"):
        add_schedule(engine)


def test_a_week_that_already_fired_cannot_be_skipped(engine: Engine) -> None:
    add_schedule(engine)
    firing.tick(engine, at("2026-03-23T08:00Z"), Queue())
    with db.session_scope(engine) as session, pytest.raises(InputError, match="already fired"):
        admin.skip(session, "monday", "2026-W13")


def test_trigger_fires_the_current_week_even_a_skipped_one(engine: Engine) -> None:
    add_schedule(engine)
    with db.session_scope(engine) as session:
        admin.skip(session, "monday", "2026-W13")
        schedule = admin.named(session, "monday")
        assert firing.trigger(session, schedule, at("2026-03-25T10:00Z")) == "2026-W13"
    assert fire_rows(engine) == [("2026-W13", FireOutcome.ENQUEUED)]


# --- the scheduler loop and its leadership ----------------------------------------------------


def test_only_one_of_two_redis_leaderships_leads_until_it_lets_go(
    redis_client: redis.Redis,
) -> None:
    key = f"test:leader:{uuid.uuid4().hex}"  # never the live schedulers' key
    first = RedisLeadership(redis_client, token="a", lease_s=5, key=key)
    second = RedisLeadership(redis_client, token="b", lease_s=5, key=key)
    try:
        assert first.hold() and not second.hold()
        assert first.hold()  # renewing keeps the lead
        first.release()
        assert second.hold() and not first.hold()
    finally:
        redis_client.delete(key)


def test_a_lead_that_is_not_renewed_passes_to_another(redis_client: redis.Redis) -> None:
    key = f"test:leader:{uuid.uuid4().hex}"
    dead = RedisLeadership(redis_client, token="dead", lease_s=0.2, key=key)
    alive = RedisLeadership(redis_client, token="alive", lease_s=5, key=key)
    try:
        assert dead.hold() and not alive.hold()
        time.sleep(0.3)  # the dead one's lease runs out
        assert alive.hold() and not dead.hold()
    finally:
        redis_client.delete(key)


def test_the_scheduler_beats_and_fires_when_it_leads(engine: Engine) -> None:
    add_schedule(engine)
    queue = Queue()
    scheduler = Scheduler(
        engine,
        enqueue=queue,
        leadership=Solo(),
        clock=lambda: at("2026-03-23T08:00Z"),
        instance="test-1",
        tick_s=1,
    )
    report = scheduler.run_once()
    assert report is not None and len(report.fired) == 1 and len(queue.sent) == 1
    with db.session_scope(engine) as session:
        (beat,) = session.exec(select(SchedulerBeat))
        assert beat.instance == "test-1" and beat.leader


def test_a_late_fire_whose_message_was_lost_is_retried_even_with_the_skip_policy(
    engine: Engine,
) -> None:
    add_schedule(engine, missed=MissedRunPolicy.SKIP)
    lost = Queue()  # claimed on time, then the scheduler died before enqueueing
    firing.tick(engine, at("2026-03-23T08:00Z"), lost)
    again = Queue()
    firing.tick(engine, at("2026-03-23T08:30Z"), again)
    assert len(again.sent) == 1
    assert fire_rows(engine) == [("2026-W13", FireOutcome.ENQUEUED)]


@pytest.mark.parametrize("cron", ["0 9 30 2 *", "0 9 31 4 *"])
def test_a_cron_that_never_matches_a_real_date_is_refused(cron: str) -> None:
    with pytest.raises(InputError, match="never matches a real date"):
        timing.check_cron(cron)


def test_one_broken_schedule_does_not_stop_the_others(engine: Engine) -> None:
    schedule_id = add_schedule(engine)
    with db.session_scope(engine) as session:
        session.add(
            Schedule(
                name="broken",
                cron="0 9 30 2 *",
                timezone=BERLIN,
                enabled=True,
                created_at=at("2026-03-01T00:00Z"),
            )
        )
    queue = Queue()
    firing.tick(engine, at("2026-03-23T08:00Z"), queue)
    assert queue.sent == [(schedule_id, "2026-W13")]


@pytest.mark.parametrize("name", ["localtime", "Factory", "Mars/Base", ""])
def test_zones_that_are_not_named_iana_zones_are_refused(name: str) -> None:
    with pytest.raises(InputError, match=r"^tz "):
        timing.check_zone(name)


@pytest.mark.parametrize("week", ["9999-W52", "0001-W01"])
def test_weeks_out_of_range_are_refused(engine: Engine, week: str) -> None:
    add_schedule(engine)
    with db.session_scope(engine) as session, pytest.raises(InputError, match="out of range"):
        admin.skip(session, "monday", week)


def test_a_schedule_that_only_found_no_comparison_can_be_removed(
    engine: Engine, settings: Settings
) -> None:
    add_schedule(engine, created="2026-11-01T00:00Z")
    firing.tick(engine, at("2026-11-30T08:00Z"), in_process(engine, settings, MemoryTransport()))
    with db.session_scope(engine) as session:
        admin.remove(session, "monday")
    with db.session_scope(engine) as session:
        assert admin.all_schedules(session) == []
