"""Per-edition statistics: every figure agrees with the raw event rows, on SQLite and PostgreSQL,
and the CLI and the charts show the same figures safely."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select
from typer.testing import CliRunner, Result

from tests.helpers import add_subscribers, example_payload, send_week, store_payload
from worker import charts, db, engagement, ses_events, stats, subscribers
from worker.cli import app
from worker.config import Settings, get_settings
from worker.errors import NotFoundError
from worker.models import Delivery, DeliveryState, Edition, Event, EventKind, Subscriber
from worker.transports.base import FailureKind
from worker.transports.memory import MemoryTransport

READERS = tuple(f"r{i}@example.com" for i in range(9))
FAILS, UNCERTAIN = READERS[7], READERS[8]
HOSTILE = 'https://x/?a=<script>&b="'
COMPARE = "https://verdicts.example.org/compare/claude-vs-llama"
DOCS = "https://example.com/docs"
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SCANNER = "Barracuda Sentinel (EE)"
APPLE_PROXY_IP = "17.58.0.1"
SVG = "{http://www.w3.org/2000/svg}"

cli = CliRunner()


@dataclass(frozen=True)
class Seeded:
    edition_id: int
    started_at: datetime
    deliveries: dict[str, Delivery]  # by reader


def _ses(kind: str, sent: Delivery, to: str, at: datetime, body: dict[str, Any]) -> str:
    """An SES event about our message `sent` to `to`, as an SNS Message."""
    mail = {
        "timestamp": at.isoformat(),
        "messageId": sent.provider_message_id,
        "destination": [to],
        "headers": [{"name": "X-Verdicts-Delivery", "value": f"e{sent.edition_id}-d{sent.id}"}],
    }
    return json.dumps({"eventType": kind, "mail": mail, kind.lower(): body})


def _bounce(sent: Delivery, to: str, at: datetime, *, permanent: bool) -> str:
    return _ses(
        "Bounce",
        sent,
        to,
        at,
        {
            "bounceType": "Permanent" if permanent else "Transient",
            "bounceSubType": "General" if permanent else "MailboxFull",
            "timestamp": at.isoformat(),
            "bouncedRecipients": [{"emailAddress": to, "diagnosticCode": "smtp; 550 5.1.1"}],
        },
    )


@pytest.fixture
def seeded(engine: Engine, settings: Settings) -> Seeded:
    """Nine readers sent an edition (one failed, one uncertain), then events of every kind."""
    store_payload(engine, example_payload())
    add_subscribers(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next(FAILS, FailureKind.PERMANENT, reason="rejected")
    transport.fail_next(UNCERTAIN, FailureKind.UNKNOWN, reason="read timeout")
    edition = send_week(engine, settings, transport).edition
    assert edition is not None and edition.id is not None
    with db.session_scope(engine) as session:
        started = session.get(Edition, edition.id)
        assert started is not None and started.started_at is not None
        rows = session.exec(
            select(Subscriber.email, Delivery).join(
                Delivery, col(Delivery.subscriber_id) == col(Subscriber.id)
            )
        ).all()
    found = Seeded(edition.id, started.started_at, {email: sent for email, sent in rows})
    t0 = found.started_at
    r = found.deliveries

    def hit(kind: EventKind, reader: int, after: timedelta, **how: Any) -> None:
        sent = r[READERS[reader]]
        assert sent.id is not None
        how.setdefault("user_agent", BROWSER)
        how.setdefault("client_ip", "203.0.113.9")
        # Not asserting record's answer: on PostgreSQL under SQLAlchemy 2.1 its rowcount reads
        # -1 (so False) though the row is written. The exact totals below prove each landed.
        engagement.record(engine, kind=kind, delivery_id=sent.id, now=t0 + after, **how)

    hours = timedelta(hours=1)
    open_, click = EventKind.OPEN, EventKind.CLICK
    hit(open_, 0, 1 * hours)  # reader 0 opens three times, a day apart at the end
    hit(open_, 0, 1.5 * hours)
    hit(open_, 0, 26 * hours)
    hit(open_, 0, 1 * hours, user_agent="Mozilla/5.0", client_ip=APPLE_PROXY_IP)
    hit(open_, 1, 2 * hours)
    hit(open_, 2, 3 * hours, user_agent="Mozilla/5.0", client_ip=APPLE_PROXY_IP)  # machine only
    hit(open_, 3, 5 * hours)
    sent_at = r[READERS[4]].sent_at
    assert sent_at is not None
    hit(open_, 4, sent_at - t0 + timedelta(seconds=3))  # a gateway's fetch, seconds after sending
    hit(click, 0, 1.2 * hours, url=COMPARE)
    hit(click, 0, 27 * hours, url=COMPARE)
    hit(click, 0, 1.3 * hours, url=HOSTILE)
    hit(click, 1, 2.1 * hours, url=COMPARE)
    hit(click, 1, 2.2 * hours, url=DOCS)
    hit(click, 3, 5.5 * hours, url=HOSTILE)
    hit(click, 2, 3 * hours, url=DOCS, user_agent=SCANNER)
    hit(click, 2, 3 * hours, url=COMPARE, user_agent=SCANNER)
    with db.session_scope(engine) as session:
        notices = {
            "bounce-hard": _bounce(r[READERS[4]], READERS[4], t0, permanent=True),
            "bounce-soft": _bounce(r[READERS[5]], READERS[5], t0, permanent=False),
            "complaint": _ses(
                "Complaint",
                r[READERS[6]],
                READERS[6],
                t0,
                {"complainedRecipients": [{"emailAddress": READERS[6]}], "timestamp": ""},
            ),
            "delivery": _ses(
                "Delivery", r[READERS[0]], READERS[0], t0, {"recipients": [READERS[0]]}
            ),
        }
        for notification_id, message in notices.items():
            applied = ses_events.apply_notification(
                session, message, notification_id=notification_id
            )
            assert applied.recorded == 1, (notification_id, applied)
        reader_1, reader_3 = r[READERS[1]], r[READERS[3]]
        assert subscribers.unsubscribe_by_link(session, reader_1.subscriber_id, reader_1.id)
        # An unsubscribe from no particular message belongs to no edition.
        assert subscribers.unsubscribe_by_link(session, reader_3.subscriber_id, None)
    return found


def raw_rows(engine: Engine, edition_id: int) -> tuple[list[Event], list[Delivery]]:
    with db.session_scope(engine) as session:
        events = list(session.exec(select(Event).where(Event.edition_id == edition_id)))
        deliveries = list(session.exec(select(Delivery).where(Delivery.edition_id == edition_id)))
    return events, deliveries


def expected_from(events: list[Event], deliveries: list[Delivery]) -> dict[str, Any]:
    """The figures worked out in Python from the raw rows, independently of worker.stats."""

    def of(kind: EventKind, machine: bool | None = None) -> list[Event]:
        return [e for e in events if e.kind == kind and machine in (None, e.machine)]

    states = Counter(str(d.state) for d in deliveries)
    sent_ids = {d.id for d in deliveries if d.state == DeliveryState.SENT}
    permanent = [e for e in of(EventKind.BOUNCE) if e.detail.startswith("permanent bounce")]
    delivered = len(sent_ids) - len({e.delivery_id for e in permanent} & sent_ids)
    unique_opens = len({e.delivery_id for e in of(EventKind.OPEN, False)})
    clickers = len({e.delivery_id for e in of(EventKind.CLICK, False)})
    bounces = len({e.subscriber_id for e in of(EventKind.BOUNCE)})
    complaints = len({e.subscriber_id for e in of(EventKind.COMPLAINT)})
    unsubscribes = len({e.subscriber_id for e in of(EventKind.UNSUBSCRIBE)})
    links = {
        url: {
            "url": url,
            "human_clicks": sum(1 for e in of(EventKind.CLICK, False) if e.url == url),
            "unique_human_clickers": len(
                {e.delivery_id for e in of(EventKind.CLICK, False) if e.url == url}
            ),
            "machine_clicks": sum(1 for e in of(EventKind.CLICK, True) if e.url == url),
        }
        for url in {e.url for e in of(EventKind.CLICK)}
    }
    return {
        "deliveries": {state.value: states[state.value] for state in DeliveryState},
        "sent": len(sent_ids),
        "delivered": delivered,
        "bounces": bounces,
        "hard_bounces": len({e.subscriber_id for e in permanent}),
        "complaints": complaints,
        "unsubscribes": unsubscribes,
        "human_opens": len(of(EventKind.OPEN, False)),
        "machine_opens": len(of(EventKind.OPEN, True)),
        "unique_human_opens": unique_opens,
        "human_clicks": len(of(EventKind.CLICK, False)),
        "machine_clicks": len(of(EventKind.CLICK, True)),
        "unique_human_clickers": clickers,
        "rates": {
            "open": unique_opens / delivered,
            "click": clickers / delivered,
            "bounce": bounces / len(sent_ids),
            "complaint": complaints / delivered,
            "unsubscribe": unsubscribes / delivered,
        },
        "links": sorted(links.values(), key=lambda link: (-link["human_clicks"], link["url"])),
    }


def figures(engine: Engine, edition_id: int, **options: Any) -> stats.EditionStats:
    with db.session_scope(engine) as session:
        return stats.of_edition(session, edition_id, **options)


def run(engine: Engine, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """`newsletter …` on the test's own database (SQLite file or PostgreSQL schema)."""
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    return cli.invoke(app, list(args))


