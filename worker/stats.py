"""Per-edition statistics: deliveries, bounces, complaints, opens, clicks, links and their
course over time, every figure aggregated in SQL (an edition can have 100,000s of events)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, ColumnElement, cast, extract, false, func, literal, select, true
from sqlmodel import Session, col

from worker.errors import NotFoundError
from worker.models import Delivery, DeliveryState, Edition, Event, EventKind, Subscriber

# ses_events writes a permanent bounce's detail as "permanent bounce (<sub type>): …" and a
# transient one as "transient bounce (…)"; the detail is the only place the type is kept.
PERMANENT_BOUNCE = "permanent bounce%"
MAX_BUCKETS = 500
OUTCOME_COLUMNS = (
    "email",
    "state",
    "sent_at",
    "opened",
    "human_opens",
    "human_clicks",
    "bounced",
    "complained",
    "unsubscribed",
)
OutcomeRow = tuple[str, str, str, str, int, int, str, str, str]


@dataclass(frozen=True)
class DeliveryCounts:
    pending: int
    sending: int
    sent: int
    failed: int
    uncertain: int
    skipped: int


@dataclass(frozen=True)
class Rates:
    """Fractions (0 to 1) of delivered messages; `bounce` is of sent ones. 0 when nothing was."""

    open: float
    click: float
    bounce: float
    complaint: float
    unsubscribe: float


@dataclass(frozen=True)
class LinkStats:
    url: str
    human_clicks: int
    unique_human_clickers: int
    machine_clicks: int


class Bucket(NamedTuple):
    start: datetime  # UTC; the bucket runs to the next one's start
    human: int
    machine: int


@dataclass(frozen=True)
class EditionStats:
    edition_id: int
    period_key: str
    subject: str
    started_at: datetime | None
    deliveries: DeliveryCounts
    sent: int
    delivered: int  # sent, less those that bounced for good
    bounces: int  # readers with any bounce
    hard_bounces: int  # readers with a permanent bounce
    complaints: int
    unsubscribes: int
    human_opens: int
    machine_opens: int
    unique_human_opens: int
    human_clicks: int
    machine_clicks: int
    unique_human_clickers: int
    rates: Rates
    links: tuple[LinkStats, ...]  # most human clicks first
    bucket_s: int  # the width of each time bucket (widened so there are at most MAX_BUCKETS)
    opens_over_time: tuple[Bucket, ...]
    clicks_over_time: tuple[Bucket, ...]


def of_edition(
    session: Session, edition_id: int, *, bucket: timedelta = timedelta(hours=1)
) -> EditionStats:
    """Every figure for one edition; NotFoundError if there is no such edition."""
    period_key, subject, started_at = _edition_or_raise(session, edition_id)
    deliveries = _delivery_counts(session, edition_id)
    events = _event_figures(session, edition_id)
    sent = deliveries.sent
    delivered = max(sent - _hard_bounced_sent(session, edition_id), 0)
    bucket_s, opens, clicks = _series(
        session,
        edition_id,
        started_at=started_at,
        first=events.pop("first_at"),
        last=events.pop("last_at"),
        bucket_s=max(int(bucket.total_seconds()), 1),
    )
    return EditionStats(
        edition_id=edition_id,
        period_key=period_key,
        subject=subject,
        started_at=started_at,
        deliveries=deliveries,
        sent=sent,
        delivered=delivered,
        rates=Rates(
            open=_share(events["unique_human_opens"], delivered),
            click=_share(events["unique_human_clickers"], delivered),
            bounce=_share(events["bounces"], sent),
            complaint=_share(events["complaints"], delivered),
            unsubscribe=_share(events["unsubscribes"], delivered),
        ),
        links=_links(session, edition_id),
        bucket_s=bucket_s,
        opens_over_time=opens,
        clicks_over_time=clicks,
        **events,
    )


def _edition_or_raise(session: Session, edition_id: int) -> tuple[str, str, datetime | None]:
    """The edition's period, subject and start (not its bodies, which can be large)."""
    found = session.execute(
        select(col(Edition.period_key), col(Edition.subject), col(Edition.started_at)).where(
            col(Edition.id) == edition_id
        )
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"edition {edition_id} does not exist (see `newsletter editions list`)")
    period_key, subject, started_at = found
    return period_key, subject, started_at


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _delivery_counts(session: Session, edition_id: int) -> DeliveryCounts:
    rows = session.execute(
        select(col(Delivery.state), func.count())
        .where(col(Delivery.edition_id) == edition_id)
        .group_by(col(Delivery.state))
    )
    counts = {str(state): int(n) for state, n in rows}
    return DeliveryCounts(**{state.value: counts.get(state.value, 0) for state in DeliveryState})


def _is(kind: EventKind, *, machine: bool | None = None) -> ColumnElement[bool]:
    condition = col(Event.kind) == kind.value
    if machine is not None:
        condition = condition & (col(Event.machine) == (true() if machine else false()))
    return condition


