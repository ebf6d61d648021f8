"""The business figures /metrics reports, read at scrape time from PostgreSQL and Redis.

Web, worker and scheduler processes run on several hosts, so nothing here is counted in process
memory: every web process reads the same shared state and reports the same figures. Each family
is one aggregate query over an indexed column (scrape cost: benchmarks/metrics_bench.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine, String, case, func, literal, or_, select, text
from sqlalchemy.engine import Connection
from sqlmodel import col

from worker.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    Event,
    EventKind,
    FireOutcome,
    Schedule,
    ScheduleFire,
    SchedulerBeat,
    utcnow,
)

log = logging.getLogger(__name__)

SEND_RATE_WINDOW_S = 60
# A scrape that cannot finish in this long is abandoned by PostgreSQL rather than left to pile
# up behind the next one (Prometheus scrapes every 15-60 s and times out after 10 s by default).
STATEMENT_TIMEOUT_MS = 5_000
# Must match worker.broker's RedisBroker namespace and worker.actors.QUEUE (tests check both);
# not imported from there, since those modules load dramatiq and pick a broker at import.
QUEUE_NAMESPACE = "verdicts"
QUEUES = ("verdicts",)

# Delivery.last_error, as worker.sending and the transports write it, mapped to a bounded set of
# reasons (first match wins), so label values never grow with the provider's message texts.
FAILED_REASONS = (
    ("gave up after %", "retries_exhausted"),  # transient errors until MAX_ATTEMPTS
    ("cannot build message%", "invalid_message"),
    ("SES MessageRejected%", "message_rejected"),
    ("message refused%", "message_rejected"),  # SMTP, at DATA
    ("recipient % refused%", "recipient_refused"),  # SMTP, at RCPT
    ("SES %", "provider_refused"),  # any other 4xx SES gives for one message
)
UNCERTAIN_REASONS = (
    ("SES did not answer%", "no_answer"),  # read timeout: SES may have taken it
    ("interrupted mid-send", "interrupted"),
    ("lease expired while sending", "lease_expired"),  # the worker died holding it
)
OTHER_REASON = "other"
# A fire row is also written for periods an operator skipped (dated at the period's start, maybe
# in the future) and for periods missed while no scheduler ran: neither is a fire.
NOT_FIRED = (FireOutcome.SKIPPED, FireOutcome.MISSED)


@dataclass(frozen=True)
class Figures:
    """One scrape's reading of the database."""

    deliveries: dict[DeliveryState, int]
    failed_by_reason: dict[str, int]
    uncertain_by_reason: dict[str, int]
    sent_in_window: int
    editions: dict[EditionStatus, int]
    ses_events: dict[str, int]
    last_fires: dict[str, datetime]  # schedule name → its latest fire time
    heartbeat_at: datetime | None  # the freshest beat of any scheduler process

    @property
    def send_rate_per_s(self) -> float:
        return self.sent_in_window / SEND_RATE_WINDOW_S


def read_figures(connection: Connection, *, now: datetime) -> Figures:
    """Every database figure, each from one aggregate query."""
    return Figures(
        deliveries=_deliveries_by_state(connection),
        failed_by_reason=_by_reason(connection, DeliveryState.FAILED, FAILED_REASONS),
        uncertain_by_reason=_by_reason(connection, DeliveryState.UNCERTAIN, UNCERTAIN_REASONS),
        sent_in_window=_sent_since(connection, now - timedelta(seconds=SEND_RATE_WINDOW_S)),
        editions=_editions_by_status(connection),
        ses_events=_ses_events_by_kind(connection),
        last_fires=_last_fires(connection),
        heartbeat_at=connection.execute(select(func.max(col(SchedulerBeat.seen_at)))).scalar(),
    )


def _deliveries_by_state(connection: Connection) -> dict[DeliveryState, int]:
    rows = connection.execute(
        select(col(Delivery.state), func.count()).group_by(col(Delivery.state))
    )
    found = {DeliveryState(state): count for state, count in rows}
    return {state: found.get(state, 0) for state in DeliveryState}