def test_every_figure_agrees_with_the_raw_events(engine: Engine, seeded: Seeded) -> None:
    found = figures(engine, seeded.edition_id)
    expected = expected_from(*raw_rows(engine, seeded.edition_id))
    shown = stats.stats_dict(found)
    assert {name: shown[name] for name in expected} == expected
    # The seed did what it says, so the comparison above is not between two empty sets.
    assert found.deliveries == stats.DeliveryCounts(
        pending=0, sending=0, sent=7, failed=1, uncertain=1, skipped=0
    )
    assert (found.sent, found.delivered, found.bounces, found.hard_bounces) == (7, 6, 2, 1)
    assert (found.complaints, found.unsubscribes) == (1, 1)
    assert (found.human_opens, found.machine_opens, found.unique_human_opens) == (5, 3, 3)
    assert (found.human_clicks, found.machine_clicks, found.unique_human_clickers) == (6, 2, 3)
    assert [link.url for link in found.links] == [COMPARE, HOSTILE, DOCS]
    assert found.rates.open == pytest.approx(3 / 6)


def test_the_series_cover_the_send_with_empty_hours_and_sum_to_the_totals(
    engine: Engine, seeded: Seeded
) -> None:
    found = figures(engine, seeded.edition_id)
    events, _ = raw_rows(engine, seeded.edition_id)
    assert found.bucket_s == 3600
    for series, kind in ((found.opens_over_time, EventKind.OPEN), (found.clicks_over_time, None)):
        starts = [bucket.start for bucket in series]
        assert starts[0] <= seeded.started_at < starts[0] + timedelta(hours=1)
        assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))
        assert any(bucket.human == bucket.machine == 0 for bucket in series)  # gaps are kept
        # Each event in the bucket Python puts it in (the series start at the same hour).
        wanted = kind or EventKind.CLICK
        per_bucket: Counter[tuple[int, bool]] = Counter(
            (math.floor((e.at - starts[0]).total_seconds() / 3600), e.machine)
            for e in events
            if e.kind == wanted
        )
        # Both series share one time axis, ending with the last open or click.
        last = max(e.at for e in events if e.kind in (EventKind.OPEN, EventKind.CLICK))
        assert starts[-1] <= last < starts[-1] + timedelta(hours=1)
        for index, bucket in enumerate(series):
            assert (bucket.human, bucket.machine) == (
                per_bucket[(index, False)],
                per_bucket[(index, True)],
            )
    assert sum(b.human for b in found.opens_over_time) == found.human_opens
    assert sum(b.machine for b in found.opens_over_time) == found.machine_opens
    assert sum(b.human for b in found.clicks_over_time) == found.human_clicks
    assert sum(b.machine for b in found.clicks_over_time) == found.machine_clicks


