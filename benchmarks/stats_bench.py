"""Figures for an edition's statistics on PostgreSQL: 100,000 deliveries and 300,000 events.

Seeds a private schema with bulk SQL (INSERT … SELECT over generate_series), then times
`stats.of_edition` plus the charts the stats page draws (median of BENCH_RUNS runs), and the
per-recipient outcomes stream. The figures are printed, not asserted.
BENCH_DELIVERIES and BENCH_EVENTS change the size.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text
from sqlmodel import Session, select

REPO = Path(__file__).resolve().parent.parent
# `python benchmarks/stats_bench.py` puts only benchmarks/ on the path; the schema helpers are
# shared with the queue benchmark.
sys.path.insert(0, str(REPO))
from benchmarks import queue_bench  # noqa: E402
from worker import charts, comparisons, db, stats  # noqa: E402
from worker.config import Settings  # noqa: E402
from worker.models import Comparison, Edition, EditionStatus, Schedule  # noqa: E402

DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "100000"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "300000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
TARGET_S = 1.0
SPREAD_S = 3 * 24 * 3600  # events over three days after the send
LINKS = 8
STARTED_AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

# One row per event: a random delivery, a random kind by share, a time skewed towards the first
# hours (u³ of three days), and for clicks one of LINKS URLs, the first ones most clicked.
EVENTS_SQL = """
INSERT INTO event (delivery_id, edition_id, subscriber_id, kind, at, url, user_agent, machine,
                   detail)
SELECT d.id, d.edition_id, d.subscriber_id, picked.kind,
       :started_at + make_interval(secs => :spread_s * power(picked.t, 3)),
       CASE WHEN picked.kind = 'click'
            THEN 'https://verdicts.example.org/compare/' || floor(:links * power(picked.u, 2))
       END,
       'Mozilla/5.0 (bench)',
       picked.kind IN ('open', 'click') AND picked.m < 0.3,
       CASE WHEN picked.kind <> 'bounce' THEN ''
            WHEN picked.m < 0.5 THEN 'permanent bounce (General): smtp; 550 5.1.1 user unknown'
            ELSE 'transient bounce (Transient/MailboxFull), address kept: smtp; 452 4.2.2'
       END
FROM (
    SELECT floor(random() * :deliveries)::bigint AS k, random() AS t, random() AS u,
           random() AS m,
           CASE WHEN r < 0.62 THEN 'open'
                WHEN r < 0.95 THEN 'click'
                WHEN r < 0.97 THEN 'delivery'
                WHEN r < 0.985 THEN 'bounce'
                WHEN r < 0.99 THEN 'complaint'
                ELSE 'unsubscribe'
           END AS kind
    FROM (SELECT random() AS r FROM generate_series(1, :events)) AS draws
) AS picked
JOIN delivery AS d ON d.id = :first_delivery + picked.k
"""


def seed(engine: Engine) -> int:
    """Readers, one sent edition with a delivery each, and EVENTS events; the edition's id."""
    db.upgrade(engine)
    example = queue_bench.EXAMPLE.read_bytes()
    with db.session_scope(engine) as session:
        comparisons.store(session, comparisons.parse_document(example, source="bench.json"))
        comparison_id = session.exec(select(Comparison.id)).one()
        schedule = Schedule(name="weekly", cron="0 9 * * MON", timezone="UTC", created_at=now())
        session.add(schedule)
        session.flush()
        assert comparison_id is not None and schedule.id is not None
        edition = Edition(
            comparison_id=comparison_id,
            schedule_id=schedule.id,
            period_key="2026-W48",
            subject="Bench edition",
            preheader="",
            html="<p>bench</p>",
            text="bench",
            placeholder_key="bench",
            content_hash="bench",
            source_hash="bench",
            status=EditionStatus.SENT,
            created_at=STARTED_AT,
            started_at=STARTED_AT,
            finished_at=STARTED_AT + timedelta(minutes=20),
        )
        session.add(edition)
        session.flush()
        assert edition.id is not None
        edition_id = edition.id
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO subscriber (email, name, status, source, created_at) "
                "SELECT 'r' || g || '@example.com', '', 'active', 'bench', :at "
                "FROM generate_series(1, :n) AS g"
            ),
            {"at": STARTED_AT, "n": DELIVERIES},
        )
        # Most sent over twenty minutes; a few refused by the provider or skipped.
        connection.execute(
            text(
                "INSERT INTO delivery (edition_id, subscriber_id, state, attempts, "
                "provider_message_id, claimed_at, sent_at) "
                "SELECT :edition, s.id, "
                "CASE WHEN s.id % 250 = 0 THEN 'failed' WHEN s.id % 999 = 0 THEN 'skipped' "
                "ELSE 'sent' END, 1, 'bench-' || s.id, "
                ":at + make_interval(secs => s.id % 1200), "
                "CASE WHEN s.id % 250 = 0 OR s.id % 999 = 0 THEN NULL "
                "ELSE :at + make_interval(secs => s.id % 1200) END "
                "FROM subscriber AS s ORDER BY s.id"
            ),
            {"edition": edition_id, "at": STARTED_AT},
        )
        first = connection.execute(text("SELECT min(id) FROM delivery")).scalar_one()
        connection.execute(text("SELECT setseed(0.42)"))
        connection.execute(
            text(EVENTS_SQL),
            {
                "started_at": STARTED_AT,
                "spread_s": SPREAD_S,
                "links": LINKS,
                "deliveries": DELIVERIES,
                "events": EVENTS,
                "first_delivery": first,
            },
        )
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text("ANALYZE"))
    return edition_id