def _by_reason(
    connection: Connection, state: DeliveryState, patterns: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Deliveries in `state` counted per reason, classified by the database (no rows fetched)."""
    error = col(Delivery.last_error)
    reason = case(
        *((error.like(pattern), literal(name, String)) for pattern, name in patterns),
        else_=literal(OTHER_REASON, String),
    ).label("reason")
    rows = connection.execute(
        select(reason, func.count()).where(col(Delivery.state) == state).group_by(reason)
    )
    found = {name: count for name, count in rows}
    return {name: found.get(name, 0) for name in _reason_names(patterns)}


def _reason_names(patterns: Sequence[tuple[str, str]]) -> list[str]:
    return list(dict.fromkeys([name for _, name in patterns] + [OTHER_REASON]))


def _sent_since(connection: Connection, since: datetime) -> int:
    """Messages sent since `since` by editions sending then (sending, paused, or finished since).

    Looking only at those editions' deliveries (by the edition_id index) costs nothing between
    sends and one edition's rows during one, however long the history; sent_at has no index.
    It also leaves out uncertain deliveries an operator later marks sent: no send, no rate.
    """
    live = select(col(Edition.id)).where(
        or_(
            col(Edition.status).in_([EditionStatus.SENDING, EditionStatus.PAUSED]),
            col(Edition.finished_at) >= since,
        )
    )
    statement = select(func.count()).where(
        col(Delivery.edition_id).in_(live), col(Delivery.sent_at) >= since
    )
    return int(connection.execute(statement).scalar_one())


def _editions_by_status(connection: Connection) -> dict[EditionStatus, int]:
    rows = connection.execute(
        select(col(Edition.status), func.count()).group_by(col(Edition.status))
    )
    found = {EditionStatus(status): count for status, count in rows}
    return {status: found.get(status, 0) for status in EditionStatus}


def _ses_events_by_kind(connection: Connection) -> dict[str, int]:
    """Events that came in as SES notifications through SNS (the only ones with a provider id)."""
    rows = connection.execute(
        select(col(Event.kind), func.count())
        .where(col(Event.provider_event_id).is_not(None))
        .group_by(col(Event.kind))
    )
    known = {kind.value for kind in EventKind}
    found: dict[str, int] = {}
    for kind, count in rows:
        label = kind if kind in known else OTHER_REASON
        found[label] = found.get(label, 0) + count
    return found


def _last_fires(connection: Connection) -> dict[str, datetime]:
    # max() keeps the column's type, so the value comes back as an aware UTC datetime.
    rows = connection.execute(
        select(col(Schedule.name), func.max(col(ScheduleFire.fire_at)))
        .join(Schedule, col(Schedule.id) == col(ScheduleFire.schedule_id))
        .where(col(ScheduleFire.outcome).not_in(NOT_FIRED))
        .group_by(col(Schedule.name))
    )
    return {name: fired_at for name, fired_at in rows}


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    state: str  # ready | unacked | delayed | dead
    messages: int


def queue_depths(
    client: redis.Redis, *, namespace: str = QUEUE_NAMESPACE, queues: Sequence[str] = QUEUES
) -> list[QueueDepth]:
    """Messages in dramatiq's Redis queues, read from RedisBroker's own keys.

    For each queue `q` under the namespace `ns` (see dramatiq/brokers/redis/dispatch.lua):
    `ns:q` lists the ids waiting to be fetched; `ns:q.msgs` holds every message not yet acked,
    so it also counts those a worker fetched (running, or prefetched); `ns:q.DQ.msgs` holds the
    delayed ones (retries with backoff, the send watchdog); `ns:q.XQ` the dead-lettered ones.
    """
    pipe = client.pipeline(transaction=True)  # one consistent reading of the four keys
    for queue in queues:
        key = f"{namespace}:{queue}"
        pipe.llen(key)
        pipe.hlen(f"{key}.msgs")
        pipe.hlen(f"{key}.DQ.msgs")
        pipe.zcard(f"{key}.XQ")
    values = [int(value) for value in pipe.execute()]
    depths = []
    for index, queue in enumerate(queues):
        ready, unacked_or_ready, delayed, dead = values[4 * index : 4 * index + 4]
        depths += [
            QueueDepth(queue, "ready", ready),
            QueueDepth(queue, "unacked", max(unacked_or_ready - ready, 0)),
            QueueDepth(queue, "delayed", delayed),
            QueueDepth(queue, "dead", dead),
        ]
    return depths


class SharedStateCollector(Collector):
    """A prometheus_client collector: reads the figures when a scrape asks, keeps nothing.

    A source that fails (database or Redis down) is left out of the scrape and reported as
    `verdicts_metrics_source_up{source=…} 0`, so the rest still arrives and an alert can say which.
    """

    def __init__(
        self,
        engine: Engine,
        redis_client: redis.Redis | None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.redis_client = redis_client
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "verdicts_metrics_source_up",
            "Whether this scrape could read the source (1) or not (0).",
            labels=["source"],
        )
        now = self.clock()
        try:
            figures = self._read_database(now)
        except Exception:  # any failure of the source: the scrape goes on without it
            log.warning("metrics: could not read the database", exc_info=True)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            yield from database_metrics(figures, now=now)
        if self.redis_client is not None:
            try:
                depths = queue_depths(self.redis_client)
            except redis.RedisError:
                log.warning("metrics: could not read the queues in Redis", exc_info=True)
                up.add_metric(["redis"], 0)
            else:
                up.add_metric(["redis"], 1)
                yield queue_metric(depths)
        yield up

    def _read_database(self, now: datetime) -> Figures:
        with self.engine.connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            return read_figures(connection, now=now)


def database_metrics(figures: Figures, *, now: datetime) -> Iterator[Metric]:
    deliveries = GaugeMetricFamily(
        "verdicts_deliveries",
        "Deliveries (one per edition and subscriber) in each state.",
        labels=["state"],
    )
    for state, count in figures.deliveries.items():
        deliveries.add_metric([state.value], count)
    yield deliveries
    yield CounterMetricFamily(
        "verdicts_messages_sent",
        "Messages the provider accepted, over all editions (deliveries in state sent).",
        value=figures.deliveries[DeliveryState.SENT],
    )
    failed = CounterMetricFamily(
        "verdicts_messages_failed",
        "Messages given up for good (deliveries in state failed), by classified reason.",
        labels=["reason"],
    )
    for reason, count in figures.failed_by_reason.items():
        failed.add_metric([reason], count)
    yield failed
    # A gauge, not a counter: uncertain deliveries wait for the operator (or an SES event) and
    # then leave the state, as sent or to be resent.
    uncertain = GaugeMetricFamily(
        "verdicts_deliveries_uncertain",
        "Deliveries that may or may not have left (state uncertain), by classified reason.",
        labels=["reason"],
    )
    for reason, count in figures.uncertain_by_reason.items():
        uncertain.add_metric([reason], count)
    yield uncertain
    yield GaugeMetricFamily(
        "verdicts_send_rate_messages_per_second",
        f"Messages sent per second, averaged over the last {SEND_RATE_WINDOW_S} s (from sent_at).",
        value=figures.send_rate_per_s,
    )
    editions = GaugeMetricFamily("verdicts_editions", "Editions in each status.", labels=["status"])
    for status, count in figures.editions.items():
        editions.add_metric([status.value], count)
    yield editions
    events = CounterMetricFamily(
        "verdicts_ses_events",
        "SES notifications recorded (via the SNS webhook), by kind, repeats not counted.",
        labels=["kind"],
    )
    for kind, count in sorted(figures.ses_events.items()):
        events.add_metric([kind], count)
    yield events
    fires = GaugeMetricFamily(
        "verdicts_schedule_last_fire_timestamp_seconds",
        "When each schedule last fired (Unix time of the fire, skipped and missed ones aside).",
        labels=["schedule"],
    )
    for name, fired_at in sorted(figures.last_fires.items()):
        fires.add_metric([name], fired_at.timestamp())
    yield fires
    if figures.heartbeat_at is not None:
        yield GaugeMetricFamily(
            "verdicts_scheduler_heartbeat_age_seconds",
            "Seconds since any scheduler process last beat (absent: none ever ran).",
            value=max((now - figures.heartbeat_at).total_seconds(), 0.0),
        )


def queue_metric(depths: Sequence[QueueDepth]) -> Metric:
    metric = GaugeMetricFamily(
        "verdicts_queue_messages",
        "Messages in the dramatiq queues in Redis: ready to fetch, unacked (fetched by a worker: "
        "running or prefetched), delayed (retries, the send watchdog), dead (dead-lettered).",
        labels=["queue", "state"],
    )
    for depth in depths:
        metric.add_metric([depth.queue, depth.state], depth.messages)
    return metric