def test_too_many_buckets_are_widened_not_dropped(engine: Engine, seeded: Seeded) -> None:
    found = figures(engine, seeded.edition_id, bucket=timedelta(minutes=1))
    assert found.bucket_s > 60 and len(found.opens_over_time) <= stats.MAX_BUCKETS
    assert len(found.opens_over_time) > stats.MAX_BUCKETS // 2
    assert sum(b.human for b in found.opens_over_time) == found.human_opens
    assert sum(b.machine for b in found.clicks_over_time) == found.machine_clicks


def test_outcomes_give_one_row_per_recipient_from_the_events(
    engine: Engine, seeded: Seeded
) -> None:
    events, deliveries = raw_rows(engine, seeded.edition_id)
    with db.session_scope(engine) as session:
        rows = list(stats.outcomes_rows(session, seeded.edition_id))
    assert len(rows) == len(deliveries) == len(READERS)
    by_email = {row[0]: dict(zip(stats.OUTCOME_COLUMNS, row, strict=True)) for row in rows}
    for email, sent in seeded.deliveries.items():
        mine = [e for e in events if e.delivery_id == sent.id]
        opens = sum(1 for e in mine if e.kind == EventKind.OPEN and not e.machine)
        row = by_email[email]
        assert row["human_opens"] == opens
        assert row["opened"] == ("yes" if opens else "no")
        assert row["human_clicks"] == sum(
            1 for e in mine if e.kind == EventKind.CLICK and not e.machine
        )
    assert by_email[READERS[4]]["bounced"] == "permanent"
    assert by_email[READERS[5]]["bounced"] == "transient"
    assert by_email[READERS[0]]["bounced"] == "no"
    assert by_email[READERS[6]]["complained"] == "yes"
    assert by_email[READERS[1]]["unsubscribed"] == "yes"
    assert by_email[READERS[3]]["unsubscribed"] == "no"  # unsubscribed, but not from this mail
    assert by_email[FAILS]["state"] == "failed" and by_email[FAILS]["sent_at"] == ""