def now() -> datetime:
    return datetime.now(UTC)


def one_run(engine: Engine, edition_id: int) -> tuple[float, stats.EditionStats, int]:
    """Seconds for the figures and the three charts of the stats page; the figures; SVG bytes."""
    started = time.perf_counter()
    with Session(engine) as session:
        found = stats.of_edition(session, edition_id)
    drawn = [
        charts.time_series_svg(found.opens_over_time, title="Opens over time"),
        charts.time_series_svg(found.clicks_over_time, title="Clicks over time"),
        charts.bar_chart_svg(
            [(link.url, link.human_clicks) for link in found.links], title="Clicks per link"
        ),
    ]
    return time.perf_counter() - started, found, sum(len(svg) for svg in drawn)


def outcomes_s(engine: Engine, edition_id: int) -> tuple[float, int]:
    started = time.perf_counter()
    with Session(engine) as session:
        rows = sum(1 for _ in stats.outcomes_rows(session, edition_id))
    return time.perf_counter() - started, rows


def page_s(settings: Settings, engine: Engine, edition_id: int) -> list[float]:
    """Seconds for GET /admin/editions/ID/stats as an operator, whole request, RUNS times."""
    from fastapi.testclient import TestClient

    from worker import users
    from worker.models import Role
    from worker.web import create_app

    password = "bench-password-long-enough"
    with Session(engine) as session:
        users.add(session, "bench@example.com", role=Role.OPERATOR, password=password, now=now())
        session.commit()
    app = create_app(settings)
    times = []
    with TestClient(app) as client:
        client.post("/admin/login", data={"email": "bench@example.com", "password": password})
        for _ in range(RUNS):
            started = time.perf_counter()
            answer = client.get(f"/admin/editions/{edition_id}/stats")
            times.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise SystemExit(f"the stats page answered {answer.status_code}")
    return times


def main() -> None:
    schema = queue_bench.fresh_schema()
    settings = Settings(_env_file=None, DATABASE_URL=queue_bench.schema_url(schema))
    engine = db.make_engine(settings)
    try:
        seed_started = time.perf_counter()
        edition_id = seed(engine)
        seeded_s = time.perf_counter() - seed_started
        with engine.connect() as connection:
            events = connection.execute(text("SELECT count(*) FROM event")).scalar_one()
        runs = [one_run(engine, edition_id) for _ in range(RUNS)]
        median_s = statistics.median(seconds for seconds, _, _ in runs)
        _, found, svg_bytes = runs[-1]
        export_s, rows = outcomes_s(engine, edition_id)
        verdict = "met" if median_s < TARGET_S else "MISSED"
        deliveries = sum(asdict(found.deliveries).values())
        print(
            f"stats for {deliveries:,} deliveries / {events:,} events: "
            f"{median_s:.2f} s median of {RUNS} "
            f"(min {min(s for s, _, _ in runs):.2f}, max {max(s for s, _, _ in runs):.2f}; "
            f"target < {TARGET_S:g} s: {verdict}); of_edition + 3 charts ({svg_bytes:,} bytes of "
            f"SVG, {len(found.opens_over_time)} buckets of {found.bucket_s} s); seeded in "
            f"{seeded_s:.1f} s"
        )
        print(
            f"  {found.human_opens:,} human / {found.machine_opens:,} machine opens, "
            f"{found.human_clicks:,} / {found.machine_clicks:,} clicks on {len(found.links)} "
            f"links, {found.bounces:,} bounced ({found.hard_bounces:,} permanent), "
            f"{found.complaints:,} complaints, {found.unsubscribes:,} unsubscribes"
        )
        print(f"  outcomes stream: {rows:,} recipient rows in {export_s:.2f} s")
        pages = page_s(settings.model_copy(update={"secret_key": "bench"}), engine, edition_id)
        page_median = statistics.median(pages)
        print(
            f"  the whole stats page (GET /admin/editions/{edition_id}/stats, signed in): "
            f"{page_median:.2f} s median of {RUNS} (target < {TARGET_S:g} s: "
            f"{'met' if page_median < TARGET_S else 'MISSED'})"
        )
    finally:
        engine.dispose()
        queue_bench.drop_schema(schema)


if __name__ == "__main__":
    main()