def _permanent() -> ColumnElement[bool]:
    return _is(EventKind.BOUNCE) & col(Event.detail).like(PERMANENT_BOUNCE)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count().filter(condition)


def _distinct(column: Any, condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(func.distinct(column)).filter(condition)


def _event_figures(session: Session, edition_id: int) -> dict[str, Any]:
    """The event counts, in one pass over the edition's events."""
    reader = col(Event.subscriber_id)
    engaged = col(Event.kind).in_([EventKind.OPEN.value, EventKind.CLICK.value])
    figures: dict[str, ColumnElement[Any]] = {
        "bounces": _distinct(reader, _is(EventKind.BOUNCE)),
        "hard_bounces": _distinct(reader, _permanent()),
        "complaints": _distinct(reader, _is(EventKind.COMPLAINT)),
        "unsubscribes": _distinct(reader, _is(EventKind.UNSUBSCRIBE)),
        "human_opens": _count(_is(EventKind.OPEN, machine=False)),
        "machine_opens": _count(_is(EventKind.OPEN, machine=True)),
        "unique_human_opens": _distinct(col(Event.delivery_id), _is(EventKind.OPEN, machine=False)),
        "human_clicks": _count(_is(EventKind.CLICK, machine=False)),
        "machine_clicks": _count(_is(EventKind.CLICK, machine=True)),
        "unique_human_clickers": _distinct(
            col(Event.delivery_id), _is(EventKind.CLICK, machine=False)
        ),
        "first_at": func.min(col(Event.at)).filter(engaged),
        "last_at": func.max(col(Event.at)).filter(engaged),
    }
    row = session.execute(
        select(*(value.label(name) for name, value in figures.items())).where(
            col(Event.edition_id) == edition_id
        )
    ).one()
    found = row._asdict()
    return {
        name: found[name] if name.endswith("_at") else int(found[name] or 0) for name in figures
    }


def _hard_bounced_sent(session: Session, edition_id: int) -> int:
    """Sent deliveries with a permanent bounce: sent, but never delivered."""
    count = session.execute(
        select(func.count(func.distinct(col(Event.delivery_id))))
        .join(Delivery, col(Delivery.id) == col(Event.delivery_id))
        .where(col(Event.edition_id) == edition_id, _permanent())
        .where(col(Delivery.state) == DeliveryState.SENT.value)
    ).scalar_one()
    return int(count or 0)


def _links(session: Session, edition_id: int) -> tuple[LinkStats, ...]:
    human = col(Event.machine) == false()
    human_clicks = func.count().filter(human)
    rows = session.execute(
        select(
            col(Event.url),
            human_clicks,
            func.count(func.distinct(col(Event.delivery_id))).filter(human),
            func.count().filter(col(Event.machine) == true()),
        )
        .where(col(Event.edition_id) == edition_id, _is(EventKind.CLICK))
        .group_by(col(Event.url))
        .order_by(human_clicks.desc(), col(Event.url))
    )
    return tuple(
        LinkStats(url=url or "", human_clicks=h, unique_human_clickers=u, machine_clicks=m)
        for url, h, u, m in rows
    )


def _epoch_s(session: Session) -> ColumnElement[int]:
    """Event.at as whole seconds since 1970 (UTC), in this database's own words."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(extract("epoch", col(Event.at))), BigInteger)
    # SQLite keeps UTC as naive text, which strftime reads as UTC.
    return cast(func.strftime("%s", col(Event.at)), BigInteger)


def _series(
    session: Session,
    edition_id: int,
    *,
    started_at: datetime | None,
    first: datetime | None,
    last: datetime | None,
    bucket_s: int,
) -> tuple[int, tuple[Bucket, ...], tuple[Bucket, ...]]:
    """Opens and clicks per bucket from the send's start to the last of them, gaps included.

    The database counts per bucket number; only the (at most MAX_BUCKETS) sums come back.
    """
    if first is None or last is None:
        return bucket_s, (), ()
    start = min(started_at, first) if started_at is not None else first
    start_s = math.floor(start.timestamp())
    span_s = math.floor(last.timestamp()) - start_s
    if span_s // bucket_s + 1 > MAX_BUCKETS:
        bucket_s *= math.ceil((span_s // bucket_s + 1) / MAX_BUCKETS)
    origin_s = start_s - start_s % bucket_s  # buckets on the clock: whole hours, whole days
    count = (math.floor(last.timestamp()) - origin_s) // bucket_s + 1
    number = ((_epoch_s(session) - literal(origin_s, BigInteger)) // bucket_s).label("bucket")
    rows = session.execute(
        select(
            number,
            _count(_is(EventKind.OPEN, machine=False)),
            _count(_is(EventKind.OPEN, machine=True)),
            _count(_is(EventKind.CLICK, machine=False)),
            _count(_is(EventKind.CLICK, machine=True)),
        )
        .where(
            col(Event.edition_id) == edition_id,
            col(Event.kind).in_([EventKind.OPEN.value, EventKind.CLICK.value]),
        )
        .group_by(number)
    )
    sums = {int(n): (oh, om, ch, cm) for n, oh, om, ch, cm in rows}
    opens, clicks = [], []
    for n in range(count):
        at = datetime.fromtimestamp(origin_s + n * bucket_s, UTC)
        oh, om, ch, cm = sums.get(n, (0, 0, 0, 0))
        opens.append(Bucket(at, oh, om))
        clicks.append(Bucket(at, ch, cm))
    return bucket_s, tuple(opens), tuple(clicks)


def outcomes_rows(session: Session, edition_id: int) -> Iterator[OutcomeRow]:
    """One row per recipient (see OUTCOME_COLUMNS), streamed from a single query.

    The rows are read as they are consumed, so the session must stay open until then; an
    unknown edition raises NotFoundError at once, not at the first row.
    """
    _edition_or_raise(session, edition_id)
    return _outcomes(session, edition_id)


def _outcomes(session: Session, edition_id: int) -> Iterator[OutcomeRow]:
    per_delivery = (
        select(
            col(Event.delivery_id).label("delivery_id"),
            _count(_is(EventKind.OPEN, machine=False)).label("opens"),
            _count(_is(EventKind.CLICK, machine=False)).label("clicks"),
            _count(_permanent()).label("hard"),
            _count(_is(EventKind.BOUNCE)).label("bounces"),
            _count(_is(EventKind.COMPLAINT)).label("complaints"),
            _count(_is(EventKind.UNSUBSCRIBE)).label("unsubscribes"),
        )
        .where(col(Event.edition_id) == edition_id, col(Event.delivery_id).is_not(None))
        .group_by(col(Event.delivery_id))
        .subquery()
    )
    statement = (
        select(
            col(Subscriber.email),
            col(Delivery.state),
            col(Delivery.sent_at),
            func.coalesce(per_delivery.c.opens, 0),
            func.coalesce(per_delivery.c.clicks, 0),
            func.coalesce(per_delivery.c.hard, 0),
            func.coalesce(per_delivery.c.bounces, 0),
            func.coalesce(per_delivery.c.complaints, 0),
            func.coalesce(per_delivery.c.unsubscribes, 0),
        )
        .join(Subscriber, col(Subscriber.id) == col(Delivery.subscriber_id))
        .outerjoin(per_delivery, per_delivery.c.delivery_id == col(Delivery.id))
        .where(col(Delivery.edition_id) == edition_id)
        .order_by(col(Delivery.id))
    )
    rows = session.execute(statement, execution_options={"yield_per": 1000})
    for email, state, sent_at, opens, clicks, hard, bounces, complaints, unsubscribes in rows:
        bounced = "permanent" if hard else "transient" if bounces else "no"
        yield (
            email,
            str(state),
            sent_at.isoformat() if sent_at else "",
            _yes(opens),
            int(opens),
            int(clicks),
            bounced,
            _yes(complaints),
            _yes(unsubscribes),
        )


def _yes(count: int) -> str:
    return "yes" if count else "no"


def stats_rows(stats: EditionStats) -> list[tuple[str, str]]:
    """(metric, value) pairs for a CSV: the totals, the rates and each link's clicks."""
    rows = [(f"deliveries_{state}", str(n)) for state, n in asdict(stats.deliveries).items()]
    for name in (
        "sent",
        "delivered",
        "bounces",
        "hard_bounces",
        "complaints",
        "unsubscribes",
        "human_opens",
        "machine_opens",
        "unique_human_opens",
        "human_clicks",
        "machine_clicks",
        "unique_human_clickers",
    ):
        rows.append((name, str(getattr(stats, name))))
    rows += [(f"{name}_rate", f"{rate:.4f}") for name, rate in asdict(stats.rates).items()]
    # The metric starts with "link", never with the URL: a spreadsheet must not read a URL
    # beginning with "=" or "+" as a formula.
    for link in stats.links:
        rows.append((f"link human_clicks {link.url}", str(link.human_clicks)))
        rows.append((f"link unique_human_clickers {link.url}", str(link.unique_human_clickers)))
        rows.append((f"link machine_clicks {link.url}", str(link.machine_clicks)))
    return rows


def stats_dict(stats: EditionStats) -> dict[str, Any]:
    """Every field as JSON would give it back: datetimes as ISO 8601 text, sequences as lists,
    buckets as objects."""

    def series(buckets: tuple[Bucket, ...]) -> list[dict[str, Any]]:
        return [
            {"start": b.start.isoformat(), "human": b.human, "machine": b.machine} for b in buckets
        ]

    data = asdict(stats)
    data["started_at"] = stats.started_at.isoformat() if stats.started_at else None
    data["links"] = [asdict(link) for link in stats.links]
    data["opens_over_time"] = series(stats.opens_over_time)
    data["clicks_over_time"] = series(stats.clicks_over_time)
    return data