def test_an_unknown_edition_is_an_input_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.session_scope(engine) as session:
        with pytest.raises(NotFoundError, match="edition 404"):
            stats.of_edition(session, 404)
        with pytest.raises(NotFoundError, match="edition 404"):
            stats.outcomes_rows(session, 404)  # at once, not at the first row
    result = run(engine, monkeypatch, "stats", "404")
    assert result.exit_code == 2 and "edition 404 does not exist" in result.output


def test_an_edition_that_reached_nobody_has_zero_rates_and_no_series(
    engine: Engine, settings: Settings
) -> None:
    store_payload(engine, example_payload())
    add_subscribers(engine, READERS[0])
    transport = MemoryTransport()
    transport.fail_next(READERS[0], FailureKind.PERMANENT)
    edition = send_week(engine, settings, transport).edition
    assert edition is not None and edition.id is not None
    found = figures(engine, edition.id)
    assert (found.sent, found.delivered, found.deliveries.failed) == (0, 0, 1)
    assert found.rates == stats.Rates(open=0, click=0, bounce=0, complaint=0, unsubscribe=0)
    assert found.opens_over_time == found.clicks_over_time == () and found.links == ()
    for svg in (
        charts.time_series_svg(found.opens_over_time, title="Opens"),
        charts.bar_chart_svg([], title="Clicks per link"),
    ):
        assert "no data yet" in svg
        ET.fromstring(svg)


def test_stats_json_is_every_figure(
    engine: Engine, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(engine, monkeypatch, "stats", str(seeded.edition_id), "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == stats.stats_dict(figures(engine, seeded.edition_id))
    expected = expected_from(*raw_rows(engine, seeded.edition_id))
    assert {name: printed[name] for name in expected} == expected
    assert datetime.fromisoformat(printed["opens_over_time"][0]["start"]).tzinfo is not None
    assert datetime.fromisoformat(printed["started_at"]) == seeded.started_at


def test_stats_csv_parses_as_metric_value_rows(
    engine: Engine, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(engine, monkeypatch, "stats", str(seeded.edition_id), "--csv")
    assert result.exit_code == 0, result.output
    header, *rows = list(csv.reader(io.StringIO(result.stdout)))
    assert header == ["metric", "value"] and all(len(row) == 2 for row in rows)
    values = dict(rows)
    assert values["delivered"] == "6" and values["deliveries_uncertain"] == "1"
    assert values["unique_human_opens"] == "3" and values["open_rate"] == "0.5000"
    assert values[f"link human_clicks {HOSTILE}"] == "2"
    assert values[f"link machine_clicks {DOCS}"] == "1"


def test_stats_text_summarises_and_lists_the_links(
    engine: Engine, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(engine, monkeypatch, "stats", str(seeded.edition_id))
    assert result.exit_code == 0, result.output
    assert "sent 7 · delivered 6 · bounced 2 (1 permanent" in result.stdout
    assert "opens: 3 readers (50.0% of delivered)" in result.stdout
    for url in (COMPARE, DOCS, HOSTILE):
        assert url in result.stdout
    both = run(engine, monkeypatch, "stats", str(seeded.edition_id), "--json", "--csv")
    assert both.exit_code == 2


def test_charts_parse_as_xml_and_escape_a_hostile_url(engine: Engine, seeded: Seeded) -> None:
    found = figures(engine, seeded.edition_id)
    series = charts.time_series_svg(found.clicks_over_time, title='Clicks <"over"> & time')
    bars = charts.bar_chart_svg(
        [(link.url, link.human_clicks) for link in found.links] + [("\x01\u202eodd", 1)],
        title="Clicks per link",
    )
    for svg in (series, bars):
        root = ET.fromstring(svg)  # raises on anything unescaped or not XML
        assert root.get("role") == "img" and root.get("viewBox")
        assert root.find(f"{SVG}title") is not None and root.find(f"{SVG}desc") is not None
        assert "<script" not in svg
    assert ET.fromstring(series).findtext(f"{SVG}title") == 'Clicks <"over"> & time'
    bar_titles = [node.text for node in ET.fromstring(bars).iter(f"{SVG}title")]
    assert f"{HOSTILE}: 2" in bar_titles  # the whole URL survives, as text, for a tooltip
    assert 'x/?a=<script>&b="' in "".join(ET.fromstring(bars).itertext())
